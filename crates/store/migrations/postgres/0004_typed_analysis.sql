-- The text analysis in columns reports can group by (the JSON stays as the API shows it):
-- language (ISO 639-1), sentiment, intent, escalation, and the escalation signals joined by
-- commas. Filled from the stored JSON for messages analysed before; text that is not JSON
-- (or holds what jsonb refuses) is left alone.
ALTER TABLE messages
    ADD COLUMN language TEXT,
    ADD COLUMN sentiment TEXT,
    ADD COLUMN intent TEXT,
    ADD COLUMN escalation BOOLEAN,
    ADD COLUMN escalation_signals TEXT;

CREATE OR REPLACE FUNCTION pg_temp.balie_json(t text) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    RETURN t::jsonb;
EXCEPTION WHEN others THEN
    RETURN NULL;
END
$$;

UPDATE messages m SET
    language = s.a->>'lang',
    sentiment = s.a->>'sentiment',
    intent = s.a->>'intent',
    escalation = CASE jsonb_typeof(s.a->'escalation') WHEN 'boolean'
        THEN (s.a->'escalation')::boolean END,
    escalation_signals = COALESCE(array_to_string(ARRAY(
        SELECT jsonb_array_elements_text(CASE jsonb_typeof(s.a->'escalation_signals')
            WHEN 'array' THEN s.a->'escalation_signals' ELSE '[]'::jsonb END)), ','), '')
FROM (SELECT id, pg_temp.balie_json(analysis) AS a FROM messages WHERE analysis IS NOT NULL) s
WHERE m.id = s.id AND jsonb_typeof(s.a) = 'object'
    AND jsonb_typeof(s.a->'sentiment') = 'string' AND jsonb_typeof(s.a->'intent') = 'string';

DROP FUNCTION pg_temp.balie_json(text);
