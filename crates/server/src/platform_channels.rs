//! Platform channels (Facebook, Instagram, WhatsApp, X, Telegram): their settings, their
//! sealed credentials, their webhook URLs, and the reply target built from them.
//!
//! Non-secret ids (page id, Instagram account id, WhatsApp `phone_number_id`, X user id, an
//! API base URL override) live in the channel's `settings` JSON; credentials are sealed with
//! [`ChannelKeys`] and stored apart, and only opened where they are used.

use std::collections::BTreeMap;

use anyhow::Context;
use balie_channels::telegram::split_external_id;
use balie_channels::{GraphApi, OutboundKind, OutboundTarget, Secret};
use balie_core::{BrandId, Channel, ChannelKind, PlaceKind};
use balie_store::{OutboxItem, Store, StoreError};
use serde::{Deserialize, Serialize};

use crate::channel_keys::ChannelKeys;

/// The Graph API version replies go out with unless a channel says otherwise.
pub const GRAPH_VERSION: u32 = 23;

/// Channel kinds whose webhooks and replies Balie handles through `balie_channels`.
pub const PLATFORM_KINDS: [ChannelKind; 6] = [
    ChannelKind::Messenger,
    ChannelKind::FacebookPage,
    ChannelKind::Instagram,
    ChannelKind::Whatsapp,
    ChannelKind::X,
    ChannelKind::Telegram,
];

/// Kinds whose events arrive on a Meta app webhook.
pub fn is_meta(kind: ChannelKind) -> bool {
    matches!(
        kind,
        ChannelKind::Messenger
            | ChannelKind::FacebookPage
            | ChannelKind::Instagram
            | ChannelKind::Whatsapp
    )
}

