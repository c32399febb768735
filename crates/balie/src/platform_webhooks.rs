//! Platform webhook deliveries signed as each platform signs them (Meta
//! `X-Hub-Signature-256`, X `x-twitter-webhooks-signature`, Telegram
//! `X-Telegram-Bot-Api-Secret-Token`): shared by the demo's simulator and
//! `balie bench ingest`.

use std::path::Path;

use balie_core::ChannelKind;
use balie_server::channel_keys::ChannelKeys;
use balie_server::platform_channels::{self, PlatformSettings, SecretName};
use balie_store::Store;
use serde_json::Value;

/// The brand's (invented) accounts the simulated platforms deliver to.
pub const PAGE_ID: &str = "100200300400500";
pub const IG_ACCOUNT_ID: &str = "17841400000000777";
pub const PHONE_NUMBER_ID: &str = "106540352200777";
pub const X_USER_ID: &str = "1500000000000000777";
/// The channel whose webhook carries every Meta event (its app's callback URL).
pub const META_WEBHOOK: &str = "facebook";

/// A channel's credentials by name, as `platform_channels::configure` takes them.
type Credentials<'a> = &'a [(SecretName, String)];

/// The credentials besides the webhook secrets: tokens the (fake) platform APIs accept.
pub struct ChannelTokens {
    pub verify_token: String,
    pub meta_access_token: String,
    pub x_access_token: String,
    pub bot_token: String,
}

/// Configures the simulated brand's channels as `balie channel add` would: Facebook page and
/// Messenger on one page, Instagram, WhatsApp, X and Telegram, signed with `secrets`, their
/// APIs at `api_base` (a local fake) or production when `None`.
pub async fn configure_channels(
    store: &dyn Store,
    data_dir: &Path,
    brand: &str,
    secrets: &WebhookSecrets,
    tokens: &ChannelTokens,
    api_base: Option<String>,
) -> anyhow::Result<()> {
    let keys = ChannelKeys::open_or_create(data_dir)?;
    let brand = store
        .ensure_brand(brand, balie_server::outbox::now_ms())
        .await?;
    let on = |settings: PlatformSettings| PlatformSettings {
        api_base: api_base.clone(),
        ..settings
    };
    let page = on(PlatformSettings {
        page_id: Some(PAGE_ID.to_owned()),
        ..PlatformSettings::default()
    });
    let meta_secrets = [
        (SecretName::AppSecret, secrets.app_secret.clone()),
        (SecretName::VerifyToken, tokens.verify_token.clone()),
        (SecretName::AccessToken, tokens.meta_access_token.clone()),
    ];
    let x_secrets = [
        (SecretName::ConsumerSecret, secrets.consumer_secret.clone()),
        (SecretName::AccessToken, tokens.x_access_token.clone()),
    ];
    let telegram_secrets = [
        (SecretName::BotToken, tokens.bot_token.clone()),
        (SecretName::SecretToken, secrets.telegram_secret.clone()),
    ];
    let channels: [(ChannelKind, &str, PlatformSettings, Credentials<'_>); 6] = [
        (
            ChannelKind::FacebookPage,
            META_WEBHOOK,
            page.clone(),
            &meta_secrets,
        ),
        (ChannelKind::Messenger, "messenger", page, &meta_secrets),
        (
            ChannelKind::Instagram,
            "instagram",
            on(PlatformSettings {
                ig_account_id: Some(IG_ACCOUNT_ID.to_owned()),
                ..PlatformSettings::default()
            }),
            &meta_secrets,
        ),
        (
            ChannelKind::Whatsapp,
            "whatsapp",
            on(PlatformSettings {
                phone_number_id: Some(PHONE_NUMBER_ID.to_owned()),
                ..PlatformSettings::default()
            }),
            &meta_secrets,
        ),
        (
            ChannelKind::X,
            "x",
            on(PlatformSettings {
                x_user_id: Some(X_USER_ID.to_owned()),
                ..PlatformSettings::default()
            }),
            &x_secrets,
        ),
        (
            ChannelKind::Telegram,
            "telegram",
            on(PlatformSettings::default()),
            &telegram_secrets,
        ),
    ];
    for (kind, name, settings, secrets) in channels {
        platform_channels::configure(
            store,
            &keys,
            platform_channels::Change {
                brand,
                may_repoint: true,
            },
            kind,
            name,
            &settings,
            secrets,
        )
        .await?;
    }
    Ok(())
}

/// The webhook secrets a sender signs with (the channels are configured with the same).
#[derive(Clone)]
pub struct WebhookSecrets {
    pub app_secret: String,
    pub consumer_secret: String,
    pub telegram_secret: String,
}

/// Which webhook a delivery goes to, and its body.
pub enum Delivery {
    Meta(Value),
    X(Value),
    Telegram(Value),
}

/// A delivery ready to POST: the path under the server's base URL, the signature header and
/// the exact body bytes it was computed over.
pub struct SignedDelivery {
    pub path: String,
    pub header: (&'static str, String),
    pub body: Vec<u8>,
}

impl Delivery {
    /// Serialises and signs the delivery for the webhooks of the channels named `meta`, `x`
    /// and `telegram`.
    pub fn sign(
        &self,
        secrets: &WebhookSecrets,
        meta: &str,
        x: &str,
        telegram: &str,
    ) -> SignedDelivery {
        match self {
            Delivery::Meta(body) => {
                let body = body.to_string().into_bytes();
                SignedDelivery {
                    path: format!("/webhooks/meta/{meta}"),
                    header: (
                        "x-hub-signature-256",
                        balie_channels::signature::sha256_header(
                            secrets.app_secret.as_bytes(),
                            &body,
                        ),
                    ),
                    body,
                }
            }
            Delivery::X(body) => {
                let body = body.to_string().into_bytes();
                SignedDelivery {
                    path: format!("/webhooks/x/{x}"),
                    header: (
                        "x-twitter-webhooks-signature",
                        balie_channels::x::signature_header(&secrets.consumer_secret, &body),
                    ),
                    body,
                }
            }
            Delivery::Telegram(body) => SignedDelivery {
                path: format!("/webhooks/telegram/{telegram}"),
                header: (
                    "x-telegram-bot-api-secret-token",
                    secrets.telegram_secret.clone(),
                ),
                body: body.to_string().into_bytes(),
            },
        }
    }
}
