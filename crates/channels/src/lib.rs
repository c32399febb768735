//! Platform connectors: each module verifies one platform's requests, normalises its payloads
//! into [`balie_core::Inbound`] events and sends replies through its API.

pub mod signature;
