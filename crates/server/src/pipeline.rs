//! The pipeline worker: journal entries become analysed, identified, threaded messages.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use balie_core::SlaPolicy;
use balie_store::{JournalEntry, Prepared, Store};
use tokio::sync::{Notify, watch};

use crate::metrics::Metrics;

/// Journal entries handled per transaction.
const BATCH: i64 = 512;
/// Under load (the last step found work), the next step waits until this many entries are
/// journalled or [`FILL_WAIT`] has passed: fewer, fuller write transactions (each commit
/// costs an `fsync` and rewrites the same index pages) leave the single writer connection
/// free for journal appends more of the time. A message arriving after a quiet spell is
/// taken at once.
const FILL: i64 = 256;
const FILL_WAIT: Duration = Duration::from_millis(4);
/// Most entries the handoff holds; past it intake stops queueing and the pipeline reads the
/// journal until it has caught up.
const HANDOFF_CAP: usize = 16 * 1024;
/// Even while the handoff has work, the pipeline reads the journal itself this often, so
/// that entries another process appended (several processes on one PostgreSQL) are not
/// left waiting behind this process's own traffic.
const SWEEP_EVERY_MS: i64 = 1_000;

/// Journal entries this process's intake has just committed, handed to the pipeline in
/// memory as they were parsed from the request, so the pipeline need not read them back
/// and parse them again. The journal stays the record: after a start, an error, an
/// overflow or every [`SWEEP_EVERY_MS`] the pipeline reads pending entries from the store, and
/// applying an entry twice is a no-op (the write step skips processed entries).
#[derive(Default)]
pub struct Handoff {
    queue: Mutex<VecDeque<JournalEntry>>,
    /// An entry was committed but not queued (the queue was full).
    overflowed: AtomicBool,
}

impl Handoff {
    /// Queues committed entries, in journal id order.
    pub fn push(&self, entries: impl IntoIterator<Item = JournalEntry>) {
        let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        for entry in entries {
            if queue.len() < HANDOFF_CAP {
                queue.push_back(entry);
            } else {
                self.overflowed.store(true, Ordering::SeqCst);
            }
        }
    }

    /// Up to `limit` queued entries after journal id `after`, oldest first; `None` if some
    /// entry may be missing from the queue, so that the journal must be read instead.
    fn take(&self, after: i64, limit: usize) -> Option<Vec<JournalEntry>> {
        let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        while queue.front().is_some_and(|e| e.id <= after) {
            queue.pop_front();
        }
        if self.overflowed.swap(false, Ordering::SeqCst) {
            return None;
        }
        let n = limit.min(queue.len());
        Some(queue.drain(..n).collect())
    }
}

pub struct Pipeline {
    pub clock: Arc<dyn crate::clock::Clock>,
    pub store: Arc<dyn Store>,
    pub sla: SlaPolicy,
    pub metrics: Arc<Metrics>,
    /// The highest journal id processed (for read-your-writes in the API).
    pub processed: watch::Sender<i64>,
    /// The highest journal id committed by intake (how much is waiting, roughly).
    pub appended: Arc<AtomicI64>,
    /// What intake committed, in memory.
    pub handoff: Arc<Handoff>,
}

/// Where the pipeline takes its next batch from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// Pending rows in the journal (after a start, an error, an overflow, a sweep).
    Journal,
    /// The handoff from intake.
    Memory,
}

impl Pipeline {
    /// One step: processes up to one batch of pending entries read from the journal;
    /// returns how many it took.
    pub async fn try_execute(&self) -> anyhow::Result<usize> {
        let entries = self.store.pending_journal(BATCH).await?;
        self.apply(entries).await
    }

    /// One step from `source`; `Ok(None)` if the handoff cannot be trusted and the journal
    /// must be read.
    async fn step(&self, source: Source) -> anyhow::Result<Option<usize>> {
        match source {
            Source::Journal => self.try_execute().await.map(Some),
            Source::Memory => {
                let after = *self.processed.borrow();
                match self.handoff.take(after, BATCH as usize) {
                    Some(entries) => self.apply(entries).await.map(Some),
                    None => Ok(None),
                }
            }
        }
    }

