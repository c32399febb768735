//! Tidy: the architecture invariants a machine can check, so that they cannot drift quietly.
//!
//! - Workspace crates depend on each other one way only:
//!   `balie → server → {channels, store, text} → core`.
//! - `core` and `text` do no IO: no IO crate among their dependencies, no `std::fs`,
//!   `std::net`, `std::process` or `std::io` in their sources.
//! - Every Rust source file starts with a `//!` line saying what it is for.
//! - `balie.example.toml` states exactly the defaults: the whole parsed `Config` equals
//!   `Config::default()`, and every setting the code has is written in the example.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use balie_server::config::Config;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("crates/balie sits two levels below the workspace root")
        .to_path_buf()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// Every crate folder under `crates/`, with its parsed manifest.
fn manifests() -> BTreeMap<String, toml::Table> {
    let crates = workspace_root().join("crates");
    let mut found = BTreeMap::new();
    for entry in std::fs::read_dir(&crates).expect("crates/ is readable") {
        let dir = entry.expect("a directory entry").path();
        let manifest = dir.join("Cargo.toml");
        if !manifest.is_file() {
            continue;
        }
        let table: toml::Table = read(&manifest)
            .parse()
            .unwrap_or_else(|e| panic!("{}: {e}", manifest.display()));
        let name = dir
            .file_name()
            .and_then(|n| n.to_str())
            .expect("a crate folder name is UTF-8")
            .to_owned();
        found.insert(name, table);
    }
    found
}

/// The names in a manifest's `[dependencies]` and `[dev-dependencies]`.
fn dependencies(manifest: &toml::Table) -> BTreeSet<String> {
    ["dependencies", "dev-dependencies", "build-dependencies"]
        .iter()
        .filter_map(|section| manifest.get(*section).and_then(|v| v.as_table()))
        .flat_map(|table| table.keys().cloned())
        .collect()
}

/// Which workspace crates each crate may depend on (by folder name). A crate not listed here
/// fails the test until its place in the graph is decided and written down.
fn allowed_workspace_dependencies(krate: &str) -> Option<&'static [&'static str]> {
    Some(match krate {
        "core" => &[],
        "text" => &[],
        "store" => &["core"],
        "channels" => &["core"],
        "server" => &["core", "text", "store", "channels"],
        "balie" => &["core", "text", "store", "channels", "server"],
        _ => return None,
    })
}

