-- capability_changes: one row per contact x channel x run where the status changed (grain);
-- key (run_id, contact_key, channel). This run's answer against the contact's previous answer
-- on that channel. Every target of a run has a capability row (reused answers included), so
-- the previous answer is almost always in the run just before; only keys it lacks (new to
-- the list, or without an answer there) are looked up further back. NO_RESPONSE,
-- REQUEST_FAILED and NOT_A_CONTACT are not answers (is_answer), so they never count as a
-- change. The INSERT runs once per channel of the run ($channel), so each join has the memory
-- to itself (see 10_capability).
DELETE FROM capability_changes WHERE run_id = $run_id;

INSERT INTO capability_changes
WITH this_run AS (
    SELECT started_at FROM runs WHERE run_id = $run_id
),

previous_run AS (
    SELECT run_id FROM runs
    WHERE started_at < (SELECT started_at FROM this_run) AND run_id <> $run_id
    ORDER BY started_at DESC LIMIT 1
),

current AS (
    SELECT contact_key, channel, status FROM capability
    WHERE run_id = $run_id AND channel = $channel AND NOT reused
      AND is_answer(status)
),

last_run AS (
    SELECT contact_key, channel, run_id, status FROM capability
    WHERE run_id = (SELECT run_id FROM previous_run) AND channel = $channel
      AND is_answer(status)
),

-- One pass against the previous run: the changes, and the (few) keys it has no answer for.
paired AS MATERIALIZED (
    SELECT cur.contact_key, cur.channel, cur.status,
        p.run_id AS previous_run_id, p.status AS previous_status
    FROM current cur
    LEFT JOIN last_run p USING (contact_key, channel)
    WHERE p.status IS NULL OR p.status <> cur.status
),

further_back AS (
    SELECT
        c.contact_key,
        c.channel,
        arg_max(c.run_id, r.started_at) AS run_id,
        arg_max(c.status, r.started_at) AS status
    FROM capability c
    JOIN runs r USING (run_id)
    SEMI JOIN (SELECT contact_key, channel FROM paired WHERE previous_status IS NULL) m
        USING (contact_key, channel)
    WHERE r.started_at < (SELECT started_at FROM this_run) AND c.channel = $channel
      AND c.run_id NOT IN ($run_id, coalesce((SELECT run_id FROM previous_run), ''))
      AND is_answer(c.status)
    GROUP BY c.contact_key, c.channel
),

changed AS (
    SELECT contact_key, channel, status, previous_run_id, previous_status
    FROM paired WHERE previous_status IS NOT NULL
    UNION ALL
    SELECT p.contact_key, p.channel, p.status, f.run_id, f.status
    FROM paired p JOIN further_back f USING (contact_key, channel)
    WHERE p.previous_status IS NULL AND f.status <> p.status
)

SELECT
    $run_id AS run_id,
    contact_key,
    channel,
    previous_run_id,
    previous_status,
    status AS new_status,
    CASE
        WHEN status IN ('CAPABILITY_FULL', 'CAPABILITY_PARTIAL')
            AND previous_status NOT IN ('CAPABILITY_FULL', 'CAPABILITY_PARTIAL') THEN 'gained'
        WHEN previous_status IN ('CAPABILITY_FULL', 'CAPABILITY_PARTIAL')
            AND status NOT IN ('CAPABILITY_FULL', 'CAPABILITY_PARTIAL') THEN 'lost'
        ELSE 'changed'
    END AS change
FROM changed;
