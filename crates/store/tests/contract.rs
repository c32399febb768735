//! The store contract: what every `Store` backend must do, written once against `&dyn Store`
//! and run here against SQLite and PostgreSQL, each test on a fresh database.
//!
//! Each backend has its own thin `#[tokio::test]` wrappers calling the same `contract::*`
//! checks; nothing in `contract` knows which backend it is talking to. PostgreSQL runs when
//! `BALIE_TEST_POSTGRES_URL` names a server (an admin connection, such as
//! `postgres://postgres@127.0.0.1:5432/postgres`): each test creates a database of its own
//! there and drops it afterwards. Without it the PostgreSQL tests say so and pass, except in
//! CI (`CI=true`), where they fail.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use balie_store::{Channels, Directory, Live, SqliteStore};
use tempfile::TempDir;

/// The checks. Each takes a store on a fresh, migrated, empty database.
mod contract {
    use std::time::{SystemTime, UNIX_EPOCH};

    use balie_core::{
        Author, BrandId, BrandSlug, Channel, ChannelId, ChannelKind, ConversationId,
        ConversationStatus, DeliveryState, Direction, EventId, EventKind, Inbound, InboundKind,
        Message, Millis, Place, PlaceKind, Priority, Role, SlaPolicy, UserId,
    };
    use balie_store::{
        Appended, Applied, BulkConversation, BulkMessage, InboxRow, NewJournalEntry, Prepared,
        SealedSecret, Store, StoreError,
    };

    /// The world's brand: the first made on a fresh database.
    const B: BrandId = BrandId(1);

    /// A fixed arrival time, so deadlines are exact.
    const T0: Millis = 1_700_000_000_000;
    const MINUTE: Millis = 60_000;
    /// An urgency that maps to `Priority::Normal`.
    const NORMAL: u8 = 30;
    const URGENT: u8 = 90;

    fn now() -> Millis {
        let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        i64::try_from(d.as_millis()).unwrap()
    }

    fn author(id: &str) -> Author {
        Author {
            platform_id: id.to_owned(),
            handle: None,
            name: Some(format!("Customer {id}")),
        }
    }

    fn message(external_id: &str, from: &str, text: &str) -> Inbound {
        Inbound {
            external_id: external_id.to_owned(),
            kind: InboundKind::Message,
            author: author(from),
            text: text.to_owned(),
            in_reply_to: None,
            thread_key: None,
            place: None,
            created_at: T0,
            account_id: None,
            attachments: Vec::new(),
            revision: None,
            outbox_key: None,
        }
    }

    fn entry(channel: &Channel, inbound: Inbound, received_at: Millis) -> NewJournalEntry {
        NewJournalEntry {
            channel_id: channel.id,
            inbound,
            received_at,
        }
    }

    /// A brand with two channels of different kinds and one more of the first kind.
    struct World {
        api: Channel,
        api2: Channel,
        x: Channel,
    }

    async fn world(store: &dyn Store) -> World {
        let brand = store.ensure_brand("Bakkerij Jansen", now()).await.unwrap();
        let api = store
            .create_channel(brand, ChannelKind::Api, "api", "{}", now())
            .await
            .unwrap();
        let api2 = store
            .create_channel(brand, ChannelKind::Api, "api-2", "{}", now())
            .await
            .unwrap();
        let x = store
            .create_channel(brand, ChannelKind::X, "x-main", "{}", now())
            .await
            .unwrap();
        World { api, api2, x }
    }

    /// Runs the pipeline's write step over everything pending, as the pipeline would.
    async fn process(store: &dyn Store, urgency: u8, sla: &SlaPolicy) -> Vec<Applied> {
        let batch: Vec<Prepared> = store
            .pending_journal(1000)
            .await
            .unwrap()
            .into_iter()
            .map(|entry| Prepared {
                entry,
                analysis: None,
                urgency,
            })
            .collect();
        store.apply_journal(&batch, sla, now()).await.unwrap()
    }

    /// Journals and processes inbound events with one urgency; returns what was applied.
    async fn ingest(store: &dyn Store, entries: &[NewJournalEntry], urgency: u8) -> Vec<Applied> {
        store.append_journal(entries).await.unwrap();
        process(store, urgency, &SlaPolicy::default()).await
    }

    /// Ingests one customer message and returns its conversation.
    async fn receive(
        store: &dyn Store,
        channel: &Channel,
        inbound: Inbound,
        at: Millis,
    ) -> ConversationId {
        let applied = ingest(store, &[entry(channel, inbound, at)], NORMAL).await;
        assert_eq!(applied.len(), 1, "one entry applied: {applied:?}");
        applied[0].conversation_id.expect("a conversation")
    }

    async fn messages(store: &dyn Store, id: ConversationId) -> Vec<Message> {
        store.conversation_messages(B, id).await.unwrap()
    }

    async fn row(store: &dyn Store, id: ConversationId) -> InboxRow {
        store
            .conversation(B, id)
            .await
            .unwrap()
            .expect("conversation")
            .row
    }

