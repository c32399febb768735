//! Platform webhooks: `/webhooks/meta/{channel}`, `/webhooks/x/{channel}` and
//! `/webhooks/telegram/{channel}`. Each POST is verified over the raw body bytes before any
//! parsing, then every event it carries is journalled in one durable append before the 2xx.
//!
//! A forged or unsigned request gets 401, stores nothing, counts in
//! `balie_signatures_rejected_total` and logs the channel and reason, never a secret.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use balie_channels::meta::{self, DeliveryState};
use balie_channels::{Secret, telegram, x};
use balie_core::{Channel, ChannelKind, Inbound};
use balie_store::{Appended, NewJournalEntry};
use serde_json::json;

use crate::AppState;
use crate::api::body_or_error;
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::outbox::now_ms;
use crate::platform_channels::{self, Credentials, PlatformSettings, SecretName, is_meta};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/webhooks/meta/{channel}",
            get(meta_handshake).post(meta_events),
        )
        .route("/webhooks/x/{channel}", get(x_crc).post(x_events))
        .route(
            "/webhooks/telegram/{channel}",
            axum::routing::post(telegram_update),
        )
        .layer(Extension(Arc::new(WebhookCache::default())))
}

/// How long a webhook channel, its opened credentials and its Meta routes are taken from
/// memory before the store is asked again: a changed secret or a removed channel takes
/// effect within this time.
const WEBHOOK_CACHE_TTL: Duration = Duration::from_secs(10);

/// A webhook channel with its opened credentials (kept as [`Secret`]s, never logged).
struct Opened {
    channel: Channel,
    credentials: Credentials,
}

/// What the platform webhooks looked up recently: each channel by name with its opened
/// credentials, and each Meta webhook's routes. Every store read is a round trip to the
/// database (a thread hop on SQLite) plus a decryption, and these were paid on every
/// delivery; a hot channel now costs none. Only channels that exist are remembered, so
/// the maps are bounded by the number of channels.
#[derive(Default)]
pub struct WebhookCache {
    channels: Mutex<HashMap<String, (Instant, Arc<Opened>)>>,
    meta_routes: Mutex<HashMap<i64, (Instant, Arc<MetaRoutes>)>>,
}

impl WebhookCache {
    /// The named channel and its credentials if it exists and is one `accepts` allows; 404
    /// otherwise.
    async fn open(
        &self,
        state: &AppState,
        name: &str,
        accepts: impl Fn(ChannelKind) -> bool,
    ) -> Result<Arc<Opened>, ApiError> {
        let cached = self.channels.lock().ok().and_then(|channels| {
            channels
                .get(name)
                .filter(|(at, _)| at.elapsed() < WEBHOOK_CACHE_TTL)
                .map(|(_, opened)| opened.clone())
        });
        let opened = match cached {
            Some(opened) => opened,
            None => {
                let channel = match state.store.channel_by_name(name).await? {
                    Some(channel) => channel,
                    None => return Err(not_found(state)),
                };
                let credentials = open_credentials(state, &channel).await?;
                let opened = Arc::new(Opened {
                    channel,
                    credentials,
                });
                if let Ok(mut channels) = self.channels.lock() {
                    channels.insert(name.to_owned(), (Instant::now(), opened.clone()));
                }
                opened
            }
        };
        if accepts(opened.channel.kind) {
            Ok(opened)
        } else {
            Err(not_found(state))
        }
    }

    /// The Meta routes for deliveries to `webhook` signed with `app_secret`.
    async fn meta_routes(
        &self,
        state: &AppState,
        webhook: &Channel,
        app_secret: &str,
    ) -> Result<Arc<MetaRoutes>, ApiError> {
        let cached = self.meta_routes.lock().ok().and_then(|routes| {
            routes
                .get(&webhook.id.0)
                .filter(|(at, routes)| {
                    at.elapsed() < WEBHOOK_CACHE_TTL
                        && balie_channels::signature::constant_time_eq(
                            routes.app_secret.expose().as_bytes(),
                            app_secret.as_bytes(),
                        )
                })
                .map(|(_, routes)| routes.clone())
        });
        if let Some(routes) = cached {
            return Ok(routes);
        }
        let routes = Arc::new(MetaRoutes::load(state, webhook, app_secret).await?);
        if let Ok(mut cache) = self.meta_routes.lock() {
            cache.insert(webhook.id.0, (Instant::now(), routes.clone()));
        }
        Ok(routes)
    }
}

