//! Outbound: each platform's request asserted exactly against a local fake server, and each
//! kind of answer classified.

use std::time::Duration;

use balie_channels::Secret;
use balie_channels::outbound::{GraphApi, OutboundReply, OutboundTarget, SendOutcome, send_at};
use serde_json::json;
use wiremock::matchers::{body_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const NOW: i64 = 1_763_900_000_000;
const HOUR: i64 = 3_600_000;
const TOKEN: &str = "EAAGtest-page-token";
const BOT_TOKEN: &str = "123456:AAtest-bot-token";

fn client() -> reqwest::Client {
    // The workspace builds reqwest without a TLS provider; the binary installs one, and so
    // do the tests (plain http needs none, but building a client insists). Installing twice
    // fails harmlessly.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(Duration::from_millis(500))
        .build()
        .expect("client")
}

fn reply(text: &str, last_customer_message_at: Option<i64>) -> OutboundReply {
    OutboundReply {
        text: text.to_owned(),
        idempotency_key: "outbox-7".to_owned(),
        last_customer_message_at,
    }
}

fn graph(server: &MockServer) -> GraphApi {
    GraphApi {
        base_url: server.uri(),
        version: 23,
    }
}

fn messenger(server: &MockServer) -> OutboundTarget {
    OutboundTarget::Messenger {
        graph: graph(server),
        page_id: "104512345678901".into(),
        access_token: Secret::new(TOKEN),
        recipient_id: "7012345678901234".into(),
    }
}

fn whatsapp(server: &MockServer) -> OutboundTarget {
    OutboundTarget::Whatsapp {
        graph: graph(server),
        phone_number_id: "106540352242922".into(),
        access_token: Secret::new(TOKEN),
        to: "31612345678".into(),
        reply_to: Some("wamid.CUSTOMER1".into()),
    }
}

fn telegram(base: String) -> OutboundTarget {
    OutboundTarget::Telegram {
        api_base: base,
        bot_token: Secret::new(BOT_TOKEN),
        chat_id: "5550001111".into(),
        reply_to_message_id: Some(42),
    }
}

fn bearer() -> String {
    format!("Bearer {TOKEN}")
}

#[tokio::test]
async fn messenger_reply_inside_24_hours_is_a_response_with_the_key_as_metadata() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v23.0/104512345678901/messages"))
        .and(header("authorization", bearer().as_str()))
        .and(header("content-type", "application/json"))
        .and(body_json(json!({
            "recipient": {"id": "7012345678901234"},
            "messaging_type": "RESPONSE",
            "message": {"text": "Wat vervelend! Mag ik je ordernummer?", "metadata": "outbox-7"},
        })))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"recipient_id": "7012345678901234", "message_id": "m_SentByBalie"}),
        ))
        .expect(1)
        .mount(&server)
        .await;
    let outcome = send_at(
        &client(),
        &messenger(&server),
        &reply("Wat vervelend! Mag ik je ordernummer?", Some(NOW - HOUR)),
        NOW,
    )
    .await;
    assert_eq!(
        outcome,
        SendOutcome::Sent {
            platform_id: Some("m_SentByBalie".into())
        }
    );
}

#[tokio::test]
async fn messenger_reply_after_two_days_uses_the_human_agent_tag() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v23.0/104512345678901/messages"))
        .and(body_json(json!({
            "recipient": {"id": "7012345678901234"},
            "messaging_type": "MESSAGE_TAG",
            "tag": "HUMAN_AGENT",
            "message": {"text": "Sorry voor het late antwoord.", "metadata": "outbox-7"},
        })))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"message_id": "m_2"})))
        .expect(1)
        .mount(&server)
        .await;
    let outcome = send_at(
        &client(),
        &messenger(&server),
        &reply("Sorry voor het late antwoord.", Some(NOW - 48 * HOUR)),
        NOW,
    )
    .await;
    assert_eq!(
        outcome,
        SendOutcome::Sent {
            platform_id: Some("m_2".into())
        }
    );
}