    async fn event_kinds(store: &dyn Store, id: ConversationId) -> Vec<EventKind> {
        store
            .events_since(B, EventId(0), 10_000)
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e.conversation.conversation.id == id)
            .map(|e| e.kind)
            .collect()
    }

    async fn agent(store: &dyn Store) -> UserId {
        member(store, "agent@jansen.nl", "Agent Anne", B).await
    }

    /// A new agent, member of `brand`.
    async fn member(store: &dyn Store, email: &str, name: &str, brand: BrandId) -> UserId {
        let user = store
            .create_user(email, name, false, "hash", now())
            .await
            .unwrap();
        store
            .set_membership(user.id, brand, Role::Agent, now())
            .await
            .unwrap();
        user.id
    }

    // Brands and channels.

    pub async fn channels_have_unique_names(store: &dyn Store) {
        let w = world(store).await;
        let brand = store.ensure_brand("Bakkerij Jansen", now()).await.unwrap();
        assert_eq!(brand, w.api.brand_id, "ensure_brand is idempotent");
        let again = store
            .create_channel(brand, ChannelKind::Email, "api", "{}", now())
            .await;
        assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
        assert_eq!(
            store.channel_by_name("x-main").await.unwrap(),
            Some(w.x.clone())
        );
        assert_eq!(store.channel(w.api.id).await.unwrap(), Some(w.api.clone()));
        assert_eq!(
            store.channels().await.unwrap(),
            vec![w.api.clone(), w.api2.clone(), w.x.clone()]
        );
        assert_eq!(store.channel_by_name("nope").await.unwrap(), None);
    }

    // Journal.

    pub async fn same_inbound_twice_is_journalled_once(store: &dyn Store) {
        let w = world(store).await;
        let e = entry(
            &w.api,
            message("m1", "anna", "Waar blijft mijn pakket?"),
            T0,
        );
        let first = store
            .append_journal(std::slice::from_ref(&e))
            .await
            .unwrap();
        assert!(matches!(first[..], [Appended::New(_)]), "{first:?}");
        let second = store
            .append_journal(std::slice::from_ref(&e))
            .await
            .unwrap();
        assert_eq!(second, vec![Appended::Duplicate]);
        assert_eq!(store.backlogs().await.unwrap().journal, 1);

        let pending = store.pending_journal(100).await.unwrap();
        assert_eq!(pending.len(), 1);
        assert_eq!(
            pending[0].inbound, e.inbound,
            "the journal keeps the inbound"
        );
        assert_eq!(pending[0].received_at, T0);
        let applied = process(store, NORMAL, &SlaPolicy::default()).await;
        assert_eq!(applied.len(), 1);
        assert_eq!(store.backlogs().await.unwrap().journal, 0);
        assert!(store.pending_journal(100).await.unwrap().is_empty());

        // Arriving again after processing is still a duplicate.
        let third = store.append_journal(&[e]).await.unwrap();
        assert_eq!(third, vec![Appended::Duplicate]);
        let conv = applied[0].conversation_id.unwrap();
        assert_eq!(messages(store, conv).await.len(), 1);
    }

    pub async fn duplicates_within_one_batch_are_journalled_once(store: &dyn Store) {
        let w = world(store).await;
        let e = entry(&w.api, message("m1", "anna", "Hallo"), T0);
        let other = entry(&w.api, message("m2", "anna", "Nog iets"), T0);
        let out = store.append_journal(&[e.clone(), other, e]).await.unwrap();
        assert!(
            matches!(out[..], [Appended::New(a), Appended::New(b), Appended::Duplicate] if a < b),
            "{out:?}"
        );
        assert_eq!(store.pending_journal(100).await.unwrap().len(), 2);
    }

    pub async fn same_external_id_on_two_channels_makes_two_messages(store: &dyn Store) {
        let w = world(store).await;
        let out = store
            .append_journal(&[
                entry(&w.api, message("42", "anna", "Hallo via api"), T0),
                entry(&w.x, message("42", "anna", "Hallo via X"), T0),
            ])
            .await
            .unwrap();
        assert!(
            matches!(out[..], [Appended::New(_), Appended::New(_)]),
            "{out:?}"
        );
        let applied = process(store, NORMAL, &SlaPolicy::default()).await;
        assert_eq!(applied.len(), 2);
        let a = applied[0].conversation_id.unwrap();
        let b = applied[1].conversation_id.unwrap();
        assert_ne!(a, b, "different channels, different conversations");
        assert_eq!(messages(store, a).await[0].text, "Hallo via api");
        assert_eq!(messages(store, b).await[0].text, "Hallo via X");
    }

    pub async fn pending_journal_is_oldest_first_and_limited(store: &dyn Store) {
        let w = world(store).await;
        let entries: Vec<_> = (0..5)
            .map(|i| entry(&w.api, message(&format!("m{i}"), "anna", "hoi"), T0 + i))
            .collect();
        store.append_journal(&entries).await.unwrap();
        let pending = store.pending_journal(3).await.unwrap();
        let ids: Vec<_> = pending
            .iter()
            .map(|p| p.inbound.external_id.as_str())
            .collect();
        assert_eq!(ids, ["m0", "m1", "m2"]);
        assert!(pending.windows(2).all(|p| p[0].id < p[1].id));
    }

    // Pipeline: threading.

    pub async fn a_reply_to_a_known_message_joins_its_conversation(store: &dyn Store) {
        let w = world(store).await;
        let conv = receive(store, &w.x, message("t1", "anna", "Eerste tweet"), T0).await;
        // Anna's first conversation is closed, so only `in_reply_to` can lead back to it.
        store
            .set_status(B, conv, ConversationStatus::Closed, None, now())
            .await
            .unwrap();
        let mut reply = message("t2", "anna", "En nog iets");
        reply.in_reply_to = Some("t1".into());
        let joined = receive(store, &w.x, reply, T0 + MINUTE).await;
        assert_eq!(joined, conv);
        let msgs = messages(store, conv).await;
        assert_eq!(msgs.len(), 2);
        assert_eq!(msgs[1].in_reply_to, Some(msgs[0].id));
    }

    /// Bert answering Anna's public comment is Bert's own conversation, linked to hers.
    pub async fn a_reply_to_another_customers_message_is_their_own_conversation(store: &dyn Store) {
        let w = world(store).await;
        let mut first = message("c1", "anna", "Slechte service");
        first.thread_key = Some("post-1".into());
        let anna = receive(store, &w.x, first, T0).await;
        let mut answer = message("c2", "bert", "Bij mij ook!");
        answer.thread_key = Some("post-1".into());
        answer.in_reply_to = Some("c1".into());
        let bert = receive(store, &w.x, answer, T0 + 1).await;
        assert_ne!(anna, bert);
        assert_eq!(messages(store, anna).await.len(), 1);
        let msgs = messages(store, bert).await;
        assert_eq!(msgs[0].in_reply_to, Some(messages(store, anna).await[0].id));
        let view = store.conversation(B, bert).await.unwrap().unwrap();
        assert_eq!(view.customer.identities[0].external_id, "bert");
    }

    pub async fn a_second_message_joins_the_customers_open_conversation(store: &dyn Store) {
        let w = world(store).await;
        let a = receive(store, &w.api, message("m1", "anna", "Hallo"), T0).await;
        let b = receive(
            store,
            &w.api,
            message("m2", "anna", "Is daar iemand?"),
            T0 + 1,
        )
        .await;
        assert_eq!(a, b);
        let texts: Vec<_> = messages(store, a)
            .await
            .into_iter()
            .map(|m| m.text)
            .collect();
        assert_eq!(texts, ["Hallo", "Is daar iemand?"]);
        assert_eq!(row(store, a).await.first_line, "Is daar iemand?");
    }

    pub async fn a_different_customer_gets_a_new_conversation(store: &dyn Store) {
        let w = world(store).await;
        let a = receive(store, &w.api, message("m1", "anna", "Hallo"), T0).await;
        let b = receive(store, &w.api, message("m2", "bert", "Hallo"), T0 + 1).await;
        assert_ne!(a, b);
        assert_ne!(
            row(store, a).await.conversation.customer_id,
            row(store, b).await.conversation.customer_id
        );
    }

    pub async fn a_message_in_a_closed_thread_reopens_it(store: &dyn Store) {
        let w = world(store).await;
        let mut first = message("c1", "anna", "Mijn bestelling is kapot");
        first.thread_key = Some("post-7".into());
        let conv = receive(store, &w.x, first, T0).await;
        let user = agent(store).await;
        store
            .set_status(B, conv, ConversationStatus::Closed, Some(user), now())
            .await
            .unwrap();
        assert_eq!(
            row(store, conv).await.conversation.status,
            ConversationStatus::Closed
        );
        assert_eq!(
            store
                .inbox(B, ConversationStatus::Closed, 10)
                .await
                .unwrap()[0]
                .conversation
                .id,
            conv
        );

        let mut again = message("c2", "anna", "Nog steeds kapot");
        again.thread_key = Some("post-7".into());
        assert_eq!(receive(store, &w.x, again, T0 + MINUTE).await, conv);
        let c = row(store, conv).await.conversation;
        assert_eq!(c.status, ConversationStatus::Open);
        let kinds = event_kinds(store, conv).await;
        assert_eq!(
            kinds,
            [
                EventKind::MessageReceived,
                EventKind::StatusChanged,
                EventKind::Reopened,
                EventKind::MessageReceived,
            ]
        );
        assert!(
            store
                .inbox(B, ConversationStatus::Closed, 10)
                .await
                .unwrap()
                .is_empty()
        );
    }

    /// Without a thread or a reply to follow, a closed conversation stays closed: the customer
    /// starts a new one. (Pinned so a change is deliberate.)
    pub async fn a_plain_message_after_closing_reopens_the_conversation(store: &dyn Store) {
        let w = world(store).await;
        let conv = receive(store, &w.api, message("m1", "anna", "Hallo"), T0).await;
        store
            .set_status(B, conv, ConversationStatus::Closed, None, now())
            .await
            .unwrap();
        let next = receive(store, &w.api, message("m2", "anna", "Weer ik"), T0 + MINUTE).await;
        assert_eq!(next, conv);
        assert_eq!(
            row(store, conv).await.conversation.status,
            ConversationStatus::Open
        );
        let events = store.conversation_events(B, conv).await.unwrap();
        assert!(events.iter().any(|e| e.kind == EventKind::Reopened));
        let view = store.conversation(B, next).await.unwrap().unwrap();
        let texts: Vec<_> = view
            .timeline
            .iter()
            .map(|m| m.message.text.as_str())
            .collect();
        assert_eq!(texts, ["Hallo", "Weer ik"]);
    }

    pub async fn a_conversation_is_assigned_and_released_with_a_trail(store: &dyn Store) {
        let w = world(store).await;
        let conv = receive(store, &w.api, message("m1", "anna", "Hallo"), T0).await;
        let agent = member(store, "bert@jansen.nl", "Bert", B).await;
        store
            .assign(B, conv, Some(agent), Some(agent), now())
            .await
            .unwrap();
        let r = row(store, conv).await;
        assert_eq!(r.conversation.assignee, Some(agent));
        assert_eq!(r.assignee_name.as_deref(), Some("Bert"));
        // Assigning to the same person again records nothing new.
        store
            .assign(B, conv, Some(agent), Some(agent), now())
            .await
            .unwrap();
        store
            .assign(B, conv, None, Some(agent), now())
            .await
            .unwrap();
        let r = row(store, conv).await;
        assert_eq!(r.conversation.assignee, None);
        assert_eq!(r.assignee_name, None);
        let assigned: Vec<_> = store
            .conversation_events(B, conv)
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e.kind == EventKind::Assigned)
            .map(|e| e.detail)
            .collect();
        assert_eq!(assigned, ["Bert", ""]);
        assert!(matches!(
            store.assign(B, conv, Some(UserId(999)), None, now()).await,
            Err(StoreError::NotFound("user"))
        ));
        assert!(matches!(
            store
                .assign(B, ConversationId(999), None, None, now())
                .await,
            Err(StoreError::NotFound("conversation"))
        ));
    }

    pub async fn a_pending_conversation_reopens_on_a_new_message(store: &dyn Store) {
        let w = world(store).await;
        let conv = receive(store, &w.api, message("m1", "anna", "Hallo"), T0).await;
        store
            .set_status(B, conv, ConversationStatus::Pending, None, now())
            .await
            .unwrap();
        assert_eq!(
            receive(store, &w.api, message("m2", "anna", "En?"), T0 + 1).await,
            conv
        );
        assert_eq!(
            row(store, conv).await.conversation.status,
            ConversationStatus::Open
        );
    }

    pub async fn thread_key_groups_comments_of_one_customer_on_one_post(store: &dyn Store) {
        let w = world(store).await;
        let comment = |id: &str, from: &str| {
            let mut m = message(id, from, "Leuke actie!");
            m.thread_key = Some("post-1".into());
            m
        };
        let a1 = receive(store, &w.x, comment("c1", "anna"), T0).await;
        let b1 = receive(store, &w.x, comment("c2", "bert"), T0 + 1).await;
        let a2 = receive(store, &w.x, comment("c3", "anna"), T0 + 2).await;
        assert_eq!(a1, a2, "anna's comments on one post are one conversation");
        assert_ne!(
            a1, b1,
            "bert's comment on the same post is his own conversation"
        );
        assert_eq!(
            row(store, a1).await.conversation.thread_key.as_deref(),
            Some("post-1")
        );
        assert_eq!(messages(store, a1).await.len(), 2);
    }

    pub async fn applying_the_same_batch_twice_changes_nothing(store: &dyn Store) {
        let w = world(store).await;
        store
            .append_journal(&[
                entry(&w.api, message("m1", "anna", "Hallo"), T0),
                entry(&w.api, message("m2", "bert", "Hoi"), T0 + 1),
            ])
            .await
            .unwrap();
        let batch: Vec<Prepared> = store
            .pending_journal(10)
            .await
            .unwrap()
            .into_iter()
            .map(|entry| Prepared {
                entry,
                analysis: Some(r#"{"lang":"nl"}"#.into()),
                urgency: NORMAL,
            })
            .collect();
        let sla = SlaPolicy::default();
        let first = store.apply_journal(&batch, &sla, now()).await.unwrap();
        assert_eq!(first.len(), 2);
        let last = store.last_event_id().await.unwrap();
        let inbox = store.inbox(B, ConversationStatus::Open, 10).await.unwrap();

        let second = store.apply_journal(&batch, &sla, now()).await.unwrap();
        assert!(
            second.iter().all(|a| first.contains(a)),
            "a re-applied entry reports nothing new: {second:?}"
        );
        assert_eq!(store.last_event_id().await.unwrap(), last, "no new events");
        assert_eq!(
            store.inbox(B, ConversationStatus::Open, 10).await.unwrap(),
            inbox
        );
        for a in &first {
            let conv = a.conversation_id.unwrap();
            let msgs = messages(store, conv).await;
            assert_eq!(msgs.len(), 1);
            assert_eq!(msgs[0].analysis.as_deref(), Some(r#"{"lang":"nl"}"#));
        }

        // The same entry twice in one batch is applied once too.
        store
            .append_journal(&[entry(&w.api, message("m3", "carla", "Dag"), T0 + 2)])
            .await
            .unwrap();
        let p = store.pending_journal(10).await.unwrap().remove(0);
        let p = Prepared {
            entry: p,
            analysis: None,
            urgency: NORMAL,
        };
        let out = store
            .apply_journal(&[p.clone(), p], &sla, now())
            .await
            .unwrap();
        let conv = out[0].conversation_id.unwrap();
        assert_eq!(messages(store, conv).await.len(), 1);
        assert_eq!(
            store
                .inbox(B, ConversationStatus::Open, 10)
                .await
                .unwrap()
                .len(),
            3
        );
    }

    pub async fn an_edit_updates_the_text_and_keeps_the_old_one(store: &dyn Store) {
        let w = world(store).await;
        let conv = receive(
            store,
            &w.api,
            message("m1", "anna", "Mijn pakket is te laat"),
            T0,
        )
        .await;
        let mut edit = message("m1", "anna", "Mijn pakket is kapot");
        edit.kind = InboundKind::Edited;
        let applied = ingest(store, &[entry(&w.api, edit.clone(), T0 + 1)], NORMAL).await;
        assert_eq!(applied[0].conversation_id, Some(conv));
        let msgs = messages(store, conv).await;
        assert_eq!(msgs.len(), 1, "an edit is not a new message");
        assert_eq!(msgs[0].text, "Mijn pakket is kapot");

        let events = store.conversation_events(B, conv).await.unwrap();
        let edited: Vec<_> = events
            .iter()
            .filter(|e| e.kind == EventKind::MessageEdited)
            .collect();
        assert_eq!(edited.len(), 1);
        assert_eq!(edited[0].message_id, Some(msgs[0].id));
        assert_eq!(edited[0].detail, "Mijn pakket is te laat");

        // Search follows the new wording.
        assert_eq!(store.search(B, "kapot", 10).await.unwrap().len(), 1);
        assert!(store.search(B, "laat", 10).await.unwrap().is_empty());

        // The same edit delivered twice is one edit.
        let again = store
            .append_journal(&[entry(&w.api, edit, T0 + 2)])
            .await
            .unwrap();
        assert_eq!(again, vec![Appended::Duplicate]);
    }

    /// Successive edits are told apart by their revision, even when one restores the wording
    /// of an earlier one.
    pub async fn an_edit_back_to_earlier_wording_is_not_a_duplicate(store: &dyn Store) {
        let w = world(store).await;
        let conv = receive(store, &w.api, message("m1", "anna", "versie een"), T0).await;
        for (rev, text) in [
            ("1", "versie twee"),
            ("2", "versie een"),
            ("3", "versie twee"),
        ] {
            let mut edit = message("m1", "anna", text);
            edit.kind = InboundKind::Edited;
            edit.revision = Some(rev.into());
            let out = store
                .append_journal(&[entry(&w.api, edit, T0 + 1)])
                .await
                .unwrap();
            assert!(
                matches!(out[..], [Appended::New(_)]),
                "revision {rev}: {out:?}"
            );
            process(store, NORMAL, &SlaPolicy::default()).await;
        }
        assert_eq!(messages(store, conv).await[0].text, "versie twee");
    }

    pub async fn a_removed_message_is_marked_and_kept(store: &dyn Store) {
        let w = world(store).await;
        let conv = receive(store, &w.api, message("m1", "anna", "Oeps, verkeerd"), T0).await;
        let mut removed = message("m1", "anna", "");
        removed.kind = InboundKind::Removed;
        ingest(store, &[entry(&w.api, removed, T0 + 1)], NORMAL).await;
        let msgs = messages(store, conv).await;
        assert_eq!(msgs.len(), 1, "never deleted");
        assert!(msgs[0].removed);
        assert_eq!(msgs[0].text, "Oeps, verkeerd");
        assert!(
            event_kinds(store, conv)
                .await
                .contains(&EventKind::MessageRemoved)
        );
    }

    pub async fn a_change_to_an_unknown_message_is_recorded_as_done(store: &dyn Store) {
        let w = world(store).await;
        let mut removed = message("ghost", "anna", "");
        removed.kind = InboundKind::Removed;
        let applied = ingest(store, &[entry(&w.api, removed, T0)], NORMAL).await;
        assert_eq!(applied.len(), 1);
        assert_eq!(applied[0].message_id, None);
        assert_eq!(store.backlogs().await.unwrap().journal, 0);
        assert!(
            store
                .inbox(B, ConversationStatus::Open, 10)
                .await
                .unwrap()
                .is_empty()
        );
    }

    pub async fn a_notice_goes_on_the_timeline_and_changes_nothing_else(store: &dyn Store) {
        let w = world(store).await;
        let mut first = message("chat-1:1", "anna", "Mijn pakket is kwijt");
        first.thread_key = Some("chat-1".to_owned());
        let conv = receive(store, &w.api, first, T0).await;
        let before = row(store, conv).await.conversation;
        let mut pinned = message("chat-1:2", "bob", "📌 Mijn pakket is kwijt");
        pinned.kind = InboundKind::Notice;
        pinned.thread_key = Some("chat-1".to_owned());
        let applied = ingest(store, &[entry(&w.api, pinned, T0 + MINUTE)], URGENT).await;
        assert_eq!(applied[0].conversation_id, Some(conv));
        assert_eq!(applied[0].message_id, None, "a notice is no message");
        assert_eq!(messages(store, conv).await.len(), 1);
        let after = row(store, conv).await.conversation;
        assert_eq!(
            (after.priority, after.reply_due, after.status),
            (before.priority, before.reply_due, before.status),
            "priority, deadline and status stay as they were"
        );
        let notices: Vec<String> = store
            .conversation_events(B, conv)
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e.kind == EventKind::Notice)
            .map(|e| e.detail)
            .collect();
        assert_eq!(notices, vec!["📌 Mijn pakket is kwijt".to_owned()]);
    }

    pub async fn a_notice_without_a_conversation_opens_none(store: &dyn Store) {
        let w = world(store).await;
        let mut dice = message("chat-2:1", "anna", "🎲 4");
        dice.kind = InboundKind::Notice;
        dice.thread_key = Some("chat-2".to_owned());
        let applied = ingest(store, &[entry(&w.api, dice, T0)], URGENT).await;
        assert_eq!(applied.len(), 1);
        assert_eq!(
            (applied[0].conversation_id, applied[0].message_id),
            (None, None)
        );
        assert_eq!(
            store.backlogs().await.unwrap().journal,
            0,
            "recorded as done"
        );
        assert!(
            store
                .inbox(B, ConversationStatus::Open, 10)
                .await
                .unwrap()
                .is_empty()
        );
    }

    pub async fn an_unread_event_is_kept_in_the_journal_and_shown_nowhere(store: &dyn Store) {
        let w = world(store).await;
        let mut unread = message(
            "unread-1",
            "",
            r#"{"type":"hologram","hologram":{"text":"Hallo?"}}"#,
        );
        unread.kind = InboundKind::Unread;
        let e = entry(&w.api, unread, T0);
        assert_eq!(
            store
                .append_journal(std::slice::from_ref(&e))
                .await
                .unwrap()
                .len(),
            1
        );
        let pending = store.pending_journal(10).await.unwrap();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].inbound, e.inbound, "kept exactly as received");
        let applied = process(store, NORMAL, &SlaPolicy::default()).await;
        assert_eq!(
            (applied[0].conversation_id, applied[0].message_id),
            (None, None)
        );
        assert!(
            store
                .inbox(B, ConversationStatus::Open, 10)
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            store.append_journal(&[e]).await.unwrap(),
            vec![Appended::Duplicate],
            "a retried delivery keeps it once"
        );
    }

    pub async fn an_echo_from_another_tool_is_recorded_as_sent(store: &dyn Store) {
        let w = world(store).await;
        let conv = receive(store, &w.api, message("m1", "anna", "Hallo"), T0).await;
        let mut echo = message("brand-1", "anna", "Hoi Anna, we kijken ernaar");
        echo.kind = InboundKind::Echo;
        ingest(store, &[entry(&w.api, echo, T0 + MINUTE)], NORMAL).await;
        let msgs = messages(store, conv).await;
        assert_eq!(msgs.len(), 2);
        assert_eq!(msgs[1].direction, Direction::Out);
        assert_eq!(msgs[1].delivery, DeliveryState::Sent);
        let c = row(store, conv).await.conversation;
        assert_eq!((c.waiting_since, c.reply_due), (None, None), "answered");
        assert_eq!(
            store.search(B, "kijken", 10).await.unwrap()[0].message_id,
            msgs[1].id
        );
    }

    // Identity.

    pub async fn the_same_author_is_the_same_customer(store: &dyn Store) {
        let w = world(store).await;
        let a = receive(store, &w.api, message("m1", "anna", "Hallo"), T0).await;
        store
            .set_status(B, a, ConversationStatus::Closed, None, now())
            .await
            .unwrap();
        // A new conversation on another channel of the same platform: the same customer.
        let mut later = message("m2", "anna", "Hallo weer");
        later.author.handle = Some("@anna".into());
        later.author.name = Some("Anna de Vries".into());
        let b = receive(store, &w.api2, later, T0 + MINUTE).await;
        assert_ne!(a, b);
        let view = store.conversation(B, b).await.unwrap().unwrap();
        assert_eq!(
            view.customer.id,
            row(store, a).await.conversation.customer_id
        );
        assert_eq!(view.customer.identities.len(), 1);
        let identity = &view.customer.identities[0];
        assert_eq!(identity.external_id, "anna");
        assert_eq!(identity.handle.as_deref(), Some("@anna"));
        assert_eq!(identity.name.as_deref(), Some("Anna de Vries"));
        assert_eq!(view.timeline.len(), 2, "one timeline across conversations");
        assert_eq!(view.timeline[1].author_name, "Anna de Vries");

        // A later message without a name keeps the name it had.
        let mut bare = message("m3", "anna", "Nog een vraag");
        bare.author.name = None;
        receive(store, &w.api2, bare, T0 + 2 * MINUTE).await;
        let view = store.conversation(B, b).await.unwrap().unwrap();
        assert_eq!(
            view.customer.identities[0].name.as_deref(),
            Some("Anna de Vries")
        );
    }

    /// A customer first known by a bare platform id (a Messenger PSID) gets their name once
    /// the platform tells it, until a person gives them another.
    pub async fn the_customer_name_follows_the_platform_until_someone_sets_one(store: &dyn Store) {
        let w = world(store).await;
        let mut bare = message("m1", "4711", "Hallo");
        bare.author.name = None;
        let conv = receive(store, &w.api, bare, T0).await;
        assert_eq!(row(store, conv).await.customer_name, "4711");
        let mut handle = message("m2", "4711", "Hallo?");
        handle.author.name = None;
        handle.author.handle = Some("@anna".into());
        receive(store, &w.api, handle, T0 + 1).await;
        assert_eq!(row(store, conv).await.customer_name, "@anna");
        let mut named = message("m3", "4711", "Hallo!");
        named.author.name = Some("Anna de Vries".into());
        receive(store, &w.api, named, T0 + 2).await;
        assert_eq!(row(store, conv).await.customer_name, "Anna de Vries");

        let customer = row(store, conv).await.conversation.customer_id;
        store
            .update_customer(B, customer, "Anna (vaste klant)", "")
            .await
            .unwrap();
        let mut renamed = message("m4", "4711", "Nieuwe naam");
        renamed.author.name = Some("Anna Jansen".into());
        receive(store, &w.api, renamed, T0 + 3).await;
        let view = store.conversation(B, conv).await.unwrap().unwrap();
        assert_eq!(view.customer.display_name, "Anna (vaste klant)");
        assert_eq!(
            view.customer.identities[0].name.as_deref(),
            Some("Anna Jansen")
        );
    }

    pub async fn the_same_platform_id_on_another_platform_is_another_customer(store: &dyn Store) {
        let w = world(store).await;
        let a = receive(store, &w.api, message("m1", "12345", "Hallo"), T0).await;
        let b = receive(store, &w.x, message("m1", "12345", "Hallo"), T0).await;
        assert_ne!(
            row(store, a).await.conversation.customer_id,
            row(store, b).await.conversation.customer_id
        );
    }

    pub async fn customer_details_can_be_edited(store: &dyn Store) {
        let w = world(store).await;
        let conv = receive(store, &w.api, message("m1", "anna", "Hallo"), T0).await;
        let customer = row(store, conv).await.conversation.customer_id;
        store
            .update_customer(B, customer, "Anna (vaste klant)", "Bakt zelf ook")
            .await
            .unwrap();
        let view = store.conversation(B, conv).await.unwrap().unwrap();
        assert_eq!(view.customer.display_name, "Anna (vaste klant)");
        assert_eq!(view.customer.notes, "Bakt zelf ook");
        assert_eq!(view.row.customer_name, "Anna (vaste klant)");
        let missing = store
            .update_customer(B, balie_core::CustomerId(9999), "x", "")
            .await;
        assert!(
            matches!(missing, Err(StoreError::NotFound(_))),
            "{missing:?}"
        );
    }

    // Priority and SLA.

    pub async fn urgency_sets_priority_and_the_reply_deadline(store: &dyn Store) {
        let w = world(store).await;
        let sla = SlaPolicy {
            urgent_minutes: 5,
            high_minutes: 10,
            normal_minutes: 60,
            low_minutes: 600,
        };
        for (i, urgency) in [0u8, 19, 20, 54, 55, 79, 80, 100].into_iter().enumerate() {
            let id = format!("m{i}");
            let from = format!("klant{i}");
            let at = T0 + i64::try_from(i).unwrap() * MINUTE;
            store
                .append_journal(&[entry(&w.api, message(&id, &from, "Help"), at)])
                .await
                .unwrap();
            let applied = process(store, urgency, &sla).await;
            let c = row(store, applied[0].conversation_id.unwrap())
                .await
                .conversation;
            let priority = Priority::from_urgency(urgency);
            assert_eq!(c.priority, priority, "urgency {urgency}");
            assert_eq!(c.waiting_since, Some(at));
            assert_eq!(
                c.reply_due,
                Some(sla.reply_due(priority, at)),
                "urgency {urgency}"
            );
        }
        // Spot-check the policy arithmetic itself: received_at + minutes.
        let c = store.inbox(B, ConversationStatus::Open, 1).await.unwrap()[0]
            .conversation
            .clone();
        assert_eq!(c.priority, Priority::Urgent);
        assert_eq!(c.reply_due, Some(c.waiting_since.unwrap() + 5 * MINUTE));
    }

    /// R7: deadlines depend on what was said and when, never on who said it.
    pub async fn deadlines_ignore_who_the_author_is(store: &dyn Store) {
        let w = world(store).await;
        let mut famous = message("m1", "ster", "Mijn bestelling is niet aangekomen");
        famous.author.name = Some("Famous Influencer".into());
        famous.author.handle = Some("@famous_1M_followers".into());
        let mut plain = famous.clone();
        plain.external_id = "m2".into();
        plain.author = Author {
            platform_id: "gewoon".into(),
            handle: None,
            name: None,
        };
        for urgency in [NORMAL, URGENT] {
            let a = ingest(store, &[entry(&w.api, famous.clone(), T0)], urgency).await;
            let b = ingest(store, &[entry(&w.x, plain.clone(), T0)], urgency).await;
            let a = row(store, a[0].conversation_id.unwrap()).await.conversation;
            let b = row(store, b[0].conversation_id.unwrap()).await.conversation;
            assert_eq!(
                (a.priority, a.waiting_since, a.reply_due),
                (b.priority, b.waiting_since, b.reply_due)
            );
            famous.external_id.push('x');
            plain.external_id.push('x');
            store
                .set_status(B, a.id, ConversationStatus::Closed, None, now())
                .await
                .unwrap();
            store
                .set_status(B, b.id, ConversationStatus::Closed, None, now())
                .await
                .unwrap();
        }
    }

    pub async fn a_more_urgent_message_escalates_a_waiting_conversation(store: &dyn Store) {
        let w = world(store).await;
        let sla = SlaPolicy::default();
        let conv = receive(store, &w.api, message("m1", "anna", "Vraagje"), T0).await;
        store
            .append_journal(&[entry(&w.api, message("m2", "anna", "SPOED"), T0 + MINUTE)])
            .await
            .unwrap();
        process(store, URGENT, &sla).await;
        let c = row(store, conv).await.conversation;
        assert_eq!(c.priority, Priority::Urgent);
        assert_eq!(c.waiting_since, Some(T0));
        assert_eq!(
            c.reply_due,
            Some(sla.reply_due(Priority::Urgent, T0 + MINUTE)),
            "the earlier of the two deadlines"
        );
        // A calmer follow-up does not lower it while the urgent message still waits.
        store
            .append_journal(&[entry(&w.api, message("m3", "anna", "ok"), T0 + 2 * MINUTE)])
            .await
            .unwrap();
        process(store, 0, &sla).await;
        let c = row(store, conv).await.conversation;
        assert_eq!(c.priority, Priority::Urgent);
    }

    /// Once answered, a conversation's priority follows the next message that waits, so an
    /// old emergency does not outrank the queue forever.
    pub async fn after_a_reply_priority_follows_the_next_message(store: &dyn Store) {
        let w = world(store).await;
        let sla = SlaPolicy::default();
        store
            .append_journal(&[entry(&w.api, message("m1", "anna", "SPOED"), T0)])
            .await
            .unwrap();
        let conv = process(store, URGENT, &sla).await[0]
            .conversation_id
            .unwrap();
        let user = agent(store).await;
        store
            .queue_reply(B, conv, user, "We bellen je", "k1", now())
            .await
            .unwrap();
        let later = T0 + 60 * MINUTE;
        store
            .append_journal(&[entry(&w.api, message("m2", "anna", "Bedankt!"), later)])
            .await
            .unwrap();
        process(store, 0, &sla).await;
        let c = row(store, conv).await.conversation;
        assert_eq!(c.waiting_since, Some(later));
        assert_eq!(c.reply_due, Some(sla.reply_due(Priority::Low, later)));
        assert_eq!(c.priority, Priority::Low);
    }

    // Inbox.

    pub async fn the_inbox_puts_waiting_first_then_priority_then_deadline(store: &dyn Store) {
        let w = world(store).await;
        let sla = SlaPolicy::default();
        let ingest_one = async |id: &str, from: &str, at: Millis, urgency: u8| {
            store
                .append_journal(&[entry(&w.api, message(id, from, "Help"), at)])
                .await
                .unwrap();
            process(store, urgency, &sla).await[0]
                .conversation_id
                .unwrap()
        };
        let answered_urgent = ingest_one("m1", "a", T0, URGENT).await;
        let late_normal = ingest_one("m2", "b", T0 + 10 * MINUTE, NORMAL).await;
        let early_normal = ingest_one("m3", "c", T0, NORMAL).await;
        let urgent = ingest_one("m4", "d", T0 + 20 * MINUTE, URGENT).await;
        let low = ingest_one("m5", "e", T0 - 60 * MINUTE, 0).await;
        let user = agent(store).await;
        let reply = store
            .queue_reply(B, answered_urgent, user, "Opgelost", "k1", now())
            .await
            .unwrap();
        assert_eq!(reply.conversation_id, answered_urgent);
        let order: Vec<_> = store
            .inbox(B, ConversationStatus::Open, 10)
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.conversation.id)
            .collect();
        assert_eq!(
            order,
            [urgent, early_normal, late_normal, low, answered_urgent]
        );
        let first_two: Vec<_> = store
            .inbox(B, ConversationStatus::Open, 2)
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.conversation.id)
            .collect();
        assert_eq!(first_two, [urgent, early_normal], "the limit applies");
        assert!(
            store
                .inbox(B, ConversationStatus::Snoozed, 10)
                .await
                .unwrap()
                .is_empty()
        );
    }

    pub async fn an_inbox_row_says_who_where_and_what(store: &dyn Store) {
        let w = world(store).await;
        let conv = receive(
            store,
            &w.x,
            message("t1", "anna", "\n  Eerste regel  \nTweede regel"),
            T0,
        )
        .await;
        let r = row(store, conv).await;
        assert_eq!(r.customer_name, "Customer anna");
        assert_eq!(r.channel_name, "x-main");
        assert_eq!(r.channel_kind, ChannelKind::X);
        assert_eq!(r.first_line, "Eerste regel");
        assert_eq!(r.last_message_at, T0);
        assert_eq!(r.conversation.channel_id, w.x.id);
        assert_eq!(r.conversation.brand_id, w.x.brand_id);
        assert!(
            store
                .conversation(B, ConversationId(9999))
                .await
                .unwrap()
                .is_none()
        );
    }

    // Search.

    pub async fn search_finds_dutch_and_english_inflections(store: &dyn Store) {
        let w = world(store).await;
        let klachten = receive(
            store,
            &w.api,
            message("m1", "anna", "Drie klachten over jullie"),
            T0,
        )
        .await;
        let delay = receive(
            store,
            &w.api,
            message("m2", "bert", "Another delay, again"),
            T0,
        )
        .await;
        let bezorgd = receive(
            store,
            &w.api,
            message("m3", "carla", "Het pakket is bezorgd"),
            T0,
        )
        .await;
        let hits = |q: &'static str| async move {
            store
                .search(B, q, 10)
                .await
                .unwrap()
                .into_iter()
                .map(|h| h.conversation_id)
                .collect::<Vec<_>>()
        };
        assert_eq!(hits("klacht").await, [klachten]);
        assert_eq!(hits("KLACHTEN").await, [klachten]);
        assert_eq!(hits("delayed").await, [delay]);
        assert_eq!(hits("delays").await, [delay]);
        assert_eq!(hits("bezorgd").await, [bezorgd]);
        assert_eq!(hits("bezorgde").await, [bezorgd]);
        let bezorging = receive(
            store,
            &w.api,
            message("m4", "daan", "De bezorging duurt lang"),
            T0,
        )
        .await;
        assert_eq!(hits("bezorgen").await, [bezorging]);
        // Dutch Snowball keeps the participle's `d` (bezorgd), so the noun does not reach it:
        // a known limit, pinned so that lifting it updates this line.
        assert_eq!(hits("bezorging").await, [bezorging]);
        // Every word must match.
        assert_eq!(hits("klacht delay").await, []);
        assert_eq!(hits("pakket bezorgd").await, [bezorgd]);
        let hit = &store.search(B, "klacht", 10).await.unwrap()[0];
        assert_eq!(hit.text, "Drie klachten over jullie");
        assert_eq!(hit.message_id, messages(store, klachten).await[0].id);
    }

    pub async fn search_input_is_never_query_syntax(store: &dyn Store) {
        let w = world(store).await;
        receive(
            store,
            &w.api,
            message("m1", "anna", "near the store or not"),
            T0,
        )
        .await;
        for q in [
            "\"",
            "\"unbalanced",
            "NEAR(a b)",
            "a OR",
            "AND",
            "NOT not",
            "* -x ^y",
            "col:value",
            "(((",
            "'; DROP TABLE messages; --",
        ] {
            assert!(store.search(B, q, 10).await.is_ok(), "{q:?} must not error");
        }
        // Operators typed by a person are searched for as words.
        assert_eq!(store.search(B, "NOT", 10).await.unwrap().len(), 1);
        assert_eq!(store.search(B, "near OR", 10).await.unwrap().len(), 1);
        assert_eq!(store.search(B, "store:", 10).await.unwrap().len(), 1);
    }

    pub async fn an_empty_search_finds_nothing(store: &dyn Store) {
        let w = world(store).await;
        receive(store, &w.api, message("m1", "anna", "Hallo"), T0).await;
        for q in ["", "   ", "*** ---", "\"\""] {
            assert!(store.search(B, q, 10).await.unwrap().is_empty(), "{q:?}");
        }
    }

    pub async fn search_finds_replies_too_and_respects_the_limit(store: &dyn Store) {
        let w = world(store).await;
        for i in 0..3 {
            receive(
                store,
                &w.api,
                message(&format!("m{i}"), &format!("k{i}"), "pakket"),
                T0,
            )
            .await;
        }
        assert_eq!(store.search(B, "pakket", 2).await.unwrap().len(), 2);
        let conv = store.inbox(B, ConversationStatus::Open, 1).await.unwrap()[0]
            .conversation
            .id;
        let user = agent(store).await;
        let reply = store
            .queue_reply(B, conv, user, "Uw retourzending is onderweg", "k", now())
            .await
            .unwrap();
        let hits = store.search(B, "retourzending", 10).await.unwrap();
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].message_id, reply.id);
    }

    // Events and the live stream.

    pub async fn events_stream_in_order_from_any_point(store: &dyn Store) {
        let w = world(store).await;
        assert_eq!(store.last_event_id().await.unwrap(), EventId(0));
        assert!(
            store
                .events_since(B, EventId(0), 10)
                .await
                .unwrap()
                .is_empty()
        );
        let a = receive(store, &w.api, message("m1", "anna", "Een"), T0).await;
        let b = receive(store, &w.api, message("m2", "bert", "Twee"), T0 + 1).await;
        let all = store.events_since(B, EventId(0), 10).await.unwrap();
        assert_eq!(all.len(), 2);
        assert!(all.iter().all(|e| e.kind == EventKind::MessageReceived));
        assert!(all[0].id < all[1].id);
        assert_eq!(all[0].conversation.conversation.id, a);
        assert_eq!(all[1].conversation.conversation.id, b);
        let m = all[0].message.as_ref().expect("the message");
        assert_eq!(m.message.text, "Een");
        assert_eq!(m.author_name, "Customer anna");
        assert_eq!(m.channel_name, "api");
        let last = store.last_event_id().await.unwrap();
        assert_eq!(last, all[1].id);

        assert!(store.events_since(B, last, 10).await.unwrap().is_empty());
        let c = receive(store, &w.api, message("m3", "carla", "Drie"), T0 + 2).await;
        let newer = store.events_since(B, last, 10).await.unwrap();
        assert_eq!(newer.len(), 1);
        assert_eq!(newer[0].conversation.conversation.id, c);
        assert!(store.last_event_id().await.unwrap() > last);

        let limited = store.events_since(B, EventId(0), 2).await.unwrap();
        assert_eq!(limited, all, "the limit keeps the oldest");
    }

    /// The stream shows the conversation as it is now, not as it was.
    pub async fn a_status_change_is_an_event_on_the_stream(store: &dyn Store) {
        let w = world(store).await;
        let conv = receive(store, &w.api, message("m1", "anna", "Een"), T0).await;
        let last = store.last_event_id().await.unwrap();
        let user = agent(store).await;
        store
            .set_status(B, conv, ConversationStatus::Snoozed, Some(user), now())
            .await
            .unwrap();
        let events = store.events_since(B, last, 10).await.unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].kind, EventKind::StatusChanged);
        assert_eq!(events[0].message, None);
        assert_eq!(
            events[0].conversation.conversation.status,
            ConversationStatus::Snoozed
        );
        let detail = store.conversation_events(B, conv).await.unwrap();
        let changed = detail.last().unwrap();
        assert_eq!(changed.user_id, Some(user));
        assert_eq!(changed.detail, "snoozed");

        // Setting the status it already has is no event.
        store
            .set_status(B, conv, ConversationStatus::Snoozed, Some(user), now())
            .await
            .unwrap();
        assert_eq!(store.last_event_id().await.unwrap(), events[0].id);
        let missing = store
            .set_status(
                B,
                ConversationId(9999),
                ConversationStatus::Closed,
                None,
                now(),
            )
            .await;
        assert!(
            matches!(missing, Err(StoreError::NotFound(_))),
            "{missing:?}"
        );
    }

    // Outbox.

    pub async fn a_queued_reply_is_an_outbound_message_and_an_outbox_row(store: &dyn Store) {
        let w = world(store).await;
        let conv = receive(store, &w.api, message("m1", "anna", "Hallo"), T0).await;
        let before = row(store, conv).await.conversation;
        assert!(before.waiting_since.is_some() && before.reply_due.is_some());
        let user = agent(store).await;
        let reply = store
            .queue_reply(B, conv, user, "Hoi Anna!", "key-1", now())
            .await
            .unwrap();
        assert_eq!(reply.direction, Direction::Out);
        assert_eq!(reply.delivery, DeliveryState::Queued);
        assert_eq!(reply.author_user, Some(user));
        assert_eq!(reply.text, "Hoi Anna!");
        assert_eq!(reply.external_id, None);
        assert_eq!(reply.conversation_id, conv);
        assert_eq!(reply.in_reply_to, Some(messages(store, conv).await[0].id));
        assert_eq!(store.backlogs().await.unwrap().outbox, 1);
        let after = row(store, conv).await.conversation;
        assert_eq!((after.waiting_since, after.reply_due), (None, None));
        assert!(
            event_kinds(store, conv)
                .await
                .contains(&EventKind::ReplyQueued)
        );

        let view = store.conversation(B, conv).await.unwrap().unwrap();
        assert_eq!(view.timeline.last().unwrap().author_name, "Agent Anne");

        let missing = store
            .queue_reply(B, ConversationId(9999), user, "x", "key-2", now())
            .await;
        assert!(
            matches!(missing, Err(StoreError::NotFound(_))),
            "{missing:?}"
        );
    }

    pub async fn the_same_idempotency_key_twice_is_one_reply(store: &dyn Store) {
        let w = world(store).await;
        let conv = receive(store, &w.api, message("m1", "anna", "Hallo"), T0).await;
        let user = agent(store).await;
        let a = store
            .queue_reply(B, conv, user, "Hoi!", "click-1", now())
            .await
            .unwrap();
        let b = store
            .queue_reply(B, conv, user, "Hoi!", "click-1", now())
            .await
            .unwrap();
        assert_eq!(a, b);
        assert_eq!(
            messages(store, conv).await.len(),
            2,
            "one inbound, one reply"
        );
        assert_eq!(store.backlogs().await.unwrap().outbox, 1);
        let c = store
            .queue_reply(B, conv, user, "Nog iets", "click-2", now())
            .await
            .unwrap();
        assert_ne!(a.id, c.id);
        assert_eq!(store.backlogs().await.unwrap().outbox, 2);
    }

    pub async fn a_claimed_reply_carries_what_delivery_needs(store: &dyn Store) {
        let w = world(store).await;
        let mut m = message("t1", "anna", "Hallo");
        m.created_at = T0 - 5;
        let conv = receive(store, &w.x, m, T0).await;
        let user = agent(store).await;
        let reply = store
            .queue_reply(B, conv, user, "Hoi!", "key-1", now())
            .await
            .unwrap();
        let now = now() + 1_000;
        let claimed = store.claim_outbox(now, 10).await.unwrap();
        assert_eq!(claimed.len(), 1);
        let item = &claimed[0];
        assert_eq!(item.message_id, reply.id);
        assert_eq!(item.conversation_id, conv);
        assert_eq!(item.channel, w.x);
        assert_eq!(item.idempotency_key, "key-1");
        assert_eq!(item.text, "Hoi!");
        assert_eq!(item.attempts, 1);
        assert_eq!(item.reply_to_external_id.as_deref(), Some("t1"));
        assert_eq!(item.recipient_external_id.as_deref(), Some("anna"));
        assert_eq!(item.last_customer_message_at, Some(T0 - 5));

        assert!(
            store.claim_outbox(now, 10).await.unwrap().is_empty(),
            "a reply being sent is not claimed twice"
        );
        assert_eq!(
            store.backlogs().await.unwrap().outbox,
            1,
            "sending still counts"
        );
    }

    pub async fn a_claimed_reply_says_where_the_answered_message_was(store: &dyn Store) {
        let w = world(store).await;
        let mut dm = message("dm-1", "anna", "Hallo");
        dm.place = Some(Place {
            kind: PlaceKind::Direct,
            url: None,
        });
        let conv = receive(store, &w.x, dm, T0).await;
        let user = agent(store).await;
        store
            .queue_reply(B, conv, user, "Hoi!", "key-1", now())
            .await
            .unwrap();
        let item = store
            .claim_outbox(now() + 1_000, 10)
            .await
            .unwrap()
            .remove(0);
        assert_eq!(item.reply_to_place, Some(PlaceKind::Direct));
        assert_eq!(item.reply_to_external_id.as_deref(), Some("dm-1"));
    }

    pub async fn channel_secrets_are_kept_sealed_and_replaced_by_name(store: &dyn Store) {
        let w = world(store).await;
        let sealed = |n: u8| SealedSecret {
            nonce: vec![n; 24],
            ciphertext: vec![n, n, n],
        };
        assert!(store.channel_secrets(w.x.id).await.unwrap().is_empty());
        store
            .set_channel_secret(w.x.id, "consumer_secret", &sealed(1), now())
            .await
            .unwrap();
        store
            .set_channel_secret(w.x.id, "access_token", &sealed(2), now())
            .await
            .unwrap();
        store
            .set_channel_secret(w.x.id, "consumer_secret", &sealed(3), now())
            .await
            .unwrap();
        let secrets = store.channel_secrets(w.x.id).await.unwrap();
        assert_eq!(
            secrets,
            vec![
                ("access_token".to_owned(), sealed(2)),
                ("consumer_secret".to_owned(), sealed(3)),
            ]
        );
        assert!(store.channel_secrets(w.api.id).await.unwrap().is_empty());
        assert!(matches!(
            store
                .set_channel_secret(ChannelId(999), "bot_token", &sealed(1), now())
                .await,
            Err(StoreError::NotFound(_))
        ));
        store
            .update_channel_settings(w.x.id, r#"{"x_user_id":"42"}"#)
            .await
            .unwrap();
        assert_eq!(
            store.channel(w.x.id).await.unwrap().unwrap().settings,
            r#"{"x_user_id":"42"}"#
        );
    }

    /// A platform that cannot drop a repeated send: a reply interrupted mid-send is parked
    /// for a person, never sent again; the generic channel's reply is resent as before.
    pub async fn interrupted_platform_replies_are_parked_not_resent(store: &dyn Store) {
        let w = world(store).await;
        let on_x = receive(store, &w.x, message("t1", "anna", "Hallo"), T0).await;
        let on_api = receive(store, &w.api, message("m1", "bram", "Hoi"), T0).await;
        let user = agent(store).await;
        store
            .queue_reply(B, on_x, user, "Een", "key-x", now())
            .await
            .unwrap();
        store
            .queue_reply(B, on_api, user, "Twee", "key-api", now())
            .await
            .unwrap();
        let now = now() + 1_000;
        assert_eq!(store.claim_outbox(now, 10).await.unwrap().len(), 2);
        let parked = store
            .park_interrupted_outbox(&[ChannelKind::X], "delivery unknown", now)
            .await
            .unwrap();
        assert_eq!(parked, 1);
        assert_eq!(store.recover_outbox().await.unwrap(), 1);
        let again: Vec<_> = store
            .claim_outbox(now + MINUTE, 10)
            .await
            .unwrap()
            .into_iter()
            .map(|i| i.text)
            .collect();
        assert_eq!(again, ["Twee"]);
        let msg = messages(store, on_x).await.pop().unwrap();
        assert_eq!(msg.delivery, DeliveryState::Failed);
        assert_eq!(msg.delivery_error.as_deref(), Some("delivery unknown"));
        assert_eq!(store.backlogs().await.unwrap().outbox, 1);
    }

    pub async fn a_reply_in_doubt_is_parked_and_a_delivery_report_confirms_it(store: &dyn Store) {
        let w = world(store).await;
        let conv = receive(store, &w.x, message("t1", "anna", "Hallo"), T0).await;
        let user = agent(store).await;
        store
            .queue_reply(B, conv, user, "Hoi!", "key-1", now())
            .await
            .unwrap();
        let now = now() + 1_000;
        let item = store.claim_outbox(now, 10).await.unwrap().remove(0);
        store
            .outbox_unknown(item.id, "no answer in time", now)
            .await
            .unwrap();
        assert!(
            store
                .claim_outbox(now + MINUTE, 10)
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            messages(store, conv).await.pop().unwrap().delivery,
            DeliveryState::Failed
        );
        assert!(
            !store
                .confirm_outbox_by_key(w.api.id, "key-1", "tw-1", now)
                .await
                .unwrap(),
            "a key is only ours on its own channel"
        );
        assert!(
            store
                .confirm_outbox_by_key(w.x.id, "key-1", "tw-1", now)
                .await
                .unwrap()
        );
        let msg = messages(store, conv).await.pop().unwrap();
        assert_eq!(msg.delivery, DeliveryState::Sent);
        assert_eq!(msg.external_id.as_deref(), Some("tw-1"));
    }

    pub async fn a_failure_report_marks_a_sent_reply_failed_and_it_is_never_resent(
        store: &dyn Store,
    ) {
        let w = world(store).await;
        let conv = receive(store, &w.x, message("t1", "anna", "Hallo"), T0).await;
        let user = agent(store).await;
        store
            .queue_reply(B, conv, user, "Hoi!", "key-1", now())
            .await
            .unwrap();
        let now = now() + 1_000;
        let item = store.claim_outbox(now, 10).await.unwrap().remove(0);
        store
            .outbox_sent(item.id, Some("wamid-1"), now)
            .await
            .unwrap();
        assert!(
            !store
                .fail_outbox_by_key(w.api.id, "key-1", "131047: re-engagement", now)
                .await
                .unwrap(),
            "a key is only ours on its own channel"
        );
        assert!(
            store
                .fail_outbox_by_key(w.x.id, "key-1", "131047: re-engagement", now)
                .await
                .unwrap()
        );
        let msg = messages(store, conv).await.pop().unwrap();
        assert_eq!(msg.delivery, DeliveryState::Failed);
        assert_eq!(msg.delivery_error.as_deref(), Some("131047: re-engagement"));
        assert!(
            event_kinds(store, conv)
                .await
                .contains(&EventKind::ReplyFailed)
        );
        assert!(
            !store
                .fail_outbox_by_key(w.x.id, "key-1", "again", now)
                .await
                .unwrap(),
            "a second report changes nothing"
        );
        assert_eq!(
            messages(store, conv)
                .await
                .pop()
                .unwrap()
                .delivery_error
                .as_deref(),
            Some("131047: re-engagement")
        );
        assert!(
            store
                .claim_outbox(now + 24 * 60 * MINUTE, 10)
                .await
                .unwrap()
                .is_empty(),
            "a failed reply is never sent again without a person"
        );
    }

    pub async fn a_reply_is_not_claimed_before_it_is_due(store: &dyn Store) {
        let w = world(store).await;
        let conv = receive(store, &w.api, message("m1", "anna", "Hallo"), T0).await;
        let user = agent(store).await;
        store
            .queue_reply(B, conv, user, "Hoi!", "key-1", now())
            .await
            .unwrap();
        assert!(store.claim_outbox(T0, 10).await.unwrap().is_empty());
        assert_eq!(
            store.claim_outbox(now() + 1_000, 10).await.unwrap().len(),
            1
        );
    }

    pub async fn a_retried_reply_comes_back_when_due(store: &dyn Store) {
        let w = world(store).await;
        let conv = receive(store, &w.api, message("m1", "anna", "Hallo"), T0).await;
        let user = agent(store).await;
        let reply = store
            .queue_reply(B, conv, user, "Hoi!", "key-1", now())
            .await
            .unwrap();
        let now = now() + 1_000;
        let item = store.claim_outbox(now, 10).await.unwrap().remove(0);
        store
            .outbox_retry(item.id, now + MINUTE, "503 from platform", now)
            .await
            .unwrap();
        assert!(
            store.claim_outbox(now, 10).await.unwrap().is_empty(),
            "not yet due"
        );
        let again = store.claim_outbox(now + MINUTE, 10).await.unwrap();
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].id, item.id);
        assert_eq!(again[0].attempts, 2);
        let msg = messages(store, conv).await.pop().unwrap();
        assert_eq!(msg.id, reply.id);
        assert_eq!(msg.delivery, DeliveryState::Queued, "still on its way");
    }

    pub async fn a_sent_reply_is_marked_with_the_platform_id(store: &dyn Store) {
        let w = world(store).await;
        let conv = receive(store, &w.x, message("t1", "anna", "Hallo"), T0).await;
        let user = agent(store).await;
        let reply = store
            .queue_reply(B, conv, user, "Hoi!", "key-1", now())
            .await
            .unwrap();
        let now = now() + 1_000;
        let item = store.claim_outbox(now, 10).await.unwrap().remove(0);
        let last = store.last_event_id().await.unwrap();
        store
            .outbox_sent(item.id, Some("tweet-99"), now)
            .await
            .unwrap();
        let msg = messages(store, conv).await.pop().unwrap();
        assert_eq!(msg.id, reply.id);
        assert_eq!(msg.delivery, DeliveryState::Sent);
        assert_eq!(msg.external_id.as_deref(), Some("tweet-99"));
        let events = store.events_since(B, last, 10).await.unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].kind, EventKind::ReplySent);
        assert_eq!(events[0].message.as_ref().unwrap().message.id, reply.id);
        assert_eq!(store.backlogs().await.unwrap().outbox, 0);
        assert!(
            store
                .claim_outbox(now + MINUTE, 10)
                .await
                .unwrap()
                .is_empty()
        );

        // Confirming twice is harmless.
        store
            .outbox_sent(item.id, Some("tweet-99"), now)
            .await
            .unwrap();
        assert_eq!(store.events_since(B, last, 10).await.unwrap().len(), 1);

        // The customer answering our tweet lands in the same conversation.
        let mut answer = message("t2", "anna", "Dank je");
        answer.in_reply_to = Some("tweet-99".into());
        store
            .set_status(B, conv, ConversationStatus::Closed, None, now)
            .await
            .unwrap();
        assert_eq!(receive(store, &w.x, answer, T0 + MINUTE).await, conv);
    }

    pub async fn a_failed_reply_keeps_the_reason(store: &dyn Store) {
        let w = world(store).await;
        let conv = receive(store, &w.api, message("m1", "anna", "Hallo"), T0).await;
        let user = agent(store).await;
        store
            .queue_reply(B, conv, user, "Hoi!", "key-1", now())
            .await
            .unwrap();
        let now = now() + 1_000;
        let item = store.claim_outbox(now, 10).await.unwrap().remove(0);
        store
            .outbox_failed(item.id, "outside the 24h window", now)
            .await
            .unwrap();
        let msg = messages(store, conv).await.pop().unwrap();
        assert_eq!(msg.delivery, DeliveryState::Failed);
        assert_eq!(
            msg.delivery_error.as_deref(),
            Some("outside the 24h window")
        );
        assert!(
            event_kinds(store, conv)
                .await
                .contains(&EventKind::ReplyFailed)
        );
        let detail = store.conversation_events(B, conv).await.unwrap();
        assert_eq!(detail.last().unwrap().detail, "outside the 24h window");
        assert_eq!(store.backlogs().await.unwrap().outbox, 0);
        assert!(
            store
                .claim_outbox(now + MINUTE, 10)
                .await
                .unwrap()
                .is_empty()
        );
    }

    pub async fn replies_left_sending_by_a_crash_are_recovered(store: &dyn Store) {
        let w = world(store).await;
        let conv = receive(store, &w.api, message("m1", "anna", "Hallo"), T0).await;
        let user = agent(store).await;
        store
            .queue_reply(B, conv, user, "Een", "key-1", now())
            .await
            .unwrap();
        store
            .queue_reply(B, conv, user, "Twee", "key-2", now())
            .await
            .unwrap();
        let now = now() + 1_000;
        let claimed = store.claim_outbox(now, 1).await.unwrap();
        assert_eq!(claimed.len(), 1, "the limit applies");
        assert_eq!(claimed[0].text, "Een", "oldest first");
        assert_eq!(store.recover_outbox().await.unwrap(), 1);
        assert_eq!(store.recover_outbox().await.unwrap(), 0);
        let texts: Vec<_> = store
            .claim_outbox(now, 10)
            .await
            .unwrap()
            .into_iter()
            .map(|i| i.text)
            .collect();
        assert_eq!(texts, ["Een", "Twee"]);
    }

    /// The platform echoes our own reply back (Messenger `metadata`) before the send call
    /// returned: the echo confirms the reply instead of adding a second one.
    pub async fn an_echo_of_our_own_reply_confirms_it(store: &dyn Store) {
        let w = world(store).await;
        let conv = receive(store, &w.api, message("m1", "anna", "Hallo"), T0).await;
        let user = agent(store).await;
        let reply = store
            .queue_reply(B, conv, user, "Hoi!", "key-1", now())
            .await
            .unwrap();
        let now = now() + 1_000;
        let item = store.claim_outbox(now, 10).await.unwrap().remove(0);

        let mut echo = message("out-1", "anna", "Hoi!");
        echo.kind = InboundKind::Echo;
        echo.outbox_key = Some("key-1".into());
        ingest(store, &[entry(&w.api, echo, now)], NORMAL).await;
        let msgs = messages(store, conv).await;
        assert_eq!(msgs.len(), 2, "no second copy of the reply: {msgs:?}");
        assert_eq!(msgs[1].id, reply.id);
        assert_eq!(msgs[1].delivery, DeliveryState::Sent);
        assert_eq!(msgs[1].external_id.as_deref(), Some("out-1"));

        // The send call returning late is harmless.
        store
            .outbox_sent(item.id, Some("out-1"), now)
            .await
            .unwrap();
        assert_eq!(store.backlogs().await.unwrap().outbox, 0);
        let sent = event_kinds(store, conv)
            .await
            .into_iter()
            .filter(|k| *k == EventKind::ReplySent)
            .count();
        assert_eq!(sent, 1);
    }

    /// An echo without our key that beats the send call's response must not make the
    /// confirmation fail (it would be retried and sent twice).
    pub async fn a_send_confirmed_after_its_echo_still_succeeds(store: &dyn Store) {
        let w = world(store).await;
        let conv = receive(store, &w.api, message("m1", "anna", "Hallo"), T0).await;
        let user = agent(store).await;
        store
            .queue_reply(B, conv, user, "Hoi!", "key-1", now())
            .await
            .unwrap();
        let now = now() + 1_000;
        let item = store.claim_outbox(now, 10).await.unwrap().remove(0);
        let mut echo = message("out-1", "anna", "Hoi!");
        echo.kind = InboundKind::Echo;
        ingest(store, &[entry(&w.api, echo, now)], NORMAL).await;
        store
            .outbox_sent(item.id, Some("out-1"), now)
            .await
            .unwrap();
        assert_eq!(store.backlogs().await.unwrap().outbox, 0);
        assert!(
            store
                .claim_outbox(now + MINUTE, 10)
                .await
                .unwrap()
                .is_empty()
        );
    }

    // Users, sessions and API tokens.

    pub async fn a_user_email_is_unique(store: &dyn Store) {
        let user = store
            .create_user("anne@jansen.nl", "Anne", true, "argon2-hash", now())
            .await
            .unwrap();
        assert!(user.owner);
        let again = store
            .create_user("anne@jansen.nl", "Other Anne", false, "h", now())
            .await;
        assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
        let (found, hash) = store
            .user_credentials("anne@jansen.nl")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(found, user);
        assert_eq!(hash, "argon2-hash");
        assert!(
            store
                .user_credentials("nobody@jansen.nl")
                .await
                .unwrap()
                .is_none()
        );
    }

    pub async fn a_session_is_valid_until_it_expires_or_is_deleted(store: &dyn Store) {
        let user = store
            .create_user("anne@jansen.nl", "Anne", false, "h", now())
            .await
            .unwrap();
        let expires = T0 + 60 * MINUTE;
        store
            .create_session(user.id, "session-hash", expires, now())
            .await
            .unwrap();
        assert_eq!(
            store.session_user("session-hash", T0).await.unwrap(),
            Some(user.clone())
        );
        assert_eq!(
            store
                .session_user("session-hash", expires - 1)
                .await
                .unwrap(),
            Some(user)
        );
        assert_eq!(
            store.session_user("session-hash", expires).await.unwrap(),
            None
        );
        assert_eq!(store.session_user("other-hash", T0).await.unwrap(), None);
        store.delete_session("session-hash").await.unwrap();
        assert_eq!(store.session_user("session-hash", T0).await.unwrap(), None);
        store.delete_session("session-hash").await.unwrap();
    }

    pub async fn only_stored_api_tokens_are_valid_and_act_for_their_brand(store: &dyn Store) {
        let jansen = store.ensure_brand("Bakkerij Jansen", now()).await.unwrap();
        let slug = BrandSlug::parse("visser").unwrap();
        let visser = store.create_brand(&slug, "Visser", now()).await.unwrap();
        assert_eq!(store.api_token_brand("token-hash").await.unwrap(), None);
        store
            .create_api_token("shop", "token-hash", jansen, now())
            .await
            .unwrap();
        store
            .create_api_token("vis", "token-vis", visser.id, now())
            .await
            .unwrap();
        assert_eq!(
            store.api_token_brand("token-hash").await.unwrap(),
            Some(jansen)
        );
        assert_eq!(
            store.api_token_brand("token-vis").await.unwrap(),
            Some(visser.id)
        );
        assert_eq!(store.api_token_brand("token-has").await.unwrap(), None);
        assert_eq!(store.api_token_brand("").await.unwrap(), None);
    }

    // Brands: memberships, and every read and write scoped to one brand.

    pub async fn brands_have_unique_slugs_and_users_their_memberships(store: &dyn Store) {
        let jansen = store.ensure_brand("Bakkerij Jansen", now()).await.unwrap();
        let brands = store.brands().await.unwrap();
        assert_eq!(brands.len(), 1);
        assert_eq!(
            brands[0].slug.as_str(),
            "bakkerij-jansen",
            "a slug from the name"
        );
        let slug = BrandSlug::parse("visser").unwrap();
        let visser = store.create_brand(&slug, "Visser", now()).await.unwrap();
        let again = store.create_brand(&slug, "Visser 2", now()).await;
        assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
        let same_name = store
            .create_brand(&BrandSlug::parse("visser-2").unwrap(), "Visser", now())
            .await;
        assert!(
            matches!(same_name, Err(StoreError::Conflict(_))),
            "{same_name:?}"
        );
        assert_eq!(
            store.brand_by_slug("visser").await.unwrap(),
            Some(visser.clone())
        );
        assert_eq!(store.brand_by_slug("nobody").await.unwrap(), None);
        let anne = member(store, "anne@jansen.nl", "Anne", jansen).await;
        assert_eq!(store.memberships(anne).await.unwrap().len(), 1);
        store
            .set_membership(anne, visser.id, Role::Supervisor, now())
            .await
            .unwrap();
        store
            .set_membership(anne, jansen, Role::Admin, now())
            .await
            .unwrap();
        let roles: Vec<(String, Role)> = store
            .memberships(anne)
            .await
            .unwrap()
            .into_iter()
            .map(|m| (m.brand.slug.to_string(), m.role))
            .collect();
        assert_eq!(
            roles,
            [
                ("bakkerij-jansen".to_string(), Role::Admin),
                ("visser".to_string(), Role::Supervisor)
            ]
        );
    }

    pub async fn another_brands_conversations_are_not_found(store: &dyn Store) {
        let w = world(store).await;
        let other = store
            .create_brand(&BrandSlug::parse("visser").unwrap(), "Visser", now())
            .await
            .unwrap()
            .id;
        let vis = store
            .create_channel(other, ChannelKind::Api, "vis", "{}", now())
            .await
            .unwrap();
        let ours = receive(
            store,
            &w.api,
            message("m1", "anna", "Mijn taart is kapot"),
            T0,
        )
        .await;
        let theirs = receive(store, &vis, message("v1", "bob", "Mijn vis is kapot"), T0).await;
        let open = ConversationStatus::Open;
        let ids = |rows: Vec<InboxRow>| rows.iter().map(|r| r.conversation.id).collect::<Vec<_>>();
        assert_eq!(ids(store.inbox(B, open, 10).await.unwrap()), [ours]);
        assert_eq!(ids(store.inbox(other, open, 10).await.unwrap()), [theirs]);
        assert!(store.conversation(B, theirs).await.unwrap().is_none());
        assert!(store.conversation(other, theirs).await.unwrap().is_some());
        assert!(
            store
                .conversation_messages(B, theirs)
                .await
                .unwrap()
                .is_empty()
        );
        assert!(
            store
                .conversation_events(B, theirs)
                .await
                .unwrap()
                .is_empty()
        );
        let hits = store.search(B, "kapot", 10).await.unwrap();
        assert_eq!(
            hits.iter().map(|h| h.conversation_id).collect::<Vec<_>>(),
            [ours]
        );
        let events = store.events_since(B, EventId(0), 100).await.unwrap();
        assert!(
            events
                .iter()
                .all(|e| e.conversation.conversation.id == ours),
            "{events:?}"
        );
        assert!(!events.is_empty());
        let theirs_events = store.events_since(other, EventId(0), 100).await.unwrap();
        assert!(
            theirs_events
                .iter()
                .all(|e| e.conversation.conversation.id == theirs)
        );
        // Writes through the wrong brand are refused and change nothing.
        let anne = agent(store).await;
        let not_found = |r: Result<(), StoreError>| matches!(r, Err(StoreError::NotFound(_)));
        assert!(not_found(
            store
                .set_status(B, theirs, ConversationStatus::Closed, Some(anne), now())
                .await
        ));
        assert!(not_found(
            store.assign(B, theirs, Some(anne), Some(anne), now()).await
        ));
        // An agent of another brand cannot be given a conversation.
        assert!(not_found(
            store
                .assign(other, theirs, Some(anne), Some(anne), now())
                .await
        ));
        let customer = store
            .conversation(other, theirs)
            .await
            .unwrap()
            .unwrap()
            .customer;
        assert!(not_found(
            store.update_customer(B, customer.id, "Hacked", "").await
        ));
        let reply = store
            .queue_reply(B, theirs, anne, "Sorry", "key-1", now())
            .await;
        assert!(matches!(reply, Err(StoreError::NotFound(_))), "{reply:?}");
        let view = store.conversation(other, theirs).await.unwrap().unwrap();
        assert_eq!(view.row.conversation.status, ConversationStatus::Open);
        assert_eq!(view.row.conversation.assignee, None);
        assert_eq!(view.customer.display_name, customer.display_name);
        assert_eq!(view.timeline.len(), 1, "no reply was queued");
    }

    /// A NUL character (valid JSON as `\u0000`) never blocks the pipeline. SQLite keeps it;
    /// PostgreSQL cannot store it in text and keeps U+FFFD in its place.
    pub async fn a_nul_character_in_inbound_text_is_stored(store: &dyn Store) {
        let w = world(store).await;
        let mut inbound = message("m\0x", "an\0na", "Een\0nul");
        inbound.author.name = Some("Anna\0".into());
        inbound.thread_key = Some("post\0x".into());
        let conv = receive(store, &w.api, inbound.clone(), T0).await;
        let msgs = messages(store, conv).await;
        assert_eq!(msgs.len(), 1);
        assert_eq!(msgs[0].text.replace('\0', "\u{FFFD}"), "Een\u{FFFD}nul");
        assert_eq!(
            row(store, conv)
                .await
                .customer_name
                .replace('\0', "\u{FFFD}"),
            "Anna\u{FFFD}"
        );
        // The same message again is still a duplicate, and the next one threads as usual.
        assert_eq!(
            store
                .append_journal(&[entry(&w.api, inbound.clone(), T0)])
                .await
                .unwrap(),
            vec![Appended::Duplicate]
        );
        let mut next = message("m2", "an\0na", "Nog een");
        next.thread_key = inbound.thread_key.clone();
        assert_eq!(receive(store, &w.api, next, T0 + 1).await, conv);
        let user = agent(store).await;
        let reply = store
            .queue_reply(B, conv, user, "Hoi\0!", "key-nul", now())
            .await
            .unwrap();
        assert_eq!(reply.text.replace('\0', "\u{FFFD}"), "Hoi\u{FFFD}!");
        assert_eq!(
            store.claim_outbox(now() + 1_000, 10).await.unwrap().len(),
            1
        );
    }

    pub async fn a_negative_limit_means_no_limit(store: &dyn Store) {
        let w = world(store).await;
        ingest(
            store,
            &[
                entry(&w.api, message("m1", "anna", "Pakket kwijt"), T0),
                entry(&w.api, message("m2", "bert", "Pakket kapot"), T0 + 1),
            ],
            NORMAL,
        )
        .await;
        assert_eq!(
            store
                .inbox(B, ConversationStatus::Open, -1)
                .await
                .unwrap()
                .len(),
            2
        );
        assert_eq!(store.search(B, "pakket", -1).await.unwrap().len(), 2);
        assert!(store.events_since(B, EventId(0), -1).await.unwrap().len() >= 2);
        assert!(store.pending_journal(-1).await.unwrap().is_empty());
    }

    // Several workers on one store (PostgreSQL: several processes on one database).

    pub async fn workers_claiming_at_once_share_out_the_replies(store: &dyn Store) {
        let w = world(store).await;
        let conv = receive(store, &w.api, message("m1", "anna", "Hallo"), T0).await;
        let user = agent(store).await;
        for i in 0..6 {
            store
                .queue_reply(
                    B,
                    conv,
                    user,
                    &format!("Antwoord {i}"),
                    &format!("key-{i}"),
                    now(),
                )
                .await
                .unwrap();
        }
        let due = now() + 1_000;
        let (a, b, c) = tokio::join!(
            store.claim_outbox(due, 4),
            store.claim_outbox(due, 4),
            store.claim_outbox(due, 4)
        );
        let mut ids: Vec<i64> = [a.unwrap(), b.unwrap(), c.unwrap()]
            .into_iter()
            .flatten()
            .map(|item| item.id)
            .collect();
        assert_eq!(ids.len(), 6, "every reply claimed once: {ids:?}");
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), 6, "no reply claimed twice: {ids:?}");
        assert!(store.claim_outbox(due, 10).await.unwrap().is_empty());
    }

    pub async fn workers_applying_one_batch_at_once_apply_it_once(store: &dyn Store) {
        let w = world(store).await;
        store
            .append_journal(&[
                entry(&w.api, message("m1", "anna", "Een"), T0),
                entry(&w.api, message("m2", "anna", "Twee"), T0 + 1),
                entry(&w.api, message("m3", "anna", "Drie"), T0 + 2),
            ])
            .await
            .unwrap();
        let batch: Vec<Prepared> = store
            .pending_journal(10)
            .await
            .unwrap()
            .into_iter()
            .map(|entry| Prepared {
                entry,
                analysis: None,
                urgency: NORMAL,
            })
            .collect();
        let sla = SlaPolicy::default();
        let (a, b) = tokio::join!(
            store.apply_journal(&batch, &sla, now()),
            store.apply_journal(&batch, &sla, now())
        );
        let (a, b) = (a.unwrap(), b.unwrap());
        let mut journal_ids: Vec<i64> = a.iter().chain(&b).map(|x| x.journal_id).collect();
        journal_ids.sort_unstable();
        assert_eq!(
            journal_ids,
            batch.iter().map(|p| p.entry.id).collect::<Vec<_>>(),
            "each entry applied by exactly one worker"
        );
        let inbox = store.inbox(B, ConversationStatus::Open, 10).await.unwrap();
        assert_eq!(inbox.len(), 1, "one customer, one conversation: {inbox:?}");
        assert_eq!(messages(store, inbox[0].conversation.id).await.len(), 3);
        assert_eq!(
            event_kinds(store, inbox[0].conversation.id).await,
            vec![EventKind::MessageReceived; 3]
        );
        assert!(store.pending_journal(10).await.unwrap().is_empty());
    }

    pub async fn the_same_idempotency_key_at_once_is_one_reply(store: &dyn Store) {
        let w = world(store).await;
        let conv = receive(store, &w.api, message("m1", "anna", "Hallo"), T0).await;
        let user = agent(store).await;
        let (a, b) = tokio::join!(
            store.queue_reply(B, conv, user, "Hoi!", "double-click", now()),
            store.queue_reply(B, conv, user, "Hoi!", "double-click", now())
        );
        assert_eq!(a.unwrap().id, b.unwrap().id);
        assert_eq!(messages(store, conv).await.len(), 2, "one in, one out");
        assert_eq!(
            store.claim_outbox(now() + 1_000, 10).await.unwrap().len(),
            1
        );
    }

    // Durability: `before` and `after` are the same database, closed and reopened between.

    /// Waits up to `seconds` for `rx` to change.
    async fn changed_within(rx: &mut tokio::sync::watch::Receiver<u64>, seconds: u64) -> bool {
        tokio::time::timeout(std::time::Duration::from_secs(seconds), rx.changed())
            .await
            .is_ok_and(|r| r.is_ok())
    }

    pub async fn a_commit_that_appends_events_is_announced(store: &dyn Store) {
        let w = world(store).await;
        let mut changes = store.changes();
        changes.borrow_and_update();
        let conv = receive(store, &w.api, message("m1", "anna", "Hallo?"), T0).await;
        assert!(changed_within(&mut changes, 1).await, "a new message wakes");
        changes.borrow_and_update();
        store
            .set_status(B, conv, ConversationStatus::Closed, None, now())
            .await
            .unwrap();
        assert!(
            changed_within(&mut changes, 1).await,
            "a status change wakes"
        );
    }

    /// `a` and `b` are two processes' stores on one database: events `a` appends wake the
    /// live streams of `b`.
    pub async fn another_processs_events_wake_this_one(a: &dyn Store, b: &dyn Store) {
        let w = world(a).await;
        // Whatever opening stirred up has settled: `b` is quiet before `a` writes.
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        let mut changes = b.changes();
        changes.borrow_and_update();
        assert!(!changed_within(&mut changes, 0).await, "quiet before");
        receive(a, &w.api, message("m1", "anna", "Hallo?"), T0).await;
        assert!(
            changed_within(&mut changes, 3).await,
            "the other process's new message wakes this one"
        );
    }

    pub async fn a_lease_is_held_by_one_owner_until_it_runs_out_or_is_released(store: &dyn Store) {
        let ttl = MINUTE;
        assert!(
            store.claim("outbox", "a", ttl, T0).await.unwrap(),
            "free: a takes it"
        );
        assert!(
            !store.claim("outbox", "b", ttl, T0 + 1).await.unwrap(),
            "a holds it"
        );
        assert!(
            store.claim("retention", "b", ttl, T0 + 1).await.unwrap(),
            "another job is another lease"
        );
        assert!(
            store.claim("outbox", "a", ttl, T0 + ttl - 1).await.unwrap(),
            "a renews before it runs out"
        );
        assert!(
            !store.claim("outbox", "b", ttl, T0 + ttl + 1).await.unwrap(),
            "renewed: still a's"
        );
        assert!(
            store.claim("outbox", "b", ttl, T0 + 2 * ttl).await.unwrap(),
            "run out: b takes it"
        );
        assert!(!store.claim("outbox", "a", ttl, T0 + 2 * ttl).await.unwrap());
        store.release("outbox", "a").await.unwrap();
        assert!(
            !store
                .claim("outbox", "c", ttl, T0 + 2 * ttl + 1)
                .await
                .unwrap(),
            "only the holder releases"
        );
        store.release("outbox", "b").await.unwrap();
        assert!(
            store
                .claim("outbox", "c", ttl, T0 + 2 * ttl + 1)
                .await
                .unwrap()
        );
    }

    pub async fn owners_claiming_at_once_one_wins(store: &dyn Store) {
        let claim = |owner: &'static str| store.claim("outbox", owner, MINUTE, T0);
        let (a, b, c, d) = tokio::join!(claim("a"), claim("b"), claim("c"), claim("d"));
        let won = [a.unwrap(), b.unwrap(), c.unwrap(), d.unwrap()];
        assert_eq!(won.iter().filter(|w| **w).count(), 1, "{won:?}");
    }

    /// Applies everything pending with `analysis` (the pipeline's JSON) on every entry.
    async fn process_analysed(store: &dyn Store, analysis: Option<&str>) -> Vec<Applied> {
        let batch: Vec<Prepared> = store
            .pending_journal(1000)
            .await
            .unwrap()
            .into_iter()
            .map(|entry| Prepared {
                entry,
                analysis: analysis.map(str::to_owned),
                urgency: NORMAL,
            })
            .collect();
        let sla = SlaPolicy::default();
        store.apply_journal(&batch, &sla, now()).await.unwrap()
    }

    pub async fn the_analysis_is_kept_in_columns_and_read_back_typed(store: &dyn Store) {
        use balie_core::{EscalationSignal, Intent, Language, MessageAnalysis, Sentiment};
        let w = world(store).await;
        let angry = r#"{"lang":"nl","sentiment":"negative","sentiment_score":0.9,
            "intent":"complaint","complaint":true,"question":false,"needs_reply":true,
            "escalation":true,"escalation_signals":["repeat_contact","not_a_signal"],
            "urgency":80,"topics":[]}"#;
        let calm = r#"{"lang":"en","sentiment":"positive","intent":"praise",
            "escalation":false,"escalation_signals":[]}"#;
        store
            .append_journal(&[entry(&w.api, message("m1", "anna", "Derde keer!"), T0)])
            .await
            .unwrap();
        let applied = process_analysed(store, Some(angry)).await;
        let conv = applied[0].conversation_id.unwrap();
        let expected = MessageAnalysis {
            language: Language::Dutch,
            sentiment: Sentiment::Negative,
            intent: Intent::Complaint,
            escalation: true,
            escalation_signals: vec![EscalationSignal::RepeatContact],
        };
        let view = store.conversation(B, conv).await.unwrap().unwrap();
        assert_eq!(view.timeline[0].analysis.as_ref(), Some(&expected));
        assert_eq!(view.row.last.as_ref(), Some(&expected));
        assert_eq!(row(store, conv).await.last, Some(expected.clone()));
        // The API still shows the analysis as the pipeline wrote it.
        assert_eq!(view.row.last_analysis.as_deref(), Some(angry));

        let mut edit = message("m1", "anna", "Bedankt!");
        edit.kind = InboundKind::Edited;
        edit.revision = Some("2".into());
        store
            .append_journal(&[entry(&w.api, edit.clone(), T0 + 1)])
            .await
            .unwrap();
        process_analysed(store, Some(calm)).await;
        let view = store.conversation(B, conv).await.unwrap().unwrap();
        let now_calm = view.timeline[0].analysis.clone().unwrap();
        assert_eq!(now_calm.language, Language::English);
        assert_eq!(now_calm.sentiment, Sentiment::Positive);
        assert_eq!(now_calm.intent, Intent::Praise);
        assert!(!now_calm.escalation && now_calm.escalation_signals.is_empty());

        edit.revision = Some("3".into());
        store
            .append_journal(&[entry(&w.api, edit, T0 + 2)])
            .await
            .unwrap();
        process_analysed(store, None).await;
        let view = store.conversation(B, conv).await.unwrap().unwrap();
        assert_eq!(
            view.timeline[0].analysis,
            Some(now_calm),
            "an edit without analysis keeps the last one"
        );

        let plain = receive(store, &w.api, message("m2", "ben", "Hoi"), T0 + 3).await;
        let view = store.conversation(B, plain).await.unwrap().unwrap();
        assert_eq!(view.timeline[0].analysis, None, "no analysis, none typed");
        assert_eq!(view.row.last, None);
    }

    /// Three customer messages `m0`, `m1`, `m2` (for the migration tests).
    pub async fn three_messages(store: &dyn Store) {
        let w = world(store).await;
        for i in 0..3 {
            receive(
                store,
                &w.api,
                message(&format!("m{i}"), "anna", "Hoi"),
                T0 + i,
            )
            .await;
        }
    }

    pub async fn durable_before_reopen(store: &dyn Store) {
        let w = world(store).await;
        store
            .append_journal(&[
                entry(&w.api, message("m1", "anna", "Verwerkt"), T0),
                entry(&w.api, message("m2", "bert", "Nog niet verwerkt"), T0 + 1),
            ])
            .await
            .unwrap();
        let first = store.pending_journal(1).await.unwrap();
        let batch: Vec<_> = first
            .into_iter()
            .map(|entry| Prepared {
                entry,
                analysis: None,
                urgency: NORMAL,
            })
            .collect();
        store
            .apply_journal(&batch, &SlaPolicy::default(), now())
            .await
            .unwrap();
    }

    pub async fn durable_after_reopen(store: &dyn Store) {
        let w = store.channel_by_name("api").await.unwrap().unwrap();
        let pending = store.pending_journal(10).await.unwrap();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].inbound.text, "Nog niet verwerkt");
        let again = store
            .append_journal(&[entry(&w, message("m1", "anna", "Verwerkt"), T0)])
            .await
            .unwrap();
        assert_eq!(
            again,
            vec![Appended::Duplicate],
            "dedupe survives a restart"
        );
        let inbox = store.inbox(B, ConversationStatus::Open, 10).await.unwrap();
        assert_eq!(inbox.len(), 1);
        let msgs = messages(store, inbox[0].conversation.id).await;
        assert_eq!(msgs[0].text, "Verwerkt");
        assert_eq!(store.search(B, "verwerkt", 10).await.unwrap().len(), 1);
        // The pipeline picks up where it left off.
        process(store, NORMAL, &SlaPolicy::default()).await;
        assert_eq!(
            store
                .inbox(B, ConversationStatus::Open, 10)
                .await
                .unwrap()
                .len(),
            2
        );
    }

    fn bulk(
        author_id: &str,
        status: ConversationStatus,
        texts: &[(&str, &str)],
    ) -> BulkConversation {
        BulkConversation {
            author: author(author_id),
            status,
            priority: Priority::Normal,
            waiting_since: Some(T0),
            reply_due: Some(T0 + 30 * MINUTE),
            messages: texts
                .iter()
                .enumerate()
                .map(|(i, (id, text))| BulkMessage {
                    external_id: (*id).to_owned(),
                    text: (*text).to_owned(),
                    created_at: T0 + i64::try_from(i).unwrap() * MINUTE,
                })
                .collect(),
        }
    }

    pub async fn bulk_loaded_conversations_are_listed_viewed_and_searchable(store: &dyn Store) {
        let w = world(store).await;
        let written = store
            .bulk_load(
                w.api.id,
                &[
                    bulk(
                        "k-1",
                        ConversationStatus::Open,
                        &[
                            ("b-1", "Mijn pakket is niet bezorgd"),
                            ("b-2", "Nog steeds niets!"),
                        ],
                    ),
                    bulk(
                        "k-2",
                        ConversationStatus::Closed,
                        &[("b-3", "Thanks, all sorted")],
                    ),
                    bulk("k-3", ConversationStatus::Open, &[]),
                ],
                now(),
            )
            .await
            .unwrap();
        assert_eq!(written, 3, "a conversation without messages is skipped");
        let open = store.inbox(B, ConversationStatus::Open, 10).await.unwrap();
        assert_eq!(open.len(), 1);
        assert_eq!(open[0].first_line, "Nog steeds niets!");
        assert_eq!(open[0].customer_name, "Customer k-1");
        assert_eq!(open[0].conversation.reply_due, Some(T0 + 30 * MINUTE));
        assert_eq!(open[0].last_message_at, T0 + MINUTE);
        let view = store
            .conversation(B, open[0].conversation.id)
            .await
            .unwrap()
            .expect("the conversation");
        let texts: Vec<&str> = view
            .timeline
            .iter()
            .map(|m| m.message.text.as_str())
            .collect();
        assert_eq!(texts, ["Mijn pakket is niet bezorgd", "Nog steeds niets!"]);
        assert_eq!(
            store
                .inbox(B, ConversationStatus::Closed, 10)
                .await
                .unwrap()
                .len(),
            1
        );
        let hits = store.search(B, "pakketten", 10).await.unwrap();
        assert_eq!(
            hits.len(),
            1,
            "stemmed search finds bulk-loaded text: {hits:?}"
        );
        assert_eq!(hits[0].conversation_id, open[0].conversation.id);
        // A bulk-loaded message is known to the journal's pipeline: a webhook retry of it
        // is the same message, not a new one.
        store
            .append_journal(&[entry(
                &w.api,
                message("b-1", "k-1", "Mijn pakket is niet bezorgd"),
                now(),
            )])
            .await
            .unwrap();
        process(store, NORMAL, &SlaPolicy::default()).await;
        let msgs = messages(store, open[0].conversation.id).await;
        assert_eq!(
            msgs.len(),
            2,
            "the retried message joined nothing new: {msgs:?}"
        );
        // Loading an external id the channel already holds is refused.
        let again = store
            .bulk_load(
                w.api.id,
                &[bulk("k-9", ConversationStatus::Open, &[("b-1", "dubbel")])],
                now(),
            )
            .await;
        assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
    }
}

