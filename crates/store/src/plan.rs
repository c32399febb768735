//! The pipeline's decisions, written once and without IO: from a [`Snapshot`] of the stored
//! rows a batch touches, the batch of journalled events, the SLA policy and `now`, [`plan`]
//! says which rows to insert and update ([`WritePlan`]). Each backend only loads the snapshot
//! and writes the plan; neither decides anything.
//!
//! The rules: a customer is identified by (platform, external id), their name following the
//! platform while nobody chose another one; a new customer message joins the conversation of
//! the message it answers if that is the same customer's, else the customer's conversation on
//! the same platform thread, else their newest conversation on the channel (an open one
//! first, a closed one reopened), else a new one; while a message waits priority only rises,
//! and the reply deadline comes from [`SlaPolicy`]; edits keep the earlier wording in an
//! event, removals only mark; an echo of one of our replies confirms it, any other echo is
//! recorded as sent elsewhere; a notice only adds an event to its thread's newest
//! conversation (it opens none and sets no deadline), and an unread entry is kept in the
//! journal as is; an entry applied before, or a message already stored, changes nothing.

use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap, HashSet};

use balie_core::{
    Author, ConversationId, ConversationStatus, EventKind, InboundKind, MessageAnalysis, MessageId,
    Millis, Priority, SlaPolicy,
};

use crate::common::{display_name, first_line};
use crate::rows::analysis_from_json;
use crate::{Applied, Prepared};

/// A channel as the planner needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ChannelInfo {
    pub brand: i64,
    /// The channel kind, which is the platform identities belong to.
    pub platform: String,
}

/// A stored message the batch names (by its own external id or as the one answered).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoredMessage {
    pub id: i64,
    pub conversation: i64,
    /// The customer whose conversation holds it.
    pub customer: i64,
    /// Its text, loaded for the messages the batch edits (the earlier wording is kept).
    pub text: Option<String>,
}

/// A platform identity as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoredIdentity {
    pub id: i64,
    pub customer: i64,
    pub handle: Option<String>,
    pub name: Option<String>,
}

/// The columns of a conversation the pipeline writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConversationState {
    pub status: ConversationStatus,
    pub priority: i64,
    pub waiting_since: Option<Millis>,
    pub reply_due: Option<Millis>,
    pub first_line: String,
    pub last_message_at: Millis,
}

/// A stored conversation of a customer the batch identifies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoredConversation {
    pub channel: i64,
    pub customer: i64,
    pub thread_key: Option<String>,
    pub state: ConversationState,
}

/// One of our replies, found by the idempotency key an echo carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoredReply {
    pub outbox: i64,
    pub message: i64,
    pub conversation: i64,
    /// The customer whose conversation holds it.
    pub customer: i64,
    /// Whether the outbox row is already `sent`.
    pub sent: bool,
    pub external_id: Option<String>,
}

/// The first free id of each table whose new rows refer to each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct NextIds {
    pub customer: i64,
    pub identity: i64,
    pub conversation: i64,
    pub message: i64,
    pub event: i64,
}

/// What the store holds of the rows one batch touches. A backend loads at least: the batch's
/// channels; the messages named by `(channel, external id)` (the entries' own ids and the ids
/// they answer), with the text of those edited; the authors' identities by
/// `(platform, external id)` and their customers' names; every conversation of those
/// customers on the batch's channels; our replies named by echoes' `(channel, key)`; the
/// journal ids of the batch already applied; and the next free ids.
#[derive(Debug, Clone, Default)]
pub(crate) struct Snapshot {
    pub done: HashSet<i64>,
    pub channels: HashMap<i64, ChannelInfo>,
    pub messages: HashMap<(i64, String), StoredMessage>,
    pub identities: HashMap<(String, String), StoredIdentity>,
    pub customer_names: HashMap<i64, String>,
    pub conversations: HashMap<i64, StoredConversation>,
    pub replies: HashMap<(i64, String), StoredReply>,
    /// The newest stored conversation of each `(channel, thread key)` that a notice names.
    pub threads: HashMap<(i64, String), i64>,
    pub next: NextIds,
}

/// The thread keys the batch's notices name (a backend loads [`Snapshot::threads`] for them).
pub(crate) fn notice_threads(batch: &[Prepared]) -> Vec<&str> {
    batch
        .iter()
        .filter(|p| p.entry.inbound.kind == InboundKind::Notice)
        .filter_map(|p| p.entry.inbound.thread_key.as_deref())
        .collect()
}

/// A customer created by the batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NewCustomer {
    pub id: i64,
    /// The brand of the channel that first heard from them.
    pub brand: i64,
    pub display_name: String,
}

/// An identity created by the batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NewIdentity {
    pub id: i64,
    pub customer: i64,
    pub platform: String,
    pub external_id: String,
    pub handle: Option<String>,
    pub name: Option<String>,
}

/// A conversation created by the batch (created and updated `now`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NewConversation {
    pub id: i64,
    pub brand: i64,
    pub channel: i64,
    pub customer: i64,
    pub thread_key: Option<String>,
    pub state: ConversationState,
}

/// Which way a message went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Way {
    /// From the customer (`in`, delivery `received`).
    In,
    /// From the brand through another tool (`out`, delivery `sent`).
    OutSentElsewhere,
}

/// A message created by the batch, with every later change of the batch folded in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NewMessage {
    pub id: i64,
    pub conversation: i64,
    pub channel: i64,
    pub way: Way,
    pub external_id: String,
    pub author_identity: Option<i64>,
    pub text: String,
    pub in_reply_to: Option<i64>,
    pub created_at: Millis,
    pub received_at: Millis,
    pub analysis: Option<String>,
    /// The analysis, typed, for its own columns.
    pub facts: Option<MessageAnalysis>,
    pub place_kind: Option<&'static str>,
    pub place_url: Option<String>,
    pub removed: bool,
}

