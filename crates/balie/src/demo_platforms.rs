//! The demo's platforms: Facebook, Instagram, WhatsApp, X and Telegram channels pointed at
//! one local fake platform API (which logs "reply arrived at fake <platform>"), and a
//! simulator that delivers customer messages through Balie's real webhooks, signed as each
//! platform signs them.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{StatusCode, Uri};
use axum::response::IntoResponse;
use balie_store::Store;
use serde_json::{Value, json};

use crate::demo::Rng;
use crate::platform_webhooks::{
    ChannelTokens, Delivery, IG_ACCOUNT_ID, META_WEBHOOK, PAGE_ID, PHONE_NUMBER_ID, WebhookSecrets,
    X_USER_ID, configure_channels,
};

/// What the simulator needs to sign its deliveries: fresh random secrets per demo run.
#[derive(Clone)]
pub struct DemoPlatforms {
    secrets: WebhookSecrets,
}

fn random_secret() -> anyhow::Result<String> {
    Ok(balie_server::auth::random_hex(24)?)
}

/// Starts the fake platform API and configures the five platform channels against it.
pub async fn setup(
    store: &dyn Store,
    data_dir: &Path,
    brand: &str,
) -> anyhow::Result<DemoPlatforms> {
    let fake = fake_platform().await?;
    let demo = DemoPlatforms {
        secrets: WebhookSecrets {
            app_secret: random_secret()?,
            consumer_secret: random_secret()?,
            telegram_secret: random_secret()?,
        },
    };
    let tokens = ChannelTokens {
        verify_token: random_secret()?,
        meta_access_token: format!("EAAdemo{}", random_secret()?),
        x_access_token: random_secret()?,
        bot_token: format!("7000000001:{}", random_secret()?),
    };
    configure_channels(
        store,
        data_dir,
        brand,
        &demo.secrets,
        &tokens,
        Some(format!("http://{fake}")),
    )
    .await?;
    Ok(demo)
}

/// One local server standing in for Graph, X and Telegram: takes every send, logs where the
/// reply arrived (never the token in Telegram's path) and answers as the platform does.
async fn fake_platform() -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let counter = Arc::new(AtomicU64::new(1));
    let app = axum::Router::new().fallback(move |uri: Uri, body: Bytes| {
        let counter = counter.clone();
        async move { fake_send(&uri, &body, counter.fetch_add(1, Ordering::Relaxed)) }
    });
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(addr)
}

fn fake_send(uri: &Uri, body: &[u8], n: u64) -> axum::response::Response {
    let request: Value = serde_json::from_slice(body).unwrap_or_default();
    let path = uri.path();
    let text = |v: &Value| {
        v.as_str()
            .unwrap_or("")
            .chars()
            .take(60)
            .collect::<String>()
    };
    let (platform, answer) = if path.ends_with("/sendMessage") {
        let chat = request["chat_id"].as_i64().unwrap_or(0);
        (
            "Telegram",
            json!({"ok": true, "result": {"message_id": 900_000 + n, "chat": {"id": chat}, "date": 0}}),
        )
    } else if path == "/2/tweets" {
        (
            "X (public reply)",
            json!({"data": {"id": format!("19930000000{n:08}"), "text": request["text"]}}),
        )
    } else if path.starts_with("/2/dm_conversations/") {
        (
            "X (DM)",
            json!({"data": {"dm_conversation_id": format!("dm-{n}"), "dm_event_id": format!("19940000000{n:08}")}}),
        )
    } else if path.ends_with("/comments") {
        (
            "Facebook (comment reply)",
            json!({"id": format!("{PAGE_ID}_reply{n}")}),
        )
    } else if path.ends_with("/replies") {
        (
            "Instagram (comment reply)",
            json!({"id": format!("1799000000{n:07}")}),
        )
    } else if request["messaging_product"] == "whatsapp" {
        (
            "WhatsApp",
            json!({"messaging_product": "whatsapp", "contacts": [{"input": request["to"], "wa_id": request["to"]}], "messages": [{"id": format!("wamid.demo{n}")}]}),
        )
    } else if path.contains(IG_ACCOUNT_ID) {
        (
            "Instagram (DM)",
            json!({"recipient_id": request["recipient"]["id"], "message_id": format!("ig_mid_demo{n}")}),
        )
    } else if path.ends_with("/messages") {
        (
            "Messenger",
            json!({"recipient_id": request["recipient"]["id"], "message_id": format!("m_demo{n}")}),
        )
    } else {
        tracing::warn!(path, "fake platform: unknown API call");
        return StatusCode::NOT_FOUND.into_response();
    };
    let shown = if request["text"].is_string() {
        text(&request["text"])
    } else if request["message"]["text"].is_string() {
        text(&request["message"]["text"])
    } else if request["message"].is_string() {
        text(&request["message"])
    } else {
        text(&request["text"]["body"])
    };
    tracing::info!(reply = %shown, "reply arrived at fake {platform}");
    (StatusCode::OK, axum::Json(answer)).into_response()
}

