//! Brands, channels and their sealed credentials ([`crate::Channels`]), the same SQL on both
//! backends.

/// Implements [`crate::Channels`] for `$store`.
macro_rules! impl_channels {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl $crate::Channels for $store {
            async fn ensure_brand(
                &self,
                name: &str,
                now: balie_core::Millis,
            ) -> $crate::Result<balie_core::BrandId> {
                use $crate::shared::Dialect as _;
                let found: Option<i64> = sqlx::query_scalar("SELECT id FROM brands WHERE name = $1")
                    .bind(name)
                    .fetch_optional(self.writer())
                    .await?;
                if let Some(id) = found {
                    return Ok(balie_core::BrandId(id));
                }
                let slug = balie_core::BrandSlug::from_name(name);
                match self.create_brand(&slug, name, now).await {
                    Ok(brand) => Ok(brand.id),
                    // Made meanwhile by another process, or the slug is another brand's.
                    Err($crate::StoreError::Conflict(_)) => {
                        let id: Option<i64> =
                            sqlx::query_scalar("SELECT id FROM brands WHERE name = $1")
                                .bind(name)
                                .fetch_optional(self.writer())
                                .await?;
                        id.map(balie_core::BrandId)
                            .ok_or($crate::StoreError::Conflict("brand slug"))
                    }
                    Err(e) => Err(e),
                }
            }

            async fn create_brand(
                &self,
                slug: &balie_core::BrandSlug,
                name: &str,
                now: balie_core::Millis,
            ) -> $crate::Result<balie_core::Brand> {
                use $crate::shared::Dialect as _;
                let row = sqlx::query(
                    "INSERT INTO brands (slug, name, created_at) VALUES ($1, $2, $3) \
                     ON CONFLICT DO NOTHING RETURNING id, slug, name",
                )
                .bind(slug.as_str())
                .bind(Self::storable(name).as_ref())
                .bind(now)
                .fetch_optional(self.writer())
                .await?;
                match row {
                    Some(r) => $crate::rows::brand(&r),
                    None => Err($crate::StoreError::Conflict("brand")),
                }
            }

            async fn brands(&self) -> $crate::Result<Vec<balie_core::Brand>> {
                use $crate::shared::Dialect as _;
                let rows = sqlx::query("SELECT id, slug, name FROM brands ORDER BY id")
                    .fetch_all(self.reader())
                    .await?;
                rows.iter().map($crate::rows::brand).collect()
            }

            async fn brand_by_slug(
                &self,
                slug: &str,
            ) -> $crate::Result<Option<balie_core::Brand>> {
                use $crate::shared::Dialect as _;
                let row = sqlx::query("SELECT id, slug, name FROM brands WHERE slug = $1")
                    .bind(slug)
                    .fetch_optional(self.reader())
                    .await?;
                row.as_ref().map($crate::rows::brand).transpose()
            }

            async fn create_channel(
                &self,
                brand: balie_core::BrandId,
                kind: balie_core::ChannelKind,
                name: &str,
                settings: &str,
                now: balie_core::Millis,
            ) -> $crate::Result<balie_core::Channel> {
                use $crate::shared::Dialect as _;
                let row = sqlx::query(concat!(
                    "INSERT INTO channels (brand_id, kind, name, settings, created_at) \
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (name) DO NOTHING RETURNING ",
                    $crate::rows::channel_cols!()
                ))
                .bind(brand.0)
                .bind(kind.as_str())
                .bind(name)
                .bind(settings)
                .bind(now)
                .fetch_optional(self.writer())
                .await?;
                match row {
                    Some(r) => $crate::rows::channel(&r),
                    None => Err($crate::StoreError::Conflict("channel")),
                }
            }

            async fn channel(
                &self,
                id: balie_core::ChannelId,
            ) -> $crate::Result<Option<balie_core::Channel>> {
                use $crate::shared::Dialect as _;
                let row = sqlx::query(concat!(
                    "SELECT ",
                    $crate::rows::channel_cols!(),
                    " FROM channels WHERE id = $1"
                ))
                .bind(id.0)
                .fetch_optional(self.reader())
                .await?;
                row.as_ref().map($crate::rows::channel).transpose()
            }

            async fn channel_by_name(
                &self,
                name: &str,
            ) -> $crate::Result<Option<balie_core::Channel>> {
                use $crate::shared::Dialect as _;
                let row = sqlx::query(concat!(
                    "SELECT ",
                    $crate::rows::channel_cols!(),
                    " FROM channels WHERE name = $1"
                ))
                .bind(name)
                .fetch_optional(self.reader())
                .await?;
                row.as_ref().map($crate::rows::channel).transpose()
            }

            async fn channels(&self) -> $crate::Result<Vec<balie_core::Channel>> {
                use $crate::shared::Dialect as _;
                let rows = sqlx::query(concat!(
                    "SELECT ",
                    $crate::rows::channel_cols!(),
                    " FROM channels ORDER BY id"
                ))
                .fetch_all(self.reader())
                .await?;
                rows.iter().map($crate::rows::channel).collect()
            }

            async fn update_channel_settings(
                &self,
                channel: balie_core::ChannelId,
                settings: &str,
            ) -> $crate::Result<()> {
                use $crate::shared::Dialect as _;
                let n = sqlx::query("UPDATE channels SET settings = $1 WHERE id = $2")
                    .bind(settings)
                    .bind(channel.0)
                    .execute(self.writer())
                    .await?
                    .rows_affected();
                if n == 0 {
                    return Err($crate::StoreError::NotFound("channel"));
                }
                Ok(())
            }

            async fn set_channel_secret(
                &self,
                channel: balie_core::ChannelId,
                name: &str,
                sealed: &$crate::SealedSecret,
                now: balie_core::Millis,
            ) -> $crate::Result<()> {
                use $crate::shared::Dialect as _;
                let exists: Option<i64> =
                    sqlx::query_scalar("SELECT id FROM channels WHERE id = $1")
                        .bind(channel.0)
                        .fetch_optional(self.writer())
                        .await?;
                if exists.is_none() {
                    return Err($crate::StoreError::NotFound("channel"));
                }
                sqlx::query(
                    "INSERT INTO channel_secrets (channel_id, name, nonce, ciphertext, updated_at) \
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (channel_id, name) DO UPDATE SET \
                     nonce = excluded.nonce, ciphertext = excluded.ciphertext, \
                     updated_at = excluded.updated_at",
                )
                .bind(channel.0)
                .bind(name)
                .bind(&sealed.nonce)
                .bind(&sealed.ciphertext)
                .bind(now)
                .execute(self.writer())
                .await?;
                Ok(())
            }

            async fn channel_secrets(
                &self,
                channel: balie_core::ChannelId,
            ) -> $crate::Result<Vec<(String, $crate::SealedSecret)>> {
                use $crate::shared::Dialect as _;
                let mut rows: Vec<(String, Vec<u8>, Vec<u8>)> = sqlx::query_as(
                    "SELECT name, nonce, ciphertext FROM channel_secrets WHERE channel_id = $1",
                )
                .bind(channel.0)
                .fetch_all(self.reader())
                .await?;
                // Byte order, whatever the database's collation.
                rows.sort_unstable_by(|a, b| a.0.cmp(&b.0));
                Ok(rows
                    .into_iter()
                    .map(|(name, nonce, ciphertext)| {
                        (name, $crate::SealedSecret { nonce, ciphertext })
                    })
                    .collect())
            }
        }
    };
}

pub(crate) use impl_channels;
