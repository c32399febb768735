//! Meta's Graph webhooks (Facebook Messenger and Page feed, Instagram, WhatsApp Cloud API):
//! the subscription handshake, the `X-Hub-Signature-256` check and payload parsing.
//!
//! One POST may carry many entries and changes from several accounts; [`parse`] returns every
//! event in it, each tagged with the channel kind and the account (page id, Instagram account
//! id, WhatsApp `phone_number_id`) it belongs to. Events Balie does not use (reads,
//! deliveries of Messenger messages, reactions, standby, unknown fields) are skipped.

use balie_core::inbound::Attachment;
use balie_core::{Author, ChannelKind, Inbound, InboundKind, Millis, Place, PlaceKind};
use serde::Deserialize;
use serde_json::Value;

use crate::json::{Lenient, decode_body, decode_value, id_string, seconds_to_millis};
use crate::signature::{constant_time_eq, verify_sha256_header};
use crate::{ParseError, new_inbound};

const PLATFORM: &str = "meta";

/// Why a subscription handshake (`GET` with `hub.*` parameters) was refused; answer 403.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SubscriptionRefused {
    #[error("no verify token is configured for this webhook")]
    NotConfigured,
    #[error("hub.mode is not \"subscribe\"")]
    WrongMode,
    #[error("hub.verify_token does not match the configured token")]
    WrongToken,
    #[error("hub.challenge is missing or not a plain token")]
    BadChallenge,
}

/// Checks Meta's subscription handshake and returns the bare `hub.challenge` to answer with
/// (status 200, no JSON, no newline). An unset or empty configured token refuses everything.
/// The token comparison is constant-time. The challenge must be a plain token (Meta sends an
/// integer); anything else is refused rather than reflected.
pub fn verify_subscription(
    mode: &str,
    verify_token: &str,
    challenge: &str,
    configured_token: Option<&str>,
) -> Result<String, SubscriptionRefused> {
    let configured = match configured_token {
        Some(t) if !t.is_empty() => t,
        _ => return Err(SubscriptionRefused::NotConfigured),
    };
    if mode != "subscribe" {
        return Err(SubscriptionRefused::WrongMode);
    }
    if !constant_time_eq(configured.as_bytes(), verify_token.as_bytes()) {
        return Err(SubscriptionRefused::WrongToken);
    }
    let plain = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    if challenge.is_empty() || challenge.len() > 256 || !challenge.chars().all(plain) {
        return Err(SubscriptionRefused::BadChallenge);
    }
    Ok(challenge.to_owned())
}

/// Checks `X-Hub-Signature-256` (`sha256=<hex HMAC of the raw body under the app secret>`).
/// A missing header or an empty secret never verifies. Hash the bytes as received.
pub fn verify_signature(app_secret: &str, raw_body: &[u8], header_value: Option<&str>) -> bool {
    header_value.is_some_and(|header| verify_sha256_header(app_secret.as_bytes(), raw_body, header))
}

/// Everything one webhook POST carried.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetaBatch {
    pub events: Vec<MetaEvent>,
    /// WhatsApp delivery receipts for messages Balie sent.
    pub statuses: Vec<DeliveryStatus>,
    /// Events that were not what Meta documents, each naming what is wrong. The rest of the
    /// batch is still good: log these and answer 200, or Meta redelivers the whole POST.
    pub rejected: Vec<ParseError>,
}

impl MetaBatch {
    fn keep(&mut self, result: Result<(), ParseError>) {
        if let Err(e) = result {
            self.rejected.push(e);
        }
    }
}

/// One normalised event and where to route it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaEvent {
    /// `Messenger` (page DMs), `FacebookPage` (feed comments and visitor posts), `Instagram`
    /// (DMs and comments) or `Whatsapp`.
    pub channel: ChannelKind,
    /// Page id, Instagram account id or WhatsApp `phone_number_id` (also in
    /// `inbound.account_id`).
    pub account_id: String,
    pub inbound: Inbound,
}

