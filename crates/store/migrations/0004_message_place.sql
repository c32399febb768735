-- Where on the platform a message was written (direct message, comment, post, mention,
-- e-mail, API) and a link to it when the platform gives one.
ALTER TABLE messages ADD COLUMN place_kind TEXT;
ALTER TABLE messages ADD COLUMN place_url TEXT;