fn not_found(state: &AppState) -> ApiError {
    Metrics::inc(&state.metrics.requests_rejected, 1);
    ApiError::NotFound("webhook channel")
}

async fn open_credentials(state: &AppState, channel: &Channel) -> Result<Credentials, ApiError> {
    Ok(platform_channels::credentials(state.store.as_ref(), &state.channel_keys, channel).await?)
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// A request that failed its signature check: counted, logged without secrets, 401.
fn forged(state: &AppState, platform: &str, channel: &str, why: &str) -> Response {
    Metrics::inc(&state.metrics.signatures_rejected, 1);
    tracing::warn!(platform, channel, why, "webhook signature rejected");
    (
        StatusCode::UNAUTHORIZED,
        axum::Json(json!({ "error": "invalid or missing signature" })),
    )
        .into_response()
}

/// A signed body that is not the platform's webhook envelope: 400, counted and logged.
fn refused(state: &AppState, platform: &str, channel: &str, e: &dyn std::fmt::Display) -> ApiError {
    Metrics::inc(&state.metrics.requests_rejected, 1);
    tracing::warn!(platform, channel, error = %e, "webhook body refused");
    ApiError::bad(e.to_string())
}

fn expose(secret: Option<&Secret>) -> &str {
    secret.map_or("", Secret::expose)
}

/// Journals `events` in one durable append; answers with what was new.
async fn journal(
    state: &AppState,
    events: Vec<(Channel, Inbound)>,
) -> Result<(usize, usize), ApiError> {
    if events.is_empty() {
        return Ok((0, 0));
    }
    let received_at = now_ms();
    let entries = events
        .into_iter()
        .map(|(channel, inbound)| NewJournalEntry {
            channel_id: channel.id,
            inbound,
            received_at,
        })
        .collect();
    let appended = state.intake.append(entries).await?;
    let new = appended
        .iter()
        .filter(|a| matches!(a, Appended::New(_)))
        .count();
    Ok((new, appended.len() - new))
}

fn accepted(stored: (usize, usize), skipped: usize, rejected: usize) -> Response {
    (
        StatusCode::OK,
        axum::Json(json!({
            "stored": stored.0,
            "duplicates": stored.1,
            "skipped": skipped,
            "rejected": rejected,
        })),
    )
        .into_response()
}

// ---- Meta --------------------------------------------------------------------------------------

async fn meta_handshake(
    State(state): State<AppState>,
    Extension(cache): Extension<Arc<WebhookCache>>,
    Path(name): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let opened = cache.open(&state, &name, is_meta).await?;
    let (channel, credentials) = (&opened.channel, &opened.credentials);
    let param = |key: &str| query.get(key).map_or("", String::as_str);
    match meta::verify_subscription(
        param("hub.mode"),
        param("hub.verify_token"),
        param("hub.challenge"),
        credentials.get(SecretName::VerifyToken).map(Secret::expose),
    ) {
        Ok(challenge) => {
            tracing::info!(channel = %channel.name, "Meta webhook subscription verified");
            Ok((
                StatusCode::OK,
                [(header::CONTENT_TYPE, "text/plain")],
                challenge,
            )
                .into_response())
        }
        Err(refused) => {
            Metrics::inc(&state.metrics.requests_rejected, 1);
            tracing::warn!(channel = %channel.name, reason = %refused, "Meta webhook subscription refused");
            Ok((
                StatusCode::FORBIDDEN,
                axum::Json(json!({ "error": refused.to_string() })),
            )
                .into_response())
        }
    }
}

async fn meta_events(
    State(state): State<AppState>,
    Extension(cache): Extension<Arc<WebhookCache>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body_or_error(&state, body)?;
    let opened = cache.open(&state, &name, is_meta).await?;
    let (channel, credentials) = (&opened.channel, &opened.credentials);
    let app_secret = expose(credentials.get(SecretName::AppSecret));
    if app_secret.is_empty() {
        return Ok(forged(
            &state,
            "meta",
            &channel.name,
            "no app secret is configured",
        ));
    }
    if !meta::verify_signature(app_secret, &body, header(&headers, "x-hub-signature-256")) {
        return Ok(forged(
            &state,
            "meta",
            &channel.name,
            "X-Hub-Signature-256 does not match",
        ));
    }
    let batch = meta::parse(&body).map_err(|e| refused(&state, "meta", &channel.name, &e))?;
    for rejected in &batch.rejected {
        tracing::warn!(channel = %channel.name, error = %rejected, "Meta event skipped");
    }
    let routes = cache.meta_routes(&state, channel, app_secret).await?;
    let mut events = Vec::with_capacity(batch.events.len());
    let mut skipped = 0;
    for event in batch.events {
        match routes.find(event.channel, &event.account_id) {
            Some(target) => events.push((target.clone(), event.inbound)),
            None => {
                skipped += 1;
                tracing::warn!(
                    webhook = %channel.name,
                    kind = event.channel.as_str(),
                    account = %event.account_id,
                    "Meta event for an account no channel is configured for; skipped"
                );
            }
        }
    }
    for status in &batch.statuses {
        apply_status(&state, &routes, status).await;
    }
    let stored = journal(&state, events).await?;
    Ok(accepted(stored, skipped, batch.rejected.len()))
}

/// Which channel each Meta account's events go to: channels of the event's kind whose
/// settings name that account, and which share the app secret the POST was signed with (or
/// have none of their own).
struct MetaRoutes {
    channels: Vec<(Channel, PlatformSettings)>,
    /// The app secret the routes were chosen for.
    app_secret: Secret,
}

impl MetaRoutes {
    async fn load(state: &AppState, webhook: &Channel, app_secret: &str) -> Result<Self, ApiError> {
        let mut channels = Vec::new();
        for channel in state.store.channels().await? {
            if !is_meta(channel.kind) {
                continue;
            }
            let Ok(settings) = PlatformSettings::parse(&channel.settings) else {
                tracing::warn!(channel = %channel.name, "channel settings are not valid JSON");
                continue;
            };
            if channel.id != webhook.id {
                let own = open_credentials(state, &channel).await?;
                if let Some(other) = own.get(SecretName::AppSecret)
                    && !balie_channels::signature::constant_time_eq(
                        other.expose().as_bytes(),
                        app_secret.as_bytes(),
                    )
                {
                    continue;
                }
            }
            channels.push((channel, settings));
        }
        // The webhook's own channel first, so it wins a tie.
        channels.sort_by_key(|(c, _)| c.id != webhook.id);
        Ok(Self {
            channels,
            app_secret: Secret::new(app_secret.to_owned()),
        })
    }

    fn find(&self, kind: ChannelKind, account_id: &str) -> Option<&Channel> {
        self.channels
            .iter()
            .find(|(c, s)| c.kind == kind && s.account_id(kind) == Some(account_id))
            .map(|(c, _)| c)
    }
}

/// A WhatsApp delivery report: one naming our key confirms the reply it belongs to (also
/// one whose send answer was lost); a failure marks it failed with WhatsApp's reason, so the
/// agent sees it did not arrive (it is never resent by itself).
async fn apply_status(state: &AppState, routes: &MetaRoutes, status: &meta::DeliveryStatus) {
    let Some(channel) = routes.find(ChannelKind::Whatsapp, &status.account_id) else {
        return;
    };
    let failed = status.status == DeliveryState::Failed;
    if failed {
        tracing::warn!(
            channel = %channel.name,
            message = %status.external_id,
            error = status.error.as_deref().unwrap_or(""),
            "WhatsApp reports a reply as not delivered"
        );
    }
    let Some(key) = &status.outbox_key else {
        return;
    };
    let changed = if failed {
        let reason = format!(
            "WhatsApp: not delivered ({})",
            status.error.as_deref().unwrap_or("no reason given")
        );
        state
            .store
            .fail_outbox_by_key(channel.id, key, &reason, now_ms())
            .await
    } else {
        state
            .store
            .confirm_outbox_by_key(channel.id, key, &status.external_id, now_ms())
            .await
    };
    match changed {
        Ok(true) => state.live_tx.send_modify(|v| *v += 1),
        Ok(false) => {}
        Err(e) => tracing::error!(error = %e, "recording a WhatsApp status failed"),
    }
}

// ---- X -----------------------------------------------------------------------------------------

async fn x_crc(
    State(state): State<AppState>,
    Extension(cache): Extension<Arc<WebhookCache>>,
    Path(name): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let opened = cache.open(&state, &name, |k| k == ChannelKind::X).await?;
    let (channel, credentials) = (&opened.channel, &opened.credentials);
    let Some(token) = query.get("crc_token").filter(|t| !t.is_empty()) else {
        Metrics::inc(&state.metrics.requests_rejected, 1);
        return Err(ApiError::field("crc_token", "crc_token is missing"));
    };
    let Some(secret) = credentials.get(SecretName::ConsumerSecret) else {
        Metrics::inc(&state.metrics.requests_rejected, 1);
        tracing::warn!(channel = %channel.name, "X CRC refused: no consumer secret is configured");
        return Ok((
            StatusCode::FORBIDDEN,
            axum::Json(json!({ "error": "no consumer secret is configured" })),
        )
            .into_response());
    };
    // Only a token that looks like X's challenge is signed: the answer is the HMAC that also
    // signs deliveries, so signing anything else would let a caller forge webhook bodies.
    let Some(answer) = x::crc_response(secret.expose(), token) else {
        Metrics::inc(&state.metrics.requests_rejected, 1);
        tracing::warn!(channel = %channel.name, "X CRC refused: crc_token is not a challenge token");
        return Err(ApiError::field(
            "crc_token",
            "crc_token must be 1 to 128 URL-safe base64 characters",
        ));
    };
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        answer,
    )
        .into_response())
}

