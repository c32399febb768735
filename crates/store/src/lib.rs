//! Balie's storage: the [`Store`] interface every backend implements, and its SQLite and
//! PostgreSQL backends.
//!
//! Only this crate knows SQL. [`Store`] is the sum of one role trait per concern: channels
//! ([`Channels`]), the journal and the pipeline's write step ([`Journal`]), conversations
//! and the inbox ([`Conversations`]), full-text search ([`Search`]), the live event log
//! ([`Live`]), the outbox ([`Outbox`]) and users, sessions and API tokens ([`Directory`]).
//! The pipeline's decisions are made once, in `plan`; SQL that is the same in both
//! dialects is written once, in `shared`; `sqlite/` and `postgres/` hold the rest.
//! Bench and test helpers (bulk loads, raw pools, creating databases) are behind the
//! `testing` feature.

mod common;
mod plan;
mod postgres;
mod rows;
mod search;
mod shared;
mod sqlite;

use async_trait::async_trait;
use balie_core::{
    Brand, BrandId, BrandSlug, Channel, ChannelId, ChannelKind, Conversation, ConversationId,
    ConversationStatus, Customer, CustomerId, Event, EventId, EventKind, Inbound, InboundKind,
    Membership, Message, MessageId, Millis, PlaceKind, Role, SlaPolicy, User, UserId,
};
use serde::Serialize;

pub use postgres::PgStore;
pub use search::{search_lexemes, search_terms, stem_query, stem_tsquery};
pub use sqlite::SqliteStore;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0} already exists")]
    Conflict(&'static str),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// One inbound event to journal. `dedupe_key` is unique per channel (see [`dedupe_key`]).
#[derive(Debug, Clone)]
pub struct NewJournalEntry {
    pub channel_id: ChannelId,
    pub inbound: Inbound,
    pub received_at: Millis,
}

/// Whether a journal append stored something new.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    New(i64),
    Duplicate,
}

/// A journalled event waiting for the pipeline.
#[derive(Debug, Clone)]
pub struct JournalEntry {
    pub id: i64,
    pub channel_id: ChannelId,
    pub inbound: Inbound,
    pub received_at: Millis,
}

/// A journal entry with the pipeline's analysis, ready to be written.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub entry: JournalEntry,
    /// Analysis as JSON, stored on the message.
    pub analysis: Option<String>,
    /// 0-100, from the text only; sets priority and the reply deadline.
    pub urgency: u8,
}

/// What the pipeline did with one journal entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub journal_id: i64,
    pub conversation_id: Option<ConversationId>,
    pub message_id: Option<MessageId>,
}

/// The key under which an inbound event is deduplicated within its channel. A message is
/// keyed by its platform id; an edit by the id and its revision, so a retried edit is one
/// while an edit back to earlier wording is not; an edit without a revision by the new text.
pub fn dedupe_key(inbound: &Inbound) -> String {
    match (inbound.kind, &inbound.revision) {
        (InboundKind::Message, _) => inbound.external_id.clone(),
        (InboundKind::Echo, _) => format!("echo:{}", inbound.external_id),
        (InboundKind::Removed, _) => format!("removed:{}", inbound.external_id),
        (InboundKind::Notice, _) => format!("notice:{}", inbound.external_id),
        (InboundKind::Unread, _) => format!("unread:{}", inbound.external_id),
        (InboundKind::Edited, Some(revision)) => {
            format!("edited:{}:rev:{revision}", inbound.external_id)
        }
        (InboundKind::Edited, None) => {
            // FNV-1a: stable across runs and machines, unlike std's hasher.
            let mut h: u64 = 0xcbf2_9ce4_8422_2325;
            for b in inbound.text.as_bytes() {
                h ^= u64::from(*b);
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
            format!("edited:{}:{h:016x}", inbound.external_id)
        }
    }
}

/// A conversation as the inbox lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InboxRow {
    pub conversation: Conversation,
    pub customer_name: String,
    pub channel_name: String,
    pub channel_kind: ChannelKind,
    pub first_line: String,
    pub last_message_at: Millis,
    /// The text analysis (JSON) of the customer's newest message, as the API shows it.
    pub last_analysis: Option<String>,
    /// The same analysis, typed, for inbox badges.
    #[serde(skip)]
    pub last: Option<balie_core::MessageAnalysis>,
    /// The assigned agent's name, if the conversation is assigned.
    pub assignee_name: Option<String>,
}

/// A message with what the timeline shows about its author.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TimelineMessage {
    #[serde(flatten)]
    pub message: Message,
    /// The message's text analysis, typed (from its columns), for the timeline's badges.
    #[serde(skip)]
    pub analysis: Option<balie_core::MessageAnalysis>,
    pub author_name: String,
    pub channel_name: String,
}

