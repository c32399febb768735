//! SQLite's half of the pipeline's write step: loads the [`Snapshot`] a batch needs with a
//! handful of statements, and writes the [`WritePlan`] with multi-row statements. What the
//! rows say is decided in [`crate::plan`], not here.

use std::collections::HashSet;

use balie_core::{ConversationStatus, InboundKind, Millis};
use sqlx::{Sqlite, Transaction};

use crate::common::{conflict_or, corrupt};
use crate::plan::{
    ChannelInfo, ConversationState, MessageChange, NextIds, Snapshot, StoredConversation,
    StoredIdentity, StoredMessage, StoredReply, Way, WritePlan, notice_threads,
};
use crate::search::search_terms;
use crate::{Prepared, Result, StoreError};

/// Rows per multi-row statement (at most 15 parameters a row, far under SQLite's 32,766
/// bound parameters).
const BATCH_ROWS: usize = 500;
/// Values per `IN (…)` list.
const BATCH_KEYS: usize = 5_000;

type Tx<'c> = Transaction<'c, Sqlite>;

/// Runs `q`, a `SELECT json_group_array(json_array(…)) …`, and decodes its rows. sqlx hands
/// every result row from SQLite's worker thread to the async side on its own (a thread hop
/// each); the rows folded into one JSON value cost one.
async fn fetch_json_rows<T: serde::de::DeserializeOwned>(
    tx: &mut Tx<'_>,
    mut q: sqlx::QueryBuilder<Sqlite>,
) -> Result<Vec<T>> {
    let json: String = q.build_query_scalar().fetch_one(&mut **tx).await?;
    serde_json::from_str(&json).map_err(|e| StoreError::Corrupt(format!("batch read: {e}")))
}

/// Pushes `(?, ?, …)` binding `values`.
fn push_in<'t, T>(q: &mut sqlx::QueryBuilder<Sqlite>, values: &[T])
where
    T: Copy + sqlx::Encode<'t, Sqlite> + sqlx::Type<Sqlite>,
{
    q.push("(");
    let mut list = q.separated(", ");
    for v in values {
        list.push_bind(*v);
    }
    list.push_unseparated(")");
}

fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort_unstable();
    v.dedup();
    v
}

