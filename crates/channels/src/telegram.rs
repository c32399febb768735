//! Telegram Bot API webhooks: the `X-Telegram-Bot-Api-Secret-Token` check and parsing of
//! `message` and `edited_message` updates (also their `business_` forms), with service
//! messages (a pinned message, a dice roll, members joining) as timeline notices.

use std::time::Duration;

use balie_core::Millis;
use balie_core::inbound::Attachment;
use balie_core::{Author, ChannelKind, Inbound, InboundKind, Place, PlaceKind};
use reqwest::header::HeaderMap;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::Secret;
use crate::connector::{
    ActionKind, ChannelSetup, Connector, Credentials, Delivery, Handshake, Header, Receiving,
    ReplyContext, Routed, SecretName, Webhook,
};
use crate::json::{Lenient, decode_body, seconds_to_millis};
use crate::outbound::{
    OutboundReply, OutboundTarget, Request, SendOutcome, SuccessId, THROTTLE_DELAY,
    TRANSIENT_DELAY, retry_after,
};
use crate::outcome::{self, DropReason, Dropped, Unreadable};
use crate::signature::constant_time_eq;
use crate::{ParseError, new_inbound};

const PLATFORM: &str = "telegram";

/// Telegram bots: private chats and groups the bot is in.
pub static CONNECTOR: Connector = Connector {
    name: PLATFORM,
    kinds: &[ChannelKind::Telegram],
    secrets: |_| &[SecretName::BotToken, SecretName::SecretToken],
    also_takes: &[],
    receiving: Receiving::Push(&TelegramWebhook),
    reply_target,
    actions: &[ActionKind::Reply],
};

struct TelegramWebhook;

impl Webhook for TelegramWebhook {
    fn path(&self) -> &'static str {
        PLATFORM
    }

    fn handshake(
        &self,
        _query: &std::collections::HashMap<String, String>,
        _credentials: &Credentials,
    ) -> Option<Handshake> {
        None
    }

    fn verify(
        &self,
        credentials: &Credentials,
        header: Header<'_>,
        _body: &[u8],
    ) -> Result<(), &'static str> {
        let configured = credentials.get(SecretName::SecretToken).map(Secret::expose);
        if verify_secret_token(configured, header("x-telegram-bot-api-secret-token")) {
            Ok(())
        } else {
            Err("X-Telegram-Bot-Api-Secret-Token does not match")
        }
    }

    fn signing_secret(&self) -> SecretName {
        SecretName::SecretToken
    }

    fn parse(&self, body: &[u8], _kind: ChannelKind) -> Result<Delivery, ParseError> {
        let update = parse(body)?;
        Ok(Delivery {
            events: update
                .event
                .into_iter()
                .map(|inbound| Routed {
                    kind: ChannelKind::Telegram,
                    account_id: None,
                    inbound,
                })
                .collect(),
            statuses: Vec::new(),
            dropped: update.dropped.into_iter().collect(),
            unread: update.unread.into_iter().collect(),
        })
    }
}

/// Where a reply in a Telegram chat goes: the chat, as a reply to the message answered.
fn reply_target(
    channel: &ChannelSetup<'_>,
    reply: &ReplyContext,
) -> Result<OutboundTarget, String> {
    let split = reply.answered.as_deref().and_then(split_external_id);
    let chat_id = match split {
        Some((chat, _)) => chat.to_string(),
        None => reply.recipient()?,
    };
    Ok(OutboundTarget::Telegram {
        api_base: channel.settings.api_base(crate::outbound::TELEGRAM_API),
        bot_token: channel.credentials.need(SecretName::BotToken)?,
        chat_id,
        reply_to_message_id: split.map(|(_, message)| message),
    })
}

/// Compares `X-Telegram-Bot-Api-Secret-Token` with the `secret_token` given to `setWebhook`,
/// constant time. No configured token, or no header, never verifies.
pub fn verify_secret_token(configured: Option<&str>, header: Option<&str>) -> bool {
    match (configured, header) {
        (Some(configured), Some(header)) if !configured.is_empty() => {
            constant_time_eq(configured.as_bytes(), header.as_bytes())
        }
        _ => false,
    }
}

/// One webhook POST is one update. Exactly one of `event`, `dropped` and `unread` is set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelegramUpdate {
    /// Telegram's sequence number for the update; redeliveries repeat it.
    pub update_id: i64,
    /// The customer's message, its edit, or a notice for the chat's timeline.
    pub event: Option<Inbound>,
    /// An update Balie does not take, and why.
    pub dropped: Option<Dropped>,
    /// A message Balie could not read, kept in the journal.
    pub unread: Option<Unreadable>,
}

#[derive(Deserialize)]
struct Update {
    update_id: i64,
    #[serde(flatten)]
    rest: serde_json::Map<String, serde_json::Value>,
}

