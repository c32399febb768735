//! The JSON API: the generic inbound channel (`POST /api/v1/messages`) and the
//! conversation listing (`GET /api/v1/conversations`), plus health and metrics.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use balie_core::{
    Author, BrandId, Channel, ChannelKind, ConversationStatus, Inbound, InboundKind, Millis, Place,
    PlaceKind,
};
use balie_store::{Appended, NewJournalEntry, StoreError};
use serde::Deserialize;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::{AppState, auth};

const MAX_TEXT_BYTES: usize = 64 * 1024;
const MAX_ID_BYTES: usize = 512;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/api/v1/messages",
            post(post_message).layer(Extension(Arc::new(HotCache::default()))),
        )
        .route("/api/v1/conversations", get(list_conversations))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
}

/// The token of an `Authorization: Bearer <token>` header, if there is one.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get("authorization")?.to_str().ok()?;
    let token = value.strip_prefix("Bearer ")?.trim();
    (!token.is_empty()).then_some(token)
}

/// How long a verified API token is taken on trust before the store is asked again.
const TOKEN_RECHECK: Duration = Duration::from_secs(10);
/// Entries kept per map; a full map starts over.
const HOT_CACHE_ENTRIES: usize = 10_000;

/// What `POST /api/v1/messages` looked up recently: verified token hashes and API channels
/// by name. Each store read is a round trip to SQLite's worker thread, and these two were
/// paid on every inbound message. API channels are never renamed or removed; a token is
/// checked with the store again after [`TOKEN_RECHECK`].
#[derive(Default)]
pub struct HotCache {
    tokens: Mutex<HashMap<String, (Instant, BrandId)>>,
    channels: Mutex<HashMap<String, Channel>>,
}

impl HotCache {
    /// The brand the request's API token acts for, if it carries a live one.
    async fn token_brand(
        &self,
        state: &AppState,
        headers: &HeaderMap,
    ) -> Result<Option<BrandId>, ApiError> {
        let Some(token) = bearer_token(headers) else {
            return Ok(None);
        };
        let hash = auth::token_hash(token);
        let fresh = self.tokens.lock().ok().and_then(|tokens| {
            tokens
                .get(&hash)
                .filter(|(checked, _)| checked.elapsed() < TOKEN_RECHECK)
                .map(|(_, brand)| *brand)
        });
        if fresh.is_some() {
            return Ok(fresh);
        }
        let brand = state.store.api_token_brand(&hash).await?;
        if let Some(brand) = brand
            && let Ok(mut tokens) = self.tokens.lock()
        {
            if tokens.len() >= HOT_CACHE_ENTRIES {
                tokens.clear();
            }
            tokens.insert(hash, (Instant::now(), brand));
        }
        Ok(brand)
    }

    fn channel(&self, name: &str) -> Option<Channel> {
        self.channels.lock().ok()?.get(name).cloned()
    }

    fn remember_channel(&self, channel: &Channel) {
        if let Ok(mut channels) = self.channels.lock() {
            if channels.len() >= HOT_CACHE_ENTRIES {
                channels.clear();
            }
            channels.insert(channel.name.clone(), channel.clone());
        }
    }
}

/// A valid generic-channel message, parsed from untrusted JSON.
#[derive(Debug, PartialEq)]
pub struct ApiMessage {
    pub channel: String,
    pub inbound: Inbound,
}

fn string_field<'a>(
    obj: &'a serde_json::Map<String, Value>,
    name: &str,
    path: &str,
    required: bool,
    max: usize,
) -> Result<Option<&'a str>, ApiError> {
    match obj.get(name) {
        None | Some(Value::Null) if !required => Ok(None),
        None | Some(Value::Null) => Err(ApiError::field(path, format!("`{path}` is required"))),
        Some(Value::String(s)) => {
            if required && s.trim().is_empty() {
                return Err(ApiError::field(path, format!("`{path}` must not be empty")));
            }
            if s.len() > max {
                return Err(ApiError::field(
                    path,
                    format!("`{path}` is longer than {max} bytes"),
                ));
            }
            Ok(Some(s.as_str()))
        }
        Some(_) => Err(ApiError::field(path, format!("`{path}` must be a string"))),
    }
}

