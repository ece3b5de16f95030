-- What Sinch said, kept whole (reference §4, §10): a callback's `reason.sub_code` and
-- `reason.channel_code` (in `notifications` since the same version), a refused query's error
-- `details`, and what capaudit made of a refusal (`failure_reason`: CONTACT_NOT_FOUND,
-- DISPATCH_MODE). Added to tables of earlier versions, so each is an ALTER (last in its table,
-- in this order).

ALTER TABLE request_events ADD COLUMN IF NOT EXISTS error_details VARCHAR;  -- JSON list
ALTER TABLE request_events ADD COLUMN IF NOT EXISTS failure_reason VARCHAR;
ALTER TABLE requests ADD COLUMN IF NOT EXISTS error_details VARCHAR;
ALTER TABLE requests ADD COLUMN IF NOT EXISTS failure_reason VARCHAR;

ALTER TABLE capability ADD COLUMN IF NOT EXISTS reason_sub_code VARCHAR;
ALTER TABLE capability ADD COLUMN IF NOT EXISTS reason_channel_code VARCHAR;
ALTER TABLE capability ADD COLUMN IF NOT EXISTS error_details VARCHAR;

-- NOT_A_CONTACT targets (Sinch has no contact for them; [contacts] create_missing is off).
ALTER TABLE reachability ADD COLUMN IF NOT EXISTS not_a_contact BIGINT;
ALTER TABLE reachability ADD COLUMN IF NOT EXISTS not_a_contact_share DOUBLE;
ALTER TABLE reachability_by_country ADD COLUMN IF NOT EXISTS not_a_contact BIGINT;
