//! Durable intake with group commit: requests hand their inbound events to one writer task,
//! which journals whatever has queued up in a single transaction (one fsync for many
//! requests) and answers each request only after the commit. What it committed goes on
//! to the pipeline in memory ([`Handoff`]), as parsed from the request.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use balie_store::{Appended, JournalEntry, NewJournalEntry, Store};
use tokio::sync::{Notify, mpsc, oneshot};

use crate::metrics::Metrics;
use crate::pipeline::Handoff;

/// Most events committed in one transaction.
const MAX_GROUP: usize = 1024;

type Reply = oneshot::Sender<Result<Vec<Appended>, String>>;

/// The handle request handlers use to journal events.
#[derive(Clone)]
pub struct Intake {
    tx: mpsc::Sender<(Vec<NewJournalEntry>, Reply)>,
    /// The highest journal id known to be committed.
    pub last_appended: Arc<AtomicI64>,
}

impl Intake {
    /// Starts the writer task. What it commits goes to `handoff`, and `pipeline` is woken
    /// after every commit.
    pub fn start(
        store: Arc<dyn Store>,
        metrics: Arc<Metrics>,
        handoff: Arc<Handoff>,
        pipeline: Arc<Notify>,
    ) -> Self {
        let (tx, mut rx) = mpsc::channel::<(Vec<NewJournalEntry>, Reply)>(4096);
        let last_appended = Arc::new(AtomicI64::new(0));
        let last = last_appended.clone();
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut group = vec![first];
                let mut count = group[0].0.len();
                while count < MAX_GROUP {
                    match rx.try_recv() {
                        Ok(next) => {
                            count += next.0.len();
                            group.push(next);
                        }
                        Err(_) => break,
                    }
                }
                let all: Vec<NewJournalEntry> = group
                    .iter()
                    .flat_map(|(entries, _)| entries.iter().cloned())
                    .collect();
                match store.append_journal(&all).await {
                    Ok(results) => {
                        let mut new = 0u64;
                        let mut dup = 0u64;
                        for r in &results {
                            match r {
                                Appended::New(id) => {
                                    new += 1;
                                    last.fetch_max(*id, Ordering::SeqCst);
                                }
                                Appended::Duplicate => dup += 1,
                            }
                        }
                        Metrics::inc(&metrics.messages_received, new);
                        Metrics::inc(&metrics.messages_deduplicated, dup);
                        handoff.push(all.into_iter().zip(&results).filter_map(|(e, r)| match r {
                            Appended::New(id) => Some(JournalEntry {
                                id: *id,
                                channel_id: e.channel_id,
                                inbound: e.inbound,
                                received_at: e.received_at,
                            }),
                            Appended::Duplicate => None,
                        }));
                        pipeline.notify_one();
                        let mut results = results.into_iter();
                        for (entries, reply) in group {
                            let mine: Vec<Appended> =
                                results.by_ref().take(entries.len()).collect();
                            let _ = reply.send(Ok(mine));
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, events = all.len(), "journal append failed");
                        for (_, reply) in group {
                            let _ = reply.send(Err(e.to_string()));
                        }
                    }
                }
            }
        });
        Self { tx, last_appended }
    }

    /// Journals `entries` durably; returns once they are committed (or refused).
    pub async fn append(&self, entries: Vec<NewJournalEntry>) -> anyhow::Result<Vec<Appended>> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send((entries, reply))
            .await
            .map_err(|_| anyhow::anyhow!("journal writer has stopped"))?;
        answer
            .await
            .map_err(|_| anyhow::anyhow!("journal writer dropped the request"))?
            .map_err(|e| anyhow::anyhow!("journal append failed: {e}"))
    }
}
