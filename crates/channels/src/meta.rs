//! Meta's Graph webhooks (Facebook Messenger and Page feed, Instagram, WhatsApp Cloud API):
//! the subscription handshake, the `X-Hub-Signature-256` check and payload parsing.
//!
//! One POST may carry many entries and changes from several accounts; [`parse`] returns every
//! event in it, each tagged with the channel kind and the account (page id, Instagram account
//! id, WhatsApp `phone_number_id`) it belongs to. Events Balie does not use (reads,
//! deliveries of Messenger messages, reactions, standby, unknown fields) are skipped.

use std::collections::HashMap;

use balie_core::inbound::Attachment;
use balie_core::{Author, ChannelKind, Inbound, InboundKind, Millis, Place, PlaceKind};
use reqwest::header::HeaderMap;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::Secret;
use crate::connector::{
    ActionKind, ChannelSetup, Connector, Credentials, Delivery, Handshake, Header, Receiving,
    ReplyContext, Routed, RoutedStatus, SecretName, Webhook,
};
use crate::outbound::{
    OutboundKind, OutboundReply, OutboundTarget, PLATFORM_WAITS, Request, SendOutcome, SuccessId,
    THROTTLE_DELAY, TRANSIENT_DELAY, WindowMode, refused_or_retried, retry_after, sent_or_unknown,
};

use crate::json::{Lenient, decode_body, decode_value, epoch_millis, id_string};
use crate::outcome::{self, DropReason, Dropped, Unreadable};
use crate::signature::{constant_time_eq, verify_sha256_header};
use crate::{ParseError, new_inbound};

const PLATFORM: &str = "meta";

/// Facebook Pages (Messenger DMs and the feed), Instagram and WhatsApp, on one Meta app.
pub static CONNECTOR: Connector = Connector {
    name: PLATFORM,
    kinds: &[
        ChannelKind::Messenger,
        ChannelKind::FacebookPage,
        ChannelKind::Instagram,
        ChannelKind::Whatsapp,
    ],
    secrets: |_| {
        &[
            SecretName::AppSecret,
            SecretName::VerifyToken,
            SecretName::AccessToken,
        ]
    },
    // A Page channel also takes the Page's Messenger DMs.
    also_takes: &[(ChannelKind::FacebookPage, ChannelKind::Messenger)],
    receiving: Receiving::Push(&MetaWebhook),
    reply_target,
    actions: &[ActionKind::Reply],
};

struct MetaWebhook;

impl Webhook for MetaWebhook {
    fn path(&self) -> &'static str {
        PLATFORM
    }

    fn handshake(
        &self,
        query: &HashMap<String, String>,
        credentials: &Credentials,
    ) -> Option<Handshake> {
        let param = |key: &str| query.get(key).map_or("", String::as_str);
        Some(
            match verify_subscription(
                param("hub.mode"),
                param("hub.verify_token"),
                param("hub.challenge"),
                credentials.get(SecretName::VerifyToken).map(Secret::expose),
            ) {
                Ok(challenge) => Handshake::Answer {
                    content_type: "text/plain",
                    body: challenge,
                },
                Err(refused) => Handshake::Refused(refused.to_string()),
            },
        )
    }

    fn verify(
        &self,
        credentials: &Credentials,
        header: Header<'_>,
        body: &[u8],
    ) -> Result<(), &'static str> {
        let app_secret = credentials.expose(SecretName::AppSecret);
        if app_secret.is_empty() {
            return Err("no app secret is configured");
        }
        if !verify_signature(app_secret, body, header("x-hub-signature-256")) {
            return Err("X-Hub-Signature-256 does not match");
        }
        Ok(())
    }

    fn signing_secret(&self) -> SecretName {
        SecretName::AppSecret
    }

    fn parse(&self, body: &[u8], kind: ChannelKind) -> Result<Delivery, ParseError> {
        let batch = parse_for_channel(body, kind)?;
        Ok(Delivery {
            events: batch
                .events
                .into_iter()
                .map(|e| Routed {
                    kind: e.channel,
                    account_id: Some(e.account_id).filter(|a| !a.is_empty()),
                    inbound: e.inbound,
                })
                .collect(),
            statuses: batch
                .statuses
                .into_iter()
                .map(|status| RoutedStatus {
                    kind: ChannelKind::Whatsapp,
                    platform: "WhatsApp",
                    status,
                })
                .collect(),
            dropped: batch.dropped,
            unread: batch.unread,
        })
    }
}

