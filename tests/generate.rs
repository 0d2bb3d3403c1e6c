//! `mxpulse generate`: same seed and scale, byte-identical output; a different seed,
//! different output; the Kafka fast path publishes exactly what the homeservers' databases
//! hold, mapped by the hooks' own code.

mod harness;

use std::path::{Path, PathBuf};
use std::process::Command;

use harness::hooks::{TEST_KEY, topic_records};
use harness::{Broker, mxpulse_bin};
use mxpulse_schemas::{AccountRecord, EventRecord, VisitRecord};

const SPEC: [&str; 6] = ["--scale", "0.0005", "--from", "2024-06", "--to", "2024-07"];

fn generate(args: &[&str], env: &[(&str, &str)]) -> String {
    let output = Command::new(mxpulse_bin())
        .arg("generate")
        .args(SPEC)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("run mxpulse generate");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "generate failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("output directory")
        .map(|entry| entry.expect("entry").path())
        .collect();
    files.sort();
    files
}

/// `SELECT COUNT(*) …` summed over every server's database (Python's sqlite3, not our code).
fn count(dir: &Path, sql: &str) -> usize {
    files(dir)
        .iter()
        .map(|db| {
            let output = Command::new("python3")
                .arg("-c")
                .arg("import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute(sys.argv[2]).fetchone()[0])")
                .arg(db)
                .arg(sql)
                .output()
                .expect("python3");
            String::from_utf8_lossy(&output.stdout).trim().parse::<usize>().expect("a count")
        })
        .sum()
}

#[test]
fn the_same_seed_and_scale_give_byte_identical_databases() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (a, b, c) = (
        dir.path().join("a"),
        dir.path().join("b"),
        dir.path().join("c"),
    );
    let summary = generate(&["--seed", "7", "--out", &a.display().to_string()], &[]);
    assert!(summary.contains("generated 2 months"), "{summary}");
    generate(&["--seed", "7", "--out", &b.display().to_string()], &[]);
    generate(&["--seed", "8", "--out", &c.display().to_string()], &[]);

    let (fa, fb) = (files(&a), files(&b));
    assert_eq!(fa.len(), 17, "one database per server: {fa:?}");
    for (x, y) in fa.iter().zip(&fb) {
        assert_eq!(x.file_name(), y.file_name());
        assert!(
            std::fs::read(x).expect("read") == std::fs::read(y).expect("read"),
            "{} differs",
            x.display()
        );
    }
    let differing = fa
        .iter()
        .zip(files(&c))
        .filter(|(x, z)| std::fs::read(x).ok() != std::fs::read(z).ok())
        .count();
    assert!(differing > 0, "another seed gives other activity");
    // Synapse's tables are filled: events of local senders, their JSON, visits, accounts.
    assert!(count(&a, "SELECT COUNT(*) FROM events") > 1_000);
    assert_eq!(
        count(&a, "SELECT COUNT(*) FROM events"),
        count(&a, "SELECT COUNT(*) FROM event_json")
    );
    assert!(count(&a, "SELECT COUNT(*) FROM user_daily_visits") > 100);
    assert!(
        count(
            &a,
            "SELECT COUNT(*) FROM users WHERE creation_ts < 1704067200"
        ) > 50
    );
}

#[test]
fn the_kafka_fast_path_publishes_what_the_databases_hold() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("db");
    generate(&["--seed", "5", "--out", &out.display().to_string()], &[]);

    let broker = Broker::dedicated_mock(4);
    let config = dir.path().join("mxpulse.toml");
    std::fs::write(
        &config,
        format!("[kafka]\nbrokers = \"{}\"\n", broker.bootstrap),
    )
    .expect("config");
    let config = config.display().to_string();
    generate(
        &["--seed", "5", "--kafka"],
        &[
            ("MXPULSE_CONFIG", &config),
            ("MXPULSE_PSEUDONYM_KEY", TEST_KEY),
        ],
    );

    // Every event in a database is a local sender's, and every one maps to a record.
    let events: Vec<EventRecord> = topic_records(&broker.bootstrap);
    assert_eq!(events.len(), count(&out, "SELECT COUNT(*) FROM events"));
    let messages = count(
        &out,
        "SELECT COUNT(*) FROM events WHERE type IN ('m.room.message', 'm.room.encrypted')",
    );
    let message_records = events
        .iter()
        .filter(|e| matches!(e.event_type.as_str(), "m.room.message" | "m.room.encrypted"))
        .count();
    assert_eq!(message_records, messages);
    let visits: Vec<VisitRecord> = topic_records(&broker.bootstrap);
    assert_eq!(
        visits.len(),
        count(&out, "SELECT COUNT(*) FROM user_daily_visits")
    );
    let accounts: Vec<AccountRecord> = topic_records(&broker.bootstrap);
    let created = accounts
        .iter()
        .filter(|a| a.change.as_str() == "created")
        .count();
    // Accounts created in the period (June and July 2024, in seconds as Synapse stores them).
    assert_eq!(
        created,
        count(
            &out,
            "SELECT COUNT(*) FROM users WHERE creation_ts >= 1717200000"
        )
    );
}
