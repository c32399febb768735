//! Platform webhooks and replies end to end: signed fixtures in, stored once and listed;
//! forged requests out; handshakes; replies to a local fake platform with exact requests,
//! sent once through a 429 and never twice across a crash.

use std::time::Duration;

use balie_core::{ChannelKind, ConversationId, DeliveryState, Direction, EventKind, Message};
use balie_server::channel_keys::ChannelKeys;
use balie_server::outbox::DELIVERY_UNKNOWN;
use balie_server::platform_channels::{self, PlatformSettings, SecretName};
use balie_store::{Outbox, SqliteStore, Store};
use reqwest::StatusCode;
use serde_json::{Value, json};
use wiremock::matchers::{body_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::{EMAIL, TestApp, eventually, spawn_app, spawn_app_in};

const APP_SECRET: &str = "meta-app-secret-not-for-logs";
const VERIFY_TOKEN: &str = "meta-verify-token";
const PAGE_TOKEN: &str = "EAAG-page-token-not-for-logs";
const CONSUMER_SECRET: &str = "x-consumer-secret-not-for-logs";
const X_TOKEN: &str = "x-user-token-not-for-logs";
const BOT_TOKEN: &str = "123456:AA-bot-token-not-for-logs";
const TELEGRAM_SECRET: &str = "telegram-secret-token";

const PAGE_ID: &str = "104512345678901";
const PHONE_NUMBER_ID: &str = "106540352242922";
const X_USER_ID: &str = "1500000000000000001";

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/../channels/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn now_ms() -> i64 {
    balie_server::outbox::now_ms()
}

/// Adds (or updates) a platform channel the way `balie channel add` does.
async fn channel(
    app: &TestApp,
    kind: ChannelKind,
    name: &str,
    settings: PlatformSettings,
    secrets: &[(SecretName, &str)],
) {
    let keys = ChannelKeys::open_or_create(app.dir.path()).unwrap();
    let brand = app
        .store
        .ensure_brand("Balie", balie_server::outbox::now_ms())
        .await
        .unwrap();
    let secrets: Vec<(SecretName, String)> =
        secrets.iter().map(|(n, v)| (*n, (*v).to_owned())).collect();
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

fn meta_secrets() -> Vec<(SecretName, &'static str)> {
    vec![
        (SecretName::AppSecret, APP_SECRET),
        (SecretName::VerifyToken, VERIFY_TOKEN),
        (SecretName::AccessToken, PAGE_TOKEN),
    ]
}

/// Facebook page (Messenger and feed), WhatsApp, X and Telegram channels; Graph, X and
/// Telegram calls go to `api_base`.
async fn platforms(app: &TestApp, api_base: Option<String>) {
    let page = PlatformSettings {
        page_id: Some(PAGE_ID.to_owned()),
        api_base: api_base.clone(),
        ..PlatformSettings::default()
    };
    channel(
        app,
        ChannelKind::Messenger,
        "fb-dm",
        page.clone(),
        &meta_secrets(),
    )
    .await;
    channel(
        app,
        ChannelKind::FacebookPage,
        "fb-page",
        page,
        &meta_secrets(),
    )
    .await;
    let whatsapp = PlatformSettings {
        phone_number_id: Some(PHONE_NUMBER_ID.to_owned()),
        api_base: api_base.clone(),
        ..PlatformSettings::default()
    };
    channel(
        app,
        ChannelKind::Whatsapp,
        "whatsapp",
        whatsapp,
        &meta_secrets(),
    )
    .await;
    let x = PlatformSettings {
        x_user_id: Some(X_USER_ID.to_owned()),
        api_base: api_base.clone(),
        ..PlatformSettings::default()
    };
    channel(
        app,
        ChannelKind::X,
        "x",
        x,
        &[
            (SecretName::ConsumerSecret, CONSUMER_SECRET),
            (SecretName::AccessToken, X_TOKEN),
        ],
    )
    .await;
    let telegram = PlatformSettings {
        api_base,
        ..PlatformSettings::default()
    };
    channel(
        app,
        ChannelKind::Telegram,
        "telegram",
        telegram,
        &[
            (SecretName::BotToken, BOT_TOKEN),
            (SecretName::SecretToken, TELEGRAM_SECRET),
        ],
    )
    .await;
}

async fn post_meta(app: &TestApp, channel: &str, body: &[u8]) -> reqwest::Response {
    let signature = balie_channels::signature::sha256_header(APP_SECRET.as_bytes(), body);
    app.http
        .post(format!("{}/webhooks/meta/{channel}", app.base))
        .header("x-hub-signature-256", signature)
        .header("content-type", "application/json")
        .body(body.to_vec())
        .send()
        .await
        .unwrap()
}

async fn post_x(app: &TestApp, body: &[u8]) -> reqwest::Response {
    app.http
        .post(format!("{}/webhooks/x/x", app.base))
        .header(
            "x-twitter-webhooks-signature",
            balie_channels::x::signature_header(CONSUMER_SECRET, body),
        )
        .header("content-type", "application/json")
        .body(body.to_vec())
        .send()
        .await
        .unwrap()
}

async fn post_telegram(app: &TestApp, body: &[u8]) -> reqwest::Response {
    app.http
        .post(format!("{}/webhooks/telegram/telegram", app.base))
        .header("x-telegram-bot-api-secret-token", TELEGRAM_SECRET)
        .header("content-type", "application/json")
        .body(body.to_vec())
        .send()
        .await
        .unwrap()
}

async fn accepted(resp: reqwest::Response) -> Value {
    assert_eq!(resp.status(), StatusCode::OK);
    resp.json().await.unwrap()
}

/// (channel kind, message texts) of every open conversation.
async fn listed(app: &TestApp) -> Vec<(String, Vec<String>)> {
    let conversations = app.conversations().await;
    conversations
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let texts = c["messages"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["text"].as_str().unwrap_or("").to_owned())
                .collect();
            (c["channel_kind"].as_str().unwrap().to_owned(), texts)
        })
        .collect()
}

async fn metric(app: &TestApp, name: &str) -> u64 {
    let text = app
        .http
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {text}"))
}