/// Parses and checks the body of `POST /api/v1/messages`; names the first bad field.
pub fn parse_api_message(body: &[u8], now: Millis) -> Result<ApiMessage, ApiError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad(format!("body is not valid JSON: {e}")))?;
    let Value::Object(obj) = value else {
        return Err(ApiError::bad("body must be a JSON object"));
    };
    let channel = string_field(&obj, "channel", "channel", true, 100)?.unwrap_or_default();
    let external_id =
        string_field(&obj, "external_id", "external_id", true, MAX_ID_BYTES)?.unwrap_or_default();
    let text = string_field(&obj, "text", "text", true, MAX_TEXT_BYTES)?.unwrap_or_default();
    let in_reply_to = string_field(&obj, "in_reply_to", "in_reply_to", false, MAX_ID_BYTES)?;
    let author = match obj.get("author") {
        Some(Value::Object(a)) => a,
        None | Some(Value::Null) => return Err(ApiError::field("author", "`author` is required")),
        Some(_) => return Err(ApiError::field("author", "`author` must be an object")),
    };
    let author_id =
        string_field(author, "id", "author.id", true, MAX_ID_BYTES)?.unwrap_or_default();
    let handle = string_field(author, "handle", "author.handle", false, 200)?;
    let name = string_field(author, "name", "author.name", false, 200)?;
    let created_at = match string_field(&obj, "created_at", "created_at", false, 64)? {
        None => now,
        Some(s) => {
            let t = OffsetDateTime::parse(s, &Rfc3339).map_err(|_| {
                ApiError::field("created_at", "`created_at` must be an RFC 3339 date-time")
            })?;
            i64::try_from(t.unix_timestamp_nanos() / 1_000_000)
                .map_err(|_| ApiError::field("created_at", "`created_at` is out of range"))?
        }
    };
    Ok(ApiMessage {
        channel: channel.to_string(),
        inbound: Inbound {
            external_id: external_id.to_string(),
            kind: InboundKind::Message,
            author: Author {
                platform_id: author_id.to_string(),
                handle: handle.map(str::to_string),
                name: name.map(str::to_string),
            },
            text: text.to_string(),
            in_reply_to: in_reply_to.map(str::to_string),
            thread_key: None,
            place: Some(Place {
                kind: PlaceKind::Api,
                url: None,
            }),
            created_at,
            account_id: None,
            attachments: Vec::new(),
            revision: None,
            outbox_key: None,
        },
    })
}

/// Reads a body extracted under the size limit; an oversized one is a JSON 413.
pub fn body_or_error(
    state: &AppState,
    body: Result<Bytes, BytesRejection>,
) -> Result<Bytes, ApiError> {
    body.map_err(|rejection| {
        Metrics::inc(&state.metrics.requests_rejected, 1);
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::TooLarge(state.config.max_body_bytes)
        } else {
            ApiError::bad(rejection.body_text())
        }
    })
}

async fn post_message(
    State(state): State<AppState>,
    Extension(cache): Extension<Arc<HotCache>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let Some(brand) = cache.token_brand(&state, &headers).await? else {
        Metrics::inc(&state.metrics.requests_rejected, 1);
        return Err(ApiError::Unauthorized);
    };
    let body = body_or_error(&state, body)?;
    let now = state.clock.now();
    let msg = match parse_api_message(&body, now) {
        Ok(m) => m,
        Err(e) => {
            Metrics::inc(&state.metrics.requests_rejected, 1);
            return Err(e);
        }
    };
    let channel = match cache.channel(&msg.channel) {
        Some(c) => c,
        None => {
            let c = api_channel(&state, brand, &msg.channel).await?;
            cache.remember_channel(&c);
            c
        }
    };
    // Another brand's channel is, for this token, no channel at all.
    if channel.brand_id != brand {
        Metrics::inc(&state.metrics.requests_rejected, 1);
        return Err(ApiError::NotFound("channel"));
    }
    let results = state
        .intake
        .append(vec![NewJournalEntry {
            channel_id: channel.id,
            inbound: msg.inbound,
            received_at: now,
        }])
        .await?;
    let duplicate = matches!(results.first(), Some(Appended::Duplicate));
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "status": "accepted", "duplicate": duplicate })),
    )
        .into_response())
}

