//! Domain types: brands, channels, customers, conversations, messages, events, users.

use serde::{Deserialize, Serialize};

/// A moment in time as epoch milliseconds (UTC). Plain and cheap; formatting happens at the edge.
pub type Millis = i64;

macro_rules! id_type {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {$(
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub i64);
        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }
    )*};
}

id_type!(
    /// A company served by Balie; an agency serves several.
    BrandId,
    ChannelId,
    CustomerId,
    IdentityId,
    ConversationId,
    MessageId,
    EventId,
    UserId,
);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Brand {
    pub id: BrandId,
    /// Short, unique, chosen once (`acme`): how the CLI and the brand switcher name it.
    pub slug: BrandSlug,
    pub name: String,
}

/// A brand's slug: 1 to 40 characters of lowercase ASCII letters, digits and `-`, starting
/// with a letter or digit.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct BrandSlug(String);

impl BrandSlug {
    pub fn parse(s: &str) -> Option<Self> {
        let ok = (1..=40).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !s.starts_with('-');
        ok.then(|| Self(s.to_string()))
    }

    /// A slug made from a brand's name (`Balie Demo` → `balie-demo`), for brands that had none.
    pub fn from_name(name: &str) -> Self {
        let mut slug = String::new();
        for c in name.trim().chars().flat_map(char::to_lowercase) {
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                slug.push(c);
            } else if !slug.is_empty() && !slug.ends_with('-') {
                slug.push('-');
            }
        }
        let slug = slug.trim_end_matches('-');
        let slug: String = slug.chars().take(40).collect();
        Self(if slug.is_empty() {
            "brand".into()
        } else {
            slug.trim_end_matches('-').into()
        })
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for BrandSlug {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// The kind of platform a channel connects to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelKind {
    /// The generic HTTP API (`POST /api/v1/messages`), replies to an outbound webhook.
    Api,
    Messenger,
    FacebookPage,
    Instagram,
    Whatsapp,
    X,
    Telegram,
    Mastodon,
    Email,
    Feed,
}

impl ChannelKind {
    pub const ALL: [ChannelKind; 10] = [
        Self::Api,
        Self::Messenger,
        Self::FacebookPage,
        Self::Instagram,
        Self::Whatsapp,
        Self::X,
        Self::Telegram,
        Self::Mastodon,
        Self::Email,
        Self::Feed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Api => "api",
            Self::Messenger => "messenger",
            Self::FacebookPage => "facebook_page",
            Self::Instagram => "instagram",
            Self::Whatsapp => "whatsapp",
            Self::X => "x",
            Self::Telegram => "telegram",
            Self::Mastodon => "mastodon",
            Self::Email => "email",
            Self::Feed => "feed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Channel {
    pub id: ChannelId,
    pub brand_id: BrandId,
    pub kind: ChannelKind,
    /// Unique, human-chosen name (`api`, `facebook-main`, ...).
    pub name: String,
    /// Kind-specific, non-secret settings as JSON text.
    pub settings: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Customer {
    pub id: CustomerId,
    pub display_name: String,
    pub identities: Vec<Identity>,
    pub notes: String,
}

/// One way to reach a customer: a platform account, an e-mail address or a phone number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub id: IdentityId,
    pub customer_id: CustomerId,
    /// The platform kind (`api`, `x`, `email`, `phone`, ...).
    pub platform: String,
    /// The platform's stable id for the person.
    pub external_id: String,
    pub handle: Option<String>,
    pub name: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConversationStatus {
    Open,
    Pending,
    Snoozed,
    Closed,
}

impl ConversationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Pending => "pending",
            Self::Snoozed => "snoozed",
            Self::Closed => "closed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Open, Self::Pending, Self::Snoozed, Self::Closed]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conversation {
    pub id: ConversationId,
    pub brand_id: BrandId,
    pub channel_id: ChannelId,
    pub customer_id: CustomerId,
    pub status: ConversationStatus,
    pub queue: String,
    pub assignee: Option<UserId>,
    pub priority: crate::sla::Priority,
    /// When the customer's oldest unanswered message arrived; `None` when nothing waits.
    pub waiting_since: Option<Millis>,
    /// The next reply is due by then (SLA first-response or next-response deadline).
    pub reply_due: Option<Millis>,
    pub created_at: Millis,
    pub updated_at: Millis,
    /// The platform thread this conversation follows, if any.
    pub thread_key: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    In,
    Out,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::In => "in",
            Self::Out => "out",
        }
    }
}