#[tokio::test]
async fn signed_fixtures_from_every_platform_are_stored_and_listed() {
    let app = spawn_app().await;
    platforms(&app, None).await;
    let dm =
        accepted(post_meta(&app, "fb-dm", &fixture("meta/messenger_message.json")).await).await;
    assert_eq!(dm["stored"], 1, "{dm}");
    // The page's feed arrives on the same Meta app endpoint and is routed by kind and page.
    let feed =
        accepted(post_meta(&app, "fb-dm", &fixture("meta/page_feed_comments.json")).await).await;
    assert!(feed["stored"].as_u64().unwrap() >= 2, "{feed}");
    let wa = accepted(post_meta(&app, "whatsapp", &fixture("meta/whatsapp_text_reply.json")).await)
        .await;
    assert_eq!(wa["stored"], 1, "{wa}");
    let x = accepted(post_x(&app, &fixture("x/tweet_create_events.json")).await).await;
    assert!(x["stored"].as_u64().unwrap() >= 2, "{x}");
    let tg = accepted(post_telegram(&app, &fixture("telegram/private_message.json")).await).await;
    assert_eq!(tg["stored"], 1, "{tg}");

    let listed = listed(&app).await;
    let has = |kind: &str, text: &str| {
        listed
            .iter()
            .any(|(k, texts)| k == kind && texts.iter().any(|t| t.contains(text)))
    };
    assert!(has("messenger", "niet bezorgd"), "{listed:?}");
    assert!(has("facebook_page", "winkel in Utrecht"), "{listed:?}");
    assert!(has("whatsapp", "ordernummer 5512"), "{listed:?}");
    assert!(has("x", "een week onderweg"), "{listed:?}");
    assert!(has("telegram", "afspraak verzetten"), "{listed:?}");

    // The conversation says where it happened on the platform, with a link to it.
    let all: serde_json::Value = app
        .http
        .get(format!("{}/api/v1/conversations?status=open", app.base))
        .bearer_auth(&app.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let places: Vec<(String, String)> = all
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| c["messages"].as_array().unwrap().clone())
        .map(|m| {
            (
                m["place"]["kind"].as_str().unwrap_or("").to_string(),
                m["place"]["url"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert!(places.iter().any(|(k, _)| k == "direct"), "{places:?}");
    assert!(
        places
            .iter()
            .any(|(k, u)| k == "comment" && u.starts_with("https://www.facebook.com/")),
        "{places:?}"
    );
    let comment_conversation = all
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["channel_kind"] == "facebook_page")
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    let cookie = app.login().await;
    let page = app
        .http
        .get(format!("{}/conversations/{comment_conversation}", app.base))
        .header("cookie", &cookie)
        .header("accept-language", "en")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("class=\"place\">comment</span>"), "{page}");
    assert!(
        page.contains("href=\"https://www.facebook.com/"),
        "a link to the comment"
    );
}

#[tokio::test]
async fn the_same_delivery_twice_is_stored_once() {
    let app = spawn_app().await;
    platforms(&app, None).await;
    let deliveries: [(&str, Vec<u8>); 3] = [
        ("meta", fixture("meta/messenger_message.json")),
        ("x", fixture("x/tweet_create_events.json")),
        ("telegram", fixture("telegram/private_message.json")),
    ];
    let mut duplicates = 0;
    for (platform, body) in &deliveries {
        let post = || async {
            match *platform {
                "meta" => post_meta(&app, "fb-dm", body).await,
                "x" => post_x(&app, body).await,
                _ => post_telegram(&app, body).await,
            }
        };
        let first = accepted(post().await).await;
        let messages_before: usize = listed(&app).await.iter().map(|(_, t)| t.len()).sum();
        let again = accepted(post().await).await;
        assert!(
            first["stored"].as_u64().unwrap() >= 1,
            "{platform}: {first}"
        );
        assert_eq!(again["stored"], 0, "{platform}: {again}");
        assert_eq!(again["duplicates"], first["stored"], "{platform}: {again}");
        duplicates += again["duplicates"].as_u64().unwrap();
        let messages_after: usize = listed(&app).await.iter().map(|(_, t)| t.len()).sum();
        assert_eq!(messages_before, messages_after, "{platform}");
    }
    assert_eq!(
        metric(&app, "balie_messages_deduplicated_total").await,
        duplicates
    );
}

#[tokio::test]
async fn forged_or_unsigned_deliveries_are_refused_and_counted() {
    let app = spawn_app().await;
    platforms(&app, None).await;
    let body = fixture("meta/messenger_message.json");
    let forged = balie_channels::signature::sha256_header(b"not-the-app-secret", &body);
    let meta_forged = app
        .http
        .post(format!("{}/webhooks/meta/fb-dm", app.base))
        .header("x-hub-signature-256", forged)
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(meta_forged.status(), StatusCode::UNAUTHORIZED);
    let meta_unsigned = app
        .http
        .post(format!("{}/webhooks/meta/fb-dm", app.base))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(meta_unsigned.status(), StatusCode::UNAUTHORIZED);
    let tweets = fixture("x/tweet_create_events.json");
    let x_forged = app
        .http
        .post(format!("{}/webhooks/x/x", app.base))
        .header(
            "x-twitter-webhooks-signature",
            balie_channels::x::signature_header("wrong", &tweets),
        )
        .body(tweets)
        .send()
        .await
        .unwrap();
    assert_eq!(x_forged.status(), StatusCode::UNAUTHORIZED);
    let telegram_forged = app
        .http
        .post(format!("{}/webhooks/telegram/telegram", app.base))
        .header("x-telegram-bot-api-secret-token", "guessed")
        .body(fixture("telegram/private_message.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(telegram_forged.status(), StatusCode::UNAUTHORIZED);
    let unknown_channel = post_meta(&app, "no-such-channel", b"{}").await;
    assert_eq!(unknown_channel.status(), StatusCode::NOT_FOUND);

    assert_eq!(
        metric(&app, "balie_webhook_signature_rejected_total").await,
        4
    );
    assert_eq!(metric(&app, "balie_messages_received_total").await, 0);
    assert!(listed(&app).await.is_empty(), "nothing is stored");
    assert_eq!(app.store.backlogs().await.unwrap().journal, 0);
}

#[tokio::test]
async fn the_meta_handshake_answers_only_the_configured_token() {
    let app = spawn_app().await;
    platforms(&app, None).await;
    let handshake = |token: &'static str, channel: &'static str| {
        let url = format!("{}/webhooks/meta/{channel}", app.base);
        let http = app.http.clone();
        async move {
            http.get(format!(
                "{url}?hub.mode=subscribe&hub.verify_token={token}&hub.challenge=1158201444"
            ))
            .send()
            .await
            .unwrap()
        }
    };
    let ok = handshake(VERIFY_TOKEN, "fb-dm").await;
    assert_eq!(ok.status(), StatusCode::OK);
    assert_eq!(ok.text().await.unwrap(), "1158201444");
    let wrong = handshake("guess", "fb-dm").await;
    assert_eq!(wrong.status(), StatusCode::FORBIDDEN);
    let body = wrong.text().await.unwrap();
    assert!(!body.contains(VERIFY_TOKEN), "{body}");
    // A Meta channel without a verify token refuses every handshake.
    channel(
        &app,
        ChannelKind::Instagram,
        "ig-untokened",
        PlatformSettings::default(),
        &[],
    )
    .await;
    assert_eq!(
        handshake("", "ig-untokened").await.status(),
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn the_x_crc_is_answered_with_the_consumer_secret() {
    let app = spawn_app().await;
    platforms(&app, None).await;
    let resp = app
        .http
        .get(format!("{}/webhooks/x/x?crc_token=challenge-123", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.headers()["content-type"].to_str().unwrap(),
        "application/json"
    );
    let body: Value = resp.json().await.unwrap();
    let expected: Value = serde_json::from_str(
        &balie_channels::x::crc_response(CONSUMER_SECRET, "challenge-123").unwrap(),
    )
    .unwrap();
    assert_eq!(body, expected);
    assert!(
        body["response_token"]
            .as_str()
            .unwrap()
            .starts_with("sha256=")
    );
}

/// The attack the security review found: ask the CRC endpoint to "answer" a delivery body, then
/// post that body with the answer as its signature. The CRC request is refused, so the forged
/// delivery has no valid signature: 401, and nothing is stored.
#[tokio::test]
async fn an_x_delivery_cannot_be_forged_through_the_crc_endpoint() {
    let app = spawn_app().await;
    platforms(&app, None).await;
    let forged = fixture("x/tweet_create_events.json");
    let crc = app
        .http
        .get(
            reqwest::Url::parse_with_params(
                &format!("{}/webhooks/x/x", app.base),
                [("crc_token", String::from_utf8_lossy(&forged))],
            )
            .unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(crc.status(), StatusCode::BAD_REQUEST);
    let refusal: Value = crc.json().await.unwrap();
    assert_eq!(refusal["field"], "crc_token");
    assert!(refusal.get("response_token").is_none());

    // The best an attacker has now is a signature for some other token.
    let other = app
        .http
        .get(format!("{}/webhooks/x/x?crc_token=challenge-123", app.base))
        .send()
        .await
        .unwrap();
    let other: Value = other.json().await.unwrap();
    let delivery = app
        .http
        .post(format!("{}/webhooks/x/x", app.base))
        .header(
            "x-twitter-webhooks-signature",
            other["response_token"].as_str().unwrap(),
        )
        .header("content-type", "application/json")
        .body(forged)
        .send()
        .await
        .unwrap();
    assert_eq!(delivery.status(), StatusCode::UNAUTHORIZED);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(listed(&app).await, Vec::<(String, Vec<String>)>::new());
}

// ---- Replies ----------------------------------------------------------------------------------

/// A Messenger DM written just now by `psid`.
fn messenger_dm(psid: &str, mid: &str, text: &str) -> Vec<u8> {
    json!({"object": "page", "entry": [{"id": PAGE_ID, "time": now_ms(), "messaging": [{
        "sender": {"id": psid}, "recipient": {"id": PAGE_ID}, "timestamp": now_ms(),
        "message": {"mid": mid, "text": text}
    }]}]})
    .to_string()
    .into_bytes()
}

/// Sends `text` as the test agent from the conversation page; returns the outbox key.
async fn reply(app: &TestApp, conversation: i64, text: &str) -> String {
    let cookie = app.login().await;
    let resp = app
        .http
        .post(format!("{}/conversations/{conversation}/reply", app.base))
        .header("cookie", &cookie)
        .form(&[("text", text), ("key", "form-1")])
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success() || resp.status().is_redirection());
    let (user, _) = app.store.user_credentials(EMAIL).await.unwrap().unwrap();
    format!("web:{}:form-1", user.id)
}

async fn only_conversation(app: &TestApp) -> i64 {
    let conversations = app.conversations().await;
    assert_eq!(
        conversations.as_array().unwrap().len(),
        1,
        "{conversations}"
    );
    conversations[0]["id"].as_i64().unwrap()
}

async fn outbound(store: &dyn Store, conversation: i64) -> Vec<Message> {
    store
        .conversation_messages(balie_core::BrandId(1), ConversationId(conversation))
        .await
        .unwrap()
        .into_iter()
        .filter(|m| m.direction == Direction::Out)
        .collect()
}

async fn settled(store: &dyn Store, conversation: i64) -> Message {
    eventually(15, || async {
        outbound(store, conversation)
            .await
            .into_iter()
            .find(|m| m.delivery != DeliveryState::Queued)
    })
    .await
}

#[tokio::test]
async fn a_messenger_reply_goes_to_the_send_api_exactly_as_documented() {
    let fake = MockServer::start().await;
    let app = spawn_app().await;
    platforms(&app, Some(fake.uri())).await;
    accepted(
        post_meta(
            &app,
            "fb-dm",
            &messenger_dm("7012345678901234", "m_in_1", "Hallo?"),
        )
        .await,
    )
    .await;
    let conversation = only_conversation(&app).await;
    let text = "Hoi! We kijken het meteen na.";
    let (user, _) = app.store.user_credentials(EMAIL).await.unwrap().unwrap();
    let key = format!("web:{}:form-1", user.id);
    Mock::given(method("POST"))
        .and(path(format!("/v23.0/{PAGE_ID}/messages")))
        .and(header(
            "authorization",
            format!("Bearer {PAGE_TOKEN}").as_str(),
        ))
        .and(body_json(json!({
            "recipient": {"id": "7012345678901234"},
            "messaging_type": "RESPONSE",
            "message": {"text": text, "metadata": key},
        })))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "recipient_id": "7012345678901234", "message_id": "m_out_1"
        })))
        .expect(1)
        .mount(&fake)
        .await;
    assert_eq!(reply(&app, conversation, text).await, key);
    let sent = settled(app.store.as_ref(), conversation).await;
    assert_eq!(
        sent.delivery,
        DeliveryState::Sent,
        "{:?}",
        sent.delivery_error
    );
    assert_eq!(sent.external_id.as_deref(), Some("m_out_1"));
    fake.verify().await;
}

#[tokio::test]
async fn an_x_direct_message_is_answered_in_its_dm_thread() {
    let fake = MockServer::start().await;
    let app = spawn_app().await;
    platforms(&app, Some(fake.uri())).await;
    accepted(post_x(&app, &fixture("x/direct_message_events.json")).await).await;
    let conversation = only_conversation(&app).await;
    let participant = app
        .store
        .conversation(app.brand, ConversationId(conversation))
        .await
        .unwrap()
        .unwrap()
        .customer
        .identities[0]
        .external_id
        .clone();
    Mock::given(method("POST"))
        .and(path(format!(
            "/2/dm_conversations/with/{participant}/messages"
        )))
        .and(header(
            "authorization",
            format!("Bearer {X_TOKEN}").as_str(),
        ))
        .and(body_json(json!({ "text": "Stuur ons je ordernummer?" })))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({
            "data": {"dm_conversation_id": "c-1", "dm_event_id": "dm-out-1"}
        })))
        .expect(1)
        .mount(&fake)
        .await;
    reply(&app, conversation, "Stuur ons je ordernummer?").await;
    let sent = settled(app.store.as_ref(), conversation).await;
    assert_eq!(
        sent.delivery,
        DeliveryState::Sent,
        "{:?}",
        sent.delivery_error
    );
    assert_eq!(sent.external_id.as_deref(), Some("dm-out-1"));
    fake.verify().await;
}

#[tokio::test]
async fn a_telegram_reply_waits_out_a_429_and_is_sent_once() {
    let fake = MockServer::start().await;
    let app = spawn_app().await;
    platforms(&app, Some(fake.uri())).await;
    accepted(post_telegram(&app, &fixture("telegram/private_message.json")).await).await;
    let conversation = only_conversation(&app).await;
    let expected = json!({
        "chat_id": 5550001111_i64,
        "text": "Natuurlijk, welke dag past je?",
        "reply_parameters": {"message_id": 42, "allow_sending_without_reply": true},
    });
    let send_path = format!("/bot{BOT_TOKEN}/sendMessage");
    Mock::given(method("POST"))
        .and(path(send_path.as_str()))
        .and(body_json(expected.clone()))
        .respond_with(ResponseTemplate::new(429).set_body_json(json!({
            "ok": false, "error_code": 429,
            "description": "Too Many Requests: retry after 1",
            "parameters": {"retry_after": 1}
        })))
        .up_to_n_times(1)
        .expect(1)
        .mount(&fake)
        .await;
    Mock::given(method("POST"))
        .and(path(send_path.as_str()))
        .and(body_json(expected))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "ok": true, "result": {"message_id": 43, "chat": {"id": 5550001111_i64}, "date": 1}
        })))
        .expect(1)
        .mount(&fake)
        .await;
    reply(&app, conversation, "Natuurlijk, welke dag past je?").await;
    let sent = settled(app.store.as_ref(), conversation).await;
    assert_eq!(
        sent.delivery,
        DeliveryState::Sent,
        "{:?}",
        sent.delivery_error
    );
    assert_eq!(sent.external_id.as_deref(), Some("5550001111:43"));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(fake.received_requests().await.unwrap().len(), 2);
    fake.verify().await;
}

