//! Issue 9's findings at the edge, retried as an attacker would: cross-origin changes with
//! a valid session, sign-in bursts, cookies and headers over HTTPS and behind proxies, the
//! data directory's permissions, live streams after logout, the bounded conversation
//! listing, bidi controls in customer text, and what the access log records.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::StatusCode;

use crate::support::*;

/// A client that sends only what a test sets: no `Sec-Fetch-Site`, no redirects followed.
fn bare_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn conversation_status(app: &TestApp, status: &str) -> usize {
    app.http
        .get(format!("{}/api/v1/conversations?status={status}", app.base))
        .bearer_auth(&app.token)
        .send()
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap()
        .as_array()
        .unwrap()
        .len()
}

#[tokio::test]
async fn a_cross_origin_form_post_with_a_valid_session_changes_nothing() {
    let app = spawn_app().await;
    app.post_message(&message("m-1", "kim", "Waar blijft mijn pakket?"))
        .await;
    let id = app.conversations().await[0]["id"].as_i64().unwrap();
    let cookie = app.login().await;
    let close = format!("{}/conversations/{id}/status", app.base);
    let reply = format!("{}/conversations/{id}/reply", app.base);
    let evil = "https://evil.example";
    let attempts: [(&str, Option<&str>, Option<&str>); 5] = [
        (
            "a sibling subdomain",
            Some("same-site"),
            Some("https://x.balie.test"),
        ),
        ("another site", Some("cross-site"), Some(evil)),
        ("an old browser on another site", None, Some(evil)),
        ("a sandboxed frame", None, Some("null")),
        ("a request that says nothing", None, None),
    ];
    let http = bare_client();
    for (who, site, origin) in attempts {
        for (url, form) in [
            (&close, vec![("status", "closed")]),
            (&reply, vec![("text", "Gehackt"), ("key", "k-1")]),
        ] {
            let mut request = http.post(url).header("cookie", &cookie).form(&form);
            if let Some(site) = site {
                request = request.header("sec-fetch-site", site);
            }
            if let Some(origin) = origin {
                request = request.header("origin", origin);
            }
            let status = request.send().await.unwrap().status();
            assert_eq!(status, StatusCode::FORBIDDEN, "{who}: {url}");
        }
    }
    assert_eq!(
        conversation_status(&app, "closed").await,
        0,
        "nothing closed"
    );
    let timeline = app.conversations().await;
    assert_eq!(
        timeline[0]["messages"].as_array().unwrap().len(),
        1,
        "no reply queued"
    );

    // The real UI's requests still work: a browser's same-origin post, or an older
    // browser's Origin that is Balie's own.
    let same = http
        .post(&close)
        .header("cookie", &cookie)
        .header("origin", &app.base)
        .form(&[("status", "closed")])
        .send()
        .await
        .unwrap();
    assert_eq!(same.status(), StatusCode::SEE_OTHER);
    assert_eq!(conversation_status(&app, "closed").await, 1);

    // Webhooks and the bearer-token API are not cookie-authenticated: no origin check.
    let api = http
        .post(format!("{}/api/v1/messages", app.base))
        .bearer_auth(&app.token)
        .header("origin", evil)
        .header("sec-fetch-site", "cross-site")
        .json(&message("m-2", "lea", "Hallo"))
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), StatusCode::ACCEPTED);
}

