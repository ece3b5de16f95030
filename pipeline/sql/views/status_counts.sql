-- status_counts(status): an aggregate macro, one count per status of `capability` (Sinch's four,
-- NO_RESPONSE, REQUEST_FAILED) and `reachable` (FULL + PARTIAL), as a struct that
-- `unnest(...)` spreads into these columns in this order. Shared by the marts that count
-- statuses (reachability, reachability_by_country) so they count the same way.
CREATE OR REPLACE MACRO status_counts(s) AS {
    'capability_full': count(*) FILTER (WHERE s = 'CAPABILITY_FULL'),
    'capability_partial': count(*) FILTER (WHERE s = 'CAPABILITY_PARTIAL'),
    'no_capability': count(*) FILTER (WHERE s = 'NO_CAPABILITY'),
    'capability_unknown': count(*) FILTER (WHERE s = 'CAPABILITY_UNKNOWN'),
    'no_response': count(*) FILTER (WHERE s = 'NO_RESPONSE'),
    'request_failed': count(*) FILTER (WHERE s = 'REQUEST_FAILED'),
    'reachable': count(*) FILTER (WHERE s IN ('CAPABILITY_FULL', 'CAPABILITY_PARTIAL'))
};