#[tokio::test]
async fn a_reply_whose_outcome_is_unknown_is_parked_not_resent() {
    let fake = MockServer::start().await;
    let app = spawn_app().await;
    platforms(&app, Some(fake.uri())).await;
    accepted(post_x(&app, &fixture("x/tweet_create_events.json")).await).await;
    let conversations = app.conversations().await;
    let conversation = conversations[0]["id"].as_i64().unwrap();
    // A 2xx without the new tweet's id: X may have posted it.
    Mock::given(method("POST"))
        .and(path("/2/tweets"))
        .respond_with(ResponseTemplate::new(200).set_body_string("<html>proxy</html>"))
        .expect(1)
        .mount(&fake)
        .await;
    reply(&app, conversation, "We zoeken het uit!").await;
    let parked = settled(app.store.as_ref(), conversation).await;
    assert_eq!(parked.delivery, DeliveryState::Failed);
    let reason = parked.delivery_error.unwrap();
    assert!(reason.starts_with(DELIVERY_UNKNOWN), "{reason}");
    assert!(!reason.contains(X_TOKEN));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    fake.verify().await;
}

#[tokio::test]
async fn a_platform_reply_interrupted_by_a_crash_is_not_sent_again() {
    let fake = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "data": {"id": "1992000000000000999", "text": "x"}
        })))
        .expect(0)
        .mount(&fake)
        .await;
    let app = spawn_app().await;
    platforms(&app, Some(fake.uri())).await;
    accepted(post_x(&app, &fixture("x/tweet_create_events.json")).await).await;
    let conversation = app.conversations().await[0]["id"].as_i64().unwrap();
    let (user, _) = app.store.user_credentials(EMAIL).await.unwrap().unwrap();
    let brand = app.brand;
    let dir = app.stop().await;
    // The crash: the reply was claimed (marked `sending`) and the process died before the
    // platform's answer was recorded.
    {
        let store = SqliteStore::open(&dir.path().join("balie.db"))
            .await
            .unwrap();
        store
            .queue_reply(
                brand,
                ConversationId(conversation),
                user.id,
                "Sorry!",
                "k-crash",
                balie_server::outbox::now_ms(),
            )
            .await
            .unwrap();
        let claimed = store.claim_outbox(now_ms() + 1_000, 10).await.unwrap();
        assert_eq!(claimed.len(), 1);
        store.close().await;
    }
    let app = spawn_app_in(dir, |_| {}).await;
    let parked = settled(app.store.as_ref(), conversation).await;
    assert_eq!(parked.delivery, DeliveryState::Failed);
    assert!(
        parked
            .delivery_error
            .as_deref()
            .unwrap()
            .starts_with(DELIVERY_UNKNOWN)
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(fake.received_requests().await.unwrap().is_empty());
    assert_eq!(outbound(app.store.as_ref(), conversation).await.len(), 1);
}

