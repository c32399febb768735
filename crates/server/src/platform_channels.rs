//! Platform channels in the store: their settings, their sealed credentials and their webhook
//! URLs. What a platform needs and does is its connector's (`balie_channels::connector`);
//! this module only keeps it.
//!
//! Non-secret ids (page id, Instagram account id, WhatsApp `phone_number_id`, X user id, an
//! API base URL override) live in the channel's `settings` JSON; credentials are sealed with
//! [`ChannelKeys`] and stored apart, and only opened where they are used.

use anyhow::Context;
pub use balie_channels::connector::{Credentials, GRAPH_VERSION, PlatformSettings, SecretName};
use balie_core::{BrandId, Channel, ChannelKind};
use balie_store::{Store, StoreError};

use crate::channel_keys::ChannelKeys;

/// Channel kinds some platform connector serves.
pub fn platform_kinds() -> Vec<ChannelKind> {
    balie_channels::connector::platform_kinds()
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
    let mut out = Vec::with_capacity(sealed.len());
    for (name, value) in sealed {
        let secret = keys.open(channel.id, &name, &value)?;
        out.push((name, secret));
    }
    Ok(out.into_iter().collect())
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
    let platform = balie_channels::connector::for_kind(channel.kind)?.webhook_path()?;
    Some(format!(
        "{}/webhooks/{platform}/{}",
        public_url.trim_end_matches('/'),
        channel.name
    ))
}

/// Who changes a channel: for which brand, and whether they may point it at another API host
/// (the installation's owner, or the CLI).
#[derive(Debug, Clone, Copy)]
pub struct Change {
    pub brand: BrandId,
    pub may_repoint: bool,
}

/// Creates a platform channel, or updates the settings and credentials of an existing one
/// of the same kind in the same brand: given ids replace stored ones, given secrets are
/// sealed and stored. A new API host (`api_base`) needs `may_repoint`, and on an existing
/// channel every credential of its kind given again, so stored secrets never follow a
/// changed host by themselves.
pub async fn configure(
    store: &dyn Store,
    keys: &ChannelKeys,
    change: Change,
    kind: ChannelKind,
    name: &str,
    settings: &PlatformSettings,
    secrets: &[(SecretName, String)],
) -> anyhow::Result<Channel> {
    let brand = change.brand;
    let repoint_refused =
        "only the installation's owner (or the CLI) may point a channel at another API host";
    let channel = match store.channel_by_name(name).await? {
        Some(existing) if existing.brand_id != brand => {
            anyhow::bail!("the channel name `{name}` is taken")
        }
        Some(existing) if existing.kind != kind => anyhow::bail!(
            "channel `{name}` exists as a {} channel",
            existing.kind.as_str()
        ),
        Some(existing) => {
            let mut merged =
                PlatformSettings::parse(&existing.settings).map_err(anyhow::Error::msg)?;
            if settings.api_base.is_some() && settings.api_base != merged.api_base {
                anyhow::ensure!(change.may_repoint, repoint_refused);
                let all_given = SecretName::needed_by(kind)
                    .iter()
                    .all(|n| secrets.iter().any(|(given, _)| given == n));
                anyhow::ensure!(
                    all_given,
                    "pointing channel `{name}` at another API host needs all its credentials again"
                );
            }
            merged.merge(settings);
            store
                .update_channel_settings(existing.id, &serde_json::to_string(&merged)?)
                .await?;
            store
                .channel(existing.id)
                .await?
                .ok_or(StoreError::NotFound("channel"))?
        }
        None => {
            anyhow::ensure!(
                settings.api_base.is_none() || change.may_repoint,
                repoint_refused
            );
            store
                .create_channel(
                    brand,
                    kind,
                    name,
                    &serde_json::to_string(settings)?,
                    crate::outbox::now_ms(),
                )
                .await?
        }
    };
    for (name, value) in secrets {
        let sealed = keys.seal(channel.id, name.as_str(), value)?;
        store
            .set_channel_secret(channel.id, name.as_str(), &sealed, crate::outbox::now_ms())
            .await?;
    }
    Ok(channel)
}
