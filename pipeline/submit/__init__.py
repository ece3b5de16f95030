"""Sending capability queries at the rate limit: the dispatcher and what paces it.

- `dispatch`: sends each planned request (retries, back-off, 429 episodes), reports outcomes;
- `pacing`: the configured rate over every one-second window, never more;
- `backlog`: self-pacing to callbacks, so queries never outrun what Sinch calls back.
"""