/// What happened to a WhatsApp message Balie sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryStatus {
    /// The WhatsApp `phone_number_id` that sent the message.
    pub account_id: String,
    /// The `wamid` of the message Balie sent (its `platform_id` from the send).
    pub external_id: String,
    pub status: DeliveryState,
    pub at: Millis,
    /// The customer's `wa_id`.
    pub recipient: Option<String>,
    /// For `Failed`: the platform's code and explanation.
    pub error: Option<String>,
    /// The idempotency key Balie sent as `biz_opaque_callback_data`, echoed back.
    pub outbox_key: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryState {
    Sent,
    Delivered,
    Read,
    Failed,
}

#[derive(Deserialize)]
struct Envelope {
    object: String,
    #[serde(default)]
    entry: Vec<Value>,
}

#[derive(Deserialize)]
struct Entry {
    #[serde(deserialize_with = "id_string")]
    id: String,
    #[serde(default)]
    time: Option<Lenient>,
    #[serde(default)]
    messaging: Vec<Value>,
    #[serde(default)]
    changes: Vec<Change>,
}

#[derive(Deserialize)]
struct Change {
    field: String,
    #[serde(default)]
    value: Value,
}

/// Parses a webhook body (after [`verify_signature`]). A body that is not a Meta webhook
/// envelope is a [`ParseError`]; a malformed event inside a good envelope lands in
/// [`MetaBatch::rejected`] and the other events are still returned. Unknown objects, fields
/// and event types yield nothing.
pub fn parse(raw_body: &[u8]) -> Result<MetaBatch, ParseError> {
    let envelope: Envelope = decode_body(PLATFORM, raw_body)?;
    let mut batch = MetaBatch::default();
    for (i, raw) in envelope.entry.iter().enumerate() {
        let at = format!("entry[{i}]");
        let entry: Entry = match decode_value(PLATFORM, &at, raw) {
            Ok(entry) => entry,
            Err(e) => {
                batch.rejected.push(e);
                continue;
            }
        };
        let entry = &entry;
        let (messaging_channel, change_fields): (_, &[&str]) = match envelope.object.as_str() {
            "page" => (Some(ChannelKind::Messenger), &["feed"]),
            "instagram" => (Some(ChannelKind::Instagram), &["comments", "live_comments"]),
            "whatsapp_business_account" => (None, &["messages"]),
            _ => continue,
        };
        if let Some(channel) = messaging_channel {
            messaging(&mut batch, channel, entry, &at);
        }
        for (j, change) in entry.changes.iter().enumerate() {
            if !change_fields.contains(&change.field.as_str()) {
                continue;
            }
            let at = format!("{at}.changes[{j}].value");
            match envelope.object.as_str() {
                "page" => {
                    let result = feed_change(&mut batch, entry, &change.value, &at);
                    batch.keep(result);
                }
                "instagram" => {
                    let result = instagram_comment(&mut batch, entry, &change.value, &at);
                    batch.keep(result);
                }
                _ => whatsapp_change(&mut batch, &change.value, &at),
            }
        }
    }
    Ok(batch)
}

fn push(batch: &mut MetaBatch, channel: ChannelKind, account_id: &str, mut inbound: Inbound) {
    inbound.account_id = Some(account_id.to_owned());
    batch.events.push(MetaEvent {
        channel,
        account_id: account_id.to_owned(),
        inbound,
    });
}

// ---- Messenger and Instagram DMs -------------------------------------------------------------

#[derive(Deserialize)]
struct MessagingEvent {
    sender: Party,
    recipient: Party,
    timestamp: Lenient,
    #[serde(default)]
    message: Option<DirectMessage>,
    #[serde(default)]
    message_edit: Option<MessageEdit>,
    #[serde(default)]
    postback: Option<Postback>,
}

/// A tap on a button or persistent-menu item: the customer "said" the button's title.
#[derive(Deserialize)]
struct Postback {
    #[serde(default)]
    mid: Option<String>,
    #[serde(default)]
    title: String,
}

#[derive(Deserialize)]
struct Party {
    #[serde(deserialize_with = "id_string")]
    id: String,
}

#[derive(Deserialize)]
struct DirectMessage {
    mid: String,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    is_echo: bool,
    #[serde(default)]
    is_deleted: bool,
    #[serde(default)]
    metadata: Option<String>,
    #[serde(default)]
    reply_to: Option<ReplyTo>,
    #[serde(default)]
    attachments: Vec<DirectAttachment>,
}

#[derive(Deserialize)]
struct ReplyTo {
    #[serde(default)]
    mid: Option<String>,
}