/// A channel credential's name.
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
        match kind {
            ChannelKind::Messenger
            | ChannelKind::FacebookPage
            | ChannelKind::Instagram
            | ChannelKind::Whatsapp => &[Self::AppSecret, Self::VerifyToken, Self::AccessToken],
            ChannelKind::X => &[Self::ConsumerSecret, Self::AccessToken],
            ChannelKind::Telegram => &[Self::BotToken, Self::SecretToken],
            _ => &[],
        }
    }
}

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

    fn graph(&self) -> GraphApi {
        GraphApi {
            base_url: self
                .api_base
                .clone()
                .unwrap_or_else(|| "https://graph.facebook.com".to_owned()),
            version: self.graph_version.unwrap_or(GRAPH_VERSION),
        }
    }

    fn api_base(&self, production: &str) -> String {
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

impl Credentials {
    pub fn get(&self, name: SecretName) -> Option<&Secret> {
        self.0.get(name.as_str()).filter(|s| !s.expose().is_empty())
    }

    fn need(&self, name: SecretName) -> Result<Secret, String> {
        self.get(name)
            .cloned()
            .ok_or_else(|| format!("the channel has no {} set", name.as_str()))
    }
}

/// Opens every credential stored for `channel`.
pub async fn credentials(
    store: &dyn Store,
    keys: &ChannelKeys,
    channel: &Channel,
) -> anyhow::Result<Credentials> {
    let sealed = store
        .channel_secrets(channel.id)
        .await
        .with_context(|| format!("reading the secrets of channel {}", channel.name))?;
    let mut out = BTreeMap::new();
    for (name, value) in sealed {
        let secret = keys.open(channel.id, &name, &value)?;
        out.insert(name, secret);
    }
    Ok(Credentials(out))
}

/// The names of the credentials stored for `channel` (for listings: never the values).
pub async fn secret_names(store: &dyn Store, channel: &Channel) -> anyhow::Result<Vec<String>> {
    Ok(store
        .channel_secrets(channel.id)
        .await?
        .into_iter()
        .map(|(name, _)| name)
        .collect())
}

/// Where the platform must send a channel's webhooks, under `public_url`.
pub fn webhook_url(public_url: &str, channel: &Channel) -> Option<String> {
    let platform = match channel.kind {
        k if is_meta(k) => "meta",
        ChannelKind::X => "x",
        ChannelKind::Telegram => "telegram",
        _ => return None,
    };
    Some(format!(
        "{}/webhooks/{platform}/{}",
        public_url.trim_end_matches('/'),
        channel.name
    ))
}

/// Creates a platform channel, or updates the settings and credentials of an existing one
/// of the same kind: given ids replace stored ones, given secrets are sealed and stored.
pub async fn configure(
    store: &dyn Store,
    keys: &ChannelKeys,
    brand: BrandId,
    kind: ChannelKind,
    name: &str,
    settings: &PlatformSettings,
    secrets: &[(SecretName, String)],
) -> anyhow::Result<Channel> {
    let channel = match store.channel_by_name(name).await? {
        Some(existing) if existing.kind != kind => anyhow::bail!(
            "channel `{name}` exists as a {} channel",
            existing.kind.as_str()
        ),
        Some(existing) => {
            let mut merged =
                PlatformSettings::parse(&existing.settings).map_err(anyhow::Error::msg)?;
            merge(&mut merged, settings);
            store
                .update_channel_settings(existing.id, &serde_json::to_string(&merged)?)
                .await?;
            store
                .channel(existing.id)
                .await?
                .ok_or(StoreError::NotFound("channel"))?
        }
        None => {
            store
                .create_channel(brand, kind, name, &serde_json::to_string(settings)?)
                .await?
        }
    };
    for (name, value) in secrets {
        let sealed = keys.seal(channel.id, name.as_str(), value)?;
        store
            .set_channel_secret(channel.id, name.as_str(), &sealed)
            .await?;
    }
    Ok(channel)
}

fn merge(into: &mut PlatformSettings, from: &PlatformSettings) {
    let pick = |a: &mut Option<String>, b: &Option<String>| {
        if b.is_some() {
            a.clone_from(b);
        }
    };
    pick(&mut into.page_id, &from.page_id);
    pick(&mut into.ig_account_id, &from.ig_account_id);
    pick(&mut into.phone_number_id, &from.phone_number_id);
    pick(&mut into.x_user_id, &from.x_user_id);
    pick(&mut into.api_base, &from.api_base);
    if from.graph_version.is_some() {
        into.graph_version = from.graph_version;
    }
}

/// How a reply on `channel` goes out, given the claimed outbox row.
pub fn outbound_kind(channel: ChannelKind, item: &OutboxItem) -> Option<OutboundKind> {
    let place = item.reply_to_place.unwrap_or(match channel {
        // A tweet Balie knows nothing about is answered in public.
        ChannelKind::X if item.reply_to_external_id.is_some() => PlaceKind::Mention,
        ChannelKind::FacebookPage => PlaceKind::Comment,
        _ => PlaceKind::Direct,
    });
    OutboundKind::for_conversation(channel, place)
}

/// The reply target for `item` on `channel`; `Err` is a reason for the agent.
pub fn outbound_target(
    channel: &Channel,
    kind: OutboundKind,
    settings: &PlatformSettings,
    credentials: &Credentials,
    item: &OutboxItem,
) -> Result<OutboundTarget, String> {
    let setting = |value: Option<&String>, what: &str| {
        value
            .cloned()
            .ok_or_else(|| format!("channel `{}` has no {what} set", channel.name))
    };
    let recipient = || {
        item.recipient_external_id
            .clone()
            .ok_or_else(|| "the customer's platform id is unknown".to_owned())
    };
    let answered = || {
        item.reply_to_external_id
            .clone()
            .ok_or_else(|| "there is no customer message to reply to".to_owned())
    };
    Ok(match kind {
        OutboundKind::Messenger => OutboundTarget::Messenger {
            graph: settings.graph(),
            page_id: setting(settings.page_id.as_ref(), "page_id")?,
            access_token: credentials.need(SecretName::AccessToken)?,
            recipient_id: recipient()?,
        },
        OutboundKind::InstagramDirect => OutboundTarget::InstagramDirect {
            graph: settings.graph(),
            account_id: setting(settings.ig_account_id.as_ref(), "ig_account_id")?,
            access_token: credentials.need(SecretName::AccessToken)?,
            recipient_id: recipient()?,
        },
        OutboundKind::FacebookComment => OutboundTarget::FacebookComment {
            graph: settings.graph(),
            comment_id: answered()?,
            access_token: credentials.need(SecretName::AccessToken)?,
        },
        OutboundKind::InstagramComment => OutboundTarget::InstagramComment {
            graph: settings.graph(),
            comment_id: answered()?,
            access_token: credentials.need(SecretName::AccessToken)?,
        },
        OutboundKind::Whatsapp => OutboundTarget::Whatsapp {
            graph: settings.graph(),
            phone_number_id: setting(settings.phone_number_id.as_ref(), "phone_number_id")?,
            access_token: credentials.need(SecretName::AccessToken)?,
            to: recipient()?,
            reply_to: item.reply_to_external_id.clone(),
        },
        OutboundKind::XReply => OutboundTarget::XReply {
            api_base: settings.api_base(balie_channels::outbound::X_API),
            access_token: credentials.need(SecretName::AccessToken)?,
            in_reply_to_tweet_id: answered()?,
        },
        OutboundKind::XDirect => OutboundTarget::XDirect {
            api_base: settings.api_base(balie_channels::outbound::X_API),
            access_token: credentials.need(SecretName::AccessToken)?,
            participant_id: recipient()?,
        },
        OutboundKind::Telegram => {
            let split = item
                .reply_to_external_id
                .as_deref()
                .and_then(split_external_id);
            let chat_id = match split {
                Some((chat, _)) => chat.to_string(),
                None => recipient()?,
            };
            OutboundTarget::Telegram {
                api_base: settings.api_base(balie_channels::outbound::TELEGRAM_API),
                bot_token: credentials.need(SecretName::BotToken)?,
                chat_id,
                reply_to_message_id: split.map(|(_, message)| message),
            }
        }
    })
}
