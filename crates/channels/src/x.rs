//! X (Twitter) Account Activity webhooks: the CRC challenge, the
//! `x-twitter-webhooks-signature` check and parsing of mentions, replies and DMs.

use std::collections::HashMap;
use std::time::Duration;

use balie_core::inbound::Attachment;
use balie_core::{Author, ChannelKind, Inbound, InboundKind, Millis, Place, PlaceKind};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use reqwest::header::HeaderMap;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::connector::{
    ActionKind, ChannelSetup, Connector, Credentials, Delivery, Handshake, Header, Receiving,
    ReplyContext, Routed, SecretName, Webhook,
};
use crate::json::{Lenient, days_from_civil, decode_body, decode_value, seconds_to_millis};
use crate::outbound::{
    OutboundKind, OutboundReply, OutboundTarget, PLATFORM_WAITS, Request, SendOutcome, SuccessId,
    THROTTLE_DELAY, refused_or_retried, retry_after, sent_or_unknown,
};
use crate::outcome::{self, DropReason, Dropped, Unreadable};
use crate::signature::{constant_time_eq, hmac_sha256};
use crate::{ParseError, new_inbound};

const PLATFORM: &str = "x";

/// X (Twitter) accounts through the Account Activity API.
pub static CONNECTOR: Connector = Connector {
    name: PLATFORM,
    kinds: &[ChannelKind::X],
    secrets: |_| &[SecretName::ConsumerSecret, SecretName::AccessToken],
    also_takes: &[],
    receiving: Receiving::Push(&XWebhook),
    reply_target,
    actions: &[ActionKind::Reply],
};

struct XWebhook;

impl Webhook for XWebhook {
    fn path(&self) -> &'static str {
        PLATFORM
    }

    fn handshake(
        &self,
        query: &HashMap<String, String>,
        credentials: &Credentials,
    ) -> Option<Handshake> {
        let Some(token) = query.get("crc_token").filter(|t| !t.is_empty()) else {
            return Some(Handshake::BadInput {
                field: "crc_token",
                reason: "crc_token is missing".to_owned(),
            });
        };
        let Some(secret) = credentials.get(SecretName::ConsumerSecret) else {
            return Some(Handshake::Refused(
                "no consumer secret is configured".to_owned(),
            ));
        };
        // Only a token that looks like X's challenge is signed: the answer is the HMAC that
        // also signs deliveries, so signing anything else would let a caller forge bodies.
        Some(match crc_response(secret.expose(), token) {
            Some(answer) => Handshake::Answer {
                content_type: "application/json",
                body: answer,
            },
            None => Handshake::BadInput {
                field: "crc_token",
                reason: "crc_token must be 1 to 128 URL-safe base64 characters".to_owned(),
            },
        })
    }

    fn verify(
        &self,
        credentials: &Credentials,
        header: Header<'_>,
        body: &[u8],
    ) -> Result<(), &'static str> {
        let secret = credentials.expose(SecretName::ConsumerSecret);
        if verify_signature(secret, body, header("x-twitter-webhooks-signature")) {
            Ok(())
        } else {
            Err("x-twitter-webhooks-signature does not match")
        }
    }

    fn signing_secret(&self) -> SecretName {
        SecretName::ConsumerSecret
    }

    fn parse(&self, body: &[u8], _kind: ChannelKind) -> Result<Delivery, ParseError> {
        let batch = parse(body)?;
        let account = Some(batch.for_user_id).filter(|a| !a.is_empty());
        Ok(Delivery {
            events: batch
                .events
                .into_iter()
                .map(|inbound| Routed {
                    kind: ChannelKind::X,
                    account_id: account.clone(),
                    inbound,
                })
                .collect(),
            statuses: Vec::new(),
            dropped: batch.dropped,
            unread: batch.unread,
        })
    }
}

/// Where a reply on X goes: a public reply to the tweet answered, or a DM.
fn reply_target(
    channel: &ChannelSetup<'_>,
    reply: &ReplyContext,
) -> Result<OutboundTarget, String> {
    let api_base = channel.settings.api_base(crate::outbound::X_API);
    let access_token = channel.credentials.need(SecretName::AccessToken)?;
    Ok(match CONNECTOR.outbound_kind(channel.kind, reply) {
        Some(OutboundKind::XDirect) => OutboundTarget::XDirect {
            api_base,
            access_token,
            participant_id: reply.recipient()?,
        },
        _ => OutboundTarget::XReply {
            api_base,
            access_token,
            in_reply_to_tweet_id: reply.answered()?,
        },
    })
}

