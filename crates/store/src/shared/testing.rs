//! The bulk load ([`crate::BulkLoad`], feature `testing`), the same SQL on both backends:
//! whole conversations written with multi-row statements, ids handed out as the pipeline's
//! plan hands them out.

/// Conversations per multi-row statement (12 parameters a row: under SQLite's 32,766).
pub(crate) const BULK_ROWS: usize = 2_000;

/// Implements [`crate::BulkLoad`] for `$store` (a `Dialect`).
macro_rules! impl_bulk_load {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl $crate::BulkLoad for $store {
            async fn bulk_load(
                &self,
                channel: balie_core::ChannelId,
                conversations: &[$crate::BulkConversation],
                now: balie_core::Millis,
            ) -> $crate::Result<u64> {
                use $crate::common::{conflict_or, display_name, first_line};
                use $crate::shared::Dialect as _;
                use $crate::shared::pipeline::BATCH_ROWS;
                use $crate::shared::testing::BULK_ROWS;
                type Db = <$store as $crate::shared::Dialect>::Db;
                let (brand, kind): (i64, String) =
                    sqlx::query_as("SELECT brand_id, kind FROM channels WHERE id = $1")
                        .bind(channel.0)
                        .fetch_optional(self.writer())
                        .await?
                        .ok_or($crate::StoreError::NotFound("channel"))?;
                let conversations: Vec<&$crate::BulkConversation> = conversations
                    .iter()
                    .filter(|c| !c.messages.is_empty())
                    .collect();
                let mut tx = self.begin_write().await?;
                let mut next = Self::next_ids(&mut tx).await?;
                let mut written = 0u64;
                for chunk in conversations.chunks(BULK_ROWS) {
                    let at = |first: i64, i: usize| first + i64::try_from(i).unwrap_or(i64::MAX);
                    let mut q = sqlx::QueryBuilder::<Db>::new(
                        "INSERT INTO customers (id, brand_id, display_name, created_at) ",
                    );
                    q.push_values(chunk.iter().enumerate(), |mut b, (i, c)| {
                        b.push_bind(at(next.customer, i))
                            .push_bind(brand)
                            .push_bind(display_name(
                                &c.author.platform_id,
                                c.author.handle.as_ref(),
                                c.author.name.as_ref(),
                            ))
                            .push_bind(now);
                    });
                    q.build().execute(&mut *tx).await?;
                    let mut q = sqlx::QueryBuilder::<Db>::new(
                        "INSERT INTO identities (id, customer_id, platform, external_id, handle, \
                         name) ",
                    );
                    q.push_values(chunk.iter().enumerate(), |mut b, (i, c)| {
                        b.push_bind(at(next.identity, i))
                            .push_bind(at(next.customer, i))
                            .push_bind(kind.as_str())
                            .push_bind(c.author.platform_id.as_str())
                            .push_bind(c.author.handle.as_deref())
                            .push_bind(c.author.name.as_deref());
                    });
                    q.build()
                        .execute(&mut *tx)
                        .await
                        .map_err(|e| conflict_or(e, "identity"))?;
                    let mut q = sqlx::QueryBuilder::<Db>::new(
                        "INSERT INTO conversations (id, brand_id, channel_id, customer_id, status, \
                         priority, waiting_since, reply_due, first_line, last_message_at, \
                         created_at, updated_at) ",
                    );
                    q.push_values(chunk.iter().enumerate(), |mut b, (i, c)| {
                        let first = c.messages.first().map_or(0, |m| m.created_at);
                        let last = c.messages.last().map_or(first, |m| m.created_at);
                        let line = c
                            .messages
                            .last()
                            .map(|m| first_line(&m.text))
                            .unwrap_or_default();
                        b.push_bind(at(next.conversation, i))
                            .push_bind(brand)
                            .push_bind(channel.0)
                            .push_bind(at(next.customer, i))
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
                    let mut messages = Vec::new();
                    for (i, c) in chunk.iter().enumerate() {
                        for m in &c.messages {
                            messages.push($crate::plan::NewMessage {
                                id: next.message,
                                conversation: at(next.conversation, i),
                                channel: channel.0,
                                way: $crate::plan::Way::In,
                                external_id: m.external_id.clone(),
                                author_identity: None,
                                text: m.text.clone(),
                                in_reply_to: None,
                                created_at: m.created_at,
                                received_at: m.created_at,
                                analysis: None,
                                facts: None,
                                place_kind: None,
                                place_url: None,
                                removed: false,
                            });
                            next.message += 1;
                        }
                    }
                    for part in messages.chunks(BATCH_ROWS) {
                        Self::insert_messages(&mut tx, part)
                            .await
                            .map_err(|e| match e {
                                $crate::StoreError::Database(e) => conflict_or(e, "message"),
                                other => other,
                            })?;
                        written += part.len() as u64;
                    }
                    next.customer = at(next.customer, chunk.len());
                    next.identity = at(next.identity, chunk.len());
                    next.conversation = at(next.conversation, chunk.len());
                }
                Self::ids_taken(&mut tx, next).await?;
                tx.commit().await?;
                self.after_bulk_load().await?;
                Ok(written)
            }
        }
    };
}

pub(crate) use impl_bulk_load;
