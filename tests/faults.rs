//! Faults injected into the pipeline, one test per way a record could be lost silently or a
//! feed stopped by one bad input. Each says what failed before its fix; each checks the lake
//! and the dead-letter topic message by message: nothing lost, nothing doubled.

mod harness;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use harness::pipeline::*;
use harness::{Broker, BrokerKind, client_config};
use mxpulse_ingest::dead_letter::{
    MAX_PAYLOAD_BYTES, MAX_REASON_BYTES, OFFSET_HEADER, PARTITION_HEADER, REASON_HEADER,
    TOPIC_HEADER, TRUNCATED_HEADER,
};
use mxpulse_schemas::*;
use rdkafka::Message;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Headers;

/// A dead letter as read back: its headers and payload length.
#[derive(Debug, Clone)]
struct Letter {
    source: (String, i32, i64),
    reason: String,
    truncated: Option<String>,
    payload_len: usize,
}

/// Every dead letter in the topic, waiting until there are at least `at_least`.
async fn dead_letters(bootstrap: &str, at_least: usize, deadline: Duration) -> Vec<Letter> {
    let consumer: StreamConsumer = client_config(bootstrap)
        .set("group.id", format!("dead-letter-reader-{}", seed()))
        .set("auto.offset.reset", "earliest")
        .set("fetch.max.bytes", "10485760")
        .create()
        .unwrap();
    consumer.subscribe(&[topics::DEADLETTER]).unwrap();
    let end = Instant::now() + deadline;
    let mut letters = Vec::new();
    loop {
        let wait = if letters.len() >= at_least {
            // What else is there, briefly.
            Duration::from_secs(2)
        } else {
            end.saturating_duration_since(Instant::now())
        };
        let Ok(message) = tokio::time::timeout(wait, consumer.recv()).await else {
            break;
        };
        let message = message.unwrap();
        let header = |name: &str| {
            message
                .headers()
                .and_then(|h| h.iter().find(|h| h.key == name))
                .and_then(|h| h.value)
                .map(|v| String::from_utf8_lossy(v).into_owned())
        };
        letters.push(Letter {
            source: (
                header(TOPIC_HEADER).unwrap_or_default(),
                header(PARTITION_HEADER)
                    .and_then(|p| p.parse().ok())
                    .unwrap_or(-1),
                header(OFFSET_HEADER)
                    .and_then(|o| o.parse().ok())
                    .unwrap_or(-1),
            ),
            reason: header(REASON_HEADER).unwrap_or_default(),
            truncated: header(TRUNCATED_HEADER),
            payload_len: message.payload().map_or(0, <[u8]>::len),
        });
    }
    assert!(
        letters.len() >= at_least,
        "{} dead letters of {at_least} within {deadline:?}",
        letters.len()
    );
    letters
}

/// Each source offset once: dead letters neither lost nor doubled.
fn once_each(letters: &[Letter]) -> BTreeMap<(String, i32, i64), Letter> {
    let mut by_source = BTreeMap::new();
    for letter in letters {
        let previous = by_source.insert(letter.source.clone(), letter.clone());
        assert!(previous.is_none(), "dead letter twice: {letter:?}");
    }
    by_source
}

/// Before: `DeadLetterQueue::settle` took the pending letters and, when the broker did not
/// acknowledge one, returned an error without putting them back: the next tick found nothing
/// pending and committed their offsets; the letters were gone. Now a letter stays pending and
/// the commit of its table waits until the dead-letter topic takes it; other tables commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unwritable_dead_letter_topic_holds_its_table_and_loses_no_letter() {
    let mut rng = Rng(seed());
    let broker = Broker::dedicated(BrokerKind::Mock);
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let group = "dead-letter-outage";
    let config = write_config_with(
        dir.path(),
        &broker.bootstrap,
        &lake,
        group,
        1_000,
        "\"message.timeout.ms\" = \"1500\"\n",
        "dead_letter_deadline_ms = 120000\n",
    );
    let producer = producer(&broker.bootstrap);
    let (before, after) = (events(&mut rng, 40), events(&mut rng, 40));
    let visits = visits(&mut rng, 30);
    produce(&producer, &before).await;
    for i in 0..5 {
        produce_raw(
            &producer,
            topics::EVENTS,
            &format!("bad-{i}"),
            b"\xff not json",
            Some("1"),
        )
        .await;
    }
    produce(&producer, &after).await;
    produce(&producer, &visits).await;

    broker.toggle_dead_letter_topic();
    let ingest = Ingest::start(&config, dir.path(), "outage");
    // Several flushes with the letters failing (each times out after 1.5 s).
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert_exactly(lake_records::<VisitRecord>(&lake).await, &visits);
    assert!(
        lake_records::<EventRecord>(&lake).await.is_empty(),
        "the events' commit must wait for their dead letters"
    );
    assert_eq!(ingest.metric("mxpulse_ingest_dead_letters_pending"), 5);
    assert_eq!(ingest.metric("mxpulse_ingest_dead_letters_total"), 0);

    broker.toggle_dead_letter_topic();
    wait_caught_up(&broker.bootstrap, &lake, group, Duration::from_secs(60)).await;
    let expected: Vec<EventRecord> = before.iter().chain(&after).cloned().collect();
    assert_exactly(lake_records::<EventRecord>(&lake).await, &expected);
    let letters = dead_letters(&broker.bootstrap, 5, Duration::from_secs(30)).await;
    assert_eq!(once_each(&letters).len(), 5, "{letters:?}");
    assert_eq!(ingest.metric("mxpulse_ingest_dead_letters_total"), 5);
    assert_eq!(ingest.metric("mxpulse_ingest_dead_letters_pending"), 0);
    assert!(ingest.stop(), "the ingest exits cleanly");
}

