//! The pipeline's write step around the plan, for both backends: which keys a batch names
//! (what a backend loads for its [`Snapshot`]), how loaded rows fill the snapshot, and the
//! writing of a [`crate::plan::WritePlan`] (`impl_plan_writes!`), which asks the backend
//! only for what its dialect does differently (search terms, multi-row updates, sequences).

use balie_core::{ConversationStatus, InboundKind, Millis};

use crate::common::corrupt;
use crate::plan::{
    ChannelInfo, ConversationState, Snapshot, StoredConversation, StoredIdentity, StoredMessage,
    StoredReply, notice_threads,
};
use crate::{Prepared, Result};

/// Rows per multi-row statement (at most 21 parameters a row: far under SQLite's 32,766
/// and PostgreSQL's 65,535 bound parameters).
pub(crate) const BATCH_ROWS: usize = 500;
/// Values per `IN (…)` list.
pub(crate) const BATCH_KEYS: usize = 5_000;

/// What a batch names, sorted and without repeats: the keys its snapshot is loaded by.
pub(crate) struct BatchKeys<'a> {
    pub journal_ids: Vec<i64>,
    pub channels: Vec<i64>,
    /// External ids of messages: the entries' own and those they answer.
    pub messages: Vec<&'a str>,
    /// Whether an entry edits a message (so stored texts are needed).
    pub edits: bool,
    /// Platform ids of the authors of messages and echoes.
    pub authors: Vec<&'a str>,
    /// Idempotency keys echoes carry.
    pub reply_keys: Vec<&'a str>,
    /// Platform threads notices name.
    pub notice_threads: Vec<&'a str>,
}

fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort_unstable();
    v.dedup();
    v
}

fn authored(p: &Prepared) -> bool {
    matches!(
        p.entry.inbound.kind,
        InboundKind::Message | InboundKind::Echo
    )
}

impl<'a> BatchKeys<'a> {
    pub(crate) fn of(batch: &'a [Prepared]) -> Self {
        let inbound = || batch.iter().map(|p| &p.entry.inbound);
        Self {
            journal_ids: sorted(batch.iter().map(|p| p.entry.id).collect()),
            channels: sorted(batch.iter().map(|p| p.entry.channel_id.0).collect()),
            messages: sorted(
                inbound()
                    .flat_map(|i| {
                        std::iter::once(i.external_id.as_str()).chain(i.in_reply_to.as_deref())
                    })
                    .collect(),
            ),
            edits: inbound().any(|i| i.kind == InboundKind::Edited),
            authors: sorted(
                batch
                    .iter()
                    .filter(|p| authored(p))
                    .map(|p| p.entry.inbound.author.platform_id.as_str())
                    .collect(),
            ),
            reply_keys: sorted(
                inbound()
                    .filter(|i| i.kind == InboundKind::Echo)
                    .filter_map(|i| i.outbox_key.as_deref())
                    .collect(),
            ),
            notice_threads: sorted(notice_threads(batch)),
        }
    }

    /// The platforms (channel kinds) the authors write on, once the channels are loaded.
    pub(crate) fn platforms<'s>(batch: &[Prepared], s: &'s Snapshot) -> Vec<&'s str> {
        sorted(
            batch
                .iter()
                .filter(|p| authored(p))
                .filter_map(|p| s.channels.get(&p.entry.channel_id.0))
                .map(|c| c.platform.as_str())
                .collect(),
        )
    }

    /// The customers of the identities loaded, whose conversations are loaded next.
    pub(crate) fn customers(s: &Snapshot) -> Vec<i64> {
        sorted(s.identities.values().map(|i| i.customer).collect())
    }
}

/// `id, brand_id, kind` of `channels`.
pub(crate) type ChannelRow = (i64, i64, String);
/// `m.channel_id, m.external_id, m.id, m.conversation_id, c.customer_id, m.text` (the text
/// only when the batch edits).
pub(crate) type MessageRow = (i64, String, i64, i64, i64, Option<String>);
/// `i.platform, i.external_id, i.id, i.customer_id, i.handle, i.name, cu.display_name`.
pub(crate) type IdentityRow = (
    String,
    String,
    i64,
    i64,
    Option<String>,
    Option<String>,
    String,
);
/// `id, channel_id, customer_id, thread_key, status, priority, waiting_since, reply_due,
/// first_line, last_message_at` of `conversations`.
pub(crate) type ConversationRow = (
    i64,
    i64,
    i64,
    Option<String>,
    String,
    i64,
    Option<Millis>,
    Option<Millis>,
    String,
    Millis,
);
/// `channel_id, thread_key, MAX(id)` of `conversations`: a thread's newest conversation.
pub(crate) type ThreadRow = (i64, String, i64);
/// `o.channel_id, o.idempotency_key`, then [`ReplyRow`].
pub(crate) type KeyedReplyRow = (i64, String, i64, i64, i64, i64, String, Option<String>);
/// `o.id, o.message_id, m.conversation_id, c.customer_id, o.state, m.external_id`.
pub(crate) type ReplyRow = (i64, i64, i64, i64, String, Option<String>);