/// The API channel called `name`, created on first use in `brand`; another kind of channel
/// by that name is a bad request, another brand's is not found.
async fn api_channel(state: &AppState, brand: BrandId, name: &str) -> Result<Channel, ApiError> {
    let channel = match state.store.channel_by_name(name).await? {
        Some(c) if c.brand_id != brand => return Err(ApiError::NotFound("channel")),
        Some(c) if c.kind == ChannelKind::Api => c,
        Some(_) => {
            Metrics::inc(&state.metrics.requests_rejected, 1);
            return Err(ApiError::field(
                "channel",
                format!("channel `{name}` is not an API channel"),
            ));
        }
        None => {
            // Generic channels come into being on first use, like a mailbox address.
            match state
                .store
                .create_channel(brand, ChannelKind::Api, name, "{}", state.clock.now())
                .await
            {
                Ok(c) => {
                    tracing::info!(channel = %c.name, "created API channel on first use");
                    c
                }
                Err(StoreError::Conflict(_)) => state
                    .store
                    .channel_by_name(name)
                    .await?
                    .ok_or(ApiError::NotFound("channel"))?,
                Err(e) => return Err(e.into()),
            }
        }
    };
    Ok(channel)
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    status: Option<String>,
    limit: Option<i64>,
    /// Where the previous page ended (its `X-Next-Cursor`); absent for the first page.
    cursor: Option<String>,
}

/// Conversations per page by default, and at most.
const PAGE_DEFAULT: i64 = 100;
const PAGE_MAX: i64 = 200;
/// How deep pages may go into one listing.
const LISTING_DEPTH: i64 = 10_000;
/// Messages shown per conversation: the newest ones.
const MESSAGES_PER_CONVERSATION: usize = 100;

fn rfc3339(ms: Option<Millis>) -> Value {
    ms.and_then(|ms| OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok())
        .and_then(|t| t.format(&Rfc3339).ok())
        .map_or(Value::Null, Value::String)
}

/// Waits (briefly) until everything journalled before this request has been processed, so
/// a client that just posted a message sees it.
async fn read_your_writes(state: &AppState) {
    let target = state.intake.last_appended.load(Ordering::SeqCst);
    let mut processed = state.processed.clone();
    let _ =
        tokio::time::timeout(Duration::from_secs(2), processed.wait_for(|p| *p >= target)).await;
}

