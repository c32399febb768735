//! The one home of column lists and row mapping: which columns a conversation, message,
//! channel or user is read with, and how such a row becomes a domain type, for both backends.

use balie_core::{
    Brand, BrandId, BrandSlug, Channel, ChannelId, ChannelKind, Conversation, ConversationId,
    ConversationStatus, CustomerId, DeliveryState, Direction, EscalationSignal, IdentityId, Intent,
    Language, Membership, Message, MessageAnalysis, MessageId, Place, PlaceKind, Priority, Role,
    Sentiment, User, UserId,
};
use sqlx::Row;

use crate::common::corrupt;
use crate::{InboxRow, Result, TimelineMessage};

/// The columns of an [`InboxRow`], read `FROM` [`conv_from!`].
macro_rules! conv_cols {
    () => {
        "c.id, c.brand_id, c.channel_id, c.customer_id, c.status, c.queue, c.assignee, c.priority, \
         c.waiting_since, c.reply_due, c.created_at, c.updated_at, c.thread_key, c.first_line, \
         c.last_message_at, cu.display_name AS customer_name, ch.name AS channel_name, \
         (SELECT la.analysis FROM messages la WHERE la.conversation_id = c.id \
            AND la.direction = 'in' ORDER BY la.id DESC LIMIT 1) AS last_analysis, \
         (SELECT au.name FROM users au WHERE au.id = c.assignee) AS assignee_name, \
         ch.kind AS channel_kind"
    };
}

macro_rules! conv_from {
    () => {
        " FROM conversations c JOIN customers cu ON cu.id = c.customer_id \
          JOIN channels ch ON ch.id = c.channel_id "
    };
}

/// The columns of a [`TimelineMessage`], read `FROM` [`msg_from!`].
macro_rules! msg_cols {
    () => {
        "m.id, m.conversation_id, m.channel_id, m.direction, m.external_id, m.author_identity, \
         m.author_user, m.text, m.in_reply_to, m.created_at, m.received_at, m.delivery, \
         m.delivery_error, m.removed, m.analysis, m.place_kind, m.place_url, m.language, \
         m.sentiment, m.intent, m.escalation, m.escalation_signals, \
         COALESCE(u.name, i.name, i.handle, i.external_id, '') AS author_name, \
         ch.name AS channel_name"
    };
}

macro_rules! msg_from {
    () => {
        " FROM messages m JOIN channels ch ON ch.id = m.channel_id \
          LEFT JOIN identities i ON i.id = m.author_identity \
          LEFT JOIN users u ON u.id = m.author_user "
    };
}

/// The columns of a [`Channel`].
macro_rules! channel_cols {
    () => {
        "id, brand_id, kind, name, settings"
    };
}

pub(crate) use {channel_cols, conv_cols, conv_from, msg_cols, msg_from};

/// Reading one column of a result row, the same way on both backends.
pub(crate) trait Columns {
    fn int(&self, column: &str) -> Result<i64>;
    fn opt_int(&self, column: &str) -> Result<Option<i64>>;
    fn text(&self, column: &str) -> Result<String>;
    fn opt_text(&self, column: &str) -> Result<Option<String>>;
    /// A yes/no column (SQLite: an integer, PostgreSQL: a boolean).
    fn flag(&self, column: &str) -> Result<bool>;
    fn opt_flag(&self, column: &str) -> Result<Option<bool>>;
}

/// Implements [`Columns`] for a backend's row type; `flag` reads a yes/no column as `$flag`.
macro_rules! impl_columns {
    ($row:ty, $flag:ty) => {
        impl Columns for $row {
            fn int(&self, column: &str) -> Result<i64> {
                Ok(self.try_get(column)?)
            }
            fn opt_int(&self, column: &str) -> Result<Option<i64>> {
                Ok(self.try_get(column)?)
            }
            fn text(&self, column: &str) -> Result<String> {
                Ok(self.try_get(column)?)
            }
            fn opt_text(&self, column: &str) -> Result<Option<String>> {
                Ok(self.try_get(column)?)
            }
            fn flag(&self, column: &str) -> Result<bool> {
                Ok(self.try_get::<$flag, _>(column)? != <$flag>::default())
            }
            fn opt_flag(&self, column: &str) -> Result<Option<bool>> {
                let value: Option<$flag> = self.try_get(column)?;
                Ok(value.map(|v| v != <$flag>::default()))
            }
        }
    };
}

