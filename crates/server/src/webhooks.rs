//! Platform webhooks: `/webhooks/{platform}/{channel}`, one route for every push connector
//! (`balie_channels::connector`), which says how its handshake is answered, how a delivery is
//! verified and parsed and where its events belong. Each POST is verified over the raw body
//! bytes before any parsing, then every event it carries is journalled in one durable append
//! before the 2xx.
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
use balie_channels::connector::{self, Receiving, Routed, RoutedStatus, Webhook};
use balie_channels::meta::DeliveryState;
use balie_channels::{
    Connector, Credentials, DropReason, Dropped, Handshake, Secret, SecretName, Unreadable, outcome,
};
use balie_core::{Channel, ChannelId, ChannelKind, Inbound};
use balie_store::{Appended, NewJournalEntry};
use serde_json::json;

use crate::AppState;
use crate::api::body_or_error;
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::platform_channels::{self, PlatformSettings};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/webhooks/{platform}/{channel}",
            get(handshake).post(delivery),
        )
        .layer(Extension(Arc::new(WebhookCache::default())))
}

/// How long a webhook channel, its opened credentials and its routes are taken from memory
/// before the store is asked again: a changed secret or a removed channel takes effect within
/// this time.
const WEBHOOK_CACHE_TTL: Duration = Duration::from_secs(10);

/// A webhook channel with its opened credentials (kept as [`Secret`]s, never logged).
struct Opened {
    channel: Channel,
    credentials: Credentials,
}

/// What the platform webhooks looked up recently: each channel by name with its opened
/// credentials, and each webhook's routes. Every store read is a round trip to the database
/// (a thread hop on SQLite) plus a decryption, and these were paid on every delivery; a hot
/// channel now costs none. Only channels that exist are remembered, so the maps are bounded
/// by the number of channels.
#[derive(Default)]
pub struct WebhookCache {
    channels: Mutex<HashMap<String, (Instant, Arc<Opened>)>>,
    routes: Mutex<HashMap<ChannelId, (Instant, Arc<Routes>)>>,
}

impl WebhookCache {
    /// The named channel and its credentials if it exists and `connector` serves its kind;
    /// 404 otherwise.
    async fn open(
        &self,
        state: &AppState,
        name: &str,
        connector: &Connector,
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
        if connector.kinds.contains(&opened.channel.kind) {
            Ok(opened)
        } else {
            Err(not_found(state))
        }
    }

    /// The routes for deliveries to `webhook` signed with `secret`.
    async fn routes(
        &self,
        state: &AppState,
        connector: &'static Connector,
        webhook: &Channel,
        signing: SecretName,
        secret: &str,
    ) -> Result<Arc<Routes>, ApiError> {
        let cached = self.routes.lock().ok().and_then(|routes| {
            routes
                .get(&webhook.id)
                .filter(|(at, routes)| {
                    at.elapsed() < WEBHOOK_CACHE_TTL
                        && balie_channels::signature::constant_time_eq(
                            routes.secret.expose().as_bytes(),
                            secret.as_bytes(),
                        )
                })
                .map(|(_, routes)| routes.clone())
        });
        if let Some(routes) = cached {
            return Ok(routes);
        }
        let routes = Arc::new(Routes::load(state, connector, webhook, signing, secret).await?);
        if let Ok(mut cache) = self.routes.lock() {
            cache.insert(webhook.id, (Instant::now(), routes.clone()));
        }
        Ok(routes)
    }
}

/// The push connector for `/webhooks/{platform}/...`; 404 for any other segment.
fn push_connector(
    state: &AppState,
    platform: &str,
) -> Result<(&'static Connector, &'static dyn Webhook), ApiError> {
    match connector::for_webhook(platform) {
        Some(connector) => match connector.receiving {
            Receiving::Push(webhook) => Ok((connector, webhook)),
            Receiving::Pull(_) => Err(not_found(state)),
        },
        None => Err(not_found(state)),
    }
}

fn not_found(state: &AppState) -> ApiError {
    Metrics::inc(&state.metrics.requests_rejected, 1);
    ApiError::NotFound("webhook channel")
}

