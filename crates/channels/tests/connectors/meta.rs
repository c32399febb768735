//! Meta: signature vectors, and Messenger, Page feed, Instagram and WhatsApp fixtures.

use balie_channels::meta::{self, DeliveryState, DeliveryStatus, MetaEvent};
use balie_channels::{DropReason, Dropped, ParseError};
use balie_core::ChannelKind;
use serde_json::json;

use crate::fixture;

const VECTOR_BODY: &str = r#"{"object":"page","entry":[{"id":"PAGE_ID","time":1700000000,"messaging":[{"sender":{"id":"PSID"},"recipient":{"id":"PAGE_ID"},"timestamp":1700000000000,"message":{"mid":"m_1","text":"caf\u00e9"}}]}]}"#;
const VECTOR_SIGNATURE: &str =
    "sha256=86c04e1d2dc58660c02726dcb4a9ca920c1d3aae389bc11722ecb5800b90edb5";

fn parse(name: &str) -> meta::MetaBatch {
    meta::parse(&fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The events as JSON, for compact whole-value comparisons.
fn inbound_json(events: &[MetaEvent]) -> serde_json::Value {
    json!(events.iter().map(|e| &e.inbound).collect::<Vec<_>>())
}

fn routes(events: &[MetaEvent]) -> Vec<(ChannelKind, &str)> {
    events
        .iter()
        .map(|e| (e.channel, e.account_id.as_str()))
        .collect()
}

#[test]
fn shared_vector_signature_verifies_over_the_escaped_bytes() {
    assert!(meta::verify_signature(
        "app_secret",
        VECTOR_BODY.as_bytes(),
        Some(VECTOR_SIGNATURE)
    ));
    assert!(meta::verify_signature(
        "secret",
        b"test",
        Some("sha256=0329a06b62cd16b33eb6792be8c60b158d89a2ee3a876fce9a881ebb488c0914")
    ));
}

#[test]
fn forged_or_unsigned_payloads_do_not_verify() {
    let body = VECTOR_BODY.as_bytes();
    // Re-serialised with the literal character instead of Meta's escape: different bytes.
    let reserialised = VECTOR_BODY.replace("\\u00e9", "é");
    assert!(!meta::verify_signature(
        "app_secret",
        reserialised.as_bytes(),
        Some(VECTOR_SIGNATURE)
    ));
    assert!(!meta::verify_signature(
        "other_secret",
        body,
        Some(VECTOR_SIGNATURE)
    ));
    assert!(!meta::verify_signature("app_secret", body, None));
    assert!(!meta::verify_signature("app_secret", body, Some("")));
    assert!(!meta::verify_signature(
        "app_secret",
        body,
        Some("sha1=86c04e1d2dc58660c027")
    ));
    assert!(!meta::verify_signature("", body, Some(VECTOR_SIGNATURE)));
}

#[test]
fn shared_vector_body_parses_with_the_escape_decoded() {
    let batch = meta::parse(VECTOR_BODY.as_bytes()).expect("parses");
    assert_eq!(batch.events.len(), 1);
    assert_eq!(batch.events[0].inbound.text, "café");
    assert_eq!(batch.events[0].inbound.created_at, 1_700_000_000_000);
}

#[test]
fn messenger_message_with_reply_and_image_is_normalised() {
    let batch = parse("meta/messenger_message.json");
    assert_eq!(
        routes(&batch.events),
        [(ChannelKind::Messenger, "104512345678901")]
    );
    assert_eq!(
        inbound_json(&batch.events),
        json!([{
            "external_id": "m_AbCdEfGhIjKlMnOp",
            "kind": "message",
            "author": {"platform_id": "7012345678901234"},
            "text": "Mijn pakket is nog steeds niet bezorgd 😟",
            "in_reply_to": "m_PreviousPageMessage",
            "thread_key": "7012345678901234",
            "place": {"kind": "direct"},
            "created_at": 1_763_884_800_123_i64,
            "account_id": "104512345678901",
            "attachments": [{"kind": "image", "url": "https://scontent.xx.fbcdn.net/v/t1.15752-9/example.jpg"}],
        }])
    );
    assert!(batch.statuses.is_empty());
}

#[test]
fn messenger_echo_names_the_customer_and_keeps_the_outbox_key_and_edits_their_revision() {
    let batch = parse("meta/messenger_echo_and_edit.json");
    assert_eq!(
        inbound_json(&batch.events),
        json!([
            {
                "external_id": "m_EchoOfOurReply",
                "kind": "echo",
                "author": {"platform_id": "7012345678901234"},
                "text": "Sorry daarvoor! Mag ik je ordernummer?",
                "thread_key": "7012345678901234",
                "place": {"kind": "direct"},
                "created_at": 1_763_884_900_000_i64,
                "account_id": "104512345678901",
                "outbox_key": "outbox-42",
            },
            {
                "external_id": "m_AbCdEfGhIjKlMnOp",
                "kind": "edited",
                "author": {"platform_id": "7012345678901234"},
                "text": "Mijn pakket (order 5512) is nog niet bezorgd",
                "thread_key": "7012345678901234",
                "place": {"kind": "direct"},
                "created_at": 1_763_884_960_000_i64,
                "account_id": "104512345678901",
                "revision": "1",
            },
        ]),
        "deliveries, reads and reactions are skipped"
    );
}

#[test]
fn page_comments_replies_own_comments_and_removals_are_normalised() {
    let batch = parse("meta/page_feed_comments.json");
    assert!(
        routes(&batch.events)
            .iter()
            .all(|r| *r == (ChannelKind::FacebookPage, "104512345678901"))
    );
    let post = "https://www.facebook.com/104512345678901/posts/pfbid0ExamplePost";
    assert_eq!(
        inbound_json(&batch.events),
        json!([
            {
                "external_id": "987654321098765_111222333444555",
                "kind": "message",
                "author": {"platform_id": "24681357902468", "name": "Testklant Anna"},
                "text": "Wanneer gaat de winkel in Utrecht weer open?",
                "thread_key": "104512345678901_987654321098765",
                "place": {"kind": "comment", "url": post},
                "created_at": 1_763_884_999_000_i64,
                "account_id": "104512345678901",
            },
            {
                "external_id": "987654321098765_111222333444666",
                "kind": "message",
                "author": {"platform_id": "13579246801357", "name": "Test Customer Bob"},
                "text": "Same question here, any news?",
                "in_reply_to": "987654321098765_111222333444555",
                "thread_key": "104512345678901_987654321098765",
                "place": {"kind": "comment", "url": post},
                "created_at": 1_763_885_001_000_i64,
                "account_id": "104512345678901",
            },
            {
                "external_id": "987654321098765_111222333444777",
                "kind": "echo",
                "author": {"platform_id": "104512345678901", "name": "Voorbeeld Winkel"},
                "text": "Maandag om 9 uur weer!",
                "in_reply_to": "987654321098765_111222333444555",
                "thread_key": "104512345678901_987654321098765",
                "place": {"kind": "comment"},
                "created_at": 1_763_885_002_000_i64,
                "account_id": "104512345678901",
            },
            {
                "external_id": "987654321098765_111222333444000",
                "kind": "removed",
                "author": {"platform_id": "24681357902468", "name": "Testklant Anna"},
                "text": "",
                "thread_key": "104512345678901_987654321098765",
                "place": {"kind": "comment"},
                "created_at": 1_763_880_000_000_i64,
                "account_id": "104512345678901",
            },
        ]),
        "the reaction is skipped"
    );
}

#[test]
fn a_removal_without_an_author_is_kept_and_the_pages_own_posts_are_not_conversation() {
    let body = br#"{"object":"page","entry":[{"id":"10","time":1700000000,"changes":[
        {"field":"feed","value":{"item":"comment","verb":"remove","post_id":"10_1","comment_id":"1_2","parent_id":"10_1","created_time":1700000000}},
        {"field":"feed","value":{"item":"status","verb":"add","post_id":"10_3","from":{"id":"10","name":"Brand"},"message":"Open on Monday","created_time":1700000001}},
        {"field":"feed","value":{"item":"comment","verb":"edited","post_id":"10_1","comment_id":"1_4","parent_id":"10_1","from":{"id":"10"},"message":"typo fixed","created_time":1700000002}}
    ]}]}"#;
    let batch = meta::parse(body).expect("parses");
    assert_eq!(
        inbound_json(&batch.events),
        json!([{
            "external_id": "1_2",
            "kind": "removed",
            "author": {"platform_id": "10"},
            "text": "",
            "thread_key": "10_1",
            "place": {"kind": "comment"},
            "created_at": 1_700_000_000_000_i64,
            "account_id": "10",
        }])
    );
}