/// A change to a stored message, in batch order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum MessageChange {
    /// New text (reindexed for search); the analysis is replaced only when there is one.
    Edited {
        id: i64,
        text: String,
        analysis: Option<String>,
        facts: Option<MessageAnalysis>,
    },
    /// Marked removed, never deleted.
    Removed { id: i64 },
    /// Our reply reached the platform: delivery `sent`, no error, this platform id.
    Delivered { id: i64, external_id: String },
}

/// A timeline event (at `now`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NewEvent {
    pub id: i64,
    pub conversation: i64,
    pub kind: EventKind,
    pub message: Option<i64>,
    pub detail: String,
}

/// Everything one batch writes, in the order foreign keys need: customers, identities,
/// conversations, messages (and their search terms), then updates and events.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct WritePlan {
    pub customers: Vec<NewCustomer>,
    /// Stored customers whose name follows the platform: `(id, display name)`.
    pub renamed_customers: Vec<(i64, String)>,
    pub identities: Vec<NewIdentity>,
    /// Stored identities with a new handle or name: `(id, handle, name)`, final values.
    pub identity_updates: Vec<(i64, Option<String>, Option<String>)>,
    pub conversations: Vec<NewConversation>,
    /// Stored conversations the batch changed, with their final state.
    pub conversation_updates: Vec<(i64, ConversationState)>,
    pub messages: Vec<NewMessage>,
    pub message_changes: Vec<MessageChange>,
    /// Outbox rows to mark `sent` (an echo of our reply).
    pub outbox_sent: Vec<i64>,
    pub events: Vec<NewEvent>,
    /// The journal ids applied by this plan, in batch order.
    pub processed: Vec<i64>,
    /// What became of each applied entry, in batch order.
    pub applied: Vec<Applied>,
    /// The first free ids after this plan.
    pub next: NextIds,
}

/// Why a batch cannot be planned: the snapshot lacks a row it should hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Missing(pub &'static str);

/// Plans `batch` against `snapshot` (see the module documentation for the rules).
pub(crate) fn plan(
    snapshot: Snapshot,
    batch: &[Prepared],
    sla: &SlaPolicy,
) -> Result<WritePlan, Missing> {
    let mut planner = Planner::new(snapshot, sla);
    let mut seen = HashSet::with_capacity(batch.len());
    for p in batch {
        let id = p.entry.id;
        if planner.s.done.contains(&id) || !seen.insert(id) {
            continue;
        }
        let (conversation, message) = match p.entry.inbound.kind {
            InboundKind::Message => planner.message(p)?,
            InboundKind::Echo => planner.echo(p)?,
            InboundKind::Edited | InboundKind::Removed => planner.change(p)?,
            InboundKind::Notice => planner.notice(p),
            // Kept in the journal for a later version to read; nothing to show.
            InboundKind::Unread => (None, None),
        };
        planner.out.processed.push(id);
        planner.out.applied.push(Applied {
            journal_id: id,
            conversation_id: conversation.map(ConversationId),
            message_id: message.map(MessageId),
        });
    }
    Ok(planner.finish())
}

/// A conversation as the batch sees it.
struct Conv {
    channel: i64,
    customer: i64,
    thread_key: Option<String>,
    state: ConversationState,
    /// Created by this batch (with its brand), else stored.
    new: Option<i64>,
    changed: bool,
}

struct Planner<'a> {
    s: Snapshot,
    sla: &'a SlaPolicy,
    convs: BTreeMap<i64, Conv>,
    /// Conversation ids by customer.
    convs_of: HashMap<i64, Vec<i64>>,
    /// Customers created by this batch: id to index in `out.customers`.
    new_customers: HashMap<i64, usize>,
    renamed: BTreeMap<i64, String>,
    /// Identities created by this batch: key to index in `out.identities`.
    new_identities: HashMap<(String, String), usize>,
    identity_updates: BTreeMap<i64, (Option<String>, Option<String>)>,
    /// Messages created by this batch: id to index in `out.messages`.
    new_messages: HashMap<i64, usize>,
    out: WritePlan,
}

type Placed = (Option<i64>, Option<i64>);

impl<'a> Planner<'a> {
    fn new(mut s: Snapshot, sla: &'a SlaPolicy) -> Self {
        let mut convs = BTreeMap::new();
        let mut convs_of: HashMap<i64, Vec<i64>> = HashMap::new();
        for (id, c) in std::mem::take(&mut s.conversations) {
            convs_of.entry(c.customer).or_default().push(id);
            convs.insert(
                id,
                Conv {
                    channel: c.channel,
                    customer: c.customer,
                    thread_key: c.thread_key,
                    state: c.state,
                    new: None,
                    changed: false,
                },
            );
        }
        Self {
            s,
            sla,
            convs,
            convs_of,
            new_customers: HashMap::new(),
            renamed: BTreeMap::new(),
            new_identities: HashMap::new(),
            identity_updates: BTreeMap::new(),
            new_messages: HashMap::new(),
            out: WritePlan::default(),
        }
    }

    fn finish(mut self) -> WritePlan {
        self.out.renamed_customers = self.renamed.into_iter().collect();
        self.out.identity_updates = self
            .identity_updates
            .into_iter()
            .map(|(id, (handle, name))| (id, handle, name))
            .collect();
        for (id, c) in self.convs {
            match c.new {
                Some(brand) => self.out.conversations.push(NewConversation {
                    id,
                    brand,
                    channel: c.channel,
                    customer: c.customer,
                    thread_key: c.thread_key,
                    state: c.state,
                }),
                None if c.changed => self.out.conversation_updates.push((id, c.state)),
                None => {}
            }
        }
        self.out.next = self.s.next;
        self.out
    }