async fn x_events(
    State(state): State<AppState>,
    Extension(cache): Extension<Arc<WebhookCache>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body_or_error(&state, body)?;
    let opened = cache.open(&state, &name, |k| k == ChannelKind::X).await?;
    let (channel, credentials) = (&opened.channel, &opened.credentials);
    let secret = expose(credentials.get(SecretName::ConsumerSecret));
    if !x::verify_signature(
        secret,
        &body,
        header(&headers, "x-twitter-webhooks-signature"),
    ) {
        return Ok(forged(
            &state,
            "x",
            &channel.name,
            "x-twitter-webhooks-signature does not match",
        ));
    }
    let batch = x::parse(&body).map_err(|e| refused(&state, "x", &channel.name, &e))?;
    for rejected in &batch.rejected {
        tracing::warn!(channel = %channel.name, error = %rejected, "X event skipped");
    }
    let settings = PlatformSettings::parse(&channel.settings).unwrap_or_default();
    if let Some(ours) = settings.x_user_id.as_deref()
        && ours != batch.for_user_id
    {
        tracing::warn!(
            channel = %channel.name,
            for_user_id = %batch.for_user_id,
            "X events for another account than this channel's; skipped"
        );
        return Ok(accepted((0, 0), batch.events.len(), batch.rejected.len()));
    }
    let events = batch
        .events
        .into_iter()
        .map(|inbound| (channel.clone(), inbound))
        .collect();
    let stored = journal(&state, events).await?;
    Ok(accepted(stored, 0, batch.rejected.len()))
}

// ---- Telegram ----------------------------------------------------------------------------------

async fn telegram_update(
    State(state): State<AppState>,
    Extension(cache): Extension<Arc<WebhookCache>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body_or_error(&state, body)?;
    let opened = cache
        .open(&state, &name, |k| k == ChannelKind::Telegram)
        .await?;
    let (channel, credentials) = (&opened.channel, &opened.credentials);
    if !telegram::verify_secret_token(
        credentials.get(SecretName::SecretToken).map(Secret::expose),
        header(&headers, "x-telegram-bot-api-secret-token"),
    ) {
        return Ok(forged(
            &state,
            "telegram",
            &channel.name,
            "X-Telegram-Bot-Api-Secret-Token does not match",
        ));
    }
    let update =
        telegram::parse(&body).map_err(|e| refused(&state, "telegram", &channel.name, &e))?;
    let events = update
        .event
        .into_iter()
        .map(|inbound| (channel.clone(), inbound))
        .collect();
    let stored = journal(&state, events).await?;
    Ok(accepted(stored, 0, 0))
}
