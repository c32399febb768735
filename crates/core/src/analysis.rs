//! A message's text analysis as Balie reads it: typed, not JSON. Produced by `text`, stored
//! in columns reports can group by, shown by the UI by these names.

/// Declares a fixed set of values with its stored names, `as_str`, `parse` and `ALL`.
macro_rules! named_values {
    ($(#[$doc:meta])* $name:ident { $($variant:ident => $text:literal),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($variant),*
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$(Self::$variant),*];

            /// The stored name.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text),*
                }
            }

            pub fn parse(s: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|v| v.as_str() == s)
            }
        }
    };
}

named_values!(
    /// How a message sounds.
    Sentiment {
        Negative => "negative",
        Neutral => "neutral",
        Positive => "positive",
    }
);

named_values!(
    /// What a message wants.
    Intent {
        Complaint => "complaint",
        Question => "question",
        Praise => "praise",
        Other => "other",
    }
);

named_values!(
    /// Why a message may escalate.
    EscalationSignal {
        RepeatContact => "repeat_contact",
        ThreatToLeave => "threat_to_leave",
        GoingPublic => "going_public",
        ShamingHashtag => "shaming_hashtag",
        TimePressure => "time_pressure",
    }
);

/// The language a message is written in: the two Balie reads closely, or another by its
/// ISO 639-1 code (`und` when unknown).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Language {
    Dutch,
    English,
    Other(String),
}

impl Language {
    /// The ISO 639-1 code, as stored.
    pub fn code(&self) -> &str {
        match self {
            Self::Dutch => "nl",
            Self::English => "en",
            Self::Other(code) => code,
        }
    }

    pub fn from_code(code: &str) -> Self {
        match code {
            "nl" => Self::Dutch,
            "en" => Self::English,
            other => Self::Other(other.to_owned()),
        }
    }
}

/// What the text analysis says about one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageAnalysis {
    pub language: Language,
    pub sentiment: Sentiment,
    pub intent: Intent,
    /// Whether the message looks likely to escalate (see `escalation_signals`).
    pub escalation: bool,
    pub escalation_signals: Vec<EscalationSignal>,
}

impl MessageAnalysis {
    /// The signals as stored: their names joined by commas.
    pub fn signals_text(&self) -> String {
        self.escalation_signals
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Signals stored as [`MessageAnalysis::signals_text`]; unknown names are left out.
    pub fn parse_signals(text: &str) -> Vec<EscalationSignal> {
        text.split(',')
            .filter_map(EscalationSignal::parse)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_names_read_back() {
        for s in Sentiment::ALL {
            assert_eq!(Sentiment::parse(s.as_str()), Some(*s));
        }
        for i in Intent::ALL {
            assert_eq!(Intent::parse(i.as_str()), Some(*i));
        }
        let a = MessageAnalysis {
            language: Language::from_code("de"),
            sentiment: Sentiment::Negative,
            intent: Intent::Complaint,
            escalation: true,
            escalation_signals: EscalationSignal::ALL.to_vec(),
        };
        assert_eq!(
            MessageAnalysis::parse_signals(&a.signals_text()),
            a.escalation_signals
        );
        assert_eq!(a.language.code(), "de");
        assert_eq!(Language::from_code("nl"), Language::Dutch);
        assert!(MessageAnalysis::parse_signals("").is_empty());
    }
}
