-- The inbox lists a status's conversations waiting first, then by priority, deadline and
-- recency (see `SqliteStore::inbox`). This index holds exactly that order, so the first page
-- is read off the index instead of sorting every open conversation (10 million stored
-- messages means hundreds of thousands of them). The expressions must match the query's
-- ORDER BY word for word for SQLite to use it.
CREATE INDEX conversations_inbox_order ON conversations(
    status,
    (waiting_since IS NULL),
    priority,
    COALESCE(reply_due, 9223372036854775807),
    last_message_at DESC
);
