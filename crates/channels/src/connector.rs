//! One description per platform ([`Connector`]): the channel kinds it serves, the credentials
//! and settings a channel needs, how it receives (a pushed webhook, with its handshake,
//! verification and parsing, or a pulling follower with a stored cursor), where a reply goes
//! and which outbound actions it offers. The server dispatches through [`CONNECTORS`] and
//! never names a platform.
//!
//! Adding a platform: write its module (inbound parsing, its [`Webhook`] or [`Follower`], its
//! reply target), give it a `CONNECTOR`, and add one line to [`CONNECTORS`].

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;

use balie_core::{ChannelKind, Inbound, PlaceKind};
use serde::{Deserialize, Serialize};

use crate::outbound::{OutboundKind, OutboundTarget};
use crate::outcome::{Dropped, Unreadable};
use crate::{ParseError, Secret, meta, telegram, x};

/// Every platform Balie connects to: one line each.
pub static CONNECTORS: [&Connector; 3] = [&meta::CONNECTOR, &x::CONNECTOR, &telegram::CONNECTOR];

/// The connector serving channels of `kind`, if a platform module does.
pub fn for_kind(kind: ChannelKind) -> Option<&'static Connector> {
    CONNECTORS.iter().copied().find(|c| c.kinds.contains(&kind))
}

/// The connector whose webhooks arrive under `/webhooks/{path}/...`.
pub fn for_webhook(path: &str) -> Option<&'static Connector> {
    CONNECTORS
        .iter()
        .copied()
        .find(|c| matches!(c.receiving, Receiving::Push(w) if w.path() == path))
}

/// Every channel kind some connector serves, in registration order.
pub fn platform_kinds() -> Vec<ChannelKind> {
    CONNECTORS
        .iter()
        .flat_map(|c| c.kinds.iter().copied())
        .collect()
}

/// What one platform is to Balie.
pub struct Connector {
    /// The platform's name in logs and metrics (`meta`, `x`, `telegram`).
    pub name: &'static str,
    /// The channel kinds it serves.
    pub kinds: &'static [ChannelKind],
    /// The credentials a channel of a kind needs to receive and to reply.
    pub secrets: fn(ChannelKind) -> &'static [SecretName],
    /// Event kinds a channel of another kind also takes when no channel of the event's own
    /// kind stands for its account: (channel kind, event kind).
    pub also_takes: &'static [(ChannelKind, ChannelKind)],
    /// How it receives.
    pub receiving: Receiving,
    /// Where a reply in a conversation goes, with the credentials to send it; `Err` is a
    /// reason for the agent.
    pub reply_target: fn(&ChannelSetup<'_>, &ReplyContext) -> Result<OutboundTarget, String>,
    /// The outbound actions beyond a reply this platform offers.
    pub actions: &'static [ActionKind],
}

impl Connector {
    /// How a reply goes out in a conversation on a `kind` channel whose answered message was
    /// at `place` (or unknown).
    pub fn outbound_kind(&self, kind: ChannelKind, reply: &ReplyContext) -> Option<OutboundKind> {
        let place = reply.answered_place.unwrap_or(match kind {
            // A tweet Balie knows nothing about is answered in public.
            ChannelKind::X if reply.answered.is_some() => PlaceKind::Mention,
            ChannelKind::FacebookPage => PlaceKind::Comment,
            _ => PlaceKind::Direct,
        });
        OutboundKind::for_conversation(kind, place)
    }

    /// Whether a channel of kind `channel` takes events of kind `event`.
    pub fn takes(&self, channel: ChannelKind, event: ChannelKind) -> bool {
        channel == event || self.also_takes.contains(&(channel, event))
    }

    /// The webhook URL segment (`/webhooks/{path}/{channel}`), for push connectors.
    pub fn webhook_path(&self) -> Option<&'static str> {
        match self.receiving {
            Receiving::Push(webhook) => Some(webhook.path()),
            Receiving::Pull(_) => None,
        }
    }
}

