-- lost: one row per target (grain) still without any answer in the run whose latest ask was
-- accepted before $now by an embedded simulator that is gone (a resume starts a new one; the
-- callbacks the old one still owed died with it). Whatever kind that ask was, a first ask or
-- a re-ask that was lost too, its answer cannot come, so asking again is not asking twice. A
-- target with an answer (a transient failure whose re-query was lost) keeps it: a transient
-- answer is asked again once at most. Columns as `ledger.FIRST_ASKS`; `requery_of` the ask.
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
  AND NOT EXISTS (SELECT 1 FROM requests q
                  JOIN notifications n ON n.request_id = q.request_id
                      AND n.channel IN (t.channel, '')
                  WHERE q.run_id = $run_id AND q.contact_key = t.contact_key
                    AND list_contains(q.channels, t.channel))
