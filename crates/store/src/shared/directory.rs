//! Users, sessions and API tokens ([`crate::Directory`]), the same SQL on both backends.

/// Implements [`crate::Directory`] for `$store`.
macro_rules! impl_directory {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl $crate::Directory for $store {
            async fn create_user(
                &self,
                email: &str,
                name: &str,
                role: balie_core::Role,
                password_hash: &str,
                now: balie_core::Millis,
            ) -> $crate::Result<balie_core::User> {
                use $crate::shared::Dialect as _;
                let row = sqlx::query(
                    "INSERT INTO users (email, name, role, password_hash, created_at) \
                     VALUES ($1, $2, $3, $4, $5) \
                     ON CONFLICT (email) DO NOTHING RETURNING id, email, name, role",
                )
                .bind(email)
                .bind(name)
                .bind(role.as_str())
                .bind(password_hash)
                .bind(now)
                .fetch_optional(self.writer())
                .await?;
                match row {
                    Some(r) => $crate::rows::user(&r),
                    None => Err($crate::StoreError::Conflict("user")),
                }
            }

            async fn user_credentials(
                &self,
                email: &str,
            ) -> $crate::Result<Option<(balie_core::User, String)>> {
                use $crate::rows::Columns as _;
                use $crate::shared::Dialect as _;
                let row = sqlx::query(
                    "SELECT id, email, name, role, password_hash FROM users WHERE email = $1",
                )
                .bind(email)
                .fetch_optional(self.reader())
                .await?;
                match row {
                    Some(r) => Ok(Some(($crate::rows::user(&r)?, r.text("password_hash")?))),
                    None => Ok(None),
                }
            }

            async fn create_session(
                &self,
                user: balie_core::UserId,
                token_hash: &str,
                expires_at: balie_core::Millis,
                now: balie_core::Millis,
            ) -> $crate::Result<()> {
                use $crate::shared::Dialect as _;
                sqlx::query(
                    "INSERT INTO sessions (token_hash, user_id, created_at, expires_at) \
                     VALUES ($1, $2, $3, $4)",
                )
                .bind(token_hash)
                .bind(user.0)
                .bind(now)
                .bind(expires_at)
                .execute(self.writer())
                .await?;
                Ok(())
            }

            async fn session_user(
                &self,
                token_hash: &str,
                now: balie_core::Millis,
            ) -> $crate::Result<Option<balie_core::User>> {
                use $crate::shared::Dialect as _;
                let row = sqlx::query(
                    "SELECT u.id, u.email, u.name, u.role FROM sessions s \
                     JOIN users u ON u.id = s.user_id WHERE s.token_hash = $1 AND s.expires_at > $2",
                )
                .bind(token_hash)
                .bind(now)
                .fetch_optional(self.reader())
                .await?;
                row.as_ref().map($crate::rows::user).transpose()
            }

            async fn delete_session(&self, token_hash: &str) -> $crate::Result<()> {
                use $crate::shared::Dialect as _;
                sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
                    .bind(token_hash)
                    .execute(self.writer())
                    .await?;
                Ok(())
            }

            async fn create_api_token(
                &self,
                name: &str,
                token_hash: &str,
                now: balie_core::Millis,
            ) -> $crate::Result<()> {
                use $crate::shared::Dialect as _;
                sqlx::query(
                    "INSERT INTO api_tokens (name, token_hash, created_at) VALUES ($1, $2, $3)",
                )
                .bind(name)
                .bind(token_hash)
                .bind(now)
                .execute(self.writer())
                .await?;
                Ok(())
            }

            async fn api_token_valid(&self, token_hash: &str) -> $crate::Result<bool> {
                use $crate::shared::Dialect as _;
                let found: Option<i64> = sqlx::query_scalar(
                    "SELECT id FROM api_tokens WHERE token_hash = $1 AND revoked_at IS NULL",
                )
                .bind(token_hash)
                .fetch_optional(self.reader())
                .await?;
                Ok(found.is_some())
            }
        }
    };
}

pub(crate) use impl_directory;