#[tokio::test]
async fn a_whatsapp_reply_outside_the_window_is_refused_with_a_reason() {
    let fake = MockServer::start().await;
    let app = spawn_app().await;
    platforms(&app, Some(fake.uri())).await;
    // The fixture's message is from 2025: long outside WhatsApp's 24-hour window.
    accepted(post_meta(&app, "whatsapp", &fixture("meta/whatsapp_text_reply.json")).await).await;
    let conversation = only_conversation(&app).await;
    reply(&app, conversation, "Hoi!").await;
    let refused = settled(app.store.as_ref(), conversation).await;
    assert_eq!(refused.delivery, DeliveryState::Failed);
    assert!(
        refused
            .delivery_error
            .as_deref()
            .unwrap()
            .contains("template"),
        "{:?}",
        refused.delivery_error
    );
    assert!(fake.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn channel_secrets_are_sealed_at_rest() {
    let app = spawn_app().await;
    platforms(&app, None).await;
    let fb = app.store.channel_by_name("fb-dm").await.unwrap().unwrap();
    let stored = app.store.channel_secrets(fb.id).await.unwrap();
    assert_eq!(stored.len(), 3);
    for (name, sealed) in &stored {
        for secret in [APP_SECRET, VERIFY_TOKEN, PAGE_TOKEN] {
            assert!(
                !sealed
                    .ciphertext
                    .windows(secret.len())
                    .any(|w| w == secret.as_bytes()),
                "{name} is stored in the clear"
            );
        }
    }
    assert!(!fb.settings.contains(APP_SECRET) && !fb.settings.contains(PAGE_TOKEN));
    for file in ["balie.db", "balie.db-wal"] {
        let bytes = std::fs::read(app.dir.path().join(file)).unwrap_or_default();
        assert!(
            !bytes
                .windows(PAGE_TOKEN.len())
                .any(|w| w == PAGE_TOKEN.as_bytes()),
            "{file} holds a token in the clear"
        );
    }
}

/// A WhatsApp text written just now by `wa_id`.
fn whatsapp_text(wa_id: &str, wamid: &str, text: &str) -> Vec<u8> {
    json!({"object": "whatsapp_business_account", "entry": [{"id": "102290129340398", "changes": [{
        "field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550783881", "phone_number_id": PHONE_NUMBER_ID},
            "contacts": [{"profile": {"name": "Test Klant"}, "wa_id": wa_id}],
            "messages": [{"from": wa_id, "id": wamid, "timestamp": (now_ms() / 1000).to_string(),
                "type": "text", "text": {"body": text}}]}}]}]})
    .to_string()
    .into_bytes()
}