/// Where a reply on a Meta channel goes: a Messenger or Instagram DM, a comment reply, or a
/// WhatsApp message.
fn reply_target(
    channel: &ChannelSetup<'_>,
    reply: &ReplyContext,
) -> Result<OutboundTarget, String> {
    let kind = CONNECTOR
        .outbound_kind(channel.kind, reply)
        .ok_or_else(|| {
            format!(
                "replies on {} channels are not supported",
                channel.kind.as_str()
            )
        })?;
    let settings = channel.settings;
    let token = || channel.credentials.need(SecretName::AccessToken);
    Ok(match kind {
        OutboundKind::Messenger => OutboundTarget::Messenger {
            graph: settings.graph(),
            page_id: channel.setting(settings.page_id.as_ref(), "page_id")?,
            access_token: token()?,
            recipient_id: reply.recipient()?,
        },
        OutboundKind::InstagramDirect => OutboundTarget::InstagramDirect {
            graph: settings.graph(),
            account_id: channel.setting(settings.ig_account_id.as_ref(), "ig_account_id")?,
            access_token: token()?,
            recipient_id: reply.recipient()?,
        },
        OutboundKind::FacebookComment => OutboundTarget::FacebookComment {
            graph: settings.graph(),
            comment_id: reply.answered()?,
            access_token: token()?,
        },
        OutboundKind::InstagramComment => OutboundTarget::InstagramComment {
            graph: settings.graph(),
            comment_id: reply.answered()?,
            access_token: token()?,
        },
        OutboundKind::Whatsapp => OutboundTarget::Whatsapp {
            graph: settings.graph(),
            phone_number_id: channel
                .setting(settings.phone_number_id.as_ref(), "phone_number_id")?,
            access_token: token()?,
            to: reply.recipient()?,
            reply_to: reply.answered.clone(),
        },
        other => return Err(format!("{other:?} is not a Meta reply")),
    })
}

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

/// Everything one webhook POST carried. Every event in it is in exactly one of the lists.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetaBatch {
    pub events: Vec<MetaEvent>,
    /// WhatsApp delivery receipts for messages Balie sent.
    pub statuses: Vec<DeliveryStatus>,
    /// Events set aside (receipts, reactions, fields Balie does not take), each with its reason.
    pub dropped: Vec<Dropped>,
    /// Events Balie cannot read yet that may carry a customer's words: journal each on the
    /// webhook's own channel (kind `Unread`) and log why. The rest of the batch is still good:
    /// answer 200, or Meta redelivers the whole POST.
    pub unread: Vec<Unreadable>,
}

impl MetaBatch {
    /// An event that could not be read: kept unread if it may carry words, else dropped.
    fn unreadable(&mut self, raw: &Value, e: &ParseError) {
        match outcome::unreadable(raw, e.to_string()) {
            Ok(inbound) => self.unread.push(Unreadable {
                why: e.to_string(),
                inbound,
            }),
            Err(dropped) => self.dropped.push(dropped),
        }
    }

    fn drop(&mut self, reason: DropReason, what: String) {
        self.dropped.push(Dropped::new(reason, what));
    }
}

