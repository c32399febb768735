//! `balie lint-reply` contract: one JSON line out per line in, length as the platform counts, flags with code-point spans, errors per line.

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::{Value, json};

fn lint(args: &[&str], input: &str) -> (Vec<Value>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_balie"))
        .arg("lint-reply")
        .args(args)
        .env_remove("BALIE_DATA_DIR")
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
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    let lines = String::from_utf8(out.stdout)
        .expect("utf-8")
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    (lines, stderr)
}

#[test]
fn x_counts_as_twitter_text_and_bad_lines_get_an_error_and_the_rest_go_on() {
    let family = "\u{1F468}\u{200D}\u{1F469}\u{200D}\u{1F467}\u{200D}\u{1F466}";
    let input = [
        json!({"text": format!("Hoi! {family} https://www.ns.nl/storingen"), "public": true}).to_string(),
        "not json".to_owned(),
        json!({"text": "b".repeat(430), "public": true}).to_string(),
        json!({"public": true}).to_string(),
        json!({"text": "Zoals we al drie keer hebben uitgelegd: morgen.", "public": true, "customer_language": "nl"}).to_string(),
    ]
    .join("\n");
    let (out, _) = lint(&["--channel", "x"], &input);
    assert_eq!(out.len(), 5);
    assert_eq!(
        out[0],
        json!({"length": 31, "max_length": 280, "fits": true, "flags": []})
    );
    assert!(
        out[1]["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("not JSON")),
        "{}",
        out[1]
    );
    assert_eq!(
        (&out[2]["length"], &out[2]["fits"]),
        (&json!(430), &json!(false))
    );
    assert_eq!(out[2]["flags"][0]["kind"], "too_long");
    assert_eq!(
        (&out[2]["flags"][0]["start"], &out[2]["flags"][0]["end"]),
        (&json!(0), &json!(430))
    );
    assert_eq!(out[3], json!({"error": "missing string field \"text\""}));
    let flags = out[4]["flags"].as_array().expect("flags");
    assert_eq!(flags.len(), 1, "{flags:?}");
    assert_eq!(
        (&flags[0]["kind"], &flags[0]["start"], &flags[0]["end"]),
        (&json!("tone"), &json!(0), &json!(11))
    );
}

#[test]
fn instagram_and_facebook_follow_public_or_private() {
    let input = [
        json!({"text": "é".repeat(600), "public": false}).to_string(),
        json!({"text": "é".repeat(600), "public": true}).to_string(),
    ]
    .join("\n");
    let (out, _) = lint(&["--channel", "instagram"], &input);
    assert_eq!(
        (&out[0]["length"], &out[0]["max_length"], &out[0]["fits"]),
        (&json!(1200), &json!(999), &json!(false))
    );
    assert_eq!(
        (&out[1]["length"], &out[1]["max_length"], &out[1]["fits"]),
        (&json!(600), &json!(2200), &json!(true))
    );
    let (out, _) = lint(
        &["--channel", "email", "--lang", "nl"],
        &json!({"text": "x".repeat(50_000), "public": false}).to_string(),
    );
    assert_eq!(
        out[0],
        json!({"length": 50_000, "max_length": null, "fits": true, "flags": []})
    );
}

#[test]
fn with_a_data_dir_it_says_which_checks_did_not_run() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data_dir = dir.path().to_str().expect("utf-8 path");
    let (out, stderr) = lint(
        &[
            "--channel",
            "mastodon",
            "--data-dir",
            data_dir,
            "--brand",
            "pakketpost",
        ],
        &json!({"text": "@kim@mastodon.social Dank je!", "public": true}).to_string(),
    );
    assert_eq!(out[0]["length"], json!(13));
    assert_eq!(out[0]["not_checked"], json!(["canned", "contradicts_fact"]));
    assert!(stderr.contains("not implemented yet"), "{stderr}");
}