#[test]
fn a_button_tap_reads_as_the_button_title() {
    let body = br#"{"object":"page","entry":[{"id":"10","time":1700000000000,"messaging":[
        {"sender":{"id":"7"},"recipient":{"id":"10"},"timestamp":1700000000000,"postback":{"mid":"m_tap","title":"Talk to a person","payload":"AGENT"}},
        {"sender":{"id":"7"},"recipient":{"id":"10"},"timestamp":1700000000500,"postback":{"title":"Opening hours","payload":"HOURS"}}
    ]}]}"#;
    let batch = meta::parse(body).expect("parses");
    let texts: Vec<_> = batch
        .events
        .iter()
        .map(|e| (e.inbound.external_id.as_str(), e.inbound.text.as_str()))
        .collect();
    assert_eq!(
        texts,
        [
            ("m_tap", "Talk to a person"),
            ("postback:7:1700000000500", "Opening hours"),
        ]
    );
}

#[test]
fn instagram_dm_is_routed_to_the_instagram_account() {
    let batch = parse("meta/instagram_dm.json");
    assert_eq!(
        routes(&batch.events),
        [(ChannelKind::Instagram, "17841400000000001")]
    );
    let inbound = &batch.events[0].inbound;
    assert_eq!(inbound.author.platform_id, "1122334455667788");
    assert_eq!(inbound.text, "Is this jacket available in size M?");
    assert_eq!(inbound.created_at, 1_763_885_100_123);
}

