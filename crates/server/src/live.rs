//! The live stream: Server-Sent Events over the durable event log. Every event carries its
//! log id; a browser that reconnects with `Last-Event-ID` gets exactly what it missed.

use std::convert::Infallible;
use std::time::Duration;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::get;
use balie_core::{BrandId, EventId};
use balie_store::LiveEvent;
use futures_util::Stream;
use serde::Deserialize;

use crate::error::ApiError;
use crate::{AppState, access, api, auth, web};

/// Events read from the log per query.
const PAGE: i64 = 200;
/// How often an open stream asks whether its session or token is still valid: a logged
/// out session or a revoked token stops receiving within this time.
pub const RECHECK: Duration = Duration::from_secs(5);

pub fn routes() -> Router<AppState> {
    Router::new().route("/events", get(events))
}

#[derive(Debug, Deserialize)]
struct EventsQuery {
    /// Start after this event id when there is no `Last-Event-ID` (first connect).
    after: Option<i64>,
}

/// The id to resume after: `Last-Event-ID` wins over `?after=`; neither means "from now".
fn resume_point(headers: &HeaderMap, after: Option<i64>) -> Option<i64> {
    headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<i64>().ok())
        .or(after)
}

/// Whose stream this is, to check it again while it runs.
enum Viewer {
    Session(String),
    Token(String),
}

impl Viewer {
    async fn still_valid(&self, state: &AppState) -> bool {
        let valid = match self {
            Viewer::Session(hash) => state
                .store
                .session_user(hash, state.clock.now())
                .await
                .map(|u| u.is_some()),
            Viewer::Token(hash) => state.store.api_token_brand(hash).await.map(|b| b.is_some()),
        };
        // A store hiccup is not a logout; the next check decides.
        valid.unwrap_or(true)
    }
}

struct Cursor {
    state: AppState,
    viewer: Viewer,
    brand: BrandId,
    checked: tokio::time::Instant,
    /// Changes when a session ends in this process (`AppState::sessions_ended`).
    ended: tokio::sync::watch::Receiver<u64>,
    after: i64,
    buffer: std::collections::VecDeque<LiveEvent>,
    /// The store's count of commits that appended events.
    live: tokio::sync::watch::Receiver<u64>,
    stop: tokio::sync::watch::Receiver<bool>,
}

fn to_sse(e: &LiveEvent) -> Event {
    let data = serde_json::to_string(e).unwrap_or_else(|_| "{}".to_string());
    Event::default().id(e.id.0.to_string()).data(data)
}

async fn events(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<EventsQuery>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    // The stream carries the events of one brand: the signed-in user's current one, or the
    // API token's.
    let (viewer, brand) = if let Some(m) = access::member(&state, &headers).await? {
        m.require(access::Action::Read)?;
        let session = auth::token_hash(&web::session_token(&headers).unwrap_or_default());
        (Viewer::Session(session), m.brand_id())
    } else if let Some(brand) = access::token_brand(&state, &headers).await? {
        let token = auth::token_hash(api::bearer_token(&headers).unwrap_or_default());
        (Viewer::Token(token), brand)
    } else {
        return Err(ApiError::Unauthorized);
    };
    let after = match resume_point(&headers, q.after) {
        Some(id) => id,
        None => state.store.last_event_id().await?.0,
    };
    let mut live = state.store.changes();
    live.mark_changed();
    let stop = state.stop.clone();
    let ended = state.sessions_ended.subscribe();
    let cursor = Cursor {
        state,
        viewer,
        brand,
        checked: tokio::time::Instant::now(),
        ended,
        after,
        buffer: Default::default(),
        live,
        stop,
    };
    let stream = futures_util::stream::unfold(cursor, |mut c| async move {
        loop {
            if let Some(e) = c.buffer.pop_front() {
                c.after = e.id.0;
                let sse = to_sse(&e);
                return Some((Ok(sse), c));
            }
            // Wait for news (or a session ending, or the next periodic check), then read the
            // log from where this client stands.
            let mut recheck = false;
            let news = tokio::select! {
                woke = c.live.changed() => {
                    if woke.is_err() {
                        return None;
                    }
                    true
                }
                _ = c.stop.wait_for(|stopped| *stopped) => return None,
                Ok(()) = c.ended.changed() => {
                    recheck = true;
                    false
                }
                () = tokio::time::sleep_until(c.checked + RECHECK) => false,
            };
            // News and a session's end may come together: the check goes first.
            if c.ended.has_changed().unwrap_or(false) {
                c.ended.borrow_and_update();
                recheck = true;
            }
            if recheck || c.checked.elapsed() >= RECHECK {
                if !c.viewer.still_valid(&c.state).await {
                    return None;
                }
                c.checked = tokio::time::Instant::now();
            }
            if !news {
                continue;
            }
            match c
                .state
                .store
                .events_since(c.brand, EventId(c.after), PAGE)
                .await
            {
                Ok(events) => {
                    let full = events.len() as i64 == PAGE;
                    c.buffer.extend(events);
                    if full {
                        // More waiting: make sure the next turn reads again.
                        c.live.mark_changed();
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "live stream read failed");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    c.live.mark_changed();
                }
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}
