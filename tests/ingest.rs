//! The ingest end to end: `mxpulse ingest` as a separate process between a real Kafka-protocol
//! broker and a Delta lake on disk, checked record by record against what was produced.

mod harness;

use std::time::Duration;

use harness::pipeline::*;
use harness::{Broker, BrokerKind, client_config};
use mxpulse_ingest::dead_letter::{OFFSET_HEADER, PARTITION_HEADER, REASON_HEADER, TOPIC_HEADER};
use mxpulse_schemas::*;
use rdkafka::Message;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Headers;

const GROUP: &str = "ingest-test";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_moments_leaves_every_record_exactly_once() {
    let seed = seed();
    eprintln!("seed {seed}");
    let mut rng = Rng(seed);
    let Setup {
        broker,
        dir,
        lake,
        config,
        producer,
    } = Setup::mock(GROUP, 500);
    let mut produced = Produced::default();

    let kills = 12;
    for round in 0..kills {
        // New records keep arriving between crashes, as they would.
        produced.round(&mut rng, &producer, (700, 200, 60)).await;

        let ingest = Ingest::start(&config, dir.path(), &format!("crash-{round}"));
        // From before the group join to well into the commits.
        let alive = Duration::from_millis(300 + rng.below(3_500));
        tokio::time::sleep(alive).await;
        ingest.kill();
    }

    let survivor = Ingest::start(&config, dir.path(), "final");
    wait_caught_up(&broker.bootstrap, &lake, GROUP, Duration::from_secs(300)).await;
    assert!(
        survivor.stop(),
        "the ingest did not exit cleanly on SIGTERM"
    );

    produced.assert_in_lake(&lake).await;
}

/// A backlog in all three tables and small batches: commits follow one another, each table
/// with a batch buffered and one being written when the kill lands (after a random number of
/// commits of this run, read from its log).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_while_batches_are_in_flight_loses_and_repeats_nothing() {
    let seed = seed();
    eprintln!("seed {seed}");
    let mut rng = Rng(seed);
    let group = "ingest-in-flight";
    let Setup {
        broker,
        dir,
        lake,
        config,
        producer,
    } = Setup::mock(group, 300);
    let mut produced = Produced::default();
    for _ in 0..4 {
        produced.round(&mut rng, &producer, (3_000, 800, 150)).await;
    }

    let mut killed_after = Vec::new();
    for round in 0..6 {
        produced.round(&mut rng, &producer, (500, 100, 20)).await;
        let ingest = Ingest::start(&config, dir.path(), &format!("in-flight-{round}"));
        let commits = 1 + rng.below(6) as usize;
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while committed_lines(&ingest.log) < commits && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        killed_after.push(committed_lines(&ingest.log));
        ingest.kill();
    }
    eprintln!("killed after commits {killed_after:?}");
    assert!(
        killed_after.iter().any(|&c| c >= 2),
        "commits were flowing when the kills landed: {killed_after:?}"
    );

    let survivor = Ingest::start(&config, dir.path(), "in-flight-final");
    wait_caught_up(&broker.bootstrap, &lake, group, Duration::from_secs(300)).await;
    assert!(
        survivor.stop(),
        "the ingest did not exit cleanly on SIGTERM"
    );
    produced.assert_in_lake(&lake).await;
}

/// The sum of the `repeats=` fields of the ingest's commit lines.
fn logged_repeats(log: &std::path::Path) -> u64 {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(" committed "))
        .filter_map(|l| {
            let field = l.split_whitespace().find(|w| w.starts_with("repeats="))?;
            field["repeats=".len()..].parse::<u64>().ok()
        })
        .sum()
}

