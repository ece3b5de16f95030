-- capability_latest: one row per contact x channel (grain); key (contact_key, channel).
-- The most recent real answer (Sinch's four statuses) across all runs, and when it was checked.
CREATE OR REPLACE VIEW capability_latest AS
SELECT
    contact_key,
    channel,
    arg_max(identity, checked_at) AS identity,
    arg_max(contact_id, checked_at) AS contact_id,
    arg_max(status, checked_at) AS status,
    arg_max(reason_code, checked_at) AS reason_code,
    arg_max(channel_capabilities, checked_at) AS channel_capabilities,
    max(checked_at) AS checked_at,
    arg_max(run_id, checked_at) AS run_id
FROM capability
WHERE status IN ('CAPABILITY_FULL', 'CAPABILITY_PARTIAL', 'NO_CAPABILITY', 'CAPABILITY_UNKNOWN')
    AND checked_at IS NOT NULL
GROUP BY contact_key, channel;
