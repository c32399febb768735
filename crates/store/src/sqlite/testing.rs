//! Bench and test helpers for SQLite (feature `testing`): the bulk load, the raw-insert
//! baseline the ingest benchmark compares with, and statement-level access.

use async_trait::async_trait;
use balie_core::{ChannelId, ConversationId};
use sqlx::Sqlite;
use sqlx::sqlite::SqlitePool;

use super::SqliteStore;
use crate::common::{conflict_or, display_name, first_line, now_ms};
use crate::search::search_terms;
use crate::{BulkConversation, BulkLoad, BulkMessage, Result, StoreError};

/// Rows per multi-row `INSERT` in the baseline.
const ROWS_PER_INSERT: usize = 500;
/// Rows per transaction in the baseline.
const ROWS_PER_TX: usize = 50_000;

impl SqliteStore {
    /// Statement-level access (the crash test, the benchmark's baseline).
    pub fn writer_pool(&self) -> &SqlitePool {
        &self.writer
    }

    /// Some conversation's id (for rows that need one to belong to).
    pub async fn any_conversation(&self) -> Result<ConversationId> {
        let id: Option<i64> = sqlx::query_scalar("SELECT id FROM conversations LIMIT 1")
            .fetch_optional(self.writer_pool())
            .await?;
        id.map(ConversationId)
            .ok_or(StoreError::NotFound("conversation"))
    }

    /// The fastest way to put message rows into this database: prepared multi-row
    /// `INSERT`s in big transactions, nothing else (no journal, search, events).
    pub async fn raw_insert_messages(
        &self,
        channel: ChannelId,
        conversation: ConversationId,
        texts: &[String],
    ) -> Result<()> {
        for (t, tx_rows) in texts.chunks(ROWS_PER_TX).enumerate() {
            let mut tx = self.writer_pool().begin().await?;
            for (c, rows) in tx_rows.chunks(ROWS_PER_INSERT).enumerate() {
                let mut q = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
                    "INSERT INTO messages (conversation_id, channel_id, direction, external_id, \
                     text, created_at, received_at, delivery) ",
                );
                let base = t * ROWS_PER_TX + c * ROWS_PER_INSERT;
                q.push_values(rows.iter().enumerate(), |mut b, (i, text)| {
                    b.push_bind(conversation.0)
                        .push_bind(channel.0)
                        .push_bind("in")
                        .push_bind(format!("r{}", base + i))
                        .push_bind(text.as_str())
                        .push_bind(1_700_000_000_000i64)
                        .push_bind(1_700_000_000_000i64)
                        .push_bind("received");
                });
                q.build().persistent(true).execute(&mut *tx).await?;
            }
            tx.commit().await?;
        }
        Ok(())
    }

    /// Refreshes the query planner's statistics (after a bulk load).
    pub async fn analyze_statistics(&self) -> Result<()> {
        sqlx::query("ANALYZE").execute(self.writer_pool()).await?;
        Ok(())
    }

    /// Drops migration 0003's inbox-order index, to measure what it is worth. Only for a
    /// throw-away benchmark database.
    pub async fn drop_inbox_order_index(&self) -> Result<()> {
        sqlx::query("DROP INDEX IF EXISTS conversations_inbox_order")
            .execute(self.writer_pool())
            .await?;
        Ok(())
    }
}

#[async_trait]
impl BulkLoad for SqliteStore {
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
}
