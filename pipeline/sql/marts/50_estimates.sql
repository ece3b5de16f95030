-- estimates: one row per sampled run x channel x stratum (grain); key (run_id, channel,
-- stratum), stratum NULL for the whole list. Empty for a run that was not sampled.
-- share = CAPABILITY_FULL + CAPABILITY_PARTIAL over ALL sampled targets (NO_RESPONSE and
-- REQUEST_FAILED stay in the denominator; NO_RESPONSE is also shown apart).
-- Interval: Wilson score at 95%, finite-population corrected through the effective sample
-- size m = n / fpc, fpc = (N - n) / (N - 1) (a stratum sampled whole has m = infinity: exact).
-- The whole list: the stratified estimator, share = sum of W_h p_h with W_h = N_h / N, variance
-- sum of W_h^2 fpc_h p_h (1 - p_h) / n_h, and Wilson on the effective size p (1 - p) / variance.
-- Reads sample_frame, sample_members (written by `capaudit run --sample`) and capability.
DELETE FROM estimates WHERE run_id = $run_id;

-- z = 1.959963984540054 (two-sided 95%), z^2 = 3.841458820694124
CREATE OR REPLACE TEMP MACRO wilson_centre(p, m) AS
    (p + 3.841458820694124 / (2 * m)) / (1 + 3.841458820694124 / m);

CREATE OR REPLACE TEMP MACRO wilson_half(p, m) AS
    1.959963984540054 / (1 + 3.841458820694124 / m)
    * sqrt(p * (1 - p) / m + 3.841458820694124 / (4 * m * m));

INSERT INTO estimates
WITH members AS (
    SELECT m.stratum, c.channel,
        count(*) FILTER (WHERE c.status IN ('CAPABILITY_FULL', 'CAPABILITY_PARTIAL'))
            AS reachable,
        count(*) FILTER (WHERE c.status = 'NO_RESPONSE') AS no_response
    FROM sample_members m
    JOIN capability c ON c.run_id = m.run_id AND c.contact_key = m.contact_key
    WHERE m.run_id = $run_id AND c.run_id = $run_id
    GROUP BY ALL
),

strata AS (
    SELECT f.stratum, f.channel, f.population, f.sample,
        coalesce(m.reachable, 0) AS reachable, coalesce(m.no_response, 0) AS no_response,
        coalesce(m.reachable, 0) / f.sample AS p,
        coalesce(m.no_response, 0) / f.sample AS q,
        CASE WHEN f.population > 1
            THEN (f.population - f.sample) / (f.population - 1) ELSE 0 END AS fpc
    FROM sample_frame f
    LEFT JOIN members m USING (stratum, channel)
    WHERE f.run_id = $run_id AND f.sample > 0
),

-- Strata left without a sample (a sample smaller than the number of strata) cannot be
-- estimated: the weights are those of the sampled strata, and `population` is the whole list.
weighted AS (
    SELECT *, population / sum(population) OVER (PARTITION BY channel) AS weight FROM strata
),

per_stratum AS (
    SELECT channel, stratum, sample, population, reachable, no_response, p AS share,
        q AS no_response_share,
        CASE WHEN fpc = 0 THEN 'infinity'::DOUBLE ELSE sample / fpc END AS m
    FROM strata
),

whole AS (
    SELECT channel, NULL::VARCHAR AS stratum, sum(sample) AS sample,
        (SELECT sum(population) FROM sample_frame f
            WHERE f.run_id = $run_id AND f.channel = w.channel) AS population,
        sum(reachable) AS reachable, sum(no_response) AS no_response,
        sum(weight * p) AS share, sum(weight * q) AS no_response_share,
        sum(weight * weight * fpc * p * (1 - p) / sample) AS variance,
        sum(weight * fpc) AS fpc_w
    FROM weighted w
    GROUP BY channel
),

estimated AS (
    SELECT channel, stratum, sample, population, reachable, no_response, share,
        no_response_share, m
    FROM per_stratum
    UNION ALL
    SELECT channel, stratum, sample, population, reachable, no_response, share,
        no_response_share,
        CASE WHEN variance > 0 THEN share * (1 - share) / variance
            WHEN fpc_w = 0 THEN 'infinity'::DOUBLE
            ELSE sample / fpc_w END AS m
    FROM whole
),

bounded AS (
    SELECT *,
        greatest(0.0, wilson_centre(share, m) - wilson_half(share, m)) AS low,
        least(1.0, wilson_centre(share, m) + wilson_half(share, m)) AS high
    FROM estimated
)

SELECT
    $run_id AS run_id, channel, stratum, 0.95 AS level, sample, population, reachable,
    no_response, share, low, high, no_response_share,
    round(share * population)::BIGINT AS reachable_estimate,
    round(low * population)::BIGINT AS reachable_low,
    round(high * population)::BIGINT AS reachable_high
FROM bounded;
