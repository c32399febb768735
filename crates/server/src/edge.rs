//! The HTTP edge: Balie's own accept loop, which keeps the server answering under hostile
//! or broken clients. It caps open connections (at the cap, the oldest connection without a
//! request in flight is closed to make room, so a flood of idle sockets cannot lock out a
//! real client), closes connections that sit without a request for too long, bounds the
//! time headers may take, and tells each request which address it came from.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Request, Response, StatusCode};
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore};
use tower::ServiceExt;

use crate::config::Limits;

/// Serves `app` on `listener` within `limits` until `shutdown` completes, then stops
/// accepting, lets requests in flight finish and returns.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: &Limits,
    shutdown: impl Future<Output = ()>,
) {
    let connections = Arc::new(Connections::new(limits.max_connections));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(limits.header_timeout_secs));
    let graceful = GracefulShutdown::new();
    let idle = Duration::from_secs(limits.idle_timeout_secs);
    let sweeper = tokio::spawn(close_idle_connections(connections.clone(), idle));
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let permit = match connections.capacity.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                // Full: make room by closing the connection that has waited longest
                // without a request; with none such, wait for one to finish.
                connections.close_oldest_idle();
                tokio::select! {
                    permit = connections.capacity.clone().acquire_owned() => match permit {
                        Ok(permit) => permit,
                        Err(_) => break,
                    },
                    () = &mut shutdown => break,
                }
            }
        };
        let _ = stream.set_nodelay(true);
        let (id, slot) = connections.open();
        let service = per_connection_service(app.clone(), slot.clone(), peer);
        let connection = builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        let connection = graceful.watch(connection);
        let connections = connections.clone();
        tokio::spawn(async move {
            tokio::select! {
                result = connection => {
                    if let Err(e) = result {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                }
                () = slot.close.notified() => {
                    tracing::debug!(%peer, "closed a connection without a request in flight");
                }
            }
            connections.remove(id);
            drop(permit);
        });
    }
    drop(listener);
    sweeper.abort();
    graceful.shutdown().await;
}

/// The router for one connection: each request learns its peer address and counts as in
/// flight until its response body has been sent or dropped.
fn per_connection_service(
    app: Router,
    slot: Arc<Slot>,
    peer: SocketAddr,
) -> impl hyper::service::Service<
    Request<Incoming>,
    Response = Response<TrackedBody>,
    Error = Infallible,
    Future = impl Future<Output = Result<Response<TrackedBody>, Infallible>> + Send,
> + Clone {
    hyper::service::service_fn(move |mut request: Request<Incoming>| {
        let in_flight = slot.begin();
        request.extensions_mut().insert(ConnectInfo(peer));
        let app = app.clone();
        async move {
            let Some(in_flight) = in_flight else {
                // Chosen to be closed a moment ago: the client retries on a new connection.
                let mut closing = Response::new(Body::from("the connection is closing\n"));
                *closing.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                return Ok(closing.map(|body| TrackedBody {
                    body,
                    _in_flight: None,
                }));
            };
            let response = match app.oneshot(request).await {
                Ok(response) => response,
                Err(never) => match never {},
            };
            Ok(response.map(|body| TrackedBody {
                body,
                _in_flight: Some(in_flight),
            }))
        }
    })
}

async fn close_idle_connections(connections: Arc<Connections>, idle: Duration) {
    let every = (idle / 4).clamp(Duration::from_millis(100), Duration::from_secs(1));
    loop {
        tokio::time::sleep(every).await;
        connections.close_idle_for(idle);
    }
}

/// An accept error: a connection that went away before we took it is nothing; anything
/// else (out of file descriptors) is logged and retried shortly, as the limit frees up.
async fn accept_failed(e: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "accepting a connection failed");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// `in_flight` value of a connection that has been chosen to be closed.
const CLOSING: i64 = -1;