/// A WhatsApp delivery report for `31612345678`, sent just now, with the fields of `status`.
fn whatsapp_status(mut status: Value) -> Vec<u8> {
    status["timestamp"] = json!((now_ms() / 1000).to_string());
    status["recipient_id"] = json!("31612345678");
    json!({"object": "whatsapp_business_account", "entry": [{"id": "102290129340398", "changes": [{
        "field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550783881", "phone_number_id": PHONE_NUMBER_ID},
            "statuses": [status]}}]}]})
    .to_string()
    .into_bytes()
}

#[tokio::test]
async fn a_whatsapp_delivery_report_confirms_a_reply_whose_answer_was_lost() {
    let fake = MockServer::start().await;
    let app = spawn_app().await;
    platforms(&app, Some(fake.uri())).await;
    accepted(
        post_meta(
            &app,
            "whatsapp",
            &whatsapp_text("31612345678", "wamid.IN1", "Waar blijft mijn pakket?"),
        )
        .await,
    )
    .await;
    let conversation = only_conversation(&app).await;
    let (user, _) = app.store.user_credentials(EMAIL).await.unwrap().unwrap();
    let key = format!("web:{}:form-1", user.id);
    Mock::given(method("POST"))
        .and(path(format!("/v23.0/{PHONE_NUMBER_ID}/messages")))
        .and(header(
            "authorization",
            format!("Bearer {PAGE_TOKEN}").as_str(),
        ))
        .and(body_json(json!({
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": "31612345678",
            "type": "text",
            "text": {"preview_url": false, "body": "Hij komt vandaag!"},
            "context": {"message_id": "wamid.IN1"},
            "biz_opaque_callback_data": key,
        })))
        // Accepted, but the answer is not what WhatsApp documents: delivery unknown.
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"messages": []})))
        .expect(1)
        .mount(&fake)
        .await;
    reply(&app, conversation, "Hij komt vandaag!").await;
    let parked = settled(app.store.as_ref(), conversation).await;
    assert_eq!(parked.delivery, DeliveryState::Failed);
    assert!(parked.delivery_error.unwrap().starts_with(DELIVERY_UNKNOWN));
    let status = whatsapp_status(json!({"id": "wamid.OUT1", "status": "delivered",
        "biz_opaque_callback_data": key}));
    accepted(post_meta(&app, "whatsapp", &status).await).await;
    let confirmed = outbound(app.store.as_ref(), conversation).await.remove(0);
    assert_eq!(confirmed.delivery, DeliveryState::Sent);
    assert_eq!(confirmed.external_id.as_deref(), Some("wamid.OUT1"));
    fake.verify().await;
}

#[tokio::test]
async fn a_whatsapp_failure_report_marks_the_reply_failed_with_the_reason() {
    let fake = MockServer::start().await;
    let app = spawn_app().await;
    platforms(&app, Some(fake.uri())).await;
    accepted(
        post_meta(
            &app,
            "whatsapp",
            &whatsapp_text(
                "31612345678",
                "wamid.IN2",
                "Is mijn bestelling al verzonden?",
            ),
        )
        .await,
    )
    .await;
    let conversation = only_conversation(&app).await;
    let (user, _) = app.store.user_credentials(EMAIL).await.unwrap().unwrap();
    let key = format!("web:{}:form-1", user.id);
    Mock::given(method("POST"))
        .and(path(format!("/v23.0/{PHONE_NUMBER_ID}/messages")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "messaging_product": "whatsapp",
            "contacts": [{"input": "31612345678", "wa_id": "31612345678"}],
            "messages": [{"id": "wamid.OUT2"}]})))
        .expect(1)
        .mount(&fake)
        .await;
    reply(&app, conversation, "Ja, vandaag verzonden!").await;
    let sent = settled(app.store.as_ref(), conversation).await;
    assert_eq!(sent.delivery, DeliveryState::Sent);
    let status = whatsapp_status(json!({"id": "wamid.OUT2", "status": "failed",
        "biz_opaque_callback_data": key,
        "errors": [{"code": 131026, "title": "Message undeliverable"}]}));
    accepted(post_meta(&app, "whatsapp", &status).await).await;
    let failed = outbound(app.store.as_ref(), conversation).await.remove(0);
    assert_eq!(failed.delivery, DeliveryState::Failed);
    assert_eq!(
        failed.delivery_error.as_deref(),
        Some("WhatsApp: not delivered (131026: Message undeliverable)")
    );
    // Never sent again by itself: the fake expects exactly one send.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    fake.verify().await;
}

// ---- Nothing answered 200 and lost ---------------------------------------------------------------

const IG_ACCOUNT_ID: &str = "17841400000000001";

/// The texts of every message in the open conversations, each once per time it is listed.
async fn all_texts(app: &TestApp) -> Vec<String> {
    let mut texts: Vec<String> = listed(app)
        .await
        .into_iter()
        .flat_map(|(_, texts)| texts)
        .collect();
    texts.sort();
    texts
}

