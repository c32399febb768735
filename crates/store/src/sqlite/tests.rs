//! The batch path against the one-at-a-time path: the same journal applied in one big batch
//! and entry by entry must leave the very same rows (but for wall-clock stamps).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use balie_core::{
    Author, ChannelId, ChannelKind, ConversationId, ConversationStatus, Inbound, InboundKind,
    Millis, Place, PlaceKind, SlaPolicy,
};
use sqlx::Row;

use super::SqliteStore;
use crate::{Applied, Channels, Conversations, Journal, NewJournalEntry, Prepared};

struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        usize::try_from((self.0 >> 33) % n.max(1) as u64).unwrap()
    }
}

const T0: Millis = 1_700_000_000_000;

fn inbound(kind: InboundKind, id: String, who: usize, text: String) -> Inbound {
    Inbound {
        external_id: id,
        kind,
        author: Author {
            platform_id: format!("c{who}"),
            handle: None,
            name: None,
        },
        text,
        in_reply_to: None,
        thread_key: None,
        place: None,
        created_at: T0,
        account_id: None,
        attachments: Vec::new(),
        revision: None,
        outbox_key: None,
    }
}

/// A round of traffic on `channels`: new customers and known ones, replies to messages of
/// this round and earlier ones (their own and others'), platform threads, name changes,
/// edits, removals and echoes.
fn round(
    rng: &mut Rng,
    channels: &[ChannelId],
    sent: &mut Vec<(usize, String, usize)>,
    n: usize,
    start: usize,
) -> Vec<NewJournalEntry> {
    let mut out = Vec::new();
    for k in 0..n {
        let i = start + k;
        let c = rng.below(channels.len());
        // A big round brings many new customers, a small one mostly known ones.
        let who = rng.below(if n > 500 { 900 } else { 30 });
        let roll = rng.below(100);
        let mut inb = if roll < 8 && !sent.is_empty() {
            let (ch, id, _) = sent[rng.below(sent.len())].clone();
            let kind = if rng.below(2) == 0 {
                InboundKind::Edited
            } else {
                InboundKind::Removed
            };
            let mut e = inbound(kind, id, who, format!("edit {i}"));
            e.revision = Some(format!("{i}"));
            out.push(NewJournalEntry {
                channel_id: channels[ch],
                inbound: e,
                received_at: T0 + i64::try_from(i).unwrap() * 1000,
            });
            continue;
        } else if roll < 13 {
            inbound(
                InboundKind::Echo,
                format!("e{i}"),
                who,
                format!("answer {i}"),
            )
        } else {
            inbound(
                InboundKind::Message,
                format!("m{i}"),
                who,
                format!("vraag {i}"),
            )
        };
        match rng.below(4) {
            0 => inb.author.name = Some(format!("Klant {who} v{}", rng.below(3))),
            1 => inb.author.handle = Some(format!("k{who}")),
            _ => {}
        }
        if rng.below(3) == 0 {
            inb.thread_key = Some(format!("t{}", rng.below(5)));
        }
        if rng.below(2) == 0 && !sent.is_empty() {
            let mine: Vec<&(usize, String, usize)> = sent.iter().filter(|s| s.0 == c).collect();
            if !mine.is_empty() {
                inb.in_reply_to = Some(mine[rng.below(mine.len())].1.clone());
            }
        }
        if inb.kind == InboundKind::Message {
            sent.push((c, inb.external_id.clone(), who));
        }
        out.push(NewJournalEntry {
            channel_id: channels[c],
            inbound: inb,
            received_at: T0 + i64::try_from(i).unwrap() * 1000,
        });
    }
    out
}

async fn world(store: &SqliteStore) -> Vec<ChannelId> {
    let brand = store.ensure_brand("b", T0).await.unwrap();
    let mut out = Vec::new();
    for (kind, name) in [
        (ChannelKind::Api, "api"),
        (ChannelKind::Api, "api-2"),
        (ChannelKind::X, "x"),
    ] {
        out.push(
            store
                .create_channel(brand, kind, name, "{}", T0)
                .await
                .unwrap()
                .id,
        );
    }
    out
}

