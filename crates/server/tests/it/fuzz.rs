//! Property-based fuzzing of the generic channel's body parser (`parse_api_message`):
//! arbitrary bytes and mutated bodies never panic, whatever it accepts is within its limits,
//! and every well-formed message comes out exactly as it went in.

use balie_server::api::parse_api_message;
use proptest::prelude::*;
use serde_json::{Value, json};

/// 256 cases per property unless `PROPTEST_CASES` asks for more (a longer local run).
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

/// What an accepted message must satisfy, whatever the input was.
fn assert_within_limits(body: &[u8]) {
    if let Ok(m) = parse_api_message(body, 0) {
        assert!(!m.channel.trim().is_empty() && m.channel.len() <= 100);
        assert!(!m.inbound.external_id.trim().is_empty() && m.inbound.external_id.len() <= 512);
        assert!(!m.inbound.text.trim().is_empty() && m.inbound.text.len() <= 64 * 1024);
        assert!(!m.inbound.author.platform_id.trim().is_empty());
    }
}

fn a_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        ".{0,12}".prop_map(Value::String),
        Just(Value::String(" ".into())),
        Just(Value::String("x".repeat(70_000))),
        Just(Value::String("2026-13-45T99:99:99Z".into())),
        Just(Value::String("+275760-09-13T00:00:00Z".into())),
    ];
    leaf.prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            proptest::collection::vec(("[a-z]{1,6}", inner), 0..3)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

const FIELDS: &[&str] = &[
    "/channel",
    "/external_id",
    "/text",
    "/in_reply_to",
    "/created_at",
    "/author",
    "/author/id",
    "/author/handle",
    "/author/name",
];

fn valid() -> Value {
    json!({
        "channel": "web",
        "external_id": "m-1",
        "author": { "id": "k-1", "handle": "@kim", "name": "Kim" },
        "text": "Waar blijft mijn pakket?",
        "in_reply_to": "m-0",
        "created_at": "2026-11-23T08:00:00Z",
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn arbitrary_bytes_never_crash_the_parser(body in proptest::collection::vec(any::<u8>(), 0..1024)) {
        assert_within_limits(&body);
    }

    #[test]
    fn any_field_replaced_by_anything_never_crashes_and_stays_within_limits(
        edits in proptest::collection::vec((0..FIELDS.len(), a_value()), 1..4),
    ) {
        let mut doc = valid();
        for (field, value) in edits {
            if let Some(node) = doc.pointer_mut(FIELDS[field]) {
                *node = value;
            }
        }
        assert_within_limits(doc.to_string().as_bytes());
    }

    #[test]
    fn a_truncated_or_cut_body_never_crashes(cut in any::<usize>(), from in any::<usize>()) {
        let body = valid().to_string().into_bytes();
        let cut = cut % body.len();
        let from = from % (cut + 1);
        assert_within_limits(&body[from..cut]);
        prop_assert!(parse_api_message(&body[..cut], 0).is_err(), "a strict prefix is not JSON");
    }

    #[test]
    fn every_well_formed_message_comes_out_as_it_went_in(
        channel in "[a-z][a-z0-9-]{0,20}",
        external_id in "[!-~]{1,40}",
        author in "[!-~]{1,40}",
        text in "\\PC{0,200}[a-zA-Z]\\PC{0,50}",
        name in proptest::option::of("\\PC{0,30}"),
    ) {
        let body = json!({
            "channel": channel,
            "external_id": external_id,
            "author": { "id": author, "name": name },
            "text": text,
        });
        let m = parse_api_message(body.to_string().as_bytes(), 42).expect("a well-formed message");
        prop_assert_eq!(m.channel, channel);
        prop_assert_eq!(m.inbound.external_id, external_id);
        prop_assert_eq!(m.inbound.author.platform_id, author);
        prop_assert_eq!(m.inbound.author.name, name);
        prop_assert_eq!(m.inbound.text, text);
        prop_assert_eq!(m.inbound.created_at, 42);
    }
}
