//! `balie user add` refuses weak passwords (only spaces, too short) and adds nothing, and
//! creates the data directory private.

use std::io::Write;
use std::process::{Command, Stdio};

fn user_add(data_dir: &std::path::Path, email: &str, password_line: &str) -> (bool, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_balie"))
        .args(["--data-dir"])
        .arg(data_dir)
        .args([
            "user",
            "add",
            "--email",
            email,
            "--role",
            "agent",
            "--password-stdin",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("balie runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(password_line.as_bytes())
        .expect("write stdin");
    let out = child.wait_with_output().expect("balie finishes");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), said)
}

#[test]
fn weak_passwords_are_refused_and_add_nobody() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let cases = [
        ("          \n", "only spaces"),
        ("\t \t \t \t \t \n", "only spaces"),
        ("short\n", "at least 10 characters"),
    ];
    for (line, reason) in cases {
        let (ok, said) = user_add(&data, "kim@balie.test", line);
        assert!(!ok, "{line:?} must be refused");
        assert!(said.contains(reason), "{line:?}: {said}");
    }
    let (ok, said) = user_add(&data, "kim@balie.test", "correct horse battery\n");
    assert!(ok, "{said}");
    assert!(said.contains("Added agent kim@balie.test"), "{said}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&data)
            .expect("data dir")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
    }
}
