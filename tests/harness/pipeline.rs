//! Pieces of the pipeline for end-to-end tests: record generators, a producer that publishes
//! records as the hooks do, an `mxpulse ingest` process, and readers of the lake it writes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mxpulse_ingest::LakeRoot;
use mxpulse_ingest::lake::{open_or_create, partition_offsets, read_all};
use mxpulse_schemas::vocabulary::*;
use mxpulse_schemas::*;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

use super::{client_config, free_port, mxpulse_bin, stop};

/// Deterministic pseudo-random numbers (xorshift64), so a failing run can be replayed.
pub struct Rng(pub u64);

/// A seed from the clock (odd, as `Rng` needs), for tests that print it to be replayed.
pub fn seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        | 1
}

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const JULY_2024_MS: i64 = 1_719_792_000_000;

pub fn events(rng: &mut Rng, n: usize) -> Vec<EventRecord> {
    (0..n)
        .map(|_| {
            let mut e = EventRecord::new(
                KeyId([1, 1, 1, 1]),
                EventPseudonym(u128::from(rng.next()) << 64 | u128::from(rng.next())),
                // Spread over 10 days, so commits touch several partitions.
                UnixMillis(JULY_2024_MS + rng.below(10 * 86_400_000) as i64),
                "agent.interieur.tchap.gouv.fr",
                UserPseudonym(rng.below(500)),
                RoomPseudonym(rng.below(100)),
                if rng.below(4) == 0 {
                    EventType::RoomEncrypted
                } else {
                    EventType::RoomMessage
                },
                Source::Appservice,
            );
            e.domain = Some("interieur.gouv.fr".into());
            e
        })
        .collect()
}

pub fn visits(rng: &mut Rng, n: usize) -> Vec<VisitRecord> {
    (0..n)
        .map(|_| VisitRecord {
            v: SchemaVersion::CURRENT,
            key_id: KeyId([1, 1, 1, 1]),
            day: chrono::NaiveDate::from_ymd_opt(2024, 7, 1).unwrap()
                + chrono::Days::new(rng.below(10)),
            server: "agent.dinum.tchap.gouv.fr".into(),
            user: UserPseudonym(rng.next()),
            device: Some(DevicePseudonym(rng.next())),
            domain: None,
            platform: Platform::Web,
            client: Client::Tchap,
            family: "web".parse().ok(),
        })
        .collect()
}

pub fn accounts(rng: &mut Rng, n: usize) -> Vec<AccountRecord> {
    (0..n)
        .map(|_| AccountRecord {
            v: SchemaVersion::CURRENT,
            key_id: KeyId([1, 1, 1, 1]),
            ts: UnixMillis(JULY_2024_MS + rng.below(10 * 86_400_000) as i64),
            server: "agent.externe.tchap.gouv.fr".into(),
            user: UserPseudonym(rng.next()),
            domain: None,
            change: AccountChange::Created,
            user_type: UserType::Regular,
        })
        .collect()
}

