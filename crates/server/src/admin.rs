//! The admin pages: platform channels are added and edited here as well as from the CLI.
//! Credentials are sealed before they reach the store and are never shown back: a page
//! only says whether each one is set.

use std::collections::HashMap;

use askama::Template;
use axum::Router;
use axum::extract::{Form, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use balie_core::ChannelKind;
use serde::Deserialize;

use crate::AppState;
use crate::access::{Action, Member, member};
use crate::error::ApiError;
use crate::i18n::{Lang, Texts};
use crate::platform_channels::{self, PlatformSettings, SecretName, platform_kinds};
use crate::web::{Page, render, texts_json};

pub fn routes() -> Router<AppState> {
    Router::new().route("/admin/channels", get(channels_page).post(save_channel))
}

struct ChannelRow {
    name: String,
    kind: &'static str,
    account: String,
    webhook: String,
    secrets: Vec<(&'static str, bool)>,
}

#[derive(Template)]
#[template(path = "channels.html")]
struct ChannelsPage {
    t: &'static Texts,
    texts: String,
    user: Member,
    rows: Vec<ChannelRow>,
    kinds: Vec<&'static str>,
    error: String,
}

/// The signed-in user if they may manage the current brand's channels.
async fn admin(state: &AppState, headers: &HeaderMap) -> Result<Option<Member>, ApiError> {
    let Some(m) = member(state, headers).await? else {
        return Ok(None);
    };
    m.require(Action::ManageChannels)?;
    Ok(Some(m))
}

fn public_url(state: &AppState, headers: &HeaderMap) -> String {
    let host = headers
        .get("host")
        .and_then(|v| v.to_str().ok())
        .filter(|h| {
            h.chars()
                .all(|c| c.is_ascii_alphanumeric() || ".:-[]".contains(c))
        })
        .map(str::to_string)
        .unwrap_or_else(|| state.config.listen.to_string());
    let scheme = if state.config.secure_cookies {
        "https"
    } else {
        "http"
    };
    format!("{scheme}://{host}")
}

async fn render_channels(
    state: &AppState,
    headers: &HeaderMap,
    user: Member,
    error: String,
) -> Result<Page, ApiError> {
    let t = Lang::from_headers(headers).texts();
    let base = public_url(state, headers);
    let mut rows = Vec::new();
    let channels = state.store.channels().await?;
    for channel in channels
        .into_iter()
        .filter(|c| c.brand_id == user.brand_id())
    {
        let stored = platform_channels::secret_names(state.store.as_ref(), &channel).await?;
        let settings = PlatformSettings::parse(&channel.settings).unwrap_or_default();
        rows.push(ChannelRow {
            name: channel.name.clone(),
            kind: channel.kind.as_str(),
            account: settings.account_id(channel.kind).unwrap_or("").to_string(),
            webhook: platform_channels::webhook_url(&base, &channel)
                .unwrap_or_else(|| format!("{base}/api/v1/messages")),
            secrets: SecretName::needed_by(channel.kind)
                .iter()
                .map(|n| (n.as_str(), stored.iter().any(|s| s == n.as_str())))
                .collect(),
        });
    }
    render(ChannelsPage {
        t,
        texts: texts_json(t),
        user,
        rows,
        kinds: platform_kinds().iter().map(|k| k.as_str()).collect(),
        error,
    })
}

async fn channels_page(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Page, ApiError> {
    let Some(user) = admin(&state, &headers).await? else {
        return Ok(Page::Login);
    };
    render_channels(&state, &headers, user, String::new()).await
}

#[derive(Deserialize)]
struct ChannelForm {
    kind: String,
    name: String,
    #[serde(default)]
    account_id: String,
    #[serde(default)]
    api_base: String,
    /// Credentials by name (`app_secret`, `bot_token`, ...): the kind's connector says which.
    #[serde(flatten)]
    secrets: HashMap<String, String>,
}

fn settings_from(kind: ChannelKind, form: &ChannelForm) -> PlatformSettings {
    let mut s = PlatformSettings {
        api_base: Some(form.api_base.trim().to_string()).filter(|s| !s.is_empty()),
        ..PlatformSettings::default()
    };
    s.set_account_id(
        kind,
        Some(form.account_id.trim().to_string()).filter(|s| !s.is_empty()),
    );
    s
}

async fn save_channel(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<ChannelForm>,
) -> Result<Response, ApiError> {
    let Some(user) = admin(&state, &headers).await? else {
        return Err(ApiError::Unauthorized);
    };
    let kind = ChannelKind::parse(form.kind.trim()).filter(|k| platform_kinds().contains(k));
    let name = form.name.trim();
    let valid_name = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    let (Some(kind), true) = (kind, valid_name) else {
        let error = "Kies een platform en een naam van letters, cijfers, - of _ / Choose a platform and a name of letters, digits, - or _".to_string();
        return Ok(render_channels(&state, &headers, user, error)
            .await?
            .into_response());
    };
    let api_base = form.api_base.trim();
    if !(api_base.is_empty() || api_base.starts_with("http://") || api_base.starts_with("https://"))
    {
        return Ok(render_channels(
            &state,
            &headers,
            user,
            "API base URL must start with http:// or https://".into(),
        )
        .await?
        .into_response());
    }
    let secrets: Vec<(SecretName, String)> = SecretName::needed_by(kind)
        .iter()
        .filter_map(|n| {
            let value = form.secrets.get(n.as_str())?.trim();
            (!value.is_empty()).then(|| (*n, value.to_string()))
        })
        .collect();
    match platform_channels::configure(
        state.store.as_ref(),
        &state.channel_keys,
        platform_channels::Change {
            brand: user.brand_id(),
            may_repoint: user.may(Action::RepointChannel),
        },
        kind,
        name,
        &settings_from(kind, &form),
        &secrets,
    )
    .await
    {
        Ok(channel) => {
            tracing::info!(channel = %channel.name, kind = channel.kind.as_str(), by = %user.user.email, "channel configured");
            Ok(Redirect::to("/admin/channels").into_response())
        }
        Err(e) => Ok(render_channels(&state, &headers, user, format!("{e:#}"))
            .await?
            .into_response()),
    }
}
