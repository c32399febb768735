//! Property-based fuzzing of every platform payload parser on stable: arbitrary bytes,
//! byte-level mutations of the committed fixtures and structural JSON mutations never
//! panic. Case counts are bounded so CI stays fast; `PROPTEST_CASES` raises them.
//!
//! A crashing input found here is committed as a named regression test at the bottom.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use balie_channels::{meta, telegram, x};
use proptest::prelude::*;
use serde_json::Value;

/// Runs every parser on `body`; a panic fails the property. Results are ignored: refusing
/// garbage is fine, crashing on it is not.
fn parse_all(body: &[u8]) {
    let _ = meta::parse(body);
    let _ = x::parse(body);
    let _ = telegram::parse(body);
}

/// Every committed fixture, all platforms.
fn fixtures() -> Vec<Vec<u8>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let mut all = Vec::new();
    for platform in ["meta", "x", "telegram"] {
        let mut files: Vec<_> = std::fs::read_dir(root.join(platform))
            .expect("fixture directory")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        files.sort();
        for f in files {
            all.push(std::fs::read(&f).expect("fixture"));
        }
    }
    assert!(all.len() >= 10, "fixtures are found");
    all
}

/// One byte-level change to a payload.
#[derive(Debug, Clone)]
enum ByteEdit {
    Flip { at: usize, bits: u8 },
    Delete { at: usize, len: usize },
    Duplicate { at: usize, len: usize },
    Insert { at: usize, bytes: Vec<u8> },
    Truncate { at: usize },
}

fn byte_edit() -> impl Strategy<Value = ByteEdit> {
    let token = prop_oneof![
        Just(b"null".to_vec()),
        Just(b"{}".to_vec()),
        Just(b"[]".to_vec()),
        Just(b"\"".to_vec()),
        Just(b",".to_vec()),
        Just(b"-1".to_vec()),
        Just(b"1e999".to_vec()),
        Just(b"\\u0000".to_vec()),
        Just(b"\xff\xfe".to_vec()),
        proptest::collection::vec(any::<u8>(), 1..8),
    ];
    prop_oneof![
        (any::<usize>(), 1u8..=255).prop_map(|(at, bits)| ByteEdit::Flip { at, bits }),
        (any::<usize>(), 1usize..64).prop_map(|(at, len)| ByteEdit::Delete { at, len }),
        (any::<usize>(), 1usize..64).prop_map(|(at, len)| ByteEdit::Duplicate { at, len }),
        (any::<usize>(), token).prop_map(|(at, bytes)| ByteEdit::Insert { at, bytes }),
        any::<usize>().prop_map(|at| ByteEdit::Truncate { at }),
    ]
}

fn apply_bytes(body: &mut Vec<u8>, edit: &ByteEdit) {
    if body.is_empty() {
        return;
    }
    let n = body.len();
    match edit {
        ByteEdit::Flip { at, bits } => body[at % n] ^= bits,
        ByteEdit::Delete { at, len } => {
            let start = at % n;
            body.drain(start..(start + len).min(n));
        }
        ByteEdit::Duplicate { at, len } => {
            let start = at % n;
            let piece = body[start..(start + len).min(n)].to_vec();
            body.splice(start..start, piece);
        }
        ByteEdit::Insert { at, bytes } => {
            let at = at % (n + 1);
            body.splice(at..at, bytes.iter().copied());
        }
        ByteEdit::Truncate { at } => body.truncate(at % n),
    }
}

/// A JSON value a platform might send where something else was expected.
fn odd_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        Just(Value::from(i64::MIN)),
        Just(Value::from(u64::MAX)),
        ".{0,20}".prop_map(Value::String),
        Just(Value::String(String::new())),
        Just(Value::String("\u{0}\u{202e}🙂 \u{fffd}".into())),
        Just(Value::String("x".repeat(70_000))),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::vec(("[a-z_]{1,8}", inner), 0..4)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// Every node's JSON pointer, in document order.
fn pointers(v: &Value, at: String, out: &mut Vec<String>) {
    out.push(at.clone());
    match v {
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                pointers(item, format!("{at}/{i}"), out);
            }
        }
        Value::Object(map) => {
            for (k, item) in map {
                let k = k.replace('~', "~0").replace('/', "~1");
                pointers(item, format!("{at}/{k}"), out);
            }
        }
        _ => {}
    }
}

