//! A running `mxpulse hooks` under test, and reading back what it published to Kafka.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};

use super::synapse::http_get;
use super::{client_config, free_port, mxpulse_bin, stop, wait_for};
use crate::harness::pipeline::watermarks;

/// The pseudonymization key of every test: tests compute expected pseudonyms with it.
pub const TEST_KEY: &str = "mxpulse-test-pseudonym-key-0123456789abcdef";

pub struct HooksProcess {
    child: Child,
    pub port: u16,
    pub log: PathBuf,
}

impl HooksProcess {
    /// Starts `mxpulse hooks` with `config` (a TOML file) on a free port.
    pub fn start(config: &Path, log_dir: &Path) -> HooksProcess {
        Self::start_logging(config, log_dir, "info,mxpulse_hooks=debug")
    }

    /// `start`, logging as `filter` says (`MXPULSE_LOG`).
    pub fn start_logging(config: &Path, log_dir: &Path, filter: &str) -> HooksProcess {
        let port = free_port();
        let log = log_dir.join(format!("hooks-{port}.log"));
        let child = Command::new(mxpulse_bin())
            .arg("--config")
            .arg(config)
            .arg("hooks")
            .env("MXPULSE_HOOKS_LISTEN", format!("127.0.0.1:{port}"))
            .env("MXPULSE_PSEUDONYM_KEY", TEST_KEY)
            .env("MXPULSE_LOG", filter)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("spawn mxpulse hooks");
        let hooks = HooksProcess { child, port, log };
        wait_for(Duration::from_secs(30), || hooks.get("/metrics"))
            .unwrap_or_else(|| panic!("hooks did not listen; log:\n{}", hooks.log_text()));
        hooks
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn get(&self, path: &str) -> Option<String> {
        http_get(&format!("127.0.0.1:{}", self.port), path)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A metric's value for one label set, e.g. `mxpulse_hooks_transactions_total{outcome="failed"}`.
    pub fn metric(&self, series: &str) -> u64 {
        self.get("/metrics")
            .unwrap_or_default()
            .lines()
            .find_map(|line| {
                let (name, value) = line.rsplit_once(' ')?;
                (name == series).then(|| value.parse::<f64>().ok())?
            })
            .unwrap_or(0.0) as u64
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for HooksProcess {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

/// A hooks configuration file: one homeserver, optionally its database for the tap.
pub fn write_hooks_config(
    dir: &Path,
    bootstrap: &str,
    server: &str,
    hs_token: &str,
    synapse_db: Option<&Path>,
    extra_hooks_keys: &str,
) -> PathBuf {
    let path = dir.join(format!("hooks-{server}.toml"));
    let db = synapse_db.map_or(String::new(), |p| {
        format!("synapse_db = \"{}\"\n", p.display())
    });
    let text = format!(
        "[kafka]\nbrokers = \"{bootstrap}\"\n[hooks]\ntap_interval_ms = 300\nstate_dir = \"{}\"\n{extra_hooks_keys}\n\
         [[hooks.homeservers]]\nserver_name = \"{server}\"\nhs_token = \"{hs_token}\"\n{db}",
        dir.join("hooks-state").display()
    );
    std::fs::write(&path, text).expect("write hooks config");
    path
}

/// Every message of a topic as (key, payload), reading to the current end.
pub fn topic_messages(bootstrap: &str, topic: &str) -> Vec<(String, Vec<u8>)> {
    let ends: BTreeMap<i32, i64> = watermarks(bootstrap, topic);
    let consumer: BaseConsumer = client_config(bootstrap)
        .set("group.id", "mxpulse-test-reader")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut assignment = TopicPartitionList::new();
    for partition in ends.keys() {
        assignment
            .add_partition_offset(topic, *partition, Offset::Beginning)
            .expect("assign");
    }
    consumer.assign(&assignment).expect("assign");
    let total: i64 = ends.values().sum();
    let mut out = Vec::new();
    let mut seen: BTreeMap<i32, i64> = BTreeMap::new();
    let done = |seen: &BTreeMap<i32, i64>| {
        ends.iter()
            .all(|(p, end)| seen.get(p).copied().unwrap_or(0) >= *end)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !done(&seen) && std::time::Instant::now() < deadline && total > 0 {
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(200)) {
            seen.insert(message.partition(), message.offset() + 1);
            let key = message
                .key()
                .map(|k| String::from_utf8_lossy(k).into_owned())
                .unwrap_or_default();
            out.push((key, message.payload().unwrap_or_default().to_vec()));
        }
    }
    assert!(done(&seen), "could not read {topic} to its end");
    out
}

/// The records of a topic, decoded.
pub fn topic_records<R: mxpulse_schemas::Record>(bootstrap: &str) -> Vec<R> {
    topic_messages(bootstrap, R::TOPIC)
        .iter()
        .map(|(_, payload)| serde_json::from_slice(payload).expect("a record"))
        .collect()
}

/// Runs SQL on a SQLite database standing for Synapse's (with Python's sqlite3: the test
/// writes while the tap reads).
pub fn synapse_sql(db: &Path, sql: &str) {
    let status = Command::new(super::python())
        .arg("-c")
        .arg("import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.executescript(sys.argv[2]); c.commit()")
        .arg(db)
        .arg(sql)
        .status()
        .expect("python");
    assert!(status.success(), "{sql}");
}