fn now_ms() -> i64 {
    balie_server::outbox::now_ms()
}

struct Customer {
    id: String,
    name: &'static str,
    handle: &'static str,
}

const NAMES: &[(&str, &str)] = &[
    ("Noor de Wit", "noordewit_demo"),
    ("Daan Mulder", "daanmulder_demo"),
    ("Emma Smits", "emmasmits_demo"),
    ("Lucas Peeters", "lucas_p_demo"),
    ("Sophie Janssen", "sophiej_demo"),
    ("Milan Vos", "milanvos_demo"),
    ("Julia Hendriks", "juliah_demo"),
    ("Sem Dekker", "semdekker_demo"),
];

const TEXTS: &[&str] = &[
    "Mijn pakket staat al drie dagen op 'onderweg', wat is er aan de hand?",
    "Kan ik mijn bezorgadres nog wijzigen? Ik ben morgen niet thuis.",
    "Super snel bezorgd vandaag, dank jullie wel!",
    "De bezorger heeft mijn pakket bij de verkeerde buren afgegeven.",
    "Where is my parcel? The tracking page has not changed since Monday.",
    "Het pakket is beschadigd aangekomen, hoe dien ik een klacht in?",
    "Can I pick up my parcel at a service point instead?",
    "Waarom moet ik invoerrechten betalen voor een pakket uit Duitsland?",
];

fn customer(rng: &mut Rng, prefix: &str) -> Customer {
    let i = rng.below(NAMES.len());
    let (name, handle) = NAMES[i];
    Customer {
        id: format!("{prefix}{:04}", 1000 + i),
        name,
        handle,
    }
}