/// How a connector receives events.
#[derive(Clone, Copy)]
pub enum Receiving {
    /// The platform calls Balie's webhook.
    Push(&'static dyn Webhook),
    /// Balie follows the platform (streams or polls) from a stored cursor.
    Pull(&'static dyn Follower),
}

/// A request header by (lower-case) name.
pub type Header<'a> = &'a dyn Fn(&str) -> Option<&'a str>;

/// A platform's webhook: its handshake, its check over the raw body, its parsing.
pub trait Webhook: Sync {
    /// The URL segment: deliveries arrive at `/webhooks/{path}/{channel}`.
    fn path(&self) -> &'static str;
    /// Answers a `GET` (subscription handshake or challenge); `None` when the platform has
    /// none.
    fn handshake(
        &self,
        query: &HashMap<String, String>,
        credentials: &Credentials,
    ) -> Option<Handshake>;
    /// Checks a `POST` over its raw bytes before anything is parsed; `Err` says why not (no
    /// secret in it).
    fn verify(
        &self,
        credentials: &Credentials,
        header: Header<'_>,
        body: &[u8],
    ) -> Result<(), &'static str>;
    /// The credential a delivery is signed with: it may be routed to any channel of this
    /// connector holding the same one (or none of its own).
    fn signing_secret(&self) -> SecretName;
    /// Parses a verified body that arrived on a `kind` channel.
    fn parse(&self, body: &[u8], kind: ChannelKind) -> Result<Delivery, ParseError>;
}

/// A future a follower returns.
pub type FollowFuture<'a> =
    Pin<Box<dyn Future<Output = Result<(Delivery, Option<String>), String>> + Send + 'a>>;

/// A pulling connector (an IMAP mailbox with IDLE, the Mastodon streaming API with polling to
/// fill gaps, Bluesky notifications): each step reads what came after `cursor` and returns it
/// with the cursor to store. A worker holding the channel's lease calls it; what it returns is
/// journalled exactly like a webhook delivery.
pub trait Follower: Sync {
    fn follow<'a>(
        &'a self,
        client: &'a reqwest::Client,
        channel: &'a ChannelSetup<'a>,
        cursor: Option<&'a str>,
    ) -> FollowFuture<'a>;
}

/// What a webhook's `GET` is answered with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handshake {
    /// 200 with this body.
    Answer {
        content_type: &'static str,
        body: String,
    },
    /// 403: the handshake is refused (wrong or no token); the reason is safe to show.
    Refused(String),
    /// 400: a parameter is missing or malformed.
    BadInput { field: &'static str, reason: String },
}

/// Everything one delivery (or one follower step) carried, in one shape for every platform.
/// Every event is in exactly one list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Delivery {
    pub events: Vec<Routed>,
    /// Delivery reports for messages Balie sent.
    pub statuses: Vec<RoutedStatus>,
    pub dropped: Vec<Dropped>,
    /// Kept unread on the channel the delivery arrived on.
    pub unread: Vec<Unreadable>,
}

/// An event and the channel it belongs to: of `kind`, standing for `account_id`; `None` for
/// the channel the delivery arrived on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routed {
    pub kind: ChannelKind,
    pub account_id: Option<String>,
    pub inbound: Inbound,
}

/// A delivery report and the channel it belongs to (of `kind`, standing for the status's
/// `account_id`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutedStatus {
    pub kind: ChannelKind,
    /// The platform's name for people ("WhatsApp").
    pub platform: &'static str,
    pub status: meta::DeliveryStatus,
}

/// The outbound actions a connector may offer beyond a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionKind {
    /// Answer the customer (every connector).
    Reply,
    /// Hide a public comment (Facebook, Instagram).
    HideComment,
    /// Send an approved template outside the messaging window (WhatsApp).
    Template,
}