    /// Analyses `entries` and writes them in one transaction.
    async fn apply(&self, entries: Vec<JournalEntry>) -> anyhow::Result<usize> {
        if entries.is_empty() {
            return Ok(0);
        }
        let n = entries.len();
        let last = entries.last().map(|e| e.id).unwrap_or(0);
        let batch: Vec<Prepared> = entries
            .into_iter()
            .map(|entry| {
                let analysis = balie_text::analyze(&entry.inbound.text);
                Prepared {
                    urgency: analysis.urgency,
                    analysis: serde_json::to_string(&analysis).ok(),
                    entry,
                }
            })
            .collect();
        self.store
            .apply_journal(&batch, &self.sla, self.clock.now())
            .await?;
        Metrics::inc(&self.metrics.messages_processed, n as u64);
        self.processed.send_modify(|v| *v = (*v).max(last));
        Ok(n)
    }

    /// Waits (at most [`FILL_WAIT`]) until about [`FILL`] entries are waiting.
    async fn fill(&self, wake: &Notify) {
        let deadline = tokio::time::Instant::now() + FILL_WAIT;
        loop {
            let waiting = self.appended.load(Ordering::SeqCst) - *self.processed.borrow();
            if waiting >= FILL {
                return;
            }
            tokio::select! {
                _ = wake.notified() => {}
                _ = tokio::time::sleep_until(deadline) => return,
            }
        }
    }

    /// Runs until `shutdown` flips, finishing the batch in hand. Reads the journal until it
    /// has caught up (a short batch), then takes intake's handoff.
    pub async fn run(self, wake: Arc<Notify>, mut shutdown: watch::Receiver<bool>) {
        let mut source = Source::Journal;
        let mut swept = self.clock.now();
        loop {
            if source == Source::Memory && self.clock.now() >= swept.saturating_add(SWEEP_EVERY_MS)
            {
                source = Source::Journal;
            }
            if source == Source::Journal {
                swept = self.clock.now();
            }
            match self.step(source).await {
                Ok(None) => {
                    source = Source::Journal;
                    continue;
                }
                Ok(Some(n)) => {
                    if source == Source::Journal && (n as i64) < BATCH {
                        source = Source::Memory;
                    }
                    if n as i64 >= BATCH {
                        // A full batch: more is waiting already (a backlog, say).
                        continue;
                    }
                    if n > 0 {
                        self.fill(&wake).await;
                        continue;
                    }
                }
                Err(e) => {
                    tracing::error!(error = format!("{e:#}"), "pipeline step failed; retrying");
                    // The batch in hand is still pending in the journal.
                    source = Source::Journal;
                    self.clock
                        .sleep_until(self.clock.now().saturating_add(500))
                        .await;
                }
            }
            if *shutdown.borrow() {
                break;
            }
            tokio::select! {
                _ = wake.notified() => {}
                _ = self.clock.sleep_until(self.clock.now().saturating_add(500)) => {
                    source = Source::Journal
                }
                _ = shutdown.changed() => {}
            }
        }
        tracing::info!("pipeline stopped");
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use balie_core::{Author, ChannelId, Inbound, InboundKind};

    use super::*;

    fn entry(id: i64) -> JournalEntry {
        JournalEntry {
            id,
            channel_id: ChannelId(1),
            inbound: Inbound {
                external_id: format!("m{id}"),
                kind: InboundKind::Message,
                author: Author {
                    platform_id: "u".into(),
                    handle: None,
                    name: None,
                },
                text: "hoi".into(),
                in_reply_to: None,
                thread_key: None,
                place: None,
                created_at: 0,
                account_id: None,
                attachments: Vec::new(),
                revision: None,
                outbox_key: None,
            },
            received_at: 0,
        }
    }

    fn ids(entries: &[JournalEntry]) -> Vec<i64> {
        entries.iter().map(|e| e.id).collect()
    }

    #[test]
    fn handoff_skips_what_is_processed_and_keeps_order() {
        let h = Handoff::default();
        h.push((1..=5).map(entry));
        assert_eq!(ids(&h.take(2, 2).unwrap()), vec![3, 4]);
        h.push([entry(6)]);
        assert_eq!(ids(&h.take(4, 10).unwrap()), vec![5, 6]);
        assert!(h.take(6, 10).unwrap().is_empty());
    }

    #[test]
    fn a_full_handoff_sends_the_pipeline_back_to_the_journal_once() {
        let h = Handoff::default();
        h.push((1..=HANDOFF_CAP as i64 + 1).map(entry));
        assert!(h.take(0, 10).is_none(), "an entry was not queued");
        assert_eq!(ids(&h.take(0, 2).unwrap()), vec![1, 2]);
    }
}