fn committed_lines(log: &std::path::Path) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(" committed "))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_delivered_twice_are_stored_once() {
    let mut rng = Rng(seed());
    let Setup {
        broker,
        dir,
        lake,
        config,
        producer,
    } = Setup::mock(GROUP, 1_000);
    let (first_events, first_visits, first_accounts) = (
        events(&mut rng, 400),
        visits(&mut rng, 100),
        accounts(&mut rng, 50),
    );

    // A redelivered transaction: the same records twice in a row (one flush sees both).
    produce(&producer, &first_events).await;
    produce(&producer, &first_events).await;
    produce(&producer, &first_visits).await;
    produce(&producer, &first_accounts).await;
    let ingest = Ingest::start(&config, dir.path(), "dup");
    wait_caught_up(&broker.bootstrap, &lake, GROUP, Duration::from_secs(60)).await;
    assert_exactly(lake_records::<EventRecord>(&lake).await, &first_events);

    // A late repeat, after the originals are committed (the lake must be consulted), mixed with
    // new records.
    let new_events = events(&mut rng, 300);
    produce(&producer, &first_events[..200]).await;
    produce(&producer, &new_events).await;
    produce(&producer, &first_visits).await;
    produce(&producer, &first_accounts).await;
    wait_caught_up(&broker.bootstrap, &lake, GROUP, Duration::from_secs(60)).await;
    let dropped = ingest.metric("mxpulse_ingest_repeats_dropped_total");
    assert!(dropped >= 200 + 100 + 50, "{}", ingest.metrics());
    // The commit lines say the same: the repeats the buffer dropped (a redelivered
    // transaction) count with those the lake already held. They said `repeats=0` for the
    // former while `/metrics` counted them.
    assert_eq!(logged_repeats(&ingest.log), dropped);
    let files_written = ingest.metric("mxpulse_ingest_files_written_total");
    assert!(ingest.stop());
    let lake_files: usize = mxpulse_ingest::maintenance::status(&lake_root(&lake), GROUP)
        .await
        .unwrap()
        .iter()
        .map(|t| t.files)
        .sum();
    assert_eq!(
        files_written, lake_files as u64,
        "the files-written metric should count the lake's files"
    );

    let expected: Vec<EventRecord> = first_events.iter().chain(&new_events).cloned().collect();
    assert_exactly(lake_records::<EventRecord>(&lake).await, &expected);
    assert_exactly(lake_records::<VisitRecord>(&lake).await, &first_visits);
    assert_exactly(lake_records::<AccountRecord>(&lake).await, &first_accounts);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_messages_become_dead_letters_and_the_good_ones_flow_on() {
    let mut rng = Rng(seed());
    let Setup {
        broker,
        dir,
        lake,
        config,
        producer,
    } = Setup::mock(GROUP, 1_000);
    let good = events(&mut rng, 3);
    let payload = |r: &EventRecord| encode(r).payload;
    let mut future = serde_json::to_value(&good[0]).unwrap();
    future["v"] = 3.into();
    let mut missing = serde_json::to_value(&good[1]).unwrap();
    missing.as_object_mut().unwrap().remove("room");
    let truncated = payload(&good[2])[..20].to_vec();
    let bad: Vec<(&str, Vec<u8>, &str)> = vec![
        ("garbage", vec![0xff, 0x00, 0x13, 0x37], "not a JSON object"),
        ("truncated", truncated, "not a JSON object"),
        (
            "future",
            serde_json::to_vec(&future).unwrap(),
            "unknown schema version 3",
        ),
        (
            "missing",
            serde_json::to_vec(&missing).unwrap(),
            "missing field `room`",
        ),
    ];
    // All on one key, hence one partition, interleaved with valid records.
    produce(&producer, &good[..1]).await;
    for (key, bytes, _) in &bad {
        let header = Envelope::version_header();
        produce_raw(&producer, topics::EVENTS, key, bytes, Some(&header)).await;
    }
    produce(&producer, &good[1..]).await;

    let ingest = Ingest::start(&config, dir.path(), "dead-letters");
    wait_caught_up(&broker.bootstrap, &lake, GROUP, Duration::from_secs(60)).await;
    assert_eq!(ingest.metric("mxpulse_ingest_dead_letters_total"), 4);
    assert!(ingest.stop());
    assert_exactly(lake_records::<EventRecord>(&lake).await, &good);

    let consumer: StreamConsumer = client_config(&broker.bootstrap)
        .set("group.id", "dead-letter-reader")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&[topics::DEADLETTER]).unwrap();
    let mut letters = Vec::new();
    while letters.len() < bad.len() {
        let message = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
            .await
            .expect("dead letters within 30 s")
            .unwrap();
        let header = |name: &str| {
            message
                .headers()
                .and_then(|h| h.iter().find(|h| h.key == name))
                .and_then(|h| h.value)
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .unwrap_or_default()
        };
        letters.push((
            String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned(),
            message.payload().unwrap_or_default().to_vec(),
            header(REASON_HEADER),
            header(TOPIC_HEADER),
            header(PARTITION_HEADER),
            header(OFFSET_HEADER),
        ));
    }
    for (key, bytes, reason) in &bad {
        let letter = letters
            .iter()
            .find(|l| &l.0 == key)
            .unwrap_or_else(|| panic!("no dead letter for {key}: {letters:?}"));
        assert_eq!(&letter.1, bytes, "{key}: the original bytes");
        assert!(
            letter.2.contains(reason),
            "{key}: reason {:?} should say {reason:?}",
            letter.2
        );
        assert_eq!(letter.3, topics::EVENTS);
        assert!(
            letter.4.parse::<i32>().is_ok() && letter.5.parse::<i64>().is_ok(),
            "{letter:?}"
        );
    }
}