/// A credential's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SecretName {
    /// Meta app secret: the `X-Hub-Signature-256` key.
    AppSecret,
    /// Meta subscription handshake token (`hub.verify_token`).
    VerifyToken,
    /// Graph page/system-user token, or X OAuth 2.0 user token.
    AccessToken,
    /// X consumer secret: CRC and `x-twitter-webhooks-signature` key.
    ConsumerSecret,
    /// Telegram bot token.
    BotToken,
    /// Telegram `secret_token` given to `setWebhook`.
    SecretToken,
}

impl SecretName {
    pub const ALL: [SecretName; 6] = [
        Self::AppSecret,
        Self::VerifyToken,
        Self::AccessToken,
        Self::ConsumerSecret,
        Self::BotToken,
        Self::SecretToken,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::AppSecret => "app_secret",
            Self::VerifyToken => "verify_token",
            Self::AccessToken => "access_token",
            Self::ConsumerSecret => "consumer_secret",
            Self::BotToken => "bot_token",
            Self::SecretToken => "secret_token",
        }
    }

    /// The credentials a channel of `kind` needs to receive and to reply.
    pub fn needed_by(kind: ChannelKind) -> &'static [SecretName] {
        for_kind(kind).map_or(&[], |c| (c.secrets)(kind))
    }
}

/// The Graph API version replies go out with unless a channel says otherwise.
pub const GRAPH_VERSION: u32 = 23;

/// The non-secret part of a platform channel's configuration (`channels.settings`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PlatformSettings {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ig_account_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone_number_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub x_user_id: Option<String>,
    /// Scheme and host of the platform's API (Graph, X or Telegram), for a local fake or a
    /// proxy; the production URL when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_base: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub graph_version: Option<u32>,
}

impl PlatformSettings {
    pub fn parse(settings: &str) -> Result<Self, String> {
        if settings.trim().is_empty() {
            return Ok(Self::default());
        }
        serde_json::from_str(settings)
            .map_err(|e| format!("the channel settings are not valid: {e}"))
    }

    /// The brand account a channel of `kind` stands for: the id platforms route events by.
    pub fn account_id(&self, kind: ChannelKind) -> Option<&str> {
        match kind {
            ChannelKind::Messenger | ChannelKind::FacebookPage => self.page_id.as_deref(),
            ChannelKind::Instagram => self.ig_account_id.as_deref(),
            ChannelKind::Whatsapp => self.phone_number_id.as_deref(),
            ChannelKind::X => self.x_user_id.as_deref(),
            _ => None,
        }
    }

    /// Sets the account a channel of `kind` stands for (ignored for kinds without one).
    pub fn set_account_id(&mut self, kind: ChannelKind, account: Option<String>) {
        match kind {
            ChannelKind::Messenger | ChannelKind::FacebookPage => self.page_id = account,
            ChannelKind::Instagram => self.ig_account_id = account,
            ChannelKind::Whatsapp => self.phone_number_id = account,
            ChannelKind::X => self.x_user_id = account,
            _ => {}
        }
    }

    /// `from`'s given values replace these.
    pub fn merge(&mut self, from: &PlatformSettings) {
        let pick = |a: &mut Option<String>, b: &Option<String>| {
            if b.is_some() {
                a.clone_from(b);
            }
        };
        pick(&mut self.page_id, &from.page_id);
        pick(&mut self.ig_account_id, &from.ig_account_id);
        pick(&mut self.phone_number_id, &from.phone_number_id);
        pick(&mut self.x_user_id, &from.x_user_id);
        pick(&mut self.api_base, &from.api_base);
        if from.graph_version.is_some() {
            self.graph_version = from.graph_version;
        }
    }

    pub(crate) fn graph(&self) -> crate::GraphApi {
        crate::GraphApi {
            base_url: self
                .api_base
                .clone()
                .unwrap_or_else(|| "https://graph.facebook.com".to_owned()),
            version: self.graph_version.unwrap_or(GRAPH_VERSION),
        }
    }

    pub(crate) fn api_base(&self, production: &str) -> String {
        self.api_base
            .clone()
            .unwrap_or_else(|| production.to_owned())
    }
}