/// A fresh SQLite store in its own directory (kept alive as long as the store).
async fn sqlite() -> (SqliteStore, TempDir) {
    let dir = TempDir::new().expect("temp dir");
    let store = SqliteStore::open(&dir.path().join("balie.db"))
        .await
        .expect("open store");
    (store, dir)
}

/// One `#[tokio::test]` per contract check, each on a fresh SQLite database.
macro_rules! sqlite_contract {
    ($($check:ident),* $(,)?) => {$(
        #[tokio::test]
        async fn $check() {
            let (store, _dir) = sqlite().await;
            contract::$check(&store).await;
            store.close().await;
        }
    )*};
}

/// Every contract check, run against each backend.
macro_rules! all_checks {
    ($backend:ident) => {
        $backend!(
            channels_have_unique_names,
            same_inbound_twice_is_journalled_once,
            duplicates_within_one_batch_are_journalled_once,
            same_external_id_on_two_channels_makes_two_messages,
            pending_journal_is_oldest_first_and_limited,
            a_reply_to_a_known_message_joins_its_conversation,
            a_reply_to_another_customers_message_is_their_own_conversation,
            a_second_message_joins_the_customers_open_conversation,
            a_different_customer_gets_a_new_conversation,
            a_message_in_a_closed_thread_reopens_it,
            a_plain_message_after_closing_reopens_the_conversation,
            a_pending_conversation_reopens_on_a_new_message,
            a_conversation_is_assigned_and_released_with_a_trail,
            thread_key_groups_comments_of_one_customer_on_one_post,
            applying_the_same_batch_twice_changes_nothing,
            an_edit_updates_the_text_and_keeps_the_old_one,
            an_edit_back_to_earlier_wording_is_not_a_duplicate,
            a_removed_message_is_marked_and_kept,
            a_change_to_an_unknown_message_is_recorded_as_done,
            an_echo_from_another_tool_is_recorded_as_sent,
            a_notice_goes_on_the_timeline_and_changes_nothing_else,
            a_notice_without_a_conversation_opens_none,
            an_unread_event_is_kept_in_the_journal_and_shown_nowhere,
            the_same_author_is_the_same_customer,
            the_customer_name_follows_the_platform_until_someone_sets_one,
            the_same_platform_id_on_another_platform_is_another_customer,
            customer_details_can_be_edited,
            urgency_sets_priority_and_the_reply_deadline,
            deadlines_ignore_who_the_author_is,
            a_more_urgent_message_escalates_a_waiting_conversation,
            after_a_reply_priority_follows_the_next_message,
            the_inbox_puts_waiting_first_then_priority_then_deadline,
            an_inbox_row_says_who_where_and_what,
            search_finds_dutch_and_english_inflections,
            search_input_is_never_query_syntax,
            an_empty_search_finds_nothing,
            search_finds_replies_too_and_respects_the_limit,
            events_stream_in_order_from_any_point,
            a_status_change_is_an_event_on_the_stream,
            a_queued_reply_is_an_outbound_message_and_an_outbox_row,
            the_same_idempotency_key_twice_is_one_reply,
            a_claimed_reply_carries_what_delivery_needs,
            a_claimed_reply_says_where_the_answered_message_was,
            channel_secrets_are_kept_sealed_and_replaced_by_name,
            interrupted_platform_replies_are_parked_not_resent,
            a_reply_in_doubt_is_parked_and_a_delivery_report_confirms_it,
            a_failure_report_marks_a_sent_reply_failed_and_it_is_never_resent,
            a_reply_is_not_claimed_before_it_is_due,
            a_retried_reply_comes_back_when_due,
            a_sent_reply_is_marked_with_the_platform_id,
            a_failed_reply_keeps_the_reason,
            replies_left_sending_by_a_crash_are_recovered,
            an_echo_of_our_own_reply_confirms_it,
            a_send_confirmed_after_its_echo_still_succeeds,
            a_user_email_is_unique,
            a_session_is_valid_until_it_expires_or_is_deleted,
            only_stored_api_tokens_are_valid_and_act_for_their_brand,
            brands_have_unique_slugs_and_users_their_memberships,
            another_brands_conversations_are_not_found,
            bulk_loaded_conversations_are_listed_viewed_and_searchable,
            workers_claiming_at_once_share_out_the_replies,
            workers_applying_one_batch_at_once_apply_it_once,
            the_same_idempotency_key_at_once_is_one_reply,
            a_nul_character_in_inbound_text_is_stored,
            a_negative_limit_means_no_limit,
            a_commit_that_appends_events_is_announced,
            a_lease_is_held_by_one_owner_until_it_runs_out_or_is_released,
            owners_claiming_at_once_one_wins,
            the_analysis_is_kept_in_columns_and_read_back_typed,
        );
    };
}

