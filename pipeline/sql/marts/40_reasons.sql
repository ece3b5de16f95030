-- reasons: one row per run x channel x status x reason_code (grain);
-- key (run_id, channel, status, reason_code). Why targets are not (fully) reachable, with the
-- share of the channel's targets each reason accounts for. Targets without a reason
-- (e.g. CAPABILITY_FULL) are not counted here.
DELETE FROM reasons WHERE run_id = $run_id;

INSERT INTO reasons
WITH per_channel AS (
    SELECT channel, count(*) AS targets FROM capability WHERE run_id = $run_id GROUP BY channel
)

SELECT
    c.run_id,
    c.channel,
    c.status,
    coalesce(c.reason_code, CASE WHEN c.status = 'REQUEST_FAILED' THEN 'REQUEST_FAILED'
        WHEN c.status = 'NO_RESPONSE' THEN 'NO_RESPONSE' END) AS reason_code,
    count(*) AS targets,
    round(count(*) / any_value(p.targets), 4) AS share_of_channel
FROM capability c
JOIN per_channel p USING (channel)
WHERE c.run_id = $run_id
  AND (c.reason_code IS NOT NULL OR c.status IN ('NO_RESPONSE', 'REQUEST_FAILED'))
GROUP BY c.run_id, c.channel, c.status, 4;