#[tokio::test]
async fn a_login_burst_is_throttled_with_password_checks_bounded() {
    let app = spawn_app_with(|c| {
        c.limits.password_checks = 2;
        c.limits.login_failures_per_account = 3;
        c.limits.login_failures_per_address = 1000;
    })
    .await;
    let seen_max = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let (base, seen_max, done) = (app.base.clone(), seen_max.clone(), done.clone());
        tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut bound = None;
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                let text = http
                    .get(format!("{base}/metrics"))
                    .send()
                    .await
                    .unwrap()
                    .text()
                    .await
                    .unwrap();
                let gauge = |name: &str| {
                    text.lines()
                        .find_map(|l| l.strip_prefix(&format!("{name} ")))
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .unwrap()
                };
                seen_max.fetch_max(
                    gauge("balie_password_checks_in_flight"),
                    std::sync::atomic::Ordering::SeqCst,
                );
                bound = Some(gauge("balie_password_checks_max"));
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            bound
        })
    };
    let attempts = (0..40).map(|i| {
        let http = no_redirects();
        let base = app.base.clone();
        async move {
            http.post(format!("{base}/login"))
                .form(&[("email", EMAIL), ("password", &format!("guess number {i}"))])
                .send()
                .await
                .unwrap()
        }
    });
    let answers = futures_util::future::join_all(attempts).await;
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let bound = watcher.await.unwrap();
    let throttled = answers
        .iter()
        .filter(|r| r.status() == StatusCode::TOO_MANY_REQUESTS)
        .count();
    for r in &answers {
        let failed =
            r.status() == StatusCode::SEE_OTHER && r.headers()["location"] == "/login?failed=1";
        let refused = r.status() == StatusCode::TOO_MANY_REQUESTS
            || r.status() == StatusCode::SERVICE_UNAVAILABLE;
        assert!(failed || refused, "{:?}", r.status());
        if refused {
            assert!(r.headers().contains_key("retry-after"));
        }
    }
    assert!(
        throttled >= 30,
        "only {throttled} of 40 wrong guesses throttled"
    );
    assert_eq!(bound, Some(2), "the gauge shows its bound");
    let most = seen_max.load(std::sync::atomic::Ordering::SeqCst);
    assert!(most <= 2, "{most} password checks ran at once");

    // The right password does not get through while the account is throttled.
    let right = no_redirects()
        .post(format!("{}/login", app.base))
        .form(&[("email", EMAIL), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(right.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(!right.headers().contains_key("set-cookie"));
    let page = right.text().await.unwrap();
    assert!(page.contains("login-refused"), "the page says why");
}

#[tokio::test]
async fn one_address_is_throttled_across_accounts_and_others_are_not() {
    let app = spawn_app_with(|c| {
        c.trusted_proxies = vec!["127.0.0.1".into()];
        c.limits.login_failures_per_address = 3;
        c.limits.login_failures_per_account = 1000;
    })
    .await;
    let attempt = |from: &'static str, email: String| {
        let base = app.base.clone();
        async move {
            no_redirects()
                .post(format!("{base}/login"))
                .header("x-forwarded-for", from)
                .form(&[("email", email.as_str()), ("password", "not the password")])
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    for i in 0..3 {
        let status = attempt("198.51.100.1", format!("nobody{i}@balie.test")).await;
        assert_eq!(status, StatusCode::SEE_OTHER, "free failures");
    }
    let status = attempt("198.51.100.1", "someone.else@balie.test".into()).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "the address waits");
    let status = attempt("198.51.100.2", "nobody0@balie.test".into()).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "another address does not");
    let ok = no_redirects()
        .post(format!("{}/login", app.base))
        .header("x-forwarded-for", "198.51.100.2")
        .form(&[("email", EMAIL), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::SEE_OTHER);
    assert_eq!(ok.headers()["location"], "/");
}

#[tokio::test]
async fn every_response_carries_the_security_headers() {
    let app = spawn_app().await;
    let cookie = app.login().await;
    let http = bare_client();
    let requests = [
        http.get(format!("{}/healthz", app.base)),
        http.get(format!("{}/metrics", app.base)),
        http.get(format!("{}/login", app.base)),
        http.get(format!("{}/no-such-page", app.base)),
        http.get(format!("{}/", app.base)).header("cookie", &cookie),
        http.get(format!("{}/api/v1/conversations", app.base))
            .bearer_auth(&app.token),
        http.post(format!("{}/api/v1/messages", app.base))
            .bearer_auth(&app.token)
            .json(&message("m-1", "kim", "Hallo")),
        http.post(format!("{}/webhooks/telegram/none", app.base))
            .body("{}"),
    ];
    for request in requests {
        let r = request.send().await.unwrap();
        let what = format!("{} {}", r.status(), r.url().path());
        let h = r.headers();
        assert_eq!(h["x-content-type-options"], "nosniff", "{what}");
        assert_eq!(h["x-frame-options"], "DENY", "{what}");
        assert_eq!(h["referrer-policy"], "same-origin", "{what}");
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("frame-ancestors 'none'"), "{what}: {csp}");
        assert!(csp.contains("base-uri 'none'"), "{what}: {csp}");
        assert!(csp.contains("form-action"), "{what}: {csp}");
        assert_eq!(h["cache-control"], "no-store", "{what}");
        assert!(
            !h.contains_key("strict-transport-security"),
            "{what}: no HSTS over plain HTTP"
        );
    }
    let page = http
        .get(format!("{}/", app.base))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    let csp = page.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("form-action 'self'"), "{csp}");
    assert!(csp.contains("script-src 'self'"), "{csp}");
}

