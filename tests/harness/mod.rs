//! What the end-to-end tests share: the brokers they run against, started on loopback and
//! stopped on `Drop`, and rdkafka clients with the short timeouts tests want.
//!
//! `scripts/test` starts one broker of each kind for the whole run and passes their addresses
//! in `MXPULSE_TEST_MOCK_BROKERS` and `MXPULSE_TEST_TANSU_BROKERS`; a plain `cargo test`
//! without them starts its own (the mock through `mxpulse dev-broker`, tansu from PATH).

#![allow(dead_code)] // Each test binary uses its own part of the harness.

pub mod demo;
pub mod hooks;
pub mod lakes;
pub mod pipeline;
pub mod s3;
pub mod serve;
pub mod superset;
pub mod synapse;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;

/// Which broker implementation a test runs against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BrokerKind {
    /// librdkafka's mock cluster in its own process (`mxpulse dev-broker`).
    Mock,
    /// tansu with SQLite storage: an independent Kafka-compatible broker.
    Tansu,
}

/// A broker for the test: either the run's shared one or one this value started and owns.
pub struct Broker {
    pub kind: BrokerKind,
    pub bootstrap: String,
    owned: Option<(Child, tempfile::TempDir)>,
}

impl Broker {
    /// A broker of this test's own, whatever the run shares: for tests that count every
    /// message of a topic.
    pub fn dedicated(kind: BrokerKind) -> Broker {
        match kind {
            BrokerKind::Mock => start_mock(4),
            BrokerKind::Tansu => start_tansu(),
        }
    }

    /// A mock cluster of this test's own with `partitions` per topic: the mock keeps at most
    /// 5 MB per partition, so large backlogs need more of them.
    pub fn dedicated_mock(partitions: i32) -> Broker {
        start_mock(partitions)
    }

