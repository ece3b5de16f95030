-- reachability_by_country: one row per run x country x channel (grain);
-- key (run_id, country, channel). As `reachability`, split by the target's country (the
-- phone number's region code; 'unknown' for targets asked by contact id): per channel the
-- rows add up to that channel's `reachability` row.
DELETE FROM reachability_by_country WHERE run_id = $run_id;

INSERT INTO reachability_by_country
SELECT
    run_id,
    coalesce(country, 'unknown') AS country,
    channel,
    count(*) AS targets,
    count(*) FILTER (WHERE status = 'CAPABILITY_FULL') AS capability_full,
    count(*) FILTER (WHERE status = 'CAPABILITY_PARTIAL') AS capability_partial,
    count(*) FILTER (WHERE status = 'NO_CAPABILITY') AS no_capability,
    count(*) FILTER (WHERE status = 'CAPABILITY_UNKNOWN') AS capability_unknown,
    count(*) FILTER (WHERE status = 'NO_RESPONSE') AS no_response,
    count(*) FILTER (WHERE status = 'REQUEST_FAILED') AS request_failed,
    count(*) FILTER (WHERE status IN ('CAPABILITY_FULL', 'CAPABILITY_PARTIAL')) AS reachable,
    count(*) FILTER (WHERE status IN ('CAPABILITY_FULL', 'CAPABILITY_PARTIAL'))
        / count(*) AS reachable_share
FROM capability
WHERE run_id = $run_id
GROUP BY run_id, 2, channel;
