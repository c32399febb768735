//! The journal and the pipeline's write step ([`crate::Journal`]): a snapshot is loaded, the
//! plan made (`crate::plan`) and written in one transaction, whatever the backend.

/// Implements [`crate::Journal`] for `$store`.
macro_rules! impl_journal {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl $crate::Journal for $store {
            async fn append_journal(
                &self,
                entries: &[$crate::NewJournalEntry],
            ) -> $crate::Result<Vec<$crate::Appended>> {
                $crate::shared::Dialect::append(self, entries).await
            }

            async fn pending_journal(
                &self,
                limit: i64,
            ) -> $crate::Result<Vec<$crate::JournalEntry>> {
                $crate::shared::Dialect::pending(self, limit).await
            }

            async fn apply_journal(
                &self,
                batch: &[$crate::Prepared],
                sla: &balie_core::SlaPolicy,
            ) -> $crate::Result<Vec<$crate::Applied>> {
                use $crate::shared::Dialect as _;
                let now = $crate::common::now_ms();
                let batch = Self::storable_batch(batch);
                // PostgreSQL: under the write lock, so another worker applying the same
                // entries waits, then sees them processed and skips them.
                let mut tx = self.begin_write().await?;
                let snapshot = Self::load_snapshot(&mut tx, &batch).await?;
                let plan = $crate::plan::plan(snapshot, &batch, sla)
                    .map_err(|$crate::plan::Missing(what)| $crate::StoreError::NotFound(what))?;
                Self::write_plan(&mut tx, &plan, now).await?;
                tx.commit().await?;
                Ok(plan.applied)
            }

            async fn backlogs(&self) -> $crate::Result<$crate::Backlogs> {
                use $crate::shared::Dialect as _;
                let (journal, outbox): (i64, i64) = sqlx::query_as(
                    "SELECT (SELECT COUNT(*) FROM journal WHERE processed_at IS NULL), \
                     (SELECT COUNT(*) FROM outbox WHERE state IN ('pending', 'sending'))",
                )
                .fetch_one(self.reader())
                .await?;
                Ok($crate::Backlogs { journal, outbox })
            }
        }
    };
}

pub(crate) use impl_journal;