pub fn producer(bootstrap: &str) -> FutureProducer {
    client_config(bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .create()
        .expect("producer")
}

/// Publishes records as the hooks do (key = identity, version header), all in flight at once.
pub async fn produce<R: Record>(producer: &FutureProducer, records: &[R]) {
    let version = Envelope::version_header();
    let envelopes: Vec<Envelope> = records.iter().map(encode).collect();
    let deliveries: Vec<_> = envelopes
        .iter()
        .map(|e| {
            let headers = OwnedHeaders::new().insert(Header {
                key: SCHEMA_VERSION_HEADER,
                value: Some(version.as_bytes()),
            });
            producer.send(
                FutureRecord::to(e.topic)
                    .key(e.key.as_bytes())
                    .payload(&e.payload)
                    .headers(headers),
                Duration::from_secs(30),
            )
        })
        .collect();
    for delivery in futures::future::join_all(deliveries).await {
        assert!(delivery.is_ok(), "delivery failed: {delivery:?}");
    }
}

/// Publishes raw bytes on a topic, for malformed input.
pub async fn produce_raw(
    producer: &FutureProducer,
    topic: &str,
    key: &str,
    payload: &[u8],
    header: Option<&str>,
) {
    let mut record = FutureRecord::to(topic).key(key).payload(payload);
    if let Some(version) = header {
        record = record.headers(OwnedHeaders::new().insert(Header {
            key: SCHEMA_VERSION_HEADER,
            value: Some(version.as_bytes()),
        }));
    }
    producer
        .send(record, Duration::from_secs(30))
        .await
        .expect("delivery");
}

/// A running `mxpulse ingest`, killed on `Drop`.
pub struct Ingest {
    child: Child,
    pub metrics_port: u16,
    pub log: PathBuf,
}

/// The configuration file an ingest under test runs with: short Kafka sessions (group joins
/// are quick) and small, frequent commits (a kill lands in every phase).
pub fn write_config(
    dir: &Path,
    bootstrap: &str,
    lake: &Path,
    group: &str,
    max_rows: usize,
) -> PathBuf {
    write_config_with(dir, bootstrap, lake, group, max_rows, "", "")
}

/// `write_config` with more librdkafka properties (`"key" = "value"` lines) and `[ingest]`
/// settings.
pub fn write_config_with(
    dir: &Path,
    bootstrap: &str,
    lake: &Path,
    group: &str,
    max_rows: usize,
    kafka_properties: &str,
    ingest_settings: &str,
) -> PathBuf {
    write_config_on(
        dir,
        bootstrap,
        &format!("[lake]\nroot = \"{}\"\n", lake.display()),
        group,
        max_rows,
        kafka_properties,
        ingest_settings,
    )
}

/// `write_config_with` over the lake `lake_settings` describe (its whole `[lake]` section).
pub fn write_config_on(
    dir: &Path,
    bootstrap: &str,
    lake_settings: &str,
    group: &str,
    max_rows: usize,
    kafka_properties: &str,
    ingest_settings: &str,
) -> PathBuf {
    let path = dir.join(format!("mxpulse-{group}.toml"));
    let text = format!(
        "[kafka]\nbrokers = \"{bootstrap}\"\n[kafka.properties]\n\"session.timeout.ms\" = \"2000\"\n\"heartbeat.interval.ms\" = \"500\"\n\
         \"topic.metadata.refresh.interval.ms\" = \"1000\"\n{kafka_properties}\
         {lake_settings}[ingest]\ngroup_id = \"{group}\"\nflush_max_rows = {max_rows}\nflush_max_latency_ms = 100\n{ingest_settings}"
    );
    std::fs::write(&path, text).expect("write config");
    path
}

impl Ingest {
    pub fn start(config: &Path, log_dir: &Path, name: &str) -> Ingest {
        Self::start_logging(
            config,
            log_dir,
            name,
            "info,deltalake=warn,datafusion=warn,buoyant_kernel=off",
        )
    }

    /// `start`, logging as `filter` says (`MXPULSE_LOG`).
    pub fn start_logging(config: &Path, log_dir: &Path, name: &str, filter: &str) -> Ingest {
        let metrics_port = free_port();
        let log = log_dir.join(format!("ingest-{name}.log"));
        let log_file = std::fs::File::create(&log).expect("log file");
        let child = Command::new(mxpulse_bin())
            .arg("--config")
            .arg(config)
            .arg("ingest")
            .env("MXPULSE_INGEST_LISTEN", format!("127.0.0.1:{metrics_port}"))
            .env("MXPULSE_LOG", filter)
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("spawn mxpulse ingest");
        Ingest {
            child,
            metrics_port,
            log,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM: the ingest flushes, commits and exits; returns whether it exited cleanly.
    pub fn stop(mut self) -> bool {
        stop(&mut self.child);
        self.child
            .try_wait()
            .ok()
            .flatten()
            .is_some_and(|status| status.success())
    }

    /// The Prometheus text of `/metrics`.
    pub fn metrics(&self) -> String {
        self.get("/metrics")
    }

    /// The body of `/health`.
    pub fn health(&self) -> String {
        self.get("/health")
            .split_once("\r\n\r\n")
            .map(|(_, body)| body.to_owned())
            .unwrap_or_default()
    }

    pub fn get(&self, path: &str) -> String {
        use std::io::{Read, Write};
        let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", self.metrics_port)) else {
            return String::new();
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        let _ = write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        );
        let mut response = String::new();
        let _ = stream.read_to_string(&mut response);
        response
    }

    /// Sum of a metric over its labels.
    pub fn metric(&self, name: &str) -> u64 {
        self.metrics()
            .lines()
            .filter(|l| l.starts_with(name) && !l.starts_with('#'))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    }
}

impl Drop for Ingest {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn lake_root(path: &Path) -> LakeRoot {
    LakeRoot::parse(&path.display().to_string()).expect("lake root")
}

/// Every record of `R`'s table.
pub async fn lake_records<R: Record>(lake: &Path) -> Vec<R> {
    let table = open_or_create::<R>(&lake_root(lake))
        .await
        .expect("open table");
    read_all::<R>(&table).await.expect("read table")
}

/// High watermark of every partition of a topic.
pub fn watermarks(bootstrap: &str, topic: &str) -> BTreeMap<i32, i64> {
    let consumer: BaseConsumer = client_config(bootstrap)
        .set("group.id", "watermarks")
        .create()
        .expect("consumer");
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let partitions = metadata
        .topics()
        .first()
        .map_or(0, |t| t.partitions().len() as i32);
    (0..partitions)
        .map(|p| {
            (
                p,
                consumer
                    .fetch_watermarks(topic, p, Duration::from_secs(10))
                    .map(|(_, high)| high)
                    .unwrap_or(0),
            )
        })
        .collect()
}

/// Waits until the lake holds, for `group`, every offset of the three record topics.
pub async fn wait_caught_up(bootstrap: &str, lake: &Path, group: &str, deadline: Duration) {
    let end = Instant::now() + deadline;
    let root = lake_root(lake);
    loop {
        let mut behind = Vec::new();
        for (topic, table) in [
            (topics::EVENTS, "events"),
            (topics::VISITS, "visits"),
            (topics::ACCOUNTS, "accounts"),
        ] {
            let highs = watermarks(bootstrap, topic);
            let partitions = highs.len() as i32;
            let offsets = match table {
                "events" => partition_offsets(
                    &open_or_create::<EventRecord>(&root).await.unwrap(),
                    group,
                    topic,
                    partitions,
                )
                .await
                .unwrap(),
                "visits" => partition_offsets(
                    &open_or_create::<VisitRecord>(&root).await.unwrap(),
                    group,
                    topic,
                    partitions,
                )
                .await
                .unwrap(),
                _ => partition_offsets(
                    &open_or_create::<AccountRecord>(&root).await.unwrap(),
                    group,
                    topic,
                    partitions,
                )
                .await
                .unwrap(),
            };
            for (partition, high) in highs {
                let done = offsets.get(&partition).map_or(0, |o| o.0 + 1);
                if high > 0 && done < high {
                    behind.push(format!("{table}/{partition}: {done} of {high}"));
                }
            }
        }
        if behind.is_empty() {
            return;
        }
        assert!(
            Instant::now() < end,
            "the lake did not catch up within {deadline:?}: {behind:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Asserts that a table holds exactly `expected`, each identity once.
pub fn assert_exactly<R: Record>(mut stored: Vec<R>, expected: &[R]) {
    let mut expected: Vec<R> = expected.to_vec();
    let key = |r: &R| r.key();
    stored.sort_by_key(key);
    expected.sort_by_key(key);
    let stored_keys: Vec<RecordKey> = stored.iter().map(Record::key).collect();
    let mut distinct = stored_keys.clone();
    distinct.dedup();
    assert_eq!(
        distinct.len(),
        stored_keys.len(),
        "{}: {} rows but {} distinct identities",
        R::TABLE,
        stored_keys.len(),
        distinct.len()
    );
    assert_eq!(
        stored.len(),
        expected.len(),
        "{}: {} rows stored, {} expected",
        R::TABLE,
        stored.len(),
        expected.len()
    );
    for (s, e) in stored.iter().zip(&expected) {
        assert_eq!(
            s,
            e,
            "{}: stored record differs from the produced one",
            R::TABLE
        );
    }
}

/// Everything a test produced, to compare with the lake at the end.
#[derive(Default)]
pub struct Produced {
    pub events: Vec<EventRecord>,
    pub visits: Vec<VisitRecord>,
    pub accounts: Vec<AccountRecord>,
}

impl Produced {
    /// Generates and publishes a round of each record type.
    pub async fn round(
        &mut self,
        rng: &mut Rng,
        producer: &FutureProducer,
        (n_events, n_visits, n_accounts): (usize, usize, usize),
    ) {
        let (e, v, a) = (
            events(rng, n_events),
            visits(rng, n_visits),
            accounts(rng, n_accounts),
        );
        produce(producer, &e).await;
        produce(producer, &v).await;
        produce(producer, &a).await;
        self.events.extend(e);
        self.visits.extend(v);
        self.accounts.extend(a);
    }

    pub fn len(&self) -> usize {
        self.events.len() + self.visits.len() + self.accounts.len()
    }

    /// The three tables hold exactly what was produced, each identity once.
    pub async fn assert_in_lake(&self, lake: &Path) {
        assert_exactly(lake_records::<EventRecord>(lake).await, &self.events);
        assert_exactly(lake_records::<VisitRecord>(lake).await, &self.visits);
        assert_exactly(lake_records::<AccountRecord>(lake).await, &self.accounts);
    }
}

/// What most ingest tests start from: a dedicated mock broker, a temporary lake, a config file
/// for an ingest committing every `max_rows` records, and a producer.
pub struct Setup {
    pub broker: super::Broker,
    pub dir: tempfile::TempDir,
    pub lake: PathBuf,
    pub config: PathBuf,
    pub producer: FutureProducer,
}

impl Setup {
    pub fn mock(group: &str, max_rows: usize) -> Setup {
        let broker = super::Broker::dedicated(super::BrokerKind::Mock);
        let dir = tempfile::tempdir().expect("temp dir");
        let lake = dir.path().join("lake");
        let config = write_config(dir.path(), &broker.bootstrap, &lake, group, max_rows);
        let producer = producer(&broker.bootstrap);
        Setup {
            broker,
            dir,
            lake,
            config,
            producer,
        }
    }
}
