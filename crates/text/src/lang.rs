//! Fast language identification: script detection, stopword votes and a few spelling cues; `und` when unsure.

use std::sync::LazyLock;

use crate::features::{FastMap, Feature, Fnv};
use crate::model::LinearModel;
use crate::tokenize::{Token, TokenKind};

const NL: &[&str] = &[
    "de", "het", "een", "en", "van", "ik", "je", "jij", "u", "uw", "niet", "geen", "is", "dat",
    "die", "dit", "deze", "op", "te", "met", "voor", "zijn", "er", "maar", "om", "ook", "al",
    "nog", "wel", "naar", "bij", "wat", "hoe", "waarom", "wanneer", "waar", "kan", "kunnen", "heb",
    "hebt", "heeft", "hebben", "mijn", "m'n", "we", "wij", "ze", "zij", "hij", "wordt", "worden",
    "werd", "moet", "moeten", "gaat", "gaan", "nu", "dan", "als", "omdat", "want", "toch", "even",
    "graag", "bedankt", "dank", "weer", "keer", "nooit", "niks", "niets", "iets", "meer", "veel",
    "heel", "echt", "goed", "zo", "alleen", "over", "uit", "door", "tot", "sinds", "vandaag",
    "morgen", "gisteren", "jullie", "zou", "zal", "ben", "bent", "was", "waren", "mij", "me",
    "hier", "daar", "erg", "vind", "hallo", "hoi", "groet", "groeten", "ook", "wij", "onze", "ons",
    "zelf", "kunt", "weet", "wil", "wilt", "willen", "gewoon", "helemaal", "terug", "na", "zonder",
    "tegen", "vanaf", "elke", "iedereen", "mensen", "nieuwe", "ja", "nee", "het", "'t", "z'n",
    "d'r", "heeft",
];
const EN: &[&str] = &[
    "the", "and", "is", "are", "was", "were", "you", "your", "i", "my", "me", "it", "this", "that",
    "to", "of", "in", "for", "on", "with", "have", "has", "had", "not", "but", "be", "been",
    "will", "can", "do", "does", "did", "just", "what", "why", "how", "when", "where", "who",
    "thanks", "thank", "please", "get", "got", "from", "they", "we", "our", "at", "an", "a", "so",
    "if", "no", "yes", "would", "could", "should", "there", "their", "about", "still", "again",
    "i'm", "it's", "don't", "can't", "didn't", "you're", "any", "all", "now", "out", "up", "one",
    "time", "like", "know", "need", "back", "help", "hours", "after", "today", "guys", "really",
    "great", "am", "or", "by", "very", "than", "them", "him", "her", "she", "he", "u", "ur", "im",
    "dont", "cant", "won't", "doesn't", "isn't", "wasn't", "haven't", "thx", "why", "which",
    "because", "without",
];
const DE: &[&str] = &[
    "der", "die", "das", "und", "ist", "nicht", "ich", "du", "sie", "wir", "ein", "eine", "mit",
    "auf", "für", "von", "zu", "den", "dem", "des", "sich", "auch", "noch", "schon", "aber", "wie",
    "warum", "bitte", "danke", "kein", "keine", "sehr", "mein", "meine", "haben", "hat", "sind",
    "wird", "werden", "nach", "bei", "aus", "oder", "wenn", "dass", "nur", "mal", "es", "ihr",
];
const FR: &[&str] = &[
    "le", "la", "les", "des", "un", "une", "et", "est", "je", "tu", "vous", "nous", "pas", "ne",
    "pour", "dans", "sur", "avec", "que", "qui", "ce", "cette", "mon", "ma", "mes", "votre",
    "merci", "très", "mais", "ou", "du", "au", "aux", "sont", "être", "avoir", "plus", "il",
    "elle", "on", "c'est", "j'ai", "bonjour", "suis", "ça",
];
const ES: &[&str] = &[
    "el", "la", "los", "las", "un", "una", "y", "es", "que", "de", "en", "no", "por", "para",
    "con", "mi", "tu", "su", "muy", "pero", "gracias", "está", "están", "como", "qué", "porque",
    "cuando", "donde", "hola", "lo", "le", "se", "del", "al", "yo", "hay", "son", "todo", "más",
    "bien",
];
const IT: &[&str] = &[
    "il",
    "lo",
    "la",
    "gli",
    "le",
    "un",
    "una",
    "e",
    "è",
    "che",
    "di",
    "non",
    "per",
    "con",
    "mi",
    "ti",
    "sono",
    "ma",
    "come",
    "perché",
    "grazie",
    "molto",
    "questo",
    "questa",
    "del",
    "della",
    "nel",
    "anche",
    "ho",
    "hai",
    "ha",
    "ciao",
    "buongiorno",
    "più",
    "io",
];
const PT: &[&str] = &[
    "o", "a", "os", "as", "um", "uma", "e", "é", "que", "de", "não", "para", "com", "meu", "minha",
    "você", "obrigado", "obrigada", "muito", "mas", "como", "por", "está", "isso", "isto", "do",
    "da", "no", "na", "em", "eu", "tem", "são", "olá", "mais",
];

