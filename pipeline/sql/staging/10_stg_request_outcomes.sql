-- stg_request_outcomes: one row per contact of the run (grain); key (contact_key). Like
-- stg_answers, only the contacts in the build's scope (all in a whole build; build_scope.py).
-- Whether any of the contact's requests was accepted, the last error, how many requests asked
-- for it (more than one: a re-query, or identities and a contact id), and whether one asked by
-- contact id (Sinch may then answer a channel for several of the contact's identities), and
-- whether one was refused (10_capability then looks at which channels).
CREATE OR REPLACE TEMP TABLE stg_request_outcomes AS
SELECT
    contact_key,
    bool_or(state = 'accepted') AS accepted,
    arg_max(coalesce(error, 'request ' || state), request_id) AS error,
    count(*) AS requests,
    bool_or(body LIKE '%"recipient":{"contact_id"%') AS by_contact_id,
    bool_or(state = 'failed') AS has_refusal
FROM requests
WHERE run_id = $run_id AND in_build_scope(contact_key)
GROUP BY contact_key;
