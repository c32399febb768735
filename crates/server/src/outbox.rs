//! The outbox worker: delivers replies people decided to send, retrying transient failures
//! with backoff and jitter, recording permanent ones on the message.
//!
//! Generic API channel: at-least-once towards the receiver, made exactly-once by the
//! idempotency key: a row is marked `sending` before the call; a crash before the answer is
//! recorded leaves it `sending`, and on restart it is sent again with the same
//! `Idempotency-Key`, which the receiver uses to drop the repeat.
//!
//! Platform channels (Facebook, Instagram, WhatsApp, X, Telegram): at most once. Their APIs
//! take no idempotency key, so a send whose outcome is unknown (a timeout or broken
//! connection after the request went out) and a row found still `sending` after a crash are
//! parked in state `unknown` and shown on the message as failed with "delivery unknown: check
//! the platform before resending": never resent automatically. Only answers that say the
//! platform did not take the message (429, 5xx, throttling, no connection) are retried. A
//! Messenger echo or WhatsApp status carrying the row's key later confirms it as sent.

use std::sync::Arc;
use std::time::Duration;

use balie_channels::api::{self, ApiReply, ApiWebhook};
use balie_channels::connector::{self, ChannelSetup, Connector, ReplyContext};
use balie_channels::{OutboundReply, SendOutcome};
use balie_core::{Channel, ChannelKind, Millis};
use balie_store::{OutboxItem, Store};
use tokio::sync::{Notify, watch};

use crate::channel_keys::ChannelKeys;
use crate::config::OutboundWebhook;
use crate::metrics::Metrics;
use crate::platform_channels::{self, PlatformSettings, platform_kinds};

/// What an agent reads on a platform reply that may or may not have been delivered.
pub const DELIVERY_UNKNOWN: &str = "delivery unknown: check the platform before resending";

pub struct OutboxWorker {
    pub clock: Arc<dyn crate::clock::Clock>,
    pub store: Arc<dyn Store>,
    pub metrics: Arc<Metrics>,
    pub http: reqwest::Client,
    pub webhook: OutboundWebhook,
    /// Who this worker is in the store's `outbox` lease (see [`instance_id`]).
    pub owner: String,
    pub channel_keys: Arc<ChannelKeys>,
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

/// The lease one process at a time holds to run the outbox.
const LEASE: &str = "outbox";
/// How long a claim of [`LEASE`] lasts unrenewed; the worker renews it after every reply it
/// settles and every step, so only a process that stopped lets it run out.
const LEASE_TTL: Millis = 5 * 60 * 1000;
/// The file in the data directory naming this installation.
const INSTANCE_FILE: &str = "instance-id";

/// This installation's name in leases: random, kept in the data directory, so a restart
/// after a crash takes its own lease back at once, while another installation (another host
/// on the same PostgreSQL) waits for it to run out.
pub fn instance_id(data_dir: &std::path::Path) -> anyhow::Result<String> {
    use anyhow::Context as _;
    let path = data_dir.join(INSTANCE_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) if !text.trim().is_empty() => return Ok(text.trim().to_owned()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    }
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness for an id: {e}"))?;
    let id = hex::encode(bytes);
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating data dir {}", data_dir.display()))?;
    std::fs::write(&path, &id).with_context(|| format!("writing {}", path.display()))?;
    Ok(id)
}

impl OutboxWorker {
    /// Claims (or renews) the outbox lease; true while this worker holds it.
    async fn hold_lease(&self) -> anyhow::Result<bool> {
        Ok(self
            .store
            .claim(LEASE, &self.owner, LEASE_TTL, self.clock.now())
            .await?)
    }

    /// One step: claims due replies and attempts each once; returns how many it attempted.
    pub async fn try_execute(&self) -> anyhow::Result<usize> {
        let items = self.store.claim_outbox(self.clock.now(), 32).await?;
        let n = items.len();
        for item in items {
            let outcome = self.deliver(&item).await;
            let now = self.clock.now();
            match outcome {
                SendOutcome::Sent { platform_id } => {
                    self.store
                        .outbox_sent(item.id, platform_id.as_deref(), now)
                        .await?;
                    Metrics::inc(&self.metrics.replies_sent, 1);
                }
                SendOutcome::Retry { after, reason } => {
                    let wait = after.max(backoff(item.attempts, item.id));
                    let next =
                        now.saturating_add(i64::try_from(wait.as_millis()).unwrap_or(i64::MAX));
                    tracing::warn!(outbox = item.id, attempts = item.attempts, %reason, "reply delivery will be retried");
                    self.store
                        .outbox_retry(item.id, next, &reason, self.clock.now())
                        .await?;
                    Metrics::inc(&self.metrics.replies_retried, 1);
                }
                SendOutcome::Permanent { reason } => {
                    tracing::warn!(outbox = item.id, %reason, "reply refused for good");
                    self.store.outbox_failed(item.id, &reason, now).await?;
                    Metrics::inc(&self.metrics.replies_failed, 1);
                }
                SendOutcome::Unknown { reason } => {
                    tracing::warn!(outbox = item.id, %reason, "reply delivery unknown; not resending");
                    let shown = format!("{DELIVERY_UNKNOWN} ({reason})");
                    self.store.outbox_unknown(item.id, &shown, now).await?;
                    Metrics::inc(&self.metrics.replies_failed, 1);
                }
            }
            if !self.hold_lease().await? {
                // Another process took the outbox over; it recovers what is left `sending`.
                tracing::warn!("the outbox lease was lost mid-step");
                break;
            }
        }
        Ok(n)
    }