#[tokio::test]
async fn messenger_reply_after_a_week_is_refused_without_a_request() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .expect(0)
        .mount(&server)
        .await;
    let outcome = send_at(
        &client(),
        &messenger(&server),
        &reply("Hallo?", Some(NOW - 8 * 24 * HOUR)),
        NOW,
    )
    .await;
    match outcome {
        SendOutcome::Permanent { reason } => assert!(reason.contains("within 7 days"), "{reason}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn instagram_dm_and_comment_replies_have_their_own_endpoints() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v23.0/17841400000000001/messages"))
        .and(header("authorization", bearer().as_str()))
        .and(body_json(json!({
            "recipient": {"id": "1122334455667788"},
            "messaging_type": "RESPONSE",
            "message": {"text": "Yes, size M is in stock."},
        })))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(
                json!({"recipient_id": "1122334455667788", "message_id": "aWdfIGDM"}),
            ),
        )
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v23.0/17998877665544332/replies"))
        .and(header("authorization", bearer().as_str()))
        .and(body_json(
            json!({"message": "We do! Shipping takes 2 days."}),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "17998877665549999"})))
        .expect(1)
        .mount(&server)
        .await;
    let dm = OutboundTarget::InstagramDirect {
        graph: graph(&server),
        account_id: "17841400000000001".into(),
        access_token: Secret::new(TOKEN),
        recipient_id: "1122334455667788".into(),
    };
    let comment = OutboundTarget::InstagramComment {
        graph: graph(&server),
        comment_id: "17998877665544332".into(),
        access_token: Secret::new(TOKEN),
    };
    let c = client();
    assert_eq!(
        send_at(
            &c,
            &dm,
            &reply("Yes, size M is in stock.", Some(NOW - HOUR)),
            NOW
        )
        .await,
        SendOutcome::Sent {
            platform_id: Some("aWdfIGDM".into())
        }
    );
    assert_eq!(
        send_at(
            &c,
            &comment,
            &reply("We do! Shipping takes 2 days.", None),
            NOW
        )
        .await,
        SendOutcome::Sent {
            platform_id: Some("17998877665549999".into())
        }
    );
}

#[tokio::test]
async fn facebook_comment_reply_posts_to_the_comment() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v23.0/987654321098765_111222333444555/comments"))
        .and(header("authorization", bearer().as_str()))
        .and(body_json(json!({"message": "Maandag om 9 uur!"})))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"id": "987654321098765_111222333444888"})),
        )
        .expect(1)
        .mount(&server)
        .await;
    let target = OutboundTarget::FacebookComment {
        graph: graph(&server),
        comment_id: "987654321098765_111222333444555".into(),
        access_token: Secret::new(TOKEN),
    };
    assert_eq!(
        send_at(&client(), &target, &reply("Maandag om 9 uur!", None), NOW).await,
        SendOutcome::Sent {
            platform_id: Some("987654321098765_111222333444888".into())
        }
    );
}

#[tokio::test]
async fn whatsapp_reply_is_threaded_and_carries_the_key_for_status_webhooks() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v23.0/106540352242922/messages"))
        .and(header("authorization", bearer().as_str()))
        .and(body_json(json!({
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": "31612345678",
            "type": "text",
            "text": {"preview_url": false, "body": "Je pakket komt morgen."},
            "context": {"message_id": "wamid.CUSTOMER1"},
            "biz_opaque_callback_data": "outbox-7",
        })))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "messaging_product": "whatsapp",
            "contacts": [{"input": "31612345678", "wa_id": "31612345678"}],
            "messages": [{"id": "wamid.SENT1"}],
        })))
        .expect(1)
        .mount(&server)
        .await;
    let outcome = send_at(
        &client(),
        &whatsapp(&server),
        &reply("Je pakket komt morgen.", Some(NOW - HOUR)),
        NOW,
    )
    .await;
    assert_eq!(
        outcome,
        SendOutcome::Sent {
            platform_id: Some("wamid.SENT1".into())
        }
    );
}

