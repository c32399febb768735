//! The SQLite backend: embedded, WAL, one writer connection, a few readers.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use balie_core::{
    BrandId, Channel, ChannelId, ChannelKind, Conversation, ConversationId, ConversationStatus,
    Customer, CustomerId, DeliveryState, Direction, Event, EventId, EventKind, Identity,
    IdentityId, Message, MessageId, Millis, Place, PlaceKind, Priority, Role, SlaPolicy, User,
    UserId,
};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Row, Sqlite, Transaction};

mod pipeline;

use crate::common::{conflict_or, corrupt, display_name, first_line, now_ms};
use crate::plan;
use crate::search::{search_terms, stem_query};
use crate::{
    Appended, Applied, Backlogs, BulkConversation, BulkMessage, ConversationView, InboxRow,
    JournalEntry, LiveEvent, NewJournalEntry, OutboxItem, Prepared, Result, SealedSecret,
    SearchHit, Store, StoreError, TimelineMessage, dedupe_key,
};

/// Migrations in order. Released ones are never edited: add a new entry instead.
const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../../migrations/0001_init.sql")),
    (2, include_str!("../../migrations/0002_channel_secrets.sql")),
    (
        3,
        include_str!("../../migrations/0003_inbox_order_index.sql"),
    ),
    (4, include_str!("../../migrations/0004_message_place.sql")),
];

/// Applies the migrations not yet recorded in `schema_migrations`, each in a transaction.
async fn migrate(pool: &SqlitePool) -> Result<()> {
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS schema_migrations \
         (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)",
    )
    .execute(pool)
    .await?;
    for (version, sql) in MIGRATIONS {
        let mut tx = pool.begin().await?;
        let done: Option<i64> =
            sqlx::query_scalar("SELECT version FROM schema_migrations WHERE version = ?")
                .bind(version)
                .fetch_optional(&mut *tx)
                .await?;
        if done.is_none() {
            sqlx::raw_sql(sqlx::AssertSqlSafe(*sql))
                .execute(&mut *tx)
                .await?;
            sqlx::query("INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)")
                .bind(version)
                .bind(now_ms())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
    }
    Ok(())
}

/// SQLite store. Writes go through one connection (SQLite has one writer anyway), so write
/// transactions never deadlock on lock upgrades; reads use a small pool.
#[derive(Clone)]
pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
    /// The background checkpointer's connection; it runs until this closes or every clone
    /// of the store is dropped.
    checkpointer: SqlitePool,
    _alive: std::sync::Arc<()>,
}

/// WAL pages after which the writer checkpoints inline, as a backstop: normally the
/// background checkpointer has done it long before (see [`checkpoint_in_background`]).
const WRITER_AUTOCHECKPOINT_PAGES: &str = "20000";
/// How often the background checkpointer copies committed WAL pages into the database.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(100);

