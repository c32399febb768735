//! Platform webhooks: `/webhooks/meta/{channel}`, `/webhooks/x/{channel}` and
//! `/webhooks/telegram/{channel}`. Each POST is verified over the raw body bytes before any
//! parsing, then every event it carries is journalled in one durable append before the 2xx.
//!
//! A forged or unsigned request gets 401, stores nothing, counts in
//! `balie_signatures_rejected_total` and logs the channel and reason, never a secret.
//!
//! Nothing answered 2xx is lost without a trace: every event a delivery carried is journalled
//! (as a message, an edit, a notice, or kept unread for a later version), or it is counted in
//! `balie_webhook_events_dropped_total{platform,reason}` and logged with what and why.

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
use balie_channels::{DropReason, Dropped, Secret, Unreadable, outcome, telegram, x};
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

/// Counts and logs an event set aside: everyday ones (receipts, reactions, the brand's own
/// activity) at debug level, the rest at info, malformed ones as warnings.
fn dropped(state: &AppState, platform: &'static str, channel: &str, event: &Dropped) {
    state
        .metrics
        .webhook_dropped(platform, event.reason.as_str());
    let (what, reason) = (event.what.as_str(), event.reason.as_str());
    match event.reason {
        r if r.routine() => {
            tracing::debug!(platform, channel, what, reason, "webhook event set aside");
        }
        DropReason::Malformed => {
            tracing::warn!(platform, channel, what, reason, "webhook event set aside");
        }
        _ => tracing::info!(platform, channel, what, reason, "webhook event set aside"),
    }
}

/// Counts and logs an event kept unread, and hands back its inbound to journal.
fn kept_unread(
    state: &AppState,
    platform: &'static str,
    channel: &str,
    unread: Unreadable,
) -> Inbound {
    state.metrics.webhook_unread(platform);
    tracing::warn!(
        platform,
        channel,
        why = %unread.why,
        "webhook event Balie cannot read yet; kept in the journal"
    );
    unread.inbound
}

/// What became of a delivery's events, for the platform's (and a person's) eyes: journalled
/// new or again (`stored`, `duplicates`; `unread` of them kept unread), set aside (`skipped`),
/// or applied as delivery statuses (`statuses`). Every event is in exactly one count.
#[derive(Default)]
struct Tally {
    stored: (usize, usize),
    skipped: usize,
    unread: usize,
    statuses: usize,
}

