//! Telegram: private messages, edits, group replies with photos, ignored update types.

use balie_channels::telegram;
use balie_channels::{DropReason, Dropped, ParseError};
use serde_json::json;

use crate::fixture;

fn parse(name: &str) -> telegram::TelegramUpdate {
    telegram::parse(&fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn a_private_message_is_normalised_with_a_chat_scoped_id() {
    let update = parse("telegram/private_message.json");
    assert_eq!(update.update_id, 815_200_001);
    assert_eq!(
        json!(update.event),
        json!({
            "external_id": "5550001111:42",
            "kind": "message",
            "author": {"platform_id": "5550001111", "handle": "testklant_tg", "name": "Test Klant"},
            "text": "Hallo, kan ik mijn afspraak verzetten?",
            "thread_key": "5550001111",
            "place": {"kind": "direct"},
            "created_at": 1_763_885_800_000_i64,
        })
    );
}

#[test]
fn an_edit_names_the_same_message_with_its_edit_date_as_revision() {
    let update = parse("telegram/edited_message.json");
    let event = update.event.expect("an event");
    assert_eq!(event.external_id, "5550001111:42");
    assert_eq!(event.kind, balie_core::InboundKind::Edited);
    assert_eq!(event.revision.as_deref(), Some("1763885860"));
    assert_eq!(event.created_at, 1_763_885_860_000);
    assert_eq!(
        event.text,
        "Hallo, kan ik mijn afspraak van dinsdag verzetten?"
    );
}

#[test]
fn a_group_reply_with_a_photo_keeps_the_reply_link_and_the_largest_photo() {
    let update = parse("telegram/group_reply_with_photo.json");
    assert_eq!(
        json!(update.event),
        json!({
            "external_id": "-1001234567890:777",
            "kind": "message",
            "author": {"platform_id": "5550002222", "name": "Tester"},
            "text": "Hier is de foto",
            "in_reply_to": "-1001234567890:770",
            "thread_key": "-1001234567890",
            "place": {"kind": "mention", "url": "https://t.me/voorbeeldwinkel_chat/777"},
            "created_at": 1_763_885_900_000_i64,
            "attachments": [{"kind": "image", "media_id": "AgACAgQAAxkBAAIBlarge"}],
        })
    );
}

#[test]
fn other_update_types_are_set_aside_with_their_reason_and_keep_the_update_id() {
    let update = parse("telegram/callback_query.json");
    assert_eq!(update.update_id, 815_200_004);
    assert_eq!(update.event, None);
    assert_eq!(
        update.dropped,
        Some(Dropped::new(
            DropReason::NotConversation,
            "telegram update `callback_query`"
        ))
    );
}

#[test]
fn a_body_that_is_not_an_update_is_an_error_and_an_unreadable_message_is_set_aside() {
    match telegram::parse(br#"{"message":{}}"#) {
        Err(ParseError::Malformed { path, reason, .. }) => {
            assert_eq!(path, ".");
            assert!(reason.contains("missing field `update_id`"), "{reason}");
        }
        other => panic!("expected malformed, got {other:?}"),
    }
    // Words in it: kept unread, with the path of what is wrong.
    let update =
        telegram::parse(br#"{"update_id":1,"message":{"message_id":1,"date":1,"text":"Hallo?"}}"#)
            .expect("an update");
    let unread = update.unread.expect("kept unread");
    assert!(
        unread.why.contains("missing field `chat`"),
        "{}",
        unread.why
    );
    assert!(unread.inbound.text.contains("Hallo?"));
    assert_eq!((update.event, update.dropped), (None, None));
    // No words: dropped as malformed.
    let update = telegram::parse(
        br#"{"update_id":1,"edited_message":{"message_id":"x","chat":{"id":1,"type":"private"},"date":1}}"#,
    )
    .expect("an update");
    let dropped = update.dropped.expect("dropped");
    assert_eq!(dropped.reason, DropReason::Malformed);
    assert!(
        dropped.what.contains("edited_message.message_id"),
        "{}",
        dropped.what
    );
}

#[test]
fn no_fixture_mutation_makes_the_parser_panic() {
    crate::assert_never_panics("telegram", telegram::parse);
}

#[test]
fn service_messages_are_notices_for_the_chats_timeline() {
    for (name, text) in [
        ("telegram/pinned_message.json", "📌 Hier is de foto"),
        ("telegram/dice.json", "🎲 4"),
    ] {
        let event = parse(name).event.expect("an event");
        assert_eq!(event.kind, balie_core::InboundKind::Notice, "{name}");
        assert_eq!(event.text, text, "{name}");
        assert_eq!(
            event.thread_key.as_deref(),
            Some("-1001234567890"),
            "{name}"
        );
    }
}
