-- channel_rank(status, channel): a sort key, smallest first, for the channels to try for a
-- contact: CAPABILITY_FULL before CAPABILITY_PARTIAL, then the configured preference
-- ([reports] channel_preference, written in when the warehouse is opened), then
-- alphabetically (by its place among every channel capaudit accepts). An integer, so that
-- ranking millions of contacts stays cheap. One definition for `channel_order` and the
-- `routing` mart.
CREATE OR REPLACE MACRO channel_rank(status, channel) AS
    CASE WHEN status = 'CAPABILITY_FULL' THEN 0 ELSE 1000000 END
    + coalesce(list_position($preference, channel), 999) * 1000
    + coalesce(list_position($channels, channel), 999);

-- channel_order: one row per run x contact (grain); key (run_id, contact_key).
-- The channels to try for each contact, best first (by channel_rank): reachable channels
-- only. Contacts with no reachable channel get an empty list. A view: computed when read,
-- for the rows asked for.
CREATE OR REPLACE VIEW channel_order AS
SELECT
    run_id,
    contact_key,
    any_value(contact_id) AS contact_id,
    coalesce(list(channel ORDER BY channel_rank(status, channel), channel)
        FILTER (WHERE status IN ('CAPABILITY_FULL', 'CAPABILITY_PARTIAL')), []) AS channels,
    channels[1] AS first_choice
FROM capability
GROUP BY run_id, contact_key;