/// Everything the conversation page shows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConversationView {
    pub row: InboxRow,
    pub customer: Customer,
    /// The customer's messages across all their conversations and channels (R9), oldest first.
    pub timeline: Vec<TimelineMessage>,
}

/// One entry of the live stream: an event with the current state it concerns.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LiveEvent {
    pub id: EventId,
    pub kind: EventKind,
    pub conversation: InboxRow,
    pub message: Option<TimelineMessage>,
}

/// A reply to deliver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxItem {
    pub id: i64,
    pub message_id: MessageId,
    pub conversation_id: ConversationId,
    /// The channel the reply goes out on, read with the claim.
    pub channel: Channel,
    pub idempotency_key: String,
    pub text: String,
    pub attempts: i64,
    /// The platform id of the customer message being answered, if any.
    pub reply_to_external_id: Option<String>,
    /// The customer's id on the channel's platform.
    pub recipient_external_id: Option<String>,
    /// When the customer last wrote on this conversation (for platform reply windows).
    pub last_customer_message_at: Option<Millis>,
    /// Where on the platform the answered message was (DM, comment, post), as its connector
    /// said and its message row keeps; decides how a reply goes out (an Instagram DM or a
    /// comment reply).
    pub reply_to_place: Option<PlaceKind>,
}

/// A channel credential as the store keeps it: sealed by the server (an AEAD nonce and
/// ciphertext). The store never sees the plaintext.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedSecret {
    pub nonce: Vec<u8>,
    pub ciphertext: Vec<u8>,
}

impl std::fmt::Debug for SealedSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SealedSecret({} bytes)", self.ciphertext.len())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SearchHit {
    pub message_id: MessageId,
    pub conversation_id: ConversationId,
    pub text: String,
}

#[cfg(feature = "testing")]
/// A customer's conversation with its history, for [`BulkLoad::bulk_load`] (imports and
/// benchmarks): written as is, without the pipeline's analysis, threading or events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulkConversation {
    pub author: balie_core::Author,
    pub status: ConversationStatus,
    pub priority: balie_core::Priority,
    /// Set while the customer waits for an answer.
    pub waiting_since: Option<Millis>,
    pub reply_due: Option<Millis>,
    pub messages: Vec<BulkMessage>,
}

#[cfg(feature = "testing")]
/// One inbound message of a [`BulkConversation`], oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulkMessage {
    pub external_id: String,
    pub text: String,
    pub created_at: Millis,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Backlogs {
    pub journal: i64,
    pub outbox: i64,
}

/// Brands and channels, with their sealed credentials.
#[async_trait]
pub trait Channels {
    /// The brand named `name`, created (with a slug made from the name) if there is none.
    async fn ensure_brand(&self, name: &str, now: Millis) -> Result<BrandId>;
    /// A new brand; `Conflict` if the slug or the name is taken.
    async fn create_brand(&self, slug: &BrandSlug, name: &str, now: Millis) -> Result<Brand>;
    /// Every brand, by id.
    async fn brands(&self) -> Result<Vec<Brand>>;
    async fn brand_by_slug(&self, slug: &str) -> Result<Option<Brand>>;
    async fn create_channel(
        &self,
        brand: balie_core::BrandId,
        kind: ChannelKind,
        name: &str,
        settings: &str,
        now: Millis,
    ) -> Result<Channel>;
    async fn channel(&self, id: ChannelId) -> Result<Option<Channel>>;
    async fn channel_by_name(&self, name: &str) -> Result<Option<Channel>>;
    async fn channels(&self) -> Result<Vec<Channel>>;
    /// Replaces a channel's non-secret settings (JSON text).
    async fn update_channel_settings(&self, channel: ChannelId, settings: &str) -> Result<()>;
    /// Stores (or replaces) one sealed credential of a channel under `name`.
    async fn set_channel_secret(
        &self,
        channel: ChannelId,
        name: &str,
        sealed: &SealedSecret,
        now: Millis,
    ) -> Result<()>;
    /// A channel's sealed credentials by name, in name order.
    async fn channel_secrets(&self, channel: ChannelId) -> Result<Vec<(String, SealedSecret)>>;
}

/// The intake journal and the pipeline's write step.
#[async_trait]
pub trait Journal {
    /// Appends in one durable transaction; returns per entry whether it was new.
    async fn append_journal(&self, entries: &[NewJournalEntry]) -> Result<Vec<Appended>>;
    async fn pending_journal(&self, limit: i64) -> Result<Vec<JournalEntry>>;
    /// Identifies, threads, stores and indexes a batch in one transaction, marking each
    /// journal entry processed. Idempotent: an entry already applied changes nothing.
    async fn apply_journal(
        &self,
        batch: &[Prepared],
        sla: &SlaPolicy,
        now: Millis,
    ) -> Result<Vec<Applied>>;
    async fn backlogs(&self) -> Result<Backlogs>;
}

