//! The PostgreSQL backend: a connection pool, the same semantics as [`crate::SqliteStore`].
//!
//! Every write that records a timeline event (the pipeline, replies, delivery results,
//! status and assignment changes), bulk loads and the start-up outbox recovery run under one
//! transaction-level advisory lock, taken first thing in their transaction. That gives
//! PostgreSQL what SQLite's single writer gives for free: identifying and threading never race between workers, an idempotency key
//! is checked and stored atomically, and event ids become visible in order, so the live
//! stream (`events_since`) never skips an event committed late. Reads, journal appends and
//! outbox claims (`FOR UPDATE SKIP LOCKED`) run in parallel across processes.
//!
//! The SQL written once for both backends is in `crate::shared`; here is only what
//! PostgreSQL does its own way: connecting and migrating, the write lock, text without NUL,
//! the journal (`journal`), loading a snapshot and writing the plan (`pipeline`), `tsvector`
//! search (`search`), claiming replies with `SKIP LOCKED`, and the bench and test helpers
//! (`testing`, feature `testing`).

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use balie_core::Millis;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions};
use sqlx::{Postgres, Transaction};
use tokio::sync::watch;

use crate::plan::{ConversationState, NewMessage, NextIds, Snapshot};
use crate::search::search_lexemes;
use crate::shared::journal::PendingRow;
use crate::shared::{Dialect, impl_shared_roles, limit_or_all};
use crate::{Prepared, Result};

mod pipeline;
mod search;
#[cfg(feature = "testing")]
mod testing;

/// Migrations in order. Released ones are never edited: add a new entry instead.
const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../../migrations/postgres/0001_init.sql")),
    (
        2,
        include_str!("../../migrations/postgres/0002_search_statistics.sql"),
    ),
    (3, include_str!("../../migrations/postgres/0003_leases.sql")),
    (
        4,
        include_str!("../../migrations/postgres/0004_typed_analysis.sql"),
    ),
    (5, include_str!("../../migrations/postgres/0005_brands.sql")),
];

/// Advisory lock keys ("balie" and a number), so two processes starting together migrate
/// once, and event-writing transactions take turns (see the module documentation).
const MIGRATE_LOCK: i64 = 0x6261_6c69_6500_0001;
const WRITE_LOCK: i64 = 0x6261_6c69_6500_0002;

type Tx = Transaction<'static, Postgres>;

/// Applies the migrations not yet recorded in `schema_migrations`, each in a transaction,
/// holding a session advisory lock so concurrent starts wait instead of racing.
async fn migrate(pool: &PgPool) -> Result<()> {
    let mut conn = pool.acquire().await?;
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(MIGRATE_LOCK)
        .execute(&mut *conn)
        .await?;
    let result = PgStore::apply_migrations(&mut conn, MIGRATIONS_TABLE, MIGRATIONS).await;
    let unlocked = sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(MIGRATE_LOCK)
        .execute(&mut *conn)
        .await;
    result?;
    unlocked?;
    Ok(())
}

/// Creates the table recording which migrations ran.
const MIGRATIONS_TABLE: &str = "CREATE TABLE IF NOT EXISTS schema_migrations \
     (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)";

/// PostgreSQL store over a connection pool.
#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
    /// Counts commits that appended events, here and (by `LISTEN`) in other processes.
    changes: Arc<watch::Sender<u64>>,
    listening: Arc<Listening>,
}

/// The channel event-appending transactions `NOTIFY` on commit.
const EVENTS_CHANNEL: &str = "balie_events";

/// The background `LISTEN` task; it ends with the last clone of the store.
struct Listening(tokio::task::AbortHandle);

