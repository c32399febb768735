//! What every request passes through: who sent it (client address and scheme, see
//! [`Client`]), a refusal of cross-origin state changes made with a session cookie,
//! security headers on every response, and one access-log line (method, path without its
//! query string, status, latency, client address).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Instant;

use axum::Json;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::AppState;
use crate::edge::Client;
use crate::metrics::Metrics;
use crate::web;

/// The policy for anything that is not a page (pages send their own, see `web::Page`).
const CSP_NOT_A_PAGE: &str =
    "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

pub async fn guard(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let start = Instant::now();
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip());
    let client = Client::resolve(
        peer,
        request.headers(),
        &state.proxies,
        state.config.secure_cookies,
    );
    request.extensions_mut().insert(client);
    if client.https {
        // Over HTTPS only the `__Host-` cookie counts: a sibling site can plant a plain one.
        web::drop_plain_session_cookie(request.headers_mut());
    }
    let method = request.method().clone();
    let path: String = request.uri().path().chars().take(256).collect();
    let mut response = if is_cross_origin_change(&state, &request, client) {
        Metrics::inc(&state.metrics.requests_rejected, 1);
        tracing::warn!(%method, path = %path, client = %client.addr, "refused a cross-origin change");
        (
            StatusCode::FORBIDDEN,
            Json(json!({ "error": "a change from another site is refused" })),
        )
            .into_response()
    } else {
        next.run(request).await
    };
    add_security_headers(response.headers_mut(), client.https);
    tracing::info!(
        target: "balie::access",
        %method,
        path = %path,
        status = response.status().as_u16(),
        ms = start.elapsed().as_secs_f64() * 1000.0,
        client = %client.addr,
        "request"
    );
    response
}

/// A state-changing request from a browser that did not come from Balie's own pages.
/// Webhooks and the bearer-token API (`/webhooks/`, `/api/`) are not cookie-authenticated
/// and are left alone. A browser says where a request comes from in `Sec-Fetch-Site`
/// (only `same-origin` passes) or, older ones, in `Origin` (must be Balie's own origin);
/// a request with neither is refused if it carries a session cookie.
fn is_cross_origin_change(state: &AppState, request: &Request, client: Client) -> bool {
    if request.method().is_safe() {
        return false;
    }
    let path = request.uri().path();
    if path.starts_with("/api/") || path.starts_with("/webhooks/") {
        return false;
    }
    let headers = request.headers();
    if let Some(site) = headers.get("sec-fetch-site") {
        return !(site == "same-origin" || site == "none");
    }
    match headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        Some(origin) => !is_own_origin(state, request, origin, client.https),
        None => web::has_session_cookie(headers),
    }
}

fn is_own_origin(state: &AppState, request: &Request, origin: &str, https: bool) -> bool {
    if !state.config.public_origin.is_empty() {
        return origin.eq_ignore_ascii_case(&state.config.public_origin);
    }
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| request.uri().authority().map(|a| a.as_str()));
    let scheme = if https { "https" } else { "http" };
    host.is_some_and(|host| origin.eq_ignore_ascii_case(&format!("{scheme}://{host}")))
}

/// Headers every response carries, whatever made it. Pages set their own
/// Content-Security-Policy; everything else gets one that allows nothing.
fn add_security_headers(headers: &mut HeaderMap, https: bool) {
    let fixed = [
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "same-origin"),
        ("cross-origin-opener-policy", "same-origin"),
    ];
    for (name, value) in fixed {
        headers.insert(name, HeaderValue::from_static(value));
    }
    if !headers.contains_key(header::CONTENT_SECURITY_POLICY) {
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP_NOT_A_PAGE),
        );
    }
    // Pages and JSON carry customers' words: no copy in any cache unless a route says so.
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    if https {
        headers.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
    }
}
