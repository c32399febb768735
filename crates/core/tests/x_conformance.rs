//! X's weighted length against the official twitter-text conformance cases (v3 configuration).

use balie_core::reply_length::x_count;

#[test]
fn every_weighted_conformance_case_passes() {
    let cases = include_str!("fixtures/twitter-text-weighted.jsonl");
    let mut failures = Vec::new();
    let mut count = 0;
    for line in cases.lines() {
        let case: serde_json::Value = serde_json::from_str(line).expect("a JSON case");
        let text = case["text"].as_str().expect("text");
        let expected = (
            case["weightedLength"].as_u64().expect("weightedLength") as usize,
            case["valid"].as_bool().expect("valid"),
        );
        let got = x_count(text);
        if (got.weighted_length, got.valid) != expected {
            failures.push(format!(
                "{}: expected {expected:?}, got ({}, {})",
                case["description"], got.weighted_length, got.valid
            ));
        }
        count += 1;
    }
    assert_eq!(count, 24, "the fixture holds 24 cases");
    assert!(
        failures.is_empty(),
        "failing conformance cases: {failures:#?}"
    );
}