/// Hooks that still write schema version 1 and hooks of version 2 on the same topic: both
/// kinds of visit reach the lake, the older without a client family (docs/design.md §3).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn visits_of_schema_versions_one_and_two_share_a_topic_and_a_table() {
    let mut rng = Rng(seed());
    let Setup {
        broker,
        dir,
        lake,
        config,
        producer,
    } = Setup::mock(GROUP, 1_000);
    let mut old = visits(&mut rng, 20);
    for visit in &mut old {
        visit.v = SchemaVersion::V1;
        visit.family = None;
    }
    let mut new = visits(&mut rng, 20);
    for (i, visit) in new.iter_mut().enumerate() {
        visit.family = Some(
            if i % 2 == 0 { "tchap_x_android" } else { "web" }
                .parse()
                .unwrap(),
        );
    }
    for (i, visit) in old.iter().enumerate() {
        // As a version 1 producer wrote it: no `family` field at all, header 1.
        let mut json = serde_json::to_value(visit).unwrap();
        assert!(json.get("family").is_none());
        json["v"] = 1.into();
        let bytes = serde_json::to_vec(&json).unwrap();
        produce_raw(&producer, topics::VISITS, &visit.key().0, &bytes, Some("1")).await;
        produce(&producer, &new[i..=i]).await;
    }

    let ingest = Ingest::start(&config, dir.path(), "mixed-versions");
    wait_caught_up(&broker.bootstrap, &lake, GROUP, Duration::from_secs(60)).await;
    assert_eq!(ingest.metric("mxpulse_ingest_dead_letters_total"), 0);
    assert!(ingest.stop());
    let expected: Vec<VisitRecord> = old.iter().chain(&new).cloned().collect();
    let stored = lake_records::<VisitRecord>(&lake).await;
    assert_eq!(
        stored
            .iter()
            .filter(|v| v.v == SchemaVersion::V1 && v.family.is_none())
            .count(),
        20
    );
    assert_exactly(stored, &expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_in_one_group_share_the_work_and_write_each_record_once() {
    let mut rng = Rng(seed());
    let Setup {
        broker,
        dir,
        lake,
        config,
        producer,
    } = Setup::mock(GROUP, 200);
    let first = Ingest::start(&config, dir.path(), "first");
    let second = Ingest::start(&config, dir.path(), "second");
    let mut produced = Produced::default();
    for _ in 0..5 {
        produced.round(&mut rng, &producer, (600, 150, 40)).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    wait_caught_up(&broker.bootstrap, &lake, GROUP, Duration::from_secs(120)).await;
    let (by_first, by_second) = (
        first.metric("mxpulse_ingest_rows_written_total"),
        second.metric("mxpulse_ingest_rows_written_total"),
    );
    assert!(first.stop() & second.stop());
    assert!(
        by_first > 0 && by_second > 0,
        "both instances should have written: {by_first} and {by_second}"
    );
    assert_eq!(by_first + by_second, produced.len() as u64);
    produced.assert_in_lake(&lake).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restart_during_ingest_loses_and_repeats_nothing() {
    let mut rng = Rng(seed());
    let mut broker = Broker::dedicated(BrokerKind::Tansu);
    broker.ensure_topics(&topics::ALL, 4);
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let config = write_config(dir.path(), &broker.bootstrap, &lake, GROUP, 200);
    let (first, second) = (events(&mut rng, 800), events(&mut rng, 800));
    let (visits_1, accounts_1) = (visits(&mut rng, 100), accounts(&mut rng, 30));
    {
        let producer = producer(&broker.bootstrap);
        produce(&producer, &first).await;
        produce(&producer, &visits_1).await;
        produce(&producer, &accounts_1).await;
    }
    let ingest = Ingest::start(&config, dir.path(), "tansu");
    tokio::time::sleep(Duration::from_secs(3)).await;
    broker.kill();
    tokio::time::sleep(Duration::from_secs(2)).await;
    broker.restart();
    {
        let producer = producer(&broker.bootstrap);
        produce(&producer, &second).await;
    }
    wait_caught_up(&broker.bootstrap, &lake, GROUP, Duration::from_secs(180)).await;
    assert!(ingest.stop());
    let expected: Vec<EventRecord> = first.iter().chain(&second).cloned().collect();
    assert_exactly(lake_records::<EventRecord>(&lake).await, &expected);
    assert_exactly(lake_records::<VisitRecord>(&lake).await, &visits_1);
    assert_exactly(lake_records::<AccountRecord>(&lake).await, &accounts_1);
}
