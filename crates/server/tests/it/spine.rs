//! The spine, end to end over HTTP: intake, dedupe, threading, bad input, the live stream,
//! replies through the outbox, and the product invariants.

use std::sync::Arc;
use std::time::Duration;

use balie_core::{ConversationStatus, DeliveryState, Direction};
use reqwest::StatusCode;
use serde_json::json;

use crate::support::*;

fn all_messages(conversations: &serde_json::Value) -> Vec<serde_json::Value> {
    conversations
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| c["messages"].as_array().unwrap().clone())
        .collect()
}

#[tokio::test]
async fn the_same_message_posted_twice_is_stored_once() {
    the_same_message_twice(&spawn_app().await).await;
}

/// The same on PostgreSQL (`database_url`), when a server is configured for tests.
#[tokio::test]
async fn the_same_message_posted_twice_is_stored_once_on_postgres() {
    on_postgres(|url| async move {
        let app = spawn_app_with(|c| c.database_url = balie_server::Secret::new(url)).await;
        the_same_message_twice(&app).await;
        app.stop().await;
    })
    .await;
}

async fn the_same_message_twice(app: &TestApp) {
    let body = message("m-1", "kim", "Waar blijft mijn pakket?");
    let first = app.post_message(&body).await;
    assert_eq!(first.status(), StatusCode::ACCEPTED);
    assert_eq!(
        first.json::<serde_json::Value>().await.unwrap()["duplicate"],
        false
    );
    let second = app.post_message(&body).await;
    assert_eq!(second.status(), StatusCode::ACCEPTED);
    assert_eq!(
        second.json::<serde_json::Value>().await.unwrap()["duplicate"],
        true
    );
    let conversations = app.conversations().await;
    let messages = all_messages(&conversations);
    assert_eq!(messages.len(), 1, "{conversations}");
    assert_eq!(messages[0]["external_id"], "m-1");
    let metrics = app
        .http
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("balie_messages_deduplicated_total 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("balie_messages_received_total 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_reply_to_a_known_message_joins_its_conversation() {
    let app = spawn_app().await;
    app.post_message(&message("m-1", "kim", "Mijn pakket is kwijt"))
        .await;
    let mut follow_up = message("m-2", "kim", "Hallo? Nog nieuws?");
    follow_up["in_reply_to"] = json!("m-1");
    assert_eq!(
        app.post_message(&follow_up).await.status(),
        StatusCode::ACCEPTED
    );
    app.post_message(&message("m-3", "jan", "Andere klant, andere vraag"))
        .await;
    let conversations = app.conversations().await;
    let list = conversations.as_array().unwrap();
    assert_eq!(list.len(), 2, "{conversations}");
    let kim = list
        .iter()
        .find(|c| c["messages"].as_array().unwrap().len() == 2)
        .expect("kim's conversation");
    let texts: Vec<_> = kim["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["Mijn pakket is kwijt", "Hallo? Nog nieuws?"]);
    assert!(kim["customer"]["id"].is_number());
    assert_eq!(kim["messages"][0]["place"]["kind"], "api");
    assert_eq!(kim["status"], "open");
    assert!(kim["priority"].is_string());
    assert!(kim["deadlines"]["reply_due"].is_string());
}

#[tokio::test]
async fn bad_input_gets_a_clear_4xx_and_stores_nothing() {
    let app = spawn_app().await;
    let url = format!("{}/api/v1/messages", app.base);
    let cases: Vec<(&str, Vec<u8>, bool, StatusCode)> = vec![
        ("malformed json", b"{\"channel\": ".to_vec(), true, StatusCode::BAD_REQUEST),
        ("not an object", b"[]".to_vec(), true, StatusCode::BAD_REQUEST),
        ("missing text", br#"{"channel":"web","external_id":"x","author":{"id":"a"}}"#.to_vec(), true, StatusCode::BAD_REQUEST),
        ("wrong type", br#"{"channel":"web","external_id":"x","author":{"id":"a"},"text":42}"#.to_vec(), true, StatusCode::BAD_REQUEST),
        ("author not an object", br#"{"channel":"web","external_id":"x","author":"a","text":"hi"}"#.to_vec(), true, StatusCode::BAD_REQUEST),
        ("bad date", br#"{"channel":"web","external_id":"x","author":{"id":"a"},"text":"hi","created_at":"gisteren"}"#.to_vec(), true, StatusCode::BAD_REQUEST),
        ("no token", br#"{"channel":"web","external_id":"x","author":{"id":"a"},"text":"hi"}"#.to_vec(), false, StatusCode::UNAUTHORIZED),
        ("10 MB body", vec![b'a'; 10 * 1024 * 1024], true, StatusCode::PAYLOAD_TOO_LARGE),
        ("invalid utf-8", b"{\"channel\":\"web\",\"external_id\":\"\xff\"}".to_vec(), true, StatusCode::BAD_REQUEST),
    ];
    for (name, body, with_token, expected) in cases {
        let mut req = app
            .http
            .post(&url)
            .header("content-type", "application/json")
            .body(body);
        if with_token {
            req = req.bearer_auth(&app.token);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), expected, "{name}");
        let err: serde_json::Value = resp
            .json()
            .await
            .unwrap_or_else(|e| panic!("{name}: error body must be JSON: {e}"));
        assert!(
            err["error"].as_str().is_some_and(|s| !s.is_empty()),
            "{name}: {err}"
        );
    }
    let wrong = app
        .http
        .post(&url)
        .bearer_auth("balie_not-a-real-token")
        .json(&message("x", "a", "hi"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    // The field is named for malformed fields.
    let resp = app
        .http
        .post(&url)
        .bearer_auth(&app.token)
        .json(&json!({"channel":"web","external_id":"x","author":{"id":"a"},"text":7}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.json::<serde_json::Value>().await.unwrap()["field"],
        "text"
    );
    // Nothing was stored, and the server still serves.
    assert_eq!(app.store.backlogs().await.unwrap().journal, 0);
    assert!(
        app.store
            .inbox(app.brand, ConversationStatus::Open, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        app.http
            .get(format!("{}/healthz", app.base))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        app.post_message(&message("ok", "a", "Nu wel goed"))
            .await
            .status(),
        StatusCode::ACCEPTED
    );
}

/// Reads SSE frames from a live-stream response until `n` events with ids have arrived.
async fn read_events(resp: &mut reqwest::Response, n: usize) -> Vec<(i64, serde_json::Value)> {
    let mut buf = String::new();
    let mut out = Vec::new();
    while out.len() < n {
        let chunk = tokio::time::timeout(Duration::from_secs(10), resp.chunk())
            .await
            .expect("event within 10 s")
            .unwrap()
            .expect("stream open");
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buf.find("\n\n") {
            let frame: String = buf.drain(..end + 2).collect();
            let id = frame
                .lines()
                .find_map(|l| l.strip_prefix("id:"))
                .map(|v| v.trim().parse::<i64>().unwrap());
            let data = frame
                .lines()
                .find_map(|l| l.strip_prefix("data:"))
                .map(|v| serde_json::from_str(v.trim()).unwrap());
            if let (Some(id), Some(data)) = (id, data) {
                out.push((id, data));
            }
        }
    }
    out
}

#[tokio::test]
async fn the_live_stream_delivers_new_messages_and_replays_what_a_reconnect_missed() {
    let app = spawn_app().await;
    let cookie = app.login().await;
    let mut stream = app
        .http
        .get(format!("{}/events", app.base))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), StatusCode::OK);
    app.post_message(&message("m-1", "kim", "Eerste bericht"))
        .await;
    let first = read_events(&mut stream, 1).await;
    assert_eq!(first[0].1["kind"], "message_received");
    assert_eq!(first[0].1["message"]["text"], "Eerste bericht");
    drop(stream);
    // While this agent is disconnected, two more messages arrive.
    app.post_message(&message("m-2", "jan", "Tweede")).await;
    app.post_message(&message("m-3", "els", "Derde")).await;
    let mut again = app
        .http
        .get(format!("{}/events", app.base))
        .header("cookie", &cookie)
        .header("last-event-id", first[0].0.to_string())
        .send()
        .await
        .unwrap();
    let missed = read_events(&mut again, 2).await;
    let texts: Vec<_> = missed
        .iter()
        .map(|(_, e)| e["message"]["text"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(texts, ["Tweede", "Derde"]);
    assert!(missed[0].0 > first[0].0 && missed[1].0 > missed[0].0);
    // Without credentials there is no stream.
    let anon = app
        .http
        .get(format!("{}/events", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(anon.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_reply_goes_out_signed_once_after_a_transient_failure() {
    let receiver = FakeReceiver::start(vec![503]).await;
    let url = receiver.url.clone();
    let app = spawn_app_with(|c| c.outbound.url = url).await;
    app.post_message(&message("m-1", "kim", "Kan ik mijn adres wijzigen?"))
        .await;
    let conversation = app.conversations().await[0]["id"].as_i64().unwrap();
    let cookie = app.login().await;
    let no_redirect = no_redirects();
    let form = [
        (
            "text",
            "Ja hoor Kim, dat kan tot morgen 12:00. Ik heb het voor je aangepast.",
        ),
        ("key", "k-1"),
    ];
    for _ in 0..2 {
        // A double click sends the same form twice: still one reply.
        let resp = no_redirect
            .post(format!("{}/conversations/{conversation}/reply", app.base))
            .header("cookie", &cookie)
            .form(&form)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    }
    let delivered = eventually(10, || async {
        let got = receiver.got();
        (got.iter().filter(|r| r.status == 200).count() == 1).then_some(got)
    })
    .await;
    assert_eq!(
        delivered.len(),
        2,
        "one 503, then one success: {delivered:?}"
    );
    assert!(
        delivered.iter().all(|r| r.signature_ok),
        "every attempt is signed"
    );
    assert_eq!(delivered[0].idempotency_key, delivered[1].idempotency_key);
    assert_eq!(delivered[1].body["text"], form[0].1);
    assert_eq!(delivered[1].body["in_reply_to"], "m-1");
    assert_eq!(delivered[1].body["recipient"]["id"], "kim");
    let messages = eventually(5, || async {
        let msgs = app
            .store
            .conversation_messages(app.brand, balie_core::ConversationId(conversation))
            .await
            .unwrap();
        msgs.iter()
            .any(|m| m.direction == Direction::Out && m.delivery == DeliveryState::Sent)
            .then_some(msgs)
    })
    .await;
    assert_eq!(
        messages
            .iter()
            .filter(|m| m.direction == Direction::Out)
            .count(),
        1
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        receiver.got().len(),
        2,
        "nothing is sent again after success"
    );
}

/// The retry backoff runs on the server's clock: a reply refused with a 503 is tried again
/// only once the (test) clock passes its backoff, however long real time goes on.
#[tokio::test]
async fn a_retried_reply_waits_for_the_clock_not_for_real_time() {
    let receiver = FakeReceiver::start(vec![503]).await;
    let url = receiver.url.clone();
    let clock = Arc::new(balie_server::clock::TestClock::at(
        balie_server::outbox::now_ms(),
    ));
    let app = spawn_app_on(clock.clone(), |c| c.outbound.url = url).await;
    app.post_message(&message("m-1", "kim", "Hallo")).await;
    let conversation = app.conversations().await[0]["id"].as_i64().unwrap();
    let cookie = app.login().await;
    app.http
        .post(format!("{}/conversations/{conversation}/reply", app.base))
        .header("cookie", &cookie)
        .form(&[("text", "Hoi Kim!"), ("key", "k")])
        .send()
        .await
        .unwrap();
    eventually(10, || async { (receiver.got().len() == 1).then_some(()) }).await;
    // Well past the shortest backoff (1 s) in real time: the clock has not moved, so the
    // reply is not due yet.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_eq!(
        receiver.got().len(),
        1,
        "not retried before the clock says so"
    );
    // The first backoff is 1 s plus at most 25% jitter.
    clock.advance(Duration::from_millis(1_300));
    let got = eventually(10, || async {
        let got = receiver.got();
        (got.len() == 2).then_some(got)
    })
    .await;
    assert_eq!(got[0].status, 503);
    assert_eq!(got[1].status, 200);
    assert_eq!(got[0].idempotency_key, got[1].idempotency_key);
}

#[tokio::test]
async fn a_refused_reply_shows_why_and_is_not_retried() {
    let receiver = FakeReceiver::start(vec![422]).await;
    let url = receiver.url.clone();
    let app = spawn_app_with(|c| c.outbound.url = url).await;
    app.post_message(&message("m-1", "kim", "Hallo")).await;
    let conversation = app.conversations().await[0]["id"].as_i64().unwrap();
    let cookie = app.login().await;
    app.http
        .post(format!("{}/conversations/{conversation}/reply", app.base))
        .header("cookie", &cookie)
        .form(&[("text", "Hoi Kim!"), ("key", "k")])
        .send()
        .await
        .unwrap();
    let failed = eventually(10, || async {
        let msgs = app
            .store
            .conversation_messages(app.brand, balie_core::ConversationId(conversation))
            .await
            .unwrap();
        msgs.into_iter()
            .find(|m| m.delivery == DeliveryState::Failed)
    })
    .await;
    assert!(failed.delivery_error.unwrap().contains("422"));
    let page = app
        .page(
            format!("{}/conversations/{conversation}", app.base),
            &cookie,
        )
        .await;
    assert!(page.contains("422"), "the reason is on the page");
    assert_eq!(receiver.got().len(), 1);
}

#[tokio::test]
async fn balie_sends_nothing_no_person_decided_to_send() {
    let receiver = FakeReceiver::start(vec![]).await;
    let url = receiver.url.clone();
    let app = spawn_app_with(|c| c.outbound.url = url).await;
    for (i, text) in [
        "Waar is mijn pakket?",
        "Bedankt, top service!",
        "Voor de derde keer: geen antwoord! #schande",
        "Can I change my address?",
    ]
    .iter()
    .enumerate()
    {
        app.post_message(&message(&format!("m-{i}"), &format!("c{i}"), text))
            .await;
    }
    app.conversations().await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(
        receiver.got().is_empty(),
        "no reply without a person pressing Send"
    );
    assert_eq!(app.store.backlogs().await.unwrap().outbox, 0);
}

#[tokio::test]
async fn customer_html_is_escaped_on_every_page() {
    let app = spawn_app().await;
    let evil = "<script>window.pwned=1</script><img src=x onerror=alert(1)>";
    app.post_message(&message("m-1", "kim", evil)).await;
    let id = app.conversations().await[0]["id"].as_i64().unwrap();
    let cookie = app.login().await;
    for path in [
        "/".to_string(),
        format!("/conversations/{id}"),
        "/search?q=script".to_string(),
    ] {
        let page = app
            .http
            .get(format!("{}{path}", app.base))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert!(
            page.headers().get("content-security-policy").is_some(),
            "{path}"
        );
        let html = page.text().await.unwrap();
        assert!(
            !html.contains("<script>window.pwned"),
            "{path} must not contain raw customer HTML"
        );
        assert!(!html.contains("<img src=x"), "{path}");
        assert!(
            html.contains("&lt;script&gt;window.pwned=1&lt;/script&gt;")
                || html.contains("&lt;script&#62;")
                || html.contains("&#60;script&#62;"),
            "{path}: escaped text expected"
        );
    }
}

#[tokio::test]
async fn pages_need_a_login_and_a_wrong_password_is_refused() {
    let app = spawn_app().await;
    let no_redirect = no_redirects();
    let inbox = no_redirect
        .get(format!("{}/", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(inbox.status(), StatusCode::SEE_OTHER);
    assert_eq!(inbox.headers()["location"], "/login");
    let bad = no_redirect
        .post(format!("{}/login", app.base))
        .form(&[("email", EMAIL), ("password", "wrong password")])
        .send()
        .await
        .unwrap();
    assert_eq!(bad.headers()["location"], "/login?failed=1");
    assert!(bad.headers().get("set-cookie").is_none());
    let api = app
        .http
        .get(format!("{}/api/v1/conversations", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn secrets_never_appear_in_pages_or_metrics() {
    let app = spawn_app().await;
    app.post_message(&message("m-1", "kim", "Hallo")).await;
    let id = app.conversations().await[0]["id"].as_i64().unwrap();
    let cookie = app.login().await;
    let session = cookie.split('=').nth(1).unwrap().to_string();
    for path in [
        "/".to_string(),
        format!("/conversations/{id}"),
        "/metrics".to_string(),
        "/api/v1/conversations".to_string(),
    ] {
        let body = app.page(format!("{}{path}", app.base), &cookie).await;
        for secret in [
            OUTBOUND_SECRET,
            app.token.as_str(),
            session.as_str(),
            PASSWORD,
        ] {
            assert!(!body.contains(secret), "{path} leaks a secret");
        }
    }
}

#[tokio::test]
async fn accepted_messages_survive_a_restart_and_are_processed() {
    let app = spawn_app().await;
    for i in 0..20 {
        assert_eq!(
            app.post_message(&message(
                &format!("m-{i}"),
                &format!("c{}", i % 4),
                "Bericht"
            ))
            .await
            .status(),
            StatusCode::ACCEPTED
        );
    }
    let dir = app.stop().await;
    let app = spawn_app_in(dir, |_| {}).await;
    let conversations = app.conversations().await;
    assert_eq!(all_messages(&conversations).len(), 20);
    assert_eq!(conversations.as_array().unwrap().len(), 4);
    // A platform retry after the restart is still recognised.
    let again = app.post_message(&message("m-3", "c3", "Bericht")).await;
    assert_eq!(
        again.json::<serde_json::Value>().await.unwrap()["duplicate"],
        true
    );
}

#[tokio::test]
async fn the_inbox_page_lists_waiting_conversations() {
    let app = spawn_app().await;
    app.post_message(&message("m-1", "kim", "Mijn bestelling is niet aangekomen"))
        .await;
    app.conversations().await;
    let cookie = app.login().await;
    let html = app
        .http
        .get(format!("{}/", app.base))
        .header("cookie", &cookie)
        .header("accept-language", "en")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("Mijn bestelling is niet aangekomen"));
    assert!(html.contains("Klant kim"));
    assert!(html.contains("Reply due"), "English UI");
    let nl = app
        .http
        .get(format!("{}/", app.base))
        .header("cookie", format!("{cookie}; balie_lang=nl"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(nl.contains("Antwoord uiterlijk"), "Dutch UI");
}

#[tokio::test]
async fn an_agent_takes_a_conversation_and_the_inbox_shows_who_has_it() {
    let app = spawn_app().await;
    app.post_message(&message("m-1", "kim", "Wie helpt mij?"))
        .await;
    let id = app.conversations().await[0]["id"].as_i64().unwrap();
    let cookie = app.login().await;
    let take = app
        .http
        .post(format!("{}/conversations/{id}/assign", app.base))
        .header("cookie", &cookie)
        .form(&[("to", "me")])
        .send()
        .await
        .unwrap();
    assert!(take.status().is_success());
    let inbox = app.page(format!("{}/", app.base), &cookie).await;
    assert!(
        inbox.contains("<td class=\"assignee\">Agent Smit</td>"),
        "{inbox}"
    );
    let bad = app
        .http
        .post(format!("{}/conversations/{id}/assign", app.base))
        .header("cookie", &cookie)
        .form(&[("to", "someone-else")])
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    app.http
        .post(format!("{}/conversations/{id}/assign", app.base))
        .header("cookie", &cookie)
        .form(&[("to", "nobody")])
        .send()
        .await
        .unwrap();
    let inbox = app.page(format!("{}/", app.base), &cookie).await;
    assert!(inbox.contains("<td class=\"assignee\"></td>"), "released");
    let anon = app
        .http
        .post(format!("{}/conversations/{id}/assign", app.base))
        .form(&[("to", "me")])
        .send()
        .await
        .unwrap();
    assert_eq!(anon.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_conversation_page_names_the_escalation_signals_in_the_agents_language() {
    let app = spawn_app().await;
    app.post_message(&message(
        "m-1",
        "kim",
        "Al drie keer gebeld en nog steeds geen monteur. Ik ga overstappen",
    ))
    .await;
    let id = app.conversations().await[0]["id"].as_i64().unwrap();
    let cookie = app.login().await;
    let page = |lang: &'static str| {
        let http = app.http.clone();
        let url = format!("{}/conversations/{id}", app.base);
        let cookie = format!("{cookie}; balie_lang={lang}");
        async move {
            http.get(url)
                .header("cookie", cookie)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        }
    };
    let nl = page("nl").await;
    assert!(nl.contains("Escalatie"), "{nl}");
    assert!(
        nl.contains("al eerder contact gezocht, dreigt weg te gaan"),
        "{nl}"
    );
    let en = page("en").await;
    assert!(
        en.contains(r#"<span class="signals">contacted before, threatens to leave</span>"#),
        "{en}"
    );
}
