//! Sending replies: the messaging-window rules, the reply targets, and the one send step for
//! every platform: each platform's module builds its request (`request`) and reads its answer
//! into a [`SendOutcome`] for the outbox; the rules every answer shares (429/408/5xx and
//! `Retry-After`, transport failures, scrubbing secrets) are here.
//!
//! # At most once
//!
//! None of these endpoints accepts a real idempotency key, so "never sent twice" is the
//! outbox's discipline plus precise classification here:
//!
//! 1. The outbox marks the row `sending` (durably) before calling [`send`].
//! 2. [`SendOutcome::Sent`], [`SendOutcome::Permanent`] and [`SendOutcome::Retry`] are
//!    certain: `Retry` is only returned when the platform said it did not take the message
//!    (429, 5xx, throttling codes) or the connection never opened, so a resend cannot
//!    duplicate.
//! 3. [`SendOutcome::Unknown`] (a timeout or broken connection after the request went out, or
//!    a 2xx we could not read) and a row found still `sending` after a crash both mean "may
//!    have been delivered": do not resend automatically. Park the row for an agent, or
//!    reconcile it: the key is sent where the platform echoes it back (Messenger
//!    `message.metadata`, returned as [`balie_core::Inbound::outbox_key`] on the echo;
//!    WhatsApp `biz_opaque_callback_data`, returned as
//!    [`crate::meta::DeliveryStatus::outbox_key`]), so a matching echo or status confirms it.
//!
//! Secrets never reach a reason string or `Debug` output: tokens are [`Secret`]s, URLs
//! (Telegram puts the bot token in the path) are never formatted, and every reason taken from
//! a response is scrubbed of the token.

use std::time::Duration;

use balie_core::{ChannelKind, Millis, PlaceKind, ReplyChannel};
use reqwest::header::{HeaderMap, RETRY_AFTER};
use serde_json::Value;

use crate::Secret;

/// Wait after a throttling answer that does not say how long to wait.
pub const THROTTLE_DELAY: Duration = Duration::from_secs(60);
/// Wait after a server error or a failed connection.
pub const TRANSIENT_DELAY: Duration = Duration::from_secs(30);

const HOUR: Millis = 60 * 60 * 1000;
const DAY: Millis = 24 * HOUR;

/// Meta's Graph API: `https://graph.facebook.com` in production, a local fake in tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphApi {
    /// Scheme and host, no trailing slash.
    pub base_url: String,
    /// The API version number: 23 means `/v23.0/`.
    pub version: u32,
}

impl GraphApi {
    pub fn production(version: u32) -> Self {
        Self {
            base_url: "https://graph.facebook.com".to_owned(),
            version,
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!(
            "{}/v{}.0/{path}",
            self.base_url.trim_end_matches('/'),
            self.version
        )
    }
}

/// Production base URL of X's API (`POST /2/tweets`, DMs).
pub const X_API: &str = "https://api.x.com";
/// Production base URL of Telegram's Bot API.
pub const TELEGRAM_API: &str = "https://api.telegram.org";

/// Where a reply goes, with the credentials to send it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutboundTarget {
    /// A Messenger DM: `POST /{page_id}/messages` to the customer's PSID.
    Messenger {
        graph: GraphApi,
        page_id: String,
        access_token: Secret,
        recipient_id: String,
    },
    /// An Instagram DM: `POST /{account_id}/messages` to the customer's IGSID.
    InstagramDirect {
        graph: GraphApi,
        account_id: String,
        access_token: Secret,
        recipient_id: String,
    },
    /// A public reply under a Page post comment: `POST /{comment_id}/comments`.
    FacebookComment {
        graph: GraphApi,
        comment_id: String,
        access_token: Secret,
    },
    /// A public reply to an Instagram comment: `POST /{comment_id}/replies`.
    InstagramComment {
        graph: GraphApi,
        comment_id: String,
        access_token: Secret,
    },
    /// A WhatsApp text: `POST /{phone_number_id}/messages`, threaded under `reply_to` (a
    /// `wamid`) when given.
    Whatsapp {
        graph: GraphApi,
        phone_number_id: String,
        access_token: Secret,
        to: String,
        reply_to: Option<String>,
    },
    /// A public reply on X: `POST /2/tweets` with `reply.in_reply_to_tweet_id`. The token is
    /// an OAuth 2.0 user-context token with `tweet.write` (OAuth 1.0a signing is not done).
    XReply {
        api_base: String,
        access_token: Secret,
        in_reply_to_tweet_id: String,
    },
    /// An X DM: `POST /2/dm_conversations/with/{participant_id}/messages` (needs `dm.write`).
    XDirect {
        api_base: String,
        access_token: Secret,
        participant_id: String,
    },
    /// A Telegram message: `POST /bot{token}/sendMessage`, as a reply to `reply_to_message_id`
    /// (the part after the colon of the inbound external id) when given.
    Telegram {
        api_base: String,
        bot_token: Secret,
        chat_id: String,
        reply_to_message_id: Option<i64>,
    },
}