    fn event(&mut self, conversation: i64, kind: EventKind, message: Option<i64>, detail: &str) {
        let id = self.s.next.event;
        self.s.next.event += 1;
        self.out.events.push(NewEvent {
            id,
            conversation,
            kind,
            message,
            detail: detail.to_owned(),
        });
    }

    fn channel(&self, id: i64) -> Result<ChannelInfo, Missing> {
        self.s.channels.get(&id).cloned().ok_or(Missing("channel"))
    }

    /// A new customer message: identified, threaded, prioritised, stored.
    fn message(&mut self, p: &Prepared) -> Result<Placed, Missing> {
        let e = &p.entry;
        let inb = &e.inbound;
        let channel = e.channel_id.0;
        if let Some(m) = self.s.messages.get(&(channel, inb.external_id.clone())) {
            return Ok((Some(m.conversation), Some(m.id)));
        }
        let info = self.channel(channel)?;
        let (identity, customer) = self.identify(&info, &inb.author)?;
        let (threaded, reply_to) = self.thread(
            channel,
            customer,
            inb.in_reply_to.as_deref(),
            inb.thread_key.as_deref(),
        );
        let priority = Priority::from_urgency(p.urgency);
        let due = self.sla.reply_due(priority, e.received_at);
        let line = first_line(&inb.text);
        let conversation = match threaded {
            Some(id) => {
                self.reopen(id)?;
                let c = self.convs.get_mut(&id).ok_or(Missing("conversation"))?;
                let s = &mut c.state;
                // While a message waits, priority only rises; once everything was answered
                // it follows the new message alone, so an old emergency does not linger.
                s.priority = match s.waiting_since {
                    None => priority.rank(),
                    Some(_) => s.priority.min(priority.rank()),
                };
                s.waiting_since = s.waiting_since.or(Some(e.received_at));
                s.reply_due = Some(s.reply_due.unwrap_or(due).min(due));
                s.first_line = line;
                s.last_message_at = s.last_message_at.max(e.received_at);
                c.changed = true;
                id
            }
            None => {
                let id = self.s.next.conversation;
                self.s.next.conversation += 1;
                self.convs_of.entry(customer).or_default().push(id);
                self.convs.insert(
                    id,
                    Conv {
                        channel,
                        customer,
                        thread_key: inb.thread_key.clone(),
                        state: ConversationState {
                            status: ConversationStatus::Open,
                            priority: priority.rank(),
                            waiting_since: Some(e.received_at),
                            reply_due: Some(due),
                            first_line: line,
                            last_message_at: e.received_at,
                        },
                        new: Some(info.brand),
                        changed: true,
                    },
                );
                id
            }
        };
        let message = self.new_message(
            p,
            NewMessage {
                id: 0,
                conversation,
                channel,
                way: Way::In,
                external_id: inb.external_id.clone(),
                author_identity: Some(identity),
                text: inb.text.clone(),
                in_reply_to: reply_to,
                created_at: inb.created_at,
                received_at: e.received_at,
                analysis: p.analysis.clone(),
                facts: p.analysis.as_deref().and_then(analysis_from_json),
                place_kind: inb.place.as_ref().map(|pl| pl.kind.as_str()),
                place_url: inb.place.as_ref().and_then(|pl| pl.url.clone()),
                removed: false,
            },
            customer,
        );
        self.event(conversation, EventKind::MessageReceived, Some(message), "");
        Ok((Some(conversation), Some(message)))
    }

    /// Adds `m` (its id handed out here) and makes it findable by later entries.
    fn new_message(&mut self, p: &Prepared, mut m: NewMessage, customer: i64) -> i64 {
        let id = self.s.next.message;
        self.s.next.message += 1;
        m.id = id;
        self.s.messages.insert(
            (m.channel, p.entry.inbound.external_id.clone()),
            StoredMessage {
                id,
                conversation: m.conversation,
                customer,
                text: Some(m.text.clone()),
            },
        );
        self.new_messages.insert(id, self.out.messages.len());
        self.out.messages.push(m);
        id
    }

    /// A conversation that is not open opens, with an event saying so.
    fn reopen(&mut self, id: i64) -> Result<(), Missing> {
        let c = self.convs.get_mut(&id).ok_or(Missing("conversation"))?;
        let was = c.state.status;
        if was == ConversationStatus::Open {
            return Ok(());
        }
        c.state.status = ConversationStatus::Open;
        c.changed = true;
        let kind = if was == ConversationStatus::Closed {
            EventKind::Reopened
        } else {
            EventKind::StatusChanged
        };
        self.event(id, kind, None, ConversationStatus::Open.as_str());
        Ok(())
    }

