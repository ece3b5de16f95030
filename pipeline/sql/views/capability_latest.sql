-- capability_latest: one row per contact x channel (grain); key (contact_key, channel).
-- The most recent real answer (Sinch's four statuses) across all runs, when it was checked, the
-- run and request whose check produced it (`answered_run_id`, `request_id`), and the newest run
-- that published it (`run_id`: a run that reused the answer publishes it again).
CREATE OR REPLACE VIEW capability_latest AS
SELECT
    c.contact_key,
    c.channel,
    arg_max(c.identity, c.checked_at) AS identity,
    arg_max(c.contact_id, c.checked_at) AS contact_id,
    arg_max(c.status, c.checked_at) AS status,
    arg_max(c.reason_code, c.checked_at) AS reason_code,
    arg_max(c.channel_capabilities, c.checked_at) AS channel_capabilities,
    max(c.checked_at) AS checked_at,
    arg_max(coalesce(c.answered_run_id, c.run_id), c.checked_at) AS answered_run_id,
    arg_max(c.request_id, c.checked_at) AS request_id,
    arg_max(c.run_id, (c.checked_at, r.started_at)) AS run_id
FROM capability c
LEFT JOIN runs r USING (run_id)
WHERE c.status IN ('CAPABILITY_FULL', 'CAPABILITY_PARTIAL', 'NO_CAPABILITY', 'CAPABILITY_UNKNOWN')
    AND c.checked_at IS NOT NULL
GROUP BY c.contact_key, c.channel;
