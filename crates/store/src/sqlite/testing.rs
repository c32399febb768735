//! Bench and test helpers for SQLite (feature `testing`): the bulk load, the raw-insert
//! baseline the ingest benchmark compares with, and statement-level access.

use balie_core::{ChannelId, ConversationId};
use sqlx::sqlite::SqlitePool;

use super::SqliteStore;
use crate::{Result, StoreError};

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
