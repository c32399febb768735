//! Text analysis for every inbound message (placeholder until the triage models land: issue 3).

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Sentiment {
    Negative,
    Neutral,
    Positive,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Intent {
    Complaint,
    Question,
    Praise,
    Other,
}

/// The analysis of one message; serialises to the stable `balie analyze` shape.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Analysis {
    pub lang: String,
    pub sentiment: Sentiment,
    pub sentiment_score: f32,
    pub intent: Intent,
    pub complaint: bool,
    pub question: bool,
    pub needs_reply: bool,
    pub escalation: bool,
    pub escalation_signals: Vec<String>,
    pub urgency: u8,
    pub topics: Vec<String>,
}

/// Analyse one message. Deterministic; never fails.
pub fn analyze(text: &str) -> Analysis {
    let question = text.contains('?');
    Analysis {
        lang: "und".to_string(),
        sentiment: Sentiment::Neutral,
        sentiment_score: 0.0,
        intent: if question {
            Intent::Question
        } else {
            Intent::Other
        },
        complaint: false,
        question,
        needs_reply: question,
        escalation: false,
        escalation_signals: Vec::new(),
        urgency: if question { 30 } else { 10 },
        topics: Vec::new(),
    }
}