/// Copies committed WAL pages into the database file from a connection of its own, so the
/// writer's commits never pay for a checkpoint (copying pages and two extra `fsync`s) and
/// journal appends do not wait behind one. A PASSIVE checkpoint takes no lock the writer or
/// readers need; durability is unchanged (a commit is durable once its WAL frames are synced,
/// before any checkpoint). Stops when the store is dropped or closed.
fn checkpoint_in_background(pool: SqlitePool, alive: std::sync::Weak<()>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(CHECKPOINT_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if alive.strong_count() == 0 || pool.is_closed() {
                break;
            }
            if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                .execute(&pool)
                .await
            {
                if pool.is_closed() {
                    break;
                }
                tracing::warn!(error = %e, "background WAL checkpoint failed");
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
        migrate(&writer).await?;
        let checkpointer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.read_only(true))
            .await?;
        let alive = std::sync::Arc::new(());
        checkpoint_in_background(checkpointer.clone(), std::sync::Arc::downgrade(&alive));
        Ok(Self {
            writer,
            reader,
            checkpointer,
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

    /// Statement-level access for the benchmark's raw-insert baseline.
    pub fn writer_pool(&self) -> &SqlitePool {
        &self.writer
    }
}

macro_rules! conv_cols {
    () => {
        "c.id, c.brand_id, c.channel_id, c.customer_id, c.status, c.queue, c.assignee, c.priority, \
         c.waiting_since, c.reply_due, c.created_at, c.updated_at, c.thread_key, c.first_line, \
         c.last_message_at, cu.display_name AS customer_name, ch.name AS channel_name, \
         (SELECT la.analysis FROM messages la WHERE la.conversation_id = c.id \
            AND la.direction = 'in' ORDER BY la.id DESC LIMIT 1) AS last_analysis, \
         (SELECT au.name FROM users au WHERE au.id = c.assignee) AS assignee_name, \
         ch.kind AS channel_kind"
    };
}

macro_rules! conv_from {
    () => {
        " FROM conversations c JOIN customers cu ON cu.id = c.customer_id \
          JOIN channels ch ON ch.id = c.channel_id "
    };
}

macro_rules! msg_cols {
    () => {
        "m.id, m.conversation_id, m.channel_id, m.direction, m.external_id, m.author_identity, \
         m.author_user, m.text, m.in_reply_to, m.created_at, m.received_at, m.delivery, \
         m.delivery_error, m.removed, m.analysis, m.place_kind, m.place_url, \
         COALESCE(u.name, i.name, i.handle, i.external_id, '') AS author_name, \
         ch.name AS channel_name"
    };
}

macro_rules! msg_from {
    () => {
        " FROM messages m JOIN channels ch ON ch.id = m.channel_id \
          LEFT JOIN identities i ON i.id = m.author_identity \
          LEFT JOIN users u ON u.id = m.author_user "
    };
}

fn channel_from_row(r: &SqliteRow) -> Result<Channel> {
    let kind: String = r.try_get("kind")?;
    Ok(Channel {
        id: ChannelId(r.try_get("id")?),
        brand_id: BrandId(r.try_get("brand_id")?),
        kind: ChannelKind::parse(&kind).ok_or_else(|| corrupt("channel kind", &kind))?,
        name: r.try_get("name")?,
        settings: r.try_get("settings")?,
    })
}

fn inbox_row_from_row(r: &SqliteRow) -> Result<InboxRow> {
    let status: String = r.try_get("status")?;
    let kind: String = r.try_get("channel_kind")?;
    Ok(InboxRow {
        conversation: Conversation {
            id: ConversationId(r.try_get("id")?),
            brand_id: BrandId(r.try_get("brand_id")?),
            channel_id: ChannelId(r.try_get("channel_id")?),
            customer_id: CustomerId(r.try_get("customer_id")?),
            status: ConversationStatus::parse(&status)
                .ok_or_else(|| corrupt("conversation status", &status))?,
            queue: r.try_get("queue")?,
            assignee: r.try_get::<Option<i64>, _>("assignee")?.map(UserId),
            priority: Priority::from_rank(r.try_get("priority")?),
            waiting_since: r.try_get("waiting_since")?,
            reply_due: r.try_get("reply_due")?,
            created_at: r.try_get("created_at")?,
            updated_at: r.try_get("updated_at")?,
            thread_key: r.try_get("thread_key")?,
        },
        customer_name: r.try_get("customer_name")?,
        channel_name: r.try_get("channel_name")?,
        channel_kind: ChannelKind::parse(&kind).ok_or_else(|| corrupt("channel kind", &kind))?,
        first_line: r.try_get("first_line")?,
        last_message_at: r.try_get("last_message_at")?,
        last_analysis: r.try_get("last_analysis")?,
        assignee_name: r.try_get("assignee_name")?,
    })
}

fn message_from_row(r: &SqliteRow) -> Result<TimelineMessage> {
    let direction: String = r.try_get("direction")?;
    let delivery: String = r.try_get("delivery")?;
    Ok(TimelineMessage {
        message: Message {
            id: MessageId(r.try_get("id")?),
            conversation_id: ConversationId(r.try_get("conversation_id")?),
            channel_id: ChannelId(r.try_get("channel_id")?),
            direction: match direction.as_str() {
                "in" => Direction::In,
                "out" => Direction::Out,
                other => return Err(corrupt("direction", other)),
            },
            external_id: r.try_get("external_id")?,
            author_identity: r
                .try_get::<Option<i64>, _>("author_identity")?
                .map(IdentityId),
            author_user: r.try_get::<Option<i64>, _>("author_user")?.map(UserId),
            text: r.try_get("text")?,
            in_reply_to: r.try_get::<Option<i64>, _>("in_reply_to")?.map(MessageId),
            created_at: r.try_get("created_at")?,
            received_at: r.try_get("received_at")?,
            delivery: DeliveryState::parse(&delivery)
                .ok_or_else(|| corrupt("delivery state", &delivery))?,
            delivery_error: r.try_get("delivery_error")?,
            removed: r.try_get::<i64, _>("removed")? != 0,
            analysis: r.try_get("analysis")?,
            place: r
                .try_get::<Option<String>, _>("place_kind")?
                .and_then(|k| PlaceKind::parse(&k))
                .map(|kind| Place {
                    kind,
                    url: r.try_get("place_url").ok().flatten(),
                }),
        },
        author_name: r.try_get("author_name")?,
        channel_name: r.try_get("channel_name")?,
    })
}

fn user_from_row(r: &SqliteRow) -> Result<User> {
    let role: String = r.try_get("role")?;
    Ok(User {
        id: UserId(r.try_get("id")?),
        email: r.try_get("email")?,
        name: r.try_get("name")?,
        role: Role::parse(&role).ok_or_else(|| corrupt("role", &role))?,
    })
}

async fn insert_event(
    tx: &mut Transaction<'_, Sqlite>,
    conversation: i64,
    kind: EventKind,
    message: Option<i64>,
    user: Option<i64>,
    detail: &str,
    at: Millis,
) -> Result<i64> {
    let id = sqlx::query_scalar(
        "INSERT INTO events (conversation_id, kind, message_id, user_id, detail, at) \
         VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
    )
    .bind(conversation)
    .bind(kind.as_str())
    .bind(message)
    .bind(user)
    .bind(detail)
    .bind(at)
    .fetch_one(&mut **tx)
    .await?;
    Ok(id)
}

/// A journal row: channel, dedupe key, the inbound event as JSON, arrival time.
type JournalRow = (i64, String, String, i64);

/// Inserts `rows` with one statement; returns `(id, channel, dedupe key)` of the new ones.
async fn insert_journal_rows<'e, E>(exec: E, rows: &[JournalRow]) -> Result<Vec<(i64, i64, String)>>
where
    E: sqlx::Executor<'e, Database = Sqlite>,
{
    let mut q = sqlx::QueryBuilder::<Sqlite>::new(
        "INSERT INTO journal (channel_id, dedupe_key, payload, received_at) ",
    );
    q.push_values(rows, |mut b, (channel, key, payload, received_at)| {
        b.push_bind(*channel)
            .push_bind(key.as_str())
            .push_bind(payload.as_str())
            .push_bind(*received_at);
    });
    q.push(" ON CONFLICT(channel_id, dedupe_key) DO NOTHING RETURNING id, channel_id, dedupe_key");
    Ok(q.build_query_as().persistent(true).fetch_all(exec).await?)
}

/// Appends to `out`, for each of `rows`, whether it was `inserted`. Only new rows come back;
/// of equal keys within one statement the first is the new one.
fn mark_appended(rows: &[JournalRow], inserted: &[(i64, i64, String)], out: &mut Vec<Appended>) {
    let mut new: HashMap<(i64, &str), i64> = inserted
        .iter()
        .map(|(id, channel, key)| ((*channel, key.as_str()), *id))
        .collect();
    for (channel, key, _, _) in rows {
        out.push(
            new.remove(&(*channel, key.as_str()))
                .map_or(Appended::Duplicate, Appended::New),
        );
    }
}

impl SqliteStore {
    async fn inbox_row(&self, id: i64) -> Result<Option<InboxRow>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            conv_cols!(),
            conv_from!(),
            "WHERE c.id = ?"
        ))
        .bind(id)
        .fetch_optional(&self.reader)
        .await?;
        row.as_ref().map(inbox_row_from_row).transpose()
    }
}

/// Marks the reply behind `key` failed (see [`Store::fail_outbox_by_key`]).
async fn fail_by_key(
    tx: &mut Transaction<'_, Sqlite>,
    channel: i64,
    key: &str,
    reason: &str,
    now: Millis,
) -> Result<bool> {
    let row: Option<(i64, i64)> = sqlx::query_as(
        "UPDATE outbox SET state = 'failed', updated_at = ?, last_error = ? \
         WHERE idempotency_key = ? AND channel_id = ? AND state <> 'failed' \
         RETURNING message_id, \
         (SELECT conversation_id FROM messages WHERE messages.id = outbox.message_id)",
    )
    .bind(now)
    .bind(reason)
    .bind(key)
    .bind(channel)
    .fetch_optional(&mut **tx)
    .await?;
    let Some((msg, conv)) = row else {
        return Ok(false);
    };
    show_reply_failed(tx, conv, msg, reason, now).await?;
    Ok(true)
}

/// The reply message shows `reason` as failed, and the timeline a `reply_failed` event.
async fn show_reply_failed(
    tx: &mut Transaction<'_, Sqlite>,
    conv: i64,
    msg: i64,
    reason: &str,
    now: Millis,
) -> Result<()> {
    sqlx::query("UPDATE messages SET delivery = 'failed', delivery_error = ? WHERE id = ?")
        .bind(reason)
        .bind(msg)
        .execute(&mut **tx)
        .await?;
    insert_event(
        tx,
        conv,
        EventKind::ReplyFailed,
        Some(msg),
        None,
        reason,
        now,
    )
    .await?;
    Ok(())
}

/// Ends a claimed (`sending`) outbox row in `state` (`failed`, or `unknown` when the platform
/// may have it): the message shows the reason and the timeline a failed reply. A row in any
/// other state is left alone.
async fn park_claimed(
    tx: &mut Transaction<'_, Sqlite>,
    id: i64,
    state: &str,
    reason: &str,
    now: Millis,
) -> Result<()> {
    let row: Option<(i64, i64)> = sqlx::query_as(
        "UPDATE outbox SET state = ?, updated_at = ?, last_error = ? WHERE id = ? \
         AND state = 'sending' RETURNING message_id, \
         (SELECT conversation_id FROM messages WHERE messages.id = outbox.message_id)",
    )
    .bind(state)
    .bind(now)
    .bind(reason)
    .bind(id)
    .fetch_optional(&mut **tx)
    .await?;
    if let Some((msg, conv)) = row {
        show_reply_failed(tx, conv, msg, reason, now).await?;
    }
    Ok(())
}