/// The `x-twitter-webhooks-signature` value for `body`, as X computes it (for simulators and
/// tests that post signed payloads).
pub fn signature_header(consumer_secret: &str, body: &[u8]) -> String {
    signed(consumer_secret, body)
}

fn signed(consumer_secret: &str, message: &[u8]) -> String {
    format!(
        "sha256={}",
        BASE64.encode(hmac_sha256(consumer_secret.as_bytes(), message))
    )
}

/// The longest `crc_token` Balie answers. X sends short random tokens (a UUID, or 32-48
/// base64 characters); anything longer is not a challenge.
pub const CRC_TOKEN_MAX_LEN: usize = 128;

/// Whether `token` looks like a CRC challenge: 1 to [`CRC_TOKEN_MAX_LEN`] characters of
/// URL-safe base64 (`A-Z a-z 0-9 - _`, with `=` padding).
///
/// This is what keeps the CRC endpoint from being a signing oracle: a CRC answer is the same
/// HMAC, under the same key, that signs a delivery's body, so answering an arbitrary token
/// would sign an arbitrary body. A delivery is a JSON object, which needs `{`, `"` and `:`,
/// none of which a valid token can hold.
pub fn is_crc_token(token: &str) -> bool {
    !token.is_empty()
        && token.len() <= CRC_TOKEN_MAX_LEN
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'='))
}

/// The JSON body answering a CRC `GET ?crc_token=…`:
/// `{"response_token":"sha256=<base64 HMAC-SHA256(consumer secret, crc_token)>"}`, or `None`
/// when `crc_token` is not a challenge (see [`is_crc_token`]); such a request must be refused,
/// never signed.
pub fn crc_response(consumer_secret: &str, crc_token: &str) -> Option<String> {
    if !is_crc_token(crc_token) {
        return None;
    }
    Some(
        serde_json::json!({ "response_token": signed(consumer_secret, crc_token.as_bytes()) })
            .to_string(),
    )
}

/// Checks `x-twitter-webhooks-signature` (`sha256=<base64 HMAC of the raw body>`), constant
/// time. A missing header or an empty secret never verifies.
pub fn verify_signature(consumer_secret: &str, raw_body: &[u8], header: Option<&str>) -> bool {
    let Some(header) = header else {
        return false;
    };
    if consumer_secret.is_empty() {
        return false;
    }
    constant_time_eq(
        signed(consumer_secret, raw_body).as_bytes(),
        header.trim().as_bytes(),
    )
}

/// Everything one Account Activity POST carried.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct XBatch {
    /// The subscribed account (Balie's brand account); also each event's `account_id`.
    pub for_user_id: String,
    pub events: Vec<Inbound>,
    /// Events set aside (the brand's own tweets, likes, follows, typing), each with its reason.
    pub dropped: Vec<Dropped>,
    /// Events that were not what X documents but may carry a customer's words: journal them
    /// (kind `Unread`) and log why. The rest of the batch is still good: answer 200.
    pub unread: Vec<Unreadable>,
}

#[derive(Deserialize)]
struct Envelope {
    #[serde(default)]
    for_user_id: Option<String>,
    #[serde(default)]
    tweet_create_events: Vec<Value>,
    #[serde(default)]
    tweet_delete_events: Vec<Value>,
    #[serde(default)]
    direct_message_events: Vec<Value>,
    #[serde(default)]
    users: HashMap<String, DmUser>,
    /// Every other event array (`favorite_events`, `follow_events`, ...) and lookup tables.
    #[serde(flatten)]
    other: serde_json::Map<String, Value>,
}

#[derive(Deserialize)]
struct Tweet {
    id_str: String,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    full_text: Option<String>,
    #[serde(default)]
    extended_tweet: Option<ExtendedTweet>,
    #[serde(default)]
    created_at: Option<String>,
    #[serde(default)]
    timestamp_ms: Option<Lenient>,
    #[serde(default)]
    in_reply_to_status_id_str: Option<String>,
    #[serde(default)]
    in_reply_to_user_id_str: Option<String>,
    #[serde(default)]
    conversation_id_str: Option<String>,
    user: TweetUser,
    #[serde(default)]
    retweeted_status: Option<Value>,
}

#[derive(Deserialize)]
struct ExtendedTweet {
    full_text: String,
}

#[derive(Deserialize)]
struct TweetUser {
    id_str: String,
    #[serde(default)]
    screen_name: Option<String>,
    #[serde(default)]
    name: Option<String>,
}