/// One normalised event and where to route it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaEvent {
    /// `Messenger` (page DMs), `FacebookPage` (feed comments and visitor posts), `Instagram`
    /// (DMs and comments) or `Whatsapp`.
    pub channel: ChannelKind,
    /// Page id, Instagram account id or WhatsApp `phone_number_id` (also in
    /// `inbound.account_id`); empty when the delivery did not say (a dashboard test of a
    /// single change): route it to the webhook's own channel if that is of the right kind.
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
    /// The customer's `wa_id`, or their business-scoped user id when WhatsApp gives no phone
    /// number.
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
    #[serde(default)]
    object: Option<String>,
    #[serde(default)]
    entry: Option<Vec<Value>>,
    /// A single change without its envelope, as the App Dashboard's "Test" button sends it.
    #[serde(default)]
    field: Option<String>,
    #[serde(default)]
    value: Option<Value>,
}

#[derive(Deserialize)]
struct Entry {
    #[serde(deserialize_with = "id_string")]
    id: String,
    #[serde(default)]
    time: Option<Lenient>,
    #[serde(default)]
    messaging: Vec<Value>,
    /// Events for conversations another app controls (the handover protocol).
    #[serde(default)]
    standby: Vec<Value>,
    #[serde(default)]
    changes: Vec<Change>,
}

#[derive(Deserialize)]
struct Change {
    field: String,
    #[serde(default)]
    value: Value,
}

/// The webhook `object` a channel of `kind` receives.
fn object_of(kind: ChannelKind) -> Option<&'static str> {
    match kind {
        ChannelKind::Messenger | ChannelKind::FacebookPage => Some("page"),
        ChannelKind::Instagram => Some("instagram"),
        ChannelKind::Whatsapp => Some("whatsapp_business_account"),
        _ => None,
    }
}

/// Parses a webhook body (after [`verify_signature`]). A body that is not a Meta webhook
/// envelope is a [`ParseError`]; inside a good envelope every event lands in exactly one of
/// [`MetaBatch`]'s lists. The top-level `object` is required; see [`parse_for_channel`].
pub fn parse(raw_body: &[u8]) -> Result<MetaBatch, ParseError> {
    parse_envelope(raw_body, None)
}

/// [`parse`] for a delivery to a channel of `kind`: a body without the top-level `object`
/// (Meta's dashboard test deliveries, which may also be a single bare change) is read as the
/// object that kind receives.
pub fn parse_for_channel(raw_body: &[u8], kind: ChannelKind) -> Result<MetaBatch, ParseError> {
    parse_envelope(raw_body, object_of(kind))
}

