//! SQLite's part of the pipeline's write step: loading the [`Snapshot`] a batch needs with a
//! handful of statements (each result folded into one JSON value), handing out ids, and the
//! statements SQLite writes its own way. What the rows say is decided in [`crate::plan`];
//! the rest of the plan is written in `crate::shared::pipeline`.

use balie_core::Millis;
use sqlx::Sqlite;

use super::SqliteStore;
use crate::plan::{ConversationState, NewMessage, NextIds, Snapshot};
use crate::search::search_terms;
use crate::shared::Tx;
use crate::shared::pipeline::{BATCH_KEYS, BatchKeys, message_cols, push_message};
use crate::{Prepared, Result, StoreError};

/// Runs `q`, a `SELECT json_group_array(json_array(…)) …`, and decodes its rows. sqlx hands
/// every result row from SQLite's worker thread to the async side on its own (a thread hop
/// each); the rows folded into one JSON value cost one.
async fn fetch_json_rows<T: serde::de::DeserializeOwned>(
    tx: &mut Tx<SqliteStore>,
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

/// Runs `select … IN <keys>` (the keys in lists of [`BATCH_KEYS`]), then `rest`, folding the
/// rows of every list.
async fn fetch_by<'k, T, K>(
    tx: &mut Tx<SqliteStore>,
    select: &str,
    keys: &[K],
    rest: impl Fn(&mut sqlx::QueryBuilder<Sqlite>),
) -> Result<Vec<T>>
where
    T: serde::de::DeserializeOwned,
    K: Copy + sqlx::Encode<'k, Sqlite> + sqlx::Type<Sqlite> + 'k,
{
    let mut out = Vec::new();
    for chunk in keys.chunks(BATCH_KEYS) {
        let mut q = sqlx::QueryBuilder::<Sqlite>::new(select);
        push_in(&mut q, chunk);
        rest(&mut q);
        out.extend(fetch_json_rows(tx, q).await?);
    }
    Ok(out)
}

/// Reads what `batch` touches (see [`Snapshot`]).
pub(super) async fn load_snapshot(
    tx: &mut Tx<SqliteStore>,
    batch: &[Prepared],
) -> Result<Snapshot> {
    let mut s = Snapshot {
        next: next_ids(tx).await?,
        ..Snapshot::default()
    };
    let keys = BatchKeys::of(batch);
    let (Some(lo), Some(hi)) = (keys.journal_ids.first(), keys.journal_ids.last()) else {
        return Ok(s);
    };
    // Which entries an earlier run already applied: one query for the batch.
    s.done = sqlx::query_scalar(
        "SELECT id FROM journal WHERE id BETWEEN $1 AND $2 AND processed_at IS NOT NULL",
    )
    .bind(lo)
    .bind(hi)
    .fetch_all(&mut **tx)
    .await?
    .into_iter()
    .collect();
    let channels = &keys.channels;
    s.add_channels(
        fetch_by(
            tx,
            "SELECT json_group_array(json_array(id, brand_id, kind)) FROM channels WHERE id IN ",
            channels,
            |_| {},
        )
        .await?,
    );
    s.add_messages(
        fetch_by(
            tx,
            &format!(
                "SELECT json_group_array(json_array(m.channel_id, m.external_id, m.id, \
                 m.conversation_id, c.customer_id, {})) FROM messages m \
                 JOIN conversations c ON c.id = m.conversation_id WHERE m.external_id IN ",
                if keys.edits { "m.text" } else { "NULL" }
            ),
            &keys.messages,
            |q| {
                q.push(" AND m.channel_id IN ");
                push_in(q, channels);
            },
        )
        .await?,
    );
    let platforms = BatchKeys::platforms(batch, &s);
    let identities = fetch_by(
        tx,
        "SELECT json_group_array(json_array(i.platform, i.external_id, i.id, i.customer_id, \
         i.handle, i.name, cu.display_name)) FROM identities i \
         JOIN customers cu ON cu.id = i.customer_id WHERE i.external_id IN ",
        &keys.authors,
        |q| {
            q.push(" AND i.platform IN ");
            push_in(q, &platforms);
        },
    )
    .await?;
    s.add_identities(identities);
    let conversations = fetch_by(
        tx,
        "SELECT json_group_array(json_array(id, channel_id, customer_id, thread_key, status, \
         priority, waiting_since, reply_due, first_line, last_message_at)) \
         FROM conversations WHERE customer_id IN ",
        &BatchKeys::customers(&s),
        |q| {
            q.push(" AND channel_id IN ");
            push_in(q, channels);
        },
    )
    .await?;
    s.add_conversations(conversations)?;
    s.add_replies(
        fetch_by(
            tx,
            "SELECT json_group_array(json_array(o.channel_id, o.idempotency_key, o.id, \
             o.message_id, m.conversation_id, c.customer_id, o.state, m.external_id)) \
             FROM outbox o JOIN messages m ON m.id = o.message_id \
             JOIN conversations c ON c.id = m.conversation_id WHERE o.idempotency_key IN ",
            &keys.reply_keys,
            |_| {},
        )
        .await?,
    );
    // The newest conversation of each thread a notice names.
    s.add_threads(
        fetch_by(
            tx,
            "SELECT json_group_array(json_array(channel_id, thread_key, id)) FROM \
             (SELECT channel_id, thread_key, MAX(id) AS id FROM conversations \
             WHERE thread_key IN ",
            &keys.notice_threads,
            |q| {
                q.push(" AND channel_id IN ");
                push_in(q, channels);
                q.push(" GROUP BY channel_id, thread_key)");
            },
        )
        .await?,
    );
    Ok(s)
}

