-- lost: one row per target (grain) whose latest ask was accepted before $now by an embedded
-- simulator that is gone (a resume starts a new one; the callbacks the old one still owed died
-- with it) and never answered. Whatever kind the ask was (first ask or re-ask): its answer
-- cannot come, so this is not asking twice. Columns as `ledger.FIRST_ASKS`; `requery_of` the
-- lost ask.
SELECT t.contact_key, t.contact_id, t.channel, t.identity, l.request_id AS requery_of
FROM targets t
JOIN (
    SELECT t.contact_key, t.channel, max(r.request_id) AS request_id,
        arg_max(r.state, r.request_id) AS state,
        arg_max(r.accepted_at, r.request_id) AS accepted_at
    FROM targets t
    JOIN requests r ON r.run_id = t.run_id AND r.contact_key = t.contact_key
        AND list_contains(r.channels, t.channel)
    WHERE t.run_id = $run_id AND t.action = 'query'
    GROUP BY t.contact_key, t.channel
) l ON l.contact_key = t.contact_key AND l.channel = t.channel
WHERE t.run_id = $run_id AND l.state = 'accepted' AND l.accepted_at < $now
  AND NOT EXISTS (SELECT 1 FROM notifications n
                  WHERE n.request_id = l.request_id AND n.channel IN (t.channel, ''))
