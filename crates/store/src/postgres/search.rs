//! PostgreSQL's full-text search: the stems in a GIN-indexed `tsvector`, queried with
//! quoted `tsquery` lexemes.

use async_trait::async_trait;

use super::{PgStore, Tx, lexemes};
use crate::search::{hits, stem_tsquery};
use crate::shared::limit_or_all;
use crate::{Result, Search, SearchHit};
use balie_core::BrandId;

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
    async fn search(&self, brand: BrandId, query: &str, limit: i64) -> Result<Vec<SearchHit>> {
        let Some(q) = stem_tsquery(query) else {
            return Ok(Vec::new());
        };
        // `::tsquery`, not `to_tsquery`: the lexemes are already stemmed and quoted, and
        // must meet the stored ones exactly, untouched by PostgreSQL's parser.
        let rows: Vec<(i64, i64, String)> = sqlx::query_as(
            "SELECT m.id, m.conversation_id, m.text FROM messages m \
             JOIN conversations c ON c.id = m.conversation_id \
             WHERE m.terms @@ $1::tsquery AND c.brand_id = $3 ORDER BY m.id DESC LIMIT $2",
        )
        .bind(q)
        .bind(limit_or_all(limit))
        .bind(brand.0)
        .fetch_all(&self.pool)
        .await?;
        Ok(hits(rows))
    }
}