/// The kind of a target, for the window rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboundKind {
    Messenger,
    InstagramDirect,
    FacebookComment,
    InstagramComment,
    Whatsapp,
    XReply,
    XDirect,
    Telegram,
}

impl OutboundKind {
    /// How a reply goes out in a conversation on `channel` that started at a `place` of that
    /// kind (the inbound message's `place.kind`); `None` for channels this crate does not send
    /// to (the generic API, Mastodon, e-mail, feeds).
    pub fn for_conversation(channel: ChannelKind, place: PlaceKind) -> Option<Self> {
        Some(match (channel, place) {
            (ChannelKind::Messenger, _) => Self::Messenger,
            // A Page channel also takes the Page's Messenger DMs.
            (ChannelKind::FacebookPage, PlaceKind::Direct) => Self::Messenger,
            (ChannelKind::FacebookPage, _) => Self::FacebookComment,
            (ChannelKind::Instagram, PlaceKind::Direct) => Self::InstagramDirect,
            (ChannelKind::Instagram, _) => Self::InstagramComment,
            (ChannelKind::Whatsapp, _) => Self::Whatsapp,
            (ChannelKind::X, PlaceKind::Direct) => Self::XDirect,
            (ChannelKind::X, _) => Self::XReply,
            (ChannelKind::Telegram, _) => Self::Telegram,
            _ => return None,
        })
    }
}

impl OutboundTarget {
    pub fn kind(&self) -> OutboundKind {
        match self {
            Self::Messenger { .. } => OutboundKind::Messenger,
            Self::InstagramDirect { .. } => OutboundKind::InstagramDirect,
            Self::FacebookComment { .. } => OutboundKind::FacebookComment,
            Self::InstagramComment { .. } => OutboundKind::InstagramComment,
            Self::Whatsapp { .. } => OutboundKind::Whatsapp,
            Self::XReply { .. } => OutboundKind::XReply,
            Self::XDirect { .. } => OutboundKind::XDirect,
            Self::Telegram { .. } => OutboundKind::Telegram,
        }
    }
}

/// What to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundReply {
    pub text: String,
    /// The outbox row's key; sent where the platform echoes it back (see the module docs).
    pub idempotency_key: String,
    /// When the customer last wrote in this conversation; needed for Messenger, Instagram DMs
    /// and WhatsApp, ignored elsewhere.
    pub last_customer_message_at: Option<Millis>,
}

/// How a reply may be sent, given the platform's messaging window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowMode {
    /// Inside the 24-hour window: a normal response (Messenger `RESPONSE`, WhatsApp free
    /// form).
    Standard,
    /// Messenger and Instagram DMs 24 hours to 7 days after the customer's last message:
    /// `MESSAGE_TAG` with `HUMAN_AGENT` (the app needs the Human Agent permission).
    HumanAgent,
    /// The platform has no messaging window (comments, X, Telegram).
    Unrestricted,
}

/// Why a reply cannot be sent now; the message is written for the agent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("{platform} only allows a reply after the customer has written to you")]
    NoCustomerMessage { platform: &'static str },
    #[error(
        "the customer's last message was {days} days ago; {platform} allows replies only \
         within 7 days of it (24 hours normally, 7 days as a human agent)"
    )]
    MessagingWindowClosed { platform: &'static str, days: i64 },
    #[error(
        "the customer's last WhatsApp message was {hours} hours ago; outside the 24-hour \
         customer service window WhatsApp only delivers an approved template message"
    )]
    WhatsappWindowClosed { hours: i64 },
}

