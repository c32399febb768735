//! What became of every event in a delivery that is not a normal message: set aside with a
//! reason ([`Dropped`]), or kept unread in the journal ([`unread`]) because Balie cannot read it
//! yet but it may hold a customer's words.
//!
//! The rule every connector keeps: each event in a delivery comes out of `parse` exactly once,
//! as an [`Inbound`] to journal (possibly [`InboundKind::Unread`]), a delivery status, or a
//! [`Dropped`]. The server counts every drop in `balie_webhook_events_dropped_total{platform,
//! reason}` and logs what and why, so nothing answered 2xx disappears without a trace.

use balie_core::{Author, Inbound, InboundKind};
use serde_json::Value;

use crate::new_inbound;

/// Why an event was not journalled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DropReason {
    /// A delivery or read receipt, or a typing indicator: nobody said anything.
    Receipt,
    /// A reaction, like or retweet: no words to answer.
    Reaction,
    /// The brand's own activity (its posts, its own DMs, channel posts).
    OwnActivity,
    /// An event that is not conversation (a follow, a button tap's callback, a template
    /// status, a member update, an unsubscribed field) and carries no customer's words.
    NotConversation,
    /// A delivery status for a message Balie did not send or does not know.
    UnknownMessage,
    /// Not what the platform documents, and carrying no customer's words.
    Malformed,
}

impl DropReason {
    pub const ALL: [DropReason; 6] = [
        Self::Receipt,
        Self::Reaction,
        Self::OwnActivity,
        Self::NotConversation,
        Self::UnknownMessage,
        Self::Malformed,
    ];

    /// The `reason` label of the dropped-events metric.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Receipt => "receipt",
            Self::Reaction => "reaction",
            Self::OwnActivity => "own_activity",
            Self::NotConversation => "not_conversation",
            Self::UnknownMessage => "unknown_message",
            Self::Malformed => "malformed",
        }
    }

    /// Whether drops of this kind are everyday traffic: logged at debug level, so that
    /// receipts and reactions do not fill the log.
    pub fn routine(self) -> bool {
        matches!(self, Self::Receipt | Self::Reaction | Self::OwnActivity)
    }
}

/// One event set aside, and what it was (a JSON path and a few words, never a secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dropped {
    pub reason: DropReason,
    pub what: String,
}

impl Dropped {
    pub fn new(reason: DropReason, what: impl Into<String>) -> Self {
        Self {
            reason,
            what: what.into(),
        }
    }
}

/// An event kept unread ([`InboundKind::Unread`]) and why it could not be read: journal the
/// inbound, log the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    pub why: String,
    pub inbound: Inbound,
}

/// Keys under which platforms put what a person wrote.
const WORD_KEYS: [&str; 7] = [
    "text",
    "body",
    "message",
    "caption",
    "title",
    "full_text",
    "description",
];

/// Whether `value` holds something a person may have written: a non-empty string under one of
/// the keys platforms use for words, at any depth.
pub fn carries_words(value: &Value) -> bool {
    match value {
        Value::Object(map) => map.iter().any(|(key, v)| {
            (WORD_KEYS.contains(&key.as_str()) && v.as_str().is_some_and(|s| !s.trim().is_empty()))
                || carries_words(v)
        }),
        Value::Array(items) => items.iter().any(carries_words),
        _ => false,
    }
}

/// An event Balie cannot read, kept in the journal as it arrived (`text` is the event's JSON)
/// so that a later version can read it. Keyed by a hash of that JSON, so a redelivery is a
/// duplicate.
pub fn unread(raw: &Value) -> Inbound {
    let text = raw.to_string();
    // FNV-1a: stable across runs and machines, unlike std's hasher.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    new_inbound(
        format!("{h:016x}"),
        InboundKind::Unread,
        Author {
            platform_id: String::new(),
            handle: None,
            name: None,
        },
        text,
        0,
    )
}

/// An event that could not be read: kept unread when it may carry words, dropped as
/// malformed otherwise.
pub fn unreadable(raw: &Value, what: String) -> Result<Inbound, Dropped> {
    if carries_words(raw) {
        Ok(unread(raw))
    } else {
        Err(Dropped::new(DropReason::Malformed, what))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn words_are_found_at_any_depth_under_word_keys() {
        assert!(carries_words(&json!({"message": {"text": "Hallo"}})));
        assert!(carries_words(&json!([{"caption": "foto"}])));
        assert!(!carries_words(&json!({"delivery": {"mids": ["m_1"]}})));
        assert!(!carries_words(&json!({"text": "  "})));
        assert!(!carries_words(&json!({"id": "12345"})));
    }

    #[test]
    fn an_unread_event_is_keyed_by_its_content() {
        let a = unread(&json!({"text": "Hallo"}));
        assert_eq!(a.kind, InboundKind::Unread);
        assert_eq!(a.text, r#"{"text":"Hallo"}"#);
        assert_eq!(a.external_id, unread(&json!({"text": "Hallo"})).external_id);
        assert_ne!(a.external_id, unread(&json!({"text": "Hoi"})).external_id);
    }
}