fn parse_envelope(raw_body: &[u8], default_object: Option<&str>) -> Result<MetaBatch, ParseError> {
    let envelope: Envelope = decode_body(PLATFORM, raw_body)?;
    let object = match (envelope.object.as_deref(), default_object) {
        (Some(object), _) | (None, Some(object)) => object.to_owned(),
        (None, None) => {
            return Err(ParseError::Malformed {
                platform: PLATFORM,
                path: ".".to_owned(),
                reason: "missing field `object`".to_owned(),
            });
        }
    };
    let entries = match (envelope.entry, envelope.field, envelope.value) {
        (Some(entries), _, _) => entries,
        (None, Some(field), Some(value)) => {
            vec![serde_json::json!({"id": "", "changes": [{"field": field, "value": value}]})]
        }
        _ => Vec::new(),
    };
    let mut batch = MetaBatch::default();
    for (i, raw) in entries.iter().enumerate() {
        let at = format!("entry[{i}]");
        let entry: Entry = match decode_value(PLATFORM, &at, raw) {
            Ok(entry) => entry,
            Err(e) => {
                batch.unreadable(raw, &e);
                continue;
            }
        };
        let entry = &entry;
        match object.as_str() {
            "page" => {
                for (k, raw) in entry.messaging.iter().enumerate() {
                    let at = format!("{at}.messaging[{k}]");
                    messaging(&mut batch, ChannelKind::Messenger, entry, raw, &at);
                }
            }
            "instagram" => {
                for (k, raw) in entry.messaging.iter().enumerate() {
                    let at = format!("{at}.messaging[{k}]");
                    messaging(&mut batch, ChannelKind::Instagram, entry, raw, &at);
                }
            }
            "whatsapp_business_account" => {}
            other => {
                batch.drop(
                    DropReason::NotConversation,
                    format!("{at}: object `{other}`"),
                );
                continue;
            }
        }
        for (k, raw) in entry.standby.iter().enumerate() {
            // Another app has the conversation; Balie keeps what was said but does not answer.
            let at = format!("{at}.standby[{k}]");
            if outcome::carries_words(raw) {
                batch.unread.push(Unreadable {
                    why: format!("{at}: a message while another app controls the conversation"),
                    inbound: outcome::unread(raw),
                });
            } else {
                batch.drop(DropReason::NotConversation, format!("{at}: standby event"));
            }
        }
        for (j, change) in entry.changes.iter().enumerate() {
            let at = format!("{at}.changes[{j}].value");
            let result = match (object.as_str(), change.field.as_str()) {
                ("page", "feed") => feed_change(&mut batch, entry, &change.value, &at),
                ("instagram", "comments" | "live_comments") => {
                    instagram_comment(&mut batch, entry, &change.value, &at)
                }
                // Instagram API with Instagram Login puts DMs under changes.
                ("instagram", field) if field.starts_with("messag") => {
                    messaging(
                        &mut batch,
                        ChannelKind::Instagram,
                        entry,
                        &change.value,
                        &at,
                    );
                    Ok(())
                }
                ("whatsapp_business_account", "messages") => {
                    whatsapp_change(&mut batch, &change.value, &at);
                    Ok(())
                }
                (_, field) => {
                    batch.drop(
                        DropReason::NotConversation,
                        format!("{at}: field `{field}`"),
                    );
                    Ok(())
                }
            };
            if let Err(e) = result {
                batch.unreadable(&change.value, &e);
            }
        }
    }
    Ok(batch)
}

