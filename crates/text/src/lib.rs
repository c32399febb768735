//! Text analysis for every inbound message: language, sentiment, intent, needs-reply, escalation, urgency, topics.
//!
//! Pure compute: the models are linear softmax classifiers over hashed word, bigram and
//! character n-gram features plus lexicon cues, trained by `balie train` and embedded in
//! the binary with `include_bytes!`. No IO happens here.

pub mod csv;
pub mod eval;
pub mod features;
pub mod lang;
pub mod lexicon;
pub mod model;
pub mod reply_check;
pub mod rules;
pub mod tokenize;
pub mod train;

use std::sync::LazyLock;

use serde::Serialize;

use crate::features::Feature;
use crate::lexicon::Lexicon;
use crate::model::LinearModel;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Sentiment {
    Negative,
    Neutral,
    Positive,
}

impl Sentiment {
    /// Class order used by the sentiment models.
    pub const ALL: [Sentiment; 3] = [Sentiment::Negative, Sentiment::Neutral, Sentiment::Positive];

    pub fn as_str(self) -> &'static str {
        match self {
            Sentiment::Negative => "negative",
            Sentiment::Neutral => "neutral",
            Sentiment::Positive => "positive",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.as_str() == s)
    }

    pub fn index(self) -> usize {
        self as usize
    }
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

/// The trained weights an [`Analyzer`] uses.
#[derive(Debug, Clone)]
pub struct Models {
    pub lexicon: Lexicon,
    pub sentiment_nl: LinearModel,
    pub sentiment_en: LinearModel,
    pub complaint_en: LinearModel,
    /// Dutch-vs-English character n-gram model for language ID without stopword evidence.
    pub lang_nl_en: LinearModel,
}

/// File names of the embedded models under `crates/text/models/` (written by `balie train`).
pub const MODEL_FILES: [&str; 5] = [
    "lexicon.tsv",
    "sentiment-nl.blm",
    "sentiment-en.blm",
    "complaint-en.blm",
    "lang-nl-en.blm",
];

static EMBEDDED_LEXICON: &str = include_str!("../models/lexicon.tsv");
static EMBEDDED_SENTIMENT_NL: &[u8] = include_bytes!("../models/sentiment-nl.blm");
static EMBEDDED_SENTIMENT_EN: &[u8] = include_bytes!("../models/sentiment-en.blm");
static EMBEDDED_COMPLAINT_EN: &[u8] = include_bytes!("../models/complaint-en.blm");
static EMBEDDED_LANG_NL_EN: &[u8] = include_bytes!("../models/lang-nl-en.blm");

impl Models {
    /// The models compiled into this binary; a missing or broken file falls back to an untrained model.
    pub fn embedded() -> Self {
        let load = |bytes: &[u8], classes| {
            LinearModel::from_bytes(bytes).unwrap_or_else(|_| LinearModel::empty(classes))
        };
        let mut lexicon_src = String::from(EMBEDDED_LEXICON);
        if lexicon_src.trim().is_empty() {
            lexicon_src.push_str(lexicon::BUILTIN);
        }
        Models {
            lexicon: Lexicon::parse(&lexicon_src),
            sentiment_nl: load(EMBEDDED_SENTIMENT_NL, 3),
            sentiment_en: load(EMBEDDED_SENTIMENT_EN, 3),
            complaint_en: load(EMBEDDED_COMPLAINT_EN, 2),
            lang_nl_en: load(EMBEDDED_LANG_NL_EN, 2),
        }
    }
}

/// Analyses messages with a fixed set of models.
#[derive(Debug, Clone)]
pub struct Analyzer {
    models: Models,
}

static DEFAULT: LazyLock<Analyzer> = LazyLock::new(|| Analyzer::new(Models::embedded()));

/// Analyse one message with the embedded models. Deterministic; never fails.
pub fn analyze(text: &str) -> Analysis {
    DEFAULT.analyze(text)
}

/// The shared analyzer with the embedded models.
pub fn default_analyzer() -> &'static Analyzer {
    &DEFAULT
}