/// The columns of [`ReplyRow`], `FROM` our replies.
macro_rules! reply_cols {
    () => {
        "o.id, o.message_id, m.conversation_id, c.customer_id, o.state, m.external_id \
         FROM outbox o JOIN messages m ON m.id = o.message_id \
         JOIN conversations c ON c.id = m.conversation_id "
    };
}
pub(crate) use reply_cols;

pub(crate) fn reply(row: ReplyRow) -> StoredReply {
    let (outbox, message, conversation, customer, state, external_id) = row;
    StoredReply {
        outbox,
        message,
        conversation,
        customer,
        sent: state == "sent",
        external_id,
    }
}

impl Snapshot {
    pub(crate) fn add_channels(&mut self, rows: Vec<ChannelRow>) {
        for (id, brand, platform) in rows {
            self.channels.insert(id, ChannelInfo { brand, platform });
        }
    }

    pub(crate) fn add_messages(&mut self, rows: Vec<MessageRow>) {
        for (channel, ext, id, conversation, customer, text) in rows {
            self.messages.insert(
                (channel, ext),
                StoredMessage {
                    id,
                    conversation,
                    customer,
                    text,
                },
            );
        }
    }

    pub(crate) fn add_identities(&mut self, rows: Vec<IdentityRow>) {
        for (platform, ext, id, customer, handle, name, display) in rows {
            self.customer_names.insert(customer, display);
            self.identities.insert(
                (platform, ext),
                StoredIdentity {
                    id,
                    customer,
                    handle,
                    name,
                },
            );
        }
    }

    pub(crate) fn add_conversations(&mut self, rows: Vec<ConversationRow>) -> Result<()> {
        for (id, channel, customer, thread_key, status, priority, waiting, due, line, last) in rows
        {
            let status = ConversationStatus::parse(&status)
                .ok_or_else(|| corrupt("conversation status", &status))?;
            self.conversations.insert(
                id,
                StoredConversation {
                    channel,
                    customer,
                    thread_key,
                    state: ConversationState {
                        status,
                        priority,
                        waiting_since: waiting,
                        reply_due: due,
                        first_line: line,
                        last_message_at: last,
                    },
                },
            );
        }
        Ok(())
    }

    pub(crate) fn add_threads(&mut self, rows: Vec<ThreadRow>) {
        self.threads.extend(
            rows.into_iter()
                .map(|(channel, key, id)| ((channel, key), id)),
        );
    }

    pub(crate) fn add_replies(&mut self, rows: Vec<KeyedReplyRow>) {
        for (channel, key, outbox, message, conversation, customer, state, ext) in rows {
            let row = (outbox, message, conversation, customer, state, ext);
            self.replies.insert((channel, key), reply(row));
        }
    }
}

/// The columns of a new message, in the order [`push_message!`] binds them.
macro_rules! message_cols {
    () => {
        "id, conversation_id, channel_id, direction, external_id, author_identity, text, \
         in_reply_to, created_at, received_at, delivery, analysis, place_kind, place_url, removed, \
         language, sentiment, intent, escalation, escalation_signals"
    };
}