#[test]
fn instagram_comments_and_replies_are_threaded_on_the_media() {
    let batch = parse("meta/instagram_comments.json");
    assert_eq!(
        inbound_json(&batch.events),
        json!([
            {
                "external_id": "17998877665544332",
                "kind": "message",
                "author": {"platform_id": "2233445566778899", "handle": "test_shopper_1"},
                "text": "Love it! Does it ship to Belgium?",
                "thread_key": "18012345678901234",
                "place": {"kind": "comment"},
                "created_at": 1_763_885_200_000_i64,
                "account_id": "17841400000000001",
            },
            {
                "external_id": "17998877665544333",
                "kind": "message",
                "author": {"platform_id": "3344556677889900", "handle": "another_test_user"},
                "text": "@test_shopper_1 they do, I got mine last week",
                "in_reply_to": "17998877665544332",
                "thread_key": "18012345678901234",
                "place": {"kind": "comment"},
                "created_at": 1_763_885_200_000_i64,
                "account_id": "17841400000000001",
            },
        ]),
        "mentions carry no text and are skipped"
    );
}

#[test]
fn whatsapp_text_reply_keeps_its_context_and_the_profile_name() {
    let batch = parse("meta/whatsapp_text_reply.json");
    assert_eq!(
        routes(&batch.events),
        [(ChannelKind::Whatsapp, "106540352242922")]
    );
    assert_eq!(
        inbound_json(&batch.events),
        json!([{
            "external_id": "wamid.HBgLMzE2MTIzNDU2NzgVAgASGCA5RkQzRjM2QkU5NjE0QjBBQjQ5MDNBQjEzQzkxQzEyNAA=",
            "kind": "message",
            "author": {"platform_id": "31612345678", "name": "Test Klant"},
            "text": "Ja, ordernummer 5512. Waar blijft het?",
            "in_reply_to": "wamid.HBgLMzE2MTIzNDU2NzgVAgARGBI3QkZBQzBFMUY4MDNFQjZCNTMA",
            "thread_key": "31612345678",
            "place": {"kind": "direct"},
            "created_at": 1_763_885_300_000_i64,
            "account_id": "106540352242922",
        }])
    );
}

