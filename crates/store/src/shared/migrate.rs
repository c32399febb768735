//! Applying migrations, the same way on both backends: each not yet recorded in
//! `schema_migrations` runs in a transaction of its own, together with its record.

/// Implements `apply_migrations` for `$store` (a `Dialect`).
macro_rules! impl_migrate {
    ($store:ty) => {
        impl $store {
            /// Applies `migrations` (version, SQL) not yet recorded, in order, on `conn`;
            /// `table` creates `schema_migrations` if it is missing.
            async fn apply_migrations(
                conn: &mut <<$store as $crate::shared::Dialect>::Db as sqlx::Database>::Connection,
                table: &'static str,
                migrations: &[(i64, &'static str)],
            ) -> $crate::Result<()> {
                use sqlx::Connection as _;
                sqlx::query(table).execute(&mut *conn).await?;
                for (version, sql) in migrations {
                    let mut tx = conn.begin().await?;
                    let done: Option<i64> = sqlx::query_scalar(
                        "SELECT version FROM schema_migrations WHERE version = $1",
                    )
                    .bind(version)
                    .fetch_optional(&mut *tx)
                    .await?;
                    if done.is_none() {
                        sqlx::raw_sql(sqlx::AssertSqlSafe(*sql))
                            .execute(&mut *tx)
                            .await?;
                        sqlx::query(
                            "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)",
                        )
                        .bind(version)
                        .bind($crate::common::migrated_at())
                        .execute(&mut *tx)
                        .await?;
                    }
                    tx.commit().await?;
                }
                Ok(())
            }
        }
    };
}

pub(crate) use impl_migrate;