const LATIN: [(&str, &[&str]); 7] = [
    ("nl", NL),
    ("en", EN),
    ("de", DE),
    ("fr", FR),
    ("es", ES),
    ("it", IT),
    ("pt", PT),
];

/// Stopword -> bit mask of the `LATIN` languages listing it.
static STOPWORDS: LazyLock<FastMap<&'static str, u8>> = LazyLock::new(|| {
    let mut m: FastMap<&'static str, u8> = FastMap::default();
    for (i, (_, list)) in LATIN.iter().enumerate() {
        for w in *list {
            *m.entry(w).or_default() |= 1 << i;
        }
    }
    m
});

/// Every language's stopwords; used to keep function words out of topics.
pub fn is_stopword(word: &str) -> bool {
    STOPWORDS.contains_key(word)
}

fn script_language(text: &str) -> Option<&'static str> {
    let mut counts = [0usize; 10];
    let mut latin = 0usize;
    for c in text.chars() {
        let u = c as u32;
        let slot = match u {
            0x0400..=0x04FF => 0,
            0x0370..=0x03FF => 1,
            0x0600..=0x06FF => 2,
            0x0590..=0x05FF => 3,
            0xAC00..=0xD7AF | 0x1100..=0x11FF => 4,
            0x3040..=0x30FF => 5,
            0x4E00..=0x9FFF => 6,
            0x0E00..=0x0E7F => 7,
            0x0900..=0x097F => 8,
            _ => {
                if c.is_alphabetic() {
                    latin += 1;
                }
                continue;
            }
        };
        counts[slot] += 1;
    }
    let (best, &n) = counts
        .iter()
        .enumerate()
        .max_by_key(|&(i, n)| (*n, std::cmp::Reverse(i)))?;
    if n == 0 || n < latin {
        return None;
    }
    // Kana anywhere means Japanese even when kanji dominate.
    if best == 6 && counts[5] > 0 {
        return Some("ja");
    }
    Some(["ru", "el", "ar", "he", "ko", "ja", "zh", "th", "hi", "und"][best])
}

const IJ: u8 = 1;
const AA: u8 = 2;
const OE: u8 = 4;
const UU: u8 = 8;
const GHT: u8 = 16;
const SZ: u8 = 32;

/// Which spelling cues occur in a word, in one pass over its bytes.
fn byte_pairs(w: &[u8]) -> u8 {
    let mut found = 0;
    for (i, pair) in w.windows(2).enumerate() {
        found |= match pair {
            b"ij" => IJ,
            b"aa" => AA,
            b"oe" => OE,
            b"uu" => UU,
            b"gh" if w.get(i + 2) == Some(&b't') => GHT,
            [0xC3, 0x9F] => SZ,
            _ => 0,
        };
    }
    found
}

/// Character 1..4-grams of each word (with boundary spaces) for the nl/en character model.
pub fn char_features(tokens: &[Token], out: &mut Vec<Feature>) {
    out.clear();
    let mut buf = [0u8; 48];
    for tok in tokens {
        if !matches!(tok.kind, TokenKind::Word | TokenKind::Hashtag) {
            continue;
        }
        let b = tok.text.as_bytes();
        if b.len() + 2 > buf.len() {
            continue;
        }
        buf[0] = b' ';
        buf[1..=b.len()].copy_from_slice(b);
        buf[b.len() + 1] = b' ';
        let s = &buf[..b.len() + 2];
        for n in 1..=4usize {
            for start in 0..=s.len().saturating_sub(n) {
                if start + n > s.len() {
                    break;
                }
                let mut h = Fnv::new(b"l");
                h.write(&s[start..start + n]);
                out.push((h.finish(), 1.0));
            }
        }
    }
    let norm = 1.0 / (out.len().max(1) as f32).sqrt();
    for f in out.iter_mut() {
        f.1 = norm;
    }
}

