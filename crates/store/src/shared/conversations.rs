//! Conversations, the inbox and customers ([`crate::Conversations`]), the same SQL on both
//! backends.

/// Implements [`crate::Conversations`] for `$store`.
macro_rules! impl_conversations {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl $crate::Conversations for $store {
            async fn inbox(
                &self,
                brand: balie_core::BrandId,
                status: balie_core::ConversationStatus,
                limit: i64,
            ) -> $crate::Result<Vec<$crate::InboxRow>> {
                use $crate::shared::Dialect as _;
                // The order is the inbox-order index's (SQLite ends every index with the
                // rowid, so `c.id` costs no sort there).
                let rows = sqlx::query(concat!(
                    "SELECT ",
                    $crate::rows::conv_cols!(),
                    $crate::rows::conv_from!(),
                    "WHERE c.status = $1 AND c.brand_id = $3 ORDER BY (c.waiting_since IS NULL), c.priority, \
                     COALESCE(c.reply_due, 9223372036854775807), c.last_message_at DESC, c.id \
                     LIMIT $2"
                ))
                .bind(status.as_str())
                .bind($crate::shared::limit_or_all(limit))
                .bind(brand.0)
                .fetch_all(self.reader())
                .await?;
                rows.iter().map($crate::rows::inbox_row).collect()
            }

            async fn conversation(
                &self,
                brand: balie_core::BrandId,
                id: balie_core::ConversationId,
            ) -> $crate::Result<Option<$crate::ConversationView>> {
                use $crate::shared::Dialect as _;
                let Some(row) = self.inbox_row(id.0).await? else {
                    return Ok(None);
                };
                if row.conversation.brand_id != brand {
                    return Ok(None);
                }
                let customer_id = row.conversation.customer_id.0;
                let (display_name, notes): (String, String) =
                    sqlx::query_as("SELECT display_name, notes FROM customers WHERE id = $1")
                        .bind(customer_id)
                        .fetch_one(self.reader())
                        .await?;
                let identities: Vec<(i64, String, String, Option<String>, Option<String>)> =
                    sqlx::query_as(
                        "SELECT id, platform, external_id, handle, name FROM identities \
                         WHERE customer_id = $1 ORDER BY id",
                    )
                    .bind(customer_id)
                    .fetch_all(self.reader())
                    .await?;
                let timeline = sqlx::query(concat!(
                    "SELECT * FROM (SELECT ",
                    $crate::rows::msg_cols!(),
                    $crate::rows::msg_from!(),
                    "JOIN conversations c ON c.id = m.conversation_id WHERE c.customer_id = $1 \
                     AND c.brand_id = $2 ORDER BY m.id DESC LIMIT 500) t ORDER BY created_at, id"
                ))
                .bind(customer_id)
                .bind(brand.0)
                .fetch_all(self.reader())
                .await?
                .iter()
                .map($crate::rows::timeline_message)
                .collect::<$crate::Result<Vec<_>>>()?;
                let customer = balie_core::CustomerId(customer_id);
                Ok(Some($crate::ConversationView {
                    row,
                    customer: balie_core::Customer {
                        id: customer,
                        display_name,
                        notes,
                        identities: identities
                            .into_iter()
                            .map(|(id, platform, external_id, handle, name)| {
                                balie_core::Identity {
                                    id: balie_core::IdentityId(id),
                                    customer_id: customer,
                                    platform,
                                    external_id,
                                    handle,
                                    name,
                                }
                            })
                            .collect(),
                    },
                    timeline,
                }))
            }

            async fn conversation_messages(
                &self,
                brand: balie_core::BrandId,
                id: balie_core::ConversationId,
            ) -> $crate::Result<Vec<balie_core::Message>> {
                use $crate::shared::Dialect as _;
                let rows = sqlx::query(concat!(
                    "SELECT ",
                    $crate::rows::msg_cols!(),
                    $crate::rows::msg_from!(),
                    "JOIN conversations c ON c.id = m.conversation_id \
                     WHERE m.conversation_id = $1 AND c.brand_id = $2 ORDER BY m.id"
                ))
                .bind(id.0)
                .bind(brand.0)
                .fetch_all(self.reader())
                .await?;
                rows.iter()
                    .map(|r| $crate::rows::timeline_message(r).map(|m| m.message))
                    .collect()
            }

            async fn conversation_events(
                &self,
                brand: balie_core::BrandId,
                id: balie_core::ConversationId,
            ) -> $crate::Result<Vec<balie_core::Event>> {
                use $crate::shared::Dialect as _;
                let rows: Vec<(i64, String, Option<i64>, Option<i64>, String, i64)> =
                    sqlx::query_as(
                        "SELECT e.id, e.kind, e.message_id, e.user_id, e.detail, e.at FROM events e \
                         JOIN conversations c ON c.id = e.conversation_id \
                         WHERE e.conversation_id = $1 AND c.brand_id = $2 ORDER BY e.id",
                    )
                    .bind(id.0)
                    .bind(brand.0)
                    .fetch_all(self.reader())
                    .await?;
                rows.into_iter()
                    .map(|(event, kind, message, user, detail, at)| {
                        Ok(balie_core::Event {
                            id: balie_core::EventId(event),
                            conversation_id: id,
                            kind: balie_core::EventKind::parse(&kind)
                                .ok_or_else(|| $crate::common::corrupt("event kind", &kind))?,
                            message_id: message.map(balie_core::MessageId),
                            user_id: user.map(balie_core::UserId),
                            detail,
                            at,
                        })
                    })
                    .collect()
            }

            async fn set_status(
                &self,
                brand: balie_core::BrandId,
                id: balie_core::ConversationId,
                status: balie_core::ConversationStatus,
                by: Option<balie_core::UserId>,
                now: balie_core::Millis,
            ) -> $crate::Result<()> {
                use $crate::shared::Dialect as _;
                let mut tx = self.begin_write().await?;
                let old: Option<String> =
                    sqlx::query_scalar("SELECT status FROM conversations WHERE id = $1 AND brand_id = $2")
                        .bind(id.0)
                        .bind(brand.0)
                        .fetch_optional(&mut *tx)
                        .await?;
                let Some(old) = old else {
                    return Err($crate::StoreError::NotFound("conversation"));
                };
                if old != status.as_str() {
                    sqlx::query(
                        "UPDATE conversations SET status = $1, updated_at = $2 WHERE id = $3",
                    )
                    .bind(status.as_str())
                    .bind(now)
                    .bind(id.0)
                    .execute(&mut *tx)
                    .await?;
                    Self::insert_event(
                        &mut tx,
                        id.0,
                        balie_core::EventKind::StatusChanged,
                        None,
                        by.map(|u| u.0),
                        status.as_str(),
                        now,
                    )
                    .await?;
                }
                self.commit_events(tx).await?;
                Ok(())
            }

            async fn assign(
                &self,
                brand: balie_core::BrandId,
                id: balie_core::ConversationId,
                assignee: Option<balie_core::UserId>,
                by: Option<balie_core::UserId>,
                now: balie_core::Millis,
            ) -> $crate::Result<()> {
                use $crate::shared::Dialect as _;
                let mut tx = self.begin_write().await?;
                let old: Option<Option<i64>> =
                    sqlx::query_scalar("SELECT assignee FROM conversations WHERE id = $1 AND brand_id = $2")
                        .bind(id.0)
                        .bind(brand.0)
                        .fetch_optional(&mut *tx)
                        .await?;
                let Some(old) = old else {
                    return Err($crate::StoreError::NotFound("conversation"));
                };
                let name: Option<String> = match assignee {
                    Some(u) => {
                        // Only a member of the conversation's brand can be given it.
                        let name = sqlx::query_scalar(
                            "SELECT u.name FROM users u JOIN memberships m ON m.user_id = u.id \
                             WHERE u.id = $1 AND m.brand_id = $2",
                        )
                        .bind(u.0)
                        .bind(brand.0)
                            .fetch_optional(&mut *tx)
                            .await?;
                        if name.is_none() {
                            return Err($crate::StoreError::NotFound("user"));
                        }
                        name
                    }
                    None => None,
                };
                if old != assignee.map(|u| u.0) {
                    sqlx::query(
                        "UPDATE conversations SET assignee = $1, updated_at = $2 WHERE id = $3",
                    )
                    .bind(assignee.map(|u| u.0))
                    .bind(now)
                    .bind(id.0)
                    .execute(&mut *tx)
                    .await?;
                    Self::insert_event(
                        &mut tx,
                        id.0,
                        balie_core::EventKind::Assigned,
                        None,
                        by.map(|u| u.0),
                        name.as_deref().unwrap_or(""),
                        now,
                    )
                    .await?;
                }
                self.commit_events(tx).await?;
                Ok(())
            }

            async fn update_customer(
                &self,
                brand: balie_core::BrandId,
                id: balie_core::CustomerId,
                display_name: &str,
                notes: &str,
            ) -> $crate::Result<()> {
                use $crate::shared::Dialect as _;
                let n = sqlx::query(
                    "UPDATE customers SET display_name = $1, notes = $2 WHERE id = $3 AND brand_id = $4",
                )
                .bind(Self::storable(display_name).as_ref())
                .bind(Self::storable(notes).as_ref())
                .bind(id.0)
                .bind(brand.0)
                .execute(self.writer())
                .await?
                .rows_affected();
                if n == 0 {
                    return Err($crate::StoreError::NotFound("customer"));
                }
                Ok(())
            }
        }
    };
}

pub(crate) use impl_conversations;
