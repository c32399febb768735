//! Balie's server: the HTTP API, the agent UI with its live stream, and the background
//! workers (journal writer, pipeline, outbox), all in one process over one [`Store`].

pub mod access;
pub mod admin;
pub mod api;
pub mod auth;
pub mod channel_keys;
pub mod clock;
pub mod compose;
pub mod config;
pub mod edge;
pub mod error;
pub mod i18n;
pub mod intake;
pub mod live;
pub mod metrics;
pub mod outbox;
pub mod pipeline;
pub mod platform_channels;
pub mod security;
pub mod signin;
pub mod web;
pub mod webhooks;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use balie_store::{PgStore, SqliteStore, Store};
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tower_http::timeout::RequestBodyDeadlineLayer;

pub use config::{Config, Secret};
use intake::Intake;
use metrics::Metrics;

/// Everything a request handler may touch.
#[derive(Clone)]
pub struct AppState {
    /// Where every handler reads the time (see [`clock::Clock`]).
    pub clock: Arc<dyn clock::Clock>,
    pub store: Arc<dyn Store>,
    pub config: Arc<Config>,
    pub metrics: Arc<Metrics>,
    pub intake: Intake,
    /// Highest journal id the pipeline has processed.
    pub processed: watch::Receiver<i64>,
    pub outbox_wake: Arc<Notify>,
    /// Turns true when the server stops: live streams end so shutdown does not wait on them.
    pub stop: watch::Receiver<bool>,
    /// Opens the channel credentials sealed in the store.
    pub channel_keys: Arc<channel_keys::ChannelKeys>,
    /// Reverse proxies whose forwarding headers are believed (`Config::trusted_proxies`).
    pub proxies: Arc<[edge::IpRange]>,
    /// Bounds and throttles password sign-ins.
    pub signin: Arc<signin::SignIn>,
    /// Bumped when a session ends in this process (logout): live streams check theirs at
    /// once instead of at their next periodic check.
    pub sessions_ended: Arc<watch::Sender<u64>>,
}

/// Opens the store `config` names: PostgreSQL when `database_url` is a `postgres://` or
/// `postgresql://` URL, else SQLite at `<data_dir>/balie.db` (creating the directory).
/// Pending migrations are applied either way. The data directory is kept private: 0700,
/// and the database, its WAL and the channel key file 0600.
pub async fn open_store(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    create_private_dir(&config.data_dir)?;
    if config.uses_postgres() {
        let store = PgStore::open(config.database_url.expose())
            .await
            .context("opening the PostgreSQL database (database_url)")?;
        tracing::info!("store: PostgreSQL (database_url)");
        return Ok(Arc::new(store));
    }
    anyhow::ensure!(
        config.database_url.is_empty(),
        "database_url must be empty (SQLite in data_dir) or a postgres:// URL"
    );
    let store = SqliteStore::open(&config.database_path())
        .await
        .with_context(|| format!("opening {}", config.database_path().display()))?;
    // SQLite creates the WAL and shared-memory files with the database file's mode, so a
    // 0600 database keeps them private from the next start on; these are tightened now.
    for file in ["balie.db", "balie.db-wal", "balie.db-shm"] {
        make_private(&config.data_dir.join(file), 0o600)?;
    }
    tracing::info!(path = %config.database_path().display(), "store: SQLite");
    Ok(Arc::new(store))
}

/// Creates `dir` (and missing parents) readable by this user only, or tightens it to 0700.
pub fn create_private_dir(dir: &std::path::Path) -> anyhow::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(dir)
        .with_context(|| format!("creating data dir {}", dir.display()))?;
    make_private(dir, 0o700)
}

/// Sets `path`'s permission bits to `mode` if it exists (Unix; elsewhere nothing).
pub fn make_private(path: &std::path::Path, mode: u32) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        match std::fs::metadata(path) {
            Ok(meta) if meta.permissions().mode() & 0o777 != mode => {
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
                    .with_context(|| format!("making {} private", path.display()))?;
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }
    #[cfg(not(unix))]
    let _ = (path, mode);
    Ok(())
}

/// A built application: bound listener, opened store, workers ready to start.
pub struct App {
    listener: TcpListener,
    state: AppState,
    pipeline: pipeline::Pipeline,
    pipeline_wake: Arc<Notify>,
    outbox: outbox::OutboxWorker,
    stop_tx: watch::Sender<bool>,
}