/// One structural change: a node replaced, removed, or its array emptied or repeated.
#[derive(Debug, Clone)]
enum JsonEdit {
    Replace(usize, Value),
    Remove(usize),
    Repeat(usize),
}

fn json_edit() -> impl Strategy<Value = JsonEdit> {
    prop_oneof![
        3 => (any::<usize>(), odd_value()).prop_map(|(i, v)| JsonEdit::Replace(i, v)),
        1 => any::<usize>().prop_map(JsonEdit::Remove),
        1 => any::<usize>().prop_map(JsonEdit::Repeat),
    ]
}

fn apply_json(doc: &mut Value, edit: &JsonEdit) {
    let mut all = Vec::new();
    pointers(doc, String::new(), &mut all);
    let pick = |i: usize| all[i % all.len()].clone();
    match edit {
        JsonEdit::Replace(i, v) => {
            if let Some(node) = doc.pointer_mut(&pick(*i)) {
                *node = v.clone();
            }
        }
        JsonEdit::Remove(i) => {
            let ptr = pick(*i);
            if let Some((parent, key)) = ptr.rsplit_once('/')
                && let Some(node) = doc.pointer_mut(parent)
            {
                match node {
                    Value::Object(map) => {
                        map.remove(&key.replace("~1", "/").replace("~0", "~"));
                    }
                    Value::Array(items) => {
                        if let Ok(k) = key.parse::<usize>()
                            && k < items.len()
                        {
                            items.remove(k);
                        }
                    }
                    _ => {}
                }
            }
        }
        JsonEdit::Repeat(i) => {
            if let Some(Value::Array(items)) = doc.pointer_mut(&pick(*i))
                && let Some(first) = items.first().cloned()
            {
                items.extend(std::iter::repeat_n(first, 50));
            }
        }
    }
}

/// 256 cases per property unless `PROPTEST_CASES` asks for more (a longer local run).
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn arbitrary_bytes_never_crash_a_parser(body in proptest::collection::vec(any::<u8>(), 0..2048)) {
        parse_all(&body);
    }

    #[test]
    fn arbitrary_json_never_crashes_a_parser(doc in odd_value()) {
        parse_all(doc.to_string().as_bytes());
    }

    #[test]
    fn byte_mutated_fixtures_never_crash_a_parser(
        which in any::<usize>(),
        edits in proptest::collection::vec(byte_edit(), 1..6),
    ) {
        let all = fixtures();
        let mut body = all[which % all.len()].clone();
        for edit in &edits {
            apply_bytes(&mut body, edit);
        }
        parse_all(&body);
    }

    #[test]
    fn structurally_mutated_fixtures_never_crash_a_parser(
        which in any::<usize>(),
        edits in proptest::collection::vec(json_edit(), 1..5),
    ) {
        let all = fixtures();
        let mut doc: Value = serde_json::from_slice(&all[which % all.len()]).expect("fixture is JSON");
        for edit in &edits {
            apply_json(&mut doc, edit);
        }
        parse_all(doc.to_string().as_bytes());
    }
}

#[test]
fn every_fixture_still_parses_after_the_mutators_leave_it_alone() {
    // The mutators start from real payloads: each must parse with its own parser, so the
    // properties above explore around valid input rather than only garbage.
    for body in fixtures() {
        let ok =
            meta::parse(&body).is_ok() || x::parse(&body).is_ok() || telegram::parse(&body).is_ok();
        assert!(ok, "{}", String::from_utf8_lossy(&body));
    }
}

#[test]
fn deeply_nested_payloads_are_refused_without_overflowing_the_stack() {
    for depth in [1_000, 100_000] {
        let arrays = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        let objects = format!("{}1{}", "{\"entry\":".repeat(depth), "}".repeat(depth));
        parse_all(arrays.as_bytes());
        parse_all(objects.as_bytes());
        // A payload is an object: nested arrays are refused by every parser. (Nested
        // unknown keys may be ignored; what matters is that nothing overflows.)
        assert!(meta::parse(arrays.as_bytes()).is_err());
        assert!(x::parse(arrays.as_bytes()).is_err());
        assert!(telegram::parse(arrays.as_bytes()).is_err());
    }
}