/// Conversations, the inbox and customers.
#[async_trait]
pub trait Conversations {
    /// Conversations with `status`, most urgent first: waiting ones by priority and deadline.
    /// Every read and write here is scoped to one brand: another brand's conversation or
    /// customer is not found.
    async fn inbox(
        &self,
        brand: BrandId,
        status: ConversationStatus,
        limit: i64,
    ) -> Result<Vec<InboxRow>>;
    /// The conversation, with the customer's messages in the brand's conversations only.
    async fn conversation(
        &self,
        brand: BrandId,
        id: ConversationId,
    ) -> Result<Option<ConversationView>>;
    async fn conversation_messages(
        &self,
        brand: BrandId,
        id: ConversationId,
    ) -> Result<Vec<Message>>;
    /// The conversation's timeline events, oldest first, with their detail (an edited
    /// message's earlier wording, a failed reply's reason, a new status).
    async fn conversation_events(&self, brand: BrandId, id: ConversationId) -> Result<Vec<Event>>;
    async fn set_status(
        &self,
        brand: BrandId,
        id: ConversationId,
        status: ConversationStatus,
        by: Option<UserId>,
        now: Millis,
    ) -> Result<()>;
    /// Gives the conversation to `assignee` (or to nobody), recording who did it. The
    /// assignee must be a member of the brand.
    async fn assign(
        &self,
        brand: BrandId,
        id: ConversationId,
        assignee: Option<UserId>,
        by: Option<UserId>,
        now: Millis,
    ) -> Result<()>;
    async fn update_customer(
        &self,
        brand: BrandId,
        id: CustomerId,
        display_name: &str,
        notes: &str,
    ) -> Result<()>;
}

/// Full-text search over messages.
#[async_trait]
pub trait Search {
    /// Hits in the brand's conversations only.
    async fn search(&self, brand: BrandId, query: &str, limit: i64) -> Result<Vec<SearchHit>>;
}

/// The event log the live stream reads.
#[async_trait]
pub trait Live {
    /// The brand's events after `after` (another brand's are skipped, not counted).
    async fn events_since(
        &self,
        brand: BrandId,
        after: EventId,
        limit: i64,
    ) -> Result<Vec<LiveEvent>>;
    async fn last_event_id(&self) -> Result<EventId>;
    /// Changes after every commit that appended events: this process's at once; on
    /// PostgreSQL other processes' too (`NOTIFY`); on SQLite any other process's write
    /// (`PRAGMA data_version`, within a tenth of a second). Wake on it, then read the log.
    fn changes(&self) -> tokio::sync::watch::Receiver<u64>;
}

/// Replies: queued by a person, claimed and delivered by the outbox worker.
#[async_trait]
pub trait Outbox {
    /// Records a person's reply and queues it, in one transaction. The same idempotency key
    /// twice (a double click, a retried form) yields the first reply, not a second one.
    async fn queue_reply(
        &self,
        brand: BrandId,
        conversation: ConversationId,
        by: UserId,
        text: &str,
        idempotency_key: &str,
        now: Millis,
    ) -> Result<Message>;
    /// Claims due replies (state `sending`) for one delivery attempt each.
    async fn claim_outbox(&self, now: Millis, limit: i64) -> Result<Vec<OutboxItem>>;
    async fn outbox_sent(&self, id: i64, platform_id: Option<&str>, now: Millis) -> Result<()>;
    async fn outbox_retry(
        &self,
        id: i64,
        next_attempt_at: Millis,
        error: &str,
        now: Millis,
    ) -> Result<()>;
    async fn outbox_failed(&self, id: i64, error: &str, now: Millis) -> Result<()>;
    /// Replies left in `sending` by a crash go back to `pending` (see ARCHITECTURE.md).
    async fn recover_outbox(&self) -> Result<u64>;
    /// A claimed reply that may or may not have reached the platform: parked in state
    /// `unknown`, never claimed again. The message shows as failed with `reason`, so a person
    /// checks the platform before sending it again.
    async fn outbox_unknown(&self, id: i64, reason: &str, now: Millis) -> Result<()>;
    /// Replies left in `sending` by a crash on channels of `kinds` (platforms that cannot
    /// drop a repeated send) are parked as by [`Outbox::outbox_unknown`] instead of being
    /// resent; returns how many. Call before [`Outbox::recover_outbox`].
    async fn park_interrupted_outbox(
        &self,
        kinds: &[ChannelKind],
        reason: &str,
        now: Millis,
    ) -> Result<u64>;
    /// A delivery report names one of our replies by its idempotency key (WhatsApp
    /// `biz_opaque_callback_data`): the platform has it, so it is sent, whatever state the
    /// outbox row was in. Returns whether the key was ours on that channel.
    async fn confirm_outbox_by_key(
        &self,
        channel: ChannelId,
        key: &str,
        platform_id: &str,
        now: Millis,
    ) -> Result<bool>;
    /// A delivery report says one of our replies (named by its idempotency key) did not
    /// reach the customer: the reply is marked failed with the platform's reason and a
    /// `reply_failed` event, and is never sent again by itself. Returns whether the key was
    /// ours on that channel and not already failed.
    async fn fail_outbox_by_key(
        &self,
        channel: ChannelId,
        key: &str,
        reason: &str,
        now: Millis,
    ) -> Result<bool>;
}