/// The messaging-window rule for a reply of `kind`, so the UI can explain a refusal before
/// the agent writes. `last_customer_message_at` later than `now` (clock skew) counts as now.
pub fn reply_window(
    kind: OutboundKind,
    last_customer_message_at: Option<Millis>,
    now: Millis,
) -> Result<WindowMode, Refusal> {
    let platform = match kind {
        OutboundKind::Messenger => "Messenger",
        OutboundKind::InstagramDirect => "Instagram",
        OutboundKind::Whatsapp => "WhatsApp",
        OutboundKind::FacebookComment
        | OutboundKind::InstagramComment
        | OutboundKind::XReply
        | OutboundKind::XDirect
        | OutboundKind::Telegram => return Ok(WindowMode::Unrestricted),
    };
    let Some(last) = last_customer_message_at else {
        return Err(Refusal::NoCustomerMessage { platform });
    };
    let elapsed = now.saturating_sub(last).max(0);
    if elapsed < DAY {
        return Ok(WindowMode::Standard);
    }
    if kind == OutboundKind::Whatsapp {
        return Err(Refusal::WhatsappWindowClosed {
            hours: elapsed / HOUR,
        });
    }
    if elapsed < 7 * DAY {
        return Ok(WindowMode::HumanAgent);
    }
    Err(Refusal::MessagingWindowClosed {
        platform,
        days: elapsed / DAY,
    })
}

/// The result of one send attempt, for the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendOutcome {
    /// The platform took it; `platform_id` is its id for the new message (Messenger
    /// `message_id`, comment id, `wamid`, tweet id, `dm_event_id`, Telegram
    /// `<chat_id>:<message_id>`), matching the external ids inbound parsing produces; `None`
    /// where the receiver gives none (the generic API channel's webhook).
    Sent { platform_id: Option<String> },
    /// The platform did not take it and said so (rate limit, throttling, server error) or the
    /// connection never opened: try again after `after`.
    Retry { after: Duration, reason: String },
    /// It will never work as is (bad recipient, closed window, revoked token, too long).
    Permanent { reason: String },
    /// The request may have reached the platform but we do not know: never resend blindly.
    Unknown { reason: String },
}

/// Sends `reply` to `target` now (system clock). See [`send_at`].
pub async fn send(
    client: &reqwest::Client,
    target: &OutboundTarget,
    reply: &OutboundReply,
) -> SendOutcome {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| {
            Millis::try_from(d.as_millis()).unwrap_or(Millis::MAX)
        });
    send_at(client, target, reply, now).await
}

/// Sends `reply` to `target` as of `now` (epoch millis; used for the window check and X's
/// `x-rate-limit-reset`). One attempt, no retries: the outbox decides what to do next.
///
/// Build `client` with a timeout (`reqwest::Client::builder().timeout(..)`, 20 s is plenty):
/// a send that times out is [`SendOutcome::Unknown`], one without a timeout can hang.
pub async fn send_at(
    client: &reqwest::Client,
    target: &OutboundTarget,
    reply: &OutboundReply,
    now: Millis,
) -> SendOutcome {
    let request = match build(target, reply, now) {
        Ok(request) => request,
        Err(reason) => return SendOutcome::Permanent { reason },
    };
    let mut builder = client.post(&request.url).json(&request.body);
    if let Some(token) = request.bearer {
        builder = builder.bearer_auth(token.expose());
    }
    let response = match builder.send().await {
        Ok(response) => response,
        Err(e) => return transport_failure(&e, request.secret),
    };
    let status = response.status();
    let headers = response.headers().clone();
    let body = match response.bytes().await {
        Ok(body) => body,
        Err(e) if status.is_success() => {
            return SendOutcome::Unknown {
                reason: request.secret.scrub(&format!(
                    "{} accepted the message (HTTP {status}) but the answer broke off: {}",
                    request.platform,
                    e.without_url()
                )),
            };
        }
        Err(e) => return transport_failure(&e, request.secret),
    };
    let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let outcome = (request.classify)(status, &headers, &json, request.success, now);
    scrub_outcome(outcome, request.secret)
}

/// Where the new message's id is in a 2xx answer.
#[derive(Clone, Copy)]
pub(crate) enum SuccessId {
    /// `{"message_id": …}` (Messenger, Instagram DMs).
    MessageId,
    /// `{"id": …}` (comment replies).
    Id,
    /// `{"messages": [{"id": …}]}` (WhatsApp).
    WhatsappMessage,
    /// `{"data": {"id": …}}` (X posts).
    XData,
    /// `{"data": {"dm_event_id": …}}` (X DMs).
    XDirect,
}

/// How a platform reads its answer to a send: status, headers, JSON body, where the new id
/// is, and now.
pub(crate) type Classify =
    fn(reqwest::StatusCode, &HeaderMap, &Value, SuccessId, Millis) -> SendOutcome;

