//! Golden test over the 70 real transactions Synapse 1.163.2 pushed to an application
//! service (recorded from a real Synapse, kept in `data/synapse-appservice/`): each maps to
//! exactly the records written by hand in `data/synapse-appservice/expected.txt`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use mxpulse_hooks::appservice::{map_transaction, parse_transaction};
use mxpulse_hooks::{Anonymizer, DomainReader, PseudonymKey, Pseudonymizer};
use mxpulse_schemas::vocabulary::{CallChange, EventType, Source};
use mxpulse_schemas::{EventRecord, UnixMillis};
use serde_json::Value;
use zeroize::Zeroizing;

const SERVER: &str = "interieur.localhost";

fn data(name: &str) -> PathBuf {
    PathBuf::from(
        // At run time first: cargo may reuse a test binary built in another checkout.
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
    )
    .join("tests/data/synapse-appservice")
    .join(name)
}

fn anonymizer(server: &str) -> Anonymizer {
    let key = PseudonymKey::from_bytes(
        Zeroizing::new(b"golden-test-key-of-32-bytes-or-more".to_vec()),
        "test",
    )
    .unwrap();
    Anonymizer::new(
        server,
        Arc::new(Pseudonymizer::new(&key)),
        Arc::new(DomainReader::new(mxpulse_hooks::TCHAP_DOMAINS)),
    )
}

fn transaction(n: u32) -> mxpulse_hooks::appservice::RawTransaction {
    let bytes = std::fs::read(data(&format!("txn-{n:03}.json"))).unwrap();
    parse_transaction(&bytes).unwrap_or_else(|e| panic!("txn {n}: {e:?}"))
}

/// The events of a transaction, as JSON values.
fn events_of(n: u32) -> Vec<Value> {
    let bytes = std::fs::read(data(&format!("txn-{n:03}.json"))).unwrap();
    let body: Value = serde_json::from_slice(&bytes).unwrap();
    body["events"].as_array().unwrap().clone()
}

/// A line of expected.txt: txn number, then words.
fn expected_lines() -> Vec<(u32, Vec<String>)> {
    std::fs::read_to_string(data("expected.txt"))
        .unwrap()
        .lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .map(|line| {
            let mut words = line.split_whitespace().map(str::to_owned);
            let txn = words.next().unwrap().parse().unwrap();
            (txn, words.collect())
        })
        .collect()
}

/// The record a hand-written line describes, for the event at the same place in the txn
/// (its ID and time are the only facts taken from the input).
fn expected_record(a: &Anonymizer, words: &[String], event: &Value, rooms: &Value) -> EventRecord {
    let p = a.pseudonymizer();
    let user = |local: &str| format!("@{local}:{SERVER}");
    let room_id = rooms[format!("room:{}", words[2])].as_str().unwrap();
    let mut record = EventRecord::new(
        p.key_id(),
        p.event(event["event_id"].as_str().unwrap()),
        // Published to the minute.
        UnixMillis(event["origin_server_ts"].as_i64().unwrap() / 60_000 * 60_000),
        SERVER,
        p.user(&user(&words[1])),
        p.room(room_id),
        words[0].parse::<EventType>().unwrap(),
        Source::Appservice,
    );
    for fact in &words[3..] {
        let (name, value) = fact.split_once('=').unwrap();
        match name {
            "membership" => record.membership = Some(value.parse().unwrap()),
            "target" => record.target = Some(p.user(&user(value))),
            "msgtype" => record.msgtype = Some(value.parse().unwrap()),
            "rel_type" => record.rel_type = Some(value.parse().unwrap()),
            "join_rule" => record.join_rule = Some(value.parse().unwrap()),
            "access_rule" => record.access_rule = Some(value.parse().unwrap()),
            "encrypted" => record.encrypted = Some(value.parse().unwrap()),
            "is_direct" => record.is_direct = Some(value.parse().unwrap()),
            "live" => record.live = Some(value.parse().unwrap()),
            "call" => record.call = Some(value.parse::<CallChange>().unwrap()),
            // The membership event of an earlier transaction that this one replaces.
            "replaces" => {
                let earlier = events_of(value.parse().unwrap())
                    .into_iter()
                    .find(|e| e["type"] == "m.room.member")
                    .unwrap();
                record.replaces = Some(p.event(earlier["event_id"].as_str().unwrap()));
            }
            other => panic!("unknown fact {other} in expected.txt"),
        }
    }
    record
}

