-- capability: one row per run x contact x channel asked (grain); key (run_id, contact_key, channel).
-- Every target of the run appears exactly once (DESIGN §7 rule 1):
--   a fresh earlier answer (reused = true), else this run's answer for the channel,
--   else a callback about the whole request (channel '', e.g. CONTACT_NOT_FOUND),
--   else NO_RESPONSE when a request was accepted, else REQUEST_FAILED with the error.
-- Reads the staging models stg_answers and stg_request_outcomes. A scoped build (after one
-- before, pipeline/build_scope.py) replaces only the rows of the contacts in its scope.
-- The INSERT runs once per channel of the run ($channel): joining a third of the targets to a
-- third of the answers fits the memory limit where the whole join spilled to disk (20 s against
-- 12 s at 10M targets in `make bench-warehouse`).
DELETE FROM capability WHERE run_id = $run_id AND in_build_scope(contact_key);

INSERT INTO capability
WITH request_answers AS (
    SELECT * FROM stg_answers WHERE channel = ''
),

-- Contacts none of whose requests was accepted (rare): their unanswered targets are
-- REQUEST_FAILED, everyone else's are NO_RESPONSE. $nothing_sent (a constant) is true only
-- for a run built before `plan` made any request: then nothing was sent for anyone.
failed AS (
    SELECT contact_key, error FROM stg_request_outcomes WHERE NOT accepted
),

-- $reuse_runs: the runs whose answers this run reuses, as constants, so that only their row
-- groups of `capability` are read. Only answers are ever reused (never NO_RESPONSE).
reused AS (
    SELECT run_id, contact_key, channel, identity, status, reason_code, channel_capabilities,
        request_id, checked_at
    FROM capability
    WHERE run_id IN $reuse_runs AND channel = $channel
      AND status NOT IN ('NO_RESPONSE', 'REQUEST_FAILED')
    UNION ALL
    -- answers that landed after their own run's deadline, kept by `plan` (pipeline/late.py)
    SELECT origin_run_id, contact_key, channel, identity, status, reason_code,
        channel_capabilities, request_id, checked_at
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
        CASE WHEN t.action = 'reuse' THEN u.status
            WHEN a.contact_key IS NOT NULL THEN a.status
            WHEN ra.contact_key IS NOT NULL THEN ra.status
            WHEN f.contact_key IS NOT NULL OR $nothing_sent THEN 'REQUEST_FAILED'
            ELSE 'NO_RESPONSE' END AS status,
        CASE WHEN t.action = 'reuse' THEN u.reason_code
            ELSE coalesce(a.reason_code, ra.reason_code) END AS reason_code,
        CASE WHEN t.action = 'reuse' THEN u.channel_capabilities
            ELSE coalesce(a.channel_capabilities, ra.channel_capabilities) END
            AS channel_capabilities,
        CASE WHEN t.action = 'reuse' THEN u.request_id
            ELSE coalesce(a.request_id, ra.request_id) END AS request_id,
        CASE WHEN t.action = 'reuse' THEN u.checked_at
            ELSE coalesce(a.checked_at, ra.checked_at) END AS checked_at,
        CASE WHEN t.action <> 'reuse' THEN coalesce(a.latency_seconds, ra.latency_seconds) END
            AS latency_seconds,
        CASE WHEN t.action <> 'reuse' AND a.contact_key IS NULL AND ra.contact_key IS NULL
            AND (f.contact_key IS NOT NULL OR $nothing_sent)
            THEN coalesce(f.error, 'no request was sent') END AS error
    FROM targets t
    LEFT JOIN (SELECT * FROM stg_answers WHERE channel = $channel) a
        ON a.contact_key = t.contact_key AND a.channel = t.channel
    LEFT JOIN request_answers ra ON ra.contact_key = t.contact_key
    LEFT JOIN failed f ON f.contact_key = t.contact_key
    LEFT JOIN reused u
        ON t.action = 'reuse' AND u.run_id = t.reuse_run_id AND u.contact_key = t.contact_key
        AND u.channel = t.channel
    WHERE t.run_id = $run_id AND t.channel = $channel AND in_build_scope(t.contact_key)
)

SELECT
    $run_id AS run_id, contact_key, contact_id, channel, identity, status, reason_code,
    channel_capabilities, request_id, checked_at, latency_seconds, reused, error, country
FROM decided;
