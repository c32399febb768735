//! Users, their brand memberships, sessions and API tokens ([`crate::Directory`]), the same SQL on both backends.

/// Implements [`crate::Directory`] for `$store`.
macro_rules! impl_directory {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl $crate::Directory for $store {
            async fn create_user(
                &self,
                email: &str,
                name: &str,
                owner: bool,
                password_hash: &str,
                now: balie_core::Millis,
            ) -> $crate::Result<balie_core::User> {
                use $crate::shared::Dialect as _;
                // `role` is the column of the schema before memberships; roles now live in
                // `memberships`, per brand.
                let row = sqlx::query(
                    "INSERT INTO users (email, name, role, password_hash, created_at, owner) \
                     VALUES ($1, $2, 'agent', $3, $4, $5) \
                     ON CONFLICT (email) DO NOTHING RETURNING id, email, name, owner",
                )
                .bind(email)
                .bind(name)
                .bind(password_hash)
                .bind(now)
                .bind(owner)
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
                    "SELECT id, email, name, owner, password_hash FROM users WHERE email = $1",
                )
                .bind(email)
                .fetch_optional(self.reader())
                .await?;
                match row {
                    Some(r) => Ok(Some(($crate::rows::user(&r)?, r.text("password_hash")?))),
                    None => Ok(None),
                }
            }

            async fn set_membership(
                &self,
                user: balie_core::UserId,
                brand: balie_core::BrandId,
                role: balie_core::Role,
                now: balie_core::Millis,
            ) -> $crate::Result<()> {
                use $crate::shared::Dialect as _;
                sqlx::query(
                    "INSERT INTO memberships (user_id, brand_id, role, created_at) \
                     VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (user_id, brand_id) DO UPDATE SET role = excluded.role",
                )
                .bind(user.0)
                .bind(brand.0)
                .bind(role.as_str())
                .bind(now)
                .execute(self.writer())
                .await?;
                Ok(())
            }

            async fn memberships(
                &self,
                user: balie_core::UserId,
            ) -> $crate::Result<Vec<balie_core::Membership>> {
                use $crate::shared::Dialect as _;
                let rows = sqlx::query(
                    "SELECT b.id, b.slug, b.name, m.role FROM memberships m \
                     JOIN brands b ON b.id = m.brand_id WHERE m.user_id = $1 ORDER BY b.id",
                )
                .bind(user.0)
                .fetch_all(self.reader())
                .await?;
                rows.iter().map($crate::rows::membership).collect()
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
                    "SELECT u.id, u.email, u.name, u.owner FROM sessions s \
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
                brand: balie_core::BrandId,
                now: balie_core::Millis,
            ) -> $crate::Result<()> {
                use $crate::shared::Dialect as _;
                sqlx::query(
                    "INSERT INTO api_tokens (name, token_hash, created_at, brand_id) \
                     VALUES ($1, $2, $3, $4)",
                )
                .bind(name)
                .bind(token_hash)
                .bind(now)
                .bind(brand.0)
                .execute(self.writer())
                .await?;
                Ok(())
            }

            async fn api_token_brand(
                &self,
                token_hash: &str,
            ) -> $crate::Result<Option<balie_core::BrandId>> {
                use $crate::shared::Dialect as _;
                // A token made before brands existed, on an installation that had none,
                // acts for the first brand.
                let found: Option<Option<i64>> = sqlx::query_scalar(
                    "SELECT COALESCE(brand_id, (SELECT MIN(id) FROM brands)) FROM api_tokens \
                     WHERE token_hash = $1 AND revoked_at IS NULL",
                )
                .bind(token_hash)
                .fetch_optional(self.reader())
                .await?;
                Ok(found.flatten().map(balie_core::BrandId))
            }
        }
    };
}

pub(crate) use impl_directory;
