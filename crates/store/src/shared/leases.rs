//! Leases ([`crate::Leases`]): one claim primitive for work that must run in one process at
//! a time, the same SQL on both backends. A claim is one atomic upsert, so two processes
//! claiming at once cannot both win.

/// Implements [`crate::Leases`] for `$store`.
macro_rules! impl_leases {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl $crate::Leases for $store {
            async fn claim(
                &self,
                job: &str,
                owner: &str,
                ttl: balie_core::Millis,
                now: balie_core::Millis,
            ) -> $crate::Result<bool> {
                use $crate::shared::Dialect as _;
                let won: Option<String> = sqlx::query_scalar(
                    "INSERT INTO leases (job, owner, expires_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (job) DO UPDATE SET owner = excluded.owner, \
                     expires_at = excluded.expires_at \
                     WHERE leases.owner = excluded.owner OR leases.expires_at <= $4 \
                     RETURNING owner",
                )
                .bind(job)
                .bind(owner)
                .bind(now.saturating_add(ttl))
                .bind(now)
                .fetch_optional(self.writer())
                .await?;
                Ok(won.is_some())
            }

            async fn release(&self, job: &str, owner: &str) -> $crate::Result<()> {
                use $crate::shared::Dialect as _;
                sqlx::query("DELETE FROM leases WHERE job = $1 AND owner = $2")
                    .bind(job)
                    .bind(owner)
                    .execute(self.writer())
                    .await?;
                Ok(())
            }
        }
    };
}

pub(crate) use impl_leases;