/// Posts `body` twice (the platform retrying), answering 200 both times.
async fn post_meta_twice(app: &TestApp, channel: &str, body: &[u8]) -> Value {
    let first = accepted(post_meta(app, channel, body).await).await;
    let again = accepted(post_meta(app, channel, body).await).await;
    assert_eq!(again["stored"], 0, "{again}");
    assert_eq!(again["duplicates"], first["stored"], "{again}");
    first
}

async fn metric_with(app: &TestApp, series: &str) -> u64 {
    let text = app
        .http
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{series} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

async fn events_of(app: &TestApp, conversation: i64) -> Vec<(EventKind, String)> {
    app.store
        .conversation_events(app.brand, ConversationId(conversation))
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.kind, e.detail))
        .collect()
}

#[tokio::test]
async fn a_whatsapp_customer_known_only_by_their_user_id_is_heard_once_after_a_retry() {
    let app = spawn_app().await;
    platforms(&app, None).await;
    let first = post_meta_twice(
        &app,
        "whatsapp",
        &fixture("meta/whatsapp_username_contact.json"),
    )
    .await;
    assert_eq!(first["stored"], 2, "{first}");
    assert_eq!(
        all_texts(&app).await,
        [
            "Kunnen jullie mij terugbellen over order 5512?",
            "Mijn bestelling 7781 is beschadigd aangekomen, wat nu?",
        ]
    );
    let mut ids = Vec::new();
    for c in app.conversations().await.as_array().unwrap() {
        let id = ConversationId(c["id"].as_i64().unwrap());
        let view = app
            .store
            .conversation(app.brand, id)
            .await
            .unwrap()
            .unwrap();
        ids.push(view.customer.identities[0].external_id.clone());
    }
    ids.sort();
    assert_eq!(ids, ["31612345678", "NL.1502576394655843"]);
}

#[tokio::test]
async fn a_reply_to_a_whatsapp_user_id_goes_to_the_recipient_field() {
    let fake = MockServer::start().await;
    let app = spawn_app().await;
    platforms(&app, Some(fake.uri())).await;
    let mut body: Value =
        serde_json::from_slice(&fixture("meta/whatsapp_username_contact.json")).unwrap();
    // Only the username-only customer, written just now (inside the 24-hour window).
    let change = &mut body["entry"][0]["changes"];
    change.as_array_mut().unwrap().truncate(1);
    change[0]["value"]["messages"][0]["timestamp"] = json!((now_ms() / 1000).to_string());
    accepted(post_meta(&app, "whatsapp", body.to_string().as_bytes()).await).await;
    let conversation = only_conversation(&app).await;
    let (user, _) = app.store.user_credentials(EMAIL).await.unwrap().unwrap();
    let key = format!("web:{}:form-1", user.id);
    Mock::given(method("POST"))
        .and(path(format!("/v23.0/{PHONE_NUMBER_ID}/messages")))
        .and(body_json(json!({
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "recipient": "NL.1502576394655843",
            "type": "text",
            "text": {"preview_url": false, "body": "Wat vervelend! Stuur je een foto?"},
            "context": {"message_id": "wamid.HBgUTkwuMTUwMjU3NjM5NDY1NTg0MxUCABIYFDNBQzQ5QkY1RTAzRDU1NkE0QzE3AA=="},
            "biz_opaque_callback_data": key,
        })))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "messaging_product": "whatsapp",
            "contacts": [{"input": "NL.1502576394655843", "user_id": "NL.1502576394655843"}],
            "messages": [{"id": "wamid.OUT-BSUID"}]})))
        .expect(1)
        .mount(&fake)
        .await;
    reply(&app, conversation, "Wat vervelend! Stuur je een foto?").await;
    let sent = settled(app.store.as_ref(), conversation).await;
    assert_eq!(
        sent.delivery,
        DeliveryState::Sent,
        "{:?}",
        sent.delivery_error
    );
    fake.verify().await;
}

/// The README's Facebook set-up: one `facebook_page` channel. Its Page's Messenger DMs and
/// comments both arrive, each once, and a DM is answered through the Send API.
#[tokio::test]
async fn one_facebook_page_channel_hears_its_dms_and_its_comments() {
    let fake = MockServer::start().await;
    let app = spawn_app().await;
    let page = PlatformSettings {
        page_id: Some(PAGE_ID.to_owned()),
        api_base: Some(fake.uri()),
        ..PlatformSettings::default()
    };
    channel(&app, ChannelKind::FacebookPage, "fb", page, &meta_secrets()).await;
    let dm = post_meta_twice(
        &app,
        "fb",
        &messenger_dm("7012345678901234", "m_dm_1", "Waar blijft mijn pakket?"),
    )
    .await;
    assert_eq!(dm["stored"], 1, "{dm}");
    post_meta_twice(&app, "fb", &fixture("meta/page_feed_comments.json")).await;
    let listed = listed(&app).await;
    let texts: Vec<&String> = listed.iter().flat_map(|(_, t)| t).collect();
    for said in [
        "Waar blijft mijn pakket?",
        "Wanneer gaat de winkel in Utrecht weer open?",
    ] {
        assert_eq!(
            texts.iter().filter(|t| **t == said).count(),
            1,
            "{said}: {listed:?}"
        );
    }
    assert!(
        listed.iter().all(|(kind, _)| kind == "facebook_page"),
        "{listed:?}"
    );
    let conversation = app
        .conversations()
        .await
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["messages"][0]["text"] == "Waar blijft mijn pakket?")
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    Mock::given(method("POST"))
        .and(path(format!("/v23.0/{PAGE_ID}/messages")))
        .and(body_json(json!({
            "recipient": {"id": "7012345678901234"},
            "messaging_type": "RESPONSE",
            "message": {"text": "We zoeken het uit!", "metadata": reply_key(&app).await},
        })))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "recipient_id": "7012345678901234", "message_id": "m_out_dm"
        })))
        .expect(1)
        .mount(&fake)
        .await;
    reply(&app, conversation, "We zoeken het uit!").await;
    let sent = settled(app.store.as_ref(), conversation).await;
    assert_eq!(
        sent.delivery,
        DeliveryState::Sent,
        "{:?}",
        sent.delivery_error
    );
    fake.verify().await;
}

async fn reply_key(app: &TestApp) -> String {
    let (user, _) = app.store.user_credentials(EMAIL).await.unwrap().unwrap();
    format!("web:{}:form-1", user.id)
}

