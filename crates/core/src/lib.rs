//! Balie's domain model and pure rules: no IO, no async, nothing that can fail at run time.
//!
//! Everything a webcare conversation is made of lives here: brands, channels, customers and
//! their identities, conversations, messages, timeline events and users, plus the normalised
//! [`Inbound`] event every connector produces and the SLA and priority rules.

pub mod analysis;
pub mod inbound;
pub mod model;
pub mod reply_length;
pub mod sla;

pub use analysis::{EscalationSignal, Intent, Language, MessageAnalysis, Sentiment};
pub use inbound::{Author, Inbound, InboundKind, Place, PlaceKind};
pub use model::*;
pub use reply_length::{ReplyChannel, ReplyLength};
pub use sla::{Priority, SlaPolicy};
