//! The normalised inbound event: what every connector turns a platform payload into.

use serde::{Deserialize, Serialize};

use crate::model::Millis;

/// One thing a customer did on a platform, normalised. Connectors produce it, the journal
/// stores it (keyed by channel and `external_id`), the pipeline turns it into a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inbound {
    /// The platform's own id for this event (`mid`, `wamid`, comment id, tweet id, ...).
    /// Unique within one channel; the dedupe key.
    pub external_id: String,
    pub kind: InboundKind,
    pub author: Author,
    pub text: String,
    /// The platform id of the message this one answers, if the platform says so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_reply_to: Option<String>,
    /// A platform-level thread (post id for comments, DM thread id); messages sharing it
    /// belong together even when `in_reply_to` is missing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread_key: Option<String>,
    /// Where on the platform it happened, with a link if the platform gives one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub place: Option<Place>,
    /// When the customer wrote it, as the platform says (epoch milliseconds).
    pub created_at: Millis,
    /// Which of the brand's accounts on the platform received it (Facebook page id, Instagram
    /// account id, WhatsApp `phone_number_id`, X `for_user_id`); the server routes on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    /// Media and files that came with the message; `text` holds the caption, if any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<Attachment>,
    /// For `Edited` events: which edit this is (`num_edit`, Telegram `edit_date`, ...), so
    /// successive edits of one message (same `external_id`) stay distinct. Dedupe inbound
    /// events on (channel, `external_id`, `kind`, `revision`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// For `Echo` events: the idempotency key Balie attached when it sent this message, if the
    /// platform echoes one back (Messenger `metadata`). Lets the outbox confirm a send whose
    /// response it never saw.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outbox_key: Option<String>,
}

/// A photo, video, voice note or file attached to an inbound message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    /// The platform's word for it (`image`, `video`, `audio`, `document`, `sticker`, `file`, ...).
    pub kind: String,
    /// A URL to fetch it from, when the platform gives one (often short-lived).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The platform's media id, when it must be fetched through the API (WhatsApp, Telegram).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mime_type: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InboundKind {
    /// A new message, comment or post by a customer.
    Message,
    /// The customer edited an earlier message (`external_id` names the edited message).
    Edited,
    /// The customer or platform removed the message; Balie marks it, never deletes it.
    Removed,
    /// A message the brand sent from another tool (an echo); recorded as outbound.
    Echo,
    /// Something that happened in a chat that is nobody's words to answer (a pinned message,
    /// a dice roll, a member joining): noted on the timeline of the conversation it belongs to
    /// (by `thread_key`), if there is one. It never opens a conversation, never sets a reply
    /// deadline and never changes a conversation's priority or status.
    Notice,
    /// An event Balie cannot read yet but that may carry a customer's words (an unknown
    /// message type, a malformed event, one for an account no channel is set up for). `text`
    /// holds the event exactly as the platform sent it, kept in the journal for a later version
    /// to read; it is shown nowhere.
    Unread,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Author {
    /// The platform's id for the author (PSID, IGSID, wa_id, user id, e-mail address).
    pub platform_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handle: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Place {
    pub kind: PlaceKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlaceKind {
    Direct,
    Comment,
    Post,
    Mention,
    Email,
    Api,
}

impl PlaceKind {
    pub const ALL: [PlaceKind; 6] = [
        Self::Direct,
        Self::Comment,
        Self::Post,
        Self::Mention,
        Self::Email,
        Self::Api,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Direct => "direct",
            Self::Comment => "comment",
            Self::Post => "post",
            Self::Mention => "mention",
            Self::Email => "email",
            Self::Api => "api",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}
