//! The generic API channel's outbound side: a reply is POSTed as JSON to the webhook the
//! operator configured (`[outbound] url`), signed with `X-Balie-Signature: sha256=<hex HMAC of
//! the raw body>` and carrying an `Idempotency-Key` header.
//!
//! Unlike the platforms, the receiver drops repeats by that key, so delivery here is
//! at-least-once made exactly-once: a timeout or broken connection is retried, never parked.

use std::time::Duration;

use serde_json::json;

use crate::Secret;
use crate::outbound::{SendOutcome, Waits, refused_or_retried};
use crate::signature::sha256_header;

/// How long one POST may take.
const TIMEOUT: Duration = Duration::from_secs(15);

/// Where API channel replies go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiWebhook {
    /// `http(s)://...`; empty means replies on API channels are refused with a clear reason.
    pub url: String,
    /// Key of the `X-Balie-Signature` HMAC.
    pub secret: Secret,
}

/// One reply on an API channel, as the receiver gets it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiReply<'a> {
    pub message_id: i64,
    pub idempotency_key: &'a str,
    pub conversation_id: i64,
    /// The channel's name.
    pub channel: &'a str,
    /// The external id of the customer message answered.
    pub in_reply_to: Option<&'a str>,
    /// The customer's external id.
    pub recipient: Option<&'a str>,
    pub text: &'a str,
}

/// The receiver gave no wait: the outbox's own backoff decides.
const WAITS: Waits = Waits {
    throttled: Duration::ZERO,
    transient: Duration::ZERO,
};

/// POSTs `reply` to `webhook` once and classifies the answer: 2xx is sent; 429, 408 and 5xx
/// (after `Retry-After`), a timeout or no connection are retried; other answers are refused.
/// Reasons never quote the URL (its query may hold a token).
pub async fn deliver(
    client: &reqwest::Client,
    webhook: &ApiWebhook,
    reply: &ApiReply<'_>,
) -> SendOutcome {
    if webhook.url.is_empty() {
        return SendOutcome::Permanent {
            reason: "no outbound webhook is configured for API channels ([outbound] url)".into(),
        };
    }
    let body = json!({
        "id": reply.message_id,
        "idempotency_key": reply.idempotency_key,
        "conversation_id": reply.conversation_id,
        "channel": reply.channel,
        "in_reply_to": reply.in_reply_to,
        "recipient": { "id": reply.recipient },
        "text": reply.text,
    })
    .to_string();
    let signature = sha256_header(webhook.secret.expose().as_bytes(), body.as_bytes());
    let result = client
        .post(&webhook.url)
        .header("content-type", "application/json")
        .header("idempotency-key", reply.idempotency_key)
        .header("x-balie-signature", signature)
        .body(body)
        .timeout(TIMEOUT)
        .send()
        .await;
    match result {
        Ok(resp) if resp.status().is_success() => SendOutcome::Sent { platform_id: None },
        Ok(resp) => {
            let status = resp.status();
            let outcome = refused_or_retried(
                status,
                resp.headers(),
                format!("webhook answered {status}"),
                WAITS,
            );
            match outcome {
                SendOutcome::Permanent { .. } => SendOutcome::Permanent {
                    reason: format!("webhook refused the reply: {status}"),
                },
                other => other,
            }
        }
        Err(e) if e.is_timeout() => SendOutcome::Retry {
            after: Duration::ZERO,
            reason: "webhook timed out".into(),
        },
        Err(_) => SendOutcome::Retry {
            after: Duration::ZERO,
            reason: "webhook unreachable".into(),
        },
    }
}