#[derive(Deserialize)]
struct DirectAttachment {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    payload: Option<Value>,
}

#[derive(Deserialize)]
struct MessageEdit {
    mid: String,
    #[serde(default)]
    text: String,
    #[serde(default)]
    num_edit: Option<Lenient>,
}

fn messaging(batch: &mut MetaBatch, channel: ChannelKind, entry: &Entry, at: &str) {
    for (k, raw) in entry.messaging.iter().enumerate() {
        let at = format!("{at}.messaging[{k}]");
        let event: MessagingEvent = match decode_value(PLATFORM, &at, raw) {
            Ok(event) => event,
            Err(e) => {
                batch.rejected.push(e);
                continue;
            }
        };
        let created_at = event.timestamp.0;
        if let Some(edit) = event.message_edit {
            let mut inbound = new_inbound(
                edit.mid,
                InboundKind::Edited,
                author(&event.sender.id),
                edit.text,
                created_at,
            );
            inbound.revision = edit.num_edit.map(|n| n.0.to_string());
            inbound.thread_key = Some(event.sender.id.clone());
            inbound.place = Some(direct());
            push(batch, channel, &entry.id, inbound);
            continue;
        }
        if let Some(postback) = event.postback {
            // Older postbacks have no `mid`; sender and time identify the tap.
            let external_id = postback
                .mid
                .unwrap_or_else(|| format!("postback:{}:{created_at}", event.sender.id));
            let mut inbound = new_inbound(
                external_id,
                InboundKind::Message,
                author(&event.sender.id),
                postback.title,
                created_at,
            );
            inbound.thread_key = Some(event.sender.id.clone());
            inbound.place = Some(direct());
            push(batch, channel, &entry.id, inbound);
            continue;
        }
        let Some(message) = event.message else {
            continue;
        };
        let kind = if message.is_deleted {
            InboundKind::Removed
        } else if message.is_echo {
            InboundKind::Echo
        } else {
            InboundKind::Message
        };
        // The conversation is with the customer: for echoes that is the recipient, and an
        // echo's `author` names the customer the brand wrote to (as the store expects).
        let customer = if message.is_echo {
            &event.recipient.id
        } else {
            &event.sender.id
        };
        let mut inbound = new_inbound(
            message.mid,
            kind,
            author(customer),
            message.text.unwrap_or_default(),
            created_at,
        );
        inbound.in_reply_to = message.reply_to.and_then(|r| r.mid);
        inbound.thread_key = Some(customer.clone());
        inbound.place = Some(direct());
        inbound.attachments = message
            .attachments
            .into_iter()
            .map(|a| Attachment {
                url: a
                    .payload
                    .as_ref()
                    .and_then(|p| p.get("url"))
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                kind: a.kind,
                media_id: None,
                mime_type: None,
            })
            .collect();
        if message.is_echo {
            inbound.outbox_key = message.metadata;
        }
        push(batch, channel, &entry.id, inbound);
    }
}

fn author(platform_id: &str) -> Author {
    Author {
        platform_id: platform_id.to_owned(),
        handle: None,
        name: None,
    }
}

fn direct() -> Place {
    Place {
        kind: PlaceKind::Direct,
        url: None,
    }
}

// ---- Facebook Page feed ----------------------------------------------------------------------

#[derive(Deserialize)]
struct FeedValue {
    #[serde(default)]
    item: String,
    #[serde(default)]
    verb: String,
    #[serde(default)]
    comment_id: Option<String>,
    #[serde(default)]
    post_id: Option<String>,
    #[serde(default)]
    parent_id: Option<String>,
    #[serde(default)]
    from: Option<FeedFrom>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    created_time: Option<Lenient>,
    #[serde(default)]
    permalink_url: Option<String>,
    #[serde(default)]
    post: Option<Value>,
}

#[derive(Deserialize)]
struct FeedFrom {
    #[serde(deserialize_with = "id_string")]
    id: String,
    #[serde(default)]
    name: Option<String>,
}

