//! The PostgreSQL backend: a connection pool, the same semantics as [`crate::SqliteStore`].
//!
//! Every write that records a timeline event (the pipeline, replies, delivery results,
//! status and assignment changes), bulk loads and the start-up outbox recovery run under one
//! transaction-level advisory lock, taken first thing in their transaction. That gives
//! PostgreSQL what SQLite's single writer gives for free: identifying and threading never race between workers, an idempotency key
//! is checked and stored atomically, and event ids become visible in order, so the live
//! stream (`events_since`) never skips an event committed late. Reads, journal appends and
//! outbox claims (`FOR UPDATE SKIP LOCKED`) run in parallel across processes.

use std::borrow::Cow;
use std::collections::HashMap;

use async_trait::async_trait;
use balie_core::{
    BrandId, Channel, ChannelId, ChannelKind, Conversation, ConversationId, ConversationStatus,
    Customer, CustomerId, DeliveryState, Direction, Event, EventId, EventKind, Identity,
    IdentityId, Message, MessageId, Millis, Place, PlaceKind, Priority, Role, SlaPolicy, User,
    UserId,
};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions, PgRow};
use sqlx::{Connection, Postgres, Row, Transaction};

mod pipeline;

use crate::common::{conflict_or, corrupt, display_name, first_line, now_ms};
use crate::plan;
use crate::search::{search_lexemes, stem_tsquery};
use crate::{
    Appended, Applied, Backlogs, BulkConversation, BulkMessage, ConversationView, InboxRow,
    JournalEntry, LiveEvent, NewJournalEntry, OutboxItem, Prepared, Result, SealedSecret,
    SearchHit, Store, StoreError, TimelineMessage, dedupe_key,
};

/// Migrations in order. Released ones are never edited: add a new entry instead.
const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../../migrations/postgres/0001_init.sql")),
    (
        2,
        include_str!("../../migrations/postgres/0002_search_statistics.sql"),
    ),
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
    let result = migrate_locked(&mut conn).await;
    let unlocked = sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(MIGRATE_LOCK)
        .execute(&mut *conn)
        .await;
    result?;
    unlocked?;
    Ok(())
}

async fn migrate_locked(conn: &mut PgConnection) -> Result<()> {
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS schema_migrations \
         (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
    )
    .execute(&mut *conn)
    .await?;
    for (version, sql) in MIGRATIONS {
        let mut tx = conn.begin().await?;
        let done: Option<i64> =
            sqlx::query_scalar("SELECT version FROM schema_migrations WHERE version = $1")
                .bind(version)
                .fetch_optional(&mut *tx)
                .await?;
        if done.is_none() {
            sqlx::raw_sql(sqlx::AssertSqlSafe(*sql))
                .execute(&mut *tx)
                .await?;
            sqlx::query("INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)")
                .bind(version)
                .bind(now_ms())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
    }
    Ok(())
}

/// PostgreSQL store over a connection pool.
#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
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
            .connect_with(options)
            .await?;
        migrate(&pool).await?;
        Ok(Self { pool })
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Creates the database `name` on the server `admin_url` connects to and returns the new
    /// database's URL (set-up scripts, tests). `name` is ASCII letters, digits and `_`.
    pub async fn create_database(admin_url: &str, name: &str) -> Result<String> {
        admin_statement(
            admin_url,
            &format!("CREATE DATABASE \"{}\"", plain_name(name)?),
        )
        .await?;
        Ok(url_with_database(admin_url, name))
    }

    /// Drops the database `name` if it exists, ending its open connections.
    pub async fn drop_database(admin_url: &str, name: &str) -> Result<()> {
        admin_statement(
            admin_url,
            &format!(
                "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                plain_name(name)?
            ),
        )
        .await
    }

    /// Statement-level access (benchmarks, administration).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// A transaction for writes that record events: takes the write lock first.
    async fn begin_write(&self) -> Result<Tx> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(WRITE_LOCK)
            .execute(&mut *tx)
            .await?;
        Ok(tx)
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

impl PgStore {
    async fn inbox_row(&self, id: i64) -> Result<Option<InboxRow>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            conv_cols!(),
            conv_from!(),
            "WHERE c.id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(inbox_row_from_row).transpose()
    }
}