/// Reads what `batch` touches (see [`Snapshot`]).
pub(super) async fn load_snapshot(tx: &mut Tx<'_>, batch: &[Prepared]) -> Result<Snapshot> {
    let mut s = Snapshot::default();
    if batch.is_empty() {
        s.next = next_ids(tx).await?;
        return Ok(s);
    }
    // Which entries an earlier run already applied: one query for the batch.
    let (lo, hi) = batch.iter().fold((i64::MAX, i64::MIN), |(lo, hi), p| {
        (lo.min(p.entry.id), hi.max(p.entry.id))
    });
    s.done = sqlx::query_scalar(
        "SELECT id FROM journal WHERE id BETWEEN ? AND ? AND processed_at IS NOT NULL",
    )
    .bind(lo)
    .bind(hi)
    .fetch_all(&mut **tx)
    .await?
    .into_iter()
    .collect::<HashSet<i64>>();

    let channel_ids = sorted(batch.iter().map(|p| p.entry.channel_id.0).collect());
    let mut q = sqlx::QueryBuilder::<Sqlite>::new(
        "SELECT json_group_array(json_array(id, brand_id, kind)) FROM channels WHERE id IN ",
    );
    push_in(&mut q, &channel_ids);
    let rows: Vec<(i64, i64, String)> = fetch_json_rows(tx, q).await?;
    for (id, brand, platform) in rows {
        s.channels.insert(id, ChannelInfo { brand, platform });
    }

    // Messages the batch names: its own (stored already?) and those it answers.
    let named = sorted(
        batch
            .iter()
            .flat_map(|p| {
                let inb = &p.entry.inbound;
                std::iter::once(inb.external_id.as_str()).chain(inb.in_reply_to.as_deref())
            })
            .collect(),
    );
    let edits = batch
        .iter()
        .any(|p| p.entry.inbound.kind == InboundKind::Edited);
    for chunk in named.chunks(BATCH_KEYS) {
        let mut q = sqlx::QueryBuilder::<Sqlite>::new(
            "SELECT json_group_array(json_array(m.channel_id, m.external_id, m.id, \
             m.conversation_id, c.customer_id, CASE WHEN ",
        );
        q.push_bind(edits).push(
            " THEN m.text END)) FROM messages m JOIN conversations c ON c.id = m.conversation_id \
             WHERE m.channel_id IN ",
        );
        push_in(&mut q, &channel_ids);
        q.push(" AND m.external_id IN ");
        push_in(&mut q, chunk);
        let rows: Vec<(i64, String, i64, i64, i64, Option<String>)> =
            fetch_json_rows(tx, q).await?;
        for (channel, ext, id, conversation, customer, text) in rows {
            s.messages.insert(
                (channel, ext),
                StoredMessage {
                    id,
                    conversation,
                    customer,
                    text,
                },
            );
        }
    }

    // The authors' identities, by platform (the channel kind) and platform id.
    let authored = |p: &&Prepared| {
        matches!(
            p.entry.inbound.kind,
            InboundKind::Message | InboundKind::Echo
        )
    };
    let platforms = sorted(
        batch
            .iter()
            .filter(authored)
            .filter_map(|p| s.channels.get(&p.entry.channel_id.0))
            .map(|c| c.platform.as_str())
            .collect(),
    );
    let authors = sorted(
        batch
            .iter()
            .filter(authored)
            .map(|p| p.entry.inbound.author.platform_id.as_str())
            .collect(),
    );
    let mut identities = Vec::new();
    for chunk in authors.chunks(BATCH_KEYS) {
        let mut q = sqlx::QueryBuilder::<Sqlite>::new(
            "SELECT json_group_array(json_array(i.platform, i.external_id, i.id, i.customer_id, \
             i.handle, i.name, cu.display_name)) FROM identities i \
             JOIN customers cu ON cu.id = i.customer_id WHERE i.platform IN ",
        );
        push_in(&mut q, &platforms);
        q.push(" AND i.external_id IN ");
        push_in(&mut q, chunk);
        #[allow(clippy::type_complexity)]
        let rows: Vec<(
            String,
            String,
            i64,
            i64,
            Option<String>,
            Option<String>,
            String,
        )> = fetch_json_rows(tx, q).await?;
        identities.extend(rows);
    }
    for (platform, ext, id, customer, handle, name, display) in identities {
        s.customer_names.insert(customer, display);
        s.identities.insert(
            (platform, ext),
            StoredIdentity {
                id,
                customer,
                handle,
                name,
            },
        );
    }

    // Those customers' conversations on the batch's channels.
    let customers = sorted(s.identities.values().map(|i| i.customer).collect());
    for chunk in customers.chunks(BATCH_KEYS) {
        let mut q = sqlx::QueryBuilder::<Sqlite>::new(
            "SELECT json_group_array(json_array(id, channel_id, customer_id, thread_key, status, \
             priority, waiting_since, reply_due, first_line, last_message_at)) \
             FROM conversations WHERE customer_id IN ",
        );
        push_in(&mut q, chunk);
        q.push(" AND channel_id IN ");
        push_in(&mut q, &channel_ids);
        #[allow(clippy::type_complexity)]
        let rows: Vec<(
            i64,
            i64,
            i64,
            Option<String>,
            String,
            i64,
            Option<Millis>,
            Option<Millis>,
            String,
            Millis,
        )> = fetch_json_rows(tx, q).await?;
        for (id, channel, customer, thread_key, status, priority, waiting, due, line, last) in rows
        {
            let status = ConversationStatus::parse(&status)
                .ok_or_else(|| corrupt("conversation status", &status))?;
            s.conversations.insert(
                id,
                StoredConversation {
                    channel,
                    customer,
                    thread_key,
                    state: ConversationState {
                        status,
                        priority,
                        waiting_since: waiting,
                        reply_due: due,
                        first_line: line,
                        last_message_at: last,
                    },
                },
            );
        }
    }

    // Our replies that echoes name by key.
    let keys = sorted(
        batch
            .iter()
            .filter(|p| p.entry.inbound.kind == InboundKind::Echo)
            .filter_map(|p| p.entry.inbound.outbox_key.as_deref())
            .collect(),
    );
    for chunk in keys.chunks(BATCH_KEYS) {
        let mut q = sqlx::QueryBuilder::<Sqlite>::new(
            "SELECT json_group_array(json_array(o.channel_id, o.idempotency_key, o.id, \
             o.message_id, m.conversation_id, c.customer_id, o.state = 'sent', m.external_id)) \
             FROM outbox o JOIN messages m ON m.id = o.message_id \
             JOIN conversations c ON c.id = m.conversation_id WHERE o.idempotency_key IN ",
        );
        push_in(&mut q, chunk);
        #[allow(clippy::type_complexity)]
        let rows: Vec<(i64, String, i64, i64, i64, i64, i64, Option<String>)> =
            fetch_json_rows(tx, q).await?;
        for (channel, key, outbox, message, conversation, customer, sent, external_id) in rows {
            s.replies.insert(
                (channel, key),
                StoredReply {
                    outbox,
                    message,
                    conversation,
                    customer,
                    sent: sent != 0,
                    external_id,
                },
            );
        }
    }
    // The newest conversation of each thread a notice names.
    let threads = sorted(notice_threads(batch));
    for chunk in threads.chunks(BATCH_KEYS) {
        let mut q = sqlx::QueryBuilder::<Sqlite>::new(
            "SELECT json_group_array(json_array(channel_id, thread_key, id)) FROM \
             (SELECT channel_id, thread_key, MAX(id) AS id FROM conversations WHERE channel_id IN ",
        );
        push_in(&mut q, &channel_ids);
        q.push(" AND thread_key IN ");
        push_in(&mut q, chunk);
        q.push(" GROUP BY channel_id, thread_key)");
        let rows: Vec<(i64, String, i64)> = fetch_json_rows(tx, q).await?;
        s.threads.extend(
            rows.into_iter()
                .map(|(channel, key, id)| ((channel, key), id)),
        );
    }
    s.next = next_ids(tx).await?;
    Ok(s)
}