fn feed_change(
    batch: &mut MetaBatch,
    entry: &Entry,
    raw: &Value,
    at: &str,
) -> Result<(), ParseError> {
    let value: FeedValue = decode_value(PLATFORM, at, raw)?;
    let place_kind = match value.item.as_str() {
        "comment" => PlaceKind::Comment,
        "post" | "status" => PlaceKind::Post,
        _ => return Ok(()),
    };
    let mut kind = match value.verb.as_str() {
        "add" => InboundKind::Message,
        "edited" => InboundKind::Edited,
        // A hidden comment is no longer public; Balie marks it like a removal.
        "remove" | "hide" => InboundKind::Removed,
        _ => return Ok(()),
    };
    let post_id = required(value.post_id, at, "post_id")?;
    let external_id = match place_kind {
        PlaceKind::Comment => required(value.comment_id, at, "comment_id")?,
        _ => post_id.clone(),
    };
    if value.from.as_ref().is_some_and(|from| from.id == entry.id) {
        // The page's own comment: a reply sent from Balie or another tool. The customer it
        // answers is not in the payload, so `author` stays the page; `in_reply_to` and
        // `thread_key` place it. The page's own posts, edits and removals are not
        // conversation.
        if kind != InboundKind::Message || place_kind != PlaceKind::Comment {
            return Ok(());
        }
        kind = InboundKind::Echo;
    }
    let from = match value.from {
        Some(from) => from,
        // Removals may come without an author; the page is the best we know.
        None if kind == InboundKind::Removed => FeedFrom {
            id: entry.id.clone(),
            name: None,
        },
        None => return Err(missing(at, "from")),
    };
    let created_at = value
        .created_time
        .or(entry.time)
        .map(|t| seconds_to_millis(t.0))
        .ok_or_else(|| missing(at, "created_time"))?;
    let url = value.permalink_url.or_else(|| {
        value
            .post
            .as_ref()
            .and_then(|p| p.get("permalink_url"))
            .and_then(Value::as_str)
            .map(str::to_owned)
    });
    let mut inbound = new_inbound(
        external_id,
        kind,
        Author {
            platform_id: from.id,
            handle: None,
            name: from.name,
        },
        value.message.unwrap_or_default(),
        created_at,
    );
    inbound.in_reply_to = value.parent_id.filter(|parent| *parent != post_id);
    inbound.thread_key = Some(post_id);
    inbound.place = Some(Place {
        kind: place_kind,
        url,
    });
    if kind == InboundKind::Edited {
        inbound.revision = entry.time.map(|t| t.0.to_string());
    }
    push(batch, ChannelKind::FacebookPage, &entry.id, inbound);
    Ok(())
}

fn required(field: Option<String>, at: &str, name: &str) -> Result<String, ParseError> {
    field.ok_or_else(|| missing(at, name))
}

fn missing(at: &str, name: &str) -> ParseError {
    ParseError::Malformed {
        platform: PLATFORM,
        path: format!("{at}.{name}"),
        reason: "missing field".to_owned(),
    }
}

// ---- Instagram comments ----------------------------------------------------------------------

#[derive(Deserialize)]
struct InstagramComment {
    #[serde(deserialize_with = "id_string")]
    id: String,
    #[serde(default)]
    text: String,
    #[serde(default)]
    parent_id: Option<String>,
    from: InstagramFrom,
    #[serde(default)]
    media: Option<InstagramMedia>,
}

#[derive(Deserialize)]
struct InstagramFrom {
    #[serde(deserialize_with = "id_string")]
    id: String,
    #[serde(default)]
    username: Option<String>,
}

#[derive(Deserialize)]
struct InstagramMedia {
    #[serde(deserialize_with = "id_string")]
    id: String,
}

fn instagram_comment(
    batch: &mut MetaBatch,
    entry: &Entry,
    raw: &Value,
    at: &str,
) -> Result<(), ParseError> {
    let value: InstagramComment = decode_value(PLATFORM, at, raw)?;
    let kind = if value.from.id == entry.id {
        InboundKind::Echo
    } else {
        InboundKind::Message
    };
    // Comment changes carry no timestamp of their own; the entry's `time` is in seconds.
    let created_at = entry
        .time
        .map(|t| seconds_to_millis(t.0))
        .ok_or_else(|| missing(&at.replace(".value", ""), "time"))?;
    let mut inbound = new_inbound(
        value.id,
        kind,
        Author {
            platform_id: value.from.id,
            handle: value.from.username,
            name: None,
        },
        value.text,
        created_at,
    );
    inbound.in_reply_to = value.parent_id;
    inbound.thread_key = value.media.map(|m| m.id);
    inbound.place = Some(Place {
        kind: PlaceKind::Comment,
        url: None,
    });
    push(batch, ChannelKind::Instagram, &entry.id, inbound);
    Ok(())
}