/// One send, as a platform module builds it.
pub(crate) struct Request<'a> {
    pub platform: &'static str,
    pub url: String,
    pub bearer: Option<&'a Secret>,
    /// Scrubbed from every reason.
    pub secret: &'a Secret,
    pub body: Value,
    pub success: SuccessId,
    pub classify: Classify,
}

/// Character limits checked before sending, where the platform documents one.
/// The length rule of the platform a target sends to (`balie_core::reply_length`), the same
/// one the composer and `balie lint-reply` apply.
fn length_rule(target: &OutboundTarget) -> ReplyChannel {
    match target {
        OutboundTarget::Messenger { .. } => ReplyChannel::Messenger,
        OutboundTarget::InstagramDirect { .. } => ReplyChannel::InstagramDirect,
        OutboundTarget::FacebookComment { .. } => ReplyChannel::FacebookComment,
        OutboundTarget::InstagramComment { .. } => ReplyChannel::InstagramComment,
        OutboundTarget::Whatsapp { .. } => ReplyChannel::Whatsapp,
        OutboundTarget::XReply { .. } => ReplyChannel::X,
        OutboundTarget::XDirect { .. } => ReplyChannel::XDirect,
        OutboundTarget::Telegram { .. } => ReplyChannel::Telegram,
    }
}

fn build<'a>(
    target: &'a OutboundTarget,
    reply: &OutboundReply,
    now: Millis,
) -> Result<Request<'a>, String> {
    if let Some(refusal) = length_rule(target).refusal(&reply.text) {
        return Err(refusal);
    }
    let window = reply_window(target.kind(), reply.last_customer_message_at, now)
        .map_err(|refusal| refusal.to_string())?;
    let key = Some(reply.idempotency_key.as_str()).filter(|k| !k.is_empty());
    match target {
        OutboundTarget::Messenger { .. }
        | OutboundTarget::InstagramDirect { .. }
        | OutboundTarget::FacebookComment { .. }
        | OutboundTarget::InstagramComment { .. }
        | OutboundTarget::Whatsapp { .. } => crate::meta::request(target, reply, window, key),
        OutboundTarget::XReply { .. } | OutboundTarget::XDirect { .. } => {
            crate::x::request(target, reply)
        }
        OutboundTarget::Telegram { .. } => crate::telegram::request(target, reply),
    }
}

fn transport_failure(e: &reqwest::Error, secret: &Secret) -> SendOutcome {
    // `Display` of a reqwest error names the URL, which holds Telegram's token: describe the
    // error without it, and scrub what is left for good measure.
    let detail = std::error::Error::source(e)
        .map(ToString::to_string)
        .unwrap_or_default();
    let detail = secret.scrub(&detail);
    if e.is_connect() {
        return SendOutcome::Retry {
            after: TRANSIENT_DELAY,
            reason: format!("could not connect: {detail}"),
        };
    }
    if e.is_builder() {
        return SendOutcome::Permanent {
            reason: format!("could not build the request: {detail}"),
        };
    }
    if e.is_timeout() {
        return SendOutcome::Unknown {
            reason: "no answer in time; the platform may have received the message".to_owned(),
        };
    }
    SendOutcome::Unknown {
        reason: format!("the connection failed after sending: {detail}"),
    }
}

fn scrub_outcome(outcome: SendOutcome, secret: &Secret) -> SendOutcome {
    match outcome {
        SendOutcome::Retry { after, reason } => SendOutcome::Retry {
            after,
            reason: secret.scrub(&reason),
        },
        SendOutcome::Permanent { reason } => SendOutcome::Permanent {
            reason: secret.scrub(&reason),
        },
        SendOutcome::Unknown { reason } => SendOutcome::Unknown {
            reason: secret.scrub(&reason),
        },
        sent @ SendOutcome::Sent { .. } => sent,
    }
}

