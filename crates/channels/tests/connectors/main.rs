//! Connector tests: real-shaped platform payloads from `fixtures/` parsed into `Inbound`
//! events, signature checks against the shared vectors, and outbound requests asserted
//! against a local fake server.

mod meta;
mod outbound;
mod telegram;
mod x;

use std::path::Path;

/// The bytes of `fixtures/<name>`, exactly as committed.
fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// Every fixture in `fixtures/<platform>/`, by file name.
fn fixtures(platform: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(platform);
    let mut all: Vec<_> = std::fs::read_dir(&dir)
        .expect("fixture directory")
        .map(|entry| {
            let path = entry.expect("directory entry").path();
            let name = path
                .file_name()
                .expect("file name")
                .to_string_lossy()
                .into_owned();
            (name, std::fs::read(&path).expect("fixture"))
        })
        .collect();
    all.sort();
    assert!(!all.is_empty(), "no fixtures in {}", dir.display());
    all
}

/// Feeds every prefix of every fixture, and the fixtures with their values swapped for
/// other JSON types, to `parse`: it must answer, never panic.
fn assert_never_panics<T, E>(platform: &str, parse: impl Fn(&[u8]) -> Result<T, E>) {
    for (name, body) in fixtures(platform) {
        for end in 0..body.len() {
            let _ = parse(&body[..end]);
        }
        let value: serde_json::Value = serde_json::from_slice(&body).expect("fixture is JSON");
        for replacement in [
            serde_json::json!(null),
            serde_json::json!(7),
            serde_json::json!("x"),
            serde_json::json!([]),
            serde_json::json!({}),
        ] {
            for mutated in mutations(&value, &replacement) {
                let bytes = serde_json::to_vec(&mutated).expect("serialises");
                let _ = parse(&bytes);
            }
        }
        assert!(parse(&body).is_ok(), "{name} parses");
    }
}

/// `value` with, in turn, each node replaced by `replacement`.
fn mutations(value: &serde_json::Value, replacement: &serde_json::Value) -> Vec<serde_json::Value> {
    use serde_json::Value;
    let mut out = vec![replacement.clone()];
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                for mutated in mutations(child, replacement) {
                    let mut copy = map.clone();
                    copy.insert(key.clone(), mutated);
                    out.push(Value::Object(copy));
                }
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                for mutated in mutations(child, replacement) {
                    let mut copy = items.clone();
                    copy[i] = mutated;
                    out.push(Value::Array(copy));
                }
            }
        }
        _ => {}
    }
    out
}