fn delivery(rng: &mut Rng, n: u64) -> Delivery {
    let now = now_ms();
    let secs = now / 1000;
    let text = *rng.pick(TEXTS);
    match rng.below(7) {
        0 => {
            let c = customer(rng, "7012345600");
            Delivery::Meta(
                json!({"object": "page", "entry": [{"id": PAGE_ID, "time": now, "messaging": [{
                "sender": {"id": c.id}, "recipient": {"id": PAGE_ID}, "timestamp": now,
                "message": {"mid": format!("m_demo_in_{n}"), "text": text}}]}]}),
            )
        }
        1 => {
            let c = customer(rng, "2468135700");
            let post = format!("{PAGE_ID}_{}", 987_654_000 + rng.below(3));
            Delivery::Meta(
                json!({"object": "page", "entry": [{"id": PAGE_ID, "time": secs, "changes": [{
                "field": "feed", "value": {
                    "from": {"id": c.id, "name": c.name},
                    "post": {"id": post, "permalink_url": format!("https://www.facebook.com/{post}")},
                    "message": text, "post_id": post,
                    "comment_id": format!("{}_{n}", &post[PAGE_ID.len() + 1..]),
                    "created_time": secs, "item": "comment", "parent_id": post, "verb": "add"}}]}]}),
            )
        }
        2 => {
            let c = customer(rng, "11223344556600");
            Delivery::Meta(
                json!({"object": "instagram", "entry": [{"id": IG_ACCOUNT_ID, "time": now, "messaging": [{
                "sender": {"id": c.id}, "recipient": {"id": IG_ACCOUNT_ID}, "timestamp": now,
                "message": {"mid": format!("aWdfZGVtb19{n}"), "text": text}}]}]}),
            )
        }
        3 => {
            let c = customer(rng, "22334455667788");
            Delivery::Meta(
                json!({"object": "instagram", "entry": [{"id": IG_ACCOUNT_ID, "time": secs, "changes": [{
                "field": "comments", "value": {
                    "from": {"id": c.id, "username": c.handle},
                    "media": {"id": "18012345678900777", "media_product_type": "FEED"},
                    "id": format!("1799887766{n:07}"), "text": text}}]}]}),
            )
        }
        4 => {
            let c = customer(rng, "316123400");
            Delivery::Meta(
                json!({"object": "whatsapp_business_account", "entry": [{"id": "102290129340777", "changes": [{
                "field": "messages", "value": {
                    "messaging_product": "whatsapp",
                    "metadata": {"display_phone_number": "31850000777", "phone_number_id": PHONE_NUMBER_ID},
                    "contacts": [{"profile": {"name": c.name}, "wa_id": c.id}],
                    "messages": [{"from": c.id, "id": format!("wamid.demoin{n}"), "timestamp": secs.to_string(),
                        "type": "text", "text": {"body": text}}]}}]}]}),
            )
        }
        5 => {
            let c = customer(rng, "160000000000000");
            Delivery::X(json!({"for_user_id": X_USER_ID, "tweet_create_events": [{
                "id_str": format!("19920000000{n:08}"),
                "text": format!("@pakketpost_demo {text}"),
                "in_reply_to_user_id_str": X_USER_ID,
                "user": {"id_str": c.id, "name": c.name, "screen_name": c.handle},
                "entities": {"user_mentions": [{"screen_name": "pakketpost_demo", "id_str": X_USER_ID, "indices": [0, 16]}]},
                "timestamp_ms": now.to_string()}]}))
        }
        _ => {
            let c = customer(rng, "55500");
            let chat: i64 = c.id.parse().unwrap_or(5_550_000);
            Delivery::Telegram(json!({"update_id": 815_000_000 + n, "message": {
                "message_id": n, "from": {"id": chat, "is_bot": false, "first_name": c.name, "username": c.handle},
                "chat": {"id": chat, "type": "private", "first_name": c.name}, "date": secs, "text": text}}))
        }
    }
}

/// Delivers simulated platform traffic through the real webhooks, signed; now and then the
/// very same delivery twice, as platforms retry.
pub async fn simulate(base: String, demo: DemoPlatforms, rate: f64, limit: u64, seed: u64) {
    let client = reqwest::Client::new();
    let mut rng = Rng::new(seed ^ 0x5EED_F00D);
    let interval = Duration::from_secs_f64((60.0 / rate.max(0.1)).max(0.05));
    let mut n: u64 = 0;
    while limit == 0 || n < limit {
        n += 1;
        let delivery = delivery(&mut rng, n);
        let times = if rng.chance(0.05) { 2 } else { 1 };
        for _ in 0..times {
            let signed = delivery.sign(&demo.secrets, META_WEBHOOK, "x", "telegram");
            let request = client
                .post(format!("{base}{}", signed.path))
                .header(signed.header.0, signed.header.1)
                .body(signed.body);
            match request
                .header("content-type", "application/json")
                .send()
                .await
            {
                Ok(resp) if resp.status().is_success() => {}
                Ok(resp) => {
                    tracing::warn!(status = %resp.status(), "demo webhook delivery refused")
                }
                Err(e) => tracing::warn!(error = %e, "demo webhook delivery failed"),
            }
        }
        tokio::time::sleep(interval).await;
    }
    tracing::info!(deliveries = n, "platform simulator finished");
}