    async fn deliver(&self, item: &OutboxItem) -> SendOutcome {
        let channel = &item.channel;
        if channel.kind == ChannelKind::Api {
            return self.deliver_webhook(item, &channel.name).await;
        }
        match connector::for_kind(channel.kind) {
            Some(connector) => self.deliver_platform(item, channel, connector).await,
            None => SendOutcome::Permanent {
                reason: format!(
                    "sending on {} channels is not available yet",
                    channel.kind.as_str()
                ),
            },
        }
    }

    /// A platform channel: the reply window first, then one call to the platform's API.
    async fn deliver_platform(
        &self,
        item: &OutboxItem,
        channel: &Channel,
        connector: &Connector,
    ) -> SendOutcome {
        let answering = ReplyContext {
            recipient: item.recipient_external_id.clone(),
            answered: item.reply_to_external_id.clone(),
            answered_place: item.reply_to_place,
        };
        let Some(kind) = connector.outbound_kind(channel.kind, &answering) else {
            return SendOutcome::Permanent {
                reason: format!(
                    "replies on {} channels are not supported",
                    channel.kind.as_str()
                ),
            };
        };
        if let Err(refusal) =
            balie_channels::reply_window(kind, item.last_customer_message_at, self.clock.now())
        {
            return SendOutcome::Permanent {
                reason: refusal.to_string(),
            };
        }
        let settings = match PlatformSettings::parse(&channel.settings) {
            Ok(settings) => settings,
            Err(reason) => return SendOutcome::Permanent { reason },
        };
        let credentials = match platform_channels::credentials(
            self.store.as_ref(),
            &self.channel_keys,
            channel,
        )
        .await
        {
            Ok(credentials) => credentials,
            Err(e) => {
                tracing::error!(channel = %channel.name, error = format!("{e:#}"), "channel credentials unreadable");
                return SendOutcome::Permanent {
                    reason: "the channel's credentials cannot be read; set them again".into(),
                };
            }
        };
        let setup = ChannelSetup {
            name: &channel.name,
            kind: channel.kind,
            settings: &settings,
            credentials: &credentials,
        };
        let target = match (connector.reply_target)(&setup, &answering) {
            Ok(target) => target,
            Err(reason) => return SendOutcome::Permanent { reason },
        };
        let reply = OutboundReply {
            text: item.text.clone(),
            idempotency_key: item.idempotency_key.clone(),
            last_customer_message_at: item.last_customer_message_at,
        };
        balie_channels::send(&self.http, &target, &reply).await
    }

    /// Parks platform replies a crash left `sending` (they may have gone out), then puts the
    /// generic channel's back in line. Runs once when the worker starts.
    pub async fn recover(&self) -> anyhow::Result<()> {
        let reason = format!("{DELIVERY_UNKNOWN} (Balie stopped while sending it)");
        let parked = self
            .store
            .park_interrupted_outbox(&platform_kinds(), &reason, self.clock.now())
            .await?;
        if parked > 0 {
            tracing::warn!(
                replies = parked,
                "replies interrupted by a crash on platform channels were parked, not resent"
            );
        }
        let resumed = self.store.recover_outbox().await?;
        if resumed > 0 {
            tracing::info!(replies = resumed, "resuming replies interrupted by a crash");
        }
        Ok(())
    }

    /// The generic channel: a signed JSON POST to the configured webhook.
    async fn deliver_webhook(&self, item: &OutboxItem, channel: &str) -> SendOutcome {
        let reply = ApiReply {
            message_id: item.message_id.0,
            idempotency_key: &item.idempotency_key,
            conversation_id: item.conversation_id.0,
            channel,
            in_reply_to: item.reply_to_external_id.as_deref(),
            recipient: item.recipient_external_id.as_deref(),
            text: &item.text,
        };
        let webhook = ApiWebhook {
            url: self.webhook.url.clone(),
            secret: self.webhook.secret.clone(),
        };
        api::deliver(&self.http, &webhook, &reply).await
    }

    /// Runs the outbox while this process holds the store's `outbox` lease; whenever it
    /// takes the lease (at start, or over from a process that stopped), it first recovers
    /// what was left `sending`.
    pub async fn run(self, wake: Arc<Notify>, mut shutdown: watch::Receiver<bool>) {
        let mut recovered = false;
        loop {
            if *shutdown.borrow() {
                break;
            }
            let step = async {
                if !self.hold_lease().await? {
                    recovered = false;
                    return Ok(0);
                }
                if !recovered {
                    self.recover().await?;
                    recovered = true;
                }
                self.try_execute().await
            };
            match step.await {
                Ok(0) => {}
                Ok(_) => continue,
                Err(e) => tracing::error!(error = format!("{e:#}"), "outbox step failed"),
            }
            tokio::select! {
                _ = wake.notified() => {}
                _ = self.clock.sleep_until(self.clock.now().saturating_add(500)) => {}
                _ = shutdown.changed() => {}
            }
        }
        if let Err(e) = self.store.release(LEASE, &self.owner).await {
            tracing::warn!(error = %e, "releasing the outbox lease failed");
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
