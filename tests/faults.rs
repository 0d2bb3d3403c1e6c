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

fn seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1
}

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
    for record in records {
        produce_raw(
            producer,
            topics::EVENTS,
            key,
            &encode(record).payload,
            Some("1"),
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
