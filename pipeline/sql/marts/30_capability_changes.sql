-- capability_changes: one row per contact x channel x run where the status changed (grain);
-- key (run_id, contact_key, channel). Compares this run's answer with the same contact and
-- channel in the most recent earlier run that had an answer for it. NO_RESPONSE and
-- REQUEST_FAILED are not answers, so they never count as a change.
DELETE FROM capability_changes WHERE run_id = $run_id;

INSERT INTO capability_changes
WITH current AS (
    SELECT c.contact_key, c.channel, c.status, r.started_at
    FROM capability c JOIN runs r USING (run_id)
    WHERE c.run_id = $run_id AND NOT c.reused
      AND c.status NOT IN ('NO_RESPONSE', 'REQUEST_FAILED')
),

previous AS (
    SELECT
        c.contact_key,
        c.channel,
        arg_max(c.run_id, r.started_at) AS previous_run_id,
        arg_max(c.status, r.started_at) AS previous_status
    FROM capability c
    JOIN runs r USING (run_id)
    JOIN current cur USING (contact_key, channel)
    WHERE c.run_id <> $run_id AND r.started_at < cur.started_at
      AND c.status NOT IN ('NO_RESPONSE', 'REQUEST_FAILED')
    GROUP BY c.contact_key, c.channel
)

SELECT
    $run_id AS run_id,
    cur.contact_key,
    cur.channel,
    p.previous_run_id,
    p.previous_status,
    cur.status AS new_status,
    CASE
        WHEN cur.status IN ('CAPABILITY_FULL', 'CAPABILITY_PARTIAL')
            AND p.previous_status NOT IN ('CAPABILITY_FULL', 'CAPABILITY_PARTIAL') THEN 'gained'
        WHEN p.previous_status IN ('CAPABILITY_FULL', 'CAPABILITY_PARTIAL')
            AND cur.status NOT IN ('CAPABILITY_FULL', 'CAPABILITY_PARTIAL') THEN 'lost'
        ELSE 'changed'
    END AS change
FROM current cur
JOIN previous p USING (contact_key, channel)
WHERE p.previous_status <> cur.status;