// SQLite keeps yes/no as an integer, PostgreSQL as a boolean.
impl_columns!(sqlx::sqlite::SqliteRow, i64);
impl_columns!(sqlx::postgres::PgRow, bool);

fn channel_kind(r: &impl Columns, column: &str) -> Result<ChannelKind> {
    let kind = r.text(column)?;
    ChannelKind::parse(&kind).ok_or_else(|| corrupt("channel kind", &kind))
}

/// A row of [`channel_cols!`].
pub(crate) fn channel(r: &impl Columns) -> Result<Channel> {
    Ok(Channel {
        id: ChannelId(r.int("id")?),
        brand_id: BrandId(r.int("brand_id")?),
        kind: channel_kind(r, "kind")?,
        name: r.text("name")?,
        settings: r.text("settings")?,
    })
}

/// The channel of a claimed outbox row, in its `channel_*` columns.
pub(crate) fn claimed_channel(r: &impl Columns) -> Result<Channel> {
    Ok(Channel {
        id: ChannelId(r.int("channel_id")?),
        brand_id: BrandId(r.int("channel_brand_id")?),
        kind: channel_kind(r, "channel_kind")?,
        name: r.text("channel_name")?,
        settings: r.text("channel_settings")?,
    })
}

/// A place kind column: empty when the platform did not say (or named a place this version
/// does not know).
pub(crate) fn place_kind(r: &impl Columns, column: &str) -> Result<Option<PlaceKind>> {
    Ok(r.opt_text(column)?.and_then(|k| PlaceKind::parse(&k)))
}

/// A row of [`conv_cols!`].
pub(crate) fn inbox_row(r: &impl Columns) -> Result<InboxRow> {
    let status = r.text("status")?;
    Ok(InboxRow {
        conversation: Conversation {
            id: ConversationId(r.int("id")?),
            brand_id: BrandId(r.int("brand_id")?),
            channel_id: ChannelId(r.int("channel_id")?),
            customer_id: CustomerId(r.int("customer_id")?),
            status: ConversationStatus::parse(&status)
                .ok_or_else(|| corrupt("conversation status", &status))?,
            queue: r.text("queue")?,
            assignee: r.opt_int("assignee")?.map(UserId),
            priority: Priority::from_rank(r.int("priority")?),
            waiting_since: r.opt_int("waiting_since")?,
            reply_due: r.opt_int("reply_due")?,
            created_at: r.int("created_at")?,
            updated_at: r.int("updated_at")?,
            thread_key: r.opt_text("thread_key")?,
        },
        customer_name: r.text("customer_name")?,
        channel_name: r.text("channel_name")?,
        channel_kind: channel_kind(r, "channel_kind")?,
        first_line: r.text("first_line")?,
        last_message_at: r.int("last_message_at")?,
        last: r
            .opt_text("last_analysis")?
            .as_deref()
            .and_then(analysis_from_json),
        last_analysis: r.opt_text("last_analysis")?,
        assignee_name: r.opt_text("assignee_name")?,
    })
}