    /// Finds or creates the customer behind a platform identity; keeps handle and name
    /// current. Returns `(identity, customer)`.
    fn identify(&mut self, channel: &ChannelInfo, author: &Author) -> Result<(i64, i64), Missing> {
        let key = (channel.platform.clone(), author.platform_id.clone());
        let Some(known) = self.s.identities.get_mut(&key) else {
            let customer = self.s.next.customer;
            let identity = self.s.next.identity;
            self.s.next.customer += 1;
            self.s.next.identity += 1;
            self.new_customers
                .insert(customer, self.out.customers.len());
            self.out.customers.push(NewCustomer {
                id: customer,
                brand: channel.brand,
                display_name: display_name(
                    &author.platform_id,
                    author.handle.as_ref(),
                    author.name.as_ref(),
                ),
            });
            self.new_identities
                .insert(key.clone(), self.out.identities.len());
            self.out.identities.push(NewIdentity {
                id: identity,
                customer,
                platform: key.0.clone(),
                external_id: key.1.clone(),
                handle: author.handle.clone(),
                name: author.name.clone(),
            });
            self.s.identities.insert(
                key,
                StoredIdentity {
                    id: identity,
                    customer,
                    handle: author.handle.clone(),
                    name: author.name.clone(),
                },
            );
            return Ok((identity, customer));
        };
        let found = (known.id, known.customer);
        if author.handle.is_none() && author.name.is_none() {
            return Ok(found);
        }
        // The customer's name follows the platform while nobody chose another one.
        let before = display_name(
            &author.platform_id,
            known.handle.as_ref(),
            known.name.as_ref(),
        );
        let handle = author.handle.clone().or_else(|| known.handle.clone());
        let name = author.name.clone().or_else(|| known.name.clone());
        let after = display_name(&author.platform_id, handle.as_ref(), name.as_ref());
        let changed = (handle != known.handle) || (name != known.name);
        known.handle.clone_from(&handle);
        known.name.clone_from(&name);
        if changed {
            match self.new_identities.get(&key) {
                Some(&i) => {
                    let new = &mut self.out.identities[i];
                    new.handle = handle;
                    new.name = name;
                }
                None => {
                    self.identity_updates.insert(found.0, (handle, name));
                }
            }
        }
        if after != before {
            let customer = found.1;
            match self.new_customers.get(&customer) {
                Some(&i) => {
                    let c = &mut self.out.customers[i];
                    if c.display_name == before {
                        c.display_name = after;
                    }
                }
                None => {
                    let current = self
                        .s
                        .customer_names
                        .get_mut(&customer)
                        .ok_or(Missing("customer"))?;
                    if *current == before {
                        current.clone_from(&after);
                        self.renamed.insert(customer, after);
                    }
                }
            }
        }
        Ok(found)
    }

    /// Which conversation a message of `customer` belongs to, and the stored message it
    /// answers: see the module documentation.
    fn thread(
        &self,
        channel: i64,
        customer: i64,
        in_reply_to: Option<&str>,
        thread_key: Option<&str>,
    ) -> (Option<i64>, Option<i64>) {
        let mut reply_to = None;
        if let Some(ext) = in_reply_to
            && let Some(m) = self.s.messages.get(&(channel, ext.to_owned()))
        {
            // Someone answering another customer's comment (or our reply to them) is a
            // customer of their own: the link is kept, the conversation is not shared.
            if m.customer == customer {
                return (Some(m.conversation), Some(m.id));
            }
            reply_to = Some(m.id);
        }
        let mine = self.convs_of.get(&customer).map_or(&[][..], Vec::as_slice);
        let on_channel = mine
            .iter()
            .filter_map(|id| self.convs.get(id).map(|c| (*id, c)))
            .filter(|(_, c)| c.channel == channel);
        if let Some(key) = thread_key
            && let Some((id, _)) = on_channel
                .clone()
                .filter(|(_, c)| c.thread_key.as_deref() == Some(key))
                .max_by_key(|(id, _)| *id)
        {
            return (Some(id), reply_to);
        }
        let newest = on_channel
            .min_by_key(|(id, c)| (c.state.status == ConversationStatus::Closed, Reverse(*id)))
            .map(|(id, _)| id);
        (newest, reply_to)
    }

    /// An echo: the confirmation of one of our replies, or a message the brand sent from
    /// another tool, recorded as sent in the customer's conversation.
    fn echo(&mut self, p: &Prepared) -> Result<Placed, Missing> {
        let e = &p.entry;
        let inb = &e.inbound;
        let channel = e.channel_id.0;
        if let Some(m) = self.s.messages.get(&(channel, inb.external_id.clone())) {
            return Ok((Some(m.conversation), Some(m.id)));
        }
        if let Some(key) = &inb.outbox_key
            && let Some(reply) = self.s.replies.get(&(channel, key.clone())).cloned()
        {
            self.confirm(channel, key, &reply, &inb.external_id);
            return Ok((Some(reply.conversation), Some(reply.message)));
        }
        let info = self.channel(channel)?;
        // For an echo, `author` is the customer the brand wrote to.
        let (_, customer) = self.identify(&info, &inb.author)?;
        let (threaded, reply_to) = self.thread(
            channel,
            customer,
            inb.in_reply_to.as_deref(),
            inb.thread_key.as_deref(),
        );
        let Some(conversation) = threaded else {
            return Ok((None, None));
        };
        let message = self.new_message(
            p,
            NewMessage {
                id: 0,
                conversation,
                channel,
                way: Way::OutSentElsewhere,
                external_id: inb.external_id.clone(),
                author_identity: None,
                text: inb.text.clone(),
                in_reply_to: reply_to,
                created_at: inb.created_at,
                received_at: e.received_at,
                analysis: None,
                facts: None,
                place_kind: None,
                place_url: None,
                removed: false,
            },
            customer,
        );
        let c = self
            .convs
            .get_mut(&conversation)
            .ok_or(Missing("conversation"))?;
        c.state.waiting_since = None;
        c.state.reply_due = None;
        c.changed = true;
        self.event(
            conversation,
            EventKind::ReplySent,
            Some(message),
            "sent elsewhere",
        );
        Ok((Some(conversation), Some(message)))
    }