fn push(batch: &mut MetaBatch, channel: ChannelKind, account_id: &str, mut inbound: Inbound) {
    inbound.account_id = Some(account_id.to_owned()).filter(|a| !a.is_empty());
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
    /// Milliseconds on real deliveries; seconds, as a string, on dashboard tests.
    #[serde(default)]
    timestamp: Option<Lenient>,
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

/// Messaging events that are not conversation, and why they are set aside.
const NOT_SAID: [(&str, DropReason); 6] = [
    ("delivery", DropReason::Receipt),
    ("read", DropReason::Receipt),
    ("messaging_seen", DropReason::Receipt),
    ("typing", DropReason::Receipt),
    ("reaction", DropReason::Reaction),
    ("message_reactions", DropReason::Reaction),
];

fn messaging(batch: &mut MetaBatch, channel: ChannelKind, entry: &Entry, raw: &Value, at: &str) {
    let said = ["message", "message_edit", "postback"]
        .iter()
        .any(|k| raw.get(k).is_some());
    if !said {
        let (reason, kind) = NOT_SAID
            .iter()
            .find(|(k, _)| raw.get(k).is_some())
            .map_or((DropReason::NotConversation, "event"), |(k, r)| (*r, *k));
        batch.drop(reason, format!("{at}: {} {kind}", channel.as_str()));
        return;
    }
    let event = decode_value::<MessagingEvent>(PLATFORM, at, raw).and_then(|event| {
        let created_at = event
            .timestamp
            .or(entry.time)
            .map(|t| epoch_millis(t.0))
            .ok_or_else(|| missing(at, "timestamp"))?;
        Ok((event, created_at))
    });
    let (event, created_at) = match event {
        Ok(read) => read,
        Err(e) => {
            batch.unreadable(raw, &e);
            return;
        }
    };
    let is_echo = event.message.as_ref().is_some_and(|m| m.is_echo);
    // The brand's side of the conversation: the entry says, else the event does.
    let account = match (entry.id.is_empty(), is_echo) {
        (false, _) => entry.id.clone(),
        (true, false) => event.recipient.id.clone(),
        (true, true) => event.sender.id.clone(),
    };
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
        push(batch, channel, &account, inbound);
        return;
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
        push(batch, channel, &account, inbound);
        return;
    }
    let Some(message) = event.message else {
        return;
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
    push(batch, channel, &account, inbound);
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
        "post" | "status" | "photo" | "video" => PlaceKind::Post,
        "reaction" | "like" | "share" => {
            batch.drop(DropReason::Reaction, format!("{at}: feed {}", value.item));
            return Ok(());
        }
        other => {
            batch.drop(
                DropReason::NotConversation,
                format!("{at}: feed item `{other}`"),
            );
            return Ok(());
        }
    };
    let mut kind = match value.verb.as_str() {
        "add" => InboundKind::Message,
        "edited" => InboundKind::Edited,
        // A hidden comment is no longer public; Balie marks it like a removal.
        "remove" | "hide" => InboundKind::Removed,
        other => {
            batch.drop(
                DropReason::NotConversation,
                format!("{at}: feed verb `{other}`"),
            );
            return Ok(());
        }
    };
    let post_id = required(value.post_id, at, "post_id")?;
    let external_id = match place_kind {
        PlaceKind::Comment => required(value.comment_id, at, "comment_id")?,
        _ => post_id.clone(),
    };
    // A post id is `<page id>_<post id>`: the page, when the delivery has no entry around it.
    let page_id = if entry.id.is_empty() {
        post_id.split('_').next().unwrap_or_default().to_owned()
    } else {
        entry.id.clone()
    };
    if value.from.as_ref().is_some_and(|from| from.id == page_id) {
        // The page's own comment: a reply sent from Balie or another tool. The customer it
        // answers is not in the payload, so `author` stays the page; `in_reply_to` and
        // `thread_key` place it. The page's own posts, edits and removals are not
        // conversation.
        if kind != InboundKind::Message || place_kind != PlaceKind::Comment {
            batch.drop(
                DropReason::OwnActivity,
                format!("{at}: the page's own {}", value.item),
            );
            return Ok(());
        }
        kind = InboundKind::Echo;
    }
    let from = match value.from {
        Some(from) => from,
        // Removals may come without an author; the page is the best we know.
        None if kind == InboundKind::Removed => FeedFrom {
            id: page_id.clone(),
            name: None,
        },
        None => return Err(missing(at, "from")),
    };
    let created_at = value
        .created_time
        .or(entry.time)
        .map(|t| epoch_millis(t.0))
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
    push(batch, ChannelKind::FacebookPage, &page_id, inbound);
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
        .map(|t| epoch_millis(t.0))
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

/// A WhatsApp user. `wa_id` is their phone number; since 2026 WhatsApp also gives a
/// business-scoped user id (`user_id`, e.g. `NL.1502576394655843`) and leaves the phone
/// number out for users who adopted a username.
#[derive(Deserialize)]
struct WhatsappContact {
    #[serde(default)]
    wa_id: Option<String>,
    #[serde(default)]
    user_id: Option<String>,
    #[serde(default)]
    profile: Option<WhatsappProfile>,
}

#[derive(Deserialize)]
struct WhatsappProfile {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    username: Option<String>,
}

#[derive(Deserialize)]
struct WhatsappMessage {
    /// The sender's phone number; absent for users WhatsApp knows only by `from_user_id`.
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    from_user_id: Option<String>,
    id: String,
    timestamp: Lenient,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    context: Option<WhatsappContext>,
}

impl WhatsappMessage {
    /// Who wrote it: the phone number when WhatsApp gives one (as Balie has always known its
    /// WhatsApp customers), else the business-scoped user id.
    fn sender(&self, at: &str) -> Result<&str, ParseError> {
        self.from
            .as_deref()
            .or(self.from_user_id.as_deref())
            .filter(|s| !s.is_empty())
            .ok_or_else(|| missing(at, "from"))
    }
}

#[derive(Deserialize)]
struct WhatsappContext {
    #[serde(default)]
    id: Option<String>,
}

/// A change to an earlier message (`edit`, `revoke`): which one.
#[derive(Deserialize)]
struct WhatsappChange {
    original_message_id: String,
    /// For edits: the message as it reads now, with its own `type`.
    #[serde(default)]
    message: Option<Value>,
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
    recipient_user_id: Option<String>,
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
            batch.unreadable(raw, &e);
            return;
        }
    };
    let account = &value.metadata.phone_number_id;
    for (k, raw) in value.messages.iter().enumerate() {
        let at = format!("{at}.messages[{k}]");
        match whatsapp_message(&value, raw, &at) {
            Ok(Ok(inbound)) => push(batch, ChannelKind::Whatsapp, account, inbound),
            Ok(Err(dropped)) => batch.dropped.push(dropped),
            // Whatever a customer sent is theirs: kept unread even without words in it.
            Err(e) => batch.unread.push(Unreadable {
                why: e.to_string(),
                inbound: outcome::unread(raw),
            }),
        }
    }
    for (k, raw) in value.statuses.iter().enumerate() {
        let at = format!("{at}.statuses[{k}]");
        match whatsapp_status(account, raw, &at) {
            Ok(Some(status)) => batch.statuses.push(status),
            Ok(None) => batch.drop(DropReason::NotConversation, format!("{at}: status")),
            Err(e) => batch.unreadable(raw, &e),
        }
    }
}

