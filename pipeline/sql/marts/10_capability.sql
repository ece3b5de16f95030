-- capability: one row per run x contact x channel asked (grain); key (run_id, contact_key, channel).
-- Every target of the run appears exactly once (DESIGN §7 rule 1):
--   a fresh earlier answer (reused = true), else this run's latest callback for the channel,
--   else a callback about the whole request (e.g. CONTACT_NOT_FOUND),
--   else NO_RESPONSE when a request was accepted, else REQUEST_FAILED with the error.
DELETE FROM capability WHERE run_id = $run_id;

INSERT INTO capability
WITH run_targets AS (
    SELECT contact_key, contact_id, channel, identity, action, reuse_run_id
    FROM targets WHERE run_id = $run_id
),

run_requests AS (
    SELECT request_id, contact_key, state, error, accepted_at
    FROM requests WHERE run_id = $run_id
),

callbacks AS (
    SELECT
        r.contact_key,
        n.channel,
        n.identity,
        n.capability_status AS status,
        n.reason_code,
        n.channel_capabilities,
        n.request_id,
        coalesce(n.event_time, n.received_at) AS checked_at,
        epoch(n.received_at) - epoch(r.accepted_at) AS latency_seconds
    FROM run_requests r
    JOIN notifications n ON n.request_id = r.request_id
),

-- The latest check wins: a re-query after a transient failure answers later.
channel_answers AS (
    SELECT contact_key, channel, arg_max(callbacks, checked_at) AS answer
    FROM callbacks WHERE channel <> ''
    GROUP BY contact_key, channel
),

request_answers AS (
    SELECT contact_key, arg_max(callbacks, checked_at) AS answer
    FROM callbacks WHERE channel = ''
    GROUP BY contact_key
),

request_outcomes AS (
    SELECT
        contact_key,
        bool_or(state = 'accepted') AS accepted,
        arg_max(coalesce(error, 'request ' || state), request_id) AS error
    FROM run_requests
    GROUP BY contact_key
),

reused AS (
    SELECT t.contact_key, t.channel, c.*
    FROM run_targets t
    JOIN capability c
        ON c.run_id = t.reuse_run_id AND c.contact_key = t.contact_key AND c.channel = t.channel
    WHERE t.action = 'reuse'
),

decided AS (
    SELECT
        t.contact_key,
        t.contact_id,
        t.channel,
        t.action,
        coalesce(ca.answer, ra.answer) AS answer,
        ro.accepted,
        ro.error,
        u.identity AS reused_identity,
        u.status AS reused_status,
        u.reason_code AS reused_reason,
        u.channel_capabilities AS reused_capabilities,
        u.request_id AS reused_request_id,
        u.checked_at AS reused_checked_at,
        coalesce(t.identity, nullif(ca.answer.identity, '')) AS identity
    FROM run_targets t
    LEFT JOIN channel_answers ca ON ca.contact_key = t.contact_key AND ca.channel = t.channel
    LEFT JOIN request_answers ra ON ra.contact_key = t.contact_key
    LEFT JOIN request_outcomes ro ON ro.contact_key = t.contact_key
    LEFT JOIN reused u ON u.contact_key = t.contact_key AND u.channel = t.channel
)

SELECT
    $run_id AS run_id,
    contact_key,
    contact_id,
    channel,
    coalesce(identity, reused_identity) AS identity,
    CASE
        WHEN action = 'reuse' THEN reused_status
        WHEN answer IS NOT NULL THEN answer.status
        WHEN accepted THEN 'NO_RESPONSE'
        ELSE 'REQUEST_FAILED'
    END AS status,
    CASE WHEN action = 'reuse' THEN reused_reason ELSE answer.reason_code END AS reason_code,
    CASE WHEN action = 'reuse' THEN reused_capabilities ELSE answer.channel_capabilities END
        AS channel_capabilities,
    CASE WHEN action = 'reuse' THEN reused_request_id ELSE answer.request_id END AS request_id,
    CASE WHEN action = 'reuse' THEN reused_checked_at ELSE answer.checked_at END AS checked_at,
    CASE WHEN action = 'reuse' THEN NULL ELSE answer.latency_seconds END AS latency_seconds,
    action = 'reuse' AS reused,
    CASE
        WHEN action <> 'reuse' AND answer IS NULL AND NOT coalesce(accepted, false)
            THEN coalesce(error, 'no request was sent')
    END AS error
FROM decided;
