//! Test support: `spawn_app()` gives each test its own server on a fresh SQLite database,
//! an API token and an agent login; `FakeReceiver` stands in for an outbound webhook;
//! `on_postgres` runs a test on a fresh PostgreSQL database instead, when one is configured.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use balie_core::{BrandId, Role, User};
use balie_server::clock::Clock;
use balie_server::{App, Config, Secret, auth};
use balie_store::Store;
use tempfile::TempDir;
use tokio::sync::oneshot;

pub const PASSWORD: &str = "correct horse battery";
pub const EMAIL: &str = "agent@balie.test";
pub const OUTBOUND_SECRET: &str = "outbound-secret-never-shown";

pub struct TestApp {
    pub base: String,
    pub token: String,
    pub store: Arc<dyn Store>,
    /// The installation's one brand (the configured default), which the test agent and
    /// the token belong to.
    pub brand: BrandId,
    pub http: reqwest::Client,
    pub dir: TempDir,
    stop: Option<oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl TestApp {
    pub async fn post_message(&self, body: &serde_json::Value) -> reqwest::Response {
        self.http
            .post(format!("{}/api/v1/messages", self.base))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// The body of the page at `url`, fetched with the session `cookie`.
    pub async fn page(&self, url: String, cookie: &str) -> String {
        self.http
            .get(url)
            .header("cookie", cookie)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    pub async fn conversations(&self) -> serde_json::Value {
        self.http
            .get(format!("{}/api/v1/conversations?status=open", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Adds a user (not the owner) with `role` in each of `brands`; the password is
    /// [`PASSWORD`].
    pub async fn add_user(&self, email: &str, role: Role, brands: &[BrandId]) -> User {
        add_user(self.store.as_ref(), email, false, role, brands).await
    }

    /// Logs the test agent in and returns the session cookie (`balie_session=...`).
    pub async fn login(&self) -> String {
        self.login_as(EMAIL, PASSWORD).await
    }

    /// Logs `email` in and returns the session cookie (`balie_session=...`).
    pub async fn login_as(&self, email: &str, password: &str) -> String {
        let resp = no_redirects()
            .post(format!("{}/login", self.base))
            .form(&[("email", email), ("password", password)])
            .send()
            .await
            .unwrap();
        assert_eq!(
            resp.status(),
            StatusCode::SEE_OTHER,
            "login should redirect"
        );
        let cookie = resp
            .headers()
            .get("set-cookie")
            .expect("a session cookie")
            .to_str()
            .unwrap();
        cookie.split(';').next().unwrap().to_string()
    }

    /// Stops the server gracefully and waits for it.
    pub async fn stop(mut self) -> TempDir {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(h) = self.handle.take() {
            h.await.unwrap().unwrap();
        }
        self.dir
    }
}

/// What a browser says on a request from one of Balie's own pages: the tests' clients
/// post forms as the UI does (a test of cross-site requests sets its own header).
pub fn same_origin_headers() -> reqwest::header::HeaderMap {
    let mut h = reqwest::header::HeaderMap::new();
    h.insert(
        "sec-fetch-site",
        reqwest::header::HeaderValue::from_static("same-origin"),
    );
    h
}

/// An HTTP client that shows redirects instead of following them.
pub fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .default_headers(same_origin_headers())
        .build()
        .unwrap()
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(adjust: impl FnOnce(&mut Config)) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    spawn_app_in(dir, adjust).await
}

/// Starts an app on an existing data dir (for restart tests).
pub async fn spawn_app_in(dir: TempDir, adjust: impl FnOnce(&mut Config)) -> TestApp {
    start(dir, adjust, None).await
}

/// Starts an app whose workers and handlers read and sleep by `clock`.
pub async fn spawn_app_on(clock: Arc<dyn Clock>, adjust: impl FnOnce(&mut Config)) -> TestApp {
    start(tempfile::tempdir().unwrap(), adjust, Some(clock)).await
}

async fn start(
    dir: TempDir,
    adjust: impl FnOnce(&mut Config),
    clock: Option<Arc<dyn Clock>>,
) -> TestApp {
    let mut config = Config {
        data_dir: dir.path().to_path_buf(),
        listen: "127.0.0.1:0".parse().unwrap(),
        ..Config::default()
    };
    config.outbound.secret = Secret::new(OUTBOUND_SECRET);
    adjust(&mut config);
    let mut app = App::build(config).await.unwrap();
    if let Some(clock) = clock {
        app = app.with_clock(clock);
    }
    let addr = app.local_addr().unwrap();
    let store = app.state().store.clone();
    let token = auth::new_token("balie").unwrap();
    let now = balie_server::outbox::now_ms();
    let brand = store
        .ensure_brand(&app.state().config.default_brand, now)
        .await
        .unwrap();
    store
        .create_api_token("tests", &auth::token_hash(&token), brand, now)
        .await
        .unwrap();
    if store.user_credentials(EMAIL).await.unwrap().is_none() {
        add_user(store.as_ref(), EMAIL, false, Role::Agent, &[brand]).await;
    }
    let (stop, stopped) = oneshot::channel::<()>();
    let handle = tokio::spawn(app.run(async move {
        let _ = stopped.await;
    }));
    TestApp {
        base: format!("http://{addr}"),
        token,
        store,
        brand,
        http: reqwest::Client::builder()
            .default_headers(same_origin_headers())
            .build()
            .unwrap(),
        dir,
        stop: Some(stop),
        handle: Some(handle),
    }
}

/// Adds a user named after the e-mail's local part, with [`PASSWORD`], `owner` of the
/// installation or not, a member with `role` of each of `brands`.
pub async fn add_user(
    store: &dyn Store,
    email: &str,
    owner: bool,
    role: Role,
    brands: &[BrandId],
) -> User {
    let now = balie_server::outbox::now_ms();
    let name = match email.split('@').next() {
        Some("agent") => "Agent Smit",
        Some(local) => local,
        None => email,
    };
    let user = store
        .create_user(
            email,
            name,
            owner,
            &auth::hash_password(PASSWORD).unwrap(),
            now,
        )
        .await
        .unwrap();
    for brand in brands {
        store
            .set_membership(user.id, *brand, role, now)
            .await
            .unwrap();
    }
    user
}

/// A message body for the generic channel.
pub fn message(external_id: &str, author: &str, text: &str) -> serde_json::Value {
    serde_json::json!({
        "channel": "web",
        "external_id": external_id,
        "author": { "id": author, "name": format!("Klant {author}") },
        "text": text,
    })
}

/// Polls `check` until it returns `Some`, for at most `secs` seconds.
pub async fn eventually<T, F, Fut>(secs: u64, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not met within {secs} s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What the fake outbound webhook received.
#[derive(Debug, Clone)]
pub struct Received {
    pub body: serde_json::Value,
    pub idempotency_key: String,
    pub signature_ok: bool,
    pub status: u16,
}

/// A local outbound webhook that answers from a script of status codes (then 200s).
#[derive(Clone)]
pub struct FakeReceiver {
    pub url: String,
    pub received: Arc<Mutex<Vec<Received>>>,
}

impl FakeReceiver {
    pub async fn start(script: Vec<u16>) -> Self {
        let received = Arc::new(Mutex::new(Vec::<Received>::new()));
        let script = Arc::new(Mutex::new(script.into_iter()));
        let rec = received.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: Bytes| {
                let rec = rec.clone();
                let script = script.clone();
                async move {
                    let sig = headers
                        .get("x-balie-signature")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("");
                    let status = script.lock().unwrap().next().unwrap_or(200);
                    rec.lock().unwrap().push(Received {
                        body: serde_json::from_slice(&body).unwrap_or_default(),
                        idempotency_key: headers
                            .get("idempotency-key")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_string(),
                        signature_ok: balie_channels::signature::verify_sha256_header(
                            OUTBOUND_SECRET.as_bytes(),
                            &body,
                            sig,
                        ),
                        status,
                    });
                    StatusCode::from_u16(status).unwrap()
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { url, received }
    }

    pub fn got(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

/// Runs `test` with the URL of a fresh PostgreSQL database, dropped afterwards (also when the
/// test panics), if `BALIE_TEST_POSTGRES_URL` names a server. Without it the test is skipped
/// with a note on the terminal, except in CI (`CI=true`), where that is a failure.
pub async fn on_postgres<F, Fut>(test: F)
where
    F: FnOnce(String) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    use std::io::Write as _;
    const VAR: &str = "BALIE_TEST_POSTGRES_URL";
    let Some(admin) = std::env::var(VAR).ok().filter(|u| !u.trim().is_empty()) else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{VAR} is not set: the PostgreSQL server tests must run in CI"
        );
        static SAID: std::sync::Once = std::sync::Once::new();
        SAID.call_once(|| {
            if let Ok(mut tty) = std::fs::OpenOptions::new().write(true).open("/dev/stderr") {
                let _ = writeln!(
                    tty,
                    "note: the server tests on PostgreSQL did not run: {VAR} is not set"
                );
            }
        });
        return;
    };
    static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let name = format!(
        "balie_it_{}_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos(),
        COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let url = balie_store::PgStore::create_database(&admin, &name)
        .await
        .expect("create a test database");
    let outcome = tokio::spawn(test(url)).await;
    balie_store::PgStore::drop_database(&admin, &name)
        .await
        .expect("drop the test database");
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}
