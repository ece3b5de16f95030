-- unanswered: one row per target (grain) whose first ask was accepted but never answered (the
-- run waited out its deadline) and that was not asked again yet. A target's latest request
-- covering its channel is a first ask (`requery_of IS NULL`) only until it has been re-asked,
-- so each is re-asked at most once. Columns as `ledger.FIRST_ASKS`; `requery_of` the ask.
SELECT t.contact_key, t.contact_id, t.channel, t.identity, l.request_id AS requery_of
FROM targets t
JOIN (
    SELECT t.contact_key, t.channel, max(r.request_id) AS request_id,
        arg_max(r.state, r.request_id) AS state, arg_max(r.requery_of, r.request_id) AS requery_of
    FROM targets t
    JOIN requests r ON r.run_id = t.run_id AND r.contact_key = t.contact_key
        AND list_contains(r.channels, t.channel)
    WHERE t.run_id = $run_id AND t.action = 'query'
    GROUP BY t.contact_key, t.channel
) l ON l.contact_key = t.contact_key AND l.channel = t.channel
WHERE t.run_id = $run_id AND l.state = 'accepted' AND l.requery_of IS NULL
  AND NOT EXISTS (SELECT 1 FROM notifications n
                  WHERE n.request_id = l.request_id AND n.channel IN (t.channel, ''))
