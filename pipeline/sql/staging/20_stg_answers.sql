-- stg_answers: one row per contact x channel answered in this run (grain);
-- key (contact_key, channel). Channel '' holds callbacks about a whole request (e.g.
-- CONTACT_NOT_FOUND). Notifications are unique per request, channel and identity, so a
-- contact can have several answers for a channel only when it was asked more than once or by
-- contact id. Only the contacts in the build's scope (all in a whole build; build_scope.py).
CREATE OR REPLACE TEMP TABLE stg_answers AS
SELECT
    r.contact_key,
    n.channel,
    n.capability_status AS status,
    n.reason_code,
    n.reason_sub_code,
    n.reason_channel_code,
    n.channel_capabilities,
    n.request_id,
    nullif(n.identity, '') AS identity,
    coalesce(n.event_time, n.received_at) AS checked_at,
    epoch(n.received_at) - epoch(r.accepted_at) AS latency_seconds
FROM requests r
JOIN notifications n ON n.request_id = r.request_id
WHERE r.run_id = $run_id AND in_build_scope(r.contact_key);

-- Only contacts that can have several answers for a channel are looked at (few); among them
-- the latest check wins, ties broken by the newest request, then by identity.
DELETE FROM stg_answers WHERE rowid IN (
    SELECT rowid FROM stg_answers
    WHERE contact_key IN (
        SELECT contact_key FROM stg_request_outcomes WHERE requests > 1 OR by_contact_id)
    QUALIFY row_number() OVER (
        PARTITION BY contact_key, channel
        ORDER BY checked_at DESC, request_id DESC, identity) > 1
);
