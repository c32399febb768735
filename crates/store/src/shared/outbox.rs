//! Replies: queued by a person, claimed, delivered and settled ([`crate::Outbox`]), the same
//! SQL on both backends but for claiming (see `Dialect::claim_due`).

/// Implements [`crate::Outbox`] for `$store`.
macro_rules! impl_outbox {
    ($store:ty) => {
        impl $store {
            /// The reply message shows `reason` as failed, and the timeline a `reply_failed`
            /// event.
            async fn show_reply_failed(
                tx: &mut $crate::shared::Tx<Self>,
                conv: i64,
                msg: i64,
                reason: &str,
                now: balie_core::Millis,
            ) -> $crate::Result<()> {
                sqlx::query(
                    "UPDATE messages SET delivery = 'failed', delivery_error = $1 WHERE id = $2",
                )
                .bind(reason)
                .bind(msg)
                .execute(&mut **tx)
                .await?;
                Self::insert_event(
                    tx,
                    conv,
                    balie_core::EventKind::ReplyFailed,
                    Some(msg),
                    None,
                    reason,
                    now,
                )
                .await?;
                Ok(())
            }

            /// Ends a claimed (`sending`) outbox row in `state` (`failed`, or `unknown` when
            /// the platform may have it): the message shows the reason and the timeline a
            /// failed reply. A row in any other state is left alone.
            async fn park_claimed(
                tx: &mut $crate::shared::Tx<Self>,
                id: i64,
                state: &str,
                reason: &str,
                now: balie_core::Millis,
            ) -> $crate::Result<()> {
                let row: Option<(i64, i64)> = sqlx::query_as(
                    "UPDATE outbox SET state = $1, updated_at = $2, last_error = $3 WHERE id = $4 \
                     AND state = 'sending' RETURNING message_id, \
                     (SELECT conversation_id FROM messages WHERE messages.id = outbox.message_id)",
                )
                .bind(state)
                .bind(now)
                .bind(reason)
                .bind(id)
                .fetch_optional(&mut **tx)
                .await?;
                if let Some((msg, conv)) = row {
                    Self::show_reply_failed(tx, conv, msg, reason, now).await?;
                }
                Ok(())
            }
        }

        #[async_trait::async_trait]
        impl $crate::Outbox for $store {
            async fn queue_reply(
                &self,
                brand: balie_core::BrandId,
                conversation: balie_core::ConversationId,
                by: balie_core::UserId,
                text: &str,
                idempotency_key: &str,
                now: balie_core::Millis,
            ) -> $crate::Result<balie_core::Message> {
                use $crate::shared::Dialect as _;
                let text = Self::storable(text);
                // PostgreSQL: under the write lock, so the same key from two requests is
                // checked and stored once.
                let mut tx = self.begin_write().await?;
                let channel: Option<i64> = sqlx::query_scalar(
                    "SELECT channel_id FROM conversations WHERE id = $1 AND brand_id = $2",
                )
                .bind(conversation.0)
                .bind(brand.0)
                .fetch_optional(&mut *tx)
                .await?;
                let Some(channel) = channel else {
                    return Err($crate::StoreError::NotFound("conversation"));
                };
                // The key names a reply on this conversation only: one on another is not
                // handed back.
                let existing: Option<i64> = sqlx::query_scalar(
                    "SELECT o.message_id FROM outbox o JOIN messages m ON m.id = o.message_id \
                     WHERE o.idempotency_key = $1 AND m.conversation_id = $2",
                )
                .bind(idempotency_key)
                .bind(conversation.0)
                .fetch_optional(&mut *tx)
                .await?;
                let msg = match existing {
                    Some(m) => m,
                    None => {
                        let reply_to: Option<i64> = sqlx::query_scalar(
                            "SELECT MAX(id) FROM messages WHERE conversation_id = $1 \
                             AND direction = 'in'",
                        )
                        .bind(conversation.0)
                        .fetch_one(&mut *tx)
                        .await?;
                        let msg: i64 = sqlx::query_scalar(
                            "INSERT INTO messages (conversation_id, channel_id, direction, \
                             author_user, text, in_reply_to, created_at, received_at, delivery) \
                             VALUES ($1, $2, 'out', $3, $4, $5, $6, $6, 'queued') RETURNING id",
                        )
                        .bind(conversation.0)
                        .bind(channel)
                        .bind(by.0)
                        .bind(text.as_ref())
                        .bind(reply_to)
                        .bind(now)
                        .fetch_one(&mut *tx)
                        .await?;
                        sqlx::query(
                            "INSERT INTO outbox (message_id, channel_id, idempotency_key, state, \
                             next_attempt_at, created_at, updated_at) \
                             VALUES ($1, $2, $3, 'pending', $4, $4, $4)",
                        )
                        .bind(msg)
                        .bind(channel)
                        .bind(idempotency_key)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                        Self::index_reply(&mut tx, msg, &text).await?;
                        sqlx::query(
                            "UPDATE conversations SET waiting_since = NULL, reply_due = NULL, \
                             updated_at = $1 WHERE id = $2",
                        )
                        .bind(now)
                        .bind(conversation.0)
                        .execute(&mut *tx)
                        .await?;
                        Self::insert_event(
                            &mut tx,
                            conversation.0,
                            balie_core::EventKind::ReplyQueued,
                            Some(msg),
                            Some(by.0),
                            "",
                            now,
                        )
                        .await?;
                        msg
                    }
                };
                self.commit_events(tx).await?;
                let row = sqlx::query(concat!(
                    "SELECT ",
                    $crate::rows::msg_cols!(),
                    $crate::rows::msg_from!(),
                    "WHERE m.id = $1"
                ))
                .bind(msg)
                .fetch_one(self.writer())
                .await?;
                Ok($crate::rows::timeline_message(&row)?.message)
            }

            async fn claim_outbox(
                &self,
                now: balie_core::Millis,
                limit: i64,
            ) -> $crate::Result<Vec<$crate::OutboxItem>> {
                use $crate::rows::Columns as _;
                use $crate::shared::Dialect as _;
                let mut tx = self.writer().begin().await?;
                let ids = Self::claim_due(&mut tx, now, limit).await?;
                let mut out = Vec::with_capacity(ids.len());
                for id in ids {
                    let row = sqlx::query(
                        "SELECT o.id, o.message_id, o.idempotency_key, o.attempts, \
                         m.conversation_id, m.text, r.external_id AS reply_to_external_id, \
                         r.place_kind AS reply_to_place, ch.id AS channel_id, \
                         ch.brand_id AS channel_brand_id, ch.kind AS channel_kind, \
                         ch.name AS channel_name, ch.settings AS channel_settings, \
                         (SELECT i.external_id FROM identities i \
                            WHERE i.customer_id = c.customer_id AND i.platform = ch.kind \
                            ORDER BY i.id LIMIT 1) AS recipient_external_id, \
                         (SELECT MAX(x.created_at) FROM messages x \
                            WHERE x.conversation_id = c.id AND x.direction = 'in') AS last_in \
                         FROM outbox o JOIN messages m ON m.id = o.message_id \
                         JOIN conversations c ON c.id = m.conversation_id \
                         JOIN channels ch ON ch.id = o.channel_id \
                         LEFT JOIN messages r ON r.id = m.in_reply_to WHERE o.id = $1",
                    )
                    .bind(id)
                    .fetch_one(&mut *tx)
                    .await?;
                    out.push($crate::OutboxItem {
                        id: row.int("id")?,
                        message_id: balie_core::MessageId(row.int("message_id")?),
                        conversation_id: balie_core::ConversationId(row.int("conversation_id")?),
                        channel: $crate::rows::claimed_channel(&row)?,
                        idempotency_key: row.text("idempotency_key")?,
                        text: row.text("text")?,
                        attempts: row.int("attempts")?,
                        reply_to_external_id: row.opt_text("reply_to_external_id")?,
                        recipient_external_id: row.opt_text("recipient_external_id")?,
                        last_customer_message_at: row.opt_int("last_in")?,
                        reply_to_place: $crate::rows::place_kind(&row, "reply_to_place")?,
                    });
                }
                tx.commit().await?;
                Ok(out)
            }

            async fn outbox_sent(
                &self,
                id: i64,
                platform_id: Option<&str>,
                now: balie_core::Millis,
            ) -> $crate::Result<()> {
                use $crate::shared::Dialect as _;
                let mut tx = self.begin_write().await?;
                let row: Option<(i64, i64)> = sqlx::query_as(
                    "UPDATE outbox SET state = 'sent', updated_at = $1, last_error = NULL \
                     WHERE id = $2 AND state <> 'sent' RETURNING message_id, \
                     (SELECT conversation_id FROM messages WHERE messages.id = outbox.message_id)",
                )
                .bind(now)
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
                if let Some((msg, conv)) = row {
                    // An echo without our key may have beaten this response and already
                    // recorded the platform id on a copy; the reply is sent all the same, so
                    // no conflict.
                    sqlx::query(
                        "UPDATE messages SET delivery = 'sent', delivery_error = NULL, \
                         external_id = CASE WHEN EXISTS (SELECT 1 FROM messages o \
                           WHERE o.channel_id = messages.channel_id AND o.external_id = $1 \
                           AND o.id <> messages.id) THEN external_id \
                           ELSE COALESCE($1, external_id) END WHERE id = $2",
                    )
                    .bind(platform_id)
                    .bind(msg)
                    .execute(&mut *tx)
                    .await?;
                    Self::insert_event(
                        &mut tx,
                        conv,
                        balie_core::EventKind::ReplySent,
                        Some(msg),
                        None,
                        "",
                        now,
                    )
                    .await?;
                }
                self.commit_events(tx).await?;
                Ok(())
            }

            async fn outbox_retry(
                &self,
                id: i64,
                next_attempt_at: balie_core::Millis,
                error: &str,
                now: balie_core::Millis,
            ) -> $crate::Result<()> {
                use $crate::shared::Dialect as _;
                sqlx::query(
                    "UPDATE outbox SET state = 'pending', next_attempt_at = $1, last_error = $2, \
                     updated_at = $3 WHERE id = $4 AND state = 'sending'",
                )
                .bind(next_attempt_at)
                .bind(error)
                .bind(now)
                .bind(id)
                .execute(self.writer())
                .await?;
                Ok(())
            }

            async fn outbox_failed(
                &self,
                id: i64,
                error: &str,
                now: balie_core::Millis,
            ) -> $crate::Result<()> {
                use $crate::shared::Dialect as _;
                let mut tx = self.begin_write().await?;
                Self::park_claimed(&mut tx, id, "failed", error, now).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn recover_outbox(&self) -> $crate::Result<u64> {
                use $crate::shared::Dialect as _;
                // PostgreSQL: under the write lock, like `park_interrupted_outbox`: two
                // processes starting at once must not lock the same rows in different orders.
                let mut tx = self.begin_write().await?;
                let n = sqlx::query("UPDATE outbox SET state = 'pending' WHERE state = 'sending'")
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                self.commit_events(tx).await?;
                Ok(n)
            }

            async fn outbox_unknown(
                &self,
                id: i64,
                reason: &str,
                now: balie_core::Millis,
            ) -> $crate::Result<()> {
                use $crate::shared::Dialect as _;
                let mut tx = self.begin_write().await?;
                Self::park_claimed(&mut tx, id, "unknown", reason, now).await?;
                self.commit_events(tx).await?;
                Ok(())
            }

            async fn park_interrupted_outbox(
                &self,
                kinds: &[balie_core::ChannelKind],
                reason: &str,
                now: balie_core::Millis,
            ) -> $crate::Result<u64> {
                use $crate::shared::Dialect as _;
                let mut tx = self.begin_write().await?;
                let mut parked = 0;
                for kind in kinds {
                    let ids: Vec<i64> = sqlx::query_scalar(
                        "SELECT o.id FROM outbox o JOIN channels ch ON ch.id = o.channel_id \
                         WHERE o.state = 'sending' AND ch.kind = $1 ORDER BY o.id",
                    )
                    .bind(kind.as_str())
                    .fetch_all(&mut *tx)
                    .await?;
                    for id in ids {
                        Self::park_claimed(&mut tx, id, "unknown", reason, now).await?;
                        parked += 1;
                    }
                }
                self.commit_events(tx).await?;
                Ok(parked)
            }

            async fn confirm_outbox_by_key(
                &self,
                channel: balie_core::ChannelId,
                key: &str,
                platform_id: &str,
                now: balie_core::Millis,
            ) -> $crate::Result<bool> {
                use $crate::shared::Dialect as _;
                let platform_id = Self::storable(platform_id);
                let mut tx = self.begin_write().await?;
                let Some(reply) = Self::load_reply(&mut tx, channel.0, key).await? else {
                    return Ok(false);
                };
                let next = Self::next_ids(&mut tx).await?;
                let plan = $crate::plan::confirm_reply(reply, channel.0, key, &platform_id, next);
                Self::write_plan(&mut tx, &plan, now).await?;
                self.commit_events(tx).await?;
                Ok(true)
            }

            async fn fail_outbox_by_key(
                &self,
                channel: balie_core::ChannelId,
                key: &str,
                reason: &str,
                now: balie_core::Millis,
            ) -> $crate::Result<bool> {
                use $crate::shared::Dialect as _;
                let mut tx = self.begin_write().await?;
                let row: Option<(i64, i64)> = sqlx::query_as(
                    "UPDATE outbox SET state = 'failed', updated_at = $1, last_error = $2 \
                     WHERE idempotency_key = $3 AND channel_id = $4 AND state <> 'failed' \
                     RETURNING message_id, \
                     (SELECT conversation_id FROM messages WHERE messages.id = outbox.message_id)",
                )
                .bind(now)
                .bind(reason)
                .bind(key)
                .bind(channel.0)
                .fetch_optional(&mut *tx)
                .await?;
                let Some((msg, conv)) = row else {
                    return Ok(false);
                };
                Self::show_reply_failed(&mut tx, conv, msg, reason, now).await?;
                self.commit_events(tx).await?;
                Ok(true)
            }
        }
    };
}

pub(crate) use impl_outbox;
