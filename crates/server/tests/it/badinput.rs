//! Hostile input on every API endpoint: forged, replayed, truncated, oversized, wrongly
//! encoded and deeply nested requests each get their proper 4xx, store nothing, and leave
//! the server serving.

use axum::http::StatusCode;
use balie_core::ConversationStatus;
use serde_json::json;

use crate::support::{TestApp, message, no_redirects, spawn_app};

fn good_body(id: &str) -> Vec<u8> {
    message(id, "k-1", "Waar blijft mijn pakket?")
        .to_string()
        .into_bytes()
}

async fn post_raw(app: &TestApp, body: Vec<u8>, auth: Option<&str>) -> reqwest::Response {
    let mut req = app
        .http
        .post(format!("{}/api/v1/messages", app.base))
        .header("content-type", "application/json")
        .body(body);
    if let Some(value) = auth {
        req = req.header("authorization", value);
    }
    req.send().await.unwrap()
}

/// Nothing reached the journal or the inbox, and a good message still goes through.
async fn assert_nothing_stored_and_still_serving(app: &TestApp) {
    assert_eq!(app.store.backlogs().await.unwrap().journal, 0);
    assert!(
        app.store
            .inbox(app.brand, ConversationStatus::Open, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        app.post_message(&message("after", "k-2", "Nu wel"))
            .await
            .status(),
        StatusCode::ACCEPTED
    );
}

#[tokio::test]
async fn forged_credentials_are_refused_on_every_endpoint() {
    let app = spawn_app().await;
    let mut altered = app.token.clone().into_bytes();
    let last = altered.len() - 1;
    altered[last] = if altered[last] == b'a' { b'b' } else { b'a' };
    let altered = String::from_utf8(altered).unwrap();
    let forged = [
        None,
        Some(String::new()),
        Some("Bearer ".to_string()),
        Some(format!("Bearer {altered}")),
        Some(format!("Basic {}", app.token)),
        Some(format!("Bearer{}", app.token)),
        Some(format!("Bearer {}x", app.token)),
        Some(format!("Bearer {}", &app.token[..app.token.len() / 2])),
    ];
    for auth in &forged {
        let resp = post_raw(&app, good_body("m-1"), auth.as_deref()).await;
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{auth:?}");
        for path in ["/api/v1/conversations", "/events"] {
            let mut req = app.http.get(format!("{}{path}", app.base));
            if let Some(value) = auth {
                req = req.header("authorization", value.as_str());
            }
            let status = req.send().await.unwrap().status();
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{path} with {auth:?}");
        }
    }
    // A forged session cookie cannot reply or change anything.
    let web = no_redirects();
    for (path, form) in [
        (
            "/conversations/1/reply",
            vec![("text", "hoi"), ("key", "k")],
        ),
        ("/conversations/1/status", vec![("status", "closed")]),
        (
            "/customers/1",
            vec![("display_name", "x"), ("notes", ""), ("back", "1")],
        ),
    ] {
        let status = web
            .post(format!("{}{path}", app.base))
            .header("cookie", "balie_session=forged-session-token")
            .form(&form)
            .send()
            .await
            .unwrap()
            .status();
        assert!(
            status == StatusCode::UNAUTHORIZED || status.is_redirection(),
            "{path}: {status}"
        );
    }
    assert_nothing_stored_and_still_serving(&app).await;
}

#[tokio::test]
async fn a_replayed_message_is_stored_once_however_often_it_comes() {
    let app = spawn_app().await;
    let auth = format!("Bearer {}", app.token);
    let sends = (0..40).map(|_| post_raw(&app, good_body("replayed"), Some(&auth)));
    let responses = futures_util::future::join_all(sends).await;
    let mut new = 0;
    for resp in responses {
        assert_eq!(resp.status(), StatusCode::ACCEPTED);
        let body: serde_json::Value = resp.json().await.unwrap();
        if body["duplicate"] == false {
            new += 1;
        }
    }
    assert_eq!(new, 1, "exactly one of the copies is new");
    let conversations = app.conversations().await;
    let list = conversations.as_array().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["messages"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn truncated_bodies_are_refused_at_every_length() {
    let app = spawn_app().await;
    let auth = format!("Bearer {}", app.token);
    let body = good_body("whole");
    for cut in (0..body.len()).step_by(3) {
        let resp = post_raw(&app, body[..cut].to_vec(), Some(&auth)).await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "cut at {cut}");
    }
    assert_nothing_stored_and_still_serving(&app).await;
}

#[tokio::test]
async fn oversized_bodies_and_fields_are_refused() {
    let app = spawn_app().await;
    let auth = format!("Bearer {}", app.token);
    let long = |n: usize| "x".repeat(n);
    let cases = [
        (
            json!({"channel":"web","external_id":"a","author":{"id":"k"},"text":long(64 * 1024 + 1)}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"channel":"web","external_id":long(513),"author":{"id":"k"},"text":"hoi"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"channel":long(101),"external_id":"a","author":{"id":"k"},"text":"hoi"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"channel":"web","external_id":"a","author":{"id":"k","name":long(201)},"text":"hoi"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"channel":"web","external_id":"a","author":{"id":"k"},"text":"hoi","padding":long(2 * 1024 * 1024)}),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
    ];
    for (body, expected) in cases {
        let resp = post_raw(&app, body.to_string().into_bytes(), Some(&auth)).await;
        assert_eq!(resp.status(), expected);
    }
    assert_nothing_stored_and_still_serving(&app).await;
}

#[tokio::test]
async fn wrongly_encoded_bodies_are_refused() {
    let app = spawn_app().await;
    let auth = format!("Bearer {}", app.token);
    let text = String::from_utf8(good_body("enc")).unwrap();
    let utf16: Vec<u8> = text.encode_utf16().flat_map(u16::to_le_bytes).collect();
    let mut bom = vec![0xEF, 0xBB, 0xBF];
    bom.extend_from_slice(text.as_bytes());
    let latin1 = b"{\"channel\":\"web\",\"external_id\":\"e\",\"author\":{\"id\":\"k\"},\"text\":\"caf\xe9\"}"
        .to_vec();
    let lone_surrogate =
        br#"{"channel":"web","external_id":"e","author":{"id":"k"},"text":"\ud800"}"#.to_vec();
    let nul_in_text = b"{\"channel\":\"web\",\"external_id\":\"e\",\"author\":{\"id\":\"k\"},\"text\":\"a\x00b\"}"
        .to_vec();
    let form = b"channel=web&external_id=e&author=k&text=hoi".to_vec();
    for (name, body) in [
        ("utf-16", utf16),
        ("byte order mark", bom),
        ("latin-1", latin1),
        ("lone surrogate", lone_surrogate),
        ("raw control character", nul_in_text),
        ("form encoding", form),
    ] {
        let resp = post_raw(&app, body, Some(&auth)).await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{name}");
    }
    assert_nothing_stored_and_still_serving(&app).await;
}

#[tokio::test]
async fn deeply_nested_bodies_are_refused_without_harm() {
    let app = spawn_app().await;
    let auth = format!("Bearer {}", app.token);
    let depth = 100_000;
    let arrays = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    let in_field = format!(
        r#"{{"channel":"web","external_id":"n","author":{{"id":"k"}},"text":"hoi","extra":{}{}}}"#,
        "{\"a\":".repeat(depth),
        "1".to_string() + &"}".repeat(depth)
    );
    let as_author = format!(
        r#"{{"channel":"web","external_id":"n","text":"hoi","author":{}}}"#,
        "[".repeat(5_000) + &"]".repeat(5_000)
    );
    for (name, body) in [
        ("nested arrays", arrays),
        ("nested extra field", in_field),
        ("nested author", as_author),
    ] {
        let resp = post_raw(&app, body.into_bytes(), Some(&auth)).await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{name}");
    }
    assert_nothing_stored_and_still_serving(&app).await;
}

#[tokio::test]
async fn bad_query_parameters_and_paths_are_refused() {
    let app = spawn_app().await;
    for query in [
        "status=everything",
        "limit=lots",
        "limit=99999999999999999999",
    ] {
        let status = app
            .http
            .get(format!("{}/api/v1/conversations?{query}", app.base))
            .bearer_auth(&app.token)
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}");
    }
    let cookie = app.login().await;
    let web = no_redirects();
    for (path, status) in [
        ("/conversations/not-a-number/reply", StatusCode::BAD_REQUEST),
        ("/conversations/999999/reply", StatusCode::NOT_FOUND),
    ] {
        let got = web
            .post(format!("{}{path}", app.base))
            .header("cookie", &cookie)
            .form(&[("text", "hoi"), ("key", "k-1")])
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(got, status, "{path}");
    }
    let long_key = "k".repeat(129);
    let got = web
        .post(format!("{}/conversations/1/reply", app.base))
        .header("cookie", &cookie)
        .form(&[("text", "hoi"), ("key", long_key.as_str())])
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(got, StatusCode::BAD_REQUEST, "an oversized reply key");
    assert_nothing_stored_and_still_serving(&app).await;
}

mod webhooks {
    //! The same hostility on the platform webhooks, correctly signed, so each bad body gets
    //! past the signature check and must be refused by parsing.

    use axum::http::StatusCode;
    use balie_core::ChannelKind;
    use balie_server::channel_keys::ChannelKeys;
    use balie_server::platform_channels::{self, PlatformSettings, SecretName};

    use super::assert_nothing_stored_and_still_serving;
    use crate::support::{TestApp, spawn_app};

    const APP_SECRET: &str = "badinput-meta-app-secret";
    const CONSUMER_SECRET: &str = "badinput-x-consumer-secret";
    const TELEGRAM_SECRET: &str = "badinput-telegram-secret";

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!("{}/../channels/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    pub(super) async fn configure(app: &TestApp) {
        let keys = ChannelKeys::open_or_create(app.dir.path()).unwrap();
        let brand = app
            .store
            .ensure_brand("Balie", balie_server::outbox::now_ms())
            .await
            .unwrap();
        let channels = [
            (
                ChannelKind::Messenger,
                "fb-dm",
                PlatformSettings {
                    page_id: Some("104512345678901".to_owned()),
                    ..PlatformSettings::default()
                },
                vec![
                    (SecretName::AppSecret, APP_SECRET.to_owned()),
                    (SecretName::VerifyToken, "verify".to_owned()),
                    (SecretName::AccessToken, "page-token".to_owned()),
                ],
            ),
            (
                ChannelKind::X,
                "x",
                PlatformSettings {
                    x_user_id: Some("1500000000000000001".to_owned()),
                    ..PlatformSettings::default()
                },
                vec![
                    (SecretName::ConsumerSecret, CONSUMER_SECRET.to_owned()),
                    (SecretName::AccessToken, "x-token".to_owned()),
                ],
            ),
            (
                ChannelKind::Telegram,
                "telegram",
                PlatformSettings::default(),
                vec![
                    (SecretName::BotToken, "123:bot".to_owned()),
                    (SecretName::SecretToken, TELEGRAM_SECRET.to_owned()),
                ],
            ),
        ];
        for (kind, name, settings, secrets) in channels {
            platform_channels::configure(
                app.store.as_ref(),
                &keys,
                platform_channels::Change {
                    brand,
                    may_repoint: true,
                },
                kind,
                name,
                &settings,
                &secrets,
            )
            .await
            .unwrap();
        }
    }

    /// Posts `body` to a platform's webhook with a valid signature for it.
    async fn post_signed(app: &TestApp, platform: &str, body: Vec<u8>) -> StatusCode {
        let req = match platform {
            "meta" => app
                .http
                .post(format!("{}/webhooks/meta/fb-dm", app.base))
                .header(
                    "x-hub-signature-256",
                    balie_channels::signature::sha256_header(APP_SECRET.as_bytes(), &body),
                ),
            "x" => app.http.post(format!("{}/webhooks/x/x", app.base)).header(
                "x-twitter-webhooks-signature",
                balie_channels::x::signature_header(CONSUMER_SECRET, &body),
            ),
            _ => app
                .http
                .post(format!("{}/webhooks/telegram/telegram", app.base))
                .header("x-telegram-bot-api-secret-token", TELEGRAM_SECRET),
        };
        req.header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap()
            .status()
    }

    #[tokio::test]
    async fn signed_but_broken_webhook_bodies_are_refused_and_store_nothing() {
        let app = spawn_app().await;
        configure(&app).await;
        let depth = 100_000;
        for (platform, good) in [
            ("meta", fixture("meta/messenger_message.json")),
            ("x", fixture("x/direct_message_events.json")),
            ("telegram", fixture("telegram/private_message.json")),
        ] {
            let text = String::from_utf8(good.clone()).unwrap();
            let mut bad: Vec<(String, Vec<u8>, StatusCode)> = vec![
                (
                    "utf-16".into(),
                    text.encode_utf16().flat_map(u16::to_le_bytes).collect(),
                    StatusCode::BAD_REQUEST,
                ),
                (
                    "nested arrays".into(),
                    format!("{}{}", "[".repeat(depth), "]".repeat(depth)).into_bytes(),
                    StatusCode::BAD_REQUEST,
                ),
                (
                    "garbage".into(),
                    (0..=255u8).cycle().take(4096).collect(),
                    StatusCode::BAD_REQUEST,
                ),
                (
                    "oversized".into(),
                    vec![b' '; 2 * 1024 * 1024],
                    StatusCode::PAYLOAD_TOO_LARGE,
                ),
            ];
            for cut in [1, good.len() / 3, good.len() / 2, good.len() - 2] {
                bad.push((
                    format!("truncated at {cut}"),
                    good[..cut].to_vec(),
                    StatusCode::BAD_REQUEST,
                ));
            }
            for (name, body, expected) in bad {
                let status = post_signed(&app, platform, body).await;
                assert_eq!(status, expected, "{platform}: {name}");
            }
        }
        assert_nothing_stored_and_still_serving(&app).await;
    }
}

#[tokio::test]
async fn a_platform_channels_name_is_refused_on_the_api_every_time() {
    let app = spawn_app().await;
    webhooks::configure(&app).await;
    // Twice: the second answer must not come from anything remembered after the first.
    for attempt in 0..2 {
        let resp = app
            .post_message(&json!({
                "channel": "fb-dm",
                "external_id": format!("spoof-{attempt}"),
                "author": { "id": "k-1" },
                "text": "Ik doe alsof ik Messenger ben",
            }))
            .await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
        let err: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(err["field"], "channel", "{err}");
    }
    // An API channel of its own is remembered and keeps working.
    for i in 0..3 {
        let body = message(&format!("ok-{i}"), "k-1", "Hallo");
        assert_eq!(app.post_message(&body).await.status(), StatusCode::ACCEPTED);
    }
    let listed = app.conversations().await;
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["channel"], "web");
    assert_eq!(listed[0]["messages"].as_array().unwrap().len(), 3);
}
