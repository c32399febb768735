//! Platform connectors: each module verifies one platform's requests, normalises its payloads
//! into [`balie_core::Inbound`] events and sends replies through its API.
//!
//! Architecture invariant: this is the only crate that knows platform payloads, and it knows
//! no HTTP framework. Handlers pass in raw bodies and header values; the outbox passes in a
//! [`reqwest::Client`] and gets a classified [`SendOutcome`] back.
//!
//! - [`meta`]: Facebook Messenger and Page feed, Instagram, WhatsApp Cloud API (inbound).
//! - [`x`]: X Account Activity webhooks (inbound).
//! - [`telegram`]: Telegram Bot API webhooks (inbound).
//! - [`outbound`]: the reply window rules and the sender for all of them.

mod error;
mod json;
pub mod meta;
pub mod outbound;
mod secret;
pub mod signature;
pub mod telegram;
pub mod x;

pub use error::ParseError;
pub use outbound::{
    GraphApi, OutboundKind, OutboundReply, OutboundTarget, Refusal, SendOutcome, WindowMode,
    reply_window, send, send_at,
};
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
