"""Match capability notifications that carry no `request_id` to the query they answer.

Sinch's reference says `request_id` is echoed on every callback, but every field of the
notification is optional in its SDKs and its own Capability Query page shows a notification
without one. Such a notification is matched here, in this order (docs/receiver.md):

1. `request_id` present: that request (the plain ingest path; `matched_by = 'request_id'`).
2. by identity: an outstanding query of the same app that asked this channel for the same
   identity (digits only on phone channels) -> `matched_by = 'identity'`;
3. else by contact id: an outstanding contact-id query of the same app for the callback's
   `contact_id` that asked this channel (or any channel, for a whole-request answer such as
   CONTACT_NOT_FOUND) -> `matched_by = 'contact_id'`.

A query is *outstanding* for a callback when it is accepted (in the ledger, or in its events not
yet folded while sending); was sent before the callback was received and no later than the
callback's own `event_time` (to the second; the receive time alone bounds it when `event_time`
is missing or unreadable), so an old callback re-delivered after an outage never answers a newer
query of the same identity; its run is still waiting (running or interrupted, not finished as
`succeeded` or `failed`); and it has no answer yet for that channel (for a contact-id query: for
that channel and identity, as Sinch answers each of the contact's identities).

Among the outstanding queries of one run the most recently accepted wins. Queries of several
runs waiting for the same identity make the callback `ambiguous`; none makes it
`no_outstanding_query`. Either way it stays in `unmatched_notifications`, is counted and
reported, and is tried again on every ingest: the callback may have been ingested before the
ledger recorded the acceptance (the receiver is faster than the dispatcher's ledger flush).
"""

from __future__ import annotations

import logging

import duckdb

from pipeline.db import sql_literal

log = logging.getLogger(__name__)
NO_OUTSTANDING_QUERY, AMBIGUOUS = "no_outstanding_query", "ambiguous"
BY_IDENTITY, BY_CONTACT_ID = "identity", "contact_id"
# The notification's own columns, shared by `notifications` and `unmatched_notifications`.
NOTIFICATION_COLUMNS = (
    "channel",
    "identity",
    "contact_id",
    "capability_status",
    "reason_code",
    "reason_description",
    "reason_sub_code",
    "reason_channel_code",
    "channel_capabilities",
    "event_time",
    "received_at",
    "deliveries",
    "app_id",
    "segment_id",
)


def _columns(alias: str) -> str:
    return ", ".join(f"{alias}.{column}" for column in NOTIFICATION_COLUMNS)


def new_batch(conn: duckdb.DuckDBPyConnection) -> int:
    """A number for the notifications about to be inserted (`notifications.batch`): larger than
    any before, so a build can tell what it has not read yet (pipeline/build_scope.py)."""
    row = conn.execute("SELECT nextval('notification_batches')").fetchone()
    return int(row[0]) if row else 0


def stage_without_request_id(conn: duckdb.DuckDBPyConnection) -> tuple[int, int]:
    """Put the `incoming` notifications without request_id aside in `unmatched_notifications`;
    a repeated delivery of one already there or already matched only adds to its `deliveries`.
    Returns (repeated, new)."""
    found = conn.execute("SELECT EXISTS (SELECT 1 FROM incoming WHERE request_id IS NULL)")
    if not (found.fetchone() or (False,))[0]:
        return 0, 0  # the usual case: Sinch echoed every request_id
    repeated = 0
    for table in ("notifications", "unmatched_notifications"):
        row = conn.execute(f"""
            UPDATE {table} t SET deliveries = t.deliveries + i.deliveries
            FROM incoming i
            WHERE i.request_id IS NULL AND t.fingerprint = i.fingerprint
        """).fetchone()
        repeated += int(row[0]) if row else 0
    new = conn.execute(f"""
        INSERT INTO unmatched_notifications BY NAME
        SELECT fingerprint, {_columns("i")}, '{NO_OUTSTANDING_QUERY}' AS problem,
            NULL AS candidate_runs, 0 AS attempts, now() AS checked_at
        FROM incoming i
        WHERE i.request_id IS NULL
          AND NOT EXISTS (SELECT 1 FROM notifications n WHERE n.fingerprint = i.fingerprint)
          AND NOT EXISTS (
              SELECT 1 FROM unmatched_notifications u WHERE u.fingerprint = i.fingerprint)
    """).fetchone()
    return repeated, int(new[0]) if new else 0