#[derive(Deserialize)]
struct TweetDelete {
    status: DeletedStatus,
    #[serde(default)]
    timestamp_ms: Option<Lenient>,
}

#[derive(Deserialize)]
struct DeletedStatus {
    id: String,
    user_id: String,
}

#[derive(Deserialize)]
struct DmEvent {
    #[serde(rename = "type")]
    kind: String,
    id: String,
    created_timestamp: Lenient,
    #[serde(default)]
    message_create: Option<MessageCreate>,
}

#[derive(Deserialize)]
struct MessageCreate {
    sender_id: String,
    message_data: MessageData,
}

#[derive(Deserialize)]
struct MessageData {
    #[serde(default)]
    text: String,
    #[serde(default)]
    attachment: Option<DmAttachment>,
}

#[derive(Deserialize)]
struct DmAttachment {
    #[serde(default)]
    media: Option<DmMedia>,
}

#[derive(Deserialize)]
struct DmMedia {
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    media_url_https: Option<String>,
    #[serde(default)]
    id_str: Option<String>,
}

#[derive(Deserialize)]
struct DmUser {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    screen_name: Option<String>,
}

/// Parses an Account Activity body (after [`verify_signature`]): `tweet_create_events`
/// (mentions and replies; the brand's own tweets and retweets are skipped),
/// `tweet_delete_events` (as `Removed`) and `direct_message_events` (the brand's own sends are
/// skipped). Other event arrays are set aside. A body that is not an Account Activity envelope
/// is a [`ParseError`]; inside one, every event lands in exactly one of [`XBatch`]'s lists
/// (other event arrays and the brand's own activity in `dropped`, unreadable ones with words
/// in `unread`).
pub fn parse(raw_body: &[u8]) -> Result<XBatch, ParseError> {
    let envelope: Envelope = decode_body(PLATFORM, raw_body)?;
    let has_events = !envelope.tweet_create_events.is_empty()
        || !envelope.tweet_delete_events.is_empty()
        || !envelope.direct_message_events.is_empty();
    let for_user_id = match envelope.for_user_id {
        Some(id) => id,
        None if has_events => {
            return Err(ParseError::Malformed {
                platform: PLATFORM,
                path: "for_user_id".to_owned(),
                reason: "missing field".to_owned(),
            });
        }
        None => String::new(),
    };
    let mut batch = XBatch {
        for_user_id,
        ..XBatch::default()
    };
    let keep = |batch: &mut XBatch, raw: &Value, result: Outcome| match result {
        Ok(Ok(inbound)) => batch.events.push(inbound),
        Ok(Err(dropped)) => batch.dropped.push(dropped),
        Err(e) => match outcome::unreadable(raw, e.to_string()) {
            Ok(inbound) => batch.unread.push(Unreadable {
                why: e.to_string(),
                inbound,
            }),
            Err(dropped) => batch.dropped.push(dropped),
        },
    };
    for (i, raw) in envelope.tweet_create_events.iter().enumerate() {
        let at = format!("tweet_create_events[{i}]");
        let result = tweet_event(raw, &batch.for_user_id, &at);
        keep(&mut batch, raw, result);
    }
    for (i, raw) in envelope.tweet_delete_events.iter().enumerate() {
        let at = format!("tweet_delete_events[{i}]");
        let result = delete_event(raw, &batch.for_user_id, &at);
        keep(&mut batch, raw, result);
    }
    for (i, raw) in envelope.direct_message_events.iter().enumerate() {
        let at = format!("direct_message_events[{i}]");
        let result = dm_event(raw, &envelope.users, &batch.for_user_id, &at);
        keep(&mut batch, raw, result);
    }
    for (key, value) in &envelope.other {
        if !key.ends_with("_events") {
            continue;
        }
        let reason = match key.as_str() {
            "favorite_events" => DropReason::Reaction,
            "direct_message_indicate_typing_events" | "direct_message_mark_read_events" => {
                DropReason::Receipt
            }
            _ => DropReason::NotConversation,
        };
        let count = value.as_array().map_or(1, Vec::len);
        for i in 0..count {
            batch
                .dropped
                .push(Dropped::new(reason, format!("{key}[{i}]")));
        }
    }
    Ok(batch)
}

/// One event: an inbound event or why it is set aside; an error when it cannot be read.
type Outcome = Result<Result<Inbound, Dropped>, ParseError>;

