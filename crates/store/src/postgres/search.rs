//! PostgreSQL's full-text search: the stems in a GIN-indexed `tsvector`, queried with
//! quoted `tsquery` lexemes.

use async_trait::async_trait;

use super::{PgStore, Tx, lexemes};
use crate::search::{hits, stem_tsquery};
use crate::shared::limit_or_all;
use crate::{Result, Search, SearchHit};

/// Makes message `id`'s `text` searchable.
pub(super) async fn index(tx: &mut Tx, id: i64, text: &str) -> Result<()> {
    sqlx::query("UPDATE messages SET terms = array_to_tsvector($1::text[]) WHERE id = $2")
        .bind(lexemes(text))
        .bind(id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

#[async_trait]
impl Search for PgStore {
    async fn search(&self, query: &str, limit: i64) -> Result<Vec<SearchHit>> {
        let Some(q) = stem_tsquery(query) else {
            return Ok(Vec::new());
        };
        // `::tsquery`, not `to_tsquery`: the lexemes are already stemmed and quoted, and
        // must meet the stored ones exactly, untouched by PostgreSQL's parser.
        let rows: Vec<(i64, i64, String)> = sqlx::query_as(
            "SELECT id, conversation_id, text FROM messages WHERE terms @@ $1::tsquery \
             ORDER BY id DESC LIMIT $2",
        )
        .bind(q)
        .bind(limit_or_all(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(hits(rows))
    }
}