/// One customer message: an inbound event, or why it is set aside. Types Balie cannot show
/// (`unsupported`, future ones) are errors, so the caller keeps them unread.
fn whatsapp_message(
    value: &WhatsappValue,
    raw: &Value,
    at: &str,
) -> Result<Result<Inbound, Dropped>, ParseError> {
    let message: WhatsappMessage = decode_value(PLATFORM, at, raw)?;
    let sender = message.sender(at)?.to_owned();
    let created_at = epoch_millis(message.timestamp.0);
    let contact = value.contacts.iter().find(|c| {
        (message.from.is_some() && c.wa_id == message.from)
            || (message.from_user_id.is_some() && c.user_id == message.from_user_id)
    });
    let profile = contact.and_then(|c| c.profile.as_ref());
    let author = Author {
        platform_id: sender.clone(),
        handle: profile.and_then(|p| p.username.clone()),
        name: profile.and_then(|p| p.name.clone()),
    };
    let change = |kind: &str| -> Result<WhatsappChange, ParseError> {
        let sub = raw.get(kind).ok_or_else(|| missing(at, kind))?;
        decode_value(PLATFORM, &format!("{at}.{kind}"), sub)
    };
    let (kind, external_id, content) = match message.kind.as_str() {
        "reaction" => {
            return Ok(Err(Dropped::new(
                DropReason::Reaction,
                format!("{at}: WhatsApp reaction"),
            )));
        }
        "request_welcome" => {
            return Ok(Err(Dropped::new(
                DropReason::NotConversation,
                format!("{at}: WhatsApp request_welcome"),
            )));
        }
        "system" => {
            // A customer changed their number, say: worth a line on the timeline.
            let text = raw
                .pointer("/system/body")
                .and_then(Value::as_str)
                .unwrap_or("WhatsApp system message")
                .to_owned();
            (InboundKind::Notice, message.id.clone(), (text, Vec::new()))
        }
        "edit" => {
            let edit = change("edit")?;
            let edited = edit.message.ok_or_else(|| missing(at, "edit.message"))?;
            let content = whatsapp_content(&edited, &format!("{at}.edit.message"))?
                .ok_or_else(|| unexpected_type(at, "edit.message.type"))?;
            (InboundKind::Edited, edit.original_message_id, content)
        }
        "revoke" => {
            let revoke = change("revoke")?;
            (
                InboundKind::Removed,
                revoke.original_message_id,
                (String::new(), Vec::new()),
            )
        }
        _ => {
            let content = whatsapp_content(raw, at)?.ok_or_else(|| unexpected_type(at, "type"))?;
            (InboundKind::Message, message.id.clone(), content)
        }
    };
    let (text, attachments) = content;
    let mut inbound = new_inbound(external_id, kind, author, text, created_at);
    if kind == InboundKind::Edited {
        // Each edit is a message of its own, with its own id: that tells edits apart.
        inbound.revision = Some(message.id);
    }
    inbound.in_reply_to = message.context.and_then(|c| c.id);
    inbound.thread_key = Some(sender);
    inbound.place = Some(direct());
    inbound.attachments = attachments;
    Ok(Ok(inbound))
}

