//! Hashed sparse features for the linear models: words (negation-marked), bigrams, char n-grams, lexicon and shape cues.

use crate::lexicon::Lexicon;
use crate::tokenize::{Token, TokenKind};

/// One hashed feature: a stable 32-bit hash (masked to a model's bucket count later) and a value.
pub type Feature = (u32, f32);

/// FNV-1a, 32 bit: stable across platforms and releases, so embedded weights stay valid.
#[derive(Clone, Copy)]
pub struct Fnv(u32);

impl Fnv {
    pub fn new(tag: &[u8]) -> Self {
        let mut h = Fnv(0x811c_9dc5);
        h.write(tag);
        h
    }
    pub fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u32::from(b);
            self.0 = self.0.wrapping_mul(0x0100_0193);
        }
    }
    pub fn finish(self) -> u32 {
        // Final avalanche so low bits (used as bucket index) mix well.
        let mut x = self.0;
        x ^= x >> 16;
        x = x.wrapping_mul(0x7feb_352d);
        x ^= x >> 15;
        x
    }
}

/// FNV-1a 64 as a `Hasher` for the lookup tables: fast on short words, and HashDoS is no concern
/// for fixed, embedded keys.
#[derive(Default, Clone, Copy)]
pub struct FnvHasher(u64);

impl std::hash::Hasher for FnvHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for &b in bytes {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        self.0 = h;
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

/// A `HashMap` with the FNV hasher.
pub type FastMap<K, V> = std::collections::HashMap<K, V, std::hash::BuildHasherDefault<FnvHasher>>;

pub fn hash(tag: &[u8], text: &str) -> u32 {
    let mut h = Fnv::new(tag);
    h.write(text.as_bytes());
    h.finish()
}

const NEGATORS: &[&str] = &[
    "not", "no", "never", "cannot", "nothing", "nobody", "nor", "without", "neither", "none",
    "niet", "geen", "nooit", "niks", "niets", "noch", "nergens", "niemand", "zonder", "dont",
    "didnt", "cant", "wont", "isnt",
];

static NEGATOR_SET: std::sync::LazyLock<FastMap<&'static str, ()>> =
    std::sync::LazyLock::new(|| NEGATORS.iter().map(|w| (*w, ())).collect());

/// Is this word a negator ("not", "n't" forms, "niet", "geen", "nooit", ...)?
pub fn is_negator(word: &str) -> bool {
    word.ends_with("n't") || NEGATOR_SET.contains_key(word)
}

/// How many following words a negator flips.
const NEGATION_SCOPE: usize = 3;

/// Build the feature vector of a tokenized message.
pub fn extract(tokens: &[Token], lexicon: &Lexicon, raw: &str, out: &mut Vec<Feature>) {
    out.clear();
    let mut words = 0usize;
    let mut negate_left = 0usize;
    let mut prev: Option<&str> = None;
    let mut lex_pos = 0.0f32;
    let mut lex_neg = 0.0f32;
    let mut chars_emitted = 0usize;
    let mut word_feats: Vec<Feature> = Vec::with_capacity(tokens.len() * 2);
    let mut char_feats: Vec<Feature> = Vec::with_capacity(tokens.len() * 12);

    for (i, tok) in tokens.iter().enumerate() {
        match tok.kind {
            TokenKind::Word | TokenKind::Hashtag | TokenKind::Number => {
                let w = tok.text.as_str();
                let negated = negate_left > 0 && tok.kind == TokenKind::Word;
                if tok.kind == TokenKind::Hashtag {
                    word_feats.push((hash(b"h", w), 1.0));
                }
                let unigram = if negated {
                    hash(b"wn", w)
                } else if tok.kind == TokenKind::Number {
                    hash(b"w", "<num>")
                } else {
                    hash(b"w", w)
                };
                word_feats.push((unigram, 1.0));
                let mut b = Fnv::new(b"b");
                b.write(prev.unwrap_or("<s>").as_bytes());
                b.write(b" ");
                b.write(if tok.kind == TokenKind::Number {
                    b"<num>"
                } else {
                    w.as_bytes()
                });
                word_feats.push((b.finish(), 1.0));
                if tok.kind != TokenKind::Number {
                    chars_emitted += char_ngrams(w, &mut char_feats);
                }
                if let Some(score) = lexicon.score(w) {
                    let s = if negated { -0.6 * score } else { score };
                    if s > 0.0 {
                        lex_pos += s;
                    } else {
                        lex_neg -= s;
                    }
                    let bucket = ((s * 2.0).round() as i32).clamp(-2, 2);
                    word_feats.push((hash(b"lb", &bucket.to_string()), 1.0));
                }
                if is_negator(w) {
                    negate_left = NEGATION_SCOPE;
                } else {
                    negate_left = negate_left.saturating_sub(1);
                }
                prev = Some(w);
                words += 1;
            }
            TokenKind::Emoji => {
                word_feats.push((hash(b"e", &tok.text), 1.0));
                if let Some(score) = lexicon.score(&tok.text) {
                    if score > 0.0 {
                        lex_pos += score;
                    } else {
                        lex_neg -= score;
                    }
                }
            }
            TokenKind::Punct => {
                negate_left = 0;
                if tok.text.contains('?') || tok.text.contains('!') {
                    word_feats.push((hash(b"p", &tok.text), 1.0));
                    let last = i + 1 == tokens.len();
                    if last {
                        word_feats.push((hash(b"pl", &tok.text), 1.0));
                    }
                }
                prev = None;
            }
            TokenKind::Mention => {
                if i == 0 {
                    word_feats.push((hash(b"s", "mention_first"), 1.0));
                }
            }
            TokenKind::Url => word_feats.push((hash(b"s", "url"), 1.0)),
        }
    }

    let wn = 1.0 / ((word_feats.len().max(1)) as f32).sqrt();
    out.extend(word_feats.into_iter().map(|(h, v)| (h, v * wn)));
    let cn = 0.7 / ((chars_emitted.max(1)) as f32).sqrt();
    out.extend(char_feats.into_iter().map(|(h, v)| (h, v * cn)));

    // Lexicon sums and shape cues as dense-ish valued features.
    out.push((hash(b"d", "lex_pos"), (lex_pos * 0.5).min(2.0)));
    out.push((hash(b"d", "lex_neg"), (lex_neg * 0.5).min(2.0)));
    let caps = raw.chars().filter(|c| c.is_uppercase()).count();
    let letters = raw.chars().filter(|c| c.is_alphabetic()).count().max(1);
    if letters > 10 && caps * 2 > letters {
        out.push((hash(b"d", "shouting"), 1.0));
    }
    let len_bucket = match words {
        0..=3 => "len_tiny",
        4..=10 => "len_short",
        11..=25 => "len_mid",
        _ => "len_long",
    };
    out.push((hash(b"d", len_bucket), 0.5));
    out.push((hash(b"d", "bias"), 0.5));
}

/// Character 3..5-grams of " word " (with boundary spaces); returns how many were pushed.
fn char_ngrams(word: &str, out: &mut Vec<Feature>) -> usize {
    let mut buf = [0u8; 64];
    let bytes = word.as_bytes();
    if bytes.len() + 2 > buf.len() {
        return 0;
    }
    buf[0] = b' ';
    buf[1..=bytes.len()].copy_from_slice(bytes);
    buf[bytes.len() + 1] = b' ';
    let s = &buf[..bytes.len() + 2];
    let mut pushed = 0;
    // Extend one FNV state from 3 to 5 bytes: same hashes as hashing each n-gram separately.
    let seed = Fnv::new(b"c");
    for start in 0..s.len().saturating_sub(2) {
        let mut h = seed;
        h.write(&s[start..start + 2]);
        for &byte in s[start + 2..].iter().take(3) {
            h.write(&[byte]);
            out.push((h.finish(), 1.0));
            pushed += 1;
        }
    }
    pushed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokenize::tokenize;

    #[test]
    fn negation_changes_the_word_feature() {
        let lex = Lexicon::parse("goed\t0.6\n");
        let mut a = Vec::new();
        let mut b = Vec::new();
        extract(&tokenize("goed"), &lex, "goed", &mut a);
        extract(&tokenize("niet goed"), &lex, "niet goed", &mut b);
        assert!(a.iter().any(|f| f.0 == hash(b"w", "goed")));
        assert!(b.iter().any(|f| f.0 == hash(b"wn", "goed")));
        assert!(!b.iter().any(|f| f.0 == hash(b"w", "goed")));
    }

    #[test]
    fn char_ngrams_are_the_3_to_5_grams_of_the_padded_word() {
        let mut got = Vec::new();
        assert_eq!(char_ngrams("abc", &mut got), 3 + 2 + 1);
        let mut want: Vec<u32> = [" ab", "abc", "bc ", " abc", "abc ", " abc "]
            .iter()
            .map(|g| hash(b"c", g))
            .collect();
        let mut got: Vec<u32> = got.into_iter().map(|f| f.0).collect();
        got.sort_unstable();
        want.sort_unstable();
        assert_eq!(got, want);
    }

    #[test]
    fn hashing_is_stable() {
        assert_eq!(hash(b"w", "klacht"), hash(b"w", "klacht"));
        assert_ne!(hash(b"w", "klacht"), hash(b"h", "klacht"));
    }
}