/// Ids are handed out by the plan (the single writer connection means nobody else takes
/// ids meanwhile), so rows can be written many at a time and refer to each other.
pub(super) async fn next_ids(tx: &mut Tx<SqliteStore>) -> Result<NextIds> {
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

/// New messages and their FTS5 rows, one statement each.
pub(super) async fn insert_messages(
    tx: &mut Tx<SqliteStore>,
    messages: &[NewMessage],
) -> Result<()> {
    let mut q =
        sqlx::QueryBuilder::<Sqlite>::new(concat!("INSERT INTO messages (", message_cols!(), ") "));
    q.push_values(messages, |mut b, m| {
        push_message!(b, m);
    });
    q.build().persistent(false).execute(&mut **tx).await?;
    let mut q = sqlx::QueryBuilder::<Sqlite>::new("INSERT INTO message_search (rowid, terms) ");
    q.push_values(messages, |mut b, m| {
        b.push_bind(m.id).push_bind(search_terms(&m.text));
    });
    q.build().persistent(false).execute(&mut **tx).await?;
    Ok(())
}

/// The final state of stored conversations, one statement (`UPDATE … FROM (VALUES …)`).
pub(super) async fn update_conversations(
    tx: &mut Tx<SqliteStore>,
    updates: &[(i64, ConversationState)],
    now: Millis,
) -> Result<()> {
    let mut q = sqlx::QueryBuilder::<Sqlite>::new(
        "UPDATE conversations SET status = v.column2, priority = v.column3, \
         waiting_since = v.column4, reply_due = v.column5, first_line = v.column6, \
         last_message_at = v.column7, updated_at = ",
    );
    q.push_bind(now).push(" FROM (");
    q.push_values(updates, |mut b, (id, s)| {
        b.push_bind(*id)
            .push_bind(s.status.as_str())
            .push_bind(s.priority)
            .push_bind(s.waiting_since)
            .push_bind(s.reply_due)
            .push_bind(s.first_line.as_str())
            .push_bind(s.last_message_at);
    });
    q.push(") AS v WHERE conversations.id = v.column1");
    q.build().persistent(false).execute(&mut **tx).await?;
    Ok(())
}
