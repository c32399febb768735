//! SLA policy and priority: when a reply is due, derived from what the message says and
//! when it arrived, never from who the customer is or how many followers they have (R7).

use serde::{Deserialize, Serialize};

use crate::model::Millis;

/// Conversation priority. Ordered: `Urgent` sorts first in the inbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    Urgent,
    High,
    Normal,
    Low,
}

impl Priority {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Urgent => "urgent",
            Self::High => "high",
            Self::Normal => "normal",
            Self::Low => "low",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Urgent, Self::High, Self::Normal, Self::Low]
            .into_iter()
            .find(|k| k.as_str() == s)
    }

    /// Sort rank (0 = most urgent), as stored for ordering.
    pub fn rank(self) -> i64 {
        match self {
            Self::Urgent => 0,
            Self::High => 1,
            Self::Normal => 2,
            Self::Low => 3,
        }
    }

    pub fn from_rank(rank: i64) -> Self {
        match rank {
            0 => Self::Urgent,
            1 => Self::High,
            2 => Self::Normal,
            _ => Self::Low,
        }
    }

    /// Priority from a message's urgency score (0-100, from text analysis only).
    pub fn from_urgency(urgency: u8) -> Self {
        match urgency {
            80..=u8::MAX => Self::Urgent,
            55..=79 => Self::High,
            20..=54 => Self::Normal,
            _ => Self::Low,
        }
    }
}

/// Reply targets per priority, in minutes, on the customer's clock (24/7, R4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SlaPolicy {
    pub urgent_minutes: i64,
    pub high_minutes: i64,
    pub normal_minutes: i64,
    pub low_minutes: i64,
}

impl Default for SlaPolicy {
    /// Walmart's "a substantive reply within half an hour" for normal traffic (R5).
    fn default() -> Self {
        Self {
            urgent_minutes: 15,
            high_minutes: 20,
            normal_minutes: 30,
            low_minutes: 240,
        }
    }
}

impl SlaPolicy {
    /// The moment a reply is due for a customer message of `priority` that arrived at `arrived`.
    pub fn reply_due(&self, priority: Priority, arrived: Millis) -> Millis {
        let minutes = match priority {
            Priority::Urgent => self.urgent_minutes,
            Priority::High => self.high_minutes,
            Priority::Normal => self.normal_minutes,
            Priority::Low => self.low_minutes,
        };
        arrived.saturating_add(minutes.saturating_mul(60_000))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_follow_priority_and_arrival_only() {
        let p = SlaPolicy::default();
        let t = 1_700_000_000_000;
        assert_eq!(p.reply_due(Priority::Normal, t), t + 30 * 60_000);
        assert_eq!(p.reply_due(Priority::Urgent, t), t + 15 * 60_000);
        assert!(p.reply_due(Priority::Low, t) > p.reply_due(Priority::High, t));
    }

    #[test]
    fn urgency_maps_to_priority_monotonically() {
        let mut last = Priority::Low;
        for u in 0..=100u8 {
            let p = Priority::from_urgency(u);
            assert!(p <= last, "priority must not drop as urgency rises ({u})");
            last = p;
        }
        assert_eq!(Priority::from_urgency(100), Priority::Urgent);
        for p in [
            Priority::Urgent,
            Priority::High,
            Priority::Normal,
            Priority::Low,
        ] {
            assert_eq!(Priority::from_rank(p.rank()), p);
            assert_eq!(Priority::parse(p.as_str()), Some(p));
        }
    }
}