/// Binds the [`message_cols!`] of `$m` (a [`crate::plan::NewMessage`]) to `$b`, a row of a
/// multi-row insert; evaluates to `$b` for more columns.
macro_rules! push_message {
    ($b:expr, $m:expr) => {{
        let m = $m;
        let (direction, delivery) = match m.way {
            $crate::plan::Way::In => ("in", "received"),
            $crate::plan::Way::OutSentElsewhere => ("out", "sent"),
        };
        $b.push_bind(m.id)
            .push_bind(m.conversation)
            .push_bind(m.channel)
            .push_bind(direction)
            .push_bind(m.external_id.as_str())
            .push_bind(m.author_identity)
            .push_bind(m.text.as_str())
            .push_bind(m.in_reply_to)
            .push_bind(m.created_at)
            .push_bind(m.received_at)
            .push_bind(delivery)
            .push_bind(m.analysis.as_deref())
            .push_bind(m.place_kind)
            .push_bind(m.place_url.as_deref())
            .push_bind(m.removed)
            .push_bind(m.facts.as_ref().map(|a| a.language.code().to_owned()))
            .push_bind(m.facts.as_ref().map(|a| a.sentiment.as_str()))
            .push_bind(m.facts.as_ref().map(|a| a.intent.as_str()))
            .push_bind(m.facts.as_ref().map(|a| a.escalation))
            .push_bind(m.facts.as_ref().map(|a| a.signals_text()))
    }};
}

pub(crate) use {message_cols, push_message};