/// Sentiment class probabilities from the model for `lang` (negative, neutral, positive).
fn sentiment_probs(
    models: &Models,
    lang: &str,
    feats: &[Feature],
    tokens: &[tokenize::Token],
) -> [f32; 3] {
    let model = if lang == "nl" {
        &models.sentiment_nl
    } else {
        &models.sentiment_en
    };
    if !model.is_trained() {
        let lex_sum: f32 = tokens
            .iter()
            .filter_map(|t| models.lexicon.score(&t.text))
            .sum();
        let pos = (lex_sum.max(0.0)).tanh();
        let neg = (-lex_sum.min(0.0)).tanh();
        let neu = 1.0 - pos.max(neg);
        let s = pos + neg + neu;
        return [neg / s, neu / s, pos / s];
    }
    let mut l = [0f32; 3];
    model.logits(feats, &mut l);
    model::softmax(&mut l);
    l
}

impl Analyzer {
    pub fn new(models: Models) -> Self {
        Analyzer { models }
    }

    pub fn models(&self) -> &Models {
        &self.models
    }

    /// Features of a message as the models see them.
    pub fn features(&self, text: &str) -> Vec<Feature> {
        let tokens = tokenize::tokenize(text);
        let mut feats = Vec::new();
        features::extract(&tokens, &self.models.lexicon, text, &mut feats);
        feats
    }

    /// Language of a message (ISO 639-1 or `und`), as `analyze` reports it.
    pub fn language(&self, text: &str) -> &'static str {
        let tokens = tokenize::tokenize(text);
        lang::detect_with(text, &tokens, Some(&self.models.lang_nl_en))
    }

    /// Analyse one message. Deterministic; never fails.
    pub fn analyze(&self, text: &str) -> Analysis {
        let m = &self.models;
        let tokens = tokenize::tokenize(text);
        let lang = lang::detect_with(text, &tokens, Some(&m.lang_nl_en));
        let mut feats = Vec::with_capacity(text.len() * 3);
        features::extract(&tokens, &m.lexicon, text, &mut feats);
        let phrase = rules::phrase_text(&tokens);

        let probs = sentiment_probs(m, lang, &feats, &tokens);
        let best = (0..3)
            .max_by(|&a, &b| probs[a].total_cmp(&probs[b]).then(b.cmp(&a)))
            .unwrap_or(1);
        let sentiment = Sentiment::ALL[best];
        let sentiment_score = ((probs[2] - probs[0]) * 100.0).round() / 100.0;

        let question = rules::is_question(&tokens, &phrase);
        let escalation_signals = rules::escalation_signals(&tokens, &phrase);
        let strong_signal = escalation_signals.iter().any(|s| s != "time_pressure");
        let negative = probs[0] >= 0.5;

        let complaint_model = lang != "nl" && m.complaint_en.is_trained();
        let complaint_p = if complaint_model {
            m.complaint_en.probabilities(&feats)[1]
        } else {
            0.0
        };
        let cue = rules::has_complaint_cue(&phrase);
        let addressed = rules::addressed(&tokens, &phrase);
        let positive = sentiment == Sentiment::Positive;
        let complaint = if complaint_model {
            complaint_p >= 0.5
                || (cue && negative)
                || (strong_signal && probs[2] < 0.5)
                || (probs[0] >= STRONGLY_NEGATIVE && addressed)
        } else {
            // No labelled Dutch complaint data: cue phrases, escalation and negativity about a
            // service matter (see MODEL_CARD.md).
            cue || (strong_signal && !positive)
                || (negative && question)
                || (probs[0] >= 0.6 && (addressed || rules::has_service_noun(&phrase)))
        };
        let thanks = rules::has_thanks(&phrase);
        // "Thanks for nothing", "bedankt voor niks": thanks in a negative message is sarcasm,
        // and the customer is complaining.
        let sarcasm = rules::has_sarcastic_thanks(&phrase) || (thanks && negative);
        let complaint = complaint || sarcasm;
        // A Youpie-style escalation is negative whatever the (political-tweet-trained) model says.
        let (sentiment, sentiment_score) = if sarcasm {
            (Sentiment::Negative, sentiment_score.min(-0.4))
        } else if strong_signal && complaint && !thanks {
            (Sentiment::Negative, sentiment_score.min(-0.5))
        } else if lang == "nl" && complaint && sentiment == Sentiment::Neutral {
            // The Dutch model learnt from political tweets; a webcare complaint is negative.
            (Sentiment::Negative, sentiment_score.min(-0.3))
        } else {
            (sentiment, sentiment_score)
        };
        // Counting and waiting words in praise ("my 3rd time flying with you and always
        // great", "de monteur kwam binnen een uur") are no escalation.
        let glad = sentiment == Sentiment::Positive && !complaint;
        let escalation_signals = if glad { Vec::new() } else { escalation_signals };
        let strong_signal = strong_signal && !glad;
        let escalation =
            strong_signal || (!escalation_signals.is_empty() && (complaint || negative));

        // Praise needs thanks or a positive word, not just a friendly tone ("see you tonight").
        let praise = !complaint
            && !sarcasm
            && (thanks
                || (sentiment == Sentiment::Positive
                    && tokens
                        .iter()
                        .any(|t| m.lexicon.score(&t.text).is_some_and(|s| s >= 0.3))));
        let intent = if complaint {
            Intent::Complaint
        } else if question {
            Intent::Question
        } else if praise {
            Intent::Praise
        } else {
            Intent::Other
        };
        let retweet = tokens.first().is_some_and(|t| t.text == "rt");
        let needs_reply = !retweet
            && (complaint
                || escalation
                || (question && (addressed || rules::is_request(&phrase)))
                || (praise && (addressed || thanks))
                || (sentiment == Sentiment::Negative && addressed));

        let urgency = urgency(&UrgencyInput {
            intent,
            needs_reply,
            negativity: probs[0],
            question,
            escalation,
            signals: &escalation_signals,
        });
        let topics = rules::topics(&tokens, |w| {
            m.lexicon.score(w).is_some_and(|s| s.abs() >= 0.5)
        });

        Analysis {
            lang: lang.to_string(),
            sentiment,
            sentiment_score,
            intent,
            complaint,
            question,
            needs_reply,
            escalation,
            escalation_signals,
            urgency,
            topics,
        }
    }
}