all_checks!(sqlite_contract);

/// Two processes on one file: events one appends wake the other's streams, and so does a
/// write without events (a token created by the CLI while the server runs).
#[tokio::test]
async fn another_processs_writes_are_noticed() {
    let (a, dir) = sqlite().await;
    let b = SqliteStore::open(&dir.path().join("balie.db"))
        .await
        .expect("second store");
    contract::another_processs_events_wake_this_one(&a, &b).await;
    let mut changes = b.changes();
    changes.borrow_and_update();
    let brand = a.ensure_brand("Balie", 1).await.expect("brand");
    a.create_api_token("cli", "hash-cli", brand, 1)
        .await
        .expect("token");
    let woke = tokio::time::timeout(std::time::Duration::from_secs(3), changes.changed()).await;
    assert!(woke.is_ok(), "a token created elsewhere is noticed");
    a.close().await;
    b.close().await;
}

/// Closing and reopening the same file keeps everything; migrations run again harmlessly.
#[tokio::test]
async fn a_reopened_store_keeps_its_journal_and_messages() {
    let (store, dir) = sqlite().await;
    contract::durable_before_reopen(&store).await;
    store.close().await;
    let reopened = SqliteStore::open(&dir.path().join("balie.db"))
        .await
        .expect("reopen");
    contract::durable_after_reopen(&reopened).await;
    reopened.close().await;
}

