-- reachability: one row per run x channel (grain); key (run_id, channel).
-- Counts (and shares) per status add up to `targets` (and 1); reachable = FULL + PARTIAL;
-- latency over this run's callbacks only (reused answers have none).
-- Each `*_share` is over all targets; each `*_share_of_answered` over the `answered` targets
-- (one of Sinch's four statuses: NO_RESPONSE, REQUEST_FAILED and NOT_A_CONTACT left out), NULL
-- when none is.
DELETE FROM reachability WHERE run_id = $run_id;

INSERT INTO reachability BY NAME
SELECT
    run_id,
    channel,
    count(*) AS targets,
    unnest(status_counts(status)),  -- capability_full ... request_failed, reachable
    count(*) FILTER (WHERE status IN ('CAPABILITY_FULL', 'CAPABILITY_PARTIAL'))
        / count(*) AS reachable_share,
    count(*) FILTER (WHERE status = 'CAPABILITY_FULL') / count(*)
        AS capability_full_share,
    count(*) FILTER (WHERE status = 'CAPABILITY_PARTIAL') / count(*)
        AS capability_partial_share,
    count(*) FILTER (WHERE status = 'NO_CAPABILITY') / count(*)
        AS no_capability_share,
    count(*) FILTER (WHERE status = 'CAPABILITY_UNKNOWN') / count(*)
        AS capability_unknown_share,
    count(*) FILTER (WHERE status = 'NO_RESPONSE') / count(*) AS no_response_share,
    count(*) FILTER (WHERE status = 'REQUEST_FAILED') / count(*)
        AS request_failed_share,
    count(*) FILTER (WHERE reused) AS reused,
    round(quantile_cont(latency_seconds, 0.5), 3) AS latency_p50_seconds,
    round(quantile_cont(latency_seconds, 0.95), 3) AS latency_p95_seconds,
    count(*) FILTER (WHERE is_answer(status)) AS answered,
    count(*) FILTER (WHERE status IN ('CAPABILITY_FULL', 'CAPABILITY_PARTIAL'))
        / nullif(answered, 0) AS reachable_share_of_answered,
    count(*) FILTER (WHERE status = 'CAPABILITY_FULL') / nullif(answered, 0)
        AS capability_full_share_of_answered,
    count(*) FILTER (WHERE status = 'CAPABILITY_PARTIAL') / nullif(answered, 0)
        AS capability_partial_share_of_answered,
    count(*) FILTER (WHERE status = 'NO_CAPABILITY') / nullif(answered, 0)
        AS no_capability_share_of_answered,
    count(*) FILTER (WHERE status = 'CAPABILITY_UNKNOWN') / nullif(answered, 0)
        AS capability_unknown_share_of_answered,
    count(*) FILTER (WHERE status = 'NOT_A_CONTACT') AS not_a_contact,
    count(*) FILTER (WHERE status = 'NOT_A_CONTACT') / count(*) AS not_a_contact_share
FROM capability
WHERE run_id = $run_id
GROUP BY run_id, channel;
