//! SQLite's journal: durable, deduplicated appends in as few statements as possible, and
//! the pending entries read back in one hop.

use std::collections::HashMap;

use balie_core::ChannelId;
use sqlx::Sqlite;

use super::SqliteStore;
use crate::{Appended, JournalEntry, NewJournalEntry, Result, StoreError, dedupe_key};

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
    pub(super) async fn append_entries(
        &self,
        entries: &[NewJournalEntry],
    ) -> Result<Vec<Appended>> {
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

    pub(super) async fn pending_entries(&self, limit: i64) -> Result<Vec<JournalEntry>> {
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
}