fn delete_event(raw: &Value, for_user_id: &str, at: &str) -> Outcome {
    let delete: TweetDelete = decode_value(PLATFORM, at, raw)?;
    if delete.status.user_id == for_user_id {
        return Ok(Err(own(at)));
    }
    let mut inbound = new_inbound(
        delete.status.id,
        InboundKind::Removed,
        author(delete.status.user_id, None, None),
        String::new(),
        delete.timestamp_ms.map_or(0, |t| t.0),
    );
    inbound.account_id = Some(for_user_id.to_owned());
    Ok(Ok(inbound))
}

fn own(at: &str) -> Dropped {
    Dropped::new(DropReason::OwnActivity, format!("{at}: the brand's own"))
}

fn dm_event(raw: &Value, users: &HashMap<String, DmUser>, for_user_id: &str, at: &str) -> Outcome {
    let dm: DmEvent = decode_value(PLATFORM, at, raw)?;
    if dm.kind != "message_create" {
        return Ok(Err(Dropped::new(
            DropReason::NotConversation,
            format!("{at}: DM event `{}`", dm.kind),
        )));
    }
    let Some(create) = dm.message_create else {
        return Err(ParseError::Malformed {
            platform: PLATFORM,
            path: format!("{at}.message_create"),
            reason: "missing field".to_owned(),
        });
    };
    if create.sender_id == for_user_id {
        return Ok(Err(own(at)));
    }
    let user = users.get(&create.sender_id);
    let mut inbound = new_inbound(
        dm.id,
        InboundKind::Message,
        author(
            create.sender_id.clone(),
            user.and_then(|u| u.screen_name.clone()),
            user.and_then(|u| u.name.clone()),
        ),
        create.message_data.text,
        dm.created_timestamp.0,
    );
    inbound.thread_key = Some(create.sender_id);
    inbound.place = Some(Place {
        kind: PlaceKind::Direct,
        url: None,
    });
    inbound.attachments = create
        .message_data
        .attachment
        .and_then(|a| a.media)
        .map(|m| Attachment {
            kind: m.kind.unwrap_or_else(|| "media".to_owned()),
            url: m.media_url_https,
            media_id: m.id_str,
            mime_type: None,
        })
        .into_iter()
        .collect();
    inbound.account_id = Some(for_user_id.to_owned());
    Ok(Ok(inbound))
}

fn author(platform_id: String, handle: Option<String>, name: Option<String>) -> Author {
    Author {
        platform_id,
        handle,
        name,
    }
}

fn tweet_event(raw: &Value, for_user_id: &str, at: &str) -> Outcome {
    let tweet: Tweet = decode_value(PLATFORM, at, raw)?;
    if tweet.user.id_str == for_user_id {
        return Ok(Err(own(at)));
    }
    if tweet.retweeted_status.is_some() {
        return Ok(Err(Dropped::new(
            DropReason::Reaction,
            format!("{at}: a retweet"),
        )));
    }
    let created_at = match (tweet.timestamp_ms, tweet.created_at.as_deref()) {
        (Some(ms), _) => ms.0,
        (None, Some(text)) => parse_created_at(text).ok_or_else(|| ParseError::Malformed {
            platform: PLATFORM,
            path: format!("{at}.created_at"),
            reason: format!("not a date like \"Wed Oct 10 20:19:24 +0000 2018\": {text:?}"),
        })?,
        (None, None) => {
            return Err(ParseError::Malformed {
                platform: PLATFORM,
                path: format!("{at}.timestamp_ms"),
                reason: "missing field (and no created_at)".to_owned(),
            });
        }
    };
    let text = tweet
        .extended_tweet
        .map(|e| e.full_text)
        .or(tweet.full_text)
        .or(tweet.text)
        .unwrap_or_default();
    // A reply to one of the brand's posts is a comment under it; anything else reached us by
    // mentioning the brand (a tweet opening with @brand carries `in_reply_to_user_id` but no
    // status id: that is a mention too).
    let place_kind = if tweet.in_reply_to_status_id_str.is_some()
        && tweet.in_reply_to_user_id_str.as_deref() == Some(for_user_id)
    {
        PlaceKind::Comment
    } else {
        PlaceKind::Mention
    };
    let url = tweet
        .user
        .screen_name
        .as_ref()
        .map(|name| format!("https://x.com/{name}/status/{}", tweet.id_str));
    // The v1.1 object has no conversation id unless the payload was enriched; the tweet being
    // answered is the next best thread, and a fresh mention starts its own.
    let thread_key = tweet
        .conversation_id_str
        .or_else(|| tweet.in_reply_to_status_id_str.clone())
        .unwrap_or_else(|| tweet.id_str.clone());
    let mut inbound = new_inbound(
        tweet.id_str,
        InboundKind::Message,
        author(tweet.user.id_str, tweet.user.screen_name, tweet.user.name),
        text,
        created_at,
    );
    inbound.in_reply_to = tweet.in_reply_to_status_id_str;
    inbound.thread_key = Some(thread_key);
    inbound.place = Some(Place {
        kind: place_kind,
        url,
    });
    inbound.account_id = Some(for_user_id.to_owned());
    Ok(Ok(inbound))
}

