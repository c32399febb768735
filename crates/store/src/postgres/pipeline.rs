//! PostgreSQL's half of the pipeline's write step: loads the [`Snapshot`] a batch needs
//! (array parameters, `= ANY`), and writes the [`WritePlan`] with multi-row statements.
//! What the rows say is decided in [`crate::plan`], not here.

use std::collections::HashSet;

use balie_core::{ConversationStatus, InboundKind, Millis};
use sqlx::Postgres;

use super::{Tx, lexemes};
use crate::common::{conflict_or, corrupt};
use crate::plan::{
    ChannelInfo, ConversationState, MessageChange, NextIds, Snapshot, StoredConversation,
    StoredIdentity, StoredMessage, StoredReply, Way, WritePlan, notice_threads,
};
use crate::{Prepared, Result};

/// Rows per multi-row statement (at most 16 parameters a row, under PostgreSQL's 65,535).
const BATCH_ROWS: usize = 2_000;

/// The tables whose ids the plan hands out, in [`NextIds`] order.
const PLANNED_TABLES: [&str; 5] = [
    "customers",
    "identities",
    "conversations",
    "messages",
    "events",
];

fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort_unstable();
    v.dedup();
    v
}

/// Reads what `batch` touches (see [`Snapshot`]). Call under the write lock.
pub(super) async fn load_snapshot(tx: &mut Tx, batch: &[Prepared]) -> Result<Snapshot> {
    let mut s = Snapshot::default();
    if batch.is_empty() {
        s.next = next_ids(tx).await?;
        return Ok(s);
    }
    let ids: Vec<i64> = batch.iter().map(|p| p.entry.id).collect();
    s.done = sqlx::query_scalar(
        "SELECT id FROM journal WHERE id = ANY($1) AND processed_at IS NOT NULL",
    )
    .bind(&ids)
    .fetch_all(&mut **tx)
    .await?
    .into_iter()
    .collect::<HashSet<i64>>();

    let channel_ids = sorted(batch.iter().map(|p| p.entry.channel_id.0).collect());
    let rows: Vec<(i64, i64, String)> =
        sqlx::query_as("SELECT id, brand_id, kind FROM channels WHERE id = ANY($1)")
            .bind(&channel_ids)
            .fetch_all(&mut **tx)
            .await?;
    for (id, brand, platform) in rows {
        s.channels.insert(id, ChannelInfo { brand, platform });
    }

    // Messages the batch names: its own (stored already?) and those it answers.
    let named: Vec<&str> = sorted(
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
    let rows: Vec<(i64, String, i64, i64, i64, Option<String>)> = sqlx::query_as(
        "SELECT m.channel_id, m.external_id, m.id, m.conversation_id, c.customer_id, \
         CASE WHEN $3 THEN m.text END FROM messages m \
         JOIN conversations c ON c.id = m.conversation_id \
         WHERE m.channel_id = ANY($1) AND m.external_id = ANY($2)",
    )
    .bind(&channel_ids)
    .bind(&named)
    .bind(edits)
    .fetch_all(&mut **tx)
    .await?;
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

    // The authors' identities, by platform (the channel kind) and platform id.
    let authored = |p: &&Prepared| {
        matches!(
            p.entry.inbound.kind,
            InboundKind::Message | InboundKind::Echo
        )
    };
    let platforms: Vec<&str> = sorted(
        batch
            .iter()
            .filter(authored)
            .filter_map(|p| s.channels.get(&p.entry.channel_id.0))
            .map(|c| c.platform.as_str())
            .collect(),
    );
    let authors: Vec<&str> = sorted(
        batch
            .iter()
            .filter(authored)
            .map(|p| p.entry.inbound.author.platform_id.as_str())
            .collect(),
    );
    #[allow(clippy::type_complexity)]
    let rows: Vec<(
        String,
        String,
        i64,
        i64,
        Option<String>,
        Option<String>,
        String,
    )> = sqlx::query_as(
        "SELECT i.platform, i.external_id, i.id, i.customer_id, i.handle, i.name, \
             cu.display_name FROM identities i JOIN customers cu ON cu.id = i.customer_id \
             WHERE i.platform = ANY($1) AND i.external_id = ANY($2)",
    )
    .bind(&platforms)
    .bind(&authors)
    .fetch_all(&mut **tx)
    .await?;
    for (platform, ext, id, customer, handle, name, display) in rows {
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
    )> = sqlx::query_as(
        "SELECT id, channel_id, customer_id, thread_key, status, priority, waiting_since, \
         reply_due, first_line, last_message_at FROM conversations \
         WHERE customer_id = ANY($1) AND channel_id = ANY($2)",
    )
    .bind(&customers)
    .bind(&channel_ids)
    .fetch_all(&mut **tx)
    .await?;
    for (id, channel, customer, thread_key, status, priority, waiting, due, line, last) in rows {
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

    // Our replies that echoes name by key.
    let keys: Vec<&str> = sorted(
        batch
            .iter()
            .filter(|p| p.entry.inbound.kind == InboundKind::Echo)
            .filter_map(|p| p.entry.inbound.outbox_key.as_deref())
            .collect(),
    );
    if !keys.is_empty() {
        #[allow(clippy::type_complexity)]
        let rows: Vec<(i64, String, i64, i64, i64, i64, bool, Option<String>)> = sqlx::query_as(
            "SELECT o.channel_id, o.idempotency_key, o.id, o.message_id, m.conversation_id, \
             c.customer_id, o.state = 'sent', m.external_id FROM outbox o \
             JOIN messages m ON m.id = o.message_id \
             JOIN conversations c ON c.id = m.conversation_id \
             WHERE o.idempotency_key = ANY($1)",
        )
        .bind(&keys)
        .fetch_all(&mut **tx)
        .await?;
        for (channel, key, outbox, message, conversation, customer, sent, external_id) in rows {
            s.replies.insert(
                (channel, key),
                StoredReply {
                    outbox,
                    message,
                    conversation,
                    customer,
                    sent,
                    external_id,
                },
            );
        }
    }
    // The newest conversation of each thread a notice names.
    let threads: Vec<&str> = sorted(notice_threads(batch));
    if !threads.is_empty() {
        let rows: Vec<(i64, String, i64)> = sqlx::query_as(
            "SELECT channel_id, thread_key, MAX(id) FROM conversations \
             WHERE channel_id = ANY($1) AND thread_key = ANY($2) GROUP BY channel_id, thread_key",
        )
        .bind(&channel_ids)
        .bind(&threads)
        .fetch_all(&mut **tx)
        .await?;
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
    tx: &mut Tx,
    channel: i64,
    key: &str,
) -> Result<Option<StoredReply>> {
    let row: Option<(i64, i64, i64, i64, bool, Option<String>)> = sqlx::query_as(
        "SELECT o.id, o.message_id, m.conversation_id, c.customer_id, o.state = 'sent', \
         m.external_id FROM outbox o JOIN messages m ON m.id = o.message_id \
         JOIN conversations c ON c.id = m.conversation_id \
         WHERE o.idempotency_key = $1 AND o.channel_id = $2",
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

/// The next value of each planned table's identity sequence. Every transaction that
/// inserts into those tables holds the write lock, so nobody takes ids until
/// [`write_plan`] moves the sequences past the plan's.
pub(super) async fn next_ids(tx: &mut Tx) -> Result<NextIds> {
    let (customer, identity, conversation, message, event): (i64, i64, i64, i64, i64) =
        sqlx::query_as(
            "SELECT nextval(pg_get_serial_sequence('customers', 'id')), \
             nextval(pg_get_serial_sequence('identities', 'id')), \
             nextval(pg_get_serial_sequence('conversations', 'id')), \
             nextval(pg_get_serial_sequence('messages', 'id')), \
             nextval(pg_get_serial_sequence('events', 'id'))",
        )
        .fetch_one(&mut **tx)
        .await?;
    Ok(NextIds {
        customer,
        identity,
        conversation,
        message,
        event,
    })
}

/// Writes `plan`, in the order foreign keys need, with multi-row statements; then moves the
/// id sequences to the plan's next free ids.
pub(super) async fn write_plan(tx: &mut Tx, plan: &WritePlan, now: Millis) -> Result<()> {
    for chunk in plan.customers.chunks(BATCH_ROWS) {
        let mut q = sqlx::QueryBuilder::<Postgres>::new(
            "INSERT INTO customers (id, display_name, created_at) ",
        );
        q.push_values(chunk, |mut b, c| {
            b.push_bind(c.id)
                .push_bind(c.display_name.as_str())
                .push_bind(now);
        });
        q.build().execute(&mut **tx).await?;
    }
    for (id, name) in &plan.renamed_customers {
        sqlx::query("UPDATE customers SET display_name = $1 WHERE id = $2")
            .bind(name)
            .bind(id)
            .execute(&mut **tx)
            .await?;
    }
    for chunk in plan.identities.chunks(BATCH_ROWS) {
        let mut q = sqlx::QueryBuilder::<Postgres>::new(
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
            .execute(&mut **tx)
            .await
            .map_err(|e| conflict_or(e, "identity"))?;
    }
    for (id, handle, name) in &plan.identity_updates {
        sqlx::query("UPDATE identities SET handle = $1, name = $2 WHERE id = $3")
            .bind(handle)
            .bind(name)
            .bind(id)
            .execute(&mut **tx)
            .await?;
    }
    for chunk in plan.conversations.chunks(BATCH_ROWS) {
        let mut q = sqlx::QueryBuilder::<Postgres>::new(
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
        q.build().execute(&mut **tx).await?;
    }
    if !plan.conversation_updates.is_empty() {
        let u = &plan.conversation_updates;
        sqlx::query(
            "UPDATE conversations c SET status = v.status, priority = v.priority, \
             waiting_since = v.waiting_since, reply_due = v.reply_due, \
             first_line = v.first_line, last_message_at = v.last_message_at, updated_at = $8 \
             FROM UNNEST($1::bigint[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[], \
             $6::text[], $7::bigint[]) \
             AS v(id, status, priority, waiting_since, reply_due, first_line, last_message_at) \
             WHERE c.id = v.id",
        )
        .bind(u.iter().map(|(id, _)| *id).collect::<Vec<_>>())
        .bind(u.iter().map(|(_, s)| s.status.as_str()).collect::<Vec<_>>())
        .bind(u.iter().map(|(_, s)| s.priority).collect::<Vec<_>>())
        .bind(u.iter().map(|(_, s)| s.waiting_since).collect::<Vec<_>>())
        .bind(u.iter().map(|(_, s)| s.reply_due).collect::<Vec<_>>())
        .bind(
            u.iter()
                .map(|(_, s)| s.first_line.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(u.iter().map(|(_, s)| s.last_message_at).collect::<Vec<_>>())
        .bind(now)
        .execute(&mut **tx)
        .await?;
    }
    for chunk in plan.messages.chunks(BATCH_ROWS) {
        let mut q = sqlx::QueryBuilder::<Postgres>::new(
            "INSERT INTO messages (id, conversation_id, channel_id, direction, external_id, \
             author_identity, text, in_reply_to, created_at, received_at, delivery, analysis, \
             place_kind, place_url, removed, terms) ",
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
                .push_bind(m.removed)
                .push("array_to_tsvector(")
                .push_bind_unseparated(lexemes(&m.text))
                .push_unseparated("::text[])");
        });
        q.build()
            .execute(&mut **tx)
            .await
            .map_err(|e| conflict_or(e, "message"))?;
    }
    for change in &plan.message_changes {
        match change {
            MessageChange::Edited { id, text, analysis } => {
                sqlx::query(
                    "UPDATE messages SET text = $1, analysis = COALESCE($2, analysis), \
                     terms = array_to_tsvector($3::text[]) WHERE id = $4",
                )
                .bind(text)
                .bind(analysis)
                .bind(lexemes(text))
                .bind(id)
                .execute(&mut **tx)
                .await?;
            }
            MessageChange::Removed { id } => {
                sqlx::query("UPDATE messages SET removed = TRUE WHERE id = $1")
                    .bind(id)
                    .execute(&mut **tx)
                    .await?;
            }
            MessageChange::Delivered { id, external_id } => {
                sqlx::query(
                    "UPDATE messages SET delivery = 'sent', delivery_error = NULL, \
                     external_id = $1 WHERE id = $2",
                )
                .bind(external_id)
                .bind(id)
                .execute(&mut **tx)
                .await?;
            }
        }
    }
    if !plan.outbox_sent.is_empty() {
        sqlx::query(
            "UPDATE outbox SET state = 'sent', last_error = NULL, updated_at = $1 \
             WHERE id = ANY($2)",
        )
        .bind(now)
        .bind(&plan.outbox_sent)
        .execute(&mut **tx)
        .await?;
    }
    for chunk in plan.events.chunks(BATCH_ROWS) {
        let mut q = sqlx::QueryBuilder::<Postgres>::new(
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
        q.build().execute(&mut **tx).await?;
    }
    if !plan.processed.is_empty() {
        sqlx::query("UPDATE journal SET processed_at = $1 WHERE id = ANY($2)")
            .bind(now)
            .bind(&plan.processed)
            .execute(&mut **tx)
            .await?;
    }
    let n = plan.next;
    let mut q = sqlx::QueryBuilder::<Postgres>::new("SELECT ");
    let mut list = q.separated(", ");
    for (table, next) in
        PLANNED_TABLES
            .iter()
            .zip([n.customer, n.identity, n.conversation, n.message, n.event])
    {
        list.push(format!("setval(pg_get_serial_sequence('{table}', 'id'), "))
            .push_bind_unseparated(next)
            .push_unseparated(", false)");
    }
    q.build().execute(&mut **tx).await?;
    Ok(())
}