/// A channel's opened credentials. `Debug` shows names only.
#[derive(Default, Clone)]
pub struct Credentials(BTreeMap<String, Secret>);

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

impl FromIterator<(String, Secret)> for Credentials {
    fn from_iter<I: IntoIterator<Item = (String, Secret)>>(iter: I) -> Self {
        Self(iter.into_iter().collect())
    }
}

impl Credentials {
    pub fn get(&self, name: SecretName) -> Option<&Secret> {
        self.0.get(name.as_str()).filter(|s| !s.expose().is_empty())
    }

    pub(crate) fn need(&self, name: SecretName) -> Result<Secret, String> {
        self.get(name)
            .cloned()
            .ok_or_else(|| format!("the channel has no {} set", name.as_str()))
    }

    pub(crate) fn expose(&self, name: SecretName) -> &str {
        self.get(name).map_or("", Secret::expose)
    }
}

/// A channel as a connector needs it to send.
pub struct ChannelSetup<'a> {
    pub name: &'a str,
    pub kind: ChannelKind,
    pub settings: &'a PlatformSettings,
    pub credentials: &'a Credentials,
}

impl ChannelSetup<'_> {
    pub(crate) fn setting(&self, value: Option<&String>, what: &str) -> Result<String, String> {
        value
            .cloned()
            .ok_or_else(|| format!("channel `{}` has no {what} set", self.name))
    }
}

/// The conversation a reply answers, as far as sending needs it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplyContext {
    /// The customer's id on the platform.
    pub recipient: Option<String>,
    /// The platform id of the customer message answered.
    pub answered: Option<String>,
    /// Where that message was (DM, comment, post).
    pub answered_place: Option<PlaceKind>,
}

impl ReplyContext {
    pub(crate) fn recipient(&self) -> Result<String, String> {
        self.recipient
            .clone()
            .ok_or_else(|| "the customer's platform id is unknown".to_owned())
    }

    pub(crate) fn answered(&self) -> Result<String, String> {
        self.answered
            .clone()
            .ok_or_else(|| "there is no customer message to reply to".to_owned())
    }
}

/// The reply target for a conversation on `channel`: the way out its connector says.
pub fn reply_target(
    channel: &ChannelSetup<'_>,
    reply: &ReplyContext,
) -> Result<OutboundTarget, String> {
    let connector = for_kind(channel.kind).ok_or_else(|| {
        format!(
            "replies on {} channels are not supported",
            channel.kind.as_str()
        )
    })?;
    (connector.reply_target)(channel, reply)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_one_connector_and_every_webhook_one_path() {
        let kinds = platform_kinds();
        for kind in &kinds {
            let serving: Vec<_> = CONNECTORS
                .iter()
                .filter(|c| c.kinds.contains(kind))
                .map(|c| c.name)
                .collect();
            assert_eq!(serving.len(), 1, "{kind:?} is served by {serving:?}");
            assert!(!SecretName::needed_by(*kind).is_empty(), "{kind:?}");
        }
        for connector in CONNECTORS {
            let path = connector
                .webhook_path()
                .expect("every connector so far is pushed to");
            assert_eq!(for_webhook(path).map(|c| c.name), Some(connector.name));
            assert!(connector.actions.contains(&ActionKind::Reply));
        }
        assert!(for_webhook("api").is_none());
        assert!(for_kind(ChannelKind::Api).is_none());
    }

    #[test]
    fn a_page_channel_also_takes_its_pages_dms_and_nothing_else_crosses_kinds() {
        let meta = for_kind(ChannelKind::FacebookPage).expect("meta");
        assert!(meta.takes(ChannelKind::FacebookPage, ChannelKind::Messenger));
        assert!(!meta.takes(ChannelKind::Messenger, ChannelKind::FacebookPage));
        assert!(!meta.takes(ChannelKind::Instagram, ChannelKind::Whatsapp));
    }
}