impl Drop for Listening {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Counts every `NOTIFY` on [`EVENTS_CHANNEL`] (another process's events, and our own) in
/// `changes`, from a connection of its own; reconnects after a second when it is lost, and
/// counts once then, as notices may have been missed meanwhile.
async fn listen(options: PgConnectOptions, changes: Arc<watch::Sender<u64>>) {
    loop {
        if let Err(e) = listen_until_lost(&options, &changes).await {
            tracing::warn!(error = %e, "listening for other processes' events failed");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn listen_until_lost(options: &PgConnectOptions, changes: &watch::Sender<u64>) -> Result<()> {
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(options.clone())
        .await?;
    let mut listener = PgListener::connect_with(&pool).await?;
    listener.listen(EVENTS_CHANNEL).await?;
    loop {
        changes.send_modify(|n| *n = n.wrapping_add(1));
        listener.recv().await?;
    }
}

impl PgStore {
    /// Connects to `url` (`postgres://user@host:port/database`) and applies pending
    /// migrations. The database must exist.
    pub async fn open(url: &str) -> Result<Self> {
        let options: PgConnectOptions = url.parse()?;
        Self::open_with(options).await
    }

    /// As [`PgStore::open`], from connection options.
    pub async fn open_with(options: PgConnectOptions) -> Result<Self> {
        // A journal append is acknowledged only once on disk, whatever the server's default.
        let options = options
            .application_name("balie")
            .options([("synchronous_commit", "on")]);
        let pool = PgPoolOptions::new()
            .max_connections(10)
            .connect_with(options.clone())
            .await?;
        migrate(&pool).await?;
        let changes = Arc::new(watch::Sender::new(0));
        let task = tokio::spawn(listen(options, changes.clone()));
        Ok(Self {
            pool,
            changes,
            listening: Arc::new(Listening(task.abort_handle())),
        })
    }

    pub async fn close(&self) {
        self.listening.0.abort();
        self.pool.close().await;
    }

    /// A transaction for writes that record events: takes the write lock first.
    async fn lock_writes(&self) -> Result<Tx> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(WRITE_LOCK)
            .execute(&mut *tx)
            .await?;
        Ok(tx)
    }
}

/// PostgreSQL text cannot hold NUL (U+0000), which SQLite keeps as is; it becomes U+FFFD
/// (the replacement character), so text carrying one is stored rather than refused.
fn without_nul(text: &str) -> Cow<'_, str> {
    if text.contains('\0') {
        Cow::Owned(text.replace('\0', "\u{FFFD}"))
    } else {
        Cow::Borrowed(text)
    }
}

fn clean(text: &mut String) {
    if let Cow::Owned(cleaned) = without_nul(text) {
        *text = cleaned;
    }
}

fn clean_opt(text: &mut Option<String>) {
    if let Some(text) = text {
        clean(text);
    }
}

/// A pipeline entry with every stored text free of NUL, so a customer's `\u0000` never
/// fails its batch over and over (borrowed as is when there is none).
fn prepared_without_nul(p: &Prepared) -> Cow<'_, Prepared> {
    let i = &p.entry.inbound;
    let has = |t: &str| t.contains('\0');
    let has_opt = |t: &Option<String>| t.as_deref().is_some_and(has);
    let any = has(&i.external_id)
        || has(&i.text)
        || has(&i.author.platform_id)
        || has_opt(&i.author.handle)
        || has_opt(&i.author.name)
        || has_opt(&i.in_reply_to)
        || has_opt(&i.thread_key)
        || has_opt(&i.outbox_key)
        || i.place.as_ref().is_some_and(|pl| has_opt(&pl.url))
        || has_opt(&p.analysis);
    if !any {
        return Cow::Borrowed(p);
    }
    let mut p = p.clone();
    let i = &mut p.entry.inbound;
    clean(&mut i.external_id);
    clean(&mut i.text);
    clean(&mut i.author.platform_id);
    clean_opt(&mut i.author.handle);
    clean_opt(&mut i.author.name);
    clean_opt(&mut i.in_reply_to);
    clean_opt(&mut i.thread_key);
    clean_opt(&mut i.outbox_key);
    if let Some(place) = &mut i.place {
        clean_opt(&mut place.url);
    }
    clean_opt(&mut p.analysis);
    Cow::Owned(p)
}

/// A message's search lexemes, for `array_to_tsvector`.
fn lexemes(text: &str) -> Vec<String> {
    search_lexemes(text)
        .into_iter()
        .filter(|l| !l.is_empty())
        .collect()
}

impl Dialect for PgStore {
    type Db = Postgres;

    fn writer(&self) -> &PgPool {
        &self.pool
    }

    fn reader(&self) -> &PgPool {
        &self.pool
    }

    async fn begin_write(&self) -> Result<Tx> {
        self.lock_writes().await
    }

    fn changes_sender(&self) -> &watch::Sender<u64> {
        &self.changes
    }

    /// Delivered to every listener when `tx` commits, not before.
    async fn announce(tx: &mut Tx) -> Result<()> {
        sqlx::query("SELECT pg_notify($1, '')")
            .bind(EVENTS_CHANNEL)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    fn storable(text: &str) -> Cow<'_, str> {
        without_nul(text)
    }

    async fn pending_rows(&self, limit: i64) -> Result<Vec<PendingRow>> {
        let rows = sqlx::query_as(
            "SELECT id, channel_id, payload, received_at FROM journal \
             WHERE processed_at IS NULL ORDER BY id LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows)
    }

    fn storable_batch(batch: &[Prepared]) -> Cow<'_, [Prepared]> {
        if batch
            .iter()
            .all(|p| matches!(prepared_without_nul(p), Cow::Borrowed(_)))
        {
            return Cow::Borrowed(batch);
        }
        Cow::Owned(
            batch
                .iter()
                .map(|p| prepared_without_nul(p).into_owned())
                .collect(),
        )
    }

    async fn load_snapshot(tx: &mut Tx, batch: &[Prepared]) -> Result<Snapshot> {
        pipeline::load_snapshot(tx, batch).await
    }

    async fn next_ids(tx: &mut Tx) -> Result<NextIds> {
        pipeline::next_ids(tx).await
    }

    async fn ids_taken(tx: &mut Tx, next: NextIds) -> Result<()> {
        pipeline::ids_taken(tx, next).await
    }

    async fn insert_messages(tx: &mut Tx, messages: &[NewMessage]) -> Result<()> {
        pipeline::insert_messages(tx, messages).await
    }

    async fn update_conversations(
        tx: &mut Tx,
        updates: &[(i64, ConversationState)],
        now: Millis,
    ) -> Result<()> {
        pipeline::update_conversations(tx, updates, now).await
    }

    async fn index_reply(tx: &mut Tx, message: i64, text: &str) -> Result<()> {
        search::index(tx, message, text).await
    }

    async fn reindex(tx: &mut Tx, message: i64, text: &str) -> Result<()> {
        search::index(tx, message, text).await
    }

    #[cfg(feature = "testing")]
    async fn after_bulk_load(&self) -> Result<()> {
        // The new terms moved from the GIN index's pending list into the index proper, and
        // fresh statistics, before autovacuum gets to them: otherwise every search scans the
        // pending list, and a rare word walks all messages backwards.
        sqlx::raw_sql(
            "SELECT gin_clean_pending_list('messages_terms'::regclass); \
             ANALYZE customers, identities, conversations, messages",
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn claim_due(tx: &mut Tx, now: Millis, limit: i64) -> Result<Vec<i64>> {
        // SKIP LOCKED: several workers claim side by side, each row by exactly one of them.
        let mut claimed: Vec<(i64, i64)> = sqlx::query_as(
            "WITH due AS (SELECT id FROM outbox WHERE state = 'pending' \
             AND next_attempt_at <= $1 ORDER BY next_attempt_at, id LIMIT $2 \
             FOR UPDATE SKIP LOCKED) \
             UPDATE outbox o SET state = 'sending', attempts = o.attempts + 1, updated_at = $1 \
             FROM due WHERE o.id = due.id RETURNING o.id, o.next_attempt_at",
        )
        .bind(now)
        .bind(limit_or_all(limit))
        .fetch_all(&mut **tx)
        .await?;
        claimed.sort_unstable_by_key(|&(id, due)| (due, id));
        Ok(claimed.into_iter().map(|(id, _)| id).collect())
    }
}

impl_shared_roles!(PgStore);
