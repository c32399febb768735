//! A credential (access token, bot token, webhook secret, database URL) that never shows up
//! in `Debug` output or errors.

use std::fmt;

/// An access token or bot token. `Debug` prints `[redacted]`; there is no `Display`. Read it
/// with [`Secret::expose`] only where it goes onto the wire.
#[derive(Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `text` with every occurrence of the secret replaced, for messages that might quote a
    /// URL or a request back at us.
    pub(crate) fn scrub(&self, text: &str) -> String {
        if self.0.is_empty() {
            return text.to_owned();
        }
        text.replace(&self.0, "[redacted]")
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_hides_the_value() {
        let secret = Secret::new("EAAG-very-secret");
        assert_eq!(format!("{secret:?}"), "[redacted]");
        assert_eq!(
            secret.scrub("GET /botEAAG-very-secret/sendMessage"),
            "GET /bot[redacted]/sendMessage"
        );
    }
}
