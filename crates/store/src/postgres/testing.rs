//! Bench and test helpers for PostgreSQL (feature `testing`): the bulk load, creating and
//! dropping databases, and statement-level access.

use async_trait::async_trait;
use balie_core::ChannelId;
use sqlx::postgres::{PgConnection, PgPool};
use sqlx::{Connection, Postgres};

use super::{PgStore, Tx, lexemes};
use crate::common::{conflict_or, display_name, first_line, now_ms};
use crate::{BulkConversation, BulkLoad, BulkMessage, Result, StoreError};

impl PgStore {
    /// Creates the database `name` on the server `admin_url` connects to and returns the new
    /// database's URL (set-up scripts, tests). `name` is ASCII letters, digits and `_`.
    pub async fn create_database(admin_url: &str, name: &str) -> Result<String> {
        admin_statement(
            admin_url,
            &format!("CREATE DATABASE \"{}\"", plain_name(name)?),
        )
        .await?;
        Ok(url_with_database(admin_url, name))
    }

    /// Drops the database `name` if it exists, ending its open connections.
    pub async fn drop_database(admin_url: &str, name: &str) -> Result<()> {
        admin_statement(
            admin_url,
            &format!(
                "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                plain_name(name)?
            ),
        )
        .await
    }

    /// Statement-level access (benchmarks, administration).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

/// A database name safe to put in SQL as is.
fn plain_name(name: &str) -> Result<&str> {
    let plain = !name.is_empty()
        && name.len() <= 63
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if plain {
        Ok(name)
    } else {
        Err(StoreError::Database(sqlx::Error::Configuration(
            format!("database name {name:?}: use ASCII letters, digits and _").into(),
        )))
    }
}

/// Runs one statement (outside a transaction) on a connection of its own.
async fn admin_statement(admin_url: &str, sql: &str) -> Result<()> {
    let mut conn = PgConnection::connect(admin_url).await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(&mut conn)
        .await?;
    conn.close().await?;
    Ok(())
}

/// `url` with its database replaced by `database`.
fn url_with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let base = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{base}/{database}?{query}"),
        None => format!("{base}/{database}"),
    }
}

/// `n` fresh ids from `table`'s identity sequence, ascending.
async fn reserve_ids(tx: &mut Tx, table: &str, n: usize) -> Result<Vec<i64>> {
    let n = i64::try_from(n).unwrap_or(i64::MAX);
    let mut ids: Vec<i64> = sqlx::query_scalar(
        "SELECT nextval(pg_get_serial_sequence($1, 'id')) FROM generate_series(1, $2)",
    )
    .bind(table)
    .bind(n)
    .fetch_all(&mut **tx)
    .await?;
    ids.sort_unstable();
    Ok(ids)
}