/// A message the English model finds at least this negative, aimed at the brand, is a complaint.
const STRONGLY_NEGATIVE: f32 = 0.95;

/// What urgency is computed from: content only, never reach or follower count (R7).
pub struct UrgencyInput<'a> {
    pub intent: Intent,
    pub needs_reply: bool,
    pub negativity: f32,
    pub question: bool,
    pub escalation: bool,
    pub signals: &'a [String],
}

/// Urgency 0..100, calibrated to `Priority::from_urgency` (>=80 urgent, 55-79 high, 20-54 normal, <20 low).
pub fn urgency(u: &UrgencyInput<'_>) -> u8 {
    let mut score: f32 = if !u.needs_reply {
        8.0
    } else {
        match u.intent {
            Intent::Complaint => 40.0 + 15.0 * u.negativity,
            Intent::Question => 35.0,
            Intent::Praise => 20.0,
            Intent::Other => 22.0,
        }
    };
    if u.intent == Intent::Complaint && u.question {
        score += 5.0;
    }
    let has = |s: &str| u.signals.iter().any(|x| x == s);
    let mut bonus = 0.0;
    for (name, b) in [
        ("repeat_contact", 22.0),
        ("threat_to_leave", 18.0),
        ("going_public", 18.0),
        ("shaming_hashtag", 12.0),
        ("time_pressure", 12.0),
    ] {
        if has(name) {
            bonus += b;
        }
    }
    score += bonus;
    if u.escalation {
        score = score.max(58.0);
        // The "Youpie": tried other channels already, or several signals at once, and unhappy.
        let youpie = (has("repeat_contact") || u.signals.len() >= 2)
            && (u.intent == Intent::Complaint || u.negativity >= 0.5);
        if youpie {
            score = score.max(85.0);
        }
    }
    score.round().clamp(0.0, 100.0) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn youpie_escalation_is_urgent() {
        let a = analyze(
            "@brand al drie keer gebeld en nog steeds geen internet. Ik ga overstappen! #schande",
        );
        assert_eq!(a.lang, "nl");
        assert!(a.escalation);
        assert!(a.complaint);
        assert!(a.needs_reply);
        assert!(a.urgency >= 80, "{a:?}");
        assert_eq!(
            a.escalation_signals,
            ["repeat_contact", "threat_to_leave", "shaming_hashtag"]
        );
    }

    #[test]
    fn chatter_is_low_and_needs_no_reply() {
        let a = analyze("RT @someone: mooi weer vandaag in Utrecht");
        assert!(!a.needs_reply);
        assert!(a.urgency < 20);
        assert!(!a.escalation);
    }

    #[test]
    fn a_plain_question_is_normal_priority() {
        let a = analyze("@brand what time does the shop open on Sunday?");
        assert_eq!(a.lang, "en");
        assert!(a.question);
        assert!(a.needs_reply);
        assert!((20..80).contains(&a.urgency), "{a:?}");
    }
}