    /// Our reply reached the platform, as its echo (or delivery report) says.
    fn confirm(&mut self, channel: i64, key: &str, reply: &StoredReply, platform_id: &str) {
        let external_id = reply
            .external_id
            .clone()
            .unwrap_or_else(|| platform_id.to_owned());
        self.out.message_changes.push(MessageChange::Delivered {
            id: reply.message,
            external_id: external_id.clone(),
        });
        self.s
            .messages
            .entry((channel, external_id.clone()))
            .or_insert_with(|| StoredMessage {
                id: reply.message,
                conversation: reply.conversation,
                customer: reply.customer,
                text: None,
            });
        if !reply.sent {
            self.out.outbox_sent.push(reply.outbox);
            self.event(
                reply.conversation,
                EventKind::ReplySent,
                Some(reply.message),
                "echo",
            );
        }
        if let Some(r) = self.s.replies.get_mut(&(channel, key.to_owned())) {
            r.sent = true;
            r.external_id = Some(external_id);
        }
    }

    /// A notice goes on the timeline of the newest conversation of its platform thread on the
    /// channel, stored or opened earlier in the batch; without one it is done as is. Nothing
    /// else about the conversation changes.
    fn notice(&mut self, p: &Prepared) -> Placed {
        let inb = &p.entry.inbound;
        let channel = p.entry.channel_id.0;
        let Some(key) = inb.thread_key.as_deref() else {
            return (None, None);
        };
        let in_batch = self
            .convs
            .iter()
            .filter(|(_, c)| c.channel == channel && c.thread_key.as_deref() == Some(key))
            .map(|(id, _)| *id)
            .max();
        let stored = self.s.threads.get(&(channel, key.to_owned())).copied();
        let Some(conversation) = in_batch.max(stored) else {
            return (None, None);
        };
        self.event(conversation, EventKind::Notice, None, &inb.text);
        (Some(conversation), None)
    }

    /// An edit or removal of a message we hold; one of an unknown message is done as is.
    fn change(&mut self, p: &Prepared) -> Result<Placed, Missing> {
        let inb = &p.entry.inbound;
        let key = (p.entry.channel_id.0, inb.external_id.clone());
        let Some(m) = self.s.messages.get_mut(&key) else {
            return Ok((None, None));
        };
        let (id, conversation) = (m.id, m.conversation);
        let new = self.new_messages.get(&id).copied();
        if inb.kind == InboundKind::Removed {
            match new {
                Some(i) => self.out.messages[i].removed = true,
                None => self.out.message_changes.push(MessageChange::Removed { id }),
            }
            self.event(conversation, EventKind::MessageRemoved, Some(id), "");
            return Ok((Some(conversation), Some(id)));
        }
        let old = m
            .text
            .replace(inb.text.clone())
            .ok_or(Missing("message text"))?;
        match new {
            Some(i) => {
                let row = &mut self.out.messages[i];
                row.text.clone_from(&inb.text);
                if p.analysis.is_some() {
                    row.analysis.clone_from(&p.analysis);
                    row.facts = p.analysis.as_deref().and_then(analysis_from_json);
                }
            }
            None => self.out.message_changes.push(MessageChange::Edited {
                id,
                text: inb.text.clone(),
                analysis: p.analysis.clone(),
                facts: p.analysis.as_deref().and_then(analysis_from_json),
            }),
        }
        // The earlier wording stays on the timeline: what was said can be dug up later.
        self.event(conversation, EventKind::MessageEdited, Some(id), &old);
        Ok((Some(conversation), Some(id)))
    }
}

