-- routing: one row per run x first channel (grain); key (run_id, first_channel), where a NULL
-- first_channel counts the contacts no channel reaches. How many contacts a sender would send
-- on each channel first: the first of `channel_order` (reachable channels, FULL before
-- PARTIAL, then the configured preference). `contacts` adds up to the run's contacts.
DELETE FROM routing WHERE run_id = $run_id;

INSERT INTO routing
SELECT
    run_id,
    first_choice AS first_channel,
    count(*) AS contacts,
    count(*) / sum(count(*)) OVER () AS share
FROM channel_order
WHERE run_id = $run_id
GROUP BY run_id, first_choice;