#[async_trait]
impl Store for SqliteStore {
    async fn ensure_brand(&self, name: &str) -> Result<BrandId> {
        sqlx::query(
            "INSERT INTO brands (name, created_at) VALUES (?, ?) ON CONFLICT(name) DO NOTHING",
        )
        .bind(name)
        .bind(now_ms())
        .execute(&self.writer)
        .await?;
        let id = sqlx::query_scalar("SELECT id FROM brands WHERE name = ?")
            .bind(name)
            .fetch_one(&self.writer)
            .await?;
        Ok(BrandId(id))
    }

    async fn create_channel(
        &self,
        brand: BrandId,
        kind: ChannelKind,
        name: &str,
        settings: &str,
    ) -> Result<Channel> {
        let row = sqlx::query(
            "INSERT INTO channels (brand_id, kind, name, settings, created_at) VALUES (?, ?, ?, ?, ?) \
             ON CONFLICT(name) DO NOTHING RETURNING id, brand_id, kind, name, settings",
        )
        .bind(brand.0)
        .bind(kind.as_str())
        .bind(name)
        .bind(settings)
        .bind(now_ms())
        .fetch_optional(&self.writer)
        .await?;
        match row {
            Some(r) => channel_from_row(&r),
            None => Err(StoreError::Conflict("channel")),
        }
    }

    async fn channel(&self, id: ChannelId) -> Result<Option<Channel>> {
        let row =
            sqlx::query("SELECT id, brand_id, kind, name, settings FROM channels WHERE id = ?")
                .bind(id.0)
                .fetch_optional(&self.reader)
                .await?;
        row.as_ref().map(channel_from_row).transpose()
    }

    async fn channel_by_name(&self, name: &str) -> Result<Option<Channel>> {
        let row =
            sqlx::query("SELECT id, brand_id, kind, name, settings FROM channels WHERE name = ?")
                .bind(name)
                .fetch_optional(&self.reader)
                .await?;
        row.as_ref().map(channel_from_row).transpose()
    }

    async fn channels(&self) -> Result<Vec<Channel>> {
        let rows =
            sqlx::query("SELECT id, brand_id, kind, name, settings FROM channels ORDER BY id")
                .fetch_all(&self.reader)
                .await?;
        rows.iter().map(channel_from_row).collect()
    }

    async fn update_channel_settings(&self, channel: ChannelId, settings: &str) -> Result<()> {
        let n = sqlx::query("UPDATE channels SET settings = ? WHERE id = ?")
            .bind(settings)
            .bind(channel.0)
            .execute(&self.writer)
            .await?
            .rows_affected();
        if n == 0 {
            return Err(StoreError::NotFound("channel"));
        }
        Ok(())
    }

