//! PostgreSQL's part of the pipeline's write step: loading the [`Snapshot`] a batch needs
//! (array parameters, `= ANY`), handing out ids from the tables' sequences, and the
//! statements PostgreSQL writes its own way. What the rows say is decided in
//! [`crate::plan`]; the rest of the plan is written in `crate::shared::pipeline`.

use balie_core::Millis;
use sqlx::Postgres;

use super::{Tx, lexemes};
use crate::plan::{ConversationState, NewMessage, NextIds, Snapshot};
use crate::shared::pipeline::{
    BatchKeys, ChannelRow, ConversationRow, IdentityRow, KeyedReplyRow, MessageRow, ThreadRow,
    message_cols, push_message,
};
use crate::{Prepared, Result};

/// The tables whose ids the plan hands out, in [`NextIds`] order.
const PLANNED_TABLES: [&str; 5] = [
    "customers",
    "identities",
    "conversations",
    "messages",
    "events",
];

/// Reads what `batch` touches (see [`Snapshot`]). Call under the write lock.
pub(super) async fn load_snapshot(tx: &mut Tx, batch: &[Prepared]) -> Result<Snapshot> {
    let mut s = Snapshot {
        next: next_ids(tx).await?,
        ..Snapshot::default()
    };
    let keys = BatchKeys::of(batch);
    if keys.journal_ids.is_empty() {
        return Ok(s);
    }
    s.done = sqlx::query_scalar(
        "SELECT id FROM journal WHERE id = ANY($1) AND processed_at IS NOT NULL",
    )
    .bind(&keys.journal_ids)
    .fetch_all(&mut **tx)
    .await?
    .into_iter()
    .collect();
    let rows: Vec<ChannelRow> =
        sqlx::query_as("SELECT id, brand_id, kind FROM channels WHERE id = ANY($1)")
            .bind(&keys.channels)
            .fetch_all(&mut **tx)
            .await?;
    s.add_channels(rows);
    let rows: Vec<MessageRow> = sqlx::query_as(
        "SELECT m.channel_id, m.external_id, m.id, m.conversation_id, c.customer_id, \
         CASE WHEN $3 THEN m.text END FROM messages m \
         JOIN conversations c ON c.id = m.conversation_id \
         WHERE m.channel_id = ANY($1) AND m.external_id = ANY($2)",
    )
    .bind(&keys.channels)
    .bind(&keys.messages)
    .bind(keys.edits)
    .fetch_all(&mut **tx)
    .await?;
    s.add_messages(rows);
    let rows: Vec<IdentityRow> = sqlx::query_as(
        "SELECT i.platform, i.external_id, i.id, i.customer_id, i.handle, i.name, \
         cu.display_name FROM identities i JOIN customers cu ON cu.id = i.customer_id \
         WHERE i.platform = ANY($1) AND i.external_id = ANY($2)",
    )
    .bind(BatchKeys::platforms(batch, &s))
    .bind(&keys.authors)
    .fetch_all(&mut **tx)
    .await?;
    s.add_identities(rows);
    let rows: Vec<ConversationRow> = sqlx::query_as(
        "SELECT id, channel_id, customer_id, thread_key, status, priority, waiting_since, \
         reply_due, first_line, last_message_at FROM conversations \
         WHERE customer_id = ANY($1) AND channel_id = ANY($2)",
    )
    .bind(BatchKeys::customers(&s))
    .bind(&keys.channels)
    .fetch_all(&mut **tx)
    .await?;
    s.add_conversations(rows)?;
    if !keys.reply_keys.is_empty() {
        let rows: Vec<KeyedReplyRow> = sqlx::query_as(
            "SELECT o.channel_id, o.idempotency_key, o.id, o.message_id, m.conversation_id, \
             c.customer_id, o.state, m.external_id FROM outbox o \
             JOIN messages m ON m.id = o.message_id \
             JOIN conversations c ON c.id = m.conversation_id \
             WHERE o.idempotency_key = ANY($1)",
        )
        .bind(&keys.reply_keys)
        .fetch_all(&mut **tx)
        .await?;
        s.add_replies(rows);
    }
    // The newest conversation of each thread a notice names.
    if !keys.notice_threads.is_empty() {
        let rows: Vec<ThreadRow> = sqlx::query_as(
            "SELECT channel_id, thread_key, MAX(id) FROM conversations \
             WHERE channel_id = ANY($1) AND thread_key = ANY($2) GROUP BY channel_id, thread_key",
        )
        .bind(&keys.channels)
        .bind(&keys.notice_threads)
        .fetch_all(&mut **tx)
        .await?;
        s.add_threads(rows);
    }
    Ok(s)
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

/// Moves the id sequences past the ids a plan used, so the next `nextval` is `next`.
pub(super) async fn ids_taken(tx: &mut Tx, next: NextIds) -> Result<()> {
    let mut q = sqlx::QueryBuilder::<Postgres>::new("SELECT ");
    let mut list = q.separated(", ");
    for (table, next) in PLANNED_TABLES.iter().zip([
        next.customer,
        next.identity,
        next.conversation,
        next.message,
        next.event,
    ]) {
        list.push(format!("setval(pg_get_serial_sequence('{table}', 'id'), "))
            .push_bind_unseparated(next)
            .push_unseparated(", false)");
    }
    q.build().execute(&mut **tx).await?;
    Ok(())
}

/// New messages with their search terms, one statement.
pub(super) async fn insert_messages(tx: &mut Tx, messages: &[NewMessage]) -> Result<()> {
    let mut q = sqlx::QueryBuilder::<Postgres>::new(concat!(
        "INSERT INTO messages (",
        message_cols!(),
        ", terms) "
    ));
    q.push_values(messages, |mut b, m| {
        push_message!(b, m)
            .push("array_to_tsvector(")
            .push_bind_unseparated(lexemes(&m.text))
            .push_unseparated("::text[])");
    });
    q.build().execute(&mut **tx).await?;
    Ok(())
}

/// The final state of stored conversations, one statement (`UPDATE … FROM UNNEST(…)`).
pub(super) async fn update_conversations(
    tx: &mut Tx,
    updates: &[(i64, ConversationState)],
    now: Millis,
) -> Result<()> {
    let column = |f: fn(&(i64, ConversationState)) -> Option<i64>| -> Vec<Option<i64>> {
        updates.iter().map(f).collect()
    };
    sqlx::query(
        "UPDATE conversations c SET status = v.status, priority = v.priority, \
         waiting_since = v.waiting_since, reply_due = v.reply_due, \
         first_line = v.first_line, last_message_at = v.last_message_at, updated_at = $8 \
         FROM UNNEST($1::bigint[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[], \
         $6::text[], $7::bigint[]) \
         AS v(id, status, priority, waiting_since, reply_due, first_line, last_message_at) \
         WHERE c.id = v.id",
    )
    .bind(column(|(id, _)| Some(*id)))
    .bind(
        updates
            .iter()
            .map(|(_, s)| s.status.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(column(|(_, s)| Some(s.priority)))
    .bind(column(|(_, s)| s.waiting_since))
    .bind(column(|(_, s)| s.reply_due))
    .bind(
        updates
            .iter()
            .map(|(_, s)| s.first_line.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(column(|(_, s)| Some(s.last_message_at)))
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
