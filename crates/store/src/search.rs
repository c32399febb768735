//! Search terms: words folded and stemmed in Rust with both Dutch and English Snowball, so
//! `klacht` finds `klachten` and `delayed` finds `delay`, the same on every backend.

use std::sync::LazyLock;

use balie_core::{ConversationId, MessageId};
use frostem::{Algorithm, Stemmer};

static DUTCH: LazyLock<Stemmer> = LazyLock::new(|| Stemmer::new(Algorithm::Dutch));
static ENGLISH: LazyLock<Stemmer> = LazyLock::new(|| Stemmer::new(Algorithm::English));

/// Lowercases and strips common Latin diacritics (é → e) so `café` and `cafe` meet.
fn fold(word: &str) -> String {
    word.chars()
        .flat_map(char::to_lowercase)
        .map(|c| match c {
            'à' | 'á' | 'â' | 'ä' | 'ã' | 'å' => 'a',
            'è' | 'é' | 'ê' | 'ë' => 'e',
            'ì' | 'í' | 'î' | 'ï' => 'i',
            'ò' | 'ó' | 'ô' | 'ö' | 'õ' => 'o',
            'ù' | 'ú' | 'û' | 'ü' => 'u',
            'ç' => 'c',
            'ñ' => 'n',
            other => other,
        })
        .collect()
}

fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty() && w.len() <= 64)
        .map(fold)
}

/// Both stems of a folded word (one when they agree).
fn stems(word: &str) -> (String, Option<String>) {
    let nl = DUTCH.stem(word).into_owned();
    let en = ENGLISH.stem(word).into_owned();
    if nl == en { (nl, None) } else { (nl, Some(en)) }
}

/// The indexed form of a message: every word's Dutch and English stems.
pub fn search_terms(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 2);
    for w in words(text) {
        let (a, b) = stems(&w);
        out.push_str(&a);
        out.push(' ');
        if let Some(b) = b {
            out.push_str(&b);
            out.push(' ');
        }
    }
    out
}

/// An FTS5 query for what a person typed: every word must match (either stem). Quoted
/// terms, so no user input is ever read as query syntax. `None` when nothing searchable.
pub fn stem_query(query: &str) -> Option<String> {
    let clauses: Vec<String> = words(query)
        .map(|w| match stems(&w) {
            (a, None) => format!("\"{a}\""),
            (a, Some(b)) => format!("(\"{a}\" OR \"{b}\")"),
        })
        .collect();
    if clauses.is_empty() {
        None
    } else {
        Some(clauses.join(" AND "))
    }
}

/// The indexed form of a message as single lexemes (PostgreSQL's `tsvector`): the same
/// stems as [`search_terms`], each word's Dutch and English one.
pub fn search_lexemes(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for w in words(text) {
        let (a, b) = stems(&w);
        out.push(a);
        out.extend(b);
    }
    out
}

/// One lexeme as a `tsquery` literal: quoted, with quotes and backslashes escaped, so it is
/// read as that exact lexeme and never as query syntax.
fn tsquery_lexeme(lexeme: &str) -> String {
    let mut out = String::with_capacity(lexeme.len() + 2);
    out.push('\'');
    for c in lexeme.chars() {
        match c {
            '\'' => out.push_str("''"),
            '\\' => out.push_str("\\\\"),
            other => out.push(other),
        }
    }
    out.push('\'');
    out
}

/// PostgreSQL's counterpart of [`stem_query`], as `tsquery` input (cast with `::tsquery`, no
/// parser or dictionary involved): every word must match, by either of its stems.
pub fn stem_tsquery(query: &str) -> Option<String> {
    let clauses: Vec<String> = words(query)
        .map(|w| match stems(&w) {
            (a, None) => tsquery_lexeme(&a),
            (a, Some(b)) => format!("({} | {})", tsquery_lexeme(&a), tsquery_lexeme(&b)),
        })
        .collect();
    if clauses.is_empty() {
        None
    } else {
        Some(clauses.join(" & "))
    }
}

/// Search results as `(message id, conversation id, text)` rows become hits.
pub(crate) fn hits(rows: Vec<(i64, i64, String)>) -> Vec<crate::SearchHit> {
    rows.into_iter()
        .map(|(m, c, text)| crate::SearchHit {
            message_id: MessageId(m),
            conversation_id: ConversationId(c),
            text,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dutch_and_english_inflections_meet() {
        let doc = search_terms("Drie klachten over de bezorging");
        let q = stem_query("klacht").expect("query");
        assert!(q.contains("klacht"), "{q}");
        assert!(doc.contains("klacht "), "{doc}");
        let doc = search_terms("My parcel was delayed again");
        assert!(doc.contains("delay "), "{doc}");
    }

    #[test]
    fn query_syntax_in_input_is_inert() {
        let q = stem_query("\"NEAR(a b)\" OR * -x").expect("query");
        assert!(!q.contains('*'));
        assert_eq!(stem_query("*** ---"), None);
    }

    #[test]
    fn diacritics_fold() {
        assert_eq!(search_terms("Café"), search_terms("cafe"));
    }

    #[test]
    fn both_backends_index_the_same_stems() {
        for text in [
            "Drie klachten over de bezorging",
            "My parcel was delayed",
            "Café ÀÉ 42x",
            "",
        ] {
            let joined: String = search_lexemes(text)
                .iter()
                .map(|l| format!("{l} "))
                .collect();
            assert_eq!(joined, search_terms(text));
        }
    }

    #[test]
    fn tsquery_lexemes_are_quoted_and_escaped() {
        assert_eq!(tsquery_lexeme("it's"), "'it''s'");
        assert_eq!(tsquery_lexeme("a\\b"), "'a\\\\b'");
        let q = stem_tsquery("klachten vertraagd").expect("query");
        assert!(q.contains(" & "), "{q}");
        assert_eq!(stem_tsquery("!!! &|"), None);
        let doc = search_lexemes("Drie klachten");
        assert!(doc.iter().any(|l| l == "klacht"), "{doc:?}");
    }
}
