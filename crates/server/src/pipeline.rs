//! The pipeline worker: journal entries become analysed, identified, threaded messages.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use balie_core::SlaPolicy;
use balie_store::{Prepared, Store};
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

pub struct Pipeline {
    pub clock: Arc<dyn crate::clock::Clock>,
    pub store: Arc<dyn Store>,
    pub sla: SlaPolicy,
    pub metrics: Arc<Metrics>,
    /// The highest journal id processed (for read-your-writes in the API).
    pub processed: watch::Sender<i64>,
    /// The highest journal id committed by intake (how much is waiting, roughly).
    pub appended: Arc<AtomicI64>,
}

impl Pipeline {
    /// One step: processes up to one batch of pending entries; returns how many it took.
    pub async fn try_execute(&self) -> anyhow::Result<usize> {
        let entries = self.store.pending_journal(BATCH).await?;
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

    /// Runs until `shutdown` flips, finishing the batch in hand.
    pub async fn run(self, wake: Arc<Notify>, mut shutdown: watch::Receiver<bool>) {
        loop {
            match self.try_execute().await {
                Ok(0) => {}
                // A full batch: more is waiting already (a backlog after a restart, say).
                Ok(n) if n as i64 >= BATCH => continue,
                Ok(_) => {
                    self.fill(&wake).await;
                    continue;
                }
                Err(e) => {
                    tracing::error!(error = format!("{e:#}"), "pipeline step failed; retrying");
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
                _ = self.clock.sleep_until(self.clock.now().saturating_add(500)) => {}
                _ = shutdown.changed() => {}
            }
        }
        tracing::info!("pipeline stopped");
    }
}