/// Update keys that carry a chat message, and what kind of event each is.
const MESSAGE_UPDATES: [(&str, InboundKind); 4] = [
    ("message", InboundKind::Message),
    ("edited_message", InboundKind::Edited),
    ("business_message", InboundKind::Message),
    ("edited_business_message", InboundKind::Edited),
];

/// Service-message keys, and the mark their timeline notice starts with.
const SERVICE: [(&str, &str); 25] = [
    ("pinned_message", "📌"),
    ("dice", ""),
    ("new_chat_members", "➕"),
    ("left_chat_member", "➖"),
    ("new_chat_title", "✏️"),
    ("new_chat_photo", "🖼️"),
    ("delete_chat_photo", "🖼️"),
    ("group_chat_created", "ℹ️"),
    ("supergroup_chat_created", "ℹ️"),
    ("migrate_to_chat_id", "ℹ️"),
    ("migrate_from_chat_id", "ℹ️"),
    ("message_auto_delete_timer_changed", "ℹ️"),
    ("forum_topic_created", "ℹ️"),
    ("forum_topic_edited", "ℹ️"),
    ("forum_topic_closed", "ℹ️"),
    ("forum_topic_reopened", "ℹ️"),
    ("general_forum_topic_hidden", "ℹ️"),
    ("general_forum_topic_unhidden", "ℹ️"),
    ("video_chat_scheduled", "ℹ️"),
    ("video_chat_started", "ℹ️"),
    ("video_chat_ended", "ℹ️"),
    ("video_chat_participants_invited", "ℹ️"),
    ("boost_added", "ℹ️"),
    ("chat_background_set", "ℹ️"),
    ("write_access_allowed", "ℹ️"),
];

#[derive(Deserialize)]
struct Message {
    message_id: i64,
    #[serde(default)]
    from: Option<User>,
    chat: Chat,
    date: Lenient,
    #[serde(default)]
    edit_date: Option<Lenient>,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    caption: Option<String>,
    #[serde(default)]
    reply_to_message: Option<RepliedMessage>,
    #[serde(default)]
    photo: Vec<File>,
    #[serde(default)]
    document: Option<File>,
    #[serde(default)]
    video: Option<File>,
    #[serde(default)]
    voice: Option<File>,
    #[serde(default)]
    audio: Option<File>,
    #[serde(default)]
    sticker: Option<Sticker>,
    #[serde(default)]
    dice: Option<Dice>,
    #[serde(default)]
    new_chat_members: Vec<User>,
    #[serde(default)]
    left_chat_member: Option<User>,
    #[serde(default)]
    new_chat_title: Option<String>,
    #[serde(default)]
    pinned_message: Option<serde_json::Value>,
    /// Service keys Balie names but does not read (forum topics, video chats, boosts, ...).
    #[serde(flatten)]
    rest: serde_json::Map<String, serde_json::Value>,
}

#[derive(Deserialize)]
struct Dice {
    #[serde(default)]
    emoji: String,
    #[serde(default)]
    value: i64,
}

#[derive(Deserialize)]
struct User {
    id: i64,
    #[serde(default)]
    first_name: Option<String>,
    #[serde(default)]
    last_name: Option<String>,
    #[serde(default)]
    username: Option<String>,
}

#[derive(Deserialize)]
struct Chat {
    id: i64,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    username: Option<String>,
}

#[derive(Deserialize)]
struct RepliedMessage {
    message_id: i64,
}

#[derive(Deserialize)]
struct File {
    file_id: String,
    #[serde(default)]
    mime_type: Option<String>,
}

#[derive(Deserialize)]
struct Sticker {
    file_id: String,
    #[serde(default)]
    emoji: Option<String>,
}

/// The external id Balie uses for a Telegram message: `<chat_id>:<message_id>` (message ids
/// are only unique within a chat). Outbound sends report the same form.
pub fn external_id(chat_id: i64, message_id: i64) -> String {
    format!("{chat_id}:{message_id}")
}

/// The chat and message ids in an external id made by [`external_id`], e.g. to fill
/// `reply_to_message_id` when answering an inbound message.
pub fn split_external_id(external_id: &str) -> Option<(i64, i64)> {
    let (chat, message) = external_id.rsplit_once(':')?;
    Some((chat.parse().ok()?, message.parse().ok()?))
}

