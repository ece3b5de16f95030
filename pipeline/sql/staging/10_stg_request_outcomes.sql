-- stg_request_outcomes: one row per contact of the run (grain); key (contact_key).
-- Whether any of the contact's requests was accepted, the last error, and how many requests
-- asked for it (more than one: a re-query after a transient failure).
CREATE OR REPLACE TEMP TABLE stg_request_outcomes AS
SELECT
    contact_key,
    bool_or(state = 'accepted') AS accepted,
    arg_max(coalesce(error, 'request ' || state), request_id) AS error,
    count(*) AS requests
FROM requests
WHERE run_id = $run_id
GROUP BY contact_key;