/// SQLite reads a negative LIMIT as none; PostgreSQL refuses it but reads NULL that way.
fn no_limit_if_negative(limit: i64) -> Option<i64> {
    (limit >= 0).then_some(limit)
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

/// A database name safe to put in SQL as is.
fn plain_name(name: &str) -> Result<&str> {
    let plain = !name.is_empty()
        && name.len() <= 63
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if plain {
        Ok(name)
    } else {
        Err(StoreError::Database(sqlx::Error::Configuration(
            format!("database name {name:?}: use ASCII letters, digits and _").into(),
        )))
    }
}

/// Runs one statement (outside a transaction) on a connection of its own.
async fn admin_statement(admin_url: &str, sql: &str) -> Result<()> {
    let mut conn = PgConnection::connect(admin_url).await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(&mut conn)
        .await?;
    conn.close().await?;
    Ok(())
}

/// `url` with its database replaced by `database`.
fn url_with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let base = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{base}/{database}?{query}"),
        None => format!("{base}/{database}"),
    }
}

/// A message's search lexemes, for `array_to_tsvector`.
fn lexemes(text: &str) -> Vec<String> {
    search_lexemes(text)
        .into_iter()
        .filter(|l| !l.is_empty())
        .collect()
}

fn channel_from_row(r: &PgRow) -> Result<Channel> {
    let kind: String = r.try_get("kind")?;
    Ok(Channel {
        id: ChannelId(r.try_get("id")?),
        brand_id: BrandId(r.try_get("brand_id")?),
        kind: ChannelKind::parse(&kind).ok_or_else(|| corrupt("channel kind", &kind))?,
        name: r.try_get("name")?,
        settings: r.try_get("settings")?,
    })
}