async fn apply_pending(store: &SqliteStore, limit: i64) -> Vec<Applied> {
    let mut all = Vec::new();
    loop {
        let batch: Vec<Prepared> = store
            .pending_journal(limit)
            .await
            .unwrap()
            .into_iter()
            .map(|entry| {
                let urgency = u8::try_from(entry.id * 37 % 100).unwrap();
                Prepared {
                    entry,
                    analysis: Some("{}".into()),
                    urgency,
                }
            })
            .collect();
        if batch.is_empty() {
            return all;
        }
        let sla = SlaPolicy::default();
        all.extend(store.apply_journal(&batch, &sla, T0).await.unwrap());
    }
}

async fn dump(store: &SqliteStore) -> Vec<String> {
    let queries = [
        "SELECT id, display_name FROM customers ORDER BY id",
        "SELECT id, customer_id, platform, external_id, handle, name FROM identities ORDER BY id",
        "SELECT id, brand_id, channel_id, customer_id, status, priority, waiting_since, \
         reply_due, thread_key, first_line, last_message_at FROM conversations ORDER BY id",
        "SELECT id, conversation_id, channel_id, direction, external_id, author_identity, \
         text, in_reply_to, created_at, received_at, delivery, removed, analysis FROM messages \
         ORDER BY id",
        "SELECT id, conversation_id, kind, message_id, user_id, detail FROM events ORDER BY id",
        "SELECT rowid FROM message_search WHERE message_search MATCH 'vraag' ORDER BY rowid",
        "SELECT rowid FROM message_search WHERE message_search MATCH 'edit' ORDER BY rowid",
    ];
    let mut out = Vec::new();
    for q in queries {
        for row in sqlx::query(q).fetch_all(&store.writer).await.unwrap() {
            let cols: Vec<String> = (0..row.len())
                .map(|i| {
                    row.try_get::<Option<String>, _>(i)
                        .map(|v| format!("{v:?}"))
                        .or_else(|_| row.try_get::<Option<i64>, _>(i).map(|v| format!("{v:?}")))
                        .unwrap()
                })
                .collect();
            out.push(format!("{q}: {}", cols.join("|")));
        }
    }
    out
}

#[tokio::test]
async fn a_whole_batch_leaves_the_same_rows_as_one_entry_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let batched = SqliteStore::open(&dir.path().join("a.db")).await.unwrap();
    let single = SqliteStore::open(&dir.path().join("b.db")).await.unwrap();
    let channels = world(&batched).await;
    assert_eq!(world(&single).await, channels);
    let mut rng = Rng(7);
    let mut sent = Vec::new();
    let mut start = 0;
    // The first round is bigger than one multi-row statement (`BATCH_ROWS`).
    for (r, size) in [1_100, 150, 150, 150, 150, 150].into_iter().enumerate() {
        let entries = round(&mut rng, &channels, &mut sent, size, start);
        start += size;
        batched.append_journal(&entries).await.unwrap();
        single.append_journal(&entries).await.unwrap();
        let a = apply_pending(&batched, 10_000).await;
        let b = apply_pending(&single, 1).await;
        assert_eq!(a, b, "round {r}");
        // Agents close, park and snooze some conversations between rounds.
        let convs: Vec<i64> = sqlx::query_scalar("SELECT id FROM conversations ORDER BY id")
            .fetch_all(&batched.writer)
            .await
            .unwrap();
        for (k, id) in convs.iter().enumerate() {
            let status = match (k + r) % 5 {
                0 => ConversationStatus::Closed,
                1 => ConversationStatus::Pending,
                2 => ConversationStatus::Snoozed,
                _ => continue,
            };
            for store in [&batched, &single] {
                store
                    .set_status(
                        balie_core::BrandId(1),
                        ConversationId(*id),
                        status,
                        None,
                        T0,
                    )
                    .await
                    .unwrap();
            }
        }
    }
    let (a, b) = (dump(&batched).await, dump(&single).await);
    assert!(a.len() > 4000, "a real workload: {} rows", a.len());
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x, y);
    }
    assert_eq!(a.len(), b.len());
    batched.close().await;
    single.close().await;
}

