//! `balie channel add|list`: configure platform channels from the command line. Secrets are
//! sealed with the data directory's key before they reach the database and are never printed.

use anyhow::{Context, bail};
use balie_core::ChannelKind;
use balie_server::Config;
use balie_server::channel_keys::ChannelKeys;
use balie_server::platform_channels::{self, PlatformSettings, SecretName, platform_kinds};
use balie_store::Store;
use clap::{Args, Subcommand};

#[derive(Subcommand, Debug)]
pub enum ChannelCommand {
    /// Add a platform channel, or update one of the same name and kind; prints the webhook
    /// URL to register with the platform.
    Add(Box<AddArgs>),
    /// List channels with their webhook URLs; secrets show as set or not set.
    List(ListArgs),
}

#[derive(Args, Debug)]
pub struct AddArgs {
    /// messenger, facebook_page, instagram, whatsapp, x or telegram. A facebook_page channel
    /// takes the Page's comments and posts and also its Messenger DMs (unless a messenger
    /// channel for the same page exists, which then takes the DMs).
    #[arg(value_name = "KIND")]
    kind: String,
    /// Unique channel name; part of the webhook URL.
    #[arg(long)]
    name: String,
    /// Facebook page id (messenger, facebook_page).
    #[arg(long)]
    page_id: Option<String>,
    /// Instagram professional account id (instagram).
    #[arg(long)]
    ig_account_id: Option<String>,
    /// WhatsApp Cloud API phone_number_id (whatsapp).
    #[arg(long)]
    phone_number_id: Option<String>,
    /// The brand's X user id (x): the `for_user_id` its webhooks carry.
    #[arg(long)]
    x_user_id: Option<String>,
    /// Meta app secret: checks X-Hub-Signature-256.
    #[arg(long, env = "BALIE_CHANNEL_APP_SECRET", hide_env_values = true)]
    app_secret: Option<String>,
    /// Meta webhook verify token (the subscription handshake).
    #[arg(long, env = "BALIE_CHANNEL_VERIFY_TOKEN", hide_env_values = true)]
    verify_token: Option<String>,
    /// Page, Instagram or WhatsApp access token, or X OAuth 2.0 user token.
    #[arg(long, env = "BALIE_CHANNEL_ACCESS_TOKEN", hide_env_values = true)]
    access_token: Option<String>,
    /// X consumer secret: CRC and webhook signatures.
    #[arg(long, env = "BALIE_CHANNEL_CONSUMER_SECRET", hide_env_values = true)]
    consumer_secret: Option<String>,
    /// Telegram bot token.
    #[arg(long, env = "BALIE_CHANNEL_BOT_TOKEN", hide_env_values = true)]
    bot_token: Option<String>,
    /// Telegram webhook secret_token (given to setWebhook).
    #[arg(long, env = "BALIE_CHANNEL_SECRET_TOKEN", hide_env_values = true)]
    secret_token: Option<String>,
    /// Base URL of the platform's API (a local fake or a proxy). Default: production.
    #[arg(long, value_name = "URL")]
    api_base: Option<String>,
    /// Where Balie is reachable from the platform. Default: http://127.0.0.1:8080
    #[arg(long, env = "BALIE_PUBLIC_URL", value_name = "URL")]
    public_url: Option<String>,
}

#[derive(Args, Debug)]
pub struct ListArgs {
    /// Where Balie is reachable from the platform. Default: http://127.0.0.1:8080
    #[arg(long, env = "BALIE_PUBLIC_URL", value_name = "URL")]
    public_url: Option<String>,
}

fn public_url(given: Option<&str>, config: &Config) -> String {
    given
        .map(str::to_owned)
        .unwrap_or_else(|| format!("http://{}", config.listen))
}