async fn open_credentials(state: &AppState, channel: &Channel) -> Result<Credentials, ApiError> {
    Ok(platform_channels::credentials(state.store.as_ref(), &state.channel_keys, channel).await?)
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

/// Journals `events` in one durable append; answers with what was new.
async fn journal(
    state: &AppState,
    events: Vec<(Channel, Inbound)>,
) -> Result<(usize, usize), ApiError> {
    if events.is_empty() {
        return Ok((0, 0));
    }
    let received_at = state.clock.now();
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

// ---- Handshake and delivery -------------------------------------------------------------------

async fn handshake(
    State(state): State<AppState>,
    Extension(cache): Extension<Arc<WebhookCache>>,
    Path((platform, name)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let (connector, webhook) = push_connector(&state, &platform)?;
    let opened = cache.open(&state, &name, connector).await?;
    let channel = &opened.channel.name;
    let platform = connector.name;
    match webhook.handshake(&query, &opened.credentials) {
        None => Ok(StatusCode::METHOD_NOT_ALLOWED.into_response()),
        Some(Handshake::Answer { content_type, body }) => {
            tracing::info!(platform, channel = %channel, "webhook handshake answered");
            Ok((StatusCode::OK, [(header::CONTENT_TYPE, content_type)], body).into_response())
        }
        Some(Handshake::Refused(reason)) => {
            Metrics::inc(&state.metrics.requests_rejected, 1);
            tracing::warn!(platform, channel = %channel, %reason, "webhook handshake refused");
            Ok((
                StatusCode::FORBIDDEN,
                axum::Json(json!({ "error": reason })),
            )
                .into_response())
        }
        Some(Handshake::BadInput { field, reason }) => {
            Metrics::inc(&state.metrics.requests_rejected, 1);
            tracing::warn!(platform, channel = %channel, %reason, "webhook handshake refused");
            Err(ApiError::field(field, reason))
        }
    }
}

async fn delivery(
    State(state): State<AppState>,
    Extension(cache): Extension<Arc<WebhookCache>>,
    Path((platform, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body_or_error(&state, body)?;
    let (connector, webhook) = push_connector(&state, &platform)?;
    let opened = cache.open(&state, &name, connector).await?;
    let (channel, credentials) = (&opened.channel, &opened.credentials);
    let platform = connector.name;
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Err(why) = webhook.verify(credentials, &header, &body) {
        return Ok(forged(&state, platform, &channel.name, why));
    }
    let delivery = webhook
        .parse(&body, channel.kind)
        .map_err(|e| refused(&state, platform, &channel.name, &e))?;
    let signing = webhook.signing_secret();
    let secret = credentials.get(signing).map_or("", Secret::expose);
    let routes = cache
        .routes(&state, connector, channel, signing, secret)
        .await?;
    let mut events = Vec::with_capacity(delivery.events.len());
    let mut unread = 0;
    for Routed {
        kind,
        account_id,
        inbound,
    } in delivery.events
    {
        match routes.find(kind, account_id.as_deref()) {
            Some(target) => events.push((target.clone(), inbound)),
            None => {
                // A customer's words for an account no channel is set up for: kept, not lost.
                unread += 1;
                let raw = serde_json::to_value(&inbound).unwrap_or_default();
                let why = format!(
                    "a {} event for account {}, which no channel is set up for",
                    kind.as_str(),
                    account_id.as_deref().unwrap_or("-")
                );
                let inbound = kept_unread(
                    &state,
                    platform,
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
    for event in &delivery.dropped {
        dropped(&state, platform, &channel.name, event);
    }
    unread += delivery.unread.len();
    for event in delivery.unread {
        let inbound = kept_unread(&state, platform, &channel.name, event);
        events.push((channel.clone(), inbound));
    }
    let mut skipped = delivery.dropped.len();
    let mut statuses = 0;
    for status in &delivery.statuses {
        if apply_status(&state, platform, &routes, status).await {
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

/// Which channel each event of a delivery goes to: channels of the same connector that share
/// the secret the delivery was signed with (or have none of their own), the webhook's own
/// channel first.
struct Routes {
    connector: &'static Connector,
    channels: Vec<(Channel, PlatformSettings)>,
    /// The webhook's own channel.
    own: ChannelId,
    /// The signing secret the routes were chosen for.
    secret: Secret,
}

impl Routes {
    async fn load(
        state: &AppState,
        connector: &'static Connector,
        webhook: &Channel,
        signing: SecretName,
        secret: &str,
    ) -> Result<Self, ApiError> {
        let mut channels = Vec::new();
        for channel in state.store.channels().await? {
            if !connector.kinds.contains(&channel.kind) {
                continue;
            }
            let Ok(settings) = PlatformSettings::parse(&channel.settings) else {
                tracing::warn!(channel = %channel.name, "channel settings are not valid JSON");
                continue;
            };
            if channel.id != webhook.id {
                let own = open_credentials(state, &channel).await?;
                if let Some(other) = own.get(signing)
                    && !balie_channels::signature::constant_time_eq(
                        other.expose().as_bytes(),
                        secret.as_bytes(),
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
            connector,
            channels,
            own: webhook.id,
            secret: Secret::new(secret.to_owned()),
        })
    }

    /// The channel for an event of `kind` from `account` (`None`: the delivery did not say,
    /// so the webhook's own channel): one of that kind standing for the account first, then
    /// one that also takes that kind, then the webhook's own channel if it names no account.
    fn find(&self, kind: ChannelKind, account: Option<&str>) -> Option<&Channel> {
        let own = self.channels.iter().find(|(c, _)| c.id == self.own);
        let takes = |c: &Channel| self.connector.takes(c.kind, kind);
        let Some(account) = account else {
            return own.map(|(c, _)| c).filter(|c| takes(c));
        };
        let standing = |c: &Channel, s: &PlatformSettings| s.account_id(c.kind) == Some(account);
        self.channels
            .iter()
            .find(|(c, s)| c.kind == kind && standing(c, s))
            .or_else(|| {
                self.channels
                    .iter()
                    .find(|(c, s)| takes(c) && standing(c, s))
            })
            .or_else(|| own.filter(|(c, s)| takes(c) && s.account_id(c.kind).is_none()))
            .map(|(c, _)| c)
    }
}

/// A delivery report (WhatsApp's statuses): one naming our key confirms the reply it belongs
/// to (also one whose send answer was lost); a failure marks it failed with the platform's
/// reason, so the agent sees it did not arrive (it is never resent by itself). A report for a message Balie
/// did not send is counted as set aside and logged once (a failure as a warning). Returns
/// whether the report was about one of Balie's replies.
async fn apply_status(
    state: &AppState,
    platform: &'static str,
    routes: &Routes,
    routed: &RoutedStatus,
) -> bool {
    let (label, status) = (routed.platform, &routed.status);
    let Some(channel) = routes.find(routed.kind, Some(&status.account_id)) else {
        let what = format!("{label} status for account {}", status.account_id);
        let event = Dropped::new(DropReason::NotConversation, what);
        dropped(state, platform, "", &event);
        return false;
    };
    let failed = status.status == DeliveryState::Failed;
    let reason = status.error.as_deref().unwrap_or("no reason given");
    let changed = match &status.outbox_key {
        None => Ok(false),
        Some(key) if failed => {
            let why = format!("{label}: not delivered ({reason})");
            state
                .store
                .fail_outbox_by_key(channel.id, key, &why, state.clock.now())
                .await
        }
        Some(key) => {
            state
                .store
                .confirm_outbox_by_key(channel.id, key, &status.external_id, state.clock.now())
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
                    "the platform reports a reply as not delivered"
                );
            }
            true
        }
        // Ours, already recorded (a repeated report, or `read` after `delivered`).
        Ok(false) if status.outbox_key.is_some() && !failed => true,
        Ok(false) => {
            state
                .metrics
                .webhook_dropped(platform, DropReason::UnknownMessage.as_str());
            if failed {
                tracing::warn!(
                    channel = %channel.name,
                    wamid = %status.external_id,
                    error = reason,
                    "the platform reports a message Balie did not send as not delivered"
                );
            } else {
                tracing::debug!(
                    channel = %channel.name,
                    wamid = %status.external_id,
                    "a status for a message Balie did not send; set aside"
                );
            }
            false
        }
        Err(e) => {
            tracing::error!(error = %e, platform = label, "recording a delivery status failed");
            true
        }
    }
}