// ---- WhatsApp --------------------------------------------------------------------------------

#[derive(Deserialize)]
struct WhatsappValue {
    metadata: WhatsappMetadata,
    #[serde(default)]
    contacts: Vec<WhatsappContact>,
    #[serde(default)]
    messages: Vec<Value>,
    #[serde(default)]
    statuses: Vec<Value>,
}

#[derive(Deserialize)]
struct WhatsappMetadata {
    #[serde(deserialize_with = "id_string")]
    phone_number_id: String,
}

#[derive(Deserialize)]
struct WhatsappContact {
    wa_id: String,
    #[serde(default)]
    profile: Option<WhatsappProfile>,
}

#[derive(Deserialize)]
struct WhatsappProfile {
    #[serde(default)]
    name: Option<String>,
}

#[derive(Deserialize)]
struct WhatsappMessage {
    from: String,
    id: String,
    timestamp: Lenient,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    context: Option<WhatsappContext>,
    #[serde(default)]
    text: Option<WhatsappText>,
    #[serde(default)]
    button: Option<WhatsappButton>,
    #[serde(default)]
    interactive: Option<Value>,
    #[serde(default)]
    location: Option<Value>,
}

#[derive(Deserialize)]
struct WhatsappContext {
    #[serde(default)]
    id: Option<String>,
}

#[derive(Deserialize)]
struct WhatsappText {
    body: String,
}

#[derive(Deserialize)]
struct WhatsappButton {
    #[serde(default)]
    text: String,
}

#[derive(Deserialize)]
struct WhatsappMedia {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    mime_type: Option<String>,
    #[serde(default)]
    caption: Option<String>,
    #[serde(default)]
    filename: Option<String>,
}

#[derive(Deserialize)]
struct WhatsappStatus {
    id: String,
    status: String,
    timestamp: Lenient,
    #[serde(default)]
    recipient_id: Option<String>,
    #[serde(default)]
    errors: Vec<WhatsappError>,
    #[serde(default)]
    biz_opaque_callback_data: Option<String>,
}

