//! SQLite's full-text search: the stems in an FTS5 table, queried with quoted terms.

use async_trait::async_trait;

use super::SqliteStore;
use crate::search::{hits, search_terms, stem_query};
use crate::shared::{Tx, limit_or_all};
use crate::{Result, Search, SearchHit};
use balie_core::BrandId;

/// Makes message `id`'s `text` searchable.
pub(super) async fn index(tx: &mut Tx<SqliteStore>, id: i64, text: &str) -> Result<()> {
    sqlx::query("INSERT INTO message_search (rowid, terms) VALUES ($1, $2)")
        .bind(id)
        .bind(search_terms(text))
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Makes message `id` searchable by its new `text` only.
pub(super) async fn reindex(tx: &mut Tx<SqliteStore>, id: i64, text: &str) -> Result<()> {
    sqlx::query("DELETE FROM message_search WHERE rowid = $1")
        .bind(id)
        .execute(&mut **tx)
        .await?;
    index(tx, id, text).await
}

#[async_trait]
impl Search for SqliteStore {
    async fn search(&self, brand: BrandId, query: &str, limit: i64) -> Result<Vec<SearchHit>> {
        let Some(q) = stem_query(query) else {
            return Ok(Vec::new());
        };
        let rows: Vec<(i64, i64, String)> = sqlx::query_as(
            // Newest hits off the index (FTS5 walks its doclist backwards for
            // `ORDER BY rowid DESC`), each joined to its conversation to keep the brand's.
            "SELECT m.id, m.conversation_id, m.text FROM message_search s \
             JOIN messages m ON m.id = s.rowid JOIN conversations c ON c.id = m.conversation_id \
             WHERE message_search MATCH $1 AND c.brand_id = $3 ORDER BY s.rowid DESC LIMIT $2",
        )
        .bind(q)
        .bind(limit_or_all(limit))
        .bind(brand.0)
        .fetch_all(&self.reader)
        .await?;
        Ok(hits(rows))
    }
}