fn parse_kind(kind: &str) -> anyhow::Result<ChannelKind> {
    let wanted = kind.trim().to_ascii_lowercase().replace('-', "_");
    let aliases = match wanted.as_str() {
        "facebook" | "page" => "facebook_page",
        "twitter" => "x",
        other => other,
    };
    match ChannelKind::parse(aliases) {
        Some(kind) if platform_kinds().contains(&kind) => Ok(kind),
        _ => bail!(
            "`{kind}` is not a platform channel kind; use one of: {}",
            platform_kinds()
                .iter()
                .map(|k| k.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn valid_name(name: &str) -> anyhow::Result<&str> {
    let name = name.trim();
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !ok {
        bail!("a channel name is 1-64 letters, digits, `-` or `_` (it is part of a URL)");
    }
    Ok(name)
}

fn valid_url(url: &str) -> anyhow::Result<String> {
    let url = url.trim().trim_end_matches('/');
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        bail!("`{url}` is not an http(s) URL");
    }
    Ok(url.to_owned())
}

pub async fn run(
    command: ChannelCommand,
    config: &Config,
    store: &dyn Store,
) -> anyhow::Result<()> {
    match command {
        ChannelCommand::Add(args) => add(*args, config, store).await,
        ChannelCommand::List(args) => list(args, config, store).await,
    }
}

async fn add(args: AddArgs, config: &Config, store: &dyn Store) -> anyhow::Result<()> {
    let kind = parse_kind(&args.kind)?;
    let name = valid_name(&args.name)?;
    let settings = PlatformSettings {
        page_id: args.page_id.clone(),
        ig_account_id: args.ig_account_id.clone(),
        phone_number_id: args.phone_number_id.clone(),
        x_user_id: args.x_user_id.clone(),
        api_base: args.api_base.as_deref().map(valid_url).transpose()?,
        graph_version: None,
    };
    let ids = [
        (
            "page-id",
            settings.page_id.is_some(),
            &[ChannelKind::Messenger, ChannelKind::FacebookPage][..],
        ),
        (
            "ig-account-id",
            settings.ig_account_id.is_some(),
            &[ChannelKind::Instagram][..],
        ),
        (
            "phone-number-id",
            settings.phone_number_id.is_some(),
            &[ChannelKind::Whatsapp][..],
        ),
        (
            "x-user-id",
            settings.x_user_id.is_some(),
            &[ChannelKind::X][..],
        ),
    ];
    for (flag, given, kinds) in ids {
        if given && !kinds.contains(&kind) {
            bail!("--{flag} does not apply to {} channels", kind.as_str());
        }
    }
    let given = [
        (SecretName::AppSecret, args.app_secret),
        (SecretName::VerifyToken, args.verify_token),
        (SecretName::AccessToken, args.access_token),
        (SecretName::ConsumerSecret, args.consumer_secret),
        (SecretName::BotToken, args.bot_token),
        (SecretName::SecretToken, args.secret_token),
    ];
    let mut secrets = Vec::new();
    for (secret, value) in given {
        let Some(value) = value else { continue };
        if !SecretName::needed_by(kind).contains(&secret) {
            bail!(
                "--{} does not apply to {} channels",
                secret.as_str().replace('_', "-"),
                kind.as_str()
            );
        }
        secrets.push((secret, value.trim().to_owned()));
    }
    let keys = ChannelKeys::open_or_create(&config.data_dir)?;
    let brand = store
        .ensure_brand(&config.default_brand, balie_server::outbox::now_ms())
        .await
        .context("creating the default brand")?;
    let channel = platform_channels::configure(
        store,
        &keys,
        platform_channels::Change {
            brand,
            may_repoint: true,
        },
        kind,
        name,
        &settings,
        &secrets,
    )
    .await?;
    let stored = platform_channels::secret_names(store, &channel).await?;
    println!(
        "Channel `{}` ({}) is configured.",
        channel.name,
        kind.as_str()
    );
    let public = public_url(args.public_url.as_deref(), config);
    if let Some(url) = platform_channels::webhook_url(&public, &channel) {
        println!("Webhook URL to register with the platform: {url}");
    }
    if kind == ChannelKind::FacebookPage {
        println!(
            "Subscribe the Page to the `feed` field (comments) and to `messages` (Messenger DMs): \
             this channel receives both."
        );
    }
    let missing: Vec<&str> = SecretName::needed_by(kind)
        .iter()
        .map(|s| s.as_str())
        .filter(|s| !stored.iter().any(|have| have == s))
        .collect();
    if !missing.is_empty() {
        println!("Still to set: {}", missing.join(", "));
    }
    Ok(())
}

async fn list(args: ListArgs, config: &Config, store: &dyn Store) -> anyhow::Result<()> {
    let public = public_url(args.public_url.as_deref(), config);
    let channels = store.channels().await?;
    if channels.is_empty() {
        println!("No channels yet. Add one with `balie channel add KIND --name NAME ...`.");
    }
    for channel in channels {
        println!("{} ({})", channel.name, channel.kind.as_str());
        if let Ok(settings) = PlatformSettings::parse(&channel.settings) {
            let ids = [
                ("page_id", &settings.page_id),
                ("ig_account_id", &settings.ig_account_id),
                ("phone_number_id", &settings.phone_number_id),
                ("x_user_id", &settings.x_user_id),
                ("api_base", &settings.api_base),
            ];
            for (label, value) in ids {
                if let Some(value) = value {
                    println!("  {label}: {value}");
                }
            }
        }
        if let Some(url) = platform_channels::webhook_url(&public, &channel) {
            println!("  webhook: {url}");
        }
        let stored = platform_channels::secret_names(store, &channel).await?;
        for secret in SecretName::needed_by(channel.kind) {
            let state = if stored.iter().any(|s| s == secret.as_str()) {
                "set"
            } else {
                "not set"
            };
            println!("  {}: {state}", secret.as_str());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn kinds_and_names_are_checked() {
        assert_eq!(parse_kind("whatsapp").unwrap(), ChannelKind::Whatsapp);
        assert_eq!(
            parse_kind("facebook-page").unwrap(),
            ChannelKind::FacebookPage
        );
        assert_eq!(parse_kind("twitter").unwrap(), ChannelKind::X);
        assert!(parse_kind("api").is_err());
        assert!(parse_kind("fax").is_err());
        assert_eq!(valid_name(" shop-nl ").unwrap(), "shop-nl");
        assert!(valid_name("shop/../x").is_err());
        assert!(valid_name("").is_err());
        assert!(valid_url("ftp://x").is_err());
        assert_eq!(
            valid_url("http://127.0.0.1:9/").unwrap(),
            "http://127.0.0.1:9"
        );
    }
}