/// One open connection, as the limit and the idle sweep see it.
struct Slot {
    /// Requests in flight on it, or [`CLOSING`].
    in_flight: AtomicI64,
    /// When it last had no request in flight (ms on the registry's clock).
    idle_since: AtomicU64,
    close: Notify,
    clock: Instant,
}

impl Slot {
    /// Counts a request in; `None` when the connection is already being closed.
    fn begin(self: &Arc<Self>) -> Option<InFlight> {
        self.in_flight
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n >= 0).then_some(n + 1)
            })
            .ok()?;
        Some(InFlight { slot: self.clone() })
    }

    /// Closes the connection if it has no request in flight.
    fn close_if_idle(&self) -> bool {
        let closed = self
            .in_flight
            .compare_exchange(0, CLOSING, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok();
        if closed {
            self.close.notify_one();
        }
        closed
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.clock.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

/// A request in flight on a connection; dropped when its response is done.
struct InFlight {
    slot: Arc<Slot>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        // Stamp first, so a sweep that sees no request in flight sees the fresh time.
        self.slot
            .idle_since
            .store(self.slot.now_ms(), Ordering::SeqCst);
        self.slot.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The open connections, oldest first, and the permits that cap their number.
struct Connections {
    slots: Mutex<BTreeMap<u64, Arc<Slot>>>,
    next_id: AtomicU64,
    capacity: Arc<Semaphore>,
    clock: Instant,
}

impl Connections {
    fn new(max: usize) -> Self {
        Self {
            slots: Mutex::new(BTreeMap::new()),
            next_id: AtomicU64::new(0),
            capacity: Arc::new(Semaphore::new(max.max(1))),
            clock: Instant::now(),
        }
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Arc<Slot>>> {
        match self.slots.lock() {
            Ok(slots) => slots,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    fn open(&self) -> (u64, Arc<Slot>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let slot = Arc::new(Slot {
            in_flight: AtomicI64::new(0),
            idle_since: AtomicU64::new(0),
            close: Notify::new(),
            clock: self.clock,
        });
        slot.idle_since.store(slot.now_ms(), Ordering::SeqCst);
        self.slots().insert(id, slot.clone());
        (id, slot)
    }

    fn remove(&self, id: u64) {
        self.slots().remove(&id);
    }

    fn close_oldest_idle(&self) -> bool {
        self.slots().values().any(|slot| slot.close_if_idle())
    }

    fn close_idle_for(&self, idle: Duration) {
        let limit = u64::try_from(idle.as_millis()).unwrap_or(u64::MAX);
        for slot in self.slots().values() {
            let since = slot.idle_since.load(Ordering::SeqCst);
            if slot.now_ms().saturating_sub(since) >= limit {
                slot.close_if_idle();
            }
        }
    }
}

/// A response body that keeps its request counted as in flight until it is sent.
pub struct TrackedBody {
    body: Body,
    _in_flight: Option<InFlight>,
}

impl hyper::body::Body for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// An IP address or CIDR range (`10.0.0.0/8`, `::1`), for trusted proxies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpRange {
    network: IpAddr,
    prefix: u8,
}

impl IpRange {
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let network: IpAddr = addr
            .parse()
            .map_err(|_| format!("`{text}` is not an IP address or CIDR range"))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("`{text}`: the prefix must be 0 to {max}"))?,
        };
        Ok(Self {
            network: network.to_canonical(),
            prefix,
        })
    }

    pub fn contains(&self, addr: IpAddr) -> bool {
        match (self.network, addr.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

/// Who sent a request, over what, as far as Balie can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Client {
    /// The peer, or the client a trusted proxy names in `X-Forwarded-For`.
    pub addr: IpAddr,
    /// Served over HTTPS: configured so, or a trusted proxy says `X-Forwarded-Proto: https`.
    pub https: bool,
}

impl Client {
    /// Forwarding headers are believed only from a peer in `proxies`: then the client is the
    /// right-most `X-Forwarded-For` address that is not itself a trusted proxy, and the
    /// scheme is the last `X-Forwarded-Proto` value (what the nearest proxy saw).
    pub fn resolve(peer: IpAddr, headers: &HeaderMap, proxies: &[IpRange], https: bool) -> Self {
        let peer = peer.to_canonical();
        let trusted = |a: IpAddr| proxies.iter().any(|p| p.contains(a));
        if !trusted(peer) {
            return Self { addr: peer, https };
        }
        let values = |name: &str| -> Vec<String> {
            headers
                .get_all(name)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .map(|v| v.trim().to_string())
                .collect()
        };
        let chain: Option<Vec<IpAddr>> = values("x-forwarded-for")
            .iter()
            .map(|v| v.parse::<IpAddr>().ok().map(|a| a.to_canonical()))
            .collect();
        let addr = chain
            .and_then(|chain| {
                chain
                    .iter()
                    .rev()
                    .find(|a| !trusted(**a))
                    .or(chain.first())
                    .copied()
            })
            .unwrap_or(peer);
        let forwarded_https = values("x-forwarded-proto")
            .last()
            .is_some_and(|p| p.eq_ignore_ascii_case("https"));
        Self {
            addr,
            https: https || forwarded_https,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().expect("header value"));
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn ranges_match_their_addresses_only() {
        let cases = [
            ("10.0.0.0/8", "10.200.3.4", true),
            ("10.0.0.0/8", "11.0.0.1", false),
            ("127.0.0.1", "127.0.0.1", true),
            ("127.0.0.1", "127.0.0.2", false),
            ("0.0.0.0/0", "203.0.113.9", true),
            ("fd00::/8", "fd12::1", true),
            ("fd00::/8", "fe80::1", false),
            ("::1", "::1", true),
            ("127.0.0.1", "::ffff:127.0.0.1", true),
            ("10.0.0.0/8", "::1", false),
        ];
        for (range, addr, expected) in cases {
            let r = IpRange::parse(range).expect(range);
            assert_eq!(r.contains(ip(addr)), expected, "{range} ∋ {addr}");
        }
        for bad in ["", "10.0.0.0/33", "::/129", "proxy.internal", "10.0.0.0/x"] {
            assert!(IpRange::parse(bad).is_err(), "`{bad}` must not parse");
        }
    }

    #[test]
    fn forwarding_headers_count_only_from_trusted_proxies() {
        let proxies = [IpRange::parse("10.0.0.0/8").expect("range")];
        let forwarded = headers(&[
            ("x-forwarded-for", "198.51.100.7, 10.0.0.3"),
            ("x-forwarded-proto", "https"),
        ]);
        let via_proxy = Client::resolve(ip("10.0.0.2"), &forwarded, &proxies, false);
        assert_eq!(via_proxy.addr, ip("198.51.100.7"));
        assert!(via_proxy.https);

        let direct = Client::resolve(ip("203.0.113.5"), &forwarded, &proxies, false);
        assert_eq!(
            direct.addr,
            ip("203.0.113.5"),
            "a client cannot name itself"
        );
        assert!(!direct.https, "a client cannot claim HTTPS");

        // A client's own X-Forwarded-For entry in front of the proxy's is not believed.
        let spoofed = headers(&[("x-forwarded-for", "1.2.3.4, 198.51.100.7")]);
        let c = Client::resolve(ip("10.0.0.2"), &spoofed, &proxies, false);
        assert_eq!(c.addr, ip("198.51.100.7"));

        // The nearest proxy's word on the scheme counts, not what the client sent it.
        let appended = headers(&[("x-forwarded-proto", "https, http")]);
        assert!(!Client::resolve(ip("10.0.0.2"), &appended, &proxies, false).https);

        let garbage = headers(&[("x-forwarded-for", "not-an-address")]);
        let c = Client::resolve(ip("10.0.0.2"), &garbage, &proxies, true);
        assert_eq!(c.addr, ip("10.0.0.2"));
        assert!(c.https, "configured HTTPS holds whatever the headers say");
    }
}