#[test]
fn whatsapp_media_from_two_numbers_in_one_post_are_all_returned() {
    let batch = parse("meta/whatsapp_media_batch.json");
    assert_eq!(
        routes(&batch.events),
        [
            (ChannelKind::Whatsapp, "106540352242922"),
            (ChannelKind::Whatsapp, "106540352242999"),
        ],
        "the reaction is skipped"
    );
    assert_eq!(
        inbound_json(&batch.events),
        json!([
            {
                "external_id": "wamid.IMAGE0000000000000000000001",
                "kind": "message",
                "author": {"platform_id": "31612345678", "name": "Test Klant"},
                "text": "Zo kwam het binnen",
                "thread_key": "31612345678",
                "place": {"kind": "direct"},
                "created_at": 1_763_885_400_000_i64,
                "account_id": "106540352242922",
                "attachments": [{"kind": "image", "media_id": "1234567890123456", "mime_type": "image/jpeg"}],
            },
            {
                "external_id": "wamid.DOCUMENT000000000000000000001",
                "kind": "message",
                "author": {"platform_id": "447700900123", "name": "Second Tester"},
                "text": "invoice-5512.pdf",
                "thread_key": "447700900123",
                "place": {"kind": "direct"},
                "created_at": 1_763_885_500_000_i64,
                "account_id": "106540352242999",
                "attachments": [{"kind": "document", "media_id": "2345678901234567", "mime_type": "application/pdf"}],
            },
        ])
    );
}

#[test]
fn whatsapp_statuses_become_delivery_receipts() {
    let batch = parse("meta/whatsapp_statuses.json");
    assert!(batch.events.is_empty());
    assert_eq!(
        batch.statuses,
        [
            DeliveryStatus {
                account_id: "106540352242922".into(),
                external_id: "wamid.OURREPLY00000000000000000001".into(),
                status: DeliveryState::Delivered,
                at: 1_763_885_600_000,
                recipient: Some("31612345678".into()),
                error: None,
                outbox_key: Some("outbox-43".into()),
            },
            DeliveryStatus {
                account_id: "106540352242922".into(),
                external_id: "wamid.OURREPLY00000000000000000002".into(),
                status: DeliveryState::Failed,
                at: 1_763_885_601_000,
                recipient: Some("31612345678".into()),
                error: Some("131047: Re-engagement message".into()),
                outbox_key: None,
            },
        ]
    );
}

#[test]
fn unknown_objects_fields_and_event_types_are_set_aside_with_a_reason() {
    let body =
        br#"{"object":"user","entry":[{"id":"1","changes":[{"field":"email","value":"x"}]}]}"#;
    let batch = meta::parse(body).expect("parses");
    assert!(batch.events.is_empty() && batch.unread.is_empty());
    assert_eq!(
        batch.dropped,
        [Dropped::new(
            DropReason::NotConversation,
            "entry[0]: object `user`"
        )]
    );
    let body = br#"{"object":"page","extra":1,"entry":[{"id":"1","time":1,"changes":[{"field":"ratings","value":{"a":1}}],"standby":[{"x":1}]}]}"#;
    let batch = meta::parse(body).expect("parses");
    assert!(batch.events.is_empty() && batch.unread.is_empty());
    let reasons: Vec<_> = batch.dropped.iter().map(|d| d.reason).collect();
    assert_eq!(
        reasons,
        [DropReason::NotConversation, DropReason::NotConversation]
    );
}