#[test]
fn every_real_transaction_maps_to_the_expected_records() {
    let a = anonymizer(SERVER);
    let rooms: Value = serde_json::from_slice(&std::fs::read(data("ids.json")).unwrap()).unwrap();
    let mut expected: BTreeMap<u32, Vec<Vec<String>>> = BTreeMap::new();
    for (txn, words) in expected_lines() {
        expected.entry(txn).or_default().push(words);
    }
    assert_eq!(expected.len(), 70, "every transaction has a line");

    let mut total_records = 0;
    for (&txn, lines) in &expected {
        let body = transaction(txn);
        let mapped = map_transaction(&a, &body);
        assert!(mapped.skipped.is_empty(), "txn {txn}: {:?}", mapped.skipped);
        assert_eq!(mapped.remote, 0, "txn {txn}");

        let events = &events_of(txn);
        let (ephemeral_lines, record_lines): (Vec<_>, Vec<_>) =
            lines.iter().partition(|words| words[0] == "ephemeral");
        let want: Vec<EventRecord> = record_lines
            .iter()
            .zip(events)
            .map(|(words, event)| expected_record(&a, words, event, &rooms))
            .collect();
        assert_eq!(
            record_lines.len(),
            events.len(),
            "txn {txn}: one line per event"
        );
        assert_eq!(mapped.records, want, "txn {txn}");
        total_records += want.len();

        let want_ephemeral: BTreeMap<&str, usize> = ephemeral_lines
            .iter()
            .flat_map(|words| words[1..].iter())
            .map(|fact| {
                let (kind, n) = fact.split_once('=').unwrap();
                (kind, n.parse().unwrap())
            })
            .collect();
        let got: BTreeMap<&str, usize> = mapped.ephemeral.iter().map(|(k, v)| (*k, *v)).collect();
        assert_eq!(got, want_ephemeral, "txn {txn} ephemeral");
    }
    assert_eq!(total_records, 72, "the 72 events of the capture");
}

#[test]
fn another_homeserver_reports_none_of_these_events() {
    let a = anonymizer("agent.tchap.gouv.fr");
    for txn in 1..=70 {
        let body = transaction(txn);
        let mapped = map_transaction(&a, &body);
        assert!(mapped.records.is_empty(), "txn {txn}");
        assert_eq!(mapped.remote, events_of(txn).len());
    }
}

#[test]
fn a_retried_transaction_maps_to_the_same_records() {
    // Synapse re-serializes a retry (its `age` grows): the records must not change, or a
    // retry would not be recognised as a repeat.
    let a = anonymizer(SERVER);
    let accepted = map_transaction(&a, &transaction(67)).records;
    for attempt in 1..=5 {
        let bytes = std::fs::read(data(&format!("rejected/attempt-{attempt:03}.json"))).unwrap();
        assert_ne!(bytes, std::fs::read(data("txn-067.json")).unwrap());
        let retried = map_transaction(&a, &parse_transaction(&bytes).unwrap()).records;
        assert_eq!(retried, accepted, "attempt {attempt}");
    }
}

#[test]
fn nothing_identifying_survives_the_mapping() {
    let a = anonymizer(SERVER);
    let mut published = String::new();
    let mut identifiers = Vec::new();
    for txn in 1..=70 {
        let body = transaction(txn);
        for event in &events_of(txn) {
            for field in ["event_id", "room_id", "sender"] {
                identifiers.push(event[field].as_str().unwrap().to_owned());
            }
            if let Some(body) = event["content"]["body"].as_str() {
                identifiers.push(body.to_owned());
            }
        }
        for record in map_transaction(&a, &body).records {
            published.push_str(&serde_json::to_string(&record).unwrap());
        }
    }
    for needle in identifiers.iter().chain(
        ["alice", "bob", "carol", "hunter2"]
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .iter(),
    ) {
        assert!(!published.contains(needle.as_str()), "{needle} leaked");
    }
}

/// A transaction whose events were all read, with one nested deeper than serde_json reads
/// (Synapse accepts content nested deeper): the capture's events between them.
pub fn with_deep_event(n: u32, depth: usize) -> (Vec<u8>, usize) {
    let events = events_of(n);
    let mut deep = events[0].clone();
    deep["content"]["nest"] = Value::Null;
    let deep = serde_json::to_string(&deep).unwrap().replace(
        "\"nest\":null",
        &format!("\"nest\":{}{}", "[".repeat(depth), "]".repeat(depth)),
    );
    let listed: Vec<String> = events
        .iter()
        .map(|e| serde_json::to_string(e).unwrap())
        .collect();
    let body = format!(
        "{{\"events\": [{}, {deep}, {}], \"ephemeral\": [{{\"type\": \"m.typing\", \"content\": {}{}}}]}}",
        listed.join(", "),
        listed.join(", "),
        "[".repeat(depth),
        "]".repeat(depth),
    );
    (body.into_bytes(), events.len())
}

/// Before: the whole body was read as one `Value`, so one event nested past serde_json's 128
/// levels made the transaction a 400, which Synapse retries forever. Now events are read one
/// by one: that event is skipped (`unreadable`), every other one mapped.
#[test]
fn an_event_nested_deeper_than_the_parser_reads_is_skipped_alone() {
    let a = anonymizer(SERVER);
    let alone = map_transaction(&a, &transaction(25)).records;
    assert!(!alone.is_empty());
    let (body, _) = with_deep_event(25, 200);
    let parsed = parse_transaction(&body).expect("the transaction is read");
    let mapped = map_transaction(&a, &parsed);
    assert_eq!(mapped.skipped.len(), 1, "{:?}", mapped.skipped);
    assert_eq!(mapped.skipped[0].label(), "unreadable");
    // The capture's events twice (the same records: identities repeat, the ingest keeps one).
    assert_eq!(mapped.records.len(), 2 * alone.len());
    assert_eq!(mapped.records[..alone.len()], alone[..]);
    assert_eq!(mapped.ephemeral.get("typing"), Some(&1));
    // Still refused: what Synapse never sends.
    for bad in [
        &b"{\"events\": ["[..],
        b"[1, 2]",
        b"{\"ephemeral\": []}",
        b"{\"events\": 3}",
    ] {
        assert!(
            parse_transaction(bad).is_err(),
            "{}",
            String::from_utf8_lossy(bad)
        );
    }
}
