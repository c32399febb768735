-- The outbox reads where an answered message was from the message row itself, no longer from
-- the intake journal's payload. Messages stored before 0004 kept their place only in the
-- journal: copy it onto the message row once (PostgreSQL stored it on the row from the start).
UPDATE messages SET place_kind = (
    SELECT json_extract(j.payload, '$.place.kind') FROM journal j
    WHERE j.channel_id = messages.channel_id AND j.dedupe_key = messages.external_id
        AND json_valid(j.payload)
)
WHERE place_kind IS NULL AND direction = 'in' AND external_id IS NOT NULL;