fn inbox_row_from_row(r: &PgRow) -> Result<InboxRow> {
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

fn message_from_row(r: &PgRow) -> Result<TimelineMessage> {
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
            removed: r.try_get::<bool, _>("removed")?,
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

fn user_from_row(r: &PgRow) -> Result<User> {
    let role: String = r.try_get("role")?;
    Ok(User {
        id: UserId(r.try_get("id")?),
        email: r.try_get("email")?,
        name: r.try_get("name")?,
        role: Role::parse(&role).ok_or_else(|| corrupt("role", &role))?,
    })
}

async fn insert_event(
    tx: &mut Tx,
    conversation: i64,
    kind: EventKind,
    message: Option<i64>,
    user: Option<i64>,
    detail: &str,
    at: Millis,
) -> Result<i64> {
    let id = sqlx::query_scalar(
        "INSERT INTO events (conversation_id, kind, message_id, user_id, detail, at) \
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
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

/// Marks the reply behind `key` failed (see [`Store::fail_outbox_by_key`]).
async fn fail_by_key(
    tx: &mut Tx,
    channel: i64,
    key: &str,
    reason: &str,
    now: Millis,
) -> Result<bool> {
    let row: Option<(i64, i64)> = sqlx::query_as(
        "UPDATE outbox SET state = 'failed', updated_at = $1, last_error = $2 \
         WHERE idempotency_key = $3 AND channel_id = $4 AND state <> 'failed' \
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
    tx: &mut Tx,
    conv: i64,
    msg: i64,
    reason: &str,
    now: Millis,
) -> Result<()> {
    sqlx::query("UPDATE messages SET delivery = 'failed', delivery_error = $1 WHERE id = $2")
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

/// Ends a claimed (`sending`) outbox row in `state` (`failed` or `unknown`); a row in any
/// other state is left alone.
async fn park_claimed(tx: &mut Tx, id: i64, state: &str, reason: &str, now: Millis) -> Result<()> {
    let row: Option<(i64, i64)> = sqlx::query_as(
        "UPDATE outbox SET state = $1, updated_at = $2, last_error = $3 WHERE id = $4 \
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

/// `n` fresh ids from `table`'s identity sequence, ascending.
async fn reserve_ids(tx: &mut Tx, table: &str, n: usize) -> Result<Vec<i64>> {
    let n = i64::try_from(n).unwrap_or(i64::MAX);
    let mut ids: Vec<i64> = sqlx::query_scalar(
        "SELECT nextval(pg_get_serial_sequence($1, 'id')) FROM generate_series(1, $2)",
    )
    .bind(table)
    .bind(n)
    .fetch_all(&mut **tx)
    .await?;
    ids.sort_unstable();
    Ok(ids)
}

#[async_trait]
impl Store for PgStore {
    async fn ensure_brand(&self, name: &str) -> Result<BrandId> {
        sqlx::query(
            "INSERT INTO brands (name, created_at) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        let id = sqlx::query_scalar("SELECT id FROM brands WHERE name = $1")
            .bind(name)
            .fetch_one(&self.pool)
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
            "INSERT INTO channels (brand_id, kind, name, settings, created_at) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (name) DO NOTHING RETURNING id, brand_id, kind, name, settings",
        )
        .bind(brand.0)
        .bind(kind.as_str())
        .bind(name)
        .bind(settings)
        .bind(now_ms())
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(r) => channel_from_row(&r),
            None => Err(StoreError::Conflict("channel")),
        }
    }

    async fn channel(&self, id: ChannelId) -> Result<Option<Channel>> {
        let row =
            sqlx::query("SELECT id, brand_id, kind, name, settings FROM channels WHERE id = $1")
                .bind(id.0)
                .fetch_optional(&self.pool)
                .await?;
        row.as_ref().map(channel_from_row).transpose()
    }

    async fn channel_by_name(&self, name: &str) -> Result<Option<Channel>> {
        let row =
            sqlx::query("SELECT id, brand_id, kind, name, settings FROM channels WHERE name = $1")
                .bind(name)
                .fetch_optional(&self.pool)
                .await?;
        row.as_ref().map(channel_from_row).transpose()
    }

    async fn channels(&self) -> Result<Vec<Channel>> {
        let rows =
            sqlx::query("SELECT id, brand_id, kind, name, settings FROM channels ORDER BY id")
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(channel_from_row).collect()
    }

    async fn update_channel_settings(&self, channel: ChannelId, settings: &str) -> Result<()> {
        let n = sqlx::query("UPDATE channels SET settings = $1 WHERE id = $2")
            .bind(settings)
            .bind(channel.0)
            .execute(&self.pool)
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
        let exists: Option<i64> = sqlx::query_scalar("SELECT id FROM channels WHERE id = $1")
            .bind(channel.0)
            .fetch_optional(&self.pool)
            .await?;
        if exists.is_none() {
            return Err(StoreError::NotFound("channel"));
        }
        sqlx::query(
            "INSERT INTO channel_secrets (channel_id, name, nonce, ciphertext, updated_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (channel_id, name) DO UPDATE SET \
             nonce = EXCLUDED.nonce, ciphertext = EXCLUDED.ciphertext, \
             updated_at = EXCLUDED.updated_at",
        )
        .bind(channel.0)
        .bind(name)
        .bind(&sealed.nonce)
        .bind(&sealed.ciphertext)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn channel_secrets(&self, channel: ChannelId) -> Result<Vec<(String, SealedSecret)>> {
        let rows: Vec<(String, Vec<u8>, Vec<u8>)> = sqlx::query_as(
            // Byte order, as SQLite sorts, whatever the database's collation.
            "SELECT name, nonce, ciphertext FROM channel_secrets WHERE channel_id = $1 \
             ORDER BY name COLLATE \"C\"",
        )
        .bind(channel.0)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(name, nonce, ciphertext)| (name, SealedSecret { nonce, ciphertext }))
            .collect())
    }

    async fn append_journal(&self, entries: &[NewJournalEntry]) -> Result<Vec<Appended>> {
        /// Rows per INSERT: 4 parameters each, well under PostgreSQL's 65,535.
        const ROWS_PER_INSERT: usize = 1000;
        let mut rows = Vec::with_capacity(entries.len());
        for e in entries {
            let payload = serde_json::to_string(&e.inbound)
                .map_err(|err| StoreError::Corrupt(format!("unserialisable inbound: {err}")))?;
            rows.push((
                e.channel_id.0,
                without_nul(&dedupe_key(&e.inbound)).into_owned(),
                payload,
                e.received_at,
            ));
        }
        let mut out = Vec::with_capacity(entries.len());
        // Committed with synchronous_commit on (PostgreSQL's default): durable on return.
        let mut tx = self.pool.begin().await?;
        for chunk in rows.chunks(ROWS_PER_INSERT) {
            let mut q = sqlx::QueryBuilder::<Postgres>::new(
                "INSERT INTO journal (channel_id, dedupe_key, payload, received_at) ",
            );
            q.push_values(chunk, |mut b, (channel, key, payload, received_at)| {
                b.push_bind(*channel)
                    .push_bind(key.as_str())
                    .push_bind(payload.as_str())
                    .push_bind(*received_at);
            });
            q.push(
                " ON CONFLICT (channel_id, dedupe_key) DO NOTHING \
                 RETURNING id, channel_id, dedupe_key",
            );
            let inserted: Vec<(i64, i64, String)> = q.build_query_as().fetch_all(&mut *tx).await?;
            // Only new rows come back; within a chunk the first of equal keys is the new one.
            let mut new: HashMap<(i64, &str), i64> = inserted
                .iter()
                .map(|(id, channel, key)| ((*channel, key.as_str()), *id))
                .collect();
            for (channel, key, _, _) in chunk {
                out.push(
                    new.remove(&(*channel, key.as_str()))
                        .map_or(Appended::Duplicate, Appended::New),
                );
            }
        }
        tx.commit().await?;
        Ok(out)
    }

    async fn pending_journal(&self, limit: i64) -> Result<Vec<JournalEntry>> {
        let rows: Vec<(i64, i64, String, i64)> = sqlx::query_as(
            "SELECT id, channel_id, payload, received_at FROM journal \
             WHERE processed_at IS NULL ORDER BY id LIMIT $1",
        )
        .bind(no_limit_if_negative(limit))
        .fetch_all(&self.pool)
        .await?;
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
        // Every stored text free of NUL, so a customer's `\u0000` never fails its batch over
        // and over.
        let batch: Vec<Prepared> = batch
            .iter()
            .map(|p| prepared_without_nul(p).into_owned())
            .collect();
        // Under the write lock: another worker applying the same entries waits, then sees
        // them processed and skips them.
        let mut tx = self.begin_write().await?;
        let snapshot = pipeline::load_snapshot(&mut tx, &batch).await?;
        let plan = plan::plan(snapshot, &batch, sla)
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
        /// Rows per multi-row INSERT (at most 12 parameters a row, under 65,535).
        const ROWS: usize = 2_000;
        let now = now_ms();
        let (brand, kind): (i64, String) =
            sqlx::query_as("SELECT brand_id, kind FROM channels WHERE id = $1")
                .bind(channel.0)
                .fetch_optional(&self.pool)
                .await?
                .ok_or(StoreError::NotFound("channel"))?;
        let conversations: Vec<&BulkConversation> = conversations
            .iter()
            .filter(|c| !c.messages.is_empty())
            .collect();
        let message_count: usize = conversations.iter().map(|c| c.messages.len()).sum();
        let mut tx = self.begin_write().await?;
        // Ids come from the tables' own sequences, so other writers never collide with them.
        let customer_ids = reserve_ids(&mut tx, "customers", conversations.len()).await?;
        let conversation_ids = reserve_ids(&mut tx, "conversations", conversations.len()).await?;
        let message_ids = reserve_ids(&mut tx, "messages", message_count).await?;
        let mut written = 0u64;
        let mut next_message = message_ids.iter().copied();
        for (chunk_no, chunk) in conversations.chunks(ROWS).enumerate() {
            let base = chunk_no * ROWS;
            let customer = |i: usize| customer_ids.get(base + i).copied().unwrap_or_default();
            let conversation =
                |i: usize| conversation_ids.get(base + i).copied().unwrap_or_default();
            let mut q = sqlx::QueryBuilder::<Postgres>::new(
                "INSERT INTO customers (id, display_name, created_at) ",
            );
            q.push_values(chunk.iter().enumerate(), |mut b, (i, c)| {
                b.push_bind(customer(i))
                    .push_bind(display_name(
                        &c.author.platform_id,
                        c.author.handle.as_ref(),
                        c.author.name.as_ref(),
                    ))
                    .push_bind(now);
            });
            q.build().execute(&mut *tx).await?;
            let mut q = sqlx::QueryBuilder::<Postgres>::new(
                "INSERT INTO identities (customer_id, platform, external_id, handle, name) ",
            );
            q.push_values(chunk.iter().enumerate(), |mut b, (i, c)| {
                b.push_bind(customer(i))
                    .push_bind(kind.as_str())
                    .push_bind(c.author.platform_id.as_str())
                    .push_bind(c.author.handle.as_deref())
                    .push_bind(c.author.name.as_deref());
            });
            q.build()
                .execute(&mut *tx)
                .await
                .map_err(|e| conflict_or(e, "identity"))?;
            let mut q = sqlx::QueryBuilder::<Postgres>::new(
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
                b.push_bind(conversation(i))
                    .push_bind(brand)
                    .push_bind(channel.0)
                    .push_bind(customer(i))
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
                .flat_map(|(i, c)| c.messages.iter().map(move |m| (conversation(i), m)))
                .map(|(conv, m)| (next_message.next().unwrap_or_default(), conv, m))
                .collect();
            for part in rows.chunks(ROWS) {
                let mut q = sqlx::QueryBuilder::<Postgres>::new(
                    "INSERT INTO messages (id, conversation_id, channel_id, direction, \
                     external_id, text, created_at, received_at, delivery, terms) ",
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
                        .push_bind("received")
                        .push("array_to_tsvector(")
                        .push_bind_unseparated(lexemes(&m.text))
                        .push_unseparated("::text[])");
                });
                q.build()
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| conflict_or(e, "message"))?;
                written += part.len() as u64;
            }
        }
        tx.commit().await?;
        // The new terms moved from the GIN index's pending list into the index proper, and
        // fresh statistics, before autovacuum gets to them: otherwise every search scans the
        // pending list, and a rare word walks all messages backwards.
        sqlx::raw_sql(
            "SELECT gin_clean_pending_list('messages_terms'::regclass); \
             ANALYZE customers, identities, conversations, messages",
        )
        .execute(&self.pool)
        .await?;
        Ok(written)
    }

    async fn backlogs(&self) -> Result<Backlogs> {
        let (journal, outbox): (i64, i64) = sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM journal WHERE processed_at IS NULL), \
             (SELECT COUNT(*) FROM outbox WHERE state IN ('pending', 'sending'))",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(Backlogs { journal, outbox })
    }

    async fn inbox(&self, status: ConversationStatus, limit: i64) -> Result<Vec<InboxRow>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            conv_cols!(),
            conv_from!(),
            "WHERE c.status = $1 ORDER BY (c.waiting_since IS NULL), c.priority, \
             COALESCE(c.reply_due, 9223372036854775807), c.last_message_at DESC, c.id LIMIT $2"
        ))
        .bind(status.as_str())
        .bind(no_limit_if_negative(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(inbox_row_from_row).collect()
    }

    async fn conversation(&self, id: ConversationId) -> Result<Option<ConversationView>> {
        let Some(row) = self.inbox_row(id.0).await? else {
            return Ok(None);
        };
        let customer_id = row.conversation.customer_id.0;
        let (display_name, notes): (String, String) =
            sqlx::query_as("SELECT display_name, notes FROM customers WHERE id = $1")
                .bind(customer_id)
                .fetch_one(&self.pool)
                .await?;
        let identities: Vec<(i64, String, String, Option<String>, Option<String>)> =
            sqlx::query_as(
                "SELECT id, platform, external_id, handle, name FROM identities \
                 WHERE customer_id = $1 ORDER BY id",
            )
            .bind(customer_id)
            .fetch_all(&self.pool)
            .await?;
        let timeline = sqlx::query(concat!(
            "SELECT * FROM (SELECT ",
            msg_cols!(),
            msg_from!(),
            "JOIN conversations c ON c.id = m.conversation_id WHERE c.customer_id = $1 \
             ORDER BY m.id DESC LIMIT 500) t ORDER BY created_at, id"
        ))
        .bind(customer_id)
        .fetch_all(&self.pool)
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
            "WHERE m.conversation_id = $1 ORDER BY m.id"
        ))
        .bind(id.0)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| message_from_row(r).map(|m| m.message))
            .collect()
    }

    async fn conversation_events(&self, id: ConversationId) -> Result<Vec<Event>> {
        let rows: Vec<(i64, String, Option<i64>, Option<i64>, String, i64)> = sqlx::query_as(
            "SELECT id, kind, message_id, user_id, detail, at FROM events \
             WHERE conversation_id = $1 ORDER BY id",
        )
        .bind(id.0)
        .fetch_all(&self.pool)
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
        let mut tx = self.begin_write().await?;
        let old: Option<String> =
            sqlx::query_scalar("SELECT status FROM conversations WHERE id = $1")
                .bind(id.0)
                .fetch_optional(&mut *tx)
                .await?;
        let Some(old) = old else {
            return Err(StoreError::NotFound("conversation"));
        };
        if old != status.as_str() {
            sqlx::query("UPDATE conversations SET status = $1, updated_at = $2 WHERE id = $3")
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
        let mut tx = self.begin_write().await?;
        let old: Option<Option<i64>> =
            sqlx::query_scalar("SELECT assignee FROM conversations WHERE id = $1")
                .bind(id.0)
                .fetch_optional(&mut *tx)
                .await?;
        let Some(old) = old else {
            return Err(StoreError::NotFound("conversation"));
        };
        let name: Option<String> = match assignee {
            Some(u) => {
                let name = sqlx::query_scalar("SELECT name FROM users WHERE id = $1")
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
            sqlx::query("UPDATE conversations SET assignee = $1, updated_at = $2 WHERE id = $3")
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
        let n = sqlx::query("UPDATE customers SET display_name = $1, notes = $2 WHERE id = $3")
            .bind(without_nul(display_name))
            .bind(without_nul(notes))
            .bind(id.0)
            .execute(&self.pool)
            .await?
            .rows_affected();
        if n == 0 {
            return Err(StoreError::NotFound("customer"));
        }
        Ok(())
    }

    async fn search(&self, query: &str, limit: i64) -> Result<Vec<SearchHit>> {
        let Some(q) = stem_tsquery(query) else {
            return Ok(Vec::new());
        };
        // `::tsquery`, not `to_tsquery`: the lexemes are already stemmed and quoted, and
        // must meet the stored ones exactly, untouched by PostgreSQL's parser.
        let rows: Vec<(i64, i64, String)> = sqlx::query_as(
            "SELECT id, conversation_id, text FROM messages WHERE terms @@ $1::tsquery \
             ORDER BY id DESC LIMIT $2",
        )
        .bind(q)
        .bind(no_limit_if_negative(limit))
        .fetch_all(&self.pool)
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
            "SELECT id, conversation_id, kind, message_id FROM events WHERE id > $1 \
             ORDER BY id LIMIT $2",
        )
        .bind(after.0)
        .bind(no_limit_if_negative(limit))
        .fetch_all(&self.pool)
        .await?;
        // The page's conversations and messages in one query each, not two per event.
        let mut conv_ids: Vec<i64> = rows.iter().map(|r| r.1).collect();
        conv_ids.sort_unstable();
        conv_ids.dedup();
        let msg_ids: Vec<i64> = rows.iter().filter_map(|r| r.3).collect();
        let mut conversations = HashMap::with_capacity(conv_ids.len());
        if !conv_ids.is_empty() {
            let found = sqlx::query(concat!(
                "SELECT ",
                conv_cols!(),
                conv_from!(),
                "WHERE c.id = ANY($1)"
            ))
            .bind(&conv_ids)
            .fetch_all(&self.pool)
            .await?;
            for row in found {
                let row = inbox_row_from_row(&row)?;
                conversations.insert(row.conversation.id.0, row);
            }
        }
        let mut messages = HashMap::with_capacity(msg_ids.len());
        if !msg_ids.is_empty() {
            let found = sqlx::query(concat!(
                "SELECT ",
                msg_cols!(),
                msg_from!(),
                "WHERE m.id = ANY($1)"
            ))
            .bind(&msg_ids)
            .fetch_all(&self.pool)
            .await?;
            for row in found {
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
            .fetch_one(&self.pool)
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
        let text = &*without_nul(text);
        // Under the write lock, so the same key from two requests is checked and stored once.
        let mut tx = self.begin_write().await?;
        let existing: Option<i64> =
            sqlx::query_scalar("SELECT message_id FROM outbox WHERE idempotency_key = $1")
                .bind(idempotency_key)
                .fetch_optional(&mut *tx)
                .await?;
        let msg = match existing {
            Some(m) => m,
            None => {
                let channel: Option<i64> =
                    sqlx::query_scalar("SELECT channel_id FROM conversations WHERE id = $1")
                        .bind(conversation.0)
                        .fetch_optional(&mut *tx)
                        .await?;
                let Some(channel) = channel else {
                    return Err(StoreError::NotFound("conversation"));
                };
                let reply_to: Option<i64> = sqlx::query_scalar(
                    "SELECT MAX(id) FROM messages WHERE conversation_id = $1 AND direction = 'in'",
                )
                .bind(conversation.0)
                .fetch_one(&mut *tx)
                .await?;
                let msg: i64 = sqlx::query_scalar(
                    "INSERT INTO messages (conversation_id, channel_id, direction, author_user, \
                     text, in_reply_to, created_at, received_at, delivery, terms) \
                     VALUES ($1, $2, 'out', $3, $4, $5, $6, $6, 'queued', \
                     array_to_tsvector($7::text[])) RETURNING id",
                )
                .bind(conversation.0)
                .bind(channel)
                .bind(by.0)
                .bind(text)
                .bind(reply_to)
                .bind(now)
                .bind(lexemes(text))
                .fetch_one(&mut *tx)
                .await?;
                sqlx::query(
                    "INSERT INTO outbox (message_id, channel_id, idempotency_key, state, \
                     next_attempt_at, created_at, updated_at) \
                     VALUES ($1, $2, $3, 'pending', $4, $4, $4)",
                )
                .bind(msg)
                .bind(channel)
                .bind(idempotency_key)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "UPDATE conversations SET waiting_since = NULL, reply_due = NULL, \
                     updated_at = $1 WHERE id = $2",
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
            "WHERE m.id = $1"
        ))
        .bind(msg)
        .fetch_one(&self.pool)
        .await?;
        Ok(message_from_row(&row)?.message)
    }

    async fn claim_outbox(&self, now: Millis, limit: i64) -> Result<Vec<OutboxItem>> {
        let mut tx = self.pool.begin().await?;
        // SKIP LOCKED: several workers claim side by side, each row by exactly one of them.
        let mut claimed: Vec<(i64, i64)> = sqlx::query_as(
            "WITH due AS (SELECT id FROM outbox WHERE state = 'pending' \
             AND next_attempt_at <= $2 ORDER BY next_attempt_at, id LIMIT $3 \
             FOR UPDATE SKIP LOCKED) \
             UPDATE outbox o SET state = 'sending', attempts = o.attempts + 1, updated_at = $1 \
             FROM due WHERE o.id = due.id RETURNING o.id, o.next_attempt_at",
        )
        .bind(now)
        .bind(now)
        .bind(no_limit_if_negative(limit))
        .fetch_all(&mut *tx)
        .await?;
        claimed.sort_unstable_by_key(|&(id, due)| (due, id));
        let mut out = Vec::with_capacity(claimed.len());
        for (id, _) in claimed {
            let row = sqlx::query(
                "SELECT o.id, o.message_id, o.channel_id, o.idempotency_key, o.attempts, \
                 m.conversation_id, m.text, r.external_id AS reply_to_external_id, \
                 (SELECT i.external_id FROM identities i WHERE i.customer_id = c.customer_id \
                    AND i.platform = ch.kind ORDER BY i.id LIMIT 1) AS recipient_external_id, \
                 (SELECT MAX(x.created_at) FROM messages x WHERE x.conversation_id = c.id \
                    AND x.direction = 'in') AS last_in, \
                 (SELECT j.payload FROM journal j \
                    WHERE j.channel_id = r.channel_id AND j.dedupe_key = r.external_id) \
                    AS reply_to_payload \
                 FROM outbox o JOIN messages m ON m.id = o.message_id \
                 JOIN conversations c ON c.id = m.conversation_id \
                 JOIN channels ch ON ch.id = o.channel_id \
                 LEFT JOIN messages r ON r.id = m.in_reply_to WHERE o.id = $1",
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
                // Read in Rust, not with PostgreSQL's JSON operators: they refuse a payload
                // holding an escaped NUL anywhere.
                reply_to_place: row
                    .try_get::<Option<String>, _>("reply_to_payload")?
                    .and_then(|payload| {
                        let mut v = serde_json::from_str::<serde_json::Value>(&payload).ok()?;
                        serde_json::from_value::<PlaceKind>(v.pointer_mut("/place/kind")?.take())
                            .ok()
                    }),
            });
        }
        tx.commit().await?;
        Ok(out)
    }

    async fn outbox_sent(&self, id: i64, platform_id: Option<&str>, now: Millis) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let row: Option<(i64, i64)> = sqlx::query_as(
            "UPDATE outbox SET state = 'sent', updated_at = $1, last_error = NULL WHERE id = $2 \
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
                   WHERE o.channel_id = messages.channel_id AND o.external_id = $1 \
                   AND o.id <> messages.id) THEN external_id \
                   ELSE COALESCE($1, external_id) END WHERE id = $2",
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
            "UPDATE outbox SET state = 'pending', next_attempt_at = $1, last_error = $2, \
             updated_at = $3 WHERE id = $4 AND state = 'sending'",
        )
        .bind(next_attempt_at)
        .bind(error)
        .bind(now_ms())
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn outbox_failed(&self, id: i64, error: &str, now: Millis) -> Result<()> {
        let mut tx = self.begin_write().await?;
        park_claimed(&mut tx, id, "failed", error, now).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn recover_outbox(&self) -> Result<u64> {
        // Under the write lock, like `park_interrupted_outbox`: two processes starting at once
        // must not lock the same rows in different orders.
        let mut tx = self.begin_write().await?;
        let n = sqlx::query("UPDATE outbox SET state = 'pending' WHERE state = 'sending'")
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(n)
    }

    async fn outbox_unknown(&self, id: i64, reason: &str, now: Millis) -> Result<()> {
        let mut tx = self.begin_write().await?;
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
        let mut tx = self.begin_write().await?;
        let mut parked = 0;
        for kind in kinds {
            let ids: Vec<i64> = sqlx::query_scalar(
                "SELECT o.id FROM outbox o JOIN channels ch ON ch.id = o.channel_id \
                 WHERE o.state = 'sending' AND ch.kind = $1 ORDER BY o.id",
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
        let platform_id = &*without_nul(platform_id);
        let mut tx = self.begin_write().await?;
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
        let mut tx = self.begin_write().await?;
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
            "INSERT INTO users (email, name, role, password_hash, created_at) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (email) DO NOTHING RETURNING id, email, name, role",
        )
        .bind(email)
        .bind(name)
        .bind(role.as_str())
        .bind(password_hash)
        .bind(now_ms())
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(r) => user_from_row(&r),
            None => Err(StoreError::Conflict("user")),
        }
    }

    async fn user_credentials(&self, email: &str) -> Result<Option<(User, String)>> {
        let row =
            sqlx::query("SELECT id, email, name, role, password_hash FROM users WHERE email = $1")
                .bind(email)
                .fetch_optional(&self.pool)
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
        sqlx::query(
            "INSERT INTO sessions (token_hash, user_id, created_at, expires_at) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(token_hash)
        .bind(user.0)
        .bind(now_ms())
        .bind(expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn session_user(&self, token_hash: &str, now: Millis) -> Result<Option<User>> {
        let row = sqlx::query(
            "SELECT u.id, u.email, u.name, u.role FROM sessions s \
             JOIN users u ON u.id = s.user_id WHERE s.token_hash = $1 AND s.expires_at > $2",
        )
        .bind(token_hash)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    async fn delete_session(&self, token_hash: &str) -> Result<()> {
        sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
            .bind(token_hash)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn create_api_token(&self, name: &str, token_hash: &str) -> Result<()> {
        sqlx::query("INSERT INTO api_tokens (name, token_hash, created_at) VALUES ($1, $2, $3)")
            .bind(name)
            .bind(token_hash)
            .bind(now_ms())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn api_token_valid(&self, token_hash: &str) -> Result<bool> {
        let found: Option<i64> = sqlx::query_scalar(
            "SELECT id FROM api_tokens WHERE token_hash = $1 AND revoked_at IS NULL",
        )
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await?;
        Ok(found.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_is_replaced_in_the_url() {
        assert_eq!(
            url_with_database("postgres://postgres@127.0.0.1:5432/postgres", "x"),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(
            url_with_database("postgres://u:p@h/db?sslmode=disable", "x"),
            "postgres://u:p@h/x?sslmode=disable"
        );
        assert_eq!(
            url_with_database("postgres://h:5432", "x"),
            "postgres://h:5432/x"
        );
    }

    #[test]
    fn only_plain_database_names_reach_sql() {
        assert!(plain_name("balie_test_1").is_ok());
        assert!(plain_name("x\"; DROP TABLE users; --").is_err());
        assert!(plain_name("").is_err());
    }
}