/// Parses one update (after [`verify_secret_token`]). `message` becomes a `Message` event,
/// `edited_message` an `Edited` event for the same external id with the `edit_date` as its
/// revision, a service message a `Notice`. A message that cannot be read is kept unread;
/// other update types are dropped with their reason. Only a body that is not an update at
/// all is an error.
pub fn parse(raw_body: &[u8]) -> Result<TelegramUpdate, ParseError> {
    let update: Update = decode_body(PLATFORM, raw_body)?;
    let mut out = TelegramUpdate {
        update_id: update.update_id,
        event: None,
        dropped: None,
        unread: None,
    };
    let found = MESSAGE_UPDATES
        .iter()
        .find_map(|(key, kind)| update.rest.get(*key).map(|raw| (raw, *kind, *key)));
    let Some((raw, kind, at)) = found else {
        let what = update.rest.keys().next().map_or("empty", String::as_str);
        let reason = match what {
            "message_reaction" | "message_reaction_count" => DropReason::Reaction,
            "channel_post" | "edited_channel_post" => DropReason::OwnActivity,
            _ => DropReason::NotConversation,
        };
        out.dropped = Some(Dropped::new(reason, format!("telegram update `{what}`")));
        return Ok(out);
    };
    match crate::json::decode_value::<Message>(PLATFORM, at, raw) {
        Ok(message) => out.event = Some(chat_message(message, kind)),
        Err(e) => match outcome::unreadable(raw, e.to_string()) {
            Ok(inbound) => {
                out.unread = Some(Unreadable {
                    why: e.to_string(),
                    inbound,
                });
            }
            Err(dropped) => out.dropped = Some(dropped),
        },
    }
    Ok(out)
}

/// A service message's notice text, or `None` for a message someone wrote.
fn notice(message: &Message) -> Option<String> {
    let (key, mark) = SERVICE
        .iter()
        .find(|(key, _)| message.rest.contains_key(*key) || service_field_set(message, key))?;
    let name = |u: &User| {
        [u.first_name.as_deref(), u.last_name.as_deref()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" ")
    };
    let detail = match *key {
        "pinned_message" => message.pinned_message.as_ref().map_or(String::new(), |m| {
            ["text", "caption"]
                .iter()
                .find_map(|k| m.get(k).and_then(serde_json::Value::as_str))
                .unwrap_or_default()
                .to_owned()
        }),
        "dice" => message
            .dice
            .as_ref()
            .map_or(String::new(), |d| format!("{} {}", d.emoji, d.value)),
        "new_chat_members" => message
            .new_chat_members
            .iter()
            .map(name)
            .collect::<Vec<_>>()
            .join(", "),
        "left_chat_member" => message
            .left_chat_member
            .as_ref()
            .map(name)
            .unwrap_or_default(),
        "new_chat_title" => message.new_chat_title.clone().unwrap_or_default(),
        other => other.replace('_', " "),
    };
    Some(format!("{mark} {detail}").trim().to_owned())
}

/// Whether a service key Balie reads into a typed field is set.
fn service_field_set(message: &Message, key: &str) -> bool {
    match key {
        "pinned_message" => message.pinned_message.is_some(),
        "dice" => message.dice.is_some(),
        "new_chat_members" => !message.new_chat_members.is_empty(),
        "left_chat_member" => message.left_chat_member.is_some(),
        "new_chat_title" => message.new_chat_title.is_some(),
        _ => false,
    }
}

fn chat_message(message: Message, kind: InboundKind) -> Inbound {
    let notice = notice(&message);
    let chat_id = message.chat.id;
    let author = match message.from {
        Some(user) => {
            let name = [user.first_name, user.last_name]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(" ");
            Author {
                platform_id: user.id.to_string(),
                handle: user.username,
                name: Some(name).filter(|n| !n.is_empty()),
            }
        }
        // Anonymous group admins and channel posts have no `from`; the chat speaks.
        None => Author {
            platform_id: chat_id.to_string(),
            handle: message.chat.username.clone(),
            name: None,
        },
    };
    let mut attachments = Vec::new();
    let mut attach = |kind: &str, file: File| {
        attachments.push(Attachment {
            kind: kind.to_owned(),
            url: None,
            media_id: Some(file.file_id),
            mime_type: file.mime_type,
        });
    };
    // Telegram lists photo sizes smallest first; the last is the original.
    if let Some(photo) = message.photo.into_iter().last() {
        attach("image", photo);
    }
    for (kind, file) in [
        ("document", message.document),
        ("video", message.video),
        ("audio", message.voice),
        ("audio", message.audio),
    ] {
        if let Some(file) = file {
            attach(kind, file);
        }
    }
    let mut text = message.text.or(message.caption).unwrap_or_default();
    if let Some(sticker) = message.sticker {
        if text.is_empty() {
            text = sticker.emoji.clone().unwrap_or_default();
        }
        attach(
            "sticker",
            File {
                file_id: sticker.file_id,
                mime_type: None,
            },
        );
    }
    let created_at = match (kind, message.edit_date) {
        (InboundKind::Edited, Some(edited)) => edited.0,
        _ => message.date.0,
    };
    let private = message.chat.kind == "private";
    let url = match (&message.chat.username, private) {
        (Some(name), false) => Some(format!("https://t.me/{name}/{}", message.message_id)),
        _ => None,
    };
    let (kind, text) = match notice {
        Some(notice) => (InboundKind::Notice, notice),
        None => (kind, text),
    };
    let mut inbound = new_inbound(
        external_id(chat_id, message.message_id),
        kind,
        author,
        text,
        seconds_to_millis(created_at),
    );
    inbound.in_reply_to = message
        .reply_to_message
        .map(|r| external_id(chat_id, r.message_id));
    inbound.thread_key = Some(chat_id.to_string());
    inbound.place = Some(Place {
        kind: if private {
            PlaceKind::Direct
        } else {
            PlaceKind::Mention
        },
        url,
    });
    inbound.attachments = attachments;
    if kind == InboundKind::Edited {
        inbound.revision = message.edit_date.map(|d| d.0.to_string());
    }
    inbound
}