#[tokio::test]
async fn whatsapp_outside_the_window_is_refused_and_131047_is_permanent() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({"error": {
            "message": "(#131047) Re-engagement message", "type": "OAuthException",
            "code": 131047, "fbtrace_id": "Atrace"}})))
        .expect(1)
        .mount(&server)
        .await;
    let c = client();
    let late = send_at(
        &c,
        &whatsapp(&server),
        &reply("Nog vragen?", Some(NOW - 30 * HOUR)),
        NOW,
    )
    .await;
    assert!(
        matches!(&late, SendOutcome::Permanent { reason } if reason.contains("template")),
        "{late:?}"
    );
    // Our clock said inside; WhatsApp's says outside.
    let refused = send_at(
        &c,
        &whatsapp(&server),
        &reply("Nog vragen?", Some(NOW - 23 * HOUR)),
        NOW,
    )
    .await;
    assert!(
        matches!(&refused, SendOutcome::Permanent { reason } if reason.contains("template") && reason.contains("131047")),
        "{refused:?}"
    );
}

#[tokio::test]
async fn graph_throttling_codes_and_server_errors_are_retried() {
    let cases = [
        (
            400,
            json!({"error": {"message": "(#613) Calls to this api have exceeded the rate limit.", "code": 613}}),
            Duration::from_secs(60),
        ),
        (
            403,
            json!({"error": {"message": "(#4) Application request limit reached", "code": 4, "is_transient": true}}),
            Duration::from_secs(60),
        ),
        (
            500,
            json!({"error": {"message": "An unknown error occurred", "code": 1}}),
            Duration::from_secs(30),
        ),
        (503, json!("Service Unavailable"), Duration::from_secs(30)),
    ];
    for (status, body, expected) in cases {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(status).set_body_json(body.clone()))
            .mount(&server)
            .await;
        let outcome = send_at(
            &client(),
            &messenger(&server),
            &reply("Hoi", Some(NOW - HOUR)),
            NOW,
        )
        .await;
        match outcome {
            SendOutcome::Retry { after, .. } => assert_eq!(after, expected, "{status} {body}"),
            other => panic!("{status} {body}: expected retry, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn graph_client_errors_are_permanent_and_name_the_code() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({"error": {
            "message": "(#100) No matching user found", "type": "OAuthException", "code": 100,
            "error_subcode": 2018001}})))
        .mount(&server)
        .await;
    let outcome = send_at(
        &client(),
        &messenger(&server),
        &reply("Hoi", Some(NOW - HOUR)),
        NOW,
    )
    .await;
    assert_eq!(
        outcome,
        SendOutcome::Permanent {
            reason: "HTTP 400 Bad Request, Graph error 100: (#100) No matching user found".into()
        }
    );
}

#[tokio::test]
async fn x_reply_and_dm_hit_the_v2_endpoints() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/2/tweets"))
        .and(header("authorization", "Bearer x-user-token"))
        .and(body_json(json!({
            "text": "@testklant_nl Sorry! Stuur ons een DM.",
            "reply": {"in_reply_to_tweet_id": "1992000000000000001"},
        })))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"data": {
            "id": "1992000000000000500", "text": "@testklant_nl Sorry! Stuur ons een DM.",
            "edit_history_tweet_ids": ["1992000000000000500"]}})))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(
            "/2/dm_conversations/with/1600000000000000002/messages",
        ))
        .and(header("authorization", "Bearer x-user-token"))
        .and(body_json(json!({"text": "Dank je, we zoeken het uit!"})))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"data": {
            "dm_conversation_id": "1500000000000000001-1600000000000000002",
            "dm_event_id": "1992000000000000600"}})))
        .expect(1)
        .mount(&server)
        .await;
    let c = client();
    let tweet = OutboundTarget::XReply {
        api_base: server.uri(),
        access_token: Secret::new("x-user-token"),
        in_reply_to_tweet_id: "1992000000000000001".into(),
    };
    let dm = OutboundTarget::XDirect {
        api_base: server.uri(),
        access_token: Secret::new("x-user-token"),
        participant_id: "1600000000000000002".into(),
    };
    assert_eq!(
        send_at(
            &c,
            &tweet,
            &reply("@testklant_nl Sorry! Stuur ons een DM.", None),
            NOW
        )
        .await,
        SendOutcome::Sent {
            platform_id: Some("1992000000000000500".into())
        }
    );
    assert_eq!(
        send_at(&c, &dm, &reply("Dank je, we zoeken het uit!", None), NOW).await,
        SendOutcome::Sent {
            platform_id: Some("1992000000000000600".into())
        }
    );
}

