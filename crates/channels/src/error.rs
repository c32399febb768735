//! The one error a connector's `parse` returns: what in the payload was wrong, and where.

/// A payload that is not what the platform documents. The message names the JSON path of the
/// offending field, so a log line is enough to see what the platform sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The body is not JSON at all, or not the JSON shape expected at `path`.
    #[error("malformed {platform} payload at `{path}`: {reason}")]
    Malformed {
        platform: &'static str,
        path: String,
        reason: String,
    },
    /// The body is JSON but for a different platform or object type.
    #[error("unexpected {platform} payload: {reason}")]
    Unexpected {
        platform: &'static str,
        reason: String,
    },
}
