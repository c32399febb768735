//! The SQLite backend: embedded, WAL, one writer connection, a few readers. The SQL written
//! once for both backends is in `crate::shared`; here is only what SQLite does its own way:
//! opening and migrating, the journal (`journal`), loading a snapshot and writing the plan
//! (`pipeline`), FTS5 search (`search`), claiming replies, and the bench helpers
//! (`testing`, feature `testing`).

use std::borrow::Cow;
use std::path::Path;
use std::time::Duration;

use balie_core::Millis;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use crate::plan::{ConversationState, NewMessage, NextIds, Snapshot};
use crate::shared::journal::PendingRow;
use crate::shared::{Dialect, Tx, impl_shared_roles, limit_or_all};
use crate::{Prepared, Result, StoreError};

mod pipeline;
mod search;
#[cfg(feature = "testing")]
mod testing;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod upgrade_tests;

/// Migrations in order. Released ones are never edited: add a new entry instead.
const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../../migrations/0001_init.sql")),
    (2, include_str!("../../migrations/0002_channel_secrets.sql")),
    (
        3,
        include_str!("../../migrations/0003_inbox_order_index.sql"),
    ),
    (4, include_str!("../../migrations/0004_message_place.sql")),
    (
        5,
        include_str!("../../migrations/0005_search_secure_delete.sql"),
    ),
    (6, include_str!("../../migrations/0006_leases.sql")),
    (7, include_str!("../../migrations/0007_typed_analysis.sql")),
    (8, include_str!("../../migrations/0008_reply_place.sql")),
    (9, include_str!("../../migrations/0009_brands.sql")),
];

/// Creates the table recording which migrations ran.
const MIGRATIONS_TABLE: &str = "CREATE TABLE IF NOT EXISTS schema_migrations \
     (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)";

/// SQLite store. Writes go through one connection (SQLite has one writer anyway), so write
/// transactions never deadlock on lock upgrades; reads use a small pool.
#[derive(Clone)]
pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
    /// The background checkpointer's connection; it runs until this closes or every clone
    /// of the store is dropped.
    checkpointer: SqlitePool,
    /// Counts commits that appended events, and other processes' writes (see `changes`).
    changes: std::sync::Arc<tokio::sync::watch::Sender<u64>>,
    _alive: std::sync::Arc<()>,
}

/// WAL pages after which the writer checkpoints inline, as a backstop: normally the
/// background checkpointer has done it long before (see [`watch_in_background`]).
const WRITER_AUTOCHECKPOINT_PAGES: &str = "20000";
/// How often the background checkpointer copies committed WAL pages into the database.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(100);

/// Copies committed WAL pages into the database file from a connection of its own, so the
/// writer's commits never pay for a checkpoint (copying pages and two extra `fsync`s) and
/// journal appends do not wait behind one. A PASSIVE checkpoint takes no lock the writer or
/// readers need; durability is unchanged (a commit is durable once its WAL frames are synced,
/// before any checkpoint). On the same tick it reads `PRAGMA data_version`, which changes
/// when any other connection (another process too: the CLI while the server runs) commits,
/// and counts such a change in `changes`. Stops when the store is dropped or closed.
fn watch_in_background(
    pool: SqlitePool,
    changes: std::sync::Arc<tokio::sync::watch::Sender<u64>>,
    alive: std::sync::Weak<()>,
) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(CHECKPOINT_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut seen: Option<i64> = None;
        loop {
            tick.tick().await;
            if alive.strong_count() == 0 || pool.is_closed() {
                break;
            }
            let step = async {
                sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                    .execute(&pool)
                    .await?;
                sqlx::query_scalar::<_, i64>("PRAGMA data_version")
                    .fetch_one(&pool)
                    .await
            };
            match step.await {
                Ok(version) => {
                    if seen.is_some_and(|v| v != version) {
                        changes.send_modify(|n| *n = n.wrapping_add(1));
                    }
                    seen = Some(version);
                }
                Err(_) if pool.is_closed() => break,
                Err(e) => tracing::warn!(error = %e, "background WAL checkpoint failed"),
            }
        }
        pool.close().await;
    });
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and applies pending migrations.
    pub async fn open(path: &Path) -> Result<Self> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: a journal entry is on disk before the platform gets its 2xx.
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true)
            // Deleted content is overwritten, not left in free pages: erasing a customer
            // must erase them from the file too (see ARCHITECTURE.md, "Erasure").
            .pragma("secure_delete", "ON")
            .pragma("temp_store", "memory")
            .pragma("cache_size", "-32000");
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(
                options
                    .clone()
                    .pragma("wal_autocheckpoint", WRITER_AUTOCHECKPOINT_PAGES),
            )
            .await?;
        SqliteStore::apply_migrations(&mut *writer.acquire().await?, MIGRATIONS_TABLE, MIGRATIONS)
            .await?;
        let checkpointer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.read_only(true))
            .await?;
        let alive = std::sync::Arc::new(());
        let changes = std::sync::Arc::new(tokio::sync::watch::Sender::new(0));
        watch_in_background(
            checkpointer.clone(),
            changes.clone(),
            std::sync::Arc::downgrade(&alive),
        );
        Ok(Self {
            writer,
            reader,
            checkpointer,
            changes,
            _alive: alive,
        })
    }

    /// Opens from a `sqlite://` style path string.
    pub async fn open_str(path: &str) -> Result<Self> {
        let p = path.strip_prefix("sqlite://").unwrap_or(path);
        Self::open(Path::new(p)).await
    }

    pub async fn close(&self) {
        self.checkpointer.close().await;
        self.reader.close().await;
        self.writer.close().await;
    }
}