/// Language of a tokenized message as an ISO 639-1 code, or `und` (stopwords and cues only).
pub fn detect(text: &str, tokens: &[Token]) -> &'static str {
    detect_with(text, tokens, None)
}

/// Language with an optional nl/en character model to decide texts without clear stopword evidence.
pub fn detect_with(text: &str, tokens: &[Token], nl_en: Option<&LinearModel>) -> &'static str {
    if let Some(lang) = script_language(text) {
        return lang;
    }
    let mut scores = [0f32; 7];
    let mut words = 0;
    for tok in tokens {
        if tok.kind != TokenKind::Word {
            continue;
        }
        words += 1;
        let w = tok.text.as_str();
        let mask = STOPWORDS.get(w).copied().unwrap_or(0);
        if mask != 0 {
            let share = 1.0 / mask.count_ones() as f32;
            for (i, s) in scores.iter_mut().enumerate() {
                if mask & (1 << i) != 0 {
                    *s += share;
                }
            }
        }
        // Spelling cues, weak: Dutch "ij", "oe", "sch", "-tje"; English "th", "wh", "-ing", "ght".
        if w.len() > 3 {
            let pairs = byte_pairs(w.as_bytes());
            if pairs & (IJ | AA) != 0 || w.ends_with("tje") || w.ends_with("tjes") {
                scores[0] += 0.3;
            }
            if pairs & (OE | UU) != 0 {
                scores[0] += 0.2;
            }
            if w.starts_with("th") || w.starts_with("wh") || w.ends_with("ing") || pairs & GHT != 0
            {
                scores[1] += 0.3;
            }
            if w.ends_with("ly") || w.ends_with("ed") {
                scores[1] += 0.15;
            }
            if pairs & SZ != 0 || w.starts_with("sch") && w.ends_with("en") {
                scores[2] += 0.2;
            }
        }
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    let best = scores[order[0]];
    let second = scores[order[1]];
    let needed_margin = if words <= 3 { 0.9 } else { 0.5 };
    if best >= 1.0 && best - second >= needed_margin && best >= 1.2 * second {
        return LATIN[order[0]].0;
    }
    // No clear stopword winner: let the character model choose between Dutch and English when
    // those are the leading candidates (or nothing scored) and there is enough text.
    let Some(model) = nl_en.filter(|m| m.is_trained()) else {
        return "und";
    };
    let top_is_nl_en = best == 0.0 || order[0] <= 1;
    let letters: usize = tokens
        .iter()
        .filter(|t| t.kind == TokenKind::Word)
        .map(|t| t.text.chars().filter(|c| c.is_alphabetic()).count())
        .sum();
    if !top_is_nl_en || letters < 12 {
        return "und";
    }
    let mut feats = Vec::new();
    char_features(tokens, &mut feats);
    let p = model.probabilities(&feats);
    match p.as_slice() {
        [nl, _] if *nl >= 0.9 => "nl",
        [_, en] if *en >= 0.9 => "en",
        _ => "und",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokenize::tokenize;

    fn check(text: &str, expect: &str) {
        assert_eq!(detect(text, &tokenize(text)), expect, "{text}");
    }

    #[test]
    fn detects_dutch_english_and_others() {
        check(
            "@brand al drie keer gebeld en nog steeds geen internet #schande",
            "nl",
        );
        check(
            "@brand still no answer about my lost bag, this is the third time",
            "en",
        );
        check("Bedankt voor de snelle hulp!", "nl");
        check("Thanks for the quick help!", "en");
        check("Warum ist mein Paket noch nicht da?", "de");
        check("Merci pour votre aide, c'est parfait", "fr");
        check("Спасибо за помощь", "ru");
    }

    #[test]
    fn short_or_empty_text_is_undetermined() {
        check("", "und");
        check("ok", "und");
        check("😡😡 @brand https://t.co/x", "und");
    }
}