    /// Stops the broker process abruptly (SIGKILL): its clients see it go away.
    pub fn kill(&mut self) {
        if let Some((child, _)) = &mut self.owned {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Outage drill of a dedicated mock broker: its brokers go down (connections refused)
    /// and, with `false`, come back with every message they held.
    pub fn set_down(&self, down: bool) {
        assert_eq!(
            self.kind,
            BrokerKind::Mock,
            "the outage drill is the mock broker's"
        );
        let (child, _) = self.owned.as_ref().expect("a dedicated broker");
        let signal = if down { "-USR1" } else { "-USR2" };
        let status = Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// Dead-letter drill of a dedicated mock broker: the dead-letter topic becomes unavailable
    /// (producers find no leader), or available again.
    pub fn toggle_dead_letter_topic(&self) {
        assert_eq!(
            self.kind,
            BrokerKind::Mock,
            "the drill is the mock broker's"
        );
        let (child, _) = self.owned.as_ref().expect("a dedicated broker");
        let status = Command::new("kill")
            .args(["-HUP", &child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// The directory of a dedicated broker (tansu keeps its SQLite file and log there).
    pub fn dir(&self) -> std::path::PathBuf {
        self.owned
            .as_ref()
            .map(|(_, dir)| dir.path().to_owned())
            .unwrap_or_default()
    }

    /// Starts a killed tansu again on the same port and SQLite file: its data survives.
    pub fn restart(&mut self) {
        assert_eq!(
            self.kind,
            BrokerKind::Tansu,
            "only tansu keeps its data across a restart"
        );
        let port: u16 = self
            .bootstrap
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("port");
        let (child, dir) = self.owned.as_mut().expect("a dedicated broker");
        *child = tansu_command(dir.path(), port)
            .spawn()
            .expect("respawn tansu");
        let bootstrap = self.bootstrap.clone();
        wait_for(Duration::from_secs(30), || {
            std::net::TcpStream::connect(&bootstrap).ok()
        })
        .expect("tansu did not listen again within 30 s");
    }
}

impl Broker {
    pub fn start(kind: BrokerKind) -> Broker {
        let var = match kind {
            BrokerKind::Mock => "MXPULSE_TEST_MOCK_BROKERS",
            BrokerKind::Tansu => "MXPULSE_TEST_TANSU_BROKERS",
        };
        if let Ok(bootstrap) = std::env::var(var)
            && !bootstrap.is_empty()
        {
            return Broker {
                kind,
                bootstrap,
                owned: None,
            };
        }
        match kind {
            BrokerKind::Mock => start_mock(4),
            BrokerKind::Tansu => start_tansu(),
        }
    }

    /// Creates the topics on brokers that need it (the mock broker starts with them).
    pub fn ensure_topics(&self, topics: &[&str], partitions: i32) {
        if self.kind == BrokerKind::Mock {
            return;
        }
        let admin: AdminClient<DefaultClientContext> = client_config(&self.bootstrap)
            .create()
            .expect("admin client");
        let new: Vec<NewTopic> = topics
            .iter()
            .map(|t| NewTopic::new(t, partitions, TopicReplication::Fixed(1)))
            .collect();
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(20)));
        let results = block_on(admin.create_topics(&new, &options)).expect("create topics");
        for result in results {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((topic, code)) => panic!("creating {topic} on {:?}: {code:?}", self.kind),
            }
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some((child, _dir)) = &mut self.owned {
            stop(child);
        }
    }
}

/// Client settings for tests: short session so that group joins and rejoins are quick.
pub fn client_config(bootstrap: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "500")
        .set("socket.timeout.ms", "10000")
        .set("message.timeout.ms", "30000");
    config
}

/// The checkout the tests run from: read at run time first, since cargo may reuse a test
/// binary built in another checkout sharing the build cache (CI clones afresh).
pub fn repo_root() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into())
        .into()
}

/// The Python `scripts/test` installs the tests' packages into (tests/requirements.txt):
/// `MXPULSE_TEST_PYTHON`, or the checkout's `.venv`.
pub fn python() -> PathBuf {
    std::env::var_os("MXPULSE_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".venv/bin/python"))
}

pub fn mxpulse_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_mxpulse"))
}

fn start_mock(partitions: i32) -> Broker {
    let dir = tempfile::tempdir().expect("temp dir");
    let address_file = dir.path().join("bootstrap");
    let child = Command::new(mxpulse_bin())
        .args([
            "dev-broker",
            "--partitions",
            &partitions.to_string(),
            "--address-file",
        ])
        .arg(&address_file)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn mxpulse dev-broker");
    let bootstrap = wait_for(Duration::from_secs(30), || {
        std::fs::read_to_string(&address_file).ok()
    })
    .expect("dev-broker did not publish its address within 30 s");
    Broker {
        kind: BrokerKind::Mock,
        bootstrap,
        owned: Some((child, dir)),
    }
}

fn start_tansu() -> Broker {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let child = tansu_command(dir.path(), port)
        .spawn()
        .expect("spawn tansu (install it with scripts/test, or put it on PATH)");
    let bootstrap = format!("127.0.0.1:{port}");
    wait_for(Duration::from_secs(30), || {
        std::net::TcpStream::connect(&bootstrap).ok()
    })
    .expect("tansu did not listen within 30 s");
    Broker {
        kind: BrokerKind::Tansu,
        bootstrap,
        owned: Some((child, dir)),
    }
}

/// The tansu command line `scripts/test` uses too: SQLite storage (its memory storage loses
/// messages on resume), listener and advertised listener on loopback.
pub fn tansu_command(dir: &Path, port: u16) -> Command {
    let mut command = Command::new("tansu");
    // tansu reads the SQLite path of the URL relative to its working directory.
    command
        .current_dir(dir)
        .arg("broker")
        .arg("--storage-engine")
        .arg("sqlite://tansu.db")
        .arg("--listener-url")
        .arg(format!("tcp://127.0.0.1:{port}"))
        .arg("--advertised-listener-url")
        .arg(format!("tcp://127.0.0.1:{port}"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join("tansu.log"))
                .map_or_else(|_| Stdio::null(), Stdio::from),
        );
    command
}

/// A port that was free a moment ago on loopback.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Polls `probe` every 50 ms until it gives a value or `deadline` passes.
pub fn wait_for<T>(deadline: Duration, mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    let end = Instant::now() + deadline;
    loop {
        if let Some(value) = probe() {
            return Some(value);
        }
        if Instant::now() > end {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// CPU seconds (user + system) a process has used, from /proc (for the bench reports).
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    let ticks: f64 = fields.get(11..13).map_or(0.0, |f| {
        f.iter().filter_map(|v| v.parse::<f64>().ok()).sum()
    });
    ticks / 100.0
}

/// SIGTERM, then SIGKILL if the process is still there after 5 s.
pub fn stop(child: &mut Child) {
    let pid = child.id().to_string();
    let _ = Command::new("kill").args(["-TERM", &pid]).status();
    if wait_for(Duration::from_secs(5), || child.try_wait().ok().flatten()).is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Runs a future to completion, from plain or from async (multi-threaded runtime) tests.
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => tokio::task::block_in_place(|| handle.block_on(future)),
        Err(_) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(future),
    }
}