/// A row of [`msg_cols!`].
pub(crate) fn timeline_message(r: &impl Columns) -> Result<TimelineMessage> {
    let direction = r.text("direction")?;
    let delivery = r.text("delivery")?;
    Ok(TimelineMessage {
        message: Message {
            id: MessageId(r.int("id")?),
            conversation_id: ConversationId(r.int("conversation_id")?),
            channel_id: ChannelId(r.int("channel_id")?),
            direction: match direction.as_str() {
                "in" => Direction::In,
                "out" => Direction::Out,
                other => return Err(corrupt("direction", other)),
            },
            external_id: r.opt_text("external_id")?,
            author_identity: r.opt_int("author_identity")?.map(IdentityId),
            author_user: r.opt_int("author_user")?.map(UserId),
            text: r.text("text")?,
            in_reply_to: r.opt_int("in_reply_to")?.map(MessageId),
            created_at: r.int("created_at")?,
            received_at: r.int("received_at")?,
            delivery: DeliveryState::parse(&delivery)
                .ok_or_else(|| corrupt("delivery state", &delivery))?,
            delivery_error: r.opt_text("delivery_error")?,
            removed: r.flag("removed")?,
            analysis: r.opt_text("analysis")?,
            place: place_kind(r, "place_kind")?.map(|kind| Place {
                kind,
                url: r.opt_text("place_url").ok().flatten(),
            }),
        },
        analysis: stored_analysis(r)?,
        author_name: r.text("author_name")?,
        channel_name: r.text("channel_name")?,
    })
}

/// The typed analysis in a message's columns (none before it was analysed).
fn stored_analysis(r: &impl Columns) -> Result<Option<MessageAnalysis>> {
    let (Some(sentiment), Some(intent)) = (r.opt_text("sentiment")?, r.opt_text("intent")?) else {
        return Ok(None);
    };
    let (Some(sentiment), Some(intent)) = (Sentiment::parse(&sentiment), Intent::parse(&intent))
    else {
        return Ok(None);
    };
    Ok(Some(MessageAnalysis {
        language: Language::from_code(r.opt_text("language")?.as_deref().unwrap_or("und")),
        sentiment,
        intent,
        escalation: r.opt_flag("escalation")?.unwrap_or(false),
        escalation_signals: MessageAnalysis::parse_signals(
            r.opt_text("escalation_signals")?.as_deref().unwrap_or(""),
        ),
    }))
}

/// The text analysis as the pipeline journals it (`balie analyze`'s JSON shape), typed;
/// `None` unless it names at least a sentiment and an intent. Unknown signals are left out.
pub(crate) fn analysis_from_json(json: &str) -> Option<MessageAnalysis> {
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    let text = |key: &str| v.get(key).and_then(|x| x.as_str());
    Some(MessageAnalysis {
        language: Language::from_code(text("lang").unwrap_or("und")),
        sentiment: Sentiment::parse(text("sentiment")?)?,
        intent: Intent::parse(text("intent")?)?,
        escalation: v
            .get("escalation")
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(false),
        escalation_signals: v
            .get("escalation_signals")
            .and_then(|s| s.as_array())
            .map(|s| {
                s.iter()
                    .filter_map(|x| x.as_str().and_then(EscalationSignal::parse))
                    .collect()
            })
            .unwrap_or_default(),
    })
}

/// A row of `id, email, name, role` from `users`.
pub(crate) fn user(r: &impl Columns) -> Result<User> {
    Ok(User {
        id: UserId(r.int("id")?),
        email: r.text("email")?,
        name: r.text("name")?,
        owner: r.flag("owner")?,
    })
}

/// A brand from `id, slug, name`.
pub(crate) fn brand(r: &impl Columns) -> Result<Brand> {
    let slug = r.text("slug")?;
    Ok(Brand {
        id: BrandId(r.int("id")?),
        slug: BrandSlug::parse(&slug).ok_or_else(|| corrupt("brand slug", &slug))?,
        name: r.text("name")?,
    })
}

/// A membership from a brand's `id, slug, name` and the member's `role`.
pub(crate) fn membership(r: &impl Columns) -> Result<Membership> {
    let role = r.text("role")?;
    Ok(Membership {
        brand: brand(r)?,
        role: Role::parse(&role).ok_or_else(|| corrupt("role", &role))?,
    })
}