/// The PostgreSQL contract: the same checks, each on a fresh database of its own.
mod postgres {
    use std::io::Write as _;
    use std::sync::Once;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::{SystemTime, UNIX_EPOCH};

    use balie_store::PgStore;

    use super::contract;

    const URL_VAR: &str = "BALIE_TEST_POSTGRES_URL";

    /// The admin URL, or `None` (said once on the terminal) when no server was given. In CI
    /// a missing server is a failure, so the PostgreSQL contract cannot silently stop running.
    fn admin_url() -> Option<String> {
        match std::env::var(URL_VAR) {
            Ok(url) if !url.trim().is_empty() => Some(url),
            _ => {
                assert!(
                    std::env::var("CI").as_deref() != Ok("true"),
                    "{URL_VAR} is not set: the PostgreSQL contract tests must run in CI"
                );
                static SAID: Once = Once::new();
                SAID.call_once(|| {
                    // Straight to the terminal, past the test harness's output capture.
                    if let Ok(mut tty) = std::fs::OpenOptions::new().write(true).open("/dev/stderr")
                    {
                        let _ = writeln!(
                            tty,
                            "note: the PostgreSQL store contract tests did not run: {URL_VAR} \
                             is not set (e.g. postgres://postgres@127.0.0.1:5432/postgres)"
                        );
                    }
                });
                None
            }
        }
    }