#[test]
fn workspace_crates_depend_on_each_other_one_way() {
    let manifests = manifests();
    assert!(
        manifests.contains_key("core") && manifests.contains_key("balie"),
        "found crates: {:?}",
        manifests.keys().collect::<Vec<_>>()
    );
    let mut wrong = Vec::new();
    for (krate, manifest) in &manifests {
        let Some(allowed) = allowed_workspace_dependencies(krate) else {
            wrong.push(format!(
                "crates/{krate} is new: add it to allowed_workspace_dependencies in tidy.rs"
            ));
            continue;
        };
        for dependency in dependencies(manifest) {
            let Some(target) = dependency.strip_prefix("balie-") else {
                continue;
            };
            // A crate may name itself as a dev-dependency to switch on its own features
            // (the store's `testing`) for its tests.
            if target == krate {
                continue;
            }
            if !allowed.contains(&target) {
                wrong.push(format!("crates/{krate} depends on {dependency}"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "dependencies point the wrong way: {wrong:#?}"
    );
}

/// Crates that do IO (files, sockets, processes, databases, async runtimes, HTTP).
const IO_CRATES: &[&str] = &[
    "sqlx",
    "rusqlite",
    "tokio",
    "async-std",
    "smol",
    "mio",
    "reqwest",
    "hyper",
    "hyper-util",
    "axum",
    "tower",
    "tower-http",
    "lettre",
    "tempfile",
];

/// Paths in the standard library that do IO.
const IO_PATHS: &[&str] = &["std::fs", "std::net", "std::process", "std::io"];

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.expect("a directory entry").path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if path.is_dir() {
                if name != "target" && !name.starts_with('.') {
                    stack.push(path);
                }
            } else if name.ends_with(".rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

#[test]
fn core_and_text_do_no_io() {
    let manifests = manifests();
    let mut wrong = Vec::new();
    for krate in ["core", "text"] {
        let manifest = &manifests[krate];
        // Only `[dependencies]`: a test may well use tempfile or tokio.
        let normal = manifest
            .get("dependencies")
            .and_then(|v| v.as_table())
            .map(|t| t.keys().cloned().collect::<BTreeSet<_>>())
            .unwrap_or_default();
        for io in IO_CRATES {
            if normal.contains(*io) {
                wrong.push(format!("crates/{krate} depends on the IO crate {io}"));
            }
        }
        for file in rust_files(&workspace_root().join("crates").join(krate).join("src")) {
            for (number, line) in read(&file).lines().enumerate() {
                let code = line.split("//").next().unwrap_or("");
                for io in IO_PATHS {
                    if code.contains(io) {
                        wrong.push(format!("{}:{}: uses {io}", file.display(), number + 1));
                    }
                }
            }
        }
    }
    assert!(wrong.is_empty(), "core and text must do no IO: {wrong:#?}");
}

#[test]
fn every_source_file_says_what_it_is_for() {
    let root = workspace_root();
    let files = rust_files(&root.join("crates"));
    assert!(files.len() > 20, "found only {} source files", files.len());
    let missing: Vec<_> = files
        .iter()
        .filter(|file| !read(file).starts_with("//!"))
        .map(|file| {
            file.strip_prefix(&root)
                .unwrap_or(file)
                .display()
                .to_string()
        })
        .collect();
    assert!(
        missing.is_empty(),
        "these files do not start with a `//!` line saying what they are for: {missing:#?}"
    );
}

#[test]
fn the_example_configuration_states_exactly_the_defaults() {
    let text = read(&workspace_root().join("balie.example.toml"));
    let parsed: Config = toml::from_str(&text).expect("balie.example.toml parses as a Config");
    assert_eq!(
        parsed,
        Config::default(),
        "balie.example.toml and Config::default() disagree"
    );
}

/// The example writes out every setting: each key `Config` knows appears in the file
/// (commented out for settings whose default is "unset"), so that a new setting cannot be
/// added without documenting it, and every key the file names is one the code knows.
#[test]
fn the_example_configuration_names_every_setting() {
    let text = read(&workspace_root().join("balie.example.toml"));
    // Switch every commented `# key = value` line on.
    let uncommented: String = text
        .lines()
        .map(|line| {
            let rest = line.trim_start().trim_start_matches('#').trim_start();
            let is_setting = line.trim_start().starts_with('#')
                && rest.split_once('=').is_some_and(|(key, _)| {
                    let key = key.trim();
                    !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                });
            if is_setting { rest } else { line }.to_owned()
        })
        .collect::<Vec<_>>()
        .join("\n");
    toml::from_str::<Config>(&uncommented)
        .expect("every setting the example names, commented or not, is one the code knows");
    let documented: toml::Table = uncommented
        .parse()
        .expect("the example with its commented settings switched on is still TOML");

    let mut missing = Vec::new();
    for key in known_keys("") {
        match documented.get(&key) {
            None => missing.push(key),
            Some(toml::Value::Table(table)) => {
                let section = format!("[{key}]\n");
                missing.extend(
                    known_keys(&section)
                        .into_iter()
                        .filter(|inner| !table.contains_key(inner))
                        .map(|inner| format!("{key}.{inner}")),
                );
            }
            Some(_) => {}
        }
    }
    assert!(
        missing.is_empty(),
        "settings missing from balie.example.toml: {missing:?}"
    );
}

/// The keys `Config` accepts at the place `prefix` opens (the top, or `[section]\n`), read
/// from serde's refusal of an unknown key, which lists the expected ones
/// (`deny_unknown_fields`).
fn known_keys(prefix: &str) -> Vec<String> {
    let probe = format!("{prefix}tidy_probe_not_a_setting = 1\n");
    let error = toml::from_str::<Config>(&probe)
        .expect_err("Config refuses unknown keys (deny_unknown_fields)")
        .to_string();
    let (_, expected) = error
        .split_once("expected one of")
        .or_else(|| error.split_once("expected"))
        .unwrap_or_else(|| panic!("serde's refusal lists the known keys: {error}"));
    expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}