/// Implements `load_reply` and `write_plan` for `$store` (a `Dialect`).
macro_rules! impl_plan_writes {
    ($store:ty) => {
        impl $store {
            /// Our reply named by `key` on `channel`, if there is one.
            async fn load_reply(
                tx: &mut $crate::shared::Tx<Self>,
                channel: i64,
                key: &str,
            ) -> $crate::Result<Option<$crate::plan::StoredReply>> {
                let row: Option<$crate::shared::pipeline::ReplyRow> = sqlx::query_as(concat!(
                    "SELECT ",
                    $crate::shared::pipeline::reply_cols!(),
                    "WHERE o.idempotency_key = $1 AND o.channel_id = $2"
                ))
                .bind(key)
                .bind(channel)
                .fetch_optional(&mut **tx)
                .await?;
                Ok(row.map($crate::shared::pipeline::reply))
            }

            /// Writes `plan`, in the order foreign keys need, with multi-row statements.
            async fn write_plan(
                tx: &mut $crate::shared::Tx<Self>,
                plan: &$crate::plan::WritePlan,
                now: balie_core::Millis,
            ) -> $crate::Result<()> {
                use $crate::plan::MessageChange;
                use $crate::shared::Dialect as _;
                use $crate::shared::pipeline::{BATCH_KEYS, BATCH_ROWS};
                type Db = <$store as $crate::shared::Dialect>::Db;
                for chunk in plan.customers.chunks(BATCH_ROWS) {
                    let mut q = sqlx::QueryBuilder::<Db>::new(
                        "INSERT INTO customers (id, brand_id, display_name, created_at) ",
                    );
                    q.push_values(chunk, |mut b, c| {
                        b.push_bind(c.id)
                            .push_bind(c.brand)
                            .push_bind(c.display_name.as_str())
                            .push_bind(now);
                    });
                    q.build().persistent(false).execute(&mut **tx).await?;
                }
                for (id, name) in &plan.renamed_customers {
                    sqlx::query("UPDATE customers SET display_name = $1 WHERE id = $2")
                        .bind(name)
                        .bind(id)
                        .execute(&mut **tx)
                        .await?;
                }
                for chunk in plan.identities.chunks(BATCH_ROWS) {
                    let mut q = sqlx::QueryBuilder::<Db>::new(
                        "INSERT INTO identities (id, customer_id, platform, external_id, handle, \
                         name) ",
                    );
                    q.push_values(chunk, |mut b, i| {
                        b.push_bind(i.id)
                            .push_bind(i.customer)
                            .push_bind(i.platform.as_str())
                            .push_bind(i.external_id.as_str())
                            .push_bind(i.handle.as_deref())
                            .push_bind(i.name.as_deref());
                    });
                    q.build()
                        .persistent(false)
                        .execute(&mut **tx)
                        .await
                        .map_err(|e| $crate::common::conflict_or(e, "identity"))?;
                }
                for (id, handle, name) in &plan.identity_updates {
                    sqlx::query("UPDATE identities SET handle = $1, name = $2 WHERE id = $3")
                        .bind(handle)
                        .bind(name)
                        .bind(id)
                        .execute(&mut **tx)
                        .await?;
                }
                for chunk in plan.conversations.chunks(BATCH_ROWS) {
                    let mut q = sqlx::QueryBuilder::<Db>::new(
                        "INSERT INTO conversations (id, brand_id, channel_id, customer_id, \
                         status, priority, waiting_since, reply_due, thread_key, first_line, \
                         last_message_at, created_at, updated_at) ",
                    );
                    q.push_values(chunk, |mut b, c| {
                        let s = &c.state;
                        b.push_bind(c.id)
                            .push_bind(c.brand)
                            .push_bind(c.channel)
                            .push_bind(c.customer)
                            .push_bind(s.status.as_str())
                            .push_bind(s.priority)
                            .push_bind(s.waiting_since)
                            .push_bind(s.reply_due)
                            .push_bind(c.thread_key.as_deref())
                            .push_bind(s.first_line.as_str())
                            .push_bind(s.last_message_at)
                            .push_bind(now)
                            .push_bind(now);
                    });
                    q.build().persistent(false).execute(&mut **tx).await?;
                }
                for chunk in plan.conversation_updates.chunks(BATCH_ROWS) {
                    Self::update_conversations(tx, chunk, now).await?;
                }
                for chunk in plan.messages.chunks(BATCH_ROWS) {
                    Self::insert_messages(tx, chunk)
                        .await
                        .map_err(|e| match e {
                            $crate::StoreError::Database(e) => {
                                $crate::common::conflict_or(e, "message")
                            }
                            other => other,
                        })?;
                }
                for change in &plan.message_changes {
                    match change {
                        MessageChange::Edited {
                            id,
                            text,
                            analysis,
                            facts,
                        } => {
                            sqlx::query(
                                "UPDATE messages SET text = $1, \
                                 analysis = COALESCE($2, analysis), \
                                 language = COALESCE($3, language), \
                                 sentiment = COALESCE($4, sentiment), \
                                 intent = COALESCE($5, intent), \
                                 escalation = COALESCE($6, escalation), \
                                 escalation_signals = COALESCE($7, escalation_signals) \
                                 WHERE id = $8",
                            )
                            .bind(text)
                            .bind(analysis)
                            .bind(facts.as_ref().map(|a| a.language.code().to_owned()))
                            .bind(facts.as_ref().map(|a| a.sentiment.as_str()))
                            .bind(facts.as_ref().map(|a| a.intent.as_str()))
                            .bind(facts.as_ref().map(|a| a.escalation))
                            .bind(facts.as_ref().map(|a| a.signals_text()))
                            .bind(id)
                            .execute(&mut **tx)
                            .await?;
                            Self::reindex(tx, *id, text).await?;
                        }
                        MessageChange::Removed { id } => {
                            sqlx::query("UPDATE messages SET removed = TRUE WHERE id = $1")
                                .bind(id)
                                .execute(&mut **tx)
                                .await?;
                        }
                        MessageChange::Delivered { id, external_id } => {
                            sqlx::query(
                                "UPDATE messages SET delivery = 'sent', delivery_error = NULL, \
                                 external_id = $1 WHERE id = $2",
                            )
                            .bind(external_id)
                            .bind(id)
                            .execute(&mut **tx)
                            .await?;
                        }
                    }
                }
                for id in &plan.outbox_sent {
                    sqlx::query(
                        "UPDATE outbox SET state = 'sent', last_error = NULL, updated_at = $1 \
                         WHERE id = $2",
                    )
                    .bind(now)
                    .bind(id)
                    .execute(&mut **tx)
                    .await?;
                }
                for chunk in plan.events.chunks(BATCH_ROWS) {
                    let mut q = sqlx::QueryBuilder::<Db>::new(
                        "INSERT INTO events (id, conversation_id, kind, message_id, user_id, \
                         detail, at) ",
                    );
                    q.push_values(chunk, |mut b, ev| {
                        b.push_bind(ev.id)
                            .push_bind(ev.conversation)
                            .push_bind(ev.kind.as_str())
                            .push_bind(ev.message)
                            .push_bind(None::<i64>)
                            .push_bind(ev.detail.as_str())
                            .push_bind(now);
                    });
                    q.build().persistent(false).execute(&mut **tx).await?;
                }
                for chunk in plan.processed.chunks(BATCH_KEYS) {
                    let mut q = sqlx::QueryBuilder::<Db>::new("UPDATE journal SET processed_at = ");
                    q.push_bind(now).push(" WHERE id IN (");
                    let mut ids = q.separated(", ");
                    for id in chunk {
                        ids.push_bind(*id);
                    }
                    ids.push_unseparated(")");
                    q.build().execute(&mut **tx).await?;
                }
                Self::ids_taken(tx, plan.next).await
            }
        }
    };
}

pub(crate) use impl_plan_writes;