#[tokio::test]
async fn x_rate_limit_waits_until_the_reset_time() {
    let server = MockServer::start().await;
    let reset = (NOW / 1000 + 120).to_string();
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("x-rate-limit-remaining", "0")
                .insert_header("x-rate-limit-reset", reset.as_str())
                .set_body_json(json!({"title": "Too Many Requests", "detail": "Too Many Requests", "type": "about:blank", "status": 429})),
        )
        .mount(&server)
        .await;
    let target = OutboundTarget::XReply {
        api_base: server.uri(),
        access_token: Secret::new("x-user-token"),
        in_reply_to_tweet_id: "1".into(),
    };
    let outcome = send_at(&client(), &target, &reply("Hoi", None), NOW).await;
    assert!(
        matches!(outcome, SendOutcome::Retry { after, .. } if after == Duration::from_secs(120)),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn telegram_429_is_retried_after_retry_after_then_sent() {
    let server = MockServer::start().await;
    let expected_body = json!({
        "chat_id": 5_550_001_111_i64,
        "text": "Dinsdag kan ook, zal ik dat vastzetten?",
        "reply_parameters": {"message_id": 42, "allow_sending_without_reply": true},
    });
    Mock::given(method("POST"))
        .and(path(format!("/bot{BOT_TOKEN}/sendMessage")))
        .and(body_json(expected_body.clone()))
        .respond_with(ResponseTemplate::new(429).set_body_json(json!({
            "ok": false, "error_code": 429,
            "description": "Too Many Requests: retry after 7", "parameters": {"retry_after": 7}})))
        .up_to_n_times(1)
        .expect(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("/bot{BOT_TOKEN}/sendMessage")))
        .and(body_json(expected_body))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"ok": true, "result": {
            "message_id": 43, "from": {"id": 6660000001_i64, "is_bot": true, "first_name": "Voorbeeld Winkel"},
            "chat": {"id": 5_550_001_111_i64, "type": "private"}, "date": 1763900000,
            "text": "Dinsdag kan ook, zal ik dat vastzetten?"}})))
        .expect(1)
        .with_priority(2)
        .mount(&server)
        .await;
    let c = client();
    let target = telegram(server.uri());
    let message = reply("Dinsdag kan ook, zal ik dat vastzetten?", None);
    let first = send_at(&c, &target, &message, NOW).await;
    assert_eq!(
        first,
        SendOutcome::Retry {
            after: Duration::from_secs(7),
            reason: "Telegram error 429: Too Many Requests: retry after 7".into()
        }
    );
    let second = send_at(&c, &target, &message, NOW).await;
    assert_eq!(
        second,
        SendOutcome::Sent {
            platform_id: Some("5550001111:43".into())
        }
    );
}

#[tokio::test]
async fn telegram_errors_never_show_the_bot_token() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({
            "ok": false, "error_code": 401, "description": format!("Unauthorized: bot{BOT_TOKEN}")})))
        .mount(&server)
        .await;
    let c = client();
    let unauthorized = send_at(&c, &telegram(server.uri()), &reply("Hoi", None), NOW).await;
    let SendOutcome::Permanent { reason } = &unauthorized else {
        panic!("expected permanent, got {unauthorized:?}");
    };
    assert!(!reason.contains(BOT_TOKEN), "{reason}");
    assert!(reason.contains("Unauthorized"), "{reason}");

    // Nothing listens on a port we just freed: the connection never opens, which is safe
    // to retry; reqwest's error would name the URL, and with it the token.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        format!("http://{}", listener.local_addr().expect("addr"))
    };
    let refused = send_at(&c, &telegram(closed), &reply("Hoi", None), NOW).await;
    let SendOutcome::Retry { reason, .. } = &refused else {
        panic!("expected retry, got {refused:?}");
    };
    assert!(
        !reason.contains(BOT_TOKEN) && !reason.contains("AAtest"),
        "{reason}"
    );
    assert!(!format!("{:?}", telegram("http://x".into())).contains("AAtest"));
}