#[tokio::test]
async fn over_https_the_session_cookie_is_secure_host_only_and_hsts_is_sent() {
    let app = spawn_app_with(|c| c.secure_cookies = true).await;
    let login = no_redirects()
        .post(format!("{}/login", app.base))
        .form(&[("email", EMAIL), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    let cookie = login.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(cookie.starts_with("__Host-balie_session="), "{cookie}");
    assert!(cookie.contains("; Secure"), "{cookie}");
    assert!(
        cookie.contains("; Path=/") && !cookie.contains("Domain"),
        "{cookie}"
    );
    assert!(login.headers().contains_key("strict-transport-security"));
    let token = cookie.split(';').next().unwrap().split_once('=').unwrap().1;

    // Only the __Host- cookie counts: a plain one (which a sibling site could plant) not.
    let http = bare_client();
    let inbox = |cookie: String| {
        http.get(format!("{}/", app.base))
            .header("cookie", cookie)
            .send()
    };
    let host = inbox(format!("__Host-balie_session={token}"))
        .await
        .unwrap();
    assert_eq!(host.status(), StatusCode::OK);
    let plain = inbox(format!("balie_session={token}")).await.unwrap();
    assert_eq!(
        plain.status(),
        StatusCode::SEE_OTHER,
        "plain cookie ignored"
    );
}

#[tokio::test]
async fn forwarding_headers_count_only_from_a_trusted_proxy() {
    let login = |app: &TestApp| {
        no_redirects()
            .post(format!("{}/login", app.base))
            .header("x-forwarded-proto", "https")
            .header("x-forwarded-for", "203.0.113.7")
            .form(&[("email", EMAIL), ("password", PASSWORD)])
            .send()
    };
    let untrusted = spawn_app().await;
    let r = login(&untrusted).await.unwrap();
    let cookie = r.headers()["set-cookie"].to_str().unwrap();
    assert!(cookie.starts_with("balie_session="), "{cookie}");
    assert!(!r.headers().contains_key("strict-transport-security"));

    let proxied = spawn_app_with(|c| c.trusted_proxies = vec!["127.0.0.0/8".into()]).await;
    let r = login(&proxied).await.unwrap();
    let cookie = r.headers()["set-cookie"].to_str().unwrap();
    assert!(cookie.starts_with("__Host-balie_session="), "{cookie}");
    assert!(cookie.contains("; Secure"));
    assert!(r.headers().contains_key("strict-transport-security"));
}

#[cfg(unix)]
#[tokio::test]
async fn the_data_directory_and_its_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let data_dir = data.clone();
    let app = spawn_app_with(move |c| c.data_dir = data_dir).await;
    app.post_message(&message("m-1", "kim", "Hallo")).await;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(
        mode(&data),
        0o700,
        "an existing world-readable dir is tightened"
    );
    for file in ["balie.db", "balie.db-wal", "secret.key"] {
        assert_eq!(mode(&data.join(file)), 0o600, "{file}");
    }
    let fresh = tempfile::tempdir().unwrap();
    let nested = fresh.path().join("new").join("data");
    let nested_dir = nested.clone();
    let _app = spawn_app_with(move |c| c.data_dir = nested_dir).await;
    assert_eq!(mode(&nested), 0o700, "a new dir is created private");
}

/// Logs the agent in and opens its live stream.
async fn logged_in_live_stream(app: &TestApp) -> (String, reqwest::Response) {
    let cookie = app.login().await;
    let stream = bare_client()
        .get(format!("{}/events", app.base))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), StatusCode::OK);
    (cookie, stream)
}