/// A delivery report names one of our replies by its key: the same confirmation as an echo
/// carrying it, planned alone (see `Outbox::confirm_outbox_by_key`).
pub(crate) fn confirm_reply(
    reply: StoredReply,
    channel: i64,
    key: &str,
    platform_id: &str,
    next: NextIds,
) -> WritePlan {
    let mut snapshot = Snapshot {
        next,
        ..Snapshot::default()
    };
    snapshot
        .replies
        .insert((channel, key.to_owned()), reply.clone());
    let sla = SlaPolicy::default();
    let mut planner = Planner::new(snapshot, &sla);
    planner.confirm(channel, key, &reply, platform_id);
    planner.finish()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    //! Table tests: a snapshot and a batch in, the plan written out as text.

    use std::fmt::Write;

    use balie_core::{ChannelId, Inbound, Place, PlaceKind};

    use super::*;
    use crate::JournalEntry;

    const T0: Millis = 1_700_000_000_000;
    const MIN: Millis = 60_000;

    fn sla() -> SlaPolicy {
        SlaPolicy::default()
    }

    /// A customer message `ext` from `who` on channel 1, journal id `id`, urgency `u`.
    fn msg(id: i64, ext: &str, who: &str, u: u8) -> Prepared {
        Prepared {
            entry: JournalEntry {
                id,
                channel_id: ChannelId(1),
                inbound: Inbound {
                    external_id: ext.to_owned(),
                    kind: InboundKind::Message,
                    author: Author {
                        platform_id: who.to_owned(),
                        handle: None,
                        name: None,
                    },
                    text: format!("text of {ext}"),
                    in_reply_to: None,
                    thread_key: None,
                    place: None,
                    created_at: T0,
                    account_id: None,
                    attachments: Vec::new(),
                    revision: None,
                    outbox_key: None,
                },
                received_at: T0 + id * MIN,
            },
            analysis: None,
            urgency: u,
        }
    }

    fn with(mut p: Prepared, f: impl FnOnce(&mut Inbound)) -> Prepared {
        f(&mut p.entry.inbound);
        p
    }

    fn kind(p: Prepared, kind: InboundKind) -> Prepared {
        with(p, |i| i.kind = kind)
    }

    /// Channel 1 (brand 1, `x`), nothing else stored; ids start at 10.
    fn empty() -> Snapshot {
        let mut s = Snapshot::default();
        s.channels.insert(
            1,
            ChannelInfo {
                brand: 1,
                platform: "x".into(),
            },
        );
        s.next = NextIds {
            customer: 10,
            identity: 10,
            conversation: 10,
            message: 10,
            event: 10,
        };
        s
    }

    /// `empty()` plus customer 5 (identity 5 of `kim`, named "Kim") with conversation 7 on
    /// channel 1 in `status`, holding message 70 (`m70`), waiting since T0 at priority
    /// `priority` if `waiting`.
    fn kim(status: ConversationStatus, waiting: bool, priority: i64) -> Snapshot {
        let mut s = empty();
        s.identities.insert(
            ("x".into(), "kim".into()),
            StoredIdentity {
                id: 5,
                customer: 5,
                handle: None,
                name: Some("Kim".into()),
            },
        );
        s.customer_names.insert(5, "Kim".into());
        s.conversations.insert(
            7,
            StoredConversation {
                channel: 1,
                customer: 5,
                thread_key: None,
                state: ConversationState {
                    status,
                    priority,
                    waiting_since: waiting.then_some(T0),
                    reply_due: waiting.then_some(T0 + 60 * MIN),
                    first_line: "old".into(),
                    last_message_at: T0,
                },
            },
        );
        s.messages.insert(
            (1, "m70".into()),
            StoredMessage {
                id: 70,
                conversation: 7,
                customer: 5,
                text: Some("old".into()),
            },
        );
        s
    }

    fn render(plan: &WritePlan) -> String {
        let mut o = String::new();
        for c in &plan.customers {
            writeln!(o, "customer {} {:?}", c.id, c.display_name).unwrap();
        }
        for (id, name) in &plan.renamed_customers {
            writeln!(o, "rename customer {id} {name:?}").unwrap();
        }
        for i in &plan.identities {
            writeln!(
                o,
                "identity {} of {} {}:{} {:?} {:?}",
                i.id, i.customer, i.platform, i.external_id, i.handle, i.name
            )
            .unwrap();
        }
        for (id, h, n) in &plan.identity_updates {
            writeln!(o, "update identity {id} {h:?} {n:?}").unwrap();
        }
        let state = |s: &ConversationState| {
            format!(
                "{} p{} waiting {:?} due {:?} line {:?} last {}",
                s.status.as_str(),
                s.priority,
                s.waiting_since.map(|t| (t - T0) / MIN),
                s.reply_due.map(|t| (t - T0) / MIN),
                s.first_line,
                (s.last_message_at - T0) / MIN
            )
        };
        for c in &plan.conversations {
            writeln!(
                o,
                "conversation {} of {} key {:?}: {}",
                c.id,
                c.customer,
                c.thread_key,
                state(&c.state)
            )
            .unwrap();
        }
        for (id, s) in &plan.conversation_updates {
            writeln!(o, "update conversation {id}: {}", state(s)).unwrap();
        }
        for m in &plan.messages {
            writeln!(
                o,
                "message {} in {} {:?} {} by {:?} reply_to {:?} text {:?}{}",
                m.id,
                m.conversation,
                m.way,
                m.external_id,
                m.author_identity,
                m.in_reply_to,
                m.text,
                if m.removed { " removed" } else { "" }
            )
            .unwrap();
        }
        for c in &plan.message_changes {
            writeln!(o, "change {c:?}").unwrap();
        }
        for id in &plan.outbox_sent {
            writeln!(o, "outbox {id} sent").unwrap();
        }
        for e in &plan.events {
            writeln!(
                o,
                "event {} {} {} {:?} {:?}",
                e.id,
                e.conversation,
                e.kind.as_str(),
                e.message,
                e.detail
            )
            .unwrap();
        }
        for a in &plan.applied {
            writeln!(
                o,
                "applied {} -> {:?} {:?}",
                a.journal_id,
                a.conversation_id.map(|c| c.0),
                a.message_id.map(|m| m.0)
            )
            .unwrap();
        }
        o
    }

    #[track_caller]
    fn check(snapshot: Snapshot, batch: &[Prepared], expect: &str) {
        let plan = plan(snapshot, batch, &sla()).unwrap();
        let got = render(&plan);
        let want: String = expect
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(|l| format!("{l}\n"))
            .collect();
        assert_eq!(got, want, "\n--- got ---\n{got}");
    }

    #[test]
    fn a_first_message_makes_a_customer_and_a_conversation() {
        check(
            empty(),
            &[msg(1, "a", "kim", 30)],
            r#"
            customer 10 "kim"
            identity 10 of 10 x:kim None None
            conversation 10 of 10 key None: open p2 waiting Some(1) due Some(31) line "text of a" last 1
            message 10 in 10 In a by Some(10) reply_to None text "text of a"
            event 10 10 message_received Some(10) ""
            applied 1 -> Some(10) Some(10)
            "#,
        );
    }

    #[test]
    fn a_second_message_in_the_batch_joins_the_first_and_priority_only_rises() {
        check(
            empty(),
            &[msg(1, "a", "kim", 90), msg(2, "b", "kim", 30)],
            r#"
            customer 10 "kim"
            identity 10 of 10 x:kim None None
            conversation 10 of 10 key None: open p0 waiting Some(1) due Some(16) line "text of b" last 2
            message 10 in 10 In a by Some(10) reply_to None text "text of a"
            message 11 in 10 In b by Some(10) reply_to None text "text of b"
            event 10 10 message_received Some(10) ""
            event 11 10 message_received Some(11) ""
            applied 1 -> Some(10) Some(10)
            applied 2 -> Some(10) Some(11)
            "#,
        );
    }

    #[test]
    fn a_closed_conversation_is_reopened_and_an_answered_one_follows_the_new_priority() {
        check(
            kim(ConversationStatus::Closed, false, 0),
            &[msg(3, "c", "kim", 30)],
            r#"
            update conversation 7: open p2 waiting Some(3) due Some(33) line "text of c" last 3
            message 10 in 7 In c by Some(5) reply_to None text "text of c"
            event 10 7 reopened None "open"
            event 11 7 message_received Some(10) ""
            applied 3 -> Some(7) Some(10)
            "#,
        );
    }

    #[test]
    fn a_pending_conversation_opens_with_a_status_change_and_keeps_a_higher_priority() {
        check(
            kim(ConversationStatus::Pending, true, 1),
            &[msg(3, "c", "kim", 30)],
            r#"
            update conversation 7: open p1 waiting Some(0) due Some(33) line "text of c" last 3
            message 10 in 7 In c by Some(5) reply_to None text "text of c"
            event 10 7 status_changed None "open"
            event 11 7 message_received Some(10) ""
            applied 3 -> Some(7) Some(10)
            "#,
        );
    }

    #[test]
    fn a_reply_to_another_customers_message_keeps_the_link_in_a_conversation_of_their_own() {
        check(
            kim(ConversationStatus::Open, true, 2),
            &[with(msg(1, "a", "lou", 30), |i| {
                i.in_reply_to = Some("m70".into());
            })],
            r#"
            customer 10 "lou"
            identity 10 of 10 x:lou None None
            conversation 10 of 10 key None: open p2 waiting Some(1) due Some(31) line "text of a" last 1
            message 10 in 10 In a by Some(10) reply_to Some(70) text "text of a"
            event 10 10 message_received Some(10) ""
            applied 1 -> Some(10) Some(10)
            "#,
        );
    }

    #[test]
    fn a_notice_goes_on_its_threads_newest_conversation_and_opens_none() {
        let mut s = empty();
        s.threads.insert((1, "chat-1".into()), 7);
        let notice = |id, ext: &str, key: &str| {
            with(kind(msg(id, ext, "bob", 90), InboundKind::Notice), |i| {
                i.thread_key = Some(key.into());
            })
        };
        check(
            s,
            &[
                notice(1, "n1", "chat-1"),
                notice(2, "n2", "chat-2"),
                with(msg(3, "a", "lou", 30), |i| {
                    i.thread_key = Some("chat-2".into())
                }),
                notice(4, "n4", "chat-2"),
                kind(msg(5, "u", "", 30), InboundKind::Unread),
            ],
            r#"
            customer 10 "lou"
            identity 10 of 10 x:lou None None
            conversation 10 of 10 key Some("chat-2"): open p2 waiting Some(3) due Some(33) line "text of a" last 3
            message 10 in 10 In a by Some(10) reply_to None text "text of a"
            event 10 7 notice None "text of n1"
            event 11 10 message_received Some(10) ""
            event 12 10 notice None "text of n4"
            applied 1 -> Some(7) None
            applied 2 -> None None
            applied 3 -> Some(10) Some(10)
            applied 4 -> Some(10) None
            applied 5 -> None None
            "#,
        );
    }

    #[test]
    fn a_thread_key_picks_that_threads_conversation_over_the_newest() {
        let mut s = kim(ConversationStatus::Open, false, 2);
        if let Some(c) = s.conversations.get_mut(&7) {
            c.thread_key = Some("post-1".into());
        }
        s.conversations.insert(
            8,
            StoredConversation {
                channel: 1,
                customer: 5,
                thread_key: Some("post-2".into()),
                state: ConversationState {
                    status: ConversationStatus::Open,
                    priority: 2,
                    waiting_since: None,
                    reply_due: None,
                    first_line: "other".into(),
                    last_message_at: T0,
                },
            },
        );
        check(
            s,
            &[
                with(msg(1, "a", "kim", 30), |i| {
                    i.thread_key = Some("post-1".into());
                }),
                with(msg(2, "b", "kim", 30), |i| {
                    i.thread_key = Some("post-3".into());
                }),
            ],
            r#"
            update conversation 7: open p2 waiting Some(1) due Some(31) line "text of a" last 1
            update conversation 8: open p2 waiting Some(2) due Some(32) line "text of b" last 2
            message 10 in 7 In a by Some(5) reply_to None text "text of a"
            message 11 in 8 In b by Some(5) reply_to None text "text of b"
            event 10 7 message_received Some(10) ""
            event 11 8 message_received Some(11) ""
            applied 1 -> Some(7) Some(10)
            applied 2 -> Some(8) Some(11)
            "#,
        );
    }

    #[test]
    fn the_name_follows_the_platform_unless_someone_chose_one() {
        let named = |p: Prepared| {
            with(p, |i| {
                i.author.name = Some("Kim B".into());
                i.author.handle = Some("@kim".into());
            })
        };
        check(
            kim(ConversationStatus::Open, false, 2),
            &[named(msg(1, "a", "kim", 30))],
            r#"
            rename customer 5 "Kim B"
            update identity 5 Some("@kim") Some("Kim B")
            update conversation 7: open p2 waiting Some(1) due Some(31) line "text of a" last 1
            message 10 in 7 In a by Some(5) reply_to None text "text of a"
            event 10 7 message_received Some(10) ""
            applied 1 -> Some(7) Some(10)
            "#,
        );
        let mut chosen = kim(ConversationStatus::Open, false, 2);
        chosen.customer_names.insert(5, "Kim (VIP)".into());
        check(
            chosen,
            &[named(msg(1, "a", "kim", 30))],
            r#"
            update identity 5 Some("@kim") Some("Kim B")
            update conversation 7: open p2 waiting Some(1) due Some(31) line "text of a" last 1
            message 10 in 7 In a by Some(5) reply_to None text "text of a"
            event 10 7 message_received Some(10) ""
            applied 1 -> Some(7) Some(10)
            "#,
        );
    }

    #[test]
    fn a_stored_message_an_applied_entry_and_a_repeat_change_nothing() {
        let mut s = kim(ConversationStatus::Open, false, 2);
        s.done.insert(1);
        check(
            s,
            &[
                msg(1, "new", "kim", 30),
                msg(2, "m70", "kim", 30),
                msg(2, "m70", "kim", 30),
            ],
            "applied 2 -> Some(7) Some(70)",
        );
    }

    #[test]
    fn edits_and_removals_of_new_and_stored_messages() {
        let edit = |id, ext: &str, text: &str| {
            with(kind(msg(id, ext, "kim", 30), InboundKind::Edited), |i| {
                i.text = text.into();
            })
        };
        check(
            kim(ConversationStatus::Open, false, 2),
            &[
                msg(1, "a", "kim", 30),
                edit(2, "a", "new a"),
                edit(3, "m70", "new 70"),
                kind(msg(4, "m70", "kim", 30), InboundKind::Removed),
                edit(5, "unknown", "x"),
            ],
            r#"
            update conversation 7: open p2 waiting Some(1) due Some(31) line "text of a" last 1
            message 10 in 7 In a by Some(5) reply_to None text "new a"
            change Edited { id: 70, text: "new 70", analysis: None, facts: None }
            change Removed { id: 70 }
            event 10 7 message_received Some(10) ""
            event 11 7 message_edited Some(10) "text of a"
            event 12 7 message_edited Some(70) "old"
            event 13 7 message_removed Some(70) ""
            applied 1 -> Some(7) Some(10)
            applied 2 -> Some(7) Some(10)
            applied 3 -> Some(7) Some(70)
            applied 4 -> Some(7) Some(70)
            applied 5 -> None None
            "#,
        );
    }

    #[test]
    fn an_echo_from_another_tool_answers_the_waiting_customer() {
        check(
            kim(ConversationStatus::Open, true, 0),
            &[
                kind(msg(1, "e1", "kim", 30), InboundKind::Echo),
                msg(2, "b", "kim", 30),
            ],
            r#"
            update conversation 7: open p2 waiting Some(2) due Some(32) line "text of b" last 2
            message 10 in 7 OutSentElsewhere e1 by None reply_to None text "text of e1"
            message 11 in 7 In b by Some(5) reply_to None text "text of b"
            event 10 7 reply_sent Some(10) "sent elsewhere"
            event 11 7 message_received Some(11) ""
            applied 1 -> Some(7) Some(10)
            applied 2 -> Some(7) Some(11)
            "#,
        );
    }

    #[test]
    fn an_echo_to_someone_without_a_conversation_only_identifies_them() {
        check(
            empty(),
            &[kind(msg(1, "e1", "lou", 30), InboundKind::Echo)],
            r#"
            customer 10 "lou"
            identity 10 of 10 x:lou None None
            applied 1 -> None None
            "#,
        );
    }

    #[test]
    fn an_echo_with_our_key_confirms_our_reply_once() {
        let mut s = kim(ConversationStatus::Open, false, 2);
        s.replies.insert(
            (1, "key-1".into()),
            StoredReply {
                outbox: 3,
                message: 71,
                conversation: 7,
                customer: 5,
                sent: false,
                external_id: None,
            },
        );
        let echo = |id, ext: &str| {
            with(kind(msg(id, ext, "kim", 30), InboundKind::Echo), |i| {
                i.outbox_key = Some("key-1".into());
            })
        };
        check(
            s,
            &[
                echo(1, "p1"),
                echo(2, "p2"),
                with(msg(3, "b", "kim", 30), |i| {
                    i.in_reply_to = Some("p1".into())
                }),
            ],
            r#"
            update conversation 7: open p2 waiting Some(3) due Some(33) line "text of b" last 3
            message 10 in 7 In b by Some(5) reply_to Some(71) text "text of b"
            change Delivered { id: 71, external_id: "p1" }
            change Delivered { id: 71, external_id: "p1" }
            outbox 3 sent
            event 10 7 reply_sent Some(71) "echo"
            event 11 7 message_received Some(10) ""
            applied 1 -> Some(7) Some(71)
            applied 2 -> Some(7) Some(71)
            applied 3 -> Some(7) Some(10)
            "#,
        );
    }

    #[test]
    fn a_message_carries_its_place_and_analysis() {
        let mut p = with(msg(1, "a", "kim", 30), |i| {
            i.place = Some(Place {
                kind: PlaceKind::Comment,
                url: Some("https://x/1".into()),
            });
        });
        p.analysis = Some("{}".into());
        let plan = plan(empty(), &[p], &sla()).unwrap();
        let m = &plan.messages[0];
        assert_eq!(m.place_kind, Some("comment"));
        assert_eq!(m.place_url.as_deref(), Some("https://x/1"));
        assert_eq!(m.analysis.as_deref(), Some("{}"));
        assert_eq!(plan.next.message, 11);
        assert_eq!(plan.next.event, 11);
    }

    #[test]
    fn a_batch_on_an_unknown_channel_is_not_planned() {
        let mut p = msg(1, "a", "kim", 30);
        p.entry.channel_id = ChannelId(9);
        assert_eq!(plan(empty(), &[p], &sla()), Err(Missing("channel")));
    }
}