def has_unmatched(conn: duckdb.DuckDBPyConnection) -> bool:
    row = conn.execute("SELECT EXISTS (SELECT 1 FROM unmatched_notifications)").fetchone()
    return bool(row and row[0])


def match_unmatched(conn: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Match what `unmatched_notifications` holds, in rounds; returns how many by each way.

    Each round every notification picks its query; when several pick the same query, channel
    and identity (two contacts with the same number, a re-query), the one received first takes
    it and the others pick again next round, when that query is answered."""
    matched = {BY_IDENTITY: 0, BY_CONTACT_ID: 0}
    if not has_unmatched(conn) or _signature(conn) == _last_signature(conn):
        return matched  # nothing new to match, nor anything that could change a verdict
    runs = waiting_runs(conn)
    while True:
        _decide(conn, runs)
        moved = _move_matched(conn)
        for way, count in moved.items():
            matched[way] += count
        if not moved or not _lost_a_tie(conn):
            break
    _record_attempt(conn)
    conn.execute("DELETE FROM correlation_state")
    conn.execute("INSERT INTO correlation_state VALUES (?)", [_signature(conn)])
    return matched


# What a verdict depends on, cheaply: new acceptances (request_events only grow), new answers,
# new unmatched notifications, and runs starting or finishing.
SIGNATURE_SQL = """
SELECT concat_ws('|', (SELECT count(*) FROM request_events),
    (SELECT count(*) FROM notifications), (SELECT count(*) FROM unmatched_notifications),
    (SELECT md5(coalesce(string_agg(run_id || ':' || status, ',' ORDER BY run_id), ''))
     FROM runs))
"""


def _signature(conn: duckdb.DuckDBPyConnection) -> str:
    row = conn.execute(SIGNATURE_SQL).fetchone()
    return str(row[0]) if row else ""


def _last_signature(conn: duckdb.DuckDBPyConnection) -> str:
    row = conn.execute("SELECT max(signature) FROM correlation_state").fetchone()
    return str(row[0]) if row and row[0] is not None else ""


def waiting_runs(conn: duckdb.DuckDBPyConnection) -> list[str]:
    """Runs that may still wait for answers: every run with requests but those that finished,
    succeeded, failed or refused (a failed run left alone would otherwise make every later
    query of its identities ambiguous; resuming it makes it wait again)."""
    rows = conn.execute("""
        SELECT DISTINCT run_id FROM requests WHERE run_id NOT IN (
            SELECT run_id FROM runs WHERE status IN ('succeeded', 'failed', 'refused'))
    """).fetchall()
    return sorted(str(row[0]) for row in rows)


# Candidate queries per unmatched notification. `$runs` is written in as a constant so that
# only the waiting runs' row groups of `targets`, `requests` and `request_events` are read; the
# work starts from the (few) unmatched notifications, so a big run costs one scan of each.
CANDIDATES_SQL = """
CREATE OR REPLACE TEMP TABLE match_candidates AS
WITH asked AS (
    -- A contact's identities and its contact id are asked in separate requests for separate
    -- channels, so the target says which kind of request asked for a channel.
    SELECT u.fingerprint, t.run_id, t.contact_key, t.channel, 1 AS way_rank
    FROM unmatched_notifications u
    JOIN targets t ON t.channel = u.channel AND t.identity = u.identity
    WHERE t.run_id IN $runs AND t.action = 'query' AND u.identity <> ''
    UNION ALL
    SELECT u.fingerprint, t.run_id, t.contact_key, t.channel, 2 AS way_rank
    FROM unmatched_notifications u
    JOIN targets t ON t.contact_id = u.contact_id AND t.identity IS NULL
    WHERE t.run_id IN $runs AND t.action = 'query' AND u.channel IN (t.channel, '')
),
asking AS (
    SELECT DISTINCT a.fingerprint, a.way_rank, r.run_id, r.request_id, r.state, r.sent_at,
        r.accepted_at, json_extract_string(r.body, '$.app_id') AS app_id
    FROM asked a
    JOIN requests r ON r.run_id = a.run_id AND r.contact_key = a.contact_key
        AND list_contains(r.channels, a.channel)
    WHERE r.run_id IN $runs
),
latest_events AS (
    -- While sending, acceptance is only in `request_events`: the ledger folds them into
    -- `requests` after the step, and a callback can land long before.
    SELECT request_id, arg_max(state, recorded_at) AS state,
        arg_max(sent_at, recorded_at) AS sent_at, arg_max(accepted_at, recorded_at) AS accepted_at
    FROM request_events
    WHERE run_id IN $runs AND request_id IN (SELECT request_id FROM asking)
    GROUP BY request_id
),
accepted AS (
    SELECT a.fingerprint, a.way_rank, a.run_id, a.request_id, a.app_id,
        coalesce(e.sent_at, a.sent_at) AS sent_at, coalesce(e.accepted_at, a.accepted_at)
            AS accepted_at,
        CASE a.way_rank WHEN 1 THEN 'identity' ELSE 'contact_id' END AS matched_by
    FROM asking a LEFT JOIN latest_events e USING (request_id)
    WHERE coalesce(e.state, a.state) = 'accepted'
)
SELECT c.fingerprint, c.run_id, c.request_id, c.matched_by,
    coalesce(c.accepted_at, c.sent_at, TIMESTAMPTZ '1970-01-01 00:00:00+00') AS accepted_at
FROM accepted c JOIN unmatched_notifications u USING (fingerprint)
WHERE coalesce(nullif(u.app_id, ''), c.app_id) IS NOT DISTINCT FROM c.app_id
  -- Sent before the callback was received: Sinch may call back before its 200 reaches us, so
  -- the acceptance time is no bound, the sending time is.
  AND (c.sent_at IS NULL OR c.sent_at <= u.received_at)
  -- ... and no later than the event it reports: a callback re-delivered (or replayed) long
  -- after its event must not answer a query sent since. To the second: Sinch's examples give
  -- event_time in whole seconds. Without a readable event_time, the receive time bounds alone.
  AND (c.sent_at IS NULL OR u.event_time IS NULL
       OR date_trunc('second', c.sent_at) <= u.event_time)
  AND NOT EXISTS (
      SELECT 1 FROM notifications n
      WHERE n.request_id = c.request_id AND (n.channel = '' OR (n.channel = u.channel AND (
          c.matched_by = 'identity' OR n.identity = u.identity))))
-- Identity first: contact-id queries count only when no identity query is outstanding.
QUALIFY c.way_rank = min(c.way_rank) OVER (PARTITION BY c.fingerprint)
"""

# Each notification's choice: the most recently accepted of its candidate queries, unless they
# belong to several runs (ambiguous). `chosen` is one struct so that both fields come from one row.
DECIDE_SQL = """
CREATE OR REPLACE TEMP TABLE match_choices AS
WITH per_notification AS (
    SELECT fingerprint, min(run_id) <> max(run_id) AS ambiguous,
        arg_max({'request_id': request_id, 'matched_by': matched_by}, accepted_at) AS chosen
    FROM match_candidates GROUP BY fingerprint
)
SELECT p.fingerprint, p.ambiguous, p.chosen.request_id AS request_id,
    p.chosen.matched_by AS matched_by, u.channel, u.identity, u.received_at
FROM per_notification p JOIN unmatched_notifications u USING (fingerprint)
"""

# Only one notification takes a (query, channel, identity): the one received first.
WINNERS_SQL = """
CREATE OR REPLACE TEMP TABLE match_winners AS
SELECT arg_min(fingerprint, received_at) AS fingerprint, count(*) > 1 AS contested
FROM match_choices WHERE NOT ambiguous
GROUP BY request_id, channel, identity
"""


def _decide(conn: duckdb.DuckDBPyConnection, runs: list[str]) -> None:
    conn.execute(CANDIDATES_SQL.replace("$runs", sql_literal(tuple(runs))))
    conn.execute(DECIDE_SQL)
    conn.execute(WINNERS_SQL)


def _move_matched(conn: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Matched notifications go into `notifications`; returns how many by each way."""
    counts = dict(
        conn.execute(
            "SELECT matched_by, count(*) FROM match_winners JOIN match_choices USING "
            "(fingerprint) GROUP BY ALL"
        ).fetchall()
    )
    if not counts:
        return {}
    conn.execute(f"""
        INSERT INTO notifications BY NAME
        SELECT c.request_id, {_columns("u")}, c.matched_by, u.fingerprint,
            {new_batch(conn)} AS batch
        FROM match_winners JOIN match_choices c USING (fingerprint)
        JOIN unmatched_notifications u USING (fingerprint)
    """)
    conn.execute("""
        DELETE FROM unmatched_notifications
        WHERE fingerprint IN (SELECT fingerprint FROM match_winners)
    """)
    return {str(way): int(count) for way, count in counts.items()}


def _lost_a_tie(conn: duckdb.DuckDBPyConnection) -> bool:
    """Whether a notification had its query taken by one received earlier (it picks again)."""
    row = conn.execute("SELECT EXISTS (SELECT 1 FROM match_winners WHERE contested)")
    found = row.fetchone()
    return bool(found and found[0])


def _record_attempt(conn: duckdb.DuckDBPyConnection) -> None:
    """What the last round found for each notification still unmatched: the rounds end with
    no tie lost, so each is ambiguous (candidates in several runs) or has no candidate."""
    conn.execute(f"""
        UPDATE unmatched_notifications SET problem = '{NO_OUTSTANDING_QUERY}',
            candidate_runs = NULL, attempts = attempts + 1, checked_at = now()
    """)
    conn.execute(f"""
        UPDATE unmatched_notifications u SET problem = '{AMBIGUOUS}', candidate_runs = a.runs
        FROM (
            SELECT fingerprint, list(DISTINCT run_id ORDER BY run_id) AS runs
            FROM match_candidates
            WHERE fingerprint IN (SELECT fingerprint FROM match_choices WHERE ambiguous)
            GROUP BY fingerprint
        ) a
        WHERE u.fingerprint = a.fingerprint
    """)


def unmatched_counts(conn: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Notifications without request_id kept unmatched, per problem (both keys always)."""
    counts = dict.fromkeys((NO_OUTSTANDING_QUERY, AMBIGUOUS), 0)
    for problem, count in conn.execute(
        "SELECT problem, count(*) FROM unmatched_notifications GROUP BY ALL"
    ).fetchall():
        counts[str(problem)] = int(count)
    return counts


def warn_if_unmatched(conn: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Callbacks without request_id that no query could be chosen for are kept, never
    guessed: say how many, per problem (collect and build call this)."""
    counts = unmatched_counts(conn)
    if sum(counts.values()):
        log.warning(
            "%d callbacks without request_id are not matched to a query (%d with no outstanding "
            "query, %d ambiguous: several runs wait for the identity); they are kept in "
            "unmatched_notifications and tried again on every ingest",
            sum(counts.values()),
            counts[NO_OUTSTANDING_QUERY],
            counts[AMBIGUOUS],
        )
    return counts


def matched_by_counts(conn: duckdb.DuckDBPyConnection, run_id: str) -> dict[str, int]:
    """The run's notifications by how they were matched (request_id, identity, contact_id)."""
    rows = conn.execute(
        "SELECT n.matched_by, count(*) FROM notifications n "
        "JOIN requests r ON r.request_id = n.request_id WHERE r.run_id = $run_id GROUP BY ALL",
        {"run_id": run_id},
    ).fetchall()
    return {str(way): int(count) for way, count in sorted(rows)}