fn unexpected_type(at: &str, field: &str) -> ParseError {
    ParseError::Malformed {
        platform: PLATFORM,
        path: format!("{at}.{field}"),
        reason: "a message type Balie cannot show yet".to_owned(),
    }
}

/// The words and attachments of a message object (`raw` has `type` and the matching key);
/// `None` for types Balie cannot show.
fn whatsapp_content(
    raw: &Value,
    at: &str,
) -> Result<Option<(String, Vec<Attachment>)>, ParseError> {
    let kind = raw
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| missing(at, "type"))?;
    let mut attachments = Vec::new();
    let text = match kind {
        "text" => raw
            .pointer("/text/body")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| missing(at, "text.body"))?,
        "button" => raw
            .pointer("/button/text")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        "interactive" => interactive_title(raw.get("interactive")),
        "location" => location_text(raw.get("location")),
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
    Ok(Some((text, attachments)))
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
        at: epoch_millis(status.timestamp.0),
        recipient: status.recipient_id.or(status.recipient_user_id),
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

// ---- Sending ---------------------------------------------------------------------------------

/// The Graph API call for a reply to a Meta target.
pub(crate) fn request<'a>(
    target: &'a OutboundTarget,
    reply: &OutboundReply,
    window: WindowMode,
    key: Option<&str>,
) -> Result<Request<'a>, String> {
    let graph = |platform, url, token, body, success| Request {
        platform,
        url,
        bearer: Some(token),
        secret: token,
        body,
        success,
        classify: graph_outcome,
    };
    Ok(match target {
        OutboundTarget::Messenger {
            graph: api,
            page_id,
            access_token,
            recipient_id,
        } => {
            let mut body = direct_message_body(recipient_id, &reply.text, window);
            if let Some(key) = key {
                // Returned on the echo webhook as `message.metadata` (at most 1000 chars).
                body["message"]["metadata"] = json!(key);
            }
            graph(
                "Messenger",
                api.url(&format!("{page_id}/messages")),
                access_token,
                body,
                SuccessId::MessageId,
            )
        }
        OutboundTarget::InstagramDirect {
            graph: api,
            account_id,
            access_token,
            recipient_id,
        } => graph(
            "Instagram",
            api.url(&format!("{account_id}/messages")),
            access_token,
            direct_message_body(recipient_id, &reply.text, window),
            SuccessId::MessageId,
        ),
        // Graph takes its parameters as a JSON body as well as a form or query; JSON keeps the
        // customer-facing text out of URLs and access logs.
        OutboundTarget::FacebookComment {
            graph: api,
            comment_id,
            access_token,
        } => graph(
            "Facebook",
            api.url(&format!("{comment_id}/comments")),
            access_token,
            json!({ "message": reply.text }),
            SuccessId::Id,
        ),
        OutboundTarget::InstagramComment {
            graph: api,
            comment_id,
            access_token,
        } => graph(
            "Instagram",
            api.url(&format!("{comment_id}/replies")),
            access_token,
            json!({ "message": reply.text }),
            SuccessId::Id,
        ),
        OutboundTarget::Whatsapp {
            graph: api,
            phone_number_id,
            access_token,
            to,
            reply_to,
        } => {
            let mut body = json!({
                "messaging_product": "whatsapp",
                "recipient_type": "individual",
                "type": "text",
                "text": { "preview_url": false, "body": reply.text },
            });
            // A phone number goes in `to`; a customer WhatsApp knows only by their
            // business-scoped user id (`NL.1502576394655843`) in `recipient`.
            let phone = to
                .trim_start_matches('+')
                .bytes()
                .all(|b| b.is_ascii_digit());
            body[if phone { "to" } else { "recipient" }] = json!(to);
            if let Some(wamid) = reply_to {
                body["context"] = json!({ "message_id": wamid });
            }
            if let Some(key) = key {
                // Echoed in this message's status webhooks (at most 512 chars).
                body["biz_opaque_callback_data"] = json!(key);
            }
            graph(
                "WhatsApp",
                api.url(&format!("{phone_number_id}/messages")),
                access_token,
                body,
                SuccessId::WhatsappMessage,
            )
        }
        other => return Err(format!("{:?} is not a Meta target", other.kind())),
    })
}