#[test]
fn a_body_that_is_not_a_webhook_envelope_is_an_error() {
    let check = |body: &str, path: &str, reason: &str| match meta::parse(body.as_bytes()) {
        Err(ParseError::Malformed {
            path: got,
            reason: why,
            ..
        }) => {
            assert_eq!(got, path, "{body}");
            assert!(why.contains(reason), "{why} should mention {reason}");
        }
        other => panic!("{body}: expected a malformed error, got {other:?}"),
    };
    check("not json", ".", "expected ident");
    check(r#"{"entry":[]}"#, ".", "missing field `object`");
    check(
        r#"{"object":"page","entry":{}}"#,
        "entry",
        "invalid type: map, expected a sequence",
    );
}

/// What became of the one event in `body` that could not be read: kept unread (`true`) or
/// dropped as malformed (`false`); either way its path and reason are named.
fn unreadable(body: &str, path: &str, reason: &str) -> (bool, Vec<MetaEvent>) {
    let batch = meta::parse(body.as_bytes()).expect("the envelope is fine");
    let (kept, said) = match (batch.unread.as_slice(), batch.dropped.as_slice()) {
        ([unread], []) => {
            assert_eq!(unread.inbound.kind, balie_core::InboundKind::Unread);
            (true, unread.why.clone())
        }
        ([], [dropped]) => {
            assert_eq!(dropped.reason, DropReason::Malformed);
            (false, dropped.what.clone())
        }
        other => panic!("{body}: expected one unreadable event, got {other:?}"),
    };
    assert!(
        said.contains(&format!("`{path}`")),
        "{said} should name {path}"
    );
    assert!(said.contains(reason), "{said} should mention {reason}");
    (kept, batch.events)
}

#[test]
fn unreadable_events_with_words_are_kept_the_rest_dropped_and_the_batch_kept() {
    let good = r#"{"sender":{"id":"2"},"recipient":{"id":"1"},"timestamp":5,"message":{"mid":"m_ok","text":"hi"}}"#;
    let (kept, events) = unreadable(
        &format!(
            r#"{{"object":"page","entry":[{{"id":"1","messaging":[{{"sender":{{"id":"2"}},"recipient":{{"id":"1"}},"timestamp":5,"message":{{"text":"hi"}}}},{good}]}}]}}"#
        ),
        "entry[0].messaging[0].message",
        "missing field `mid`",
    );
    assert!(kept, "the customer's words are kept");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].inbound.external_id, "m_ok");
    let (kept, _) = unreadable(
        r#"{"object":"page","entry":[{"id":"1","messaging":[{"sender":{"id":"2"},"recipient":{"id":"1"},"timestamp":"soon","message":{"mid":"m"}}]}]}"#,
        "entry[0].messaging[0].timestamp",
        "expected an integer",
    );
    assert!(!kept);
    let (kept, _) = unreadable(
        r#"{"object":"page","entry":[{"time":1}]}"#,
        "entry[0]",
        "missing field `id`",
    );
    assert!(!kept);
    let (kept, _) = unreadable(
        r#"{"object":"page","entry":[{"id":"1","time":1,"changes":[{"field":"feed","value":{"item":"comment","verb":"add","post_id":"1_2","from":{"id":"3"},"message":"Waar is mijn order?"}}]}]}"#,
        "entry[0].changes[0].value.comment_id",
        "missing field",
    );
    assert!(kept);
    // Whatever a WhatsApp customer sent is kept, words or not.
    let (kept, _) = unreadable(
        r#"{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":{"metadata":{"phone_number_id":"9"},"messages":[{"from":"3","id":"w","timestamp":"1","type":"text"}]}}]}]}"#,
        "entry[0].changes[0].value.messages[0].text.body",
        "missing field",
    );
    assert!(kept);
    let (kept, _) = unreadable(
        r#"{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":{"contacts":[]}}]}]}"#,
        "entry[0].changes[0].value",
        "missing field `metadata`",
    );
    assert!(!kept);
}

