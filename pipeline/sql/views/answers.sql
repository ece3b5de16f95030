-- is_answer(status): whether a `capability` status is an answer about the channel: one of
-- Sinch's four statuses. capaudit's own outcomes (NO_RESPONSE, REQUEST_FAILED, NOT_A_CONTACT)
-- are never reused, never counted as answered and never a change.
CREATE OR REPLACE MACRO is_answer(s) AS
    s IN ('CAPABILITY_FULL', 'CAPABILITY_PARTIAL', 'NO_CAPABILITY', 'CAPABILITY_UNKNOWN');