/// Before: one undecodable message of ~1 MB made the ingest exit (the dead letter, a copy of
/// it plus headers, was over the producer's limit: `MessageSizeTooLarge` returned from `run`),
/// at every restart; its whole value went to the log at WARN and into an unbounded reason
/// header. Now the copy is cut to fit (and says so), the reason is bounded, the log says the
/// kind and size only. A flood of 10,000 bad messages among good ones: every good record in
/// the lake, every bad one in the dead-letter topic exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_megabyte_bad_message_and_a_flood_of_them_do_not_stop_the_ingest() {
    let mut rng = Rng(seed());
    let broker = Broker::dedicated(BrokerKind::Mock);
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let group = "dead-letter-flood";
    let config = write_config_with(dir.path(), &broker.bootstrap, &lake, group, 2_000, "", "");
    let producer: rdkafka::producer::FutureProducer = client_config(&broker.bootstrap)
        .set("message.max.bytes", "2000000")
        .set("linger.ms", "5")
        .create()
        .unwrap();
    // A record of an unknown version whose `v` is a string of a megabyte.
    let marker = "x".repeat(64);
    let huge = format!("{{\"v\": \"{}\"}}", marker.repeat(16 * 1024));
    assert!(huge.len() > 1_000_000);
    let good_before = events(&mut rng, 500);
    produce(&producer, &good_before).await;
    produce_raw(
        &producer,
        topics::EVENTS,
        "huge",
        huge.as_bytes(),
        Some("1"),
    )
    .await;
    let mut good = good_before.clone();
    let flood = 10_000;
    let sends = (0..flood).map(|i| {
        let producer = producer.clone();
        async move {
            let payload = format!("not a record {i}");
            produce_raw(
                &producer,
                topics::EVENTS,
                &format!("flood-{i}"),
                payload.as_bytes(),
                None,
            )
            .await;
        }
    });
    futures::future::join_all(sends).await;
    let good_after = events(&mut rng, 500);
    produce(&producer, &good_after).await;
    good.extend(good_after);

    let ingest = Ingest::start(&config, dir.path(), "flood");
    wait_caught_up(&broker.bootstrap, &lake, group, Duration::from_secs(120)).await;
    assert_exactly(lake_records::<EventRecord>(&lake).await, &good);
    let letters = dead_letters(&broker.bootstrap, flood + 1, Duration::from_secs(60)).await;
    let by_source = once_each(&letters);
    assert_eq!(by_source.len(), flood + 1);
    let cut = letters
        .iter()
        .find(|l| l.truncated.is_some())
        .expect("the megabyte letter says it was cut");
    assert_eq!(cut.payload_len, MAX_PAYLOAD_BYTES);
    assert!(
        cut.truncated
            .as_deref()
            .is_some_and(|t| t.contains(&format!("payload {} bytes", huge.len()))),
        "{cut:?}"
    );
    assert!(cut.reason.len() <= MAX_REASON_BYTES, "{}", cut.reason.len());
    assert!(
        cut.reason.contains("unknown schema version"),
        "{}",
        cut.reason
    );
    assert_eq!(
        ingest.metric("mxpulse_ingest_dead_letters_total"),
        flood as u64 + 1
    );
    let log = std::fs::read_to_string(&ingest.log).unwrap();
    assert!(
        !log.contains(&marker),
        "the log holds the message's content ({} bytes of log)",
        log.len()
    );
    assert!(
        log.contains("kind=unknown_version") && log.contains("kind=not_json"),
        "{}",
        &log[..log.len().min(2000)]
    );
    assert!(
        ingest.stop(),
        "the ingest was still running and exits cleanly"
    );
}

/// A transaction of the capture's events with, in the middle, one of them nested `depth`
/// levels deep in its content.
fn transaction_with_a_deep_event(depth: usize) -> Vec<u8> {
    let path = harness::repo_root().join("hooks/tests/data/synapse-appservice/txn-025.json");
    let body: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let events = body["events"].as_array().unwrap().clone();
    let mut deep = events[0].clone();
    deep["event_id"] = "$deep-event-of-the-fault-test".into();
    deep["content"]["nest"] = serde_json::Value::Null;
    let deep = serde_json::to_string(&deep).unwrap().replace(
        "\"nest\":null",
        &format!("\"nest\":{}{}", "[".repeat(depth), "]".repeat(depth)),
    );
    let listed: Vec<String> = events.iter().map(|e| e.to_string()).collect();
    format!("{{\"events\": [{deep}, {}]}}", listed.join(", ")).into_bytes()
}