/// Our reply named by `key` on `channel`, if there is one.
pub(super) async fn load_reply(
    tx: &mut Tx<'_>,
    channel: i64,
    key: &str,
) -> Result<Option<StoredReply>> {
    let row: Option<(i64, i64, i64, i64, bool, Option<String>)> = sqlx::query_as(
        "SELECT o.id, o.message_id, m.conversation_id, c.customer_id, o.state = 'sent', \
         m.external_id FROM outbox o JOIN messages m ON m.id = o.message_id \
         JOIN conversations c ON c.id = m.conversation_id \
         WHERE o.idempotency_key = ? AND o.channel_id = ?",
    )
    .bind(key)
    .bind(channel)
    .fetch_optional(&mut **tx)
    .await?;
    Ok(row.map(
        |(outbox, message, conversation, customer, sent, external_id)| StoredReply {
            outbox,
            message,
            conversation,
            customer,
            sent,
            external_id,
        },
    ))
}

/// Ids are handed out by the plan (the single writer connection means nobody else takes
/// ids meanwhile), so rows can be written many at a time and refer to each other.
pub(super) async fn next_ids(tx: &mut Tx<'_>) -> Result<NextIds> {
    let (customer, identity, conversation, message, event): (i64, i64, i64, i64, i64) =
        sqlx::query_as(
            "SELECT (SELECT COALESCE(MAX(id), 0) FROM customers), \
             (SELECT COALESCE(MAX(id), 0) FROM identities), \
             (SELECT COALESCE(MAX(id), 0) FROM conversations), \
             (SELECT COALESCE(MAX(id), 0) FROM messages), \
             MAX((SELECT COALESCE(MAX(id), 0) FROM events), \
                 COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0))",
        )
        .fetch_one(&mut **tx)
        .await?;
    Ok(NextIds {
        customer: customer + 1,
        identity: identity + 1,
        conversation: conversation + 1,
        message: message + 1,
        event: event + 1,
    })
}

