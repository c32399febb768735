-- Finer statistics on the search terms: with the default, every word outside the few
-- hundred most common ones is guessed at 0.5% of messages, so a rare word is searched by
-- walking all messages newest first instead of through the GIN index.
ALTER TABLE messages ALTER COLUMN terms SET STATISTICS 1000;
