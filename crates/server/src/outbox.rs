//! The outbox worker: delivers replies people decided to send, retrying transient failures
//! with backoff and jitter, recording permanent ones on the message.
//!
//! At-least-once towards the receiver, made exactly-once by the idempotency key: a row is
//! marked `sending` before the call; a crash before the answer is recorded leaves it
//! `sending`, and on restart it is sent again with the same `Idempotency-Key`, which the
//! receiver uses to drop the repeat.

use std::sync::Arc;
use std::time::Duration;

use balie_core::{ChannelKind, Millis};
use balie_store::{OutboxItem, Store};
use serde_json::json;
use tokio::sync::{Notify, watch};

use crate::config::OutboundWebhook;
use crate::metrics::Metrics;

/// What became of one delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Sent { platform_id: Option<String> },
    Retry { after: Duration, reason: String },
    Permanent { reason: String },
}

pub struct OutboxWorker {
    pub store: Arc<dyn Store>,
    pub metrics: Arc<Metrics>,
    pub http: reqwest::Client,
    pub webhook: OutboundWebhook,
    pub live: watch::Sender<u64>,
}

pub fn now_ms() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Exponential backoff (1 s, 2 s, 4 s, ... capped at 10 min) with up to 25% jitter.
pub fn backoff(attempts: i64, seed: i64) -> Duration {
    let exp = attempts.clamp(1, 20) - 1;
    let base = 1000u64.saturating_mul(1u64 << exp).min(600_000);
    let jitter = (seed.unsigned_abs().wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40) % (base / 4 + 1);
    Duration::from_millis(base + jitter)
}

impl OutboxWorker {
    /// One step: claims due replies and attempts each once; returns how many it attempted.
    pub async fn try_execute(&self) -> anyhow::Result<usize> {
        let items = self.store.claim_outbox(now_ms(), 32).await?;
        let n = items.len();
        for item in items {
            let outcome = self.deliver(&item).await;
            let now = now_ms();
            match outcome {
                Outcome::Sent { platform_id } => {
                    self.store
                        .outbox_sent(item.id, platform_id.as_deref(), now)
                        .await?;
                    Metrics::inc(&self.metrics.replies_sent, 1);
                }
                Outcome::Retry { after, reason } => {
                    let wait = after.max(backoff(item.attempts, item.id));
                    let next =
                        now.saturating_add(i64::try_from(wait.as_millis()).unwrap_or(i64::MAX));
                    tracing::warn!(outbox = item.id, attempts = item.attempts, %reason, "reply delivery will be retried");
                    self.store.outbox_retry(item.id, next, &reason).await?;
                    Metrics::inc(&self.metrics.replies_retried, 1);
                }
                Outcome::Permanent { reason } => {
                    tracing::warn!(outbox = item.id, %reason, "reply refused for good");
                    self.store.outbox_failed(item.id, &reason, now).await?;
                    Metrics::inc(&self.metrics.replies_failed, 1);
                }
            }
        }
        if n > 0 {
            self.live.send_modify(|v| *v += 1);
        }
        Ok(n)
    }

    async fn deliver(&self, item: &OutboxItem) -> Outcome {
        let channel = match self.store.channel(item.channel_id).await {
            Ok(Some(c)) => c,
            Ok(None) => {
                return Outcome::Permanent {
                    reason: "the channel no longer exists".into(),
                };
            }
            Err(e) => {
                return Outcome::Retry {
                    after: Duration::from_secs(1),
                    reason: format!("store: {e}"),
                };
            }
        };
        match channel.kind {
            ChannelKind::Api => self.deliver_webhook(item, &channel.name).await,
            other => Outcome::Permanent {
                reason: format!(
                    "sending on {} channels is not available yet",
                    other.as_str()
                ),
            },
        }
    }

    /// The generic channel: a signed JSON POST to the configured webhook.
    async fn deliver_webhook(&self, item: &OutboxItem, channel: &str) -> Outcome {
        if self.webhook.url.is_empty() {
            return Outcome::Permanent {
                reason: "no outbound webhook is configured for API channels ([outbound] url)"
                    .into(),
            };
        }
        let body = json!({
            "id": item.message_id,
            "idempotency_key": item.idempotency_key,
            "conversation_id": item.conversation_id,
            "channel": channel,
            "in_reply_to": item.reply_to_external_id,
            "recipient": { "id": item.recipient_external_id },
            "text": item.text,
        })
        .to_string();
        let signature = balie_channels::signature::sha256_header(
            self.webhook.secret.expose().as_bytes(),
            body.as_bytes(),
        );
        let result = self
            .http
            .post(&self.webhook.url)
            .header("content-type", "application/json")
            .header("idempotency-key", &item.idempotency_key)
            .header("x-balie-signature", signature)
            .body(body)
            .timeout(Duration::from_secs(15))
            .send()
            .await;
        match result {
            Ok(resp) => {
                let status = resp.status();
                if status.is_success() {
                    Outcome::Sent { platform_id: None }
                } else if status.as_u16() == 429
                    || status.as_u16() == 408
                    || status.is_server_error()
                {
                    let after = resp
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(Duration::from_secs)
                        .unwrap_or(Duration::ZERO);
                    Outcome::Retry {
                        after,
                        reason: format!("webhook answered {status}"),
                    }
                } else {
                    Outcome::Permanent {
                        reason: format!("webhook refused the reply: {status}"),
                    }
                }
            }
            // Never log the URL's query: it may carry a token.
            Err(e) if e.is_timeout() => Outcome::Retry {
                after: Duration::ZERO,
                reason: "webhook timed out".into(),
            },
            Err(_) => Outcome::Retry {
                after: Duration::ZERO,
                reason: "webhook unreachable".into(),
            },
        }
    }

    pub async fn run(self, wake: Arc<Notify>, mut shutdown: watch::Receiver<bool>) {
        match self.store.recover_outbox().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(replies = n, "resuming replies interrupted by a crash"),
            Err(e) => tracing::error!(error = %e, "outbox recovery failed"),
        }
        loop {
            if *shutdown.borrow() {
                break;
            }
            match self.try_execute().await {
                Ok(0) => {}
                Ok(_) => continue,
                Err(e) => tracing::error!(error = format!("{e:#}"), "outbox step failed"),
            }
            tokio::select! {
                _ = wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                _ = shutdown.changed() => {}
            }
        }
        tracing::info!("outbox stopped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        assert!(backoff(1, 7) >= Duration::from_secs(1));
        assert!(backoff(1, 7) < Duration::from_millis(1251));
        assert!(backoff(4, 7) >= Duration::from_secs(8));
        assert!(backoff(40, 7) <= Duration::from_secs(750));
    }
}