#[tokio::test]
async fn a_timeout_is_unknown_not_retried() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(2)))
        .mount(&server)
        .await;
    let outcome = send_at(&client(), &telegram(server.uri()), &reply("Hoi", None), NOW).await;
    assert!(
        matches!(outcome, SendOutcome::Unknown { .. }),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn a_2xx_without_an_id_is_unknown() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_string("<html>proxy</html>"))
        .mount(&server)
        .await;
    let outcome = send_at(
        &client(),
        &whatsapp(&server),
        &reply("Hoi", Some(NOW - HOUR)),
        NOW,
    )
    .await;
    assert!(
        matches!(outcome, SendOutcome::Unknown { .. }),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn empty_and_overlong_replies_are_refused_before_sending() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .expect(0)
        .mount(&server)
        .await;
    let c = client();
    let empty = send_at(&c, &telegram(server.uri()), &reply("  ", None), NOW).await;
    assert_eq!(
        empty,
        SendOutcome::Permanent {
            reason: "the reply is empty".into()
        }
    );
    let long = "a".repeat(2001);
    let overlong = send_at(
        &c,
        &messenger(&server),
        &reply(&long, Some(NOW - HOUR)),
        NOW,
    )
    .await;
    assert_eq!(
        overlong,
        SendOutcome::Permanent {
            reason: "the reply is 2001 characters as Messenger counts them; it allows at most 2000"
                .into()
        }
    );
    // The demo's 430-character reply to an X post: refused as X counts it, not sent.
    let x_post = OutboundTarget::XReply {
        api_base: server.uri(),
        access_token: Secret::new("x-user-token"),
        in_reply_to_tweet_id: "1".into(),
    };
    let too_long_for_x = send_at(&c, &x_post, &reply(&"b".repeat(430), None), NOW).await;
    assert_eq!(
        too_long_for_x,
        SendOutcome::Permanent {
            reason: "the reply is 430 weighted characters as X counts them; it allows at most 280"
                .into()
        }
    );
}

fn api_reply() -> balie_channels::api::ApiReply<'static> {
    balie_channels::api::ApiReply {
        message_id: 41,
        idempotency_key: "web:1:form-1",
        conversation_id: 7,
        channel: "web",
        in_reply_to: Some("msg-1"),
        recipient: Some("cust-42"),
        text: "Hij komt morgen!",
    }
}

#[tokio::test]
async fn an_api_channel_reply_is_signed_keyed_and_classified_like_every_answer() {
    use balie_channels::api::{ApiWebhook, deliver};
    let server = MockServer::start().await;
    let body = json!({"id": 41, "idempotency_key": "web:1:form-1", "conversation_id": 7,
        "channel": "web", "in_reply_to": "msg-1", "recipient": {"id": "cust-42"},
        "text": "Hij komt morgen!"});
    let signature =
        balie_channels::signature::sha256_header(b"hook-secret", body.to_string().as_bytes());
    Mock::given(method("POST"))
        .and(path("/hook"))
        .and(header("idempotency-key", "web:1:form-1"))
        .and(header("x-balie-signature", signature.as_str()))
        .and(body_json(body))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "7"))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/hook"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&server)
        .await;
    let webhook = ApiWebhook {
        url: format!("{}/hook", server.uri()),
        secret: Secret::new("hook-secret"),
    };
    assert_eq!(
        deliver(&client(), &webhook, &api_reply()).await,
        SendOutcome::Retry {
            after: Duration::from_secs(7),
            reason: "webhook answered 429 Too Many Requests".into()
        }
    );
    assert_eq!(
        deliver(&client(), &webhook, &api_reply()).await,
        SendOutcome::Sent { platform_id: None }
    );
    let unset = ApiWebhook {
        url: String::new(),
        secret: Secret::new("hook-secret"),
    };
    assert!(matches!(
        deliver(&client(), &unset, &api_reply()).await,
        SendOutcome::Permanent { reason } if reason.contains("[outbound] url")
    ));
}
