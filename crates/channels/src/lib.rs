//! Platform connectors: each module verifies one platform's requests, normalises its payloads
//! into [`balie_core::Inbound`] events and says where its replies go, described once by its
//! [`Connector`] (see [`connector`]); the server dispatches through [`CONNECTORS`].
//!
//! Architecture invariant: this is the only crate that knows platform payloads, and it knows
//! no HTTP framework. Handlers pass in raw bodies and header values; the outbox passes in a
//! [`reqwest::Client`] and gets a classified [`SendOutcome`] back.
//!
//! - [`api`]: the generic API channel's outbound webhook.
//! - [`connector`]: the one description every platform gives, and the registry.
//! - [`meta`]: Facebook Messenger and Page feed, Instagram, WhatsApp Cloud API.
//! - [`x`]: X Account Activity webhooks, replies and DMs.
//! - [`telegram`]: Telegram Bot API webhooks and replies.
//! - [`outbound`]: the reply window rules, reply targets and the send step they share.
//! - [`outcome`]: what becomes of events that are not plain messages (dropped, kept unread).
//!
//! # Wiring a webhook
//!
//! The server's one webhook handler finds the [`connector::Webhook`] by URL segment, reads the
//! body as raw bytes, verifies before parsing, journals what parsing returns (events routed
//! by kind and account, `unread` ones on the webhook's own channel), counts and logs every
//! [`Dropped`] (see [`outcome`]), then answers 200; one bad event never fails the POST. What
//! each platform's webhook does:
//!
//! | Platform | Handshake (`GET`) | Check (`POST`) | Parse |
//! |---|---|---|---|
//! | Meta | [`meta::verify_subscription`] → bare challenge, else 403 | [`meta::verify_signature`] with `X-Hub-Signature-256` | [`meta::parse_for_channel`]: events routed by `(channel, account_id)`, WhatsApp `statuses` |
//! | X | [`x::crc_response`] as `application/json` | [`x::verify_signature`] with `x-twitter-webhooks-signature` | [`x::parse`]: `for_user_id` routes |
//! | Telegram | none | [`telegram::verify_secret_token`] with `X-Telegram-Bot-Api-Secret-Token` | [`telegram::parse`]: one update, route by URL |
//!
//! Inbound events are deduplicated by the store on (channel, `external_id`, kind, revision).
//! For `Echo` events `author` is the customer the brand wrote to, except for the brand's own
//! comments (the payload does not say whom they answer: `author` is the brand's account and
//! `in_reply_to`/`thread_key` place them).
//!
//! # Sending
//!
//! Ask the channel's [`Connector`] how a reply goes out ([`Connector::outbound_kind`]; with
//! [`reply_window`] that tells beforehand whether a reply is possible) and where
//! ([`Connector::reply_target`], from the channel's settings and credentials and the
//! conversation), call [`send`] and act on the [`SendOutcome`]. The workspace builds reqwest without a TLS
//! provider: the binary must install one (`rustls::crypto::ring::default_provider()
//! .install_default()`) before building the client, and give the client a timeout.

pub mod api;
pub mod connector;
mod error;
mod json;
pub mod meta;
pub mod outbound;
pub mod outcome;
mod secret;
pub mod signature;
pub mod telegram;
pub mod x;

pub use connector::{
    CONNECTORS, ChannelSetup, Connector, Credentials, Delivery, Handshake, PlatformSettings,
    ReplyContext, SecretName,
};
pub use error::ParseError;
pub use outbound::{
    GraphApi, OutboundKind, OutboundReply, OutboundTarget, Refusal, SendOutcome, WindowMode,
    reply_window, send, send_at,
};
pub use outcome::{DropReason, Dropped, Unreadable};
pub use secret::Secret;

use balie_core::{Author, Inbound, InboundKind, Millis};

/// An [`Inbound`] with the required fields set and every optional one empty.
pub(crate) fn new_inbound(
    external_id: String,
    kind: InboundKind,
    author: Author,
    text: String,
    created_at: Millis,
) -> Inbound {
    Inbound {
        external_id,
        kind,
        author,
        text,
        in_reply_to: None,
        thread_key: None,
        place: None,
        created_at,
        account_id: None,
        attachments: Vec::new(),
        revision: None,
        outbox_key: None,
    }
}
