//! A record of each type goes through each broker kind and back, through rdkafka, as the
//! hooks will produce and the ingest will consume: message key = identity, schema version
//! header, JSON payload.

mod harness;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use harness::{Broker, BrokerKind, block_on, client_config};
use mxpulse_schemas::vocabulary::*;
use mxpulse_schemas::*;
use rdkafka::Message;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

/// Pseudonyms unique to this run, so records of other tests on a shared broker are told apart.
fn unique() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    nanos ^ u64::from(std::process::id()) << 40
}

fn one_of_each() -> (EventRecord, VisitRecord, AccountRecord) {
    let seed = unique();
    let key_id = KeyId([0xab, 0xcd, 0, 1]);
    let mut event = EventRecord::new(
        key_id,
        EventPseudonym(u128::from(seed) << 1),
        UnixMillis(1_721_990_000_000),
        "agent.interieur.tchap.gouv.fr",
        UserPseudonym(seed),
        RoomPseudonym(seed ^ 1),
        EventType::RoomMessage,
        Source::Appservice,
    );
    event.msgtype = Some(MsgType::Text);
    event.domain = Some("interieur.gouv.fr".into());
    let visit = VisitRecord {
        v: SchemaVersion::CURRENT,
        key_id,
        day: chrono::NaiveDate::from_ymd_opt(2024, 7, 26).unwrap(),
        server: "agent.dinum.tchap.gouv.fr".into(),
        user: UserPseudonym(seed ^ 2),
        device: Some(DevicePseudonym(seed ^ 3)),
        domain: None,
        platform: Platform::Android,
        client: Client::Tchap,
        family: "tchap_x_android".parse().ok(),
    };
    let account = AccountRecord {
        v: SchemaVersion::CURRENT,
        key_id,
        ts: UnixMillis(1_721_990_000_000),
        server: "agent.externe.tchap.gouv.fr".into(),
        user: UserPseudonym(seed ^ 4),
        domain: Some("gmail.com".into()),
        change: AccountChange::Created,
        user_type: UserType::Regular,
    };
    (event, visit, account)
}

async fn produce<R: Record>(producer: &FutureProducer, record: &R) {
    let envelope = encode(record);
    let version = Envelope::version_header();
    let headers = OwnedHeaders::new().insert(Header {
        key: SCHEMA_VERSION_HEADER,
        value: Some(version.as_bytes()),
    });
    let delivery = producer
        .send(
            FutureRecord::to(envelope.topic)
                .key(envelope.key.as_bytes())
                .payload(&envelope.payload)
                .headers(headers),
            Duration::from_secs(30),
        )
        .await;
    assert!(
        delivery.is_ok(),
        "delivery to {} failed: {delivery:?}",
        envelope.topic
    );
}

/// A message as consumed: topic, schema version header, payload.
type Received = (String, Option<Vec<u8>>, Vec<u8>);

fn round_trip(kind: BrokerKind) {
    let broker = Broker::start(kind);
    broker.ensure_topics(&topics::ALL, 4);
    let (event, visit, account) = one_of_each();
    block_on(async {
        let producer: FutureProducer = client_config(&broker.bootstrap)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("compression.type", "lz4")
            .create()
            .expect("producer");
        produce(&producer, &event).await;
        produce(&producer, &visit).await;
        produce(&producer, &account).await;

        let consumer: StreamConsumer = client_config(&broker.bootstrap)
            .set("group.id", format!("smoke-{}", unique()))
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "false")
            .create()
            .expect("consumer");
        consumer
            .subscribe(&topics::RECORD_TOPICS)
            .expect("subscribe");

        // Other tests may share the broker: collect by key until ours are all in.
        let wanted = [event.key(), visit.key(), account.key()];
        let mut seen: HashMap<RecordKey, Received> = HashMap::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while !wanted.iter().all(|k| seen.contains_key(k)) {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "{kind:?}: only {} of our 3 records came back within 60 s",
                seen.len()
            );
            let Ok(Ok(message)) = tokio::time::timeout(left, consumer.recv()).await else {
                continue;
            };
            let key =
                RecordKey(String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned());
            if wanted.contains(&key) {
                let header = message
                    .headers()
                    .and_then(|h| h.iter().find(|h| h.key == SCHEMA_VERSION_HEADER))
                    .and_then(|h| h.value.map(<[u8]>::to_vec));
                seen.insert(
                    key,
                    (
                        message.topic().to_owned(),
                        header,
                        message.payload().unwrap_or_default().to_vec(),
                    ),
                );
            }
        }

        let (topic, header, payload) = &seen[&event.key()];
        assert_eq!(topic, topics::EVENTS);
        assert_eq!(
            decode::<EventRecord>(header.as_deref(), payload).unwrap(),
            event
        );
        let (topic, header, payload) = &seen[&visit.key()];
        assert_eq!(topic, topics::VISITS);
        assert_eq!(
            decode::<VisitRecord>(header.as_deref(), payload).unwrap(),
            visit
        );
        let (topic, header, payload) = &seen[&account.key()];
        assert_eq!(topic, topics::ACCOUNTS);
        let current = SchemaVersion::CURRENT.to_string();
        assert_eq!(header.as_deref(), Some(current.as_bytes()));
        assert_eq!(
            decode::<AccountRecord>(header.as_deref(), payload).unwrap(),
            account
        );
    });
}

#[test]
fn each_record_type_round_trips_through_the_mock_broker() {
    round_trip(BrokerKind::Mock);
}

#[test]
fn each_record_type_round_trips_through_tansu() {
    round_trip(BrokerKind::Tansu);
}
