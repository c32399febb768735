//! PostgreSQL's journal: durable, deduplicated appends (`synchronous_commit` on), and the
//! pending entries read back.

use std::collections::HashMap;

use balie_core::ChannelId;
use sqlx::Postgres;

use super::{PgStore, without_nul};
use crate::shared::limit_or_all;
use crate::{Appended, JournalEntry, NewJournalEntry, Result, StoreError, dedupe_key};

impl PgStore {
    pub(super) async fn append_entries(
        &self,
        entries: &[NewJournalEntry],
    ) -> Result<Vec<Appended>> {
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

    pub(super) async fn pending_entries(&self, limit: i64) -> Result<Vec<JournalEntry>> {
        let rows: Vec<(i64, i64, String, i64)> = sqlx::query_as(
            "SELECT id, channel_id, payload, received_at FROM journal \
             WHERE processed_at IS NULL ORDER BY id LIMIT $1",
        )
        .bind(limit_or_all(limit))
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
}
