-- capability: one row per run x contact x channel asked (grain); key (run_id, contact_key, channel).
-- Every target of the run appears exactly once (DESIGN §7 rule 1):
--   a fresh earlier answer (reused = true), else this run's answer for the channel,
--   else a callback about the whole request (channel '', e.g. CONTACT_NOT_FOUND),
--   else REQUEST_FAILED with the error when the channel's latest request was refused,
--   else NO_RESPONSE when a request was accepted, else REQUEST_FAILED with the error.
-- An answer (or a refusal) saying Sinch has no contact for the target (CONTACT_NOT_FOUND) is
-- NOT_A_CONTACT: with `[contacts] create_missing` the contact is created and asked again, and
-- the later answer wins.
-- Reads the staging models stg_answers and stg_request_outcomes. A scoped build (after one
-- before, pipeline/build_scope.py) replaces only the rows of the contacts in its scope.
-- The INSERT runs once per channel of the run ($channel): joining a third of the targets to a
-- third of the answers fits the memory limit where the whole join spilled to disk (20 s against
-- 12 s at 10M targets in `make bench-warehouse`).
DELETE FROM capability WHERE run_id = $run_id AND in_build_scope(contact_key);

-- BY NAME: columns added since the first version (ALTERs in sql/tables/) sit in the order those
-- files run, which is not the order they were added in.
INSERT INTO capability BY NAME
WITH request_answers AS (
    SELECT * FROM stg_answers WHERE channel = ''
),

-- Contacts none of whose requests was accepted (rare): their unanswered targets are
-- REQUEST_FAILED, everyone else's are NO_RESPONSE. $nothing_sent (a constant) is true only
-- for a run built before `plan` made any request: then nothing was sent for anyone.
failed AS (
    SELECT contact_key, error FROM stg_request_outcomes WHERE NOT accepted
),

-- The channels whose latest request was refused (its error, details and what it meant), for
-- the few contacts with a refused request: a contact asked by identities and by contact id
-- can have one request accepted and the other refused.
refused AS (
    SELECT contact_key, channel, error, error_details, failure_reason
    FROM (
        SELECT contact_key, unnest(channels) AS channel, state, error, error_details,
            failure_reason, request_id
        FROM requests
        WHERE run_id = $run_id AND contact_key IN (
            SELECT contact_key FROM stg_request_outcomes WHERE has_refusal)
    )
    WHERE channel = $channel
    QUALIFY row_number() OVER (PARTITION BY contact_key ORDER BY request_id DESC) = 1
        AND state = 'failed'
),

-- $reuse_runs: the runs whose answers this run reuses, as constants, so that only their row
-- groups of `capability` are read. Only answers are ever reused (never NO_RESPONSE).
reused AS (
    SELECT run_id, contact_key, channel, identity, status, reason_code, channel_capabilities,
        request_id, checked_at, reason_sub_code, reason_channel_code,
        coalesce(answered_run_id, run_id) AS answered_run_id
    FROM capability
    WHERE run_id IN $reuse_runs AND channel = $channel
      AND is_answer(status)
    UNION ALL
    -- answers that landed after their own run's deadline, kept by `plan` (pipeline/late.py)
    SELECT origin_run_id, contact_key, channel, identity, status, reason_code,
        channel_capabilities, request_id, checked_at, NULL, NULL, origin_run_id
    FROM late_answers
    WHERE run_id = $run_id AND channel = $channel
),

decided AS (
    SELECT
        t.contact_key,
        t.contact_id,
        t.channel,
        t.country,
        t.action = 'reuse' AS reused,
        CASE WHEN t.action = 'reuse' THEN u.identity
            ELSE coalesce(t.identity, a.identity, ra.identity) END AS identity,
        -- the reason of the answer (or refusal) the status comes from
        CASE WHEN t.action = 'reuse' THEN u.reason_code
            WHEN a.contact_key IS NOT NULL THEN a.reason_code
            WHEN ra.contact_key IS NOT NULL THEN ra.reason_code
            ELSE rf.failure_reason END AS reason,
        CASE WHEN t.action = 'reuse' THEN u.status
            WHEN reason = 'CONTACT_NOT_FOUND' THEN 'NOT_A_CONTACT'
            WHEN a.contact_key IS NOT NULL THEN a.status
            WHEN ra.contact_key IS NOT NULL THEN ra.status
            WHEN rf.contact_key IS NOT NULL OR f.contact_key IS NOT NULL OR $nothing_sent
                THEN 'REQUEST_FAILED'
            ELSE 'NO_RESPONSE' END AS status,
        CASE WHEN t.action = 'reuse' THEN u.reason_sub_code
            WHEN a.contact_key IS NOT NULL THEN a.reason_sub_code
            ELSE ra.reason_sub_code END AS reason_sub_code,
        CASE WHEN t.action = 'reuse' THEN u.reason_channel_code
            WHEN a.contact_key IS NOT NULL THEN a.reason_channel_code
            ELSE ra.reason_channel_code END AS reason_channel_code,
        CASE WHEN t.action = 'reuse' THEN u.channel_capabilities
            ELSE coalesce(a.channel_capabilities, ra.channel_capabilities) END
            AS channel_capabilities,
        CASE WHEN t.action = 'reuse' THEN u.request_id
            ELSE coalesce(a.request_id, ra.request_id) END AS request_id,
        -- the run whose check gave the answer: the one reused, or this run for its own
        CASE WHEN t.action = 'reuse' THEN u.answered_run_id
            WHEN a.contact_key IS NOT NULL OR ra.contact_key IS NOT NULL THEN $run_id
            END AS answered_run_id,
        CASE WHEN t.action = 'reuse' THEN u.checked_at
            ELSE coalesce(a.checked_at, ra.checked_at) END AS checked_at,
        CASE WHEN t.action <> 'reuse' THEN coalesce(a.latency_seconds, ra.latency_seconds) END
            AS latency_seconds,
        CASE WHEN t.action <> 'reuse' AND a.contact_key IS NULL AND ra.contact_key IS NULL
            AND (rf.contact_key IS NOT NULL OR f.contact_key IS NOT NULL OR $nothing_sent)
            THEN coalesce(rf.error, f.error, 'no request was sent') END AS error,
        CASE WHEN t.action <> 'reuse' AND a.contact_key IS NULL AND ra.contact_key IS NULL
            THEN rf.error_details END AS error_details
    FROM targets t
    LEFT JOIN (SELECT * FROM stg_answers WHERE channel = $channel) a
        ON a.contact_key = t.contact_key AND a.channel = t.channel
    LEFT JOIN request_answers ra ON ra.contact_key = t.contact_key
    LEFT JOIN failed f ON f.contact_key = t.contact_key
    LEFT JOIN refused rf ON rf.contact_key = t.contact_key
    LEFT JOIN reused u
        ON t.action = 'reuse' AND u.run_id = t.reuse_run_id AND u.contact_key = t.contact_key
        AND u.channel = t.channel
    WHERE t.run_id = $run_id AND t.channel = $channel AND in_build_scope(t.contact_key)
)

SELECT
    $run_id AS run_id, contact_key, contact_id, channel, identity, status, reason AS reason_code,
    channel_capabilities, request_id, checked_at, latency_seconds, reused, error, country,
    reason_sub_code, reason_channel_code, error_details, answered_run_id
FROM decided;
