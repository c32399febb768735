//! The journal and the pipeline's write step ([`crate::Journal`]): durable, deduplicated
//! appends, and a batch applied by loading a snapshot, making the plan (`crate::plan`) and
//! writing it in one transaction, whatever the backend.

use std::collections::HashMap;

use balie_core::ChannelId;

use crate::{Appended, JournalEntry, NewJournalEntry, Result, StoreError, dedupe_key};

/// Rows per journal `INSERT`: 4 parameters each, well under both dialects' bounds.
pub(crate) const ROWS_PER_INSERT: usize = 1000;

/// A journal row: id (or channel), channel (or dedupe key), the inbound event as JSON,
/// arrival time; as appended: `(channel, dedupe key, payload, received_at)`.
pub(crate) type JournalRow = (i64, String, String, i64);
/// A pending journal row: `(id, channel, payload, received_at)`.
pub(crate) type PendingRow = (i64, i64, String, i64);

/// The rows to append for `entries`, each text as the backend can store it.
pub(crate) fn journal_rows(
    entries: &[NewJournalEntry],
    storable: impl Fn(String) -> String,
) -> Result<Vec<JournalRow>> {
    entries
        .iter()
        .map(|e| {
            let payload = serde_json::to_string(&e.inbound)
                .map_err(|err| StoreError::Corrupt(format!("unserialisable inbound: {err}")))?;
            Ok((
                e.channel_id.0,
                storable(dedupe_key(&e.inbound)),
                payload,
                e.received_at,
            ))
        })
        .collect()
}

/// Appends to `out`, for each of `rows`, whether it was `inserted`. Only new rows come back;
/// of equal keys within one statement the first is the new one.
pub(crate) fn mark_appended(
    rows: &[JournalRow],
    inserted: &[(i64, i64, String)],
    out: &mut Vec<Appended>,
) {
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

/// A pending row as the pipeline takes it.
pub(crate) fn journal_entry(
    (id, channel, payload, received_at): PendingRow,
) -> Result<JournalEntry> {
    let inbound = serde_json::from_str(&payload)
        .map_err(|e| StoreError::Corrupt(format!("journal entry {id}: {e}")))?;
    Ok(JournalEntry {
        id,
        channel_id: ChannelId(channel),
        inbound,
        received_at,
    })
}

/// Implements [`crate::Journal`] for `$store`.
macro_rules! impl_journal {
    ($store:ty) => {
        impl $store {
            /// Inserts `rows` with one statement; `(id, channel, dedupe key)` of the new ones.
            async fn insert_journal_rows<'e, E>(
                exec: E,
                rows: &[$crate::shared::journal::JournalRow],
            ) -> $crate::Result<Vec<(i64, i64, String)>>
            where
                E: sqlx::Executor<'e, Database = <$store as $crate::shared::Dialect>::Db>,
            {
                let mut q = sqlx::QueryBuilder::<<$store as $crate::shared::Dialect>::Db>::new(
                    "INSERT INTO journal (channel_id, dedupe_key, payload, received_at) ",
                );
                q.push_values(rows, |mut b, (channel, key, payload, received_at)| {
                    b.push_bind(*channel)
                        .push_bind(key.as_str())
                        .push_bind(payload.as_str())
                        .push_bind(*received_at);
                });
                q.push(
                    " ON CONFLICT (channel_id, dedupe_key) DO NOTHING \
                     RETURNING id, channel_id, dedupe_key",
                );
                Ok(q.build_query_as().fetch_all(exec).await?)
            }
        }

        #[async_trait::async_trait]
        impl $crate::Journal for $store {
            async fn append_journal(
                &self,
                entries: &[$crate::NewJournalEntry],
            ) -> $crate::Result<Vec<$crate::Appended>> {
                use $crate::shared::Dialect as _;
                use $crate::shared::journal::{ROWS_PER_INSERT, journal_rows, mark_appended};
                let rows = journal_rows(entries, |key| match Self::storable(&key) {
                    std::borrow::Cow::Borrowed(_) => key,
                    std::borrow::Cow::Owned(clean) => clean,
                })?;
                let mut out = Vec::with_capacity(entries.len());
                // One statement per chunk, not per entry: every statement is a round trip
                // (SQLite: to its worker thread), which costs more than the insert itself.
                if rows.len() <= ROWS_PER_INSERT {
                    // One statement is its own transaction, committed durably (SQLite
                    // synchronous=FULL, PostgreSQL synchronous_commit on) before it returns:
                    // no BEGIN and COMMIT round trips on the way to the 2xx.
                    let inserted = Self::insert_journal_rows(self.writer(), &rows).await?;
                    mark_appended(&rows, &inserted, &mut out);
                    return Ok(out);
                }
                let mut tx = self.writer().begin().await?;
                for chunk in rows.chunks(ROWS_PER_INSERT) {
                    let inserted = Self::insert_journal_rows(&mut *tx, chunk).await?;
                    mark_appended(chunk, &inserted, &mut out);
                }
                tx.commit().await?;
                Ok(out)
            }

            async fn pending_journal(
                &self,
                limit: i64,
            ) -> $crate::Result<Vec<$crate::JournalEntry>> {
                use $crate::shared::Dialect as _;
                let mut rows = self
                    .pending_rows($crate::shared::limit_or_all(limit))
                    .await?;
                rows.sort_unstable_by_key(|r| r.0);
                rows.into_iter()
                    .map($crate::shared::journal::journal_entry)
                    .collect()
            }

            async fn apply_journal(
                &self,
                batch: &[$crate::Prepared],
                sla: &balie_core::SlaPolicy,
                now: balie_core::Millis,
            ) -> $crate::Result<Vec<$crate::Applied>> {
                use $crate::shared::Dialect as _;
                let batch = Self::storable_batch(batch);
                // PostgreSQL: under the write lock, so another worker applying the same
                // entries waits, then sees them processed and skips them.
                let mut tx = self.begin_write().await?;
                let snapshot = Self::load_snapshot(&mut tx, &batch).await?;
                let plan = $crate::plan::plan(snapshot, &batch, sla)
                    .map_err(|$crate::plan::Missing(what)| $crate::StoreError::NotFound(what))?;
                Self::write_plan(&mut tx, &plan, now).await?;
                self.commit_events(tx).await?;
                Ok(plan.applied)
            }

            async fn backlogs(&self) -> $crate::Result<$crate::Backlogs> {
                use $crate::shared::Dialect as _;
                let (journal, outbox): (i64, i64) = sqlx::query_as(
                    "SELECT (SELECT COUNT(*) FROM journal WHERE processed_at IS NULL), \
                     (SELECT COUNT(*) FROM outbox WHERE state IN ('pending', 'sending'))",
                )
                .fetch_one(self.reader())
                .await?;
                Ok($crate::Backlogs { journal, outbox })
            }
        }
    };
}

pub(crate) use impl_journal;