async fn list_conversations(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Result<Response, ApiError> {
    let Some(brand) = crate::access::reader_brand(&state, &headers).await? else {
        return Err(ApiError::Unauthorized);
    };
    let status = match q.status.as_deref() {
        None => ConversationStatus::Open,
        Some(s) => ConversationStatus::parse(s).ok_or_else(|| {
            ApiError::field(
                "status",
                "`status` must be one of open, pending, snoozed, closed",
            )
        })?,
    };
    let limit = match q.limit {
        None => PAGE_DEFAULT,
        Some(n) if (1..=PAGE_MAX).contains(&n) => n,
        Some(_) => {
            return Err(ApiError::field(
                "limit",
                format!("`limit` must be 1 to {PAGE_MAX}"),
            ));
        }
    };
    // The cursor is the position in the listing's order (priority, then deadline), which
    // moves as conversations change: a page may repeat or miss one that moved meanwhile.
    let offset = match q.cursor.as_deref() {
        None => 0,
        Some(c) => c
            .parse::<i64>()
            .ok()
            .filter(|o| (0..=LISTING_DEPTH - limit).contains(o))
            .ok_or_else(|| ApiError::field("cursor", "`cursor` is not one this API gave"))?,
    };
    read_your_writes(&state).await;
    let rows = state.store.inbox(brand, status, offset + limit + 1).await?;
    let more = rows.len() as i64 > offset + limit;
    let page = rows
        .into_iter()
        .skip(usize::try_from(offset).unwrap_or(0))
        .take(usize::try_from(limit).unwrap_or(0));
    let mut out = Vec::new();
    for row in page {
        let c = &row.conversation;
        let mut messages = state.store.conversation_messages(brand, c.id).await?;
        let omitted = messages.len().saturating_sub(MESSAGES_PER_CONVERSATION);
        messages.drain(..omitted);
        out.push(json!({
            "id": c.id,
            "status": c.status,
            "priority": c.priority,
            "channel": row.channel_name,
            "channel_kind": row.channel_kind,
            "customer": { "id": c.customer_id, "name": row.customer_name },
            "waiting_since": rfc3339(c.waiting_since),
            "reply_due": rfc3339(c.reply_due),
            "deadlines": { "reply_due": rfc3339(c.reply_due) },
            "created_at": rfc3339(Some(c.created_at)),
            "updated_at": rfc3339(Some(c.updated_at)),
            "messages": messages.iter().map(|m| json!({
                "id": m.id,
                "external_id": m.external_id,
                "direction": m.direction,
                "text": m.text,
                "created_at": rfc3339(Some(m.created_at)),
                "delivery": m.delivery,
                "removed": m.removed,
                "place": m.place,
            })).collect::<Vec<_>>(),
            "messages_omitted": omitted,
        }));
    }
    let mut response = Json(Value::Array(out)).into_response();
    let next = offset + limit;
    if more && next + limit <= LISTING_DEPTH {
        let link = format!(
            "</api/v1/conversations?status={}&limit={limit}&cursor={next}>; rel=\"next\"",
            status.as_str()
        );
        for (name, value) in [("x-next-cursor", next.to_string()), ("link", link)] {
            if let Ok(v) = axum::http::HeaderValue::from_str(&value) {
                response.headers_mut().insert(name, v);
            }
        }
    }
    Ok(response)
}

async fn healthz(State(state): State<AppState>) -> Response {
    match state.store.backlogs().await {
        Ok(_) => (StatusCode::OK, "ok\n").into_response(),
        Err(e) => {
            tracing::error!(error = %e, "health check failed");
            (StatusCode::SERVICE_UNAVAILABLE, "store unavailable\n").into_response()
        }
    }
}

async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let b = state.store.backlogs().await?;
    let text = state.metrics.render(b.journal, b.outbox);
    Ok(([("content-type", "text/plain; version=0.0.4")], text).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(body: &str) -> Option<String> {
        match parse_api_message(body.as_bytes(), 0) {
            Err(ApiError::BadRequest { field, .. }) => field,
            other => panic!("expected a bad request for {body}, got {other:?}"),
        }
    }

    #[test]
    fn bad_bodies_name_the_bad_field() {
        let cases = [
            (
                r#"{"external_id":"1","author":{"id":"a"},"text":"hi"}"#,
                Some("channel"),
            ),
            (
                r#"{"channel":"web","author":{"id":"a"},"text":"hi"}"#,
                Some("external_id"),
            ),
            (
                r#"{"channel":"web","external_id":"1","text":"hi"}"#,
                Some("author"),
            ),
            (
                r#"{"channel":"web","external_id":"1","author":{},"text":"hi"}"#,
                Some("author.id"),
            ),
            (
                r#"{"channel":"web","external_id":"1","author":{"id":5},"text":"hi"}"#,
                Some("author.id"),
            ),
            (
                r#"{"channel":"web","external_id":"1","author":{"id":"a"}}"#,
                Some("text"),
            ),
            (
                r#"{"channel":"web","external_id":1,"author":{"id":"a"},"text":"hi"}"#,
                Some("external_id"),
            ),
            (
                r#"{"channel":"web","external_id":"1","author":{"id":"a"},"text":"hi","created_at":"yesterday"}"#,
                Some("created_at"),
            ),
            (
                r#"{"channel":"web","external_id":"1","author":"a","text":"hi"}"#,
                Some("author"),
            ),
            (
                r#"{"channel":"web","external_id":"1","author":{"id":"a"},"text":"  "}"#,
                Some("text"),
            ),
        ];
        for (body, field) in cases {
            assert_eq!(field_of(body).as_deref(), field, "{body}");
        }
        assert_eq!(field_of("{not json"), None);
        assert_eq!(field_of("[1,2]"), None);
    }

    #[test]
    fn a_good_body_becomes_an_inbound_message() {
        let m = parse_api_message(
            br#"{"channel":"web","external_id":"m-1","author":{"id":"c-9","handle":"@kim","name":"Kim"},"text":"Waar blijft mijn pakket?","in_reply_to":"m-0","created_at":"2026-11-23T08:00:00Z","extra":true}"#,
            5,
        )
        .expect("valid");
        assert_eq!(m.channel, "web");
        assert_eq!(m.inbound.external_id, "m-1");
        assert_eq!(m.inbound.author.handle.as_deref(), Some("@kim"));
        assert_eq!(m.inbound.in_reply_to.as_deref(), Some("m-0"));
        assert_eq!(m.inbound.created_at, 1_795_420_800_000);
    }
}
