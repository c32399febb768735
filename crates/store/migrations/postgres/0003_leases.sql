-- Leases: work that must run in one process at a time (the outbox today; SLA timers,
-- retention runs and pull-channel followers next) is claimed by an owner until a moment;
-- the owner renews it, anyone may take it once it has run out.
CREATE TABLE leases (
    job         TEXT PRIMARY KEY,
    owner       TEXT NOT NULL,
    expires_at  BIGINT NOT NULL
);