fn id_at(json: &Value, success: SuccessId) -> Option<String> {
    let id = match success {
        SuccessId::MessageId => json.get("message_id"),
        SuccessId::Id => json.get("id"),
        SuccessId::WhatsappMessage => json.pointer("/messages/0/id"),
        SuccessId::XData => json.pointer("/data/id"),
        SuccessId::XDirect => json.pointer("/data/dm_event_id"),
    }?;
    match id {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

pub(crate) fn sent_or_unknown(platform: &str, json: &Value, success: SuccessId) -> SendOutcome {
    match id_at(json, success) {
        Some(platform_id) => SendOutcome::Sent {
            platform_id: Some(platform_id),
        },
        None => SendOutcome::Unknown {
            reason: format!("{platform} accepted the message but its answer has no message id"),
        },
    }
}

/// `Retry-After` in seconds, when present.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?;
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// How long to wait before retrying when an answer does not say: after being throttled, and
/// after a server error.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Waits {
    pub throttled: Duration,
    pub transient: Duration,
}

/// The rule every receiver's non-success answer ends with: 429 (too many requests) and 408
/// (request timeout) mean it did not take the message and wants us to slow down, a 5xx that it
/// could not take it now; both are retried after the answer's `Retry-After`, else after
/// `waits`. Anything else is refused for good. `described` says what the receiver answered.
pub(crate) fn refused_or_retried(
    status: reqwest::StatusCode,
    headers: &HeaderMap,
    described: String,
    waits: Waits,
) -> SendOutcome {
    let wait = match status.as_u16() {
        429 | 408 => waits.throttled,
        _ if status.is_server_error() => waits.transient,
        _ => return SendOutcome::Permanent { reason: described },
    };
    SendOutcome::Retry {
        after: retry_after(headers).unwrap_or(wait),
        reason: described,
    }
}

/// Waits for platform APIs that do not say how long.
pub(crate) const PLATFORM_WAITS: Waits = Waits {
    throttled: THROTTLE_DELAY,
    transient: TRANSIENT_DELAY,
};

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Millis = 1_700_000_000_000;

    #[test]
    fn conversations_map_to_the_way_replies_go_out() {
        use OutboundKind as K;
        let cases = [
            (
                ChannelKind::Messenger,
                PlaceKind::Direct,
                Some(K::Messenger),
            ),
            (
                ChannelKind::FacebookPage,
                PlaceKind::Comment,
                Some(K::FacebookComment),
            ),
            (
                ChannelKind::FacebookPage,
                PlaceKind::Direct,
                Some(K::Messenger),
            ),
            (
                ChannelKind::FacebookPage,
                PlaceKind::Post,
                Some(K::FacebookComment),
            ),
            (
                ChannelKind::Instagram,
                PlaceKind::Direct,
                Some(K::InstagramDirect),
            ),
            (
                ChannelKind::Instagram,
                PlaceKind::Comment,
                Some(K::InstagramComment),
            ),
            (ChannelKind::Whatsapp, PlaceKind::Direct, Some(K::Whatsapp)),
            (ChannelKind::X, PlaceKind::Mention, Some(K::XReply)),
            (ChannelKind::X, PlaceKind::Direct, Some(K::XDirect)),
            (ChannelKind::Telegram, PlaceKind::Mention, Some(K::Telegram)),
            (ChannelKind::Email, PlaceKind::Email, None),
        ];
        for (channel, place, expected) in cases {
            assert_eq!(OutboundKind::for_conversation(channel, place), expected);
        }
    }

    #[test]
    fn window_table() {
        use OutboundKind::*;
        let cases: [(OutboundKind, Option<Millis>, Result<WindowMode, &str>); 9] = [
            (Messenger, Some(NOW - HOUR), Ok(WindowMode::Standard)),
            (Messenger, Some(NOW - 2 * DAY), Ok(WindowMode::HumanAgent)),
            (
                InstagramDirect,
                Some(NOW - 6 * DAY),
                Ok(WindowMode::HumanAgent),
            ),
            (Messenger, Some(NOW - 8 * DAY), Err("8 days ago")),
            (Messenger, None, Err("after the customer has written")),
            (Whatsapp, Some(NOW - 23 * HOUR), Ok(WindowMode::Standard)),
            (Whatsapp, Some(NOW - 25 * HOUR), Err("approved template")),
            (Whatsapp, Some(NOW + HOUR), Ok(WindowMode::Standard)),
            (XReply, None, Ok(WindowMode::Unrestricted)),
        ];
        for (kind, last, expected) in cases {
            let got = reply_window(kind, last, NOW);
            match (expected, got) {
                (Ok(mode), Ok(got)) => assert_eq!(mode, got, "{kind:?} {last:?}"),
                (Err(needle), Err(refusal)) => {
                    assert!(refusal.to_string().contains(needle), "{refusal}");
                }
                (expected, got) => panic!("{kind:?} {last:?}: expected {expected:?}, got {got:?}"),
            }
        }
        for kind in [FacebookComment, InstagramComment, XDirect, Telegram] {
            assert_eq!(reply_window(kind, None, NOW), Ok(WindowMode::Unrestricted));
        }
    }
}