/// Writes `plan`, in the order foreign keys need, with multi-row statements.
pub(super) async fn write_plan(tx: &mut Tx<'_>, plan: &WritePlan, now: Millis) -> Result<()> {
    for chunk in plan.customers.chunks(BATCH_ROWS) {
        let mut q = sqlx::QueryBuilder::<Sqlite>::new(
            "INSERT INTO customers (id, display_name, created_at) ",
        );
        q.push_values(chunk, |mut b, c| {
            b.push_bind(c.id)
                .push_bind(c.display_name.as_str())
                .push_bind(now);
        });
        q.build().persistent(false).execute(&mut **tx).await?;
    }
    for (id, name) in &plan.renamed_customers {
        sqlx::query("UPDATE customers SET display_name = ? WHERE id = ?")
            .bind(name)
            .bind(id)
            .execute(&mut **tx)
            .await?;
    }
    for chunk in plan.identities.chunks(BATCH_ROWS) {
        let mut q = sqlx::QueryBuilder::<Sqlite>::new(
            "INSERT INTO identities (id, customer_id, platform, external_id, handle, name) ",
        );
        q.push_values(chunk, |mut b, i| {
            b.push_bind(i.id)
                .push_bind(i.customer)
                .push_bind(i.platform.as_str())
                .push_bind(i.external_id.as_str())
                .push_bind(i.handle.as_deref())
                .push_bind(i.name.as_deref());
        });
        q.build()
            .persistent(false)
            .execute(&mut **tx)
            .await
            .map_err(|e| conflict_or(e, "identity"))?;
    }
    for (id, handle, name) in &plan.identity_updates {
        sqlx::query("UPDATE identities SET handle = ?, name = ? WHERE id = ?")
            .bind(handle)
            .bind(name)
            .bind(id)
            .execute(&mut **tx)
            .await?;
    }
    for chunk in plan.conversations.chunks(BATCH_ROWS) {
        let mut q = sqlx::QueryBuilder::<Sqlite>::new(
            "INSERT INTO conversations (id, brand_id, channel_id, customer_id, status, priority, \
             waiting_since, reply_due, thread_key, first_line, last_message_at, created_at, \
             updated_at) ",
        );
        q.push_values(chunk, |mut b, c| {
            let s = &c.state;
            b.push_bind(c.id)
                .push_bind(c.brand)
                .push_bind(c.channel)
                .push_bind(c.customer)
                .push_bind(s.status.as_str())
                .push_bind(s.priority)
                .push_bind(s.waiting_since)
                .push_bind(s.reply_due)
                .push_bind(c.thread_key.as_deref())
                .push_bind(s.first_line.as_str())
                .push_bind(s.last_message_at)
                .push_bind(now)
                .push_bind(now);
        });
        q.build().persistent(false).execute(&mut **tx).await?;
    }
    for chunk in plan.conversation_updates.chunks(BATCH_ROWS) {
        let mut q = sqlx::QueryBuilder::<Sqlite>::new(
            "UPDATE conversations SET status = v.column2, priority = v.column3, \
             waiting_since = v.column4, reply_due = v.column5, first_line = v.column6, \
             last_message_at = v.column7, updated_at = v.column8 FROM (",
        );
        q.push_values(chunk, |mut b, (id, s)| {
            b.push_bind(*id)
                .push_bind(s.status.as_str())
                .push_bind(s.priority)
                .push_bind(s.waiting_since)
                .push_bind(s.reply_due)
                .push_bind(s.first_line.as_str())
                .push_bind(s.last_message_at)
                .push_bind(now);
        });
        q.push(") AS v WHERE conversations.id = v.column1");
        q.build().persistent(false).execute(&mut **tx).await?;
    }
    for chunk in plan.messages.chunks(BATCH_ROWS) {
        let mut q = sqlx::QueryBuilder::<Sqlite>::new(
            "INSERT INTO messages (id, conversation_id, channel_id, direction, external_id, \
             author_identity, text, in_reply_to, created_at, received_at, delivery, analysis, \
             place_kind, place_url, removed) ",
        );
        q.push_values(chunk, |mut b, m| {
            let (direction, delivery) = match m.way {
                Way::In => ("in", "received"),
                Way::OutSentElsewhere => ("out", "sent"),
            };
            b.push_bind(m.id)
                .push_bind(m.conversation)
                .push_bind(m.channel)
                .push_bind(direction)
                .push_bind(m.external_id.as_str())
                .push_bind(m.author_identity)
                .push_bind(m.text.as_str())
                .push_bind(m.in_reply_to)
                .push_bind(m.created_at)
                .push_bind(m.received_at)
                .push_bind(delivery)
                .push_bind(m.analysis.as_deref())
                .push_bind(m.place_kind)
                .push_bind(m.place_url.as_deref())
                .push_bind(m.removed);
        });
        q.build()
            .persistent(false)
            .execute(&mut **tx)
            .await
            .map_err(|e| conflict_or(e, "message"))?;
        let mut q = sqlx::QueryBuilder::<Sqlite>::new("INSERT INTO message_search (rowid, terms) ");
        q.push_values(chunk, |mut b, m| {
            b.push_bind(m.id).push_bind(search_terms(&m.text));
        });
        q.build().persistent(false).execute(&mut **tx).await?;
    }
    for change in &plan.message_changes {
        match change {
            MessageChange::Edited { id, text, analysis } => {
                sqlx::query(
                    "UPDATE messages SET text = ?, analysis = COALESCE(?, analysis) WHERE id = ?",
                )
                .bind(text)
                .bind(analysis)
                .bind(id)
                .execute(&mut **tx)
                .await?;
                sqlx::query("DELETE FROM message_search WHERE rowid = ?")
                    .bind(id)
                    .execute(&mut **tx)
                    .await?;
                sqlx::query("INSERT INTO message_search (rowid, terms) VALUES (?, ?)")
                    .bind(id)
                    .bind(search_terms(text))
                    .execute(&mut **tx)
                    .await?;
            }
            MessageChange::Removed { id } => {
                sqlx::query("UPDATE messages SET removed = 1 WHERE id = ?")
                    .bind(id)
                    .execute(&mut **tx)
                    .await?;
            }
            MessageChange::Delivered { id, external_id } => {
                sqlx::query(
                    "UPDATE messages SET delivery = 'sent', delivery_error = NULL, \
                     external_id = ? WHERE id = ?",
                )
                .bind(external_id)
                .bind(id)
                .execute(&mut **tx)
                .await?;
            }
        }
    }
    for id in &plan.outbox_sent {
        sqlx::query(
            "UPDATE outbox SET state = 'sent', last_error = NULL, updated_at = ? WHERE id = ?",
        )
        .bind(now)
        .bind(id)
        .execute(&mut **tx)
        .await?;
    }
    for chunk in plan.events.chunks(BATCH_ROWS) {
        let mut q = sqlx::QueryBuilder::<Sqlite>::new(
            "INSERT INTO events (id, conversation_id, kind, message_id, user_id, detail, at) ",
        );
        q.push_values(chunk, |mut b, ev| {
            b.push_bind(ev.id)
                .push_bind(ev.conversation)
                .push_bind(ev.kind.as_str())
                .push_bind(ev.message)
                .push_bind(None::<i64>)
                .push_bind(ev.detail.as_str())
                .push_bind(now);
        });
        q.build().persistent(false).execute(&mut **tx).await?;
    }
    for chunk in plan.processed.chunks(BATCH_KEYS) {
        let mut q = sqlx::QueryBuilder::<Sqlite>::new("UPDATE journal SET processed_at = ");
        q.push_bind(now).push(" WHERE id IN ");
        push_in(&mut q, chunk);
        q.build().persistent(true).execute(&mut **tx).await?;
    }
    Ok(())
}