#[tokio::test]
async fn a_whatsapp_edit_is_applied_and_the_earlier_wording_kept() {
    let app = spawn_app().await;
    platforms(&app, None).await;
    let original = "wamid.HBgLMzE2MTIzNDU2NzgVAgASGBQzT1JJR0lOQUwwMDAwMDAwMDAwMQA=";
    accepted(
        post_meta(
            &app,
            "whatsapp",
            &whatsapp_text("31612345678", original, "Mijn ordernummer is 5512"),
        )
        .await,
    )
    .await;
    let conversation = only_conversation(&app).await;
    let first = post_meta_twice(&app, "whatsapp", &fixture("meta/whatsapp_edit.json")).await;
    assert_eq!(first["stored"], 1, "{first}");
    assert_eq!(
        all_texts(&app).await,
        ["Mijn ordernummer is 5521, niet 5512"]
    );
    let edits: Vec<String> = events_of(&app, conversation)
        .await
        .into_iter()
        .filter(|(kind, _)| *kind == EventKind::MessageEdited)
        .map(|(_, was)| was)
        .collect();
    assert_eq!(
        edits,
        ["Mijn ordernummer is 5512"],
        "applied once, earlier wording kept"
    );
}

#[tokio::test]
async fn a_meta_test_delivery_without_object_arrives_on_its_instagram_channel() {
    let app = spawn_app().await;
    let ig = PlatformSettings {
        ig_account_id: Some(IG_ACCOUNT_ID.to_owned()),
        ..PlatformSettings::default()
    };
    channel(&app, ChannelKind::Instagram, "ig", ig, &meta_secrets()).await;
    let first = post_meta_twice(
        &app,
        "ig",
        &fixture("meta/instagram_test_without_object.json"),
    )
    .await;
    assert_eq!(first["stored"], 1, "{first}");
    assert_eq!(
        all_texts(&app).await,
        ["Hebben jullie deze jas ook in maat M?"]
    );
    let message = &app.conversations().await[0]["messages"][0];
    assert_eq!(
        message["created_at"], "2026-11-18T11:16:40Z",
        "the timestamp in seconds, as a string, read as such: {message}"
    );
}

#[tokio::test]
async fn telegram_service_messages_go_on_the_timeline_and_open_nothing() {
    let app = spawn_app().await;
    platforms(&app, None).await;
    // Before anyone in the group wrote: nothing opens, nothing is left waiting.
    for name in ["telegram/pinned_message.json", "telegram/dice.json"] {
        let stored = accepted(post_telegram(&app, &fixture(name)).await).await;
        assert_eq!(stored["stored"], 1, "journalled: {stored}");
    }
    assert!(listed(&app).await.is_empty());
    assert_eq!(app.store.backlogs().await.unwrap().journal, 0);
    accepted(post_telegram(&app, &fixture("telegram/group_reply_with_photo.json")).await).await;
    let conversation = only_conversation(&app).await;
    let due = app.conversations().await[0]["reply_due"].clone();
    for name in ["telegram/pinned_message.json", "telegram/dice.json"] {
        // New update ids: Telegram sends a fresh update for a new service message.
        let mut update: Value = serde_json::from_slice(&fixture(name)).unwrap();
        update["update_id"] = json!(update["update_id"].as_i64().unwrap() + 100);
        update["message"]["message_id"] =
            json!(update["message"]["message_id"].as_i64().unwrap() + 100);
        for _ in 0..2 {
            accepted(post_telegram(&app, update.to_string().as_bytes()).await).await;
        }
    }
    let _ = only_conversation(&app).await;
    assert_eq!(
        all_texts(&app).await,
        ["Hier is de foto"],
        "notices are no messages"
    );
    assert_eq!(
        app.conversations().await[0]["reply_due"],
        due,
        "the deadline stands"
    );
    let notices: Vec<String> = events_of(&app, conversation)
        .await
        .into_iter()
        .filter(|(kind, _)| *kind == EventKind::Notice)
        .map(|(_, detail)| detail)
        .collect();
    assert_eq!(notices, ["📌 Hier is de foto", "🎲 4"]);
}