impl App {
    /// Opens the store `config` names (see [`open_store`]) and binds `config.listen`.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        config.validate()?;
        let store = open_store(&config).await?;
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("binding {}", config.listen))?;
        Self::with_store(config, store, listener).await
    }

    pub async fn with_store(
        config: Config,
        store: Arc<dyn Store>,
        listener: TcpListener,
    ) -> anyhow::Result<Self> {
        // One TLS provider for every outbound HTTPS call (rustls with ring); idempotent.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let clock: Arc<dyn clock::Clock> = Arc::new(clock::SystemClock);
        store
            .ensure_brand(&config.default_brand, clock.now())
            .await
            .context("creating default brand")?;
        let metrics = Arc::new(Metrics::default());
        let pipeline_wake = Arc::new(Notify::new());
        let handoff = Arc::new(pipeline::Handoff::default());
        let intake = Intake::start(
            store.clone(),
            metrics.clone(),
            handoff.clone(),
            pipeline_wake.clone(),
        );
        let (stop_tx, stop) = watch::channel(false);
        let (processed_tx, processed) = watch::channel(0i64);
        let channel_keys = Arc::new(
            channel_keys::ChannelKeys::open_or_create(&config.data_dir)
                .context("opening the channel key file")?,
        );
        make_private(&config.data_dir.join("secret.key"), 0o600)?;
        let proxies = config
            .trusted_proxies
            .iter()
            .map(|p| edge::IpRange::parse(p).map_err(anyhow::Error::msg))
            .collect::<anyhow::Result<Vec<_>>>()
            .context("trusted_proxies")?;
        let signin =
            Arc::new(signin::SignIn::new(&config.limits, &metrics).context("preparing sign-in")?);
        // Platform sends need an overall timeout: one that hangs is "delivery unknown".
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(20))
            .build()
            .context("building HTTP client")?;
        let config = Arc::new(config);
        let pipeline = pipeline::Pipeline {
            clock: clock.clone(),
            store: store.clone(),
            sla: config.sla,
            metrics: metrics.clone(),
            processed: processed_tx,
            appended: intake.last_appended.clone(),
            handoff,
        };
        let outbox = outbox::OutboxWorker {
            clock: clock.clone(),
            store: store.clone(),
            metrics: metrics.clone(),
            http,
            webhook: config.outbound.clone(),
            owner: outbox::instance_id(&config.data_dir).context("naming this installation")?,
            channel_keys: channel_keys.clone(),
        };
        let state = AppState {
            clock,
            store,
            config,
            metrics,
            intake,
            processed,
            outbox_wake: Arc::new(Notify::new()),
            stop,
            channel_keys,
            proxies: proxies.into(),
            signin,
            sessions_ended: Arc::new(watch::channel(0).0),
        };
        Ok(Self {
            listener,
            state,
            pipeline,
            pipeline_wake,
            outbox,
            stop_tx,
        })
    }

    /// Runs the workers and handlers on `clock` instead of the system's (tests drive timed
    /// behaviour with a [`clock::TestClock`]).
    pub fn with_clock(mut self, clock: Arc<dyn clock::Clock>) -> Self {
        self.pipeline.clock = clock.clone();
        self.outbox.clock = clock.clone();
        self.state.clock = clock;
        self
    }

    pub fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.listener.local_addr()?)
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` completes, then stops taking requests, lets in-flight ones
    /// finish, and stops the workers after their current step.
    pub async fn run(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let stop_tx = self.stop_tx;
        let stop_rx = stop_tx.subscribe();
        let pipeline = tokio::spawn(
            self.pipeline
                .run(self.pipeline_wake.clone(), stop_rx.clone()),
        );
        let outbox = tokio::spawn(
            self.outbox
                .run(self.state.outbox_wake.clone(), stop_rx.clone()),
        );
        let app = router(self.state.clone());
        let stop_for_server = stop_tx.clone();
        edge::serve(self.listener, app, &self.state.config.limits, async move {
            shutdown.await;
            tracing::info!("shutting down: finishing in-flight work");
            let _ = stop_for_server.send(true);
        })
        .await;
        let _ = stop_tx.send(true);
        let _ = pipeline.await;
        let _ = outbox.await;
        Ok(())
    }
}

async fn record_latency(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let method = req.method().to_string();
    let start = Instant::now();
    let response = next.run(req).await;
    state
        .metrics
        .observe_request(&route, &method, start.elapsed());
    response
}

/// Every route of the application, before the state and the edge's layers: the one list
/// the access tests enumerate (a route added here without an entry in their tables fails
/// them).
pub fn routes() -> Router<AppState> {
    Router::new()
        .merge(api::routes())
        .merge(web::routes())
        .merge(admin::routes())
        .merge(live::routes())
        .merge(webhooks::routes())
}

pub fn router(state: AppState) -> Router {
    let limit = state.config.max_body_bytes;
    let body_deadline = Duration::from_secs(state.config.limits.body_timeout_secs);
    routes()
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            record_latency,
        ))
        .layer(DefaultBodyLimit::max(limit))
        .layer(RequestBodyDeadlineLayer::new(body_deadline))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            security::guard,
        ))
        .with_state(state)
}

/// Resolves when SIGTERM or Ctrl-C arrives.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