#[async_trait]
impl BulkLoad for PgStore {
    async fn bulk_load(
        &self,
        channel: ChannelId,
        conversations: &[BulkConversation],
    ) -> Result<u64> {
        /// Rows per multi-row INSERT (at most 12 parameters a row, under 65,535).
        const ROWS: usize = 2_000;
        let now = now_ms();
        let (brand, kind): (i64, String) =
            sqlx::query_as("SELECT brand_id, kind FROM channels WHERE id = $1")
                .bind(channel.0)
                .fetch_optional(&self.pool)
                .await?
                .ok_or(StoreError::NotFound("channel"))?;
        let conversations: Vec<&BulkConversation> = conversations
            .iter()
            .filter(|c| !c.messages.is_empty())
            .collect();
        let message_count: usize = conversations.iter().map(|c| c.messages.len()).sum();
        let mut tx = self.lock_writes().await?;
        // Ids come from the tables' own sequences, so other writers never collide with them.
        let customer_ids = reserve_ids(&mut tx, "customers", conversations.len()).await?;
        let conversation_ids = reserve_ids(&mut tx, "conversations", conversations.len()).await?;
        let message_ids = reserve_ids(&mut tx, "messages", message_count).await?;
        let mut written = 0u64;
        let mut next_message = message_ids.iter().copied();
        for (chunk_no, chunk) in conversations.chunks(ROWS).enumerate() {
            let base = chunk_no * ROWS;
            let customer = |i: usize| customer_ids.get(base + i).copied().unwrap_or_default();
            let conversation =
                |i: usize| conversation_ids.get(base + i).copied().unwrap_or_default();
            let mut q = sqlx::QueryBuilder::<Postgres>::new(
                "INSERT INTO customers (id, display_name, created_at) ",
            );
            q.push_values(chunk.iter().enumerate(), |mut b, (i, c)| {
                b.push_bind(customer(i))
                    .push_bind(display_name(
                        &c.author.platform_id,
                        c.author.handle.as_ref(),
                        c.author.name.as_ref(),
                    ))
                    .push_bind(now);
            });
            q.build().execute(&mut *tx).await?;
            let mut q = sqlx::QueryBuilder::<Postgres>::new(
                "INSERT INTO identities (customer_id, platform, external_id, handle, name) ",
            );
            q.push_values(chunk.iter().enumerate(), |mut b, (i, c)| {
                b.push_bind(customer(i))
                    .push_bind(kind.as_str())
                    .push_bind(c.author.platform_id.as_str())
                    .push_bind(c.author.handle.as_deref())
                    .push_bind(c.author.name.as_deref());
            });
            q.build()
                .execute(&mut *tx)
                .await
                .map_err(|e| conflict_or(e, "identity"))?;
            let mut q = sqlx::QueryBuilder::<Postgres>::new(
                "INSERT INTO conversations (id, brand_id, channel_id, customer_id, status, \
                 priority, waiting_since, reply_due, first_line, last_message_at, created_at, \
                 updated_at) ",
            );
            q.push_values(chunk.iter().enumerate(), |mut b, (i, c)| {
                let first = c.messages.first().map_or(0, |m| m.created_at);
                let last = c.messages.last().map_or(first, |m| m.created_at);
                let line = c
                    .messages
                    .last()
                    .map(|m| first_line(&m.text))
                    .unwrap_or_default();
                b.push_bind(conversation(i))
                    .push_bind(brand)
                    .push_bind(channel.0)
                    .push_bind(customer(i))
                    .push_bind(c.status.as_str())
                    .push_bind(c.priority.rank())
                    .push_bind(c.waiting_since)
                    .push_bind(c.reply_due)
                    .push_bind(line)
                    .push_bind(last)
                    .push_bind(first)
                    .push_bind(now);
            });
            q.build().execute(&mut *tx).await?;
            let rows: Vec<(i64, i64, &BulkMessage)> = chunk
                .iter()
                .enumerate()
                .flat_map(|(i, c)| c.messages.iter().map(move |m| (conversation(i), m)))
                .map(|(conv, m)| (next_message.next().unwrap_or_default(), conv, m))
                .collect();
            for part in rows.chunks(ROWS) {
                let mut q = sqlx::QueryBuilder::<Postgres>::new(
                    "INSERT INTO messages (id, conversation_id, channel_id, direction, \
                     external_id, text, created_at, received_at, delivery, terms) ",
                );
                q.push_values(part, |mut b, (msg, conv, m)| {
                    b.push_bind(*msg)
                        .push_bind(*conv)
                        .push_bind(channel.0)
                        .push_bind("in")
                        .push_bind(m.external_id.as_str())
                        .push_bind(m.text.as_str())
                        .push_bind(m.created_at)
                        .push_bind(m.created_at)
                        .push_bind("received")
                        .push("array_to_tsvector(")
                        .push_bind_unseparated(lexemes(&m.text))
                        .push_unseparated("::text[])");
                });
                q.build()
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| conflict_or(e, "message"))?;
                written += part.len() as u64;
            }
        }
        tx.commit().await?;
        // The new terms moved from the GIN index's pending list into the index proper, and
        // fresh statistics, before autovacuum gets to them: otherwise every search scans the
        // pending list, and a rare word walks all messages backwards.
        sqlx::raw_sql(
            "SELECT gin_clean_pending_list('messages_terms'::regclass); \
             ANALYZE customers, identities, conversations, messages",
        )
        .execute(&self.pool)
        .await?;
        Ok(written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_is_replaced_in_the_url() {
        assert_eq!(
            url_with_database("postgres://postgres@127.0.0.1:5432/postgres", "x"),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(
            url_with_database("postgres://u:p@h/db?sslmode=disable", "x"),
            "postgres://u:p@h/x?sslmode=disable"
        );
        assert_eq!(
            url_with_database("postgres://h:5432", "x"),
            "postgres://h:5432/x"
        );
    }

    #[test]
    fn only_plain_database_names_reach_sql() {
        assert!(plain_name("balie_test_1").is_ok());
        assert!(plain_name("x\"; DROP TABLE users; --").is_err());
        assert!(plain_name("").is_err());
    }
}