#[test]
fn no_fixture_mutation_makes_the_parser_panic() {
    // The dashboard test fixture has no `object`: read as a delivery to an Instagram channel.
    crate::assert_never_panics("meta", |body| {
        meta::parse_for_channel(body, ChannelKind::Instagram)
    });
}

#[test]
fn a_whatsapp_user_known_only_by_their_user_id_is_identified_by_it() {
    let batch = parse("meta/whatsapp_username_contact.json");
    let authors: Vec<_> = batch
        .events
        .iter()
        .map(|e| (e.inbound.author.clone(), e.inbound.thread_key.clone()))
        .collect();
    assert_eq!(
        json!(authors),
        json!([
            [{"platform_id": "NL.1502576394655843", "handle": "@sanne.bakt", "name": "Sanne"}, "NL.1502576394655843"],
            // With both, the phone number: the id Balie has always known the customer by.
            [{"platform_id": "31612345678", "name": "Test Klant"}, "31612345678"],
        ])
    );
    assert!(batch.unread.is_empty() && batch.dropped.is_empty());
}

#[test]
fn a_whatsapp_edit_names_the_original_message_and_the_edit_as_revision() {
    let batch = parse("meta/whatsapp_edit.json");
    assert_eq!(
        inbound_json(&batch.events),
        json!([{
            "external_id": "wamid.HBgLMzE2MTIzNDU2NzgVAgASGBQzT1JJR0lOQUwwMDAwMDAwMDAwMQA=",
            "kind": "edited",
            "author": {"platform_id": "31612345678", "name": "Test Klant"},
            "text": "Mijn ordernummer is 5521, niet 5512",
            "thread_key": "31612345678",
            "place": {"kind": "direct"},
            "created_at": 1_795_000_300_000_i64,
            "account_id": "106540352242922",
            "revision": "wamid.HBgLMzE2MTIzNDU2NzgVAgASGBQzRURJVDAwMDAwMDAwMDAwMDAwMQA=",
        }])
    );
}

#[test]
fn a_whatsapp_message_of_an_unknown_type_is_kept_unread() {
    let batch = parse("meta/whatsapp_unsupported.json");
    assert!(batch.events.is_empty());
    let [unread] = batch.unread.as_slice() else {
        panic!("one kept unread: {batch:?}");
    };
    assert!(unread.why.contains("messages[0].type"), "{}", unread.why);
    assert!(unread.inbound.text.contains("\"type\":\"unsupported\""));
}

#[test]
fn messenger_receipts_without_a_timestamp_are_set_aside_quietly() {
    let batch = parse("meta/messenger_delivery_receipt.json");
    assert!(batch.events.is_empty() && batch.unread.is_empty());
    assert_eq!(
        batch.dropped,
        [
            Dropped::new(
                DropReason::Receipt,
                "entry[0].messaging[0]: messenger delivery"
            ),
            Dropped::new(DropReason::Receipt, "entry[0].messaging[1]: messenger read"),
        ]
    );
    assert!(DropReason::Receipt.routine(), "logged at debug level only");
}

#[test]
fn a_dashboard_test_without_object_is_read_as_the_channels_kind_in_seconds() {
    let body = fixture("meta/instagram_test_without_object.json");
    assert!(
        meta::parse(&body).is_err(),
        "without a channel kind it is no envelope"
    );
    let batch = meta::parse_for_channel(&body, ChannelKind::Instagram).expect("parses");
    assert_eq!(
        routes(&batch.events),
        [(ChannelKind::Instagram, "17841400000000001")]
    );
    let inbound = &batch.events[0].inbound;
    assert_eq!(inbound.text, "Hebben jullie deze jas ook in maat M?");
    assert_eq!(
        inbound.created_at, 1_795_000_600_000,
        "seconds, as a string"
    );
}
