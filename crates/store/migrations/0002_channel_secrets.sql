-- Channel credentials (app secrets, access tokens, bot tokens), encrypted by the server
-- before they reach the store: only a nonce and ciphertext are kept, never the plaintext.
CREATE TABLE channel_secrets (
    channel_id  INTEGER NOT NULL REFERENCES channels(id),
    name        TEXT NOT NULL,
    nonce       BLOB NOT NULL,
    ciphertext  BLOB NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (channel_id, name)
);
