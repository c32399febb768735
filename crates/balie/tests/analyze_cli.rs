//! `balie analyze` contract: one JSON line out per line in, in order, exact keys, errors per line.

use std::io::Write;
use std::process::{Command, Stdio};

const KEYS: [&str; 11] = [
    "lang",
    "sentiment",
    "sentiment_score",
    "intent",
    "complaint",
    "question",
    "needs_reply",
    "escalation",
    "escalation_signals",
    "urgency",
    "topics",
];

fn run_analyze(input: &str) -> Vec<serde_json::Value> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_balie"))
        .arg("analyze")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("balie runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write stdin");
    let out = child.wait_with_output().expect("balie finishes");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .lines()
        .map(|l| serde_json::from_str(l).expect("every output line is JSON"))
        .collect()
}

#[test]
fn analyze_answers_every_line_in_order_with_the_stable_keys() {
    let input = concat!(
        r#"{"text": "@brand al drie keer gebeld en nog steeds geen internet #schande", "id": 7}"#,
        "\n",
        "this is not json\n",
        r#"{"text": "Thanks for the quick help!"}"#,
        "\n",
        r#"{"body": "no text field"}"#,
        "\n",
        r#"{"text": 42}"#,
        "\n",
    );
    let out = run_analyze(input);
    assert_eq!(out.len(), 5);
    for i in [0, 2] {
        let obj = out[i].as_object().expect("object");
        let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
        keys.sort_unstable();
        let mut expected = KEYS.to_vec();
        expected.sort_unstable();
        assert_eq!(keys, expected);
    }
    assert_eq!(out[0]["lang"], "nl");
    assert_eq!(out[0]["escalation"], true);
    assert_eq!(out[2]["lang"], "en");
    for i in [1, 3, 4] {
        let obj = out[i].as_object().expect("object");
        assert_eq!(obj.len(), 1, "{obj:?}");
        assert!(obj["error"].is_string());
    }
}

#[test]
fn analyze_eval_prints_macro_f1_for_a_labelled_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("lang.jsonl");
    std::fs::write(
        &file,
        concat!(
            r#"{"text": "Waarom is mijn pakket nog niet bezorgd?", "lang": "nl"}"#,
            "\n",
            r#"{"text": "Why has my parcel still not arrived?", "lang": "en"}"#,
            "\n",
        ),
    )
    .expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_balie"))
        .args(["analyze", "--task", "lang", "--eval"])
        .arg(&file)
        .output()
        .expect("balie runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("accuracy=1.0000"), "{text}");
    assert!(text.contains("macro_f1=1.0000"), "{text}");
}
