//! X: CRC and signature vectors, mentions, replies and DMs.

use balie_channels::x;
use balie_channels::{DropReason, Dropped, ParseError};
use serde_json::json;

use crate::fixture;

const SECRET: &str = "z3ZX4v7mAAUGykl3EcmkqbartmuW8VFOOzCloLx9Q45P0hLrFu";

fn parse(name: &str) -> x::XBatch {
    x::parse(&fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn crc_response_matches_the_shared_vector() {
    let response = x::crc_response(SECRET, "9b4507b3-9040-4669-9ca3-6b94edb50553");
    assert_eq!(
        response.as_deref(),
        Some(r#"{"response_token":"sha256=Cytd4Sq+NvEcV3MMrXxWJGJx5A+y/lXzzU2Maartkx8="}"#)
    );
}

#[test]
fn challenge_tokens_as_x_sends_them_are_answered() {
    for token in [
        "9b4507b3-9040-4669-9ca3-6b94edb50553",
        "NjQ2ZDE3YmMtNWE4Mi00YzQ5LWI5OTUtYjM1ZTE4YTg2YjBm",
        "aGVsbG8_d29ybGQ-Zm9v==",
        "x",
    ] {
        assert!(x::crc_response(SECRET, token).is_some(), "{token}");
    }
}

/// The CRC answer is the HMAC that signs deliveries. If it answered any token, a caller without
/// the secret could send a delivery body as the token and get its valid signature back.
#[test]
fn no_delivery_body_can_be_signed_through_the_crc_endpoint() {
    let mut bodies: Vec<Vec<u8>> = ["tweet_create_events.json", "direct_message_events.json"]
        .iter()
        .map(|name| fixture(&format!("x/{name}")))
        .collect();
    bodies.push(br#"{"for_user_id":"2244994945","tweet_create_events":[]}"#.to_vec());
    bodies.push(b"{}".to_vec());
    bodies.push(b"[]".to_vec());
    for body in &bodies {
        let as_token = String::from_utf8_lossy(body);
        assert!(
            x::crc_response(SECRET, &as_token).is_none(),
            "a JSON body was signed: {as_token}"
        );
        // Nothing the CRC endpoint answers ever verifies as that body's delivery signature.
        assert!(!x::is_crc_token(&as_token));
    }
    // Every string the endpoint does sign fails to parse as a delivery: it holds no `{`.
    for token in [
        "1",
        "true",
        "null",
        "eyJmb3JfdXNlcl9pZCI6IjEifQ==",
        "a-b_c=",
    ] {
        assert!(x::is_crc_token(token));
        assert!(
            x::parse(token.as_bytes()).is_err(),
            "{token} parsed as a delivery"
        );
    }
    // Too long, empty, or carrying anything outside URL-safe base64: refused.
    let long = "a".repeat(x::CRC_TOKEN_MAX_LEN + 1);
    for token in ["", long.as_str(), "a b", "a+b/c", "a\nb", "%7B", "é"] {
        assert!(x::crc_response(SECRET, token).is_none(), "{token:?}");
    }
}

#[test]
fn signature_matches_the_shared_vector_and_forgeries_fail() {
    let body = br#"{"for_user_id":"2244994945","tweet_create_events":[]}"#;
    let header = "sha256=CpOc2dZ+JrkFhzkAW3gWETdo1w8Mx1i/MpqTbkrylcw=";
    assert!(x::verify_signature(SECRET, body, Some(header)));
    assert!(!x::verify_signature(SECRET, b"{}", Some(header)));
    assert!(!x::verify_signature("another secret", body, Some(header)));
    assert!(!x::verify_signature(SECRET, body, None));
    // Base64 is case sensitive: a lowercased signature is a different one.
    assert!(!x::verify_signature(
        SECRET,
        body,
        Some(&header.to_lowercase())
    ));
    assert!(!x::verify_signature("", body, Some(header)));
}

#[test]
fn mentions_and_replies_are_normalised_and_our_own_tweets_skipped() {
    let batch = parse("x/tweet_create_events.json");
    assert_eq!(batch.for_user_id, "1500000000000000001");
    assert_eq!(
        json!(batch.events),
        json!([
            {
                "external_id": "1992000000000000001",
                "kind": "message",
                "author": {"platform_id": "1600000000000000002", "handle": "testklant_nl", "name": "Test Klant"},
                "text": "@voorbeeldwinkel mijn bestelling is al een week onderweg, wat is er aan de hand?",
                "thread_key": "1992000000000000001",
                "place": {"kind": "mention", "url": "https://x.com/testklant_nl/status/1992000000000000001"},
                "created_at": 1_763_885_400_000_i64,
                "account_id": "1500000000000000001",
            },
            {
                "external_id": "1992000000000000002",
                "kind": "message",
                "author": {"platform_id": "1600000000000000003", "handle": "test_customer_en", "name": "Test Customer"},
                "text": "@voorbeeldwinkel Thanks, but the tracking link in your reply doesn't work and the chat on your site keeps timing out. Can someone call me back today please?",
                "in_reply_to": "1992000000000000009",
                "thread_key": "1992000000000000009",
                "place": {"kind": "comment", "url": "https://x.com/test_customer_en/status/1992000000000000002"},
                "created_at": 1_763_885_550_000_i64,
                "account_id": "1500000000000000001",
            },
        ])
    );
}

#[test]
fn a_mention_outside_our_threads_is_a_mention() {
    let body = br#"{"for_user_id":"1","tweet_create_events":[{"id_str":"9","text":"hey @brand","timestamp_ms":"5","in_reply_to_user_id_str":"77","in_reply_to_status_id_str":"8","user":{"id_str":"2"}}]}"#;
    let batch = x::parse(body).expect("parses");
    let place = batch.events[0].place.as_ref().expect("place");
    assert_eq!(place.kind, balie_core::PlaceKind::Mention);
    assert_eq!(place.url, None, "no screen name, no link");
}

#[test]
fn incoming_dms_are_normalised_and_our_own_sends_skipped() {
    let batch = parse("x/direct_message_events.json");
    assert_eq!(
        json!(batch.events),
        json!([{
            "external_id": "1992000000000000100",
            "kind": "message",
            "author": {"platform_id": "1600000000000000002", "handle": "testklant_nl", "name": "Test Klant"},
            "text": "Ordernummer is 5512 https://t.co/abc123",
            "thread_key": "1600000000000000002",
            "place": {"kind": "direct"},
            "created_at": 1_763_885_700_000_i64,
            "account_id": "1500000000000000001",
            "attachments": [{
                "kind": "photo",
                "url": "https://ton.twitter.com/1.1/ton/data/dm/1992000000000000100/1992000000000000200/example.jpg",
                "media_id": "1992000000000000200",
            }],
        }])
    );
}

#[test]
fn other_activity_is_set_aside_with_its_reason() {
    let batch = parse("x/favorite_events.json");
    assert!(batch.events.is_empty());
    assert!(!batch.dropped.is_empty());
    assert!(
        batch
            .dropped
            .iter()
            .all(|d| d.reason == DropReason::Reaction)
    );
}

#[test]
fn malformed_events_are_kept_unread_or_dropped_by_path_and_the_rest_kept() {
    let body = br#"{"for_user_id":"1","tweet_create_events":[{"id_str":"9","text":"hi","timestamp_ms":"5"},{"id_str":"10","text":"ok","timestamp_ms":"6","user":{"id_str":"2"}}]}"#;
    let batch = x::parse(body).expect("the envelope is fine");
    assert_eq!(batch.events.len(), 1);
    assert_eq!(batch.events[0].external_id, "10");
    match batch.unread.as_slice() {
        [unread] => {
            assert!(
                unread.why.contains("tweet_create_events[0]"),
                "{}",
                unread.why
            );
            assert!(
                unread.why.contains("missing field `user`"),
                "{}",
                unread.why
            );
            assert_eq!(unread.inbound.kind, balie_core::InboundKind::Unread);
            assert!(unread.inbound.text.contains(r#""text":"hi""#));
        }
        other => panic!("expected one kept unread, got {other:?}"),
    }
    // No words in it: nothing to keep, dropped as malformed with its path.
    let body = br#"{"for_user_id":"1","tweet_create_events":[{"id_str":"9","created_at":"last week","user":{"id_str":"2"}}]}"#;
    let batch = x::parse(body).expect("the envelope is fine");
    assert!(matches!(
        batch.dropped.as_slice(),
        [Dropped { reason: DropReason::Malformed, what }] if what.contains("tweet_create_events[0].created_at")
    ));
}

#[test]
fn events_without_the_subscribed_account_are_an_error() {
    let body = br#"{"tweet_create_events":[{}]}"#;
    assert!(matches!(
        x::parse(body),
        Err(ParseError::Malformed { path, .. }) if path == "for_user_id"
    ));
    assert!(matches!(x::parse(b"7"), Err(ParseError::Malformed { .. })));
    assert!(matches!(
        x::parse(b"not json"),
        Err(ParseError::Malformed { .. })
    ));
}

#[test]
fn no_fixture_mutation_makes_the_parser_panic() {
    crate::assert_never_panics("x", x::parse);
}