fn direct_message_body(recipient_id: &str, text: &str, window: WindowMode) -> Value {
    let mut body = json!({
        "recipient": { "id": recipient_id },
        "messaging_type": "RESPONSE",
        "message": { "text": text },
    });
    if window == WindowMode::HumanAgent {
        body["messaging_type"] = json!("MESSAGE_TAG");
        body["tag"] = json!("HUMAN_AGENT");
    }
    body
}

/// Graph error codes that mean "throttled, slow down" (application, user, page and business
/// use case rate limits; WhatsApp cloud API and pair rate limits).
const GRAPH_THROTTLED: [i64; 7] = [4, 17, 32, 613, 130_429, 131_048, 131_056];
/// Graph error codes that mean "temporary problem on Meta's side".
const GRAPH_TRANSIENT: [i64; 3] = [1, 2, 131_016];

fn graph_outcome(
    status: reqwest::StatusCode,
    headers: &HeaderMap,
    json: &Value,
    success: SuccessId,
    _now: Millis,
) -> SendOutcome {
    if status.is_success() {
        return sent_or_unknown("Meta", json, success);
    }
    let error = json.get("error");
    let code = error.and_then(|e| e.get("code")).and_then(Value::as_i64);
    let subcode = error
        .and_then(|e| e.get("error_subcode"))
        .and_then(Value::as_i64);
    let message = error
        .and_then(|e| e.get("message"))
        .and_then(Value::as_str)
        .unwrap_or("no error message");
    let transient_flag = error
        .and_then(|e| e.get("is_transient"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let described = match code {
        Some(code) => format!("HTTP {status}, Graph error {code}: {message}"),
        None => format!("HTTP {status}: {message}"),
    };
    match code {
        Some(c) if GRAPH_THROTTLED.contains(&c) || (80_001..=80_014).contains(&c) => {
            return SendOutcome::Retry {
                after: retry_after(headers).unwrap_or(THROTTLE_DELAY),
                reason: format!("throttled by Meta ({described})"),
            };
        }
        Some(c) if GRAPH_TRANSIENT.contains(&c) => {
            return SendOutcome::Retry {
                after: retry_after(headers).unwrap_or(TRANSIENT_DELAY),
                reason: format!("temporary Meta error ({described})"),
            };
        }
        Some(131_047) => {
            return SendOutcome::Permanent {
                reason: format!(
                    "more than 24 hours have passed since the customer last wrote; WhatsApp \
                     only delivers an approved template message now ({described})"
                ),
            };
        }
        Some(10) if subcode == Some(2_018_278) => {
            return SendOutcome::Permanent {
                reason: format!("outside the messaging window ({described})"),
            };
        }
        Some(190) => {
            return SendOutcome::Permanent {
                reason: format!("the access token is invalid or expired ({described})"),
            };
        }
        _ => {}
    }
    if transient_flag && !status.is_server_error() && status.as_u16() != 429 {
        return SendOutcome::Retry {
            after: retry_after(headers).unwrap_or(TRANSIENT_DELAY),
            reason: described,
        };
    }
    refused_or_retried(status, headers, described, PLATFORM_WAITS)
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