#[derive(Deserialize)]
struct WhatsappError {
    #[serde(default)]
    code: Option<i64>,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

const WHATSAPP_MEDIA: [&str; 5] = ["image", "video", "audio", "document", "sticker"];

fn whatsapp_change(batch: &mut MetaBatch, raw: &Value, at: &str) {
    let value: WhatsappValue = match decode_value(PLATFORM, at, raw) {
        Ok(value) => value,
        Err(e) => {
            batch.rejected.push(e);
            return;
        }
    };
    let account = &value.metadata.phone_number_id;
    for (k, raw) in value.messages.iter().enumerate() {
        let at = format!("{at}.messages[{k}]");
        match whatsapp_message(&value, raw, &at) {
            Ok(Some(inbound)) => push(batch, ChannelKind::Whatsapp, account, inbound),
            Ok(None) => {}
            Err(e) => batch.rejected.push(e),
        }
    }
    for (k, raw) in value.statuses.iter().enumerate() {
        let at = format!("{at}.statuses[{k}]");
        match whatsapp_status(account, raw, &at) {
            Ok(Some(status)) => batch.statuses.push(status),
            Ok(None) => {}
            Err(e) => batch.rejected.push(e),
        }
    }
}

/// One customer message; `None` for types Balie does not show (reactions, system notices,
/// `unsupported` and future types).
fn whatsapp_message(
    value: &WhatsappValue,
    raw: &Value,
    at: &str,
) -> Result<Option<Inbound>, ParseError> {
    let message: WhatsappMessage = decode_value(PLATFORM, at, raw)?;
    let mut attachments = Vec::new();
    let text = match message.kind.as_str() {
        "text" => required(message.text.map(|t| t.body), at, "text.body")?,
        "button" => message.button.map(|b| b.text).unwrap_or_default(),
        "interactive" => interactive_title(message.interactive.as_ref()),
        "location" => location_text(message.location.as_ref()),
        media if WHATSAPP_MEDIA.contains(&media) => {
            let sub = raw.get(media).ok_or_else(|| missing(at, media))?;
            let m: WhatsappMedia = decode_value(PLATFORM, &format!("{at}.{media}"), sub)?;
            attachments.push(Attachment {
                kind: media.to_owned(),
                url: None,
                media_id: m.id,
                mime_type: m.mime_type,
            });
            m.caption.or(m.filename).unwrap_or_default()
        }
        _ => return Ok(None),
    };
    let name = value
        .contacts
        .iter()
        .find(|c| c.wa_id == message.from)
        .and_then(|c| c.profile.as_ref())
        .and_then(|p| p.name.clone());
    let mut inbound = new_inbound(
        message.id,
        InboundKind::Message,
        Author {
            platform_id: message.from.clone(),
            handle: None,
            name,
        },
        text,
        seconds_to_millis(message.timestamp.0),
    );
    inbound.in_reply_to = message.context.and_then(|c| c.id);
    inbound.thread_key = Some(message.from);
    inbound.place = Some(direct());
    inbound.attachments = attachments;
    Ok(Some(inbound))
}

/// One delivery receipt; `None` for states Balie does not track.
fn whatsapp_status(
    account: &str,
    raw: &Value,
    at: &str,
) -> Result<Option<DeliveryStatus>, ParseError> {
    let status: WhatsappStatus = decode_value(PLATFORM, at, raw)?;
    let state = match status.status.as_str() {
        "sent" => DeliveryState::Sent,
        "delivered" => DeliveryState::Delivered,
        "read" => DeliveryState::Read,
        "failed" => DeliveryState::Failed,
        _ => return Ok(None),
    };
    let error = status.errors.first().map(|e| {
        let what = e.message.as_ref().or(e.title.as_ref());
        match (e.code, what) {
            (Some(code), Some(what)) => format!("{code}: {what}"),
            (Some(code), None) => code.to_string(),
            (None, Some(what)) => what.clone(),
            (None, None) => "unknown error".to_owned(),
        }
    });
    Ok(Some(DeliveryStatus {
        account_id: account.to_owned(),
        external_id: status.id,
        status: state,
        at: seconds_to_millis(status.timestamp.0),
        recipient: status.recipient_id,
        error,
        outbox_key: status.biz_opaque_callback_data,
    }))
}

fn interactive_title(interactive: Option<&Value>) -> String {
    let Some(i) = interactive else {
        return String::new();
    };
    ["button_reply", "list_reply"]
        .iter()
        .find_map(|k| {
            i.get(k)
                .and_then(|r| r.get("title"))
                .and_then(Value::as_str)
        })
        .unwrap_or_default()
        .to_owned()
}

fn location_text(location: Option<&Value>) -> String {
    let Some(l) = location else {
        return String::new();
    };
    let part = |k: &str| l.get(k).map(|v| v.to_string().trim_matches('"').to_owned());
    let coordinates = match (part("latitude"), part("longitude")) {
        (Some(lat), Some(lon)) => format!("{lat},{lon}"),
        _ => String::new(),
    };
    [part("name"), part("address"), Some(coordinates)]
        .into_iter()
        .flatten()
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscription_echoes_the_bare_challenge_for_the_right_token() {
        assert_eq!(
            verify_subscription("subscribe", "tok", "1158201444", Some("tok")),
            Ok("1158201444".to_owned())
        );
    }

    #[test]
    fn subscription_is_refused_without_a_configured_token() {
        for configured in [None, Some("")] {
            assert_eq!(
                verify_subscription("subscribe", "", "1", configured),
                Err(SubscriptionRefused::NotConfigured)
            );
        }
    }

    #[test]
    fn subscription_is_refused_for_wrong_mode_token_or_challenge() {
        let check =
            |mode, token, challenge| verify_subscription(mode, token, challenge, Some("tok"));
        assert_eq!(
            check("unsubscribe", "tok", "1"),
            Err(SubscriptionRefused::WrongMode)
        );
        assert_eq!(
            check("subscribe", "to", "1"),
            Err(SubscriptionRefused::WrongToken)
        );
        assert_eq!(
            check("subscribe", "tok", ""),
            Err(SubscriptionRefused::BadChallenge)
        );
        assert_eq!(
            check("subscribe", "tok", "<script>"),
            Err(SubscriptionRefused::BadChallenge)
        );
    }
}