    /// A uniquely named database, created on the server and dropped by [`TestDb::drop`].
    pub struct TestDb {
        admin: String,
        name: String,
        pub url: String,
    }

    impl TestDb {
        pub async fn create() -> Option<Self> {
            static COUNTER: AtomicU32 = AtomicU32::new(0);
            let admin = admin_url()?;
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .subsec_nanos();
            let name = format!(
                "balie_test_{}_{nanos}_{}",
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::Relaxed)
            );
            let url = PgStore::create_database(&admin, &name)
                .await
                .expect("create a test database on BALIE_TEST_POSTGRES_URL");
            Some(Self { admin, name, url })
        }

        pub async fn open(&self) -> PgStore {
            PgStore::open(&self.url)
                .await
                .expect("open PostgreSQL store")
        }

        pub async fn drop(self) {
            PgStore::drop_database(&self.admin, &self.name)
                .await
                .expect("drop the test database");
        }
    }

    /// Runs `check` on a fresh store in its own database; the database is dropped whether the
    /// check passes or panics.
    pub async fn run<F, Fut>(check: F)
    where
        F: FnOnce(PgStore) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let Some(db) = TestDb::create().await else {
            return;
        };
        let store = db.open().await;
        let outcome = tokio::spawn(check(store)).await;
        db.drop().await;
        if let Err(e) = outcome {
            std::panic::resume_unwind(e.into_panic());
        }
    }

    /// One `#[tokio::test]` per contract check, each on a fresh PostgreSQL database.
    macro_rules! postgres_contract {
        ($($check:ident),* $(,)?) => {$(
            #[tokio::test]
            async fn $check() {
                run(|store| async move {
                    contract::$check(&store).await;
                    store.close().await;
                })
                .await;
            }
        )*};
    }

    all_checks!(postgres_contract);

    /// Closing and reopening the same database keeps everything; migrations run again
    /// harmlessly.
    #[tokio::test]
    async fn a_reopened_store_keeps_its_journal_and_messages() {
        let Some(db) = TestDb::create().await else {
            return;
        };
        let url = db.url.clone();
        let outcome = tokio::spawn(async move {
            let store = PgStore::open(&url).await.expect("open");
            contract::durable_before_reopen(&store).await;
            store.close().await;
            let reopened = PgStore::open(&url).await.expect("reopen");
            contract::durable_after_reopen(&reopened).await;
            reopened.close().await;
        })
        .await;
        db.drop().await;
        if let Err(e) = outcome {
            std::panic::resume_unwind(e.into_panic());
        }
    }

    /// Journal appends are durable on return even when the server defaults to asynchronous
    /// commits: the store asks for synchronous ones on every connection.
    #[tokio::test]
    async fn commits_are_synchronous_whatever_the_server_default() {
        let Some(db) = TestDb::create().await else {
            return;
        };
        let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(&db.admin)
            .await
            .expect("admin connection");
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "ALTER DATABASE \"{}\" SET synchronous_commit = off",
            db.name
        )))
        .execute(&mut admin)
        .await
        .expect("make commits asynchronous by default");
        let store = db.open().await;
        let setting: String = sqlx::query_scalar("SHOW synchronous_commit")
            .fetch_one(store.pool())
            .await
            .expect("show");
        store.close().await;
        db.drop().await;
        assert_eq!(setting, "on");
    }

    /// Migration 4 fills the typed analysis columns of messages analysed before it, from
    /// the stored JSON, and leaves text jsonb refuses alone.
    #[tokio::test]
    async fn migration_4_fills_the_analysis_columns_from_the_stored_json() {
        run(|store| async move {
            contract::three_messages(&store).await;
            let analyses = [
                r#"{"lang":"nl","sentiment":"negative","intent":"complaint","escalation":true,"escalation_signals":["repeat_contact","going_public"]}"#,
                "not json",
                r#"{"lang":"en","sentiment":"neutral","intent":"question","escalation":false,"escalation_signals":[]}"#,
            ];
            for (i, a) in analyses.iter().enumerate() {
                sqlx::query("UPDATE messages SET analysis = $1 WHERE external_id = $2")
                    .bind(a)
                    .bind(format!("m{i}"))
                    .execute(store.pool())
                    .await
                    .unwrap();
            }
            sqlx::raw_sql(
                "ALTER TABLE messages DROP COLUMN language, DROP COLUMN sentiment, \
                 DROP COLUMN intent, DROP COLUMN escalation, DROP COLUMN escalation_signals",
            )
            .execute(store.pool())
            .await
            .unwrap();
            sqlx::raw_sql(include_str!(
                "../migrations/postgres/0004_typed_analysis.sql"
            ))
            .execute(store.pool())
            .await
            .unwrap();
            #[allow(clippy::type_complexity)]
            let rows: Vec<(
                String,
                Option<String>,
                Option<String>,
                Option<String>,
                Option<bool>,
                Option<String>,
            )> = sqlx::query_as(
                "SELECT external_id, language, sentiment, intent, escalation, \
                 escalation_signals FROM messages ORDER BY external_id",
            )
            .fetch_all(store.pool())
            .await
            .unwrap();
            let s = |v: &str| Some(v.to_owned());
            assert_eq!(
                rows,
                vec![
                    (
                        "m0".into(),
                        s("nl"),
                        s("negative"),
                        s("complaint"),
                        Some(true),
                        s("repeat_contact,going_public")
                    ),
                    ("m1".into(), None, None, None, None, None),
                    ("m2".into(), s("en"), s("neutral"), s("question"), Some(false), s("")),
                ]
            );
            store.close().await;
        })
        .await;
    }

    /// Two processes on one database: events one appends wake the other's streams.
    #[tokio::test]
    async fn another_processs_events_wake_this_one() {
        let Some(db) = TestDb::create().await else {
            return;
        };
        let (a, b) = (db.open().await, db.open().await);
        let outcome = tokio::spawn(async move {
            contract::another_processs_events_wake_this_one(&a, &b).await;
            a.close().await;
            b.close().await;
        })
        .await;
        db.drop().await;
        if let Err(e) = outcome {
            std::panic::resume_unwind(e.into_panic());
        }
    }

    /// Two processes starting together both migrate safely (the advisory lock).
    #[tokio::test]
    async fn two_stores_opening_at_once_migrate_once() {
        let Some(db) = TestDb::create().await else {
            return;
        };
        let (a, b) = tokio::join!(PgStore::open(&db.url), PgStore::open(&db.url));
        let (a, b) = (a.expect("first"), b.expect("second"));
        let (count, last): (i64, Option<i64>) =
            sqlx::query_as("SELECT COUNT(*), MAX(version) FROM schema_migrations")
                .fetch_one(a.pool())
                .await
                .expect("count");
        a.close().await;
        b.close().await;
        db.drop().await;
        assert_eq!(Some(count), last, "every migration applied exactly once");
    }
}