/// Migration 7 fills the typed analysis columns of messages analysed before it, from the
/// stored JSON, and leaves text that is not such JSON alone.
#[tokio::test]
async fn migration_7_fills_the_analysis_columns_from_the_stored_json() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("a.db")).await.unwrap();
    let channels = world(&store).await;
    let entries: Vec<NewJournalEntry> = (0..3)
        .map(|i| NewJournalEntry {
            channel_id: channels[0],
            inbound: inbound(
                InboundKind::Message,
                format!("m{i}"),
                i,
                format!("vraag {i}"),
            ),
            received_at: T0,
        })
        .collect();
    store.append_journal(&entries).await.unwrap();
    apply_pending(&store, 10).await;
    let analyses = [
        r#"{"lang":"nl","sentiment":"negative","intent":"complaint","escalation":true,"escalation_signals":["repeat_contact","going_public"]}"#,
        "not json",
        r#"{"lang":"en","sentiment":"neutral","intent":"question","escalation":false,"escalation_signals":[]}"#,
    ];
    for (i, a) in analyses.iter().enumerate() {
        sqlx::query("UPDATE messages SET analysis = $1 WHERE external_id = $2")
            .bind(a)
            .bind(format!("m{i}"))
            .execute(&store.writer)
            .await
            .unwrap();
    }
    for column in [
        "language",
        "sentiment",
        "intent",
        "escalation",
        "escalation_signals",
    ] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "ALTER TABLE messages DROP COLUMN {column}"
        )))
        .execute(&store.writer)
        .await
        .unwrap();
    }
    let (_, migration) = super::MIGRATIONS.iter().find(|(v, _)| *v == 7).unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(*migration))
        .execute(&store.writer)
        .await
        .unwrap();
    #[allow(clippy::type_complexity)]
    let rows: Vec<(
        String,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<i64>,
        Option<String>,
    )> = sqlx::query_as(
        "SELECT external_id, language, sentiment, intent, escalation, escalation_signals \
             FROM messages ORDER BY external_id",
    )
    .fetch_all(&store.writer)
    .await
    .unwrap();
    let s = |v: &str| Some(v.to_owned());
    assert_eq!(
        rows,
        vec![
            (
                "m0".into(),
                s("nl"),
                s("negative"),
                s("complaint"),
                Some(1),
                s("repeat_contact,going_public")
            ),
            ("m1".into(), None, None, None, None, None),
            (
                "m2".into(),
                s("en"),
                s("neutral"),
                s("question"),
                Some(0),
                s("")
            ),
        ]
    );
    store.close().await;
}

/// Migration 8 copies where a message was from its journal entry onto messages stored without
/// it (before migration 4), so the outbox never reads the journal; it leaves messages whose
/// entry names no place alone.
#[tokio::test]
async fn migration_8_copies_the_place_from_the_journal_onto_the_message() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("a.db")).await.unwrap();
    let channels = world(&store).await;
    let places = [Some(PlaceKind::Comment), None, Some(PlaceKind::Direct)];
    let entries: Vec<NewJournalEntry> = places
        .iter()
        .enumerate()
        .map(|(i, place)| {
            let mut inbound = inbound(
                InboundKind::Message,
                format!("m{i}"),
                i,
                format!("vraag {i}"),
            );
            inbound.place = place.map(|kind| Place { kind, url: None });
            NewJournalEntry {
                channel_id: channels[0],
                inbound,
                received_at: T0,
            }
        })
        .collect();
    store.append_journal(&entries).await.unwrap();
    apply_pending(&store, 10).await;
    sqlx::query("UPDATE messages SET place_kind = NULL")
        .execute(&store.writer)
        .await
        .unwrap();
    let (_, migration) = super::MIGRATIONS.iter().find(|(v, _)| *v == 8).unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(*migration))
        .execute(&store.writer)
        .await
        .unwrap();
    let rows: Vec<(String, Option<String>)> =
        sqlx::query_as("SELECT external_id, place_kind FROM messages ORDER BY external_id")
            .fetch_all(&store.writer)
            .await
            .unwrap();
    let s = |v: &str| Some(v.to_owned());
    assert_eq!(
        rows,
        vec![
            ("m0".into(), s("comment")),
            ("m1".into(), None),
            ("m2".into(), s("direct")),
        ]
    );
    store.close().await;
}