/// Delivery state of an outbound message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Inbound messages are simply received.
    Received,
    /// In the outbox, not yet accepted by the platform.
    Queued,
    /// The platform accepted it.
    Sent,
    /// The platform refused it for good; the reason is on the message.
    Failed,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Received => "received",
            Self::Queued => "queued",
            Self::Sent => "sent",
            Self::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Received, Self::Queued, Self::Sent, Self::Failed]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub id: MessageId,
    pub conversation_id: ConversationId,
    pub channel_id: ChannelId,
    pub direction: Direction,
    /// The platform's id (inbound) or the id the platform gave our reply (outbound, once sent).
    pub external_id: Option<String>,
    pub author_identity: Option<IdentityId>,
    pub author_user: Option<UserId>,
    pub text: String,
    pub in_reply_to: Option<MessageId>,
    pub created_at: Millis,
    pub received_at: Millis,
    pub delivery: DeliveryState,
    pub delivery_error: Option<String>,
    /// Marked when the customer removed it on the platform; never deleted from Balie.
    pub removed: bool,
    /// Text analysis as JSON (language, sentiment, intent, urgency, ...), if analysed.
    pub analysis: Option<String>,
    /// Where on the platform it was written, with a link when the platform gives one.
    pub place: Option<crate::inbound::Place>,
}

/// Something that happened on a conversation's timeline. Events have one global, increasing
/// id: the live stream's `Last-Event-ID`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub id: EventId,
    pub conversation_id: ConversationId,
    pub kind: EventKind,
    pub message_id: Option<MessageId>,
    pub user_id: Option<UserId>,
    pub detail: String,
    pub at: Millis,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    MessageReceived,
    ReplyQueued,
    ReplySent,
    ReplyFailed,
    MessageEdited,
    MessageRemoved,
    StatusChanged,
    Assigned,
    Reopened,
    /// A platform notice in the conversation (Telegram: a pinned message, a dice roll); the
    /// detail says what happened.
    Notice,
}

impl EventKind {
    pub const ALL: [EventKind; 10] = [
        Self::MessageReceived,
        Self::ReplyQueued,
        Self::ReplySent,
        Self::ReplyFailed,
        Self::MessageEdited,
        Self::MessageRemoved,
        Self::StatusChanged,
        Self::Assigned,
        Self::Reopened,
        Self::Notice,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::MessageReceived => "message_received",
            Self::ReplyQueued => "reply_queued",
            Self::ReplySent => "reply_sent",
            Self::ReplyFailed => "reply_failed",
            Self::MessageEdited => "message_edited",
            Self::MessageRemoved => "message_removed",
            Self::StatusChanged => "status_changed",
            Self::Assigned => "assigned",
            Self::Reopened => "reopened",
            Self::Notice => "notice",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Agent,
    Supervisor,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Agent => "agent",
            Self::Supervisor => "supervisor",
            Self::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Agent, Self::Supervisor, Self::Admin]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub id: UserId,
    pub email: String,
    pub name: String,
    /// The installation's owner: may point a channel at another API host, and is an admin
    /// of every brand.
    pub owner: bool,
}

/// A user's place in one brand: what they may do there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Membership {
    pub brand: Brand,
    pub role: Role,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_parse() {
        for k in ChannelKind::ALL {
            assert_eq!(ChannelKind::parse(k.as_str()), Some(k));
        }
        for k in EventKind::ALL {
            assert_eq!(EventKind::parse(k.as_str()), Some(k));
        }
        assert_eq!(Role::parse("supervisor"), Some(Role::Supervisor));
        assert_eq!(Role::parse("root"), None);
        assert_eq!(
            BrandSlug::parse("acme-2").map(|s| s.to_string()),
            Some("acme-2".into())
        );
        assert_eq!(BrandSlug::parse("Acme"), None);
        assert_eq!(BrandSlug::parse("-acme"), None);
        assert_eq!(BrandSlug::parse(""), None);
        assert_eq!(BrandSlug::from_name("Balie Demo!").as_str(), "balie-demo");
        assert_eq!(BrandSlug::from_name("  Ünïcode  ").as_str(), "n-code");
        assert_eq!(BrandSlug::from_name("???").as_str(), "brand");
        assert_eq!(
            ConversationStatus::parse("closed"),
            Some(ConversationStatus::Closed)
        );
        assert_eq!(DeliveryState::parse("sent"), Some(DeliveryState::Sent));
    }
}
