//! The event log the live stream reads ([`crate::Live`]), and the one way an event is
//! written, the same SQL on both backends.

/// Implements [`crate::Live`] for `$store`, and `insert_event` and `inbox_row` for the other
/// roles.
macro_rules! impl_live {
    ($store:ty) => {
        impl $store {
            /// Appends a timeline event; returns its id (the live stream's position).
            async fn insert_event(
                tx: &mut $crate::shared::Tx<Self>,
                conversation: i64,
                kind: balie_core::EventKind,
                message: Option<i64>,
                user: Option<i64>,
                detail: &str,
                at: balie_core::Millis,
            ) -> $crate::Result<i64> {
                let id = sqlx::query_scalar(
                    "INSERT INTO events (conversation_id, kind, message_id, user_id, detail, at) \
                     VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
                )
                .bind(conversation)
                .bind(kind.as_str())
                .bind(message)
                .bind(user)
                .bind(detail)
                .bind(at)
                .fetch_one(&mut **tx)
                .await?;
                Ok(id)
            }

            /// Commits `tx`, which appended timeline events, and says so: the one place that
            /// wakes live streams, after the commit (PostgreSQL: with a `NOTIFY` too, so the
            /// streams of every process wake).
            async fn commit_events(&self, mut tx: $crate::shared::Tx<Self>) -> $crate::Result<()> {
                use $crate::shared::Dialect as _;
                Self::announce(&mut tx).await?;
                tx.commit().await?;
                self.changes_sender()
                    .send_modify(|n| *n = n.wrapping_add(1));
                Ok(())
            }

            /// One conversation as the inbox lists it.
            async fn inbox_row(&self, id: i64) -> $crate::Result<Option<$crate::InboxRow>> {
                use $crate::shared::Dialect as _;
                let row = sqlx::query(concat!(
                    "SELECT ",
                    $crate::rows::conv_cols!(),
                    $crate::rows::conv_from!(),
                    "WHERE c.id = $1"
                ))
                .bind(id)
                .fetch_optional(self.reader())
                .await?;
                row.as_ref().map($crate::rows::inbox_row).transpose()
            }
        }

        #[async_trait::async_trait]
        impl $crate::Live for $store {
            async fn events_since(
                &self,
                brand: balie_core::BrandId,
                after: balie_core::EventId,
                limit: i64,
            ) -> $crate::Result<Vec<$crate::LiveEvent>> {
                use $crate::shared::Dialect as _;
                let rows: Vec<(i64, i64, String, Option<i64>)> = sqlx::query_as(
                    "SELECT e.id, e.conversation_id, e.kind, e.message_id FROM events e \
                     JOIN conversations c ON c.id = e.conversation_id \
                     WHERE e.id > $1 AND c.brand_id = $3 ORDER BY e.id LIMIT $2",
                )
                .bind(after.0)
                .bind($crate::shared::limit_or_all(limit))
                .bind(brand.0)
                .fetch_all(self.reader())
                .await?;
                // The page's conversations and messages in one query each, not two per event:
                // every connected agent reads every event, so this is paid once per agent per
                // message.
                let mut conv_ids: Vec<i64> = rows.iter().map(|r| r.1).collect();
                conv_ids.sort_unstable();
                conv_ids.dedup();
                let msg_ids: Vec<i64> = rows.iter().filter_map(|r| r.3).collect();
                let mut conversations = std::collections::HashMap::with_capacity(conv_ids.len());
                for chunk in conv_ids.chunks(500) {
                    let mut q = sqlx::QueryBuilder::new(concat!(
                        "SELECT ",
                        $crate::rows::conv_cols!(),
                        $crate::rows::conv_from!(),
                        "WHERE c.id IN ("
                    ));
                    let mut ids = q.separated(", ");
                    for id in chunk {
                        ids.push_bind(*id);
                    }
                    q.push(")");
                    for row in q.build().fetch_all(self.reader()).await? {
                        let row = $crate::rows::inbox_row(&row)?;
                        conversations.insert(row.conversation.id.0, row);
                    }
                }
                let mut messages = std::collections::HashMap::with_capacity(msg_ids.len());
                for chunk in msg_ids.chunks(500) {
                    let mut q = sqlx::QueryBuilder::new(concat!(
                        "SELECT ",
                        $crate::rows::msg_cols!(),
                        $crate::rows::msg_from!(),
                        "WHERE m.id IN ("
                    ));
                    let mut ids = q.separated(", ");
                    for id in chunk {
                        ids.push_bind(*id);
                    }
                    q.push(")");
                    for row in q.build().fetch_all(self.reader()).await? {
                        let m = $crate::rows::timeline_message(&row)?;
                        messages.insert(m.message.id.0, m);
                    }
                }
                let mut out = Vec::with_capacity(rows.len());
                for (id, conv, kind, msg) in rows {
                    let kind = balie_core::EventKind::parse(&kind)
                        .ok_or_else(|| $crate::common::corrupt("event kind", &kind))?;
                    let Some(conversation) = conversations.get(&conv).cloned() else {
                        continue;
                    };
                    out.push($crate::LiveEvent {
                        id: balie_core::EventId(id),
                        kind,
                        conversation,
                        message: msg.and_then(|m| messages.get(&m).cloned()),
                    });
                }
                Ok(out)
            }

            fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
                use $crate::shared::Dialect as _;
                self.changes_sender().subscribe()
            }

            async fn last_event_id(&self) -> $crate::Result<balie_core::EventId> {
                use $crate::shared::Dialect as _;
                let id: Option<i64> = sqlx::query_scalar("SELECT MAX(id) FROM events")
                    .fetch_one(self.reader())
                    .await?;
                Ok(balie_core::EventId(id.unwrap_or(0)))
            }
        }
    };
}

pub(crate) use impl_live;
