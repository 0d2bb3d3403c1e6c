//! Hygiene that review would otherwise have to remember: every Rust file says its job in a
//! `//!` line, every crate has its section in ARCHITECTURE.md, and the commands that README.md
//! gives are the ones CI runs.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(
        // At run time first: cargo may reuse a test binary built in another checkout.
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
    )
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        let name = entry.file_name();
        if path.is_dir() {
            if name != "target" && !name.to_string_lossy().starts_with('.') {
                rust_files(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_rust_file_opens_with_its_job() {
    let mut files = Vec::new();
    rust_files(&root(), &mut files);
    assert!(files.len() > 10, "found only {} .rs files", files.len());
    let missing: Vec<String> = files
        .iter()
        .filter(|path| {
            !std::fs::read_to_string(path)
                .unwrap()
                .trim_start()
                .starts_with("//!")
        })
        .map(|path| path.strip_prefix(root()).unwrap().display().to_string())
        .collect();
    assert!(
        missing.is_empty(),
        "these files do not start with a `//!` line: {missing:?}"
    );
}

#[test]
fn every_crate_has_its_section_in_architecture_md() {
    let architecture = std::fs::read_to_string(root().join("ARCHITECTURE.md")).unwrap();
    let manifest = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    let members = manifest
        .lines()
        .find(|l| l.starts_with("members"))
        .expect("workspace members line");
    let crates: Vec<&str> = members
        .split('"')
        .skip(1)
        .step_by(2)
        .filter(|m| *m != ".")
        .collect();
    assert!(crates.len() >= 5, "{crates:?}");
    for folder in crates {
        assert!(
            architecture.contains(&format!("### `{folder}/`")),
            "ARCHITECTURE.md has no `### `{folder}/`` section"
        );
        assert!(root().join(folder).join("Cargo.toml").exists());
    }
}

#[test]
fn readme_test_command_is_what_ci_runs() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let ci = std::fs::read_to_string(root().join(".ci/run")).unwrap();
    assert!(
        readme.contains("scripts/test"),
        "README.md must give scripts/test as the test command"
    );
    assert!(
        ci.lines()
            .any(|l| l.trim_start().starts_with("exec scripts/test")
                || l.trim_start().starts_with("scripts/test")),
        ".ci/run must call scripts/test"
    );
}