/// Leases: work that must run in one process at a time (the outbox today; SLA timers,
/// retention runs and pull-channel followers next) is claimed by an owner for a while.
#[async_trait]
pub trait Leases {
    /// Claims `job` for `owner` until `now + ttl`: true when `owner` holds it now (it was
    /// free, ran out, or was already `owner`'s, which renews it), false while another
    /// owner's claim runs. Atomic: of two claims at once, one wins.
    async fn claim(&self, job: &str, owner: &str, ttl: Millis, now: Millis) -> Result<bool>;
    /// Gives `job` up, if `owner` holds it.
    async fn release(&self, job: &str, owner: &str) -> Result<()>;
}

/// Users, sessions and API tokens.
#[async_trait]
pub trait Directory {
    /// A new user, member of no brand yet (see [`Directory::set_membership`]).
    async fn create_user(
        &self,
        email: &str,
        name: &str,
        owner: bool,
        password_hash: &str,
        now: Millis,
    ) -> Result<User>;
    /// Makes `user` a member of `brand` with `role` (or changes their role there).
    async fn set_membership(
        &self,
        user: UserId,
        brand: BrandId,
        role: Role,
        now: Millis,
    ) -> Result<()>;
    /// The brands `user` belongs to, with their role in each, by brand id.
    async fn memberships(&self, user: UserId) -> Result<Vec<Membership>>;
    async fn user_credentials(&self, email: &str) -> Result<Option<(User, String)>>;
    async fn create_session(
        &self,
        user: UserId,
        token_hash: &str,
        expires_at: Millis,
        now: Millis,
    ) -> Result<()>;
    async fn session_user(&self, token_hash: &str, now: Millis) -> Result<Option<User>>;
    async fn delete_session(&self, token_hash: &str) -> Result<()>;
    /// A token that acts for `brand`.
    async fn create_api_token(
        &self,
        name: &str,
        token_hash: &str,
        brand: BrandId,
        now: Millis,
    ) -> Result<()>;
    /// The brand a live (not revoked) token acts for.
    async fn api_token_brand(&self, token_hash: &str) -> Result<Option<BrandId>>;
}

/// The fast path for imports and benchmarks (feature `testing`).
#[cfg(feature = "testing")]
#[async_trait]
pub trait BulkLoad {
    /// Writes whole conversations (customer, identity, conversation, messages, search terms)
    /// on `channel` in one transaction of multi-row inserts. Each author must be new on the
    /// channel's platform and each external id new on the channel. Returns how many messages
    /// were written.
    async fn bulk_load(
        &self,
        channel: ChannelId,
        conversations: &[BulkConversation],
        now: Millis,
    ) -> Result<u64>;
}

/// The bench and test roles when the `testing` feature is on ([`BulkLoad`]), else none.
#[cfg(feature = "testing")]
pub trait Testing: BulkLoad {}
#[cfg(feature = "testing")]
impl<T: BulkLoad> Testing for T {}
/// The bench and test roles when the `testing` feature is on ([`BulkLoad`]), else none.
#[cfg(not(feature = "testing"))]
pub trait Testing {}
#[cfg(not(feature = "testing"))]
impl<T> Testing for T {}

/// The one source of truth: every role at once, so the server keeps one handle.
/// Implementations must pass the contract suite in `tests/`.
pub trait Store:
    Channels
    + Journal
    + Conversations
    + Search
    + Live
    + Outbox
    + Directory
    + Leases
    + Testing
    + Send
    + Sync
    + 'static
{
}

impl<T> Store for T where
    T: Channels
        + Journal
        + Conversations
        + Search
        + Live
        + Outbox
        + Directory
        + Leases
        + Testing
        + Send
        + Sync
        + 'static
{
}
