-- The text analysis in columns reports can group by (the JSON stays as the API shows it):
-- language (ISO 639-1), sentiment, intent, escalation, and the escalation signals joined by
-- commas. Filled from the stored JSON for messages analysed before.
ALTER TABLE messages ADD COLUMN language TEXT;
ALTER TABLE messages ADD COLUMN sentiment TEXT;
ALTER TABLE messages ADD COLUMN intent TEXT;
ALTER TABLE messages ADD COLUMN escalation INTEGER;
ALTER TABLE messages ADD COLUMN escalation_signals TEXT;

UPDATE messages SET
    language = json_extract(analysis, '$.lang'),
    sentiment = json_extract(analysis, '$.sentiment'),
    intent = json_extract(analysis, '$.intent'),
    escalation = json_extract(analysis, '$.escalation'),
    escalation_signals = COALESCE((
        SELECT group_concat(value, ',') FROM json_each(messages.analysis, '$.escalation_signals')
    ), '')
WHERE analysis IS NOT NULL AND json_valid(analysis) AND json_type(analysis) = 'object'
    AND json_type(analysis, '$.sentiment') = 'text' AND json_type(analysis, '$.intent') = 'text';
