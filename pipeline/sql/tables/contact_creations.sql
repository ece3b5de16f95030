-- contact_creations: one row per run x contact Sinch had no contact for (grain); key (run_id,
-- contact_key). Only with `[contacts] create_missing` (pipeline/submit/contacts.py). Written
-- 'pending' before any call to the Contacts API (an outbox, as `requests` is), then 'found'
-- (it existed after all: looked up by identity first, so a contact created just before a
-- kill -9 is never created twice), 'created' or 'failed'.
CREATE TABLE IF NOT EXISTS contact_creations (
    run_id VARCHAR NOT NULL,
    contact_key VARCHAR NOT NULL,
    request_id VARCHAR NOT NULL,          -- the request answered CONTACT_NOT_FOUND
    channel_identities VARCHAR NOT NULL,  -- JSON [{"channel", "identity"}]: the contact's targets
    state VARCHAR NOT NULL,               -- pending / found / created / failed
    sinch_contact_id VARCHAR,
    error VARCHAR,
    updated_at TIMESTAMPTZ NOT NULL
);
