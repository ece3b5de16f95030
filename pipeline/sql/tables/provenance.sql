-- Where each answer came from (issue 26): `capability.answered_run_id` is the run whose check
-- produced the row's answer: the run itself for its own answers, the original run for a reused
-- or late answer (never the run that only reused it). `request_id` and `checked_at` are that
-- check's. Rows of earlier versions have NULL: read coalesce(answered_run_id, run_id) for them.
ALTER TABLE capability ADD COLUMN IF NOT EXISTS answered_run_id VARCHAR;