/// Posts `fixture` to `channel` and checks that it was answered 200 with `skipped` events set
/// aside under `reason` (and counted in the metric), and that nothing reached the inbox.
async fn set_aside(channel: &str, fixture_name: &str, reason: &str, skipped: u64) -> Value {
    let app = spawn_app().await;
    platforms(&app, None).await;
    let answer = accepted(post_meta(&app, channel, &fixture(fixture_name)).await).await;
    assert_eq!(
        (answer["stored"].as_u64(), answer["skipped"].as_u64()),
        (Some(0), Some(skipped)),
        "{answer}"
    );
    let metric =
        format!(r#"balie_webhook_events_dropped_total{{platform="meta",reason="{reason}"}}"#);
    assert_eq!(metric_with(&app, &metric).await, skipped);
    assert!(listed(&app).await.is_empty());
    answer
}

#[tokio::test]
async fn receipts_without_a_timestamp_are_accepted_and_counted_quietly() {
    set_aside(
        "fb-dm",
        "meta/messenger_delivery_receipt.json",
        "receipt",
        2,
    )
    .await;
}

#[tokio::test]
async fn a_failure_report_for_a_message_balie_did_not_send_is_set_aside() {
    let answer = set_aside(
        "whatsapp",
        "meta/whatsapp_failed_status_unknown.json",
        "unknown_message",
        1,
    )
    .await;
    assert_eq!(answer["statuses"].as_u64(), Some(0), "{answer}");
}

#[tokio::test]
async fn a_whatsapp_message_balie_cannot_read_is_kept_in_the_journal() {
    let app = spawn_app().await;
    platforms(&app, None).await;
    let answer =
        post_meta_twice(&app, "whatsapp", &fixture("meta/whatsapp_unsupported.json")).await;
    assert_eq!(
        (answer["stored"].as_u64(), answer["unread"].as_u64()),
        (Some(1), Some(1)),
        "{answer}"
    );
    assert_eq!(
        metric_with(
            &app,
            r#"balie_webhook_events_unread_total{platform="meta"}"#
        )
        .await,
        2
    );
    assert!(listed(&app).await.is_empty(), "shown nowhere");
}

/// Events in a fixture, counted from the JSON itself: Meta messaging events, changes and
/// WhatsApp messages and statuses; X `*_events` entries; one per Telegram update.
fn events_in(platform: &str, body: &Value) -> usize {
    match platform {
        "meta" => {
            let entries = match body.get("entry") {
                Some(entries) => entries.as_array().unwrap().clone(),
                None => vec![json!({"changes": [body]})],
            };
            let len =
                |v: &Value, key: &str| v.get(key).and_then(Value::as_array).map_or(0, Vec::len);
            entries
                .iter()
                .map(|entry| {
                    let changes: usize =
                        entry
                            .get("changes")
                            .and_then(Value::as_array)
                            .map_or(0, |changes| {
                                changes
                                    .iter()
                                    .map(|c| match c["value"].get("metadata") {
                                        Some(_) => {
                                            len(&c["value"], "messages")
                                                + len(&c["value"], "statuses")
                                        }
                                        None => 1,
                                    })
                                    .sum()
                            });
                    len(entry, "messaging") + len(entry, "standby") + changes
                })
                .sum()
        }
        "x" => body
            .as_object()
            .unwrap()
            .iter()
            .filter(|(k, _)| k.ends_with("_events"))
            .map(|(_, v)| v.as_array().map_or(1, Vec::len))
            .sum(),
        _ => 1,
    }
}

/// The rule, over every connector and every fixture: each event a delivery carries is
/// journalled (new, or a duplicate on the retry), applied as a delivery status, or set aside
/// and counted in `balie_webhook_events_dropped_total`; none is answered 200 and lost.
#[tokio::test]
async fn every_event_of_every_fixture_is_journalled_applied_or_counted() {
    let app = spawn_app().await;
    platforms(&app, None).await;
    let ig = PlatformSettings {
        ig_account_id: Some(IG_ACCOUNT_ID.to_owned()),
        ..PlatformSettings::default()
    };
    channel(&app, ChannelKind::Instagram, "ig", ig, &meta_secrets()).await;
    let mut skipped = 0;
    for platform in ["meta", "x", "telegram"] {
        let dir = format!(
            "{}/../channels/fixtures/{platform}",
            env!("CARGO_MANIFEST_DIR")
        );
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        for name in names {
            let body = fixture(&format!("{platform}/{name}"));
            let events = events_in(platform, &serde_json::from_slice(&body).unwrap());
            let post = || async {
                match platform {
                    "meta" if name.starts_with("whatsapp") => {
                        post_meta(&app, "whatsapp", &body).await
                    }
                    "meta" if name.starts_with("instagram") => post_meta(&app, "ig", &body).await,
                    "meta" => post_meta(&app, "fb-dm", &body).await,
                    "x" => post_x(&app, &body).await,
                    _ => post_telegram(&app, &body).await,
                }
            };
            for attempt in ["first", "retry"] {
                let answer = accepted(post().await).await;
                let accounted: u64 = ["stored", "duplicates", "skipped", "statuses"]
                    .iter()
                    .map(|k| answer[k].as_u64().unwrap())
                    .sum();
                assert_eq!(
                    accounted, events as u64,
                    "{platform}/{name} ({attempt}): {answer}"
                );
                skipped += answer["skipped"].as_u64().unwrap();
            }
        }
    }
    let text = app
        .http
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let counted: u64 = text
        .lines()
        .filter(|l| l.starts_with("balie_webhook_events_dropped_total{"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(counted, skipped, "every event set aside is counted");
}

/// A field named `message` in a log line collides with the line's own message: JSON log
/// readers see two `message` keys and most keep only one.
#[test]
fn no_log_line_names_a_field_message() {
    let root = format!("{}/..", env!("CARGO_MANIFEST_DIR"));
    let mut offenders = Vec::new();
    let mut stack = vec![std::path::PathBuf::from(root)];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let source = std::fs::read_to_string(&path).unwrap();
                for (at, _) in source.match_indices("tracing::") {
                    let call = &source[at..];
                    let call = &call[..call.find(");").unwrap_or(call.len())];
                    let named = call.split([',', '(']).any(|arg| {
                        let arg = arg.trim();
                        arg.starts_with("message =") || arg.starts_with("message=")
                    });
                    if named {
                        offenders.push(format!(
                            "{}: {}",
                            path.display(),
                            call.lines().next().unwrap_or("")
                        ));
                    }
                }
            }
        }
    }
    assert!(offenders.is_empty(), "{offenders:#?}");
}

#[tokio::test]
async fn the_composer_counts_an_x_reply_as_x_does_and_an_overlong_reply_is_refused_before_the_outbox()
 {
    use balie_server::compose;
    use balie_text::reply_check::{AgentLanguage, ReplyDraft};

    let fake = MockServer::start().await;
    let app = spawn_app().await;
    platforms(&app, Some(fake.uri())).await;
    accepted(post_x(&app, &fixture("x/tweet_create_events.json")).await).await;
    let conversation = app.conversations().await[0]["id"].as_i64().unwrap();
    let cookie = app.login().await;
    let family = "\u{1F468}\u{200D}\u{1F469}\u{200D}\u{1F467}\u{200D}\u{1F466}";
    let drafts = [
        format!("Hoi! {family} https://www.ns.nl/storingen"),
        "b".repeat(430),
        "Zoals we al drie keer hebben uitgelegd: bel 06-12345678.".to_owned(),
        String::new(),
    ];
    for text in &drafts {
        let answer: Value = app
            .http
            .post(format!("{}/conversations/{conversation}/draft", app.base))
            .header("cookie", &cookie)
            .header("accept-language", "en")
            .form(&[("text", text.as_str())])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        // The same answer `balie lint-reply --channel x` gives for a public reply.
        let expected = compose::lint(
            balie_core::ReplyChannel::X,
            &ReplyDraft {
                text,
                public: true,
                customer_language: answer_language(&app, conversation).await.as_deref(),
                agent_language: AgentLanguage::English,
            },
        );
        let expected = serde_json::to_value(&expected).unwrap();
        for field in ["length", "max_length", "fits", "flags"] {
            assert_eq!(
                answer[field], expected[field],
                "{field} of {text:?}: {answer}"
            );
        }
        assert_eq!(
            answer["blocked"] == "",
            expected["fits"] == true,
            "{answer}"
        );
    }
    let refused = app
        .http
        .post(format!("{}/conversations/{conversation}/reply", app.base))
        .header("cookie", &cookie)
        .form(&[("text", "b".repeat(430).as_str()), ("key", "form-long")])
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    let why = refused.text().await.unwrap();
    assert!(
        why.contains("430 weighted characters as X counts them"),
        "{why}"
    );
    assert!(
        outbound(app.store.as_ref(), conversation).await.is_empty(),
        "nothing queued"
    );
}

/// The customer's language as the pipeline analysed their newest message.
async fn answer_language(app: &TestApp, conversation: i64) -> Option<String> {
    let view = app
        .store
        .conversation(app.brand, ConversationId(conversation))
        .await
        .unwrap()
        .unwrap();
    balie_server::compose::ReplyContext::of(&view).customer_language
}
