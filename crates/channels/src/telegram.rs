//! Telegram Bot API webhooks: the `X-Telegram-Bot-Api-Secret-Token` check and parsing of
//! `message` and `edited_message` updates.

use balie_core::inbound::Attachment;
use balie_core::{Author, Inbound, InboundKind, Place, PlaceKind};
use serde::Deserialize;

use crate::json::{Lenient, decode_body, seconds_to_millis};
use crate::signature::constant_time_eq;
use crate::{ParseError, new_inbound};

const PLATFORM: &str = "telegram";

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

/// One webhook POST is one update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelegramUpdate {
    /// Telegram's sequence number for the update; redeliveries repeat it.
    pub update_id: i64,
    /// The customer's message, or `None` for update types Balie does not use.
    pub event: Option<Inbound>,
}

#[derive(Deserialize)]
struct Update {
    update_id: i64,
    #[serde(default)]
    message: Option<serde_json::Value>,
    #[serde(default)]
    edited_message: Option<serde_json::Value>,
}

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
/// revision. Other update types give `event: None`.
pub fn parse(raw_body: &[u8]) -> Result<TelegramUpdate, ParseError> {
    let update: Update = decode_body(PLATFORM, raw_body)?;
    let (raw, kind, at) = match (update.message, update.edited_message) {
        (Some(raw), _) => (raw, InboundKind::Message, "message"),
        (None, Some(raw)) => (raw, InboundKind::Edited, "edited_message"),
        (None, None) => {
            return Ok(TelegramUpdate {
                update_id: update.update_id,
                event: None,
            });
        }
    };
    let message: Message = crate::json::decode_value(PLATFORM, at, &raw)?;
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
    Ok(TelegramUpdate {
        update_id: update.update_id,
        event: Some(inbound),
    })
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
