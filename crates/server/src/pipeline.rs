//! The pipeline worker: journal entries become analysed, identified, threaded messages.

use std::sync::Arc;
use std::time::Duration;

use balie_core::SlaPolicy;
use balie_store::{Prepared, Store};
use tokio::sync::{Notify, watch};

use crate::metrics::Metrics;

/// Journal entries handled per transaction.
const BATCH: i64 = 512;

pub struct Pipeline {
    pub store: Arc<dyn Store>,
    pub sla: SlaPolicy,
    pub metrics: Arc<Metrics>,
    /// Bumped after every batch that changed something: the live stream's wake-up.
    pub live: watch::Sender<u64>,
    /// The highest journal id processed (for read-your-writes in the API).
    pub processed: watch::Sender<i64>,
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
        self.store.apply_journal(&batch, &self.sla).await?;
        Metrics::inc(&self.metrics.messages_processed, n as u64);
        self.live.send_modify(|v| *v += 1);
        self.processed.send_modify(|v| *v = (*v).max(last));
        Ok(n)
    }

    /// Runs until `shutdown` flips, finishing the batch in hand.
    pub async fn run(self, wake: Arc<Notify>, mut shutdown: watch::Receiver<bool>) {
        loop {
            match self.try_execute().await {
                Ok(0) => {}
                Ok(_) => continue,
                Err(e) => {
                    tracing::error!(error = format!("{e:#}"), "pipeline step failed; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
            if *shutdown.borrow() {
                break;
            }
            tokio::select! {
                _ = wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                _ = shutdown.changed() => {}
            }
        }
        tracing::info!("pipeline stopped");
    }
}
