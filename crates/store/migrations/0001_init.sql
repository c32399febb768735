-- Balie's first schema (SQLite). Released migrations are never edited; add a new file instead.

CREATE TABLE brands (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL
);

CREATE TABLE channels (
    id          INTEGER PRIMARY KEY,
    brand_id    INTEGER NOT NULL REFERENCES brands(id),
    kind        TEXT NOT NULL,
    name        TEXT NOT NULL UNIQUE,
    settings    TEXT NOT NULL DEFAULT '{}',
    created_at  INTEGER NOT NULL
);

CREATE TABLE customers (
    id            INTEGER PRIMARY KEY,
    display_name  TEXT NOT NULL,
    notes         TEXT NOT NULL DEFAULT '',
    created_at    INTEGER NOT NULL
);

CREATE TABLE identities (
    id           INTEGER PRIMARY KEY,
    customer_id  INTEGER NOT NULL REFERENCES customers(id),
    platform     TEXT NOT NULL,
    external_id  TEXT NOT NULL,
    handle       TEXT,
    name         TEXT,
    UNIQUE (platform, external_id)
);
CREATE INDEX identities_customer ON identities(customer_id);

CREATE TABLE conversations (
    id               INTEGER PRIMARY KEY,
    brand_id         INTEGER NOT NULL REFERENCES brands(id),
    channel_id       INTEGER NOT NULL REFERENCES channels(id),
    customer_id      INTEGER NOT NULL REFERENCES customers(id),
    status           TEXT NOT NULL,
    queue            TEXT NOT NULL DEFAULT 'general',
    assignee         INTEGER,
    priority         INTEGER NOT NULL,
    waiting_since    INTEGER,
    reply_due        INTEGER,
    thread_key       TEXT,
    first_line       TEXT NOT NULL DEFAULT '',
    last_message_at  INTEGER NOT NULL,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
);
CREATE INDEX conversations_inbox ON conversations(status, priority, reply_due);
CREATE INDEX conversations_customer ON conversations(customer_id, channel_id, status);
CREATE INDEX conversations_thread ON conversations(channel_id, thread_key, customer_id);

CREATE TABLE users (
    id             INTEGER PRIMARY KEY,
    email          TEXT NOT NULL UNIQUE,
    name           TEXT NOT NULL,
    role           TEXT NOT NULL,
    password_hash  TEXT NOT NULL,
    created_at     INTEGER NOT NULL
);

CREATE TABLE messages (
    id               INTEGER PRIMARY KEY,
    conversation_id  INTEGER NOT NULL REFERENCES conversations(id),
    channel_id       INTEGER NOT NULL REFERENCES channels(id),
    direction        TEXT NOT NULL,
    external_id      TEXT,
    author_identity  INTEGER REFERENCES identities(id),
    author_user      INTEGER REFERENCES users(id),
    text             TEXT NOT NULL,
    in_reply_to      INTEGER,
    created_at       INTEGER NOT NULL,
    received_at      INTEGER NOT NULL,
    delivery         TEXT NOT NULL,
    delivery_error   TEXT,
    removed          INTEGER NOT NULL DEFAULT 0,
    analysis         TEXT
);
CREATE UNIQUE INDEX messages_external ON messages(channel_id, external_id) WHERE external_id IS NOT NULL;
CREATE INDEX messages_conversation ON messages(conversation_id, id);

-- Stemmed terms (Dutch and English Snowball stems, folded), rowid = messages.id.
CREATE VIRTUAL TABLE message_search USING fts5(
    terms, content='', contentless_delete=1, tokenize='unicode61 remove_diacritics 2'
);

-- The timeline of every conversation; the id is the live stream's Last-Event-ID.
CREATE TABLE events (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation_id  INTEGER NOT NULL REFERENCES conversations(id),
    kind             TEXT NOT NULL,
    message_id       INTEGER,
    user_id          INTEGER,
    detail           TEXT NOT NULL DEFAULT '',
    at               INTEGER NOT NULL
);
CREATE INDEX events_conversation ON events(conversation_id, id);

-- Every inbound event, durable before the platform gets its 2xx; deduplicated by key.
CREATE TABLE journal (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    channel_id    INTEGER NOT NULL REFERENCES channels(id),
    dedupe_key    TEXT NOT NULL,
    payload       TEXT NOT NULL,
    received_at   INTEGER NOT NULL,
    processed_at  INTEGER,
    error         TEXT,
    UNIQUE (channel_id, dedupe_key)
);
CREATE INDEX journal_pending ON journal(id) WHERE processed_at IS NULL;

-- Every reply a person decided to send, durable until the platform accepts or refuses it.
CREATE TABLE outbox (
    id               INTEGER PRIMARY KEY,
    message_id       INTEGER NOT NULL UNIQUE REFERENCES messages(id),
    channel_id       INTEGER NOT NULL REFERENCES channels(id),
    idempotency_key  TEXT NOT NULL UNIQUE,
    state            TEXT NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  INTEGER NOT NULL,
    last_error       TEXT,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
);
CREATE INDEX outbox_due ON outbox(state, next_attempt_at);

CREATE TABLE sessions (
    token_hash  TEXT PRIMARY KEY,
    user_id     INTEGER NOT NULL REFERENCES users(id),
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
);

CREATE TABLE api_tokens (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL,
    token_hash  TEXT NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER
);
