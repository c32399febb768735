//! Small helpers both storage backends share: the migration clock, error mapping, inbox text.

use std::time::{SystemTime, UNIX_EPOCH};

use balie_core::Millis;

use crate::StoreError;

/// Longest first line kept for the inbox.
const FIRST_LINE_CHARS: usize = 140;

/// The system clock, read in one place only: when opening a store records which migrations
/// ran. Every store method that writes a time takes it as `now` from its caller.
pub(crate) fn migrated_at() -> Millis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A unique-constraint violation becomes `Conflict(what)`; anything else stays a database error.
pub(crate) fn conflict_or(e: sqlx::Error, what: &'static str) -> StoreError {
    match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => StoreError::Conflict(what),
        _ => StoreError::Database(e),
    }
}

pub(crate) fn corrupt(what: &str, value: &str) -> StoreError {
    StoreError::Corrupt(format!("{what} {value:?}"))
}

/// The first non-empty line of a message, cut for the inbox.
pub(crate) fn first_line(text: &str) -> String {
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("");
    line.chars().take(FIRST_LINE_CHARS).collect()
}

/// What a new customer is called: the platform's name, else the handle, else the id.
pub(crate) fn display_name(
    platform_id: &str,
    handle: Option<&String>,
    name: Option<&String>,
) -> String {
    name.or(handle)
        .map_or(platform_id, String::as_str)
        .to_owned()
}