async fn put_transaction(hooks: &harness::hooks::HooksProcess, id: &str, body: Vec<u8>) -> u16 {
    reqwest::Client::new()
        .put(format!("{}/_matrix/app/v1/transactions/{id}", hooks.url()))
        .bearer_auth(HS_TOKEN)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

const HS_SERVER: &str = "interieur.localhost";
const HS_TOKEN: &str = "hs-token-of-the-fault-test-0123456789";

/// Before: the hooks read the whole transaction as one JSON value; an event nested deeper than
/// serde_json's 128 levels (Synapse accepts such content) made it a 400, Synapse retried it
/// forever, every later event of that homeserver queued behind it, and /health said ok. Now the
/// event is skipped and counted, the others go to the lake, the answer is 200; and a homeserver
/// whose transactions keep being refused makes /health fail, naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_nested_too_deep_is_skipped_and_a_stalled_feed_shows_on_health() {
    let broker = Broker::dedicated(BrokerKind::Mock);
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let hooks_config = harness::hooks::write_hooks_config(
        dir.path(),
        &broker.bootstrap,
        HS_SERVER,
        HS_TOKEN,
        None,
        "feed_stall_ms = 1500",
    );
    let hooks = harness::hooks::HooksProcess::start(&hooks_config, dir.path());
    let config = write_config(dir.path(), &broker.bootstrap, &lake, "deep-events", 1_000);
    let ingest = Ingest::start(&config, dir.path(), "deep");

    assert_eq!(
        put_transaction(&hooks, "deep-1", transaction_with_a_deep_event(200)).await,
        200
    );
    assert_eq!(
        hooks.metric("mxpulse_hooks_events_skipped_total{reason=\"unreadable\"}"),
        1
    );
    let published = hooks.metric("mxpulse_hooks_records_total{table=\"events\"}");
    assert!(published > 0);
    wait_caught_up(
        &broker.bootstrap,
        &lake,
        "deep-events",
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(
        lake_records::<EventRecord>(&lake).await.len() as u64,
        published
    );

    // A feed whose transactions keep being refused: /health names it once past the threshold.
    assert_eq!(
        put_transaction(&hooks, "bad-1", b"{\"events\": [".to_vec()).await,
        400
    );
    tokio::time::sleep(Duration::from_millis(1600)).await;
    assert_eq!(
        put_transaction(&hooks, "bad-1", b"{\"events\": [".to_vec()).await,
        400
    );
    let health: serde_json::Value = serde_json::from_str(&hooks.get("/health").unwrap()).unwrap();
    assert_eq!(health["status"], "failing", "{health}");
    assert_eq!(
        health["transactions"][HS_SERVER]["stalled"], true,
        "{health}"
    );
    assert!(
        health["transactions"][HS_SERVER]["last_problem"]
            .as_str()
            .is_some_and(|p| p.contains("400")),
        "{health}"
    );
    // It flows again: healthy again.
    assert_eq!(
        put_transaction(&hooks, "good-2", transaction_with_a_deep_event(3)).await,
        200
    );
    let health: serde_json::Value = serde_json::from_str(&hooks.get("/health").unwrap()).unwrap();
    assert_eq!(health["status"], "ok", "{health}");
    assert!(ingest.stop());
}

/// `mxpulse lake reset-offsets` with the test's configuration.
fn reset_offsets(config: &std::path::Path, partition: i32, to: &str) -> String {
    let out = std::process::Command::new(harness::mxpulse_bin())
        .arg("--config")
        .arg(config)
        .args(["lake", "reset-offsets", "--topic", "events", "--partition"])
        .arg(partition.to_string())
        .args(["--to", to, "--reason", "the test accepts the gap"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// Valid records, all on the partition of one Kafka key.
async fn produce_on_one_partition(
    producer: &rdkafka::producer::FutureProducer,
    key: &str,
    records: &[EventRecord],
) {
    let version = Envelope::version_header();
    for record in records {
        produce_raw(
            producer,
            topics::EVENTS,
            key,
            &encode(record).payload,
            Some(&version),
        )
        .await;
    }
}

/// The partition of `topic` holding messages (the tests put them all on one).
fn busy_partition(bootstrap: &str) -> i32 {
    let highs = watermarks(bootstrap, topics::EVENTS);
    *highs
        .iter()
        .find(|(_, high)| **high > 0)
        .expect("a partition with messages")
        .0
}

/// Waits until the ingest's /health names a stopped partition; returns its body.
fn wait_stopped(ingest: &Ingest) -> String {
    harness::wait_for(Duration::from_secs(60), || {
        let health = ingest.health();
        health.contains("stopped_partitions\":[{").then_some(health)
    })
    .unwrap_or_else(|| panic!("no partition stopped: {}", ingest.health()))
}

/// Before: when retention deleted messages the ingest had not read (an outage longer than
/// the retention; the dev broker's 5 MB per partition), librdkafka reset the position to the
/// earliest offset left and the ingest went on with one INFO line: the missing messages were
/// never in the lake and nothing said so. Now the partition stops with an error naming it and
/// the missing offsets, counted in /metrics and /health, until an operator accepts the gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retention_gap_stops_the_partition_until_an_operator_accepts_it() {
    let mut rng = Rng(seed());
    let broker = Broker::dedicated(BrokerKind::Mock);
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let group = "retention-gap";
    let config = write_config(dir.path(), &broker.bootstrap, &lake, group, 1_000);
    let producer: rdkafka::producer::FutureProducer = client_config(&broker.bootstrap)
        .set("message.max.bytes", "2000000")
        .create()
        .unwrap();
    let first = events(&mut rng, 20);
    produce_on_one_partition(&producer, "gap", &first).await;
    let ingest = Ingest::start(&config, dir.path(), "before");
    wait_caught_up(&broker.bootstrap, &lake, group, Duration::from_secs(60)).await;
    assert!(ingest.stop());

    // While the ingest is down, 6 MB on the partition: the broker drops the oldest messages,
    // including the first ones the ingest has not read.
    let filler = vec![b'#'; 50_000];
    for i in 0..120 {
        produce_raw(&producer, topics::EVENTS, "gap", &filler, None).await;
        if i == 0 {
            // The first unread message, soon gone.
            produce_on_one_partition(&producer, "gap", &events(&mut rng, 1)).await;
        }
    }
    let later = events(&mut rng, 10);
    produce_on_one_partition(&producer, "gap", &later).await;
    let partition = busy_partition(&broker.bootstrap);

    let ingest = Ingest::start(&config, dir.path(), "gap");
    let health = wait_stopped(&ingest);
    assert!(
        health.contains(&format!("\"partition\":{partition}"))
            && health.contains("no longer in Kafka"),
        "{health}"
    );
    assert_eq!(ingest.metric("mxpulse_ingest_position_problems_total"), 1);
    assert!(
        ingest.metrics().contains(&format!(
            "mxpulse_ingest_partition_stopped{{topic=\"mxpulse.events.v1\",partition=\"{partition}\"}} 1"
        )),
        "{}",
        ingest.metrics()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_exactly(lake_records::<EventRecord>(&lake).await, &first);
    let log = std::fs::read_to_string(&ingest.log).unwrap();
    assert!(
        log.contains("reset-offsets") && log.contains("offsets 20 to"),
        "{log}"
    );
    assert!(ingest.stop());

    // The operator accepts the gap: the ingest goes on from the earliest message left.
    let said = reset_offsets(&config, partition, "earliest");
    assert!(said.contains("the lake held up to offset 19"), "{said}");
    let ingest = Ingest::start(&config, dir.path(), "after");
    wait_caught_up(&broker.bootstrap, &lake, group, Duration::from_secs(60)).await;
    let expected: Vec<EventRecord> = first.iter().chain(&later).cloned().collect();
    assert_exactly(lake_records::<EventRecord>(&lake).await, &expected);
    assert!(
        ingest.health().contains("\"status\":\"ok\""),
        "{}",
        ingest.health()
    );
    assert!(ingest.stop());
}

/// Before: pointed at a new cluster (or a re-created topic) under the same consumer group,
/// the ingest read offsets 0, 1, 2... that the lake already held for the old topic, took them
/// for repeats and skipped them silently. Now the message at the lake's last offset must be
/// the one it holds, and offsets must not go backwards: the partition stops and says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_cluster_under_the_same_group_stops_instead_of_skipping() {
    let mut rng = Rng(seed());
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let group = "new-cluster";
    let old = Broker::dedicated(BrokerKind::Mock);
    let old_config = write_config(dir.path(), &old.bootstrap, &lake, group, 1_000);
    let old_records = events(&mut rng, 10);
    produce_on_one_partition(&producer(&old.bootstrap), "k", &old_records).await;
    let ingest = Ingest::start(&old_config, dir.path(), "old");
    wait_caught_up(&old.bootstrap, &lake, group, Duration::from_secs(60)).await;
    assert!(ingest.stop());

    let new = Broker::dedicated(BrokerKind::Mock);
    let new_dir = dir.path().join("new");
    std::fs::create_dir_all(&new_dir).unwrap();
    let new_config = write_config(&new_dir, &new.bootstrap, &lake, group, 1_000);
    let new_records = events(&mut rng, 5);
    produce_on_one_partition(&producer(&new.bootstrap), "k", &new_records).await;
    let partition = busy_partition(&new.bootstrap);
    let ingest = Ingest::start(&new_config, &new_dir, "new");
    let health = wait_stopped(&ingest);
    assert!(
        health.contains(&format!("\"partition\":{partition}"))
            && (health.contains("went backwards") || health.contains("not the one the lake holds")),
        "{health}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_exactly(lake_records::<EventRecord>(&lake).await, &old_records);
    assert!(ingest.stop());

    reset_offsets(&new_config, partition, "earliest");
    let ingest = Ingest::start(&new_config, &new_dir, "accepted");
    wait_caught_up(&new.bootstrap, &lake, group, Duration::from_secs(60)).await;
    let expected: Vec<EventRecord> = old_records.iter().chain(&new_records).cloned().collect();
    assert_exactly(lake_records::<EventRecord>(&lake).await, &expected);
    assert!(ingest.stop());
}

/// Before: `mxpulse generate --kafka` published as fast as it could; the dev broker keeps 5 MB
/// a partition, so with a slower ingest it dropped messages before they were read (18.6M events
/// generated at scale 0.1, 3.6M in the lake, nothing said). Now publishing waits while the
/// ingest is over `--max-lag` behind: every record published reaches the lake.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generate_into_kafka_waits_for_the_ingest_and_every_record_reaches_the_lake() {
    let broker = Broker::dedicated(BrokerKind::Mock);
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let group = "generate-pace";
    let config = write_config_with(dir.path(), &broker.bootstrap, &lake, group, 5_000, "", "");
    let ingest = Ingest::start(&config, dir.path(), "pace");
    let out = std::process::Command::new(harness::mxpulse_bin())
        .arg("--config")
        .arg(&config)
        .args([
            "generate", "--kafka", "--scale", "0.005", "--from", "2024-06", "--to", "2024-07",
        ])
        .args(["--max-lag", "3000"])
        .env("MXPULSE_PSEUDONYM_KEY", harness::hooks::TEST_KEY)
        .env("MXPULSE_LOG", "warn")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let published: Vec<u64> = text
        .lines()
        .find_map(|l| l.strip_prefix("published to Kafka: "))
        .expect("the published counts")
        .split(", ")
        .filter_map(|part| part.split(' ').next()?.parse().ok())
        .collect();
    assert_eq!(published.len(), 3, "{text}");
    assert!(
        published[0] > 50_000,
        "more than the broker keeps on 4 partitions: {published:?}"
    );
    wait_caught_up(&broker.bootstrap, &lake, group, Duration::from_secs(300)).await;
    assert_eq!(
        lake_records::<EventRecord>(&lake).await.len() as u64,
        published[0]
    );
    assert_eq!(
        lake_records::<VisitRecord>(&lake).await.len() as u64,
        published[1]
    );
    assert_eq!(
        lake_records::<AccountRecord>(&lake).await.len() as u64,
        published[2]
    );
    assert!(
        ingest.health().contains("\"status\":\"ok\""),
        "{}",
        ingest.health()
    );
    assert!(ingest.stop());
}

/// Publishes `records` each to `partition_of(i)` explicitly, as another producer's partitioner
/// (or more partitions than before) would place copies of the same identity.
async fn produce_to_partitions<R: Record>(
    producer: &rdkafka::producer::FutureProducer,
    records: &[R],
    partition_of: impl Fn(usize) -> i32,
) {
    use rdkafka::message::{Header, OwnedHeaders};
    use rdkafka::producer::FutureRecord;
    let version = Envelope::version_header();
    let envelopes: Vec<Envelope> = records.iter().map(encode).collect();
    let deliveries: Vec<_> = envelopes
        .iter()
        .enumerate()
        .map(|(i, e)| {
            producer.send(
                FutureRecord::to(e.topic)
                    .key(e.key.as_bytes())
                    .payload(&e.payload)
                    .partition(partition_of(i))
                    .headers(OwnedHeaders::new().insert(Header {
                        key: SCHEMA_VERSION_HEADER,
                        value: Some(version.as_bytes()),
                    })),
                Duration::from_secs(30),
            )
        })
        .collect();
    for delivery in futures::future::join_all(deliveries).await {
        assert!(delivery.is_ok(), "{delivery:?}");
    }
}

/// Before: the identity index of an instance held what the lake had when it loaded a day,
/// plus its own commits, on the assumption that every copy of an identity arrives on one
/// partition. A copy published to another partition, owned by another instance, was written
/// by both: each record of this test twice. Now an instance reloads what another writer
/// committed, and two commits of the same days at the same time cannot both pass (the later
/// one conflicts and is read again): each record once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_store_a_record_once_whichever_partitions_its_copies_arrive_on() {
    let mut rng = Rng(seed());
    let Setup {
        broker,
        dir,
        lake,
        config,
        producer,
    } = Setup::mock("faults-cross-partition", 100);
    let first = Ingest::start(&config, dir.path(), "first");
    let second = Ingest::start(&config, dir.path(), "second");
    let mut all = Vec::new();
    for round in 0..6 {
        let records = events(&mut rng, 300);
        // Each record on partition i % 4, and a copy on the next partition (the other
        // instance's for half of them), at once: both are buffered at the same time.
        produce_to_partitions(&producer, &records, |i| (i % 4) as i32).await;
        produce_to_partitions(&producer, &records, |i| ((i + 1 + round) % 4) as i32).await;
        all.extend(records);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    wait_caught_up(
        &broker.bootstrap,
        &lake,
        "faults-cross-partition",
        Duration::from_secs(120),
    )
    .await;
    let (races, by_first, by_second) = (
        first.metric("mxpulse_ingest_commit_races_total")
            + second.metric("mxpulse_ingest_commit_races_total"),
        first.metric("mxpulse_ingest_rows_written_total"),
        second.metric("mxpulse_ingest_rows_written_total"),
    );
    assert!(first.stop() & second.stop());
    assert!(
        by_first > 0 && by_second > 0,
        "both wrote: {by_first}, {by_second}"
    );
    let stored = lake_records::<EventRecord>(&lake).await;
    eprintln!(
        "sent {} records twice across partitions: {} in the lake, {races} commit races",
        all.len(),
        stored.len()
    );
    assert_exactly(stored, &all);
}

/// What `strace -f -y` saw of a process: file syncs and the links and renames that put files
/// in place, in order.
struct SyncTrace {
    /// (line, path) of each fsync/fdatasync.
    syncs: Vec<(usize, String)>,
    /// (line, target path) of each link or rename.
    placed: Vec<(usize, String)>,
}

fn sync_trace(text: &str) -> SyncTrace {
    let mut trace = SyncTrace {
        syncs: Vec::new(),
        placed: Vec::new(),
    };
    for (line, row) in text.lines().enumerate() {
        if let Some(rest) = row
            .split_once("fsync(")
            .or_else(|| row.split_once("fdatasync("))
            .map(|(_, r)| r)
            && let Some((_, path)) = rest.split_once('<')
            && let Some((path, _)) = path.split_once('>')
        {
            trace.syncs.push((line, path.to_owned()));
        }
        if ["link(", "linkat(", "rename(", "renameat(", "renameat2("]
            .iter()
            .any(|call| row.contains(call))
        {
            // The target is the last quoted path of the call.
            let quoted: Vec<&str> = row.split('"').skip(1).step_by(2).collect();
            if let Some(target) = quoted.last() {
                trace.placed.push((line, (*target).to_owned()));
            }
        }
    }
    trace
}

/// Before: object_store's local file system renamed each file into place and never synced
/// it; a host crash could keep a Delta commit and lose the data files it names. Now every
/// table is written through a store that syncs each file and its directory: traced with
/// strace, each data file a commit adds is synced before the commit file is linked into
/// place, and the commit file is synced after, for the raw tables and the rollups.
#[test]
fn every_data_file_is_on_disk_before_the_commit_that_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let traced = |args: &[&str], name: &str| {
        let trace = dir.path().join(format!("{name}.strace"));
        let out = std::process::Command::new("strace")
            .args([
                "-f",
                "-y",
                "-qq",
                "-e",
                "trace=fsync,fdatasync,link,linkat,rename,renameat,renameat2",
                "-o",
            ])
            .arg(&trace)
            .arg(harness::mxpulse_bin())
            .args(args)
            .env("MXPULSE_LAKE_ROOT", &lake)
            .env("MXPULSE_PSEUDONYM_KEY", harness::lakes::KEY)
            .env("MXPULSE_LOG", "warn")
            .output()
            .expect("strace (Debian strace)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::read_to_string(trace).unwrap()
    };
    let lake_arg = lake.display().to_string();
    let mut texts = vec![traced(
        &[
            "generate", "--scale", "0.0005", "--from", "2024-07", "--to", "2024-07", "--lake",
            &lake_arg,
        ],
        "generate",
    )];
    texts.push(traced(&["lake", "rollup"], "rollup"));
    let mut commits = 0;
    let mut files = 0;
    for text in &texts {
        let trace = sync_trace(text);
        for (at, target) in trace.placed.iter().filter(|(_, t)| {
            t.contains("/_delta_log/") && t.ends_with(".json") && !t.contains("_commit_")
        }) {
            commits += 1;
            let table = target.split("/_delta_log/").next().unwrap();
            let commit = std::fs::read_to_string(target).unwrap();
            for action in commit.lines() {
                let action: serde_json::Value = serde_json::from_str(action).unwrap();
                let Some(path) = action["add"]["path"].as_str() else {
                    continue;
                };
                let file = format!("{table}/{}", path.replace("%3D", "="));
                files += 1;
                assert!(
                    trace
                        .syncs
                        .iter()
                        .any(|(line, synced)| line < at && *synced == file),
                    "{file} synced before {target} was linked"
                );
            }
            assert!(
                trace
                    .syncs
                    .iter()
                    .any(|(line, synced)| line > at && synced == target),
                "{target} synced once in place"
            );
        }
    }
    assert!(
        commits >= 6 && files >= 6,
        "{commits} commits, {files} files checked"
    );
}

/// A transaction of `n` messages sent by users of `server`.
fn transaction_from(server: &str, n: usize, first: usize) -> Vec<u8> {
    let events: Vec<serde_json::Value> = (first..first + n)
        .map(|i| {
            serde_json::json!({
                "type": "m.room.message",
                "event_id": format!("$remote-{i}"),
                "room_id": "!room:elsewhere.localhost",
                "sender": format!("@user{}:{server}", i % 7),
                "origin_server_ts": 1_721_037_600_000_i64 + i as i64,
                "content": {"msgtype": "m.text", "body": "hello"},
            })
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({ "events": events })).unwrap()
}

/// Before: a homeserver configured with a `server_name` that is not Synapse's saw every
/// sender as another server's: nothing counted, nothing said, /health ok. Now, after
/// `remote_only_ms` of only remote senders (100 events or more), /health fails naming it and
/// the log says what to check; one local sender clears it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_name_that_is_not_synapses_shows_on_health_and_in_the_log() {
    let broker = Broker::dedicated(BrokerKind::Mock);
    let dir = tempfile::tempdir().unwrap();
    // Synapse's server is interieur.localhost; the hooks were told another name.
    let config = harness::hooks::write_hooks_config(
        dir.path(),
        &broker.bootstrap,
        "interieur.example",
        HS_TOKEN,
        None,
        "remote_only_ms = 300\nbroker_probe_ms = 200",
    );
    let hooks = harness::hooks::HooksProcess::start(&config, dir.path());
    let health = |hooks: &harness::hooks::HooksProcess| -> serde_json::Value {
        serde_json::from_str(&hooks.get("/health").unwrap_or_default()).unwrap_or_default()
    };
    harness::wait_for(Duration::from_secs(20), || {
        (health(&hooks)["status"] == "ok").then_some(())
    })
    .expect("healthy before any transaction (the broker probed)");
    for round in 0..3 {
        let status = put_transaction(
            &hooks,
            &format!("remote-{round}"),
            transaction_from(HS_SERVER, 50, round * 50),
        )
        .await;
        assert_eq!(status, 200);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let suspect = health(&hooks);
    assert_eq!(suspect["status"], "failing", "{suspect}");
    assert_eq!(
        suspect["transactions"]["interieur.example"]["server_name_suspect"], true,
        "{suspect}"
    );
    assert!(
        hooks.log_text().contains("is its server_name Synapse's?"),
        "{}",
        hooks.log_text()
    );
    // One of its own users' events: it was the right name after all.
    let status = put_transaction(
        &hooks,
        "local-1",
        transaction_from("interieur.example", 1, 999),
    )
    .await;
    assert_eq!(status, 200);
    let cleared = health(&hooks);
    assert_eq!(cleared["status"], "ok", "{cleared}");
}

/// Before: the hooks started with the broker "up" whatever it was, and /health stayed ok with
/// no broker at all until a transaction failed; database URLs showed a `?password=` on
/// /health, and `mxpulse config` printed `synapse_db` and secret Kafka properties as given;
/// a request with a wrong token had its whole body read first; a client sending its headers
/// slowly held its connection forever. Now: the broker is probed (503 "down" within a probe),
/// secrets are absent from /health, the log and `mxpulse config`, a stranger is refused from
/// its headers alone, and slow headers are cut at `read_timeout_ms`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_tells_the_truth_secrets_stay_hidden_and_strangers_cost_little() {
    use std::io::{Read as _, Write as _};
    let dir = tempfile::tempdir().unwrap();
    let nobody = format!("127.0.0.1:{}", harness::free_port());
    let secrets = [
        "db-secret-1",
        "db-secret-2",
        "db-secret-3",
        "kafka-secret-4",
    ];
    let config = dir.path().join("hooks.toml");
    std::fs::write(
        &config,
        format!(
            "[kafka]\nbrokers = \"{nobody}\"\n[kafka.properties]\n\"sasl.password\" = \"{}\"\n\
             [hooks]\ntap_interval_ms = 300\nbroker_probe_ms = 300\nread_timeout_ms = 1000\n\
             state_dir = \"{}\"\n\
             [[hooks.homeservers]]\nserver_name = \"{HS_SERVER}\"\nhs_token = \"{HS_TOKEN}\"\n\
             synapse_db = \"postgresql://ro:{}@127.0.0.1:1/synapse?password={}&sslpassword={}\"\n",
            secrets[3],
            dir.path().join("state").display(),
            secrets[0],
            secrets[1],
            secrets[2],
        ),
    )
    .unwrap();
    let hooks = harness::hooks::HooksProcess::start(&config, dir.path());

    // No broker, no traffic: failing, within a probe.
    let health = harness::wait_for(Duration::from_secs(15), || {
        let text = hooks.get("/health")?;
        let health: serde_json::Value = serde_json::from_str(&text).ok()?;
        (health["broker"] == "down" && health["synapse_db"][HS_SERVER]["last_error"].is_string())
            .then_some(text)
    })
    .unwrap_or_else(|| panic!("{:?}", hooks.get("/health")));
    assert!(health.contains("\"status\":\"failing\""), "{health}");

    // A stranger's announced 30 MB body is not read: refused from its headers.
    let mut stranger = std::net::TcpStream::connect(("127.0.0.1", hooks.port)).unwrap();
    stranger
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stranger,
        "PUT /_matrix/app/v1/transactions/1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer wrong-token\r\n\
         Content-Type: application/json\r\nContent-Length: 30000000\r\n\r\n{{"
    )
    .unwrap();
    let mut answer = [0u8; 64];
    let n = stranger.read(&mut answer).unwrap_or(0);
    let answer = String::from_utf8_lossy(&answer[..n]).into_owned();
    assert!(
        answer.starts_with("HTTP/1.1 403"),
        "answered before its body: {answer:?}"
    );

    // Headers that never end: the connection is closed after the read timeout.
    let mut slow = std::net::TcpStream::connect(("127.0.0.1", hooks.port)).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(slow, "GET /health HTTP/1.1\r\nHost: x\r\n").unwrap();
    let mut rest = Vec::new();
    let closed = slow.read_to_end(&mut rest);
    assert!(
        closed.is_ok(),
        "closed by the server, not by our 10 s timeout: {closed:?}"
    );

    // Secrets: not on /health, not in the log, not in `mxpulse config`.
    let printed = std::process::Command::new(harness::mxpulse_bin())
        .arg("--config")
        .arg(&config)
        .arg("config")
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&printed.stdout).into_owned();
    assert!(printed.contains("synapse_db"), "{printed}");
    for secret in secrets {
        assert!(!health.contains(secret), "{secret} on /health: {health}");
        let log = hooks.log_text();
        let line = log.lines().find(|l| l.contains(secret));
        assert!(line.is_none(), "{secret} in the log: {line:?}");
        assert!(
            !printed.contains(secret),
            "{secret} in mxpulse config: {printed}"
        );
    }
}

/// Before: the tap dated a deactivation (or reactivation) with the time of the poll that saw
/// it, which was also its identity: a tap state file restored from a backup saw the same
/// deactivation again and published it with a new identity (counted twice); a deactivation
/// older than the tap's first run was reported by nothing; and a visit row dated in the future
/// moved the watermark past the rows still to come. Now a deactivation is dated with the
/// user's last trace in Synapse's database (the same for the tap and the backfill), the
/// backfill reports those that came before the tap, and the watermark stops at the database's
/// own clock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tap_repeats_no_account_change_skips_no_visit_and_the_backfill_dates_old_deactivations()
{
    use harness::hooks::{HooksProcess, synapse_sql, topic_records, write_hooks_config};
    use mxpulse_schemas::vocabulary::AccountChange;

    let broker = Broker::dedicated(BrokerKind::Mock);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("homeserver.db");
    let now_s = chrono::Utc::now().timestamp();
    let today_ms = now_s / 86_400 * 86_400_000;
    let long_ago_ms = today_ms - 40 * 86_400_000;
    let server = HS_SERVER;
    synapse_sql(&db, &format!(
        "CREATE TABLE users(name TEXT, password_hash TEXT, creation_ts BIGINT, admin SMALLINT DEFAULT 0 NOT NULL, is_guest SMALLINT DEFAULT 0 NOT NULL, appservice_id TEXT, user_type TEXT, deactivated SMALLINT DEFAULT 0 NOT NULL);
         CREATE TABLE user_daily_visits(user_id TEXT NOT NULL, device_id TEXT, timestamp BIGINT NOT NULL, user_agent TEXT);
         INSERT INTO users(name, creation_ts) VALUES ('@a:{server}', {c}), ('@b:{server}', {c});
         INSERT INTO users(name, creation_ts, deactivated) VALUES ('@gone:{server}', {old_c}, 1);
         INSERT INTO user_daily_visits VALUES ('@a:{server}', 'D1', {today_ms}, 'Mozilla/5.0'), ('@gone:{server}', 'D1', {long_ago_ms}, 'Mozilla/5.0');",
        c = now_s - 600,
        old_c = long_ago_ms / 1000 - 86_400,
    ));
    let config = write_hooks_config(
        dir.path(),
        &broker.bootstrap,
        server,
        HS_TOKEN,
        Some(&db),
        "broker_probe_ms = 200",
    );
    let state = dir.path().join(format!("hooks-state/{server}.tap.json"));
    let accounts = || topic_records::<AccountRecord>(&broker.bootstrap);
    let visits = || topic_records::<VisitRecord>(&broker.bootstrap);
    let polls = |hooks: &HooksProcess| {
        hooks.metric(&format!(
            "mxpulse_hooks_synapse_db_polls_total{{server=\"{server}\"}}"
        ))
    };
    let more_polls = |hooks: &HooksProcess, n: u64| {
        let after = polls(hooks) + n;
        harness::wait_for(Duration::from_secs(30), || {
            (polls(hooks) >= after).then_some(())
        })
        .expect("the tap polls");
    };

    let hooks = HooksProcess::start(&config, dir.path());
    harness::wait_for(Duration::from_secs(30), || {
        (accounts().len() >= 2).then_some(())
    })
    .expect("the two accounts created");
    more_polls(&hooks, 2);
    let before_deactivation = std::fs::read(&state).unwrap();

    // @a is deactivated: one record, dated with @a's last trace in the database (its creation,
    // ten minutes ago, is later than its visit day's start).
    let a_trace_ms = (now_s - 600) * 1000 / 3_600_000 * 3_600_000; // published to the hour
    synapse_sql(
        &db,
        &format!("UPDATE users SET deactivated = 1 WHERE name = '@a:{server}';"),
    );
    let deactivations = |records: &[AccountRecord]| -> Vec<AccountRecord> {
        records
            .iter()
            .filter(|r| r.change == AccountChange::Deactivated)
            .cloned()
            .collect()
    };
    harness::wait_for(Duration::from_secs(30), || {
        (!deactivations(&accounts()).is_empty()).then_some(())
    })
    .expect("the deactivation");
    assert_eq!(
        deactivations(&accounts())[0].ts.0,
        a_trace_ms,
        "dated with its last trace"
    );
    drop(hooks);

    // The state file restored from before: the deactivation is seen again, with its identity.
    std::fs::write(&state, before_deactivation).unwrap();
    let hooks = HooksProcess::start(&config, dir.path());
    harness::wait_for(Duration::from_secs(30), || {
        (deactivations(&accounts()).len() >= 2).then_some(())
    })
    .expect("published again after the rollback");
    let seen: std::collections::BTreeSet<String> = deactivations(&accounts())
        .iter()
        .map(|r| r.key().0)
        .collect();
    assert_eq!(
        seen.len(),
        1,
        "one identity, dropped as a repeat by the ingest: {seen:?}"
    );

    // A visit dated ten days ahead, then today's visit of a new device: both published.
    synapse_sql(
        &db,
        &format!(
            "INSERT INTO user_daily_visits VALUES ('@b:{server}', 'D1', {}, 'Mozilla/5.0');",
            today_ms + 10 * 86_400_000
        ),
    );
    more_polls(&hooks, 2);
    synapse_sql(
        &db,
        &format!(
            "INSERT INTO user_daily_visits VALUES ('@b:{server}', 'D2', {today_ms}, 'Mozilla/5.0');"
        ),
    );
    more_polls(&hooks, 3);
    let days: Vec<chrono::NaiveDate> = visits().iter().map(|v| v.day).collect();
    let today = chrono::DateTime::from_timestamp_millis(today_ms)
        .unwrap()
        .date_naive();
    assert_eq!(
        days.iter().filter(|d| **d == today).count(),
        2,
        "today's two visits, the second after the future-dated one: {days:?}"
    );
    drop(hooks);

    // @gone was deactivated before the tap ever ran: the backfill reports it, dated with its
    // last visit, forty days ago.
    assert!(
        deactivations(&accounts())
            .iter()
            .all(|r| r.ts.0 != long_ago_ms)
    );
    let since = chrono::DateTime::from_timestamp_millis(long_ago_ms - 86_400_000)
        .unwrap()
        .date_naive()
        .to_string();
    let backfill = std::process::Command::new(harness::mxpulse_bin())
        .arg("--config")
        .arg(&config)
        .args([
            "backfill",
            "--server",
            server,
            "--only",
            "accounts",
            "--quiet",
            "--since",
            &since,
            "--synapse-db",
        ])
        .arg(&db)
        .env("MXPULSE_PSEUDONYM_KEY", harness::hooks::TEST_KEY)
        .output()
        .unwrap();
    assert!(
        backfill.status.success(),
        "{}",
        String::from_utf8_lossy(&backfill.stderr)
    );
    let old = deactivations(&accounts());
    assert!(
        old.iter().any(|r| r.ts.0 == long_ago_ms),
        "the old deactivation, dated with its last visit: {old:?}"
    );
    // And @a's, reported by the backfill too, has the tap's identity.
    let keys: std::collections::BTreeSet<String> = old
        .iter()
        .filter(|r| r.ts.0 == a_trace_ms)
        .map(|r| r.key().0)
        .collect();
    assert_eq!(keys.len(), 1, "{old:?}");
}

/// Before: `serve` given a relative `lake.root` (taken from its own working directory, not the
/// ingest's) served an empty lake without a word: every figure empty. Now it says so at once.
#[test]
fn serve_says_when_its_lake_holds_no_table() {
    let dir = tempfile::tempdir().unwrap();
    let (port, pg_port) = (harness::free_port(), harness::free_port());
    std::fs::write(
        dir.path().join("serve.toml"),
        format!(
            "[lake]\nroot = \"lake-relative\"\n[query]\nlisten = \"127.0.0.1:{port}\"\npgwire_listen = \"127.0.0.1:{pg_port}\"\n"
        ),
    )
    .unwrap();
    let log = dir.path().join("serve.log");
    let mut serve = std::process::Command::new(harness::mxpulse_bin())
        .args(["--config", "serve.toml", "serve"])
        .current_dir(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let said = harness::wait_for(Duration::from_secs(30), || {
        std::fs::read_to_string(&log)
            .ok()
            .filter(|l| l.contains("the lake holds no table yet"))
    });
    harness::stop(&mut serve);
    let said = said.expect("a warning in the log");
    assert!(
        said.contains(&dir.path().join("lake-relative").display().to_string()),
        "names the directory it read: {said}"
    );
}