/// Parses the v1.1 `created_at` form, `Wed Oct 10 20:19:24 +0000 2018`, to epoch millis.
fn parse_created_at(text: &str) -> Option<Millis> {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let parts: Vec<&str> = text.split_whitespace().collect();
    let [_, month, day, clock, offset, year] = parts.as_slice() else {
        return None;
    };
    let month = u32::try_from(MONTHS.iter().position(|m| m == month)? + 1).ok()?;
    let day: u32 = day.parse().ok()?;
    let year: i64 = year.parse().ok()?;
    let hms: Vec<i64> = clock
        .split(':')
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    let [h, m, s] = hms.as_slice() else {
        return None;
    };
    let (sign, digits) = match offset.split_at_checked(1)? {
        ("+", d) => (1, d),
        ("-", d) => (-1, d),
        _ => return None,
    };
    let (oh, om) = digits.split_at_checked(2)?;
    let offset_seconds = sign * (oh.parse::<i64>().ok()? * 3600 + om.parse::<i64>().ok()? * 60);
    let days = days_from_civil(year, month, day);
    Some(seconds_to_millis(
        days * 86_400 + h * 3600 + m * 60 + s - offset_seconds,
    ))
}

// ---- Sending ---------------------------------------------------------------------------------

/// The X API v2 call for a reply or a DM.
pub(crate) fn request<'a>(
    target: &'a OutboundTarget,
    reply: &OutboundReply,
) -> Result<Request<'a>, String> {
    Ok(match target {
        OutboundTarget::XReply {
            api_base,
            access_token,
            in_reply_to_tweet_id,
        } => Request {
            platform: "X",
            classify: x_outcome,
            url: format!("{}/2/tweets", api_base.trim_end_matches('/')),
            bearer: Some(access_token),
            secret: access_token,
            body: json!({
                "text": reply.text,
                "reply": { "in_reply_to_tweet_id": in_reply_to_tweet_id },
            }),
            success: SuccessId::XData,
        },
        OutboundTarget::XDirect {
            api_base,
            access_token,
            participant_id,
        } => Request {
            platform: "X",
            classify: x_outcome,
            url: format!(
                "{}/2/dm_conversations/with/{participant_id}/messages",
                api_base.trim_end_matches('/')
            ),
            bearer: Some(access_token),
            secret: access_token,
            body: json!({ "text": reply.text }),
            success: SuccessId::XDirect,
        },
        other => return Err(format!("{:?} is not an X target", other.kind())),
    })
}

fn x_outcome(
    status: reqwest::StatusCode,
    headers: &HeaderMap,
    json: &Value,
    success: SuccessId,
    now: Millis,
) -> SendOutcome {
    if status.is_success() {
        return sent_or_unknown("X", json, success);
    }
    let message = json
        .get("detail")
        .or_else(|| json.get("title"))
        .or_else(|| json.pointer("/errors/0/message"))
        .and_then(Value::as_str)
        .unwrap_or("no error message");
    let described = format!("HTTP {status}: {message}");
    if status.as_u16() == 429 {
        let reset = headers
            .get("x-rate-limit-reset")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<i64>().ok())
            .map(|reset_at| {
                let wait = reset_at.saturating_mul(1000).saturating_sub(now).max(1000);
                Duration::from_millis(u64::try_from(wait).unwrap_or(1000))
            });
        return SendOutcome::Retry {
            after: reset
                .or_else(|| retry_after(headers))
                .unwrap_or(THROTTLE_DELAY),
            reason: format!("rate limited by X ({described})"),
        };
    }
    refused_or_retried(status, headers, described, PLATFORM_WAITS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_at_in_the_v1_form_parses_to_millis() {
        assert_eq!(
            parse_created_at("Wed Oct 10 20:19:24 +0000 2018"),
            Some(1_539_202_764_000)
        );
        assert_eq!(
            parse_created_at("Wed Oct 10 22:19:24 +0200 2018"),
            Some(1_539_202_764_000)
        );
        assert_eq!(parse_created_at("yesterday"), None);
    }
}
