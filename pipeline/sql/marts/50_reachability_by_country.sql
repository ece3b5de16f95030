-- reachability_by_country: one row per run x country x channel (grain);
-- key (run_id, country, channel). As `reachability`, split by the target's country (the
-- phone number's region code; 'unknown' for targets asked by contact id): per channel the
-- rows add up to that channel's `reachability` row.
DELETE FROM reachability_by_country WHERE run_id = $run_id;

INSERT INTO reachability_by_country BY NAME
SELECT
    run_id,
    coalesce(country, 'unknown') AS country,
    channel,
    count(*) AS targets,
    unnest(status_counts(status)),  -- capability_full ... request_failed, reachable
    count(*) FILTER (WHERE status IN ('CAPABILITY_FULL', 'CAPABILITY_PARTIAL'))
        / count(*) AS reachable_share,
    count(*) FILTER (WHERE status = 'NOT_A_CONTACT') AS not_a_contact
FROM capability
WHERE run_id = $run_id
GROUP BY run_id, 2, channel;
