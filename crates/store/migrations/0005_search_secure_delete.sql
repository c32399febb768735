-- Erasing a message's search terms erases them from the index's pages too (FTS5
-- 'secure-delete'), as `PRAGMA secure_delete` does for the tables: what is deleted for a
-- customer does not linger in the file.
INSERT INTO message_search(message_search, rank) VALUES ('secure-delete', 1);