fn accepted(tally: Tally) -> Response {
    (
        StatusCode::OK,
        axum::Json(json!({
            "stored": tally.stored.0,
            "duplicates": tally.stored.1,
            "skipped": tally.skipped,
            "unread": tally.unread,
            "statuses": tally.statuses,
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
    let batch = meta::parse_for_channel(&body, channel.kind)
        .map_err(|e| refused(&state, "meta", &channel.name, &e))?;
    let routes = cache.meta_routes(&state, channel, app_secret).await?;
    let mut events = Vec::with_capacity(batch.events.len());
    let mut unread = 0;
    for event in batch.events {
        // A delivery that does not name the account (a dashboard test) is for this channel.
        let target = if event.account_id.is_empty() && accepts(channel.kind, event.channel) {
            Some(channel)
        } else {
            routes.find(event.channel, &event.account_id)
        };
        match target {
            Some(target) => events.push((target.clone(), event.inbound)),
            None => {
                // A customer's words for an account no channel is set up for: kept, not lost.
                unread += 1;
                let raw = serde_json::to_value(&event.inbound).unwrap_or_default();
                let why = format!(
                    "a {} event for account {}, which no channel is set up for",
                    event.channel.as_str(),
                    event.account_id
                );
                let inbound = kept_unread(
                    &state,
                    "meta",
                    &channel.name,
                    Unreadable {
                        why,
                        inbound: outcome::unread(&raw),
                    },
                );
                events.push((channel.clone(), inbound));
            }
        }
    }
    for event in &batch.dropped {
        dropped(&state, "meta", &channel.name, event);
    }
    unread += batch.unread.len();
    for event in batch.unread {
        let inbound = kept_unread(&state, "meta", &channel.name, event);
        events.push((channel.clone(), inbound));
    }
    let mut skipped = batch.dropped.len();
    let mut statuses = 0;
    for status in &batch.statuses {
        if apply_status(&state, &routes, status).await {
            statuses += 1;
        } else {
            skipped += 1;
        }
    }
    let stored = journal(&state, events).await?;
    Ok(accepted(Tally {
        stored,
        skipped,
        unread,
        statuses,
    }))
}

/// Whether a channel of kind `channel` takes events of kind `event`: its own, and for a
/// Facebook Page channel also the Page's Messenger DMs.
fn accepts(channel: ChannelKind, event: ChannelKind) -> bool {
    channel == event || (channel == ChannelKind::FacebookPage && event == ChannelKind::Messenger)
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

    /// The channel for events of `kind` from `account_id`: one of that kind first; Messenger
    /// DMs of a Page without a Messenger channel go to the Page's channel.
    fn find(&self, kind: ChannelKind, account_id: &str) -> Option<&Channel> {
        let of = |k: ChannelKind| {
            self.channels
                .iter()
                .find(|(c, s)| c.kind == k && s.account_id(k) == Some(account_id))
                .map(|(c, _)| c)
        };
        of(kind).or_else(|| {
            (kind == ChannelKind::Messenger)
                .then(|| of(ChannelKind::FacebookPage))
                .flatten()
        })
    }
}

/// A WhatsApp delivery report: one naming our key confirms the reply it belongs to (also
/// one whose send answer was lost); a failure marks it failed with WhatsApp's reason, so the
/// agent sees it did not arrive (it is never resent by itself). A report for a message Balie
/// did not send is counted as set aside and logged once (a failure as a warning). Returns
/// whether the report was about one of Balie's replies.
async fn apply_status(
    state: &AppState,
    routes: &MetaRoutes,
    status: &meta::DeliveryStatus,
) -> bool {
    let Some(channel) = routes.find(ChannelKind::Whatsapp, &status.account_id) else {
        let what = format!("WhatsApp status for account {}", status.account_id);
        let event = Dropped::new(DropReason::NotConversation, what);
        dropped(state, "meta", "", &event);
        return false;
    };
    let failed = status.status == DeliveryState::Failed;
    let reason = status.error.as_deref().unwrap_or("no reason given");
    let changed = match &status.outbox_key {
        None => Ok(false),
        Some(key) if failed => {
            let why = format!("WhatsApp: not delivered ({reason})");
            state
                .store
                .fail_outbox_by_key(channel.id, key, &why, now_ms())
                .await
        }
        Some(key) => {
            state
                .store
                .confirm_outbox_by_key(channel.id, key, &status.external_id, now_ms())
                .await
        }
    };
    match changed {
        Ok(true) => {
            if failed {
                tracing::warn!(
                    channel = %channel.name,
                    wamid = %status.external_id,
                    error = reason,
                    "WhatsApp reports a reply as not delivered"
                );
            }
            state.live_tx.send_modify(|v| *v += 1);
            true
        }
        // Ours, already recorded (a repeated report, or `read` after `delivered`).
        Ok(false) if status.outbox_key.is_some() && !failed => true,
        Ok(false) => {
            state
                .metrics
                .webhook_dropped("meta", DropReason::UnknownMessage.as_str());
            if failed {
                tracing::warn!(
                    channel = %channel.name,
                    wamid = %status.external_id,
                    error = reason,
                    "WhatsApp reports a message Balie did not send as not delivered"
                );
            } else {
                tracing::debug!(
                    channel = %channel.name,
                    wamid = %status.external_id,
                    "WhatsApp status for a message Balie did not send; set aside"
                );
            }
            false
        }
        Err(e) => {
            tracing::error!(error = %e, "recording a WhatsApp status failed");
            true
        }
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
    for event in &batch.dropped {
        dropped(&state, "x", &channel.name, event);
    }
    let settings = PlatformSettings::parse(&channel.settings).unwrap_or_default();
    let theirs = settings
        .x_user_id
        .as_deref()
        .is_some_and(|ours| ours != batch.for_user_id);
    let mut unread = batch.unread;
    let mut events = Vec::with_capacity(batch.events.len());
    for inbound in batch.events {
        if theirs {
            // Another account's events on this channel's URL: kept, not shown here.
            let raw = serde_json::to_value(&inbound).unwrap_or_default();
            unread.push(Unreadable {
                why: format!(
                    "an event for X account {}, not this channel's",
                    batch.for_user_id
                ),
                inbound: outcome::unread(&raw),
            });
        } else {
            events.push((channel.clone(), inbound));
        }
    }
    let kept = unread.len();
    for event in unread {
        let inbound = kept_unread(&state, "x", &channel.name, event);
        events.push((channel.clone(), inbound));
    }
    let stored = journal(&state, events).await?;
    Ok(accepted(Tally {
        stored,
        skipped: batch.dropped.len(),
        unread: kept,
        statuses: 0,
    }))
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
    let mut events = Vec::new();
    if let Some(inbound) = update.event {
        events.push((channel.clone(), inbound));
    }
    if let Some(event) = &update.dropped {
        dropped(&state, "telegram", &channel.name, event);
    }
    let kept = usize::from(update.unread.is_some());
    if let Some(event) = update.unread {
        let inbound = kept_unread(&state, "telegram", &channel.name, event);
        events.push((channel.clone(), inbound));
    }
    let stored = journal(&state, events).await?;
    Ok(accepted(Tally {
        stored,
        skipped: usize::from(update.dropped.is_some()),
        unread: kept,
        statuses: 0,
    }))
}