#[tokio::test]
async fn the_live_stream_stops_when_its_session_is_logged_out() {
    let app = spawn_app().await;
    let (cookie, mut stream) = logged_in_live_stream(&app).await;
    let logout = no_redirects()
        .post(format!("{}/logout", app.base))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), StatusCode::SEE_OTHER);
    app.post_message(&message("m-1", "kim", "Na het uitloggen"))
        .await;
    let ended = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            match stream.chunk().await {
                Ok(Some(chunk)) => {
                    let text = String::from_utf8_lossy(&chunk).into_owned();
                    assert!(
                        !text.contains("Na het uitloggen"),
                        "no customer text after logout: {text}"
                    );
                }
                Ok(None) | Err(_) => return,
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the stream ended after logout");
}

#[tokio::test]
async fn the_conversation_listing_is_bounded_and_pages_with_a_cursor() {
    let app = spawn_app().await;
    for i in 0..5 {
        app.post_message(&message(&format!("m-{i}"), &format!("k{i}"), "Hallo"))
            .await;
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..5 {
        let url = match &cursor {
            None => format!("{}/api/v1/conversations?limit=2", app.base),
            Some(c) => format!("{}/api/v1/conversations?limit=2&cursor={c}", app.base),
        };
        let r = app
            .http
            .get(url)
            .bearer_auth(&app.token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        cursor = r
            .headers()
            .get("x-next-cursor")
            .map(|v| v.to_str().unwrap().to_string());
        if cursor.is_some() {
            assert!(
                r.headers()["link"]
                    .to_str()
                    .unwrap()
                    .contains("rel=\"next\"")
            );
        }
        let page: serde_json::Value = r.json().await.unwrap();
        let page = page.as_array().unwrap();
        assert!(page.len() <= 2);
        seen.extend(page.iter().map(|c| c["id"].as_i64().unwrap()));
        if cursor.is_none() {
            break;
        }
    }
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen.len(), 5, "every conversation once over the pages");
    for query in [
        "limit=0",
        "limit=201",
        "limit=1000",
        "cursor=abc",
        "cursor=-1",
        "cursor=99999",
    ] {
        let r = app
            .http
            .get(format!("{}/api/v1/conversations?{query}", app.base))
            .bearer_auth(&app.token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{query}");
    }
}

#[tokio::test]
async fn a_long_conversation_lists_only_its_newest_messages() {
    let app = spawn_app().await;
    for i in 0..103 {
        let mut m = message(&format!("m-{i}"), "kim", &format!("Bericht {i}"));
        m["created_at"] = format!("2026-11-23T08:{:02}:{:02}Z", i / 60, i % 60).into();
        app.post_message(&m).await;
    }
    let listed = app.conversations().await;
    let messages = listed[0]["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 100);
    assert_eq!(listed[0]["messages_omitted"], 3);
    assert_eq!(messages[99]["text"], "Bericht 102", "the newest are kept");
}

#[tokio::test]
async fn bidi_controls_in_customer_text_are_shown_visibly_and_stored_as_sent() {
    let app = spawn_app().await;
    let name = "Kim \u{202E}fdp.exe";
    let text = "Mijn bestelling \u{2066}1234\u{2069} is kwijt \u{202B}echt";
    app.post_message(&serde_json::json!({
        "channel": "web",
        "external_id": "m-1",
        "author": { "id": "kim", "name": name },
        "text": text,
    }))
    .await;
    let listed = app.conversations().await;
    assert_eq!(listed[0]["customer"]["name"], name, "stored as sent");
    assert_eq!(listed[0]["messages"][0]["text"], text, "stored as sent");
    let id = listed[0]["id"].as_i64().unwrap();
    let cookie = app.login().await;
    for path in ["/".to_string(), format!("/conversations/{id}")] {
        let page = app.page(format!("{}{path}", app.base), &cookie).await;
        assert!(page.contains("Kim [U+202E]fdp.exe"), "{path}");
        // The edit form keeps the name as stored (saving it must not alter it); a form
        // field is isolated from the page around it.
        let page = page.replace(&format!("name=\"display_name\" value=\"{name}\""), "");
        for c in [
            '\u{202A}', '\u{202B}', '\u{202C}', '\u{202D}', '\u{202E}', '\u{2066}', '\u{2069}',
        ] {
            assert!(!page.contains(c), "{path} shows U+{:04X} raw", u32::from(c));
        }
    }
}

/// Log lines written while a test runs on its (current-thread) runtime.
#[derive(Clone, Default)]
struct CapturedLog(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for CapturedLog {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for CapturedLog {
    type Writer = CapturedLog;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[tokio::test]
async fn the_access_log_names_method_path_status_and_client_but_no_query_or_password() {
    // One subscriber for the whole test binary: a per-thread one misses call sites whose
    // interest another test thread cached first. Other tests' lines land here too.
    static LOG: std::sync::OnceLock<CapturedLog> = std::sync::OnceLock::new();
    let log = LOG.get_or_init(|| {
        let log = CapturedLog::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(log.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");
        log
    });
    let app = spawn_app().await;
    app.http
        .get(format!(
            "{}/api/v1/conversations?status=open&secret=hunter2",
            app.base
        ))
        .bearer_auth(&app.token)
        .send()
        .await
        .unwrap();
    no_redirects()
        .post(format!("{}/login", app.base))
        .form(&[
            ("email", "access.log@balie.test"),
            ("password", "swordfish-wrong-password"),
        ])
        .send()
        .await
        .unwrap();
    let text = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
    let access = text
        .lines()
        .find(|l| l.contains("balie::access") && l.contains("/api/v1/conversations"))
        .unwrap_or_else(|| panic!("no access line in {text}"));
    for part in [
        "method=GET",
        "path=/api/v1/conversations",
        "status=200",
        "client=127.0.0.1",
        "ms=",
    ] {
        assert!(access.contains(part), "{part} in {access}");
    }
    assert!(!text.contains("hunter2"), "no query string in the log");
    let failed = text
        .lines()
        .find(|l| l.contains("failed sign-in") && l.contains("access.log@balie.test"))
        .unwrap_or_else(|| panic!("no failed sign-in in {text}"));
    assert!(failed.contains("client=127.0.0.1"), "{failed}");
    assert!(!text.contains("swordfish"), "never the password");
}

#[tokio::test]
async fn the_live_stream_stops_when_its_session_ends_elsewhere() {
    let app = spawn_app().await;
    let (cookie, mut stream) = logged_in_live_stream(&app).await;
    // Another process (the CLI, another server) ends the session: the periodic check sees it.
    let token = cookie.split_once('=').unwrap().1;
    app.store
        .delete_session(&balie_server::auth::token_hash(token))
        .await
        .unwrap();
    let ended = tokio::time::timeout(
        balie_server::live::RECHECK + Duration::from_secs(5),
        async { while let Ok(Some(_)) = stream.chunk().await {} },
    )
    .await;
    assert!(ended.is_ok(), "the stream ended after its periodic check");
}

#[tokio::test]
async fn behind_a_proxy_that_rewrites_host_the_configured_origin_is_the_one_that_counts() {
    let app = spawn_app_with(|c| c.public_origin = "https://desk.example.com".into()).await;
    app.post_message(&message("m-1", "kim", "Hallo")).await;
    let id = app.conversations().await[0]["id"].as_i64().unwrap();
    let cookie = app.login().await;
    let take = |origin: &str| {
        bare_client()
            .post(format!("{}/conversations/{id}/assign", app.base))
            .header("cookie", &cookie)
            .header("origin", origin)
            .form(&[("to", "me")])
            .send()
    };
    let by_host = take(&app.base).await.unwrap();
    assert_eq!(
        by_host.status(),
        StatusCode::FORBIDDEN,
        "Host no longer decides"
    );
    let by_origin = take("https://desk.example.com").await.unwrap();
    assert_eq!(by_origin.status(), StatusCode::SEE_OTHER);
}
