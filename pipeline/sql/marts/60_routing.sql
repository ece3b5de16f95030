-- routing: one row per run x first channel (grain); key (run_id, first_channel), where a NULL
-- first_channel counts the contacts no channel reaches. How many contacts a sender would send
-- on each channel first: the first of `channel_order` (reachable channels, FULL before
-- PARTIAL, then the configured preference), taken with arg_min by the same channel_rank
-- rather than by building every contact's list. `contacts` adds up to the run's contacts.
DELETE FROM routing WHERE run_id = $run_id;

INSERT INTO routing
WITH firsts AS (
    SELECT
        arg_min(channel, channel_rank(status, channel))
            FILTER (WHERE status IN ('CAPABILITY_FULL', 'CAPABILITY_PARTIAL')) AS first_channel
    FROM capability
    WHERE run_id = $run_id
    GROUP BY contact_key
)

SELECT
    $run_id AS run_id,
    first_channel,
    count(*) AS contacts,
    count(*) / sum(count(*)) OVER () AS share
FROM firsts
GROUP BY first_channel;
