-- Tables of sampled runs (issue 14). Working state: sample_frame, sample_members; published:
-- estimates.

-- sample_frame: one row per sampled run x stratum x channel (grain); key (run_id, stratum,
-- channel). The list's targets in the stratum (population) and how many were sampled.
CREATE TABLE IF NOT EXISTS sample_frame (
    run_id VARCHAR NOT NULL,
    stratum VARCHAR NOT NULL,
    channel VARCHAR NOT NULL,
    population BIGINT NOT NULL,
    sample BIGINT NOT NULL
);

-- sample_members: one row per sampled run x contact drawn (grain); key (run_id, contact_key).
CREATE TABLE IF NOT EXISTS sample_members (
    run_id VARCHAR NOT NULL,
    contact_key VARCHAR NOT NULL,
    stratum VARCHAR NOT NULL
);

-- estimates: one row per sampled run x channel x stratum (grain); key (run_id, channel,
-- stratum), stratum NULL for the whole list (the stratified estimate).
CREATE TABLE IF NOT EXISTS estimates (
    run_id VARCHAR NOT NULL,
    channel VARCHAR NOT NULL,
    stratum VARCHAR,
    level DOUBLE NOT NULL,                -- confidence level of [low, high]
    sample BIGINT NOT NULL,               -- sampled targets
    population BIGINT NOT NULL,           -- the list's targets
    reachable BIGINT NOT NULL,            -- sampled targets CAPABILITY_FULL or _PARTIAL
    no_response BIGINT NOT NULL,          -- sampled targets without an answer (in the denominator)
    share DOUBLE,                         -- estimated reachable share of the list
    low DOUBLE,
    high DOUBLE,
    no_response_share DOUBLE,
    reachable_estimate BIGINT,            -- share x population: reachable targets in the list
    reachable_low BIGINT,
    reachable_high BIGINT
);

-- late_answers: one row per run x contact x channel that reuses an answer which landed after
-- its own run had ended (grain); key (run_id, contact_key, channel). `origin_run_id` asked.
CREATE TABLE IF NOT EXISTS late_answers (
    run_id VARCHAR NOT NULL,
    origin_run_id VARCHAR NOT NULL,
    contact_key VARCHAR NOT NULL,
    channel VARCHAR NOT NULL,
    identity VARCHAR,
    status VARCHAR NOT NULL,
    reason_code VARCHAR,
    channel_capabilities VARCHAR[],
    request_id VARCHAR NOT NULL,
    checked_at TIMESTAMPTZ NOT NULL
);