    async fn set_channel_secret(
        &self,
        channel: ChannelId,
        name: &str,
        sealed: &SealedSecret,
    ) -> Result<()> {
        let exists: Option<i64> = sqlx::query_scalar("SELECT id FROM channels WHERE id = ?")
            .bind(channel.0)
            .fetch_optional(&self.writer)
            .await?;
        if exists.is_none() {
            return Err(StoreError::NotFound("channel"));
        }
        sqlx::query(
            "INSERT INTO channel_secrets (channel_id, name, nonce, ciphertext, updated_at) \
             VALUES (?, ?, ?, ?, ?) ON CONFLICT(channel_id, name) DO UPDATE SET \
             nonce = excluded.nonce, ciphertext = excluded.ciphertext, \
             updated_at = excluded.updated_at",
        )
        .bind(channel.0)
        .bind(name)
        .bind(&sealed.nonce)
        .bind(&sealed.ciphertext)
        .bind(now_ms())
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn channel_secrets(&self, channel: ChannelId) -> Result<Vec<(String, SealedSecret)>> {
        let rows: Vec<(String, Vec<u8>, Vec<u8>)> = sqlx::query_as(
            "SELECT name, nonce, ciphertext FROM channel_secrets WHERE channel_id = ? \
             ORDER BY name",
        )
        .bind(channel.0)
        .fetch_all(&self.reader)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(name, nonce, ciphertext)| (name, SealedSecret { nonce, ciphertext }))
            .collect())
    }

    async fn append_journal(&self, entries: &[NewJournalEntry]) -> Result<Vec<Appended>> {
        /// Rows per INSERT: 4 parameters each, well under SQLite's 32,766.
        const ROWS_PER_INSERT: usize = 1000;
        let mut rows: Vec<JournalRow> = Vec::with_capacity(entries.len());
        for e in entries {
            let payload = serde_json::to_string(&e.inbound)
                .map_err(|err| StoreError::Corrupt(format!("unserialisable inbound: {err}")))?;
            rows.push((
                e.channel_id.0,
                dedupe_key(&e.inbound),
                payload,
                e.received_at,
            ));
        }
        let mut out = Vec::with_capacity(entries.len());
        // One statement per chunk, not per entry: every statement is a round trip to
        // SQLite's worker thread, which costs more than the insert itself.
        if rows.len() <= ROWS_PER_INSERT {
            // One statement is its own transaction (committed, with synchronous=FULL, before
            // it returns): no BEGIN and COMMIT round trips on the way to the 2xx.
            let inserted = insert_journal_rows(&self.writer, &rows).await?;
            mark_appended(&rows, &inserted, &mut out);
            return Ok(out);
        }
        let mut tx = self.writer.begin().await?;
        for chunk in rows.chunks(ROWS_PER_INSERT) {
            let inserted = insert_journal_rows(&mut *tx, chunk).await?;
            mark_appended(chunk, &inserted, &mut out);
        }
        tx.commit().await?;
        Ok(out)
    }

    async fn pending_journal(&self, limit: i64) -> Result<Vec<JournalEntry>> {
        // One row holding the batch as JSON: one hop from SQLite's thread instead of one a row.
        let json: String = sqlx::query_scalar(
            "SELECT json_group_array(json_array(id, channel_id, payload, received_at)) FROM \
             (SELECT id, channel_id, payload, received_at FROM journal \
             WHERE processed_at IS NULL ORDER BY id LIMIT ?)",
        )
        .bind(limit)
        .fetch_one(&self.writer)
        .await?;
        let mut rows: Vec<(i64, i64, String, i64)> = serde_json::from_str(&json)
            .map_err(|e| StoreError::Corrupt(format!("pending journal: {e}")))?;
        rows.sort_unstable_by_key(|r| r.0);
        rows.into_iter()
            .map(|(id, channel, payload, received_at)| {
                let inbound = serde_json::from_str(&payload)
                    .map_err(|e| StoreError::Corrupt(format!("journal entry {id}: {e}")))?;
                Ok(JournalEntry {
                    id,
                    channel_id: ChannelId(channel),
                    inbound,
                    received_at,
                })
            })
            .collect()
    }

    async fn apply_journal(&self, batch: &[Prepared], sla: &SlaPolicy) -> Result<Vec<Applied>> {
        let now = now_ms();
        let mut tx = self.writer.begin().await?;
        let snapshot = pipeline::load_snapshot(&mut tx, batch).await?;
        let plan = plan::plan(snapshot, batch, sla)
            .map_err(|plan::Missing(what)| StoreError::NotFound(what))?;
        pipeline::write_plan(&mut tx, &plan, now).await?;
        tx.commit().await?;
        Ok(plan.applied)
    }

    async fn bulk_load(
        &self,
        channel: ChannelId,
        conversations: &[BulkConversation],
    ) -> Result<u64> {
        /// Rows per multi-row INSERT (at most 11 parameters a row, under SQLite's 32,766).
        const ROWS: usize = 2_000;
        let now = now_ms();
        let (brand, kind): (i64, String) =
            sqlx::query_as("SELECT brand_id, kind FROM channels WHERE id = ?")
                .bind(channel.0)
                .fetch_optional(&self.writer)
                .await?
                .ok_or(StoreError::NotFound("channel"))?;
        let conversations: Vec<&BulkConversation> = conversations
            .iter()
            .filter(|c| !c.messages.is_empty())
            .collect();
        let mut tx = self.writer.begin().await?;
        // Ids are handed out here, so one statement writes thousands of rows (the single
        // writer connection means nobody else takes ids meanwhile).
        let (customer0, conversation0, message0): (i64, i64, i64) = sqlx::query_as(
            "SELECT (SELECT COALESCE(MAX(id), 0) FROM customers), \
             (SELECT COALESCE(MAX(id), 0) FROM conversations), \
             (SELECT COALESCE(MAX(id), 0) FROM messages)",
        )
        .fetch_one(&mut *tx)
        .await?;
        let mut written = 0u64;
        let mut next_message = message0;
        for (chunk_no, chunk) in conversations.chunks(ROWS).enumerate() {
            let base = i64::try_from(chunk_no * ROWS).unwrap_or(i64::MAX);
            let id = |i: usize| base + i64::try_from(i).unwrap_or(i64::MAX) + 1;
            let mut q = sqlx::QueryBuilder::<Sqlite>::new(
                "INSERT INTO customers (id, display_name, created_at) ",
            );
            q.push_values(chunk.iter().enumerate(), |mut b, (i, c)| {
                b.push_bind(customer0 + id(i))
                    .push_bind(display_name(
                        &c.author.platform_id,
                        c.author.handle.as_ref(),
                        c.author.name.as_ref(),
                    ))
                    .push_bind(now);
            });
            q.build().execute(&mut *tx).await?;
            let mut q = sqlx::QueryBuilder::<Sqlite>::new(
                "INSERT INTO identities (customer_id, platform, external_id, handle, name) ",
            );
            q.push_values(chunk.iter().enumerate(), |mut b, (i, c)| {
                b.push_bind(customer0 + id(i))
                    .push_bind(kind.as_str())
                    .push_bind(c.author.platform_id.as_str())
                    .push_bind(c.author.handle.as_deref())
                    .push_bind(c.author.name.as_deref());
            });
            q.build()
                .execute(&mut *tx)
                .await
                .map_err(|e| conflict_or(e, "identity"))?;
            let mut q = sqlx::QueryBuilder::<Sqlite>::new(
                "INSERT INTO conversations (id, brand_id, channel_id, customer_id, status, \
                 priority, waiting_since, reply_due, first_line, last_message_at, created_at, \
                 updated_at) ",
            );
            q.push_values(chunk.iter().enumerate(), |mut b, (i, c)| {
                let first = c.messages.first().map_or(0, |m| m.created_at);
                let last = c.messages.last().map_or(first, |m| m.created_at);
                let line = c
                    .messages
                    .last()
                    .map(|m| first_line(&m.text))
                    .unwrap_or_default();
                b.push_bind(conversation0 + id(i))
                    .push_bind(brand)
                    .push_bind(channel.0)
                    .push_bind(customer0 + id(i))
                    .push_bind(c.status.as_str())
                    .push_bind(c.priority.rank())
                    .push_bind(c.waiting_since)
                    .push_bind(c.reply_due)
                    .push_bind(line)
                    .push_bind(last)
                    .push_bind(first)
                    .push_bind(now);
            });
            q.build().execute(&mut *tx).await?;
            let rows: Vec<(i64, i64, &BulkMessage)> = chunk
                .iter()
                .enumerate()
                .flat_map(|(i, c)| c.messages.iter().map(move |m| (conversation0 + id(i), m)))
                .map(|(conv, m)| {
                    next_message += 1;
                    (next_message, conv, m)
                })
                .collect();
            for part in rows.chunks(ROWS) {
                let mut q = sqlx::QueryBuilder::<Sqlite>::new(
                    "INSERT INTO messages (id, conversation_id, channel_id, direction, \
                     external_id, text, created_at, received_at, delivery) ",
                );
                q.push_values(part, |mut b, (msg, conv, m)| {
                    b.push_bind(*msg)
                        .push_bind(*conv)
                        .push_bind(channel.0)
                        .push_bind("in")
                        .push_bind(m.external_id.as_str())
                        .push_bind(m.text.as_str())
                        .push_bind(m.created_at)
                        .push_bind(m.created_at)
                        .push_bind("received");
                });
                q.build()
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| conflict_or(e, "message"))?;
                let mut q =
                    sqlx::QueryBuilder::<Sqlite>::new("INSERT INTO message_search (rowid, terms) ");
                q.push_values(part, |mut b, (msg, _, m)| {
                    b.push_bind(*msg).push_bind(search_terms(&m.text));
                });
                q.build().execute(&mut *tx).await?;
                written += part.len() as u64;
            }
        }
        tx.commit().await?;
        Ok(written)
    }

    async fn backlogs(&self) -> Result<Backlogs> {
        let (journal, outbox): (i64, i64) = sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM journal WHERE processed_at IS NULL), \
             (SELECT COUNT(*) FROM outbox WHERE state IN ('pending', 'sending'))",
        )
        .fetch_one(&self.reader)
        .await?;
        Ok(Backlogs { journal, outbox })
    }

    async fn inbox(&self, status: ConversationStatus, limit: i64) -> Result<Vec<InboxRow>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            conv_cols!(),
            conv_from!(),
            "WHERE c.status = ? ORDER BY (c.waiting_since IS NULL), c.priority, \
             COALESCE(c.reply_due, 9223372036854775807), c.last_message_at DESC LIMIT ?"
        ))
        .bind(status.as_str())
        .bind(limit)
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(inbox_row_from_row).collect()
    }

    async fn conversation(&self, id: ConversationId) -> Result<Option<ConversationView>> {
        let Some(row) = self.inbox_row(id.0).await? else {
            return Ok(None);
        };
        let customer_id = row.conversation.customer_id.0;
        let (display_name, notes): (String, String) =
            sqlx::query_as("SELECT display_name, notes FROM customers WHERE id = ?")
                .bind(customer_id)
                .fetch_one(&self.reader)
                .await?;
        let identities: Vec<(i64, String, String, Option<String>, Option<String>)> =
            sqlx::query_as(
                "SELECT id, platform, external_id, handle, name FROM identities \
                 WHERE customer_id = ? ORDER BY id",
            )
            .bind(customer_id)
            .fetch_all(&self.reader)
            .await?;
        let timeline = sqlx::query(concat!(
            "SELECT * FROM (SELECT ",
            msg_cols!(),
            msg_from!(),
            "JOIN conversations c ON c.id = m.conversation_id WHERE c.customer_id = ? \
             ORDER BY m.id DESC LIMIT 500) ORDER BY created_at, id"
        ))
        .bind(customer_id)
        .fetch_all(&self.reader)
        .await?
        .iter()
        .map(message_from_row)
        .collect::<Result<Vec<_>>>()?;
        Ok(Some(ConversationView {
            row,
            customer: Customer {
                id: CustomerId(customer_id),
                display_name,
                notes,
                identities: identities
                    .into_iter()
                    .map(|(id, platform, external_id, handle, name)| Identity {
                        id: IdentityId(id),
                        customer_id: CustomerId(customer_id),
                        platform,
                        external_id,
                        handle,
                        name,
                    })
                    .collect(),
            },
            timeline,
        }))
    }

    async fn conversation_messages(&self, id: ConversationId) -> Result<Vec<Message>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            msg_cols!(),
            msg_from!(),
            "WHERE m.conversation_id = ? ORDER BY m.id"
        ))
        .bind(id.0)
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|r| message_from_row(r).map(|m| m.message))
            .collect()
    }

    async fn conversation_events(&self, id: ConversationId) -> Result<Vec<Event>> {
        let rows: Vec<(i64, String, Option<i64>, Option<i64>, String, i64)> = sqlx::query_as(
            "SELECT id, kind, message_id, user_id, detail, at FROM events \
             WHERE conversation_id = ? ORDER BY id",
        )
        .bind(id.0)
        .fetch_all(&self.reader)
        .await?;
        rows.into_iter()
            .map(|(event, kind, message, user, detail, at)| {
                Ok(Event {
                    id: EventId(event),
                    conversation_id: id,
                    kind: EventKind::parse(&kind).ok_or_else(|| corrupt("event kind", &kind))?,
                    message_id: message.map(MessageId),
                    user_id: user.map(UserId),
                    detail,
                    at,
                })
            })
            .collect()
    }

    async fn set_status(
        &self,
        id: ConversationId,
        status: ConversationStatus,
        by: Option<UserId>,
    ) -> Result<()> {
        let now = now_ms();
        let mut tx = self.writer.begin().await?;
        let old: Option<String> =
            sqlx::query_scalar("SELECT status FROM conversations WHERE id = ?")
                .bind(id.0)
                .fetch_optional(&mut *tx)
                .await?;
        let Some(old) = old else {
            return Err(StoreError::NotFound("conversation"));
        };
        if old != status.as_str() {
            sqlx::query("UPDATE conversations SET status = ?, updated_at = ? WHERE id = ?")
                .bind(status.as_str())
                .bind(now)
                .bind(id.0)
                .execute(&mut *tx)
                .await?;
            insert_event(
                &mut tx,
                id.0,
                EventKind::StatusChanged,
                None,
                by.map(|u| u.0),
                status.as_str(),
                now,
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn assign(
        &self,
        id: ConversationId,
        assignee: Option<UserId>,
        by: Option<UserId>,
    ) -> Result<()> {
        let now = now_ms();
        let mut tx = self.writer.begin().await?;
        let old: Option<Option<i64>> =
            sqlx::query_scalar("SELECT assignee FROM conversations WHERE id = ?")
                .bind(id.0)
                .fetch_optional(&mut *tx)
                .await?;
        let Some(old) = old else {
            return Err(StoreError::NotFound("conversation"));
        };
        let name: Option<String> = match assignee {
            Some(u) => {
                let name = sqlx::query_scalar("SELECT name FROM users WHERE id = ?")
                    .bind(u.0)
                    .fetch_optional(&mut *tx)
                    .await?;
                if name.is_none() {
                    return Err(StoreError::NotFound("user"));
                }
                name
            }
            None => None,
        };
        if old != assignee.map(|u| u.0) {
            sqlx::query("UPDATE conversations SET assignee = ?, updated_at = ? WHERE id = ?")
                .bind(assignee.map(|u| u.0))
                .bind(now)
                .bind(id.0)
                .execute(&mut *tx)
                .await?;
            insert_event(
                &mut tx,
                id.0,
                EventKind::Assigned,
                None,
                by.map(|u| u.0),
                name.as_deref().unwrap_or(""),
                now,
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn update_customer(&self, id: CustomerId, display_name: &str, notes: &str) -> Result<()> {
        let n = sqlx::query("UPDATE customers SET display_name = ?, notes = ? WHERE id = ?")
            .bind(display_name)
            .bind(notes)
            .bind(id.0)
            .execute(&self.writer)
            .await?
            .rows_affected();
        if n == 0 {
            return Err(StoreError::NotFound("customer"));
        }
        Ok(())
    }

    async fn search(&self, query: &str, limit: i64) -> Result<Vec<SearchHit>> {
        let Some(q) = stem_query(query) else {
            return Ok(Vec::new());
        };
        let rows: Vec<(i64, i64, String)> = sqlx::query_as(
            // Newest hits straight off the index (FTS5 walks its doclist backwards for
            // `ORDER BY rowid DESC`), then only those rows are joined: a common word in
            // millions of messages costs no more than a rare one.
            "SELECT m.id, m.conversation_id, m.text FROM (SELECT rowid FROM message_search \
             WHERE message_search MATCH ? ORDER BY rowid DESC LIMIT ?) s \
             JOIN messages m ON m.id = s.rowid ORDER BY m.id DESC",
        )
        .bind(q)
        .bind(limit)
        .fetch_all(&self.reader)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(m, c, text)| SearchHit {
                message_id: MessageId(m),
                conversation_id: ConversationId(c),
                text,
            })
            .collect())
    }

    async fn events_since(&self, after: EventId, limit: i64) -> Result<Vec<LiveEvent>> {
        let rows: Vec<(i64, i64, String, Option<i64>)> = sqlx::query_as(
            "SELECT id, conversation_id, kind, message_id FROM events WHERE id > ? ORDER BY id LIMIT ?",
        )
        .bind(after.0)
        .bind(limit)
        .fetch_all(&self.reader)
        .await?;
        // The page's conversations and messages in one query each, not two per event: every
        // connected agent reads every event, so this is paid once per agent per message.
        let mut conv_ids: Vec<i64> = rows.iter().map(|r| r.1).collect();
        conv_ids.sort_unstable();
        conv_ids.dedup();
        let msg_ids: Vec<i64> = rows.iter().filter_map(|r| r.3).collect();
        let mut conversations = std::collections::HashMap::with_capacity(conv_ids.len());
        for chunk in conv_ids.chunks(500) {
            let mut q = sqlx::QueryBuilder::<Sqlite>::new(concat!(
                "SELECT ",
                conv_cols!(),
                conv_from!(),
                "WHERE c.id IN ("
            ));
            let mut ids = q.separated(", ");
            for id in chunk {
                ids.push_bind(*id);
            }
            q.push(")");
            for row in q.build().fetch_all(&self.reader).await? {
                let row = inbox_row_from_row(&row)?;
                conversations.insert(row.conversation.id.0, row);
            }
        }
        let mut messages = std::collections::HashMap::with_capacity(msg_ids.len());
        for chunk in msg_ids.chunks(500) {
            let mut q = sqlx::QueryBuilder::<Sqlite>::new(concat!(
                "SELECT ",
                msg_cols!(),
                msg_from!(),
                "WHERE m.id IN ("
            ));
            let mut ids = q.separated(", ");
            for id in chunk {
                ids.push_bind(*id);
            }
            q.push(")");
            for row in q.build().fetch_all(&self.reader).await? {
                let m = message_from_row(&row)?;
                messages.insert(m.message.id.0, m);
            }
        }
        let mut out = Vec::with_capacity(rows.len());
        for (id, conv, kind, msg) in rows {
            let kind = EventKind::parse(&kind).ok_or_else(|| corrupt("event kind", &kind))?;
            let Some(conversation) = conversations.get(&conv).cloned() else {
                continue;
            };
            out.push(LiveEvent {
                id: EventId(id),
                kind,
                conversation,
                message: msg.and_then(|m| messages.get(&m).cloned()),
            });
        }
        Ok(out)
    }

    async fn last_event_id(&self) -> Result<EventId> {
        let id: Option<i64> = sqlx::query_scalar("SELECT MAX(id) FROM events")
            .fetch_one(&self.reader)
            .await?;
        Ok(EventId(id.unwrap_or(0)))
    }

    async fn queue_reply(
        &self,
        conversation: ConversationId,
        by: UserId,
        text: &str,
        idempotency_key: &str,
    ) -> Result<Message> {
        let now = now_ms();
        let mut tx = self.writer.begin().await?;
        let existing: Option<i64> =
            sqlx::query_scalar("SELECT message_id FROM outbox WHERE idempotency_key = ?")
                .bind(idempotency_key)
                .fetch_optional(&mut *tx)
                .await?;
        let msg = match existing {
            Some(m) => m,
            None => {
                let channel: Option<i64> =
                    sqlx::query_scalar("SELECT channel_id FROM conversations WHERE id = ?")
                        .bind(conversation.0)
                        .fetch_optional(&mut *tx)
                        .await?;
                let Some(channel) = channel else {
                    return Err(StoreError::NotFound("conversation"));
                };
                let reply_to: Option<i64> = sqlx::query_scalar(
                    "SELECT MAX(id) FROM messages WHERE conversation_id = ? AND direction = 'in'",
                )
                .bind(conversation.0)
                .fetch_one(&mut *tx)
                .await?;
                let msg: i64 = sqlx::query_scalar(
                    "INSERT INTO messages (conversation_id, channel_id, direction, author_user, \
                     text, in_reply_to, created_at, received_at, delivery) \
                     VALUES (?, ?, 'out', ?, ?, ?, ?, ?, 'queued') RETURNING id",
                )
                .bind(conversation.0)
                .bind(channel)
                .bind(by.0)
                .bind(text)
                .bind(reply_to)
                .bind(now)
                .bind(now)
                .fetch_one(&mut *tx)
                .await?;
                sqlx::query(
                    "INSERT INTO outbox (message_id, channel_id, idempotency_key, state, \
                     next_attempt_at, created_at, updated_at) VALUES (?, ?, ?, 'pending', ?, ?, ?)",
                )
                .bind(msg)
                .bind(channel)
                .bind(idempotency_key)
                .bind(now)
                .bind(now)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                sqlx::query("INSERT INTO message_search (rowid, terms) VALUES (?, ?)")
                    .bind(msg)
                    .bind(search_terms(text))
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(
                    "UPDATE conversations SET waiting_since = NULL, reply_due = NULL, \
                     updated_at = ? WHERE id = ?",
                )
                .bind(now)
                .bind(conversation.0)
                .execute(&mut *tx)
                .await?;
                insert_event(
                    &mut tx,
                    conversation.0,
                    EventKind::ReplyQueued,
                    Some(msg),
                    Some(by.0),
                    "",
                    now,
                )
                .await?;
                msg
            }
        };
        tx.commit().await?;
        let row = sqlx::query(concat!(
            "SELECT ",
            msg_cols!(),
            msg_from!(),
            "WHERE m.id = ?"
        ))
        .bind(msg)
        .fetch_one(&self.writer)
        .await?;
        Ok(message_from_row(&row)?.message)
    }

    async fn claim_outbox(&self, now: Millis, limit: i64) -> Result<Vec<OutboxItem>> {
        let mut tx = self.writer.begin().await?;
        let ids: Vec<i64> = sqlx::query_scalar(
            "UPDATE outbox SET state = 'sending', attempts = attempts + 1, updated_at = ? \
             WHERE id IN (SELECT id FROM outbox WHERE state = 'pending' AND next_attempt_at <= ? \
             ORDER BY next_attempt_at, id LIMIT ?) RETURNING id",
        )
        .bind(now)
        .bind(now)
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let row = sqlx::query(
                "SELECT o.id, o.message_id, o.channel_id, o.idempotency_key, o.attempts, \
                 m.conversation_id, m.text, r.external_id AS reply_to_external_id, \
                 (SELECT i.external_id FROM identities i WHERE i.customer_id = c.customer_id \
                    AND i.platform = ch.kind ORDER BY i.id LIMIT 1) AS recipient_external_id, \
                 (SELECT MAX(x.created_at) FROM messages x WHERE x.conversation_id = c.id \
                    AND x.direction = 'in') AS last_in, \
                 (SELECT json_extract(j.payload, '$.place.kind') FROM journal j \
                    WHERE j.channel_id = r.channel_id AND j.dedupe_key = r.external_id) \
                    AS reply_to_place \
                 FROM outbox o JOIN messages m ON m.id = o.message_id \
                 JOIN conversations c ON c.id = m.conversation_id \
                 JOIN channels ch ON ch.id = o.channel_id \
                 LEFT JOIN messages r ON r.id = m.in_reply_to WHERE o.id = ?",
            )
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
            out.push(OutboxItem {
                id: row.try_get("id")?,
                message_id: MessageId(row.try_get("message_id")?),
                conversation_id: ConversationId(row.try_get("conversation_id")?),
                channel_id: ChannelId(row.try_get("channel_id")?),
                idempotency_key: row.try_get("idempotency_key")?,
                text: row.try_get("text")?,
                attempts: row.try_get("attempts")?,
                reply_to_external_id: row.try_get("reply_to_external_id")?,
                recipient_external_id: row.try_get("recipient_external_id")?,
                last_customer_message_at: row.try_get("last_in")?,
                reply_to_place: row
                    .try_get::<Option<String>, _>("reply_to_place")?
                    .and_then(|kind| {
                        serde_json::from_value::<PlaceKind>(serde_json::Value::String(kind)).ok()
                    }),
            });
        }
        tx.commit().await?;
        Ok(out)
    }

    async fn outbox_sent(&self, id: i64, platform_id: Option<&str>, now: Millis) -> Result<()> {
        let mut tx = self.writer.begin().await?;
        let row: Option<(i64, i64)> = sqlx::query_as(
            "UPDATE outbox SET state = 'sent', updated_at = ?, last_error = NULL WHERE id = ? \
             AND state <> 'sent' RETURNING message_id, \
             (SELECT conversation_id FROM messages WHERE messages.id = outbox.message_id)",
        )
        .bind(now)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some((msg, conv)) = row {
            // An echo without our key may have beaten this response and already recorded
            // the platform id on a copy; the reply is sent all the same, so no conflict.
            sqlx::query(
                "UPDATE messages SET delivery = 'sent', delivery_error = NULL, \
                 external_id = CASE WHEN EXISTS (SELECT 1 FROM messages o \
                   WHERE o.channel_id = messages.channel_id AND o.external_id = ?1 \
                   AND o.id <> messages.id) THEN external_id \
                   ELSE COALESCE(?1, external_id) END WHERE id = ?2",
            )
            .bind(platform_id)
            .bind(msg)
            .execute(&mut *tx)
            .await?;
            insert_event(
                &mut tx,
                conv,
                EventKind::ReplySent,
                Some(msg),
                None,
                "",
                now,
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn outbox_retry(&self, id: i64, next_attempt_at: Millis, error: &str) -> Result<()> {
        sqlx::query(
            "UPDATE outbox SET state = 'pending', next_attempt_at = ?, last_error = ?, \
             updated_at = ? WHERE id = ? AND state = 'sending'",
        )
        .bind(next_attempt_at)
        .bind(error)
        .bind(now_ms())
        .bind(id)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn outbox_failed(&self, id: i64, error: &str, now: Millis) -> Result<()> {
        let mut tx = self.writer.begin().await?;
        park_claimed(&mut tx, id, "failed", error, now).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn recover_outbox(&self) -> Result<u64> {
        let n = sqlx::query("UPDATE outbox SET state = 'pending' WHERE state = 'sending'")
            .execute(&self.writer)
            .await?
            .rows_affected();
        Ok(n)
    }

    async fn outbox_unknown(&self, id: i64, reason: &str, now: Millis) -> Result<()> {
        let mut tx = self.writer.begin().await?;
        park_claimed(&mut tx, id, "unknown", reason, now).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn park_interrupted_outbox(
        &self,
        kinds: &[ChannelKind],
        reason: &str,
        now: Millis,
    ) -> Result<u64> {
        let mut tx = self.writer.begin().await?;
        let mut parked = 0;
        for kind in kinds {
            let ids: Vec<i64> = sqlx::query_scalar(
                "SELECT o.id FROM outbox o JOIN channels ch ON ch.id = o.channel_id \
                 WHERE o.state = 'sending' AND ch.kind = ? ORDER BY o.id",
            )
            .bind(kind.as_str())
            .fetch_all(&mut *tx)
            .await?;
            for id in ids {
                park_claimed(&mut tx, id, "unknown", reason, now).await?;
                parked += 1;
            }
        }
        tx.commit().await?;
        Ok(parked)
    }

    async fn confirm_outbox_by_key(
        &self,
        channel: ChannelId,
        key: &str,
        platform_id: &str,
        now: Millis,
    ) -> Result<bool> {
        let mut tx = self.writer.begin().await?;
        let Some(reply) = pipeline::load_reply(&mut tx, channel.0, key).await? else {
            return Ok(false);
        };
        let next = pipeline::next_ids(&mut tx).await?;
        let plan = plan::confirm_reply(reply, channel.0, key, platform_id, next);
        pipeline::write_plan(&mut tx, &plan, now).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn fail_outbox_by_key(
        &self,
        channel: ChannelId,
        key: &str,
        reason: &str,
        now: Millis,
    ) -> Result<bool> {
        let mut tx = self.writer.begin().await?;
        let failed = fail_by_key(&mut tx, channel.0, key, reason, now).await?;
        tx.commit().await?;
        Ok(failed)
    }

    async fn create_user(
        &self,
        email: &str,
        name: &str,
        role: Role,
        password_hash: &str,
    ) -> Result<User> {
        let row = sqlx::query(
            "INSERT INTO users (email, name, role, password_hash, created_at) VALUES (?, ?, ?, ?, ?) \
             ON CONFLICT(email) DO NOTHING RETURNING id, email, name, role",
        )
        .bind(email)
        .bind(name)
        .bind(role.as_str())
        .bind(password_hash)
        .bind(now_ms())
        .fetch_optional(&self.writer)
        .await?;
        match row {
            Some(r) => user_from_row(&r),
            None => Err(StoreError::Conflict("user")),
        }
    }

    async fn user_credentials(&self, email: &str) -> Result<Option<(User, String)>> {
        let row =
            sqlx::query("SELECT id, email, name, role, password_hash FROM users WHERE email = ?")
                .bind(email)
                .fetch_optional(&self.reader)
                .await?;
        match row {
            Some(r) => Ok(Some((user_from_row(&r)?, r.try_get("password_hash")?))),
            None => Ok(None),
        }
    }

    async fn create_session(
        &self,
        user: UserId,
        token_hash: &str,
        expires_at: Millis,
    ) -> Result<()> {
        sqlx::query("INSERT INTO sessions (token_hash, user_id, created_at, expires_at) VALUES (?, ?, ?, ?)")
            .bind(token_hash)
            .bind(user.0)
            .bind(now_ms())
            .bind(expires_at)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    async fn session_user(&self, token_hash: &str, now: Millis) -> Result<Option<User>> {
        let row = sqlx::query(
            "SELECT u.id, u.email, u.name, u.role FROM sessions s JOIN users u ON u.id = s.user_id \
             WHERE s.token_hash = ? AND s.expires_at > ?",
        )
        .bind(token_hash)
        .bind(now)
        .fetch_optional(&self.reader)
        .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    async fn delete_session(&self, token_hash: &str) -> Result<()> {
        sqlx::query("DELETE FROM sessions WHERE token_hash = ?")
            .bind(token_hash)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    async fn create_api_token(&self, name: &str, token_hash: &str) -> Result<()> {
        sqlx::query("INSERT INTO api_tokens (name, token_hash, created_at) VALUES (?, ?, ?)")
            .bind(name)
            .bind(token_hash)
            .bind(now_ms())
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    async fn api_token_valid(&self, token_hash: &str) -> Result<bool> {
        let found: Option<i64> = sqlx::query_scalar(
            "SELECT id FROM api_tokens WHERE token_hash = ? AND revoked_at IS NULL",
        )
        .bind(token_hash)
        .fetch_optional(&self.reader)
        .await?;
        Ok(found.is_some())
    }
}

/// The batch path against the one-at-a-time path: the same journal applied in one big batch
/// and entry by entry must leave the very same rows (but for wall-clock stamps).
#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod batch_tests {
    use balie_core::{Author, Inbound, InboundKind};

    use super::*;

    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            usize::try_from((self.0 >> 33) % n.max(1) as u64).unwrap()
        }
    }

    const T0: Millis = 1_700_000_000_000;

    fn inbound(kind: InboundKind, id: String, who: usize, text: String) -> Inbound {
        Inbound {
            external_id: id,
            kind,
            author: Author {
                platform_id: format!("c{who}"),
                handle: None,
                name: None,
            },
            text,
            in_reply_to: None,
            thread_key: None,
            place: None,
            created_at: T0,
            account_id: None,
            attachments: Vec::new(),
            revision: None,
            outbox_key: None,
        }
    }

    /// A round of traffic on `channels`: new customers and known ones, replies to messages of
    /// this round and earlier ones (their own and others'), platform threads, name changes,
    /// edits, removals and echoes.
    fn round(
        rng: &mut Rng,
        channels: &[ChannelId],
        sent: &mut Vec<(usize, String, usize)>,
        n: usize,
        start: usize,
    ) -> Vec<NewJournalEntry> {
        let mut out = Vec::new();
        for k in 0..n {
            let i = start + k;
            let c = rng.below(channels.len());
            // A big round brings many new customers, a small one mostly known ones.
            let who = rng.below(if n > 500 { 900 } else { 30 });
            let roll = rng.below(100);
            let mut inb = if roll < 8 && !sent.is_empty() {
                let (ch, id, _) = sent[rng.below(sent.len())].clone();
                let kind = if rng.below(2) == 0 {
                    InboundKind::Edited
                } else {
                    InboundKind::Removed
                };
                let mut e = inbound(kind, id, who, format!("edit {i}"));
                e.revision = Some(format!("{i}"));
                out.push(NewJournalEntry {
                    channel_id: channels[ch],
                    inbound: e,
                    received_at: T0 + i64::try_from(i).unwrap() * 1000,
                });
                continue;
            } else if roll < 13 {
                inbound(
                    InboundKind::Echo,
                    format!("e{i}"),
                    who,
                    format!("answer {i}"),
                )
            } else {
                inbound(
                    InboundKind::Message,
                    format!("m{i}"),
                    who,
                    format!("vraag {i}"),
                )
            };
            match rng.below(4) {
                0 => inb.author.name = Some(format!("Klant {who} v{}", rng.below(3))),
                1 => inb.author.handle = Some(format!("k{who}")),
                _ => {}
            }
            if rng.below(3) == 0 {
                inb.thread_key = Some(format!("t{}", rng.below(5)));
            }
            if rng.below(2) == 0 && !sent.is_empty() {
                let mine: Vec<&(usize, String, usize)> = sent.iter().filter(|s| s.0 == c).collect();
                if !mine.is_empty() {
                    inb.in_reply_to = Some(mine[rng.below(mine.len())].1.clone());
                }
            }
            if inb.kind == InboundKind::Message {
                sent.push((c, inb.external_id.clone(), who));
            }
            out.push(NewJournalEntry {
                channel_id: channels[c],
                inbound: inb,
                received_at: T0 + i64::try_from(i).unwrap() * 1000,
            });
        }
        out
    }

    async fn world(store: &SqliteStore) -> Vec<ChannelId> {
        let brand = store.ensure_brand("b").await.unwrap();
        let mut out = Vec::new();
        for (kind, name) in [
            (ChannelKind::Api, "api"),
            (ChannelKind::Api, "api-2"),
            (ChannelKind::X, "x"),
        ] {
            out.push(
                store
                    .create_channel(brand, kind, name, "{}")
                    .await
                    .unwrap()
                    .id,
            );
        }
        out
    }

    async fn apply_pending(store: &SqliteStore, limit: i64) -> Vec<Applied> {
        let mut all = Vec::new();
        loop {
            let batch: Vec<Prepared> = store
                .pending_journal(limit)
                .await
                .unwrap()
                .into_iter()
                .map(|entry| {
                    let urgency = u8::try_from(entry.id * 37 % 100).unwrap();
                    Prepared {
                        entry,
                        analysis: Some("{}".into()),
                        urgency,
                    }
                })
                .collect();
            if batch.is_empty() {
                return all;
            }
            let sla = SlaPolicy::default();
            all.extend(store.apply_journal(&batch, &sla).await.unwrap());
        }
    }

    async fn dump(store: &SqliteStore) -> Vec<String> {
        let queries = [
            "SELECT id, display_name FROM customers ORDER BY id",
            "SELECT id, customer_id, platform, external_id, handle, name FROM identities ORDER BY id",
            "SELECT id, brand_id, channel_id, customer_id, status, priority, waiting_since, \
             reply_due, thread_key, first_line, last_message_at FROM conversations ORDER BY id",
            "SELECT id, conversation_id, channel_id, direction, external_id, author_identity, \
             text, in_reply_to, created_at, received_at, delivery, removed, analysis FROM messages \
             ORDER BY id",
            "SELECT id, conversation_id, kind, message_id, user_id, detail FROM events ORDER BY id",
            "SELECT rowid FROM message_search WHERE message_search MATCH 'vraag' ORDER BY rowid",
            "SELECT rowid FROM message_search WHERE message_search MATCH 'edit' ORDER BY rowid",
        ];
        let mut out = Vec::new();
        for q in queries {
            for row in sqlx::query(q).fetch_all(&store.writer).await.unwrap() {
                let cols: Vec<String> = (0..row.len())
                    .map(|i| {
                        row.try_get::<Option<String>, _>(i)
                            .map(|v| format!("{v:?}"))
                            .or_else(|_| row.try_get::<Option<i64>, _>(i).map(|v| format!("{v:?}")))
                            .unwrap()
                    })
                    .collect();
                out.push(format!("{q}: {}", cols.join("|")));
            }
        }
        out
    }

    #[tokio::test]
    async fn a_whole_batch_leaves_the_same_rows_as_one_entry_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let batched = SqliteStore::open(&dir.path().join("a.db")).await.unwrap();
        let single = SqliteStore::open(&dir.path().join("b.db")).await.unwrap();
        let channels = world(&batched).await;
        assert_eq!(world(&single).await, channels);
        let mut rng = Rng(7);
        let mut sent = Vec::new();
        let mut start = 0;
        // The first round is bigger than one multi-row statement (`BATCH_ROWS`).
        for (r, size) in [1_100, 150, 150, 150, 150, 150].into_iter().enumerate() {
            let entries = round(&mut rng, &channels, &mut sent, size, start);
            start += size;
            batched.append_journal(&entries).await.unwrap();
            single.append_journal(&entries).await.unwrap();
            let a = apply_pending(&batched, 10_000).await;
            let b = apply_pending(&single, 1).await;
            assert_eq!(a, b, "round {r}");
            // Agents close, park and snooze some conversations between rounds.
            let convs: Vec<i64> = sqlx::query_scalar("SELECT id FROM conversations ORDER BY id")
                .fetch_all(&batched.writer)
                .await
                .unwrap();
            for (k, id) in convs.iter().enumerate() {
                let status = match (k + r) % 5 {
                    0 => ConversationStatus::Closed,
                    1 => ConversationStatus::Pending,
                    2 => ConversationStatus::Snoozed,
                    _ => continue,
                };
                for store in [&batched, &single] {
                    store
                        .set_status(ConversationId(*id), status, None)
                        .await
                        .unwrap();
                }
            }
        }
        let (a, b) = (dump(&batched).await, dump(&single).await);
        assert!(a.len() > 4000, "a real workload: {} rows", a.len());
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(x, y);
        }
        assert_eq!(a.len(), b.len());
        batched.close().await;
        single.close().await;
    }
}