impl Dialect for SqliteStore {
    type Db = sqlx::Sqlite;

    fn writer(&self) -> &SqlitePool {
        &self.writer
    }

    fn reader(&self) -> &SqlitePool {
        &self.reader
    }

    /// Every write goes through the one writer connection, so no lock is needed.
    async fn begin_write(&self) -> Result<Tx<Self>> {
        Ok(self.writer.begin().await?)
    }

    fn changes_sender(&self) -> &tokio::sync::watch::Sender<u64> {
        &self.changes
    }

    /// Other processes notice through `PRAGMA data_version` (see `watch_in_background`).
    async fn announce(_tx: &mut Tx<Self>) -> Result<()> {
        Ok(())
    }

    /// SQLite keeps any text as is.
    fn storable(text: &str) -> Cow<'_, str> {
        Cow::Borrowed(text)
    }

    async fn pending_rows(&self, limit: i64) -> Result<Vec<PendingRow>> {
        // One row holding the batch as JSON: one hop from SQLite's thread instead of one a row.
        let json: String = sqlx::query_scalar(
            "SELECT json_group_array(json_array(id, channel_id, payload, received_at)) FROM \
             (SELECT id, channel_id, payload, received_at FROM journal \
             WHERE processed_at IS NULL ORDER BY id LIMIT $1)",
        )
        .bind(limit)
        .fetch_one(&self.writer)
        .await?;
        serde_json::from_str(&json)
            .map_err(|e| StoreError::Corrupt(format!("pending journal: {e}")))
    }

    fn storable_batch(batch: &[Prepared]) -> Cow<'_, [Prepared]> {
        Cow::Borrowed(batch)
    }

    async fn load_snapshot(tx: &mut Tx<Self>, batch: &[Prepared]) -> Result<Snapshot> {
        pipeline::load_snapshot(tx, batch).await
    }

    async fn next_ids(tx: &mut Tx<Self>) -> Result<NextIds> {
        pipeline::next_ids(tx).await
    }

    async fn ids_taken(tx: &mut Tx<Self>, next: NextIds) -> Result<()> {
        // Nothing to move: ids are `MAX(id) + 1` under the single writer.
        let _ = (tx, next);
        Ok(())
    }

    async fn insert_messages(tx: &mut Tx<Self>, messages: &[NewMessage]) -> Result<()> {
        pipeline::insert_messages(tx, messages).await
    }

    async fn update_conversations(
        tx: &mut Tx<Self>,
        updates: &[(i64, ConversationState)],
        now: Millis,
    ) -> Result<()> {
        pipeline::update_conversations(tx, updates, now).await
    }

    async fn index_reply(tx: &mut Tx<Self>, message: i64, text: &str) -> Result<()> {
        search::index(tx, message, text).await
    }

    async fn reindex(tx: &mut Tx<Self>, message: i64, text: &str) -> Result<()> {
        search::reindex(tx, message, text).await
    }

    #[cfg(feature = "testing")]
    async fn after_bulk_load(&self) -> Result<()> {
        Ok(())
    }

    async fn claim_due(tx: &mut Tx<Self>, now: Millis, limit: i64) -> Result<Vec<i64>> {
        let ids = sqlx::query_scalar(
            "UPDATE outbox SET state = 'sending', attempts = attempts + 1, updated_at = $1 \
             WHERE id IN (SELECT id FROM outbox WHERE state = 'pending' \
             AND next_attempt_at <= $1 ORDER BY next_attempt_at, id LIMIT $2) RETURNING id",
        )
        .bind(now)
        .bind(limit_or_all(limit))
        .fetch_all(&mut **tx)
        .await?;
        Ok(ids)
    }
}

impl_shared_roles!(SqliteStore);
