//! The composer's checks on a draft reply, one function for the reply box, the Send button and `balie lint-reply`: length as the platform counts it, and the text-only flags.

use balie_core::reply_length::LengthUnit;
use balie_core::{ChannelKind, ConversationId, Direction, PlaceKind, ReplyChannel};
use balie_store::ConversationView;
use balie_text::reply_check::{AgentLanguage, FlagKind, ReplyDraft, ReplyFlag, check_reply};
use serde::Serialize;

/// What the composer and `lint-reply` say about a draft (the stable `lint-reply` line).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DraftLint {
    pub length: usize,
    /// The most the platform takes; `null` where it sets no limit.
    pub max_length: Option<usize>,
    pub fits: bool,
    pub flags: Vec<ReplyFlag>,
}

/// Where a reply in a conversation goes and whom it answers, as far as the checks go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyContext {
    /// The platform's length rule; `None` on the generic API channel, whose receiver decides.
    pub rule: Option<ReplyChannel>,
    /// Whether everyone can read the reply (it answers a post, comment or mention).
    pub public: bool,
    /// The language of the customer's newest message in this conversation.
    pub customer_language: Option<String>,
}

impl ReplyContext {
    /// From the conversation: its channel and the customer's newest message in it. A reply
    /// answers where the customer last wrote; without a known place, posts on X and
    /// Mastodon are public and everything else is private.
    pub fn of(view: &ConversationView) -> Self {
        let kind = view.row.channel_kind;
        let id: ConversationId = view.row.conversation.id;
        let newest = view
            .timeline
            .iter()
            .rev()
            .map(|m| &m.message)
            .find(|m| m.conversation_id == id && m.direction == Direction::In);
        let public = match newest.and_then(|m| m.place.as_ref()).map(|p| p.kind) {
            Some(PlaceKind::Comment | PlaceKind::Post | PlaceKind::Mention) => true,
            Some(PlaceKind::Direct | PlaceKind::Email | PlaceKind::Api) => false,
            None => matches!(kind, ChannelKind::X | ChannelKind::Mastodon),
        };
        let customer_language = newest
            .and_then(|m| m.analysis.as_deref())
            .and_then(|a| serde_json::from_str::<serde_json::Value>(a).ok())
            .and_then(|a| a["lang"].as_str().map(str::to_owned))
            .filter(|lang| lang != "und");
        ReplyContext {
            rule: ReplyChannel::for_kind(kind, public),
            public,
            customer_language,
        }
    }

    /// The checks for a draft in this conversation.
    pub fn lint(&self, text: &str, lang: AgentLanguage) -> DraftLint {
        let draft = ReplyDraft {
            text,
            public: self.public,
            customer_language: self.customer_language.as_deref(),
            agent_language: lang,
        };
        match self.rule {
            Some(rule) => lint(rule, &draft),
            None => {
                let length = text.chars().count();
                DraftLint {
                    length,
                    max_length: None,
                    fits: !text.trim().is_empty(),
                    flags: text_flags(&draft),
                }
            }
        }
    }
}

fn text_flags(draft: &ReplyDraft<'_>) -> Vec<ReplyFlag> {
    check_reply(draft, |t| balie_text::default_analyzer().language(t))
}

/// A draft's length on `rule`'s platform and every text-only flag, `too_long` first.
pub fn lint(rule: ReplyChannel, draft: &ReplyDraft<'_>) -> DraftLint {
    let measured = rule.measure(draft.text);
    let mut flags = text_flags(draft);
    if let (true, Some(max)) = (measured.too_long(), measured.max_length) {
        let message = match draft.agent_language {
            AgentLanguage::Dutch => format!(
                "Te lang voor {}: {} {}, maximaal {max}. Kort het in of splits het antwoord.",
                rule.platform(),
                measured.length,
                dutch_unit(measured.unit)
            ),
            AgentLanguage::English => format!(
                "Too long for {}: {} {}, at most {max}. Shorten it or split the reply.",
                rule.platform(),
                measured.length,
                measured.unit.as_str()
            ),
        };
        let end = draft.text.chars().count();
        flags.insert(
            0,
            ReplyFlag {
                kind: FlagKind::TooLong,
                message,
                start: 0,
                end,
            },
        );
    }
    DraftLint {
        length: measured.length,
        max_length: measured.max_length,
        fits: measured.fits,
        flags,
    }
}

fn dutch_unit(unit: LengthUnit) -> &'static str {
    match unit {
        LengthUnit::Weighted => "gewogen tekens",
        LengthUnit::Bytes => "bytes",
        LengthUnit::Characters | LengthUnit::Graphemes | LengthUnit::Utf16Units => "tekens",
    }
}