// ---- Sending ---------------------------------------------------------------------------------

/// The Bot API `sendMessage` call for a reply in a chat.
pub(crate) fn request<'a>(
    target: &'a OutboundTarget,
    reply: &OutboundReply,
) -> Result<Request<'a>, String> {
    Ok(match target {
        OutboundTarget::Telegram {
            api_base,
            bot_token,
            chat_id,
            reply_to_message_id,
        } => {
            // Numeric chat ids go as numbers; `@channelname` as a string.
            let chat = chat_id
                .parse::<i64>()
                .map_or_else(|_| json!(chat_id), |id| json!(id));
            let mut body = json!({ "chat_id": chat, "text": reply.text });
            if let Some(message_id) = reply_to_message_id {
                body["reply_parameters"] =
                    json!({ "message_id": message_id, "allow_sending_without_reply": true });
            }
            Request {
                platform: "Telegram",
                classify: telegram_outcome,
                url: format!(
                    "{}/bot{}/sendMessage",
                    api_base.trim_end_matches('/'),
                    bot_token.expose()
                ),
                bearer: None,
                secret: bot_token,
                body,
                success: SuccessId::MessageId,
            }
        }
        other => return Err(format!("{:?} is not a Telegram target", other.kind())),
    })
}

fn telegram_outcome(
    status: reqwest::StatusCode,
    headers: &HeaderMap,
    json: &Value,
    _success: SuccessId,
    _now: Millis,
) -> SendOutcome {
    if status.is_success() && json.get("ok") == Some(&Value::Bool(true)) {
        let chat = json.pointer("/result/chat/id").and_then(Value::as_i64);
        let message = json.pointer("/result/message_id").and_then(Value::as_i64);
        return match (chat, message) {
            (Some(chat), Some(message)) => SendOutcome::Sent {
                platform_id: Some(external_id(chat, message)),
            },
            _ => SendOutcome::Unknown {
                reason: "Telegram accepted the message but its answer has no message id".to_owned(),
            },
        };
    }
    let code = json
        .get("error_code")
        .and_then(Value::as_i64)
        .unwrap_or(i64::from(status.as_u16()));
    let description = json
        .get("description")
        .and_then(Value::as_str)
        .unwrap_or("no description");
    let described = format!("Telegram error {code}: {description}");
    let wait = json
        .pointer("/parameters/retry_after")
        .and_then(Value::as_u64)
        .map(Duration::from_secs);
    if code == 429 || wait.is_some() {
        return SendOutcome::Retry {
            after: wait
                .or_else(|| retry_after(headers))
                .unwrap_or(THROTTLE_DELAY),
            reason: described,
        };
    }
    if code >= 500 || status.is_server_error() {
        return SendOutcome::Retry {
            after: TRANSIENT_DELAY,
            reason: described,
        };
    }
    if status.is_success() {
        // 2xx without `ok: true`: not Telegram's documented shape; it may have been sent.
        return SendOutcome::Unknown { reason: described };
    }
    SendOutcome::Permanent { reason: described }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_token_must_be_configured_present_and_equal() {
        assert!(verify_secret_token(Some("s3cr3t"), Some("s3cr3t")));
        assert!(!verify_secret_token(Some("s3cr3t"), Some("s3cr3u")));
        assert!(!verify_secret_token(Some("s3cr3t"), None));
        assert!(!verify_secret_token(Some(""), Some("")));
        assert!(!verify_secret_token(None, Some("s3cr3t")));
    }

    #[test]
    fn external_ids_split_back_into_chat_and_message() {
        assert_eq!(
            split_external_id(&external_id(-100_123, 7)),
            Some((-100_123, 7))
        );
        assert_eq!(split_external_id("42"), None);
        assert_eq!(split_external_id("a:b"), None);
    }
}
