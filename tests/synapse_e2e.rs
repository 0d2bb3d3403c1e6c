//! The hooks against a real Synapse (installed by scripts/test into .venv): a scenario driven
//! through the client-server API must reach Kafka as exactly the expected records, the
//! database tap must read the visits and accounts Synapse itself wrote, nothing identifying
//! may leave, and a broker outage must lose nothing and store each message once in the lake.

mod harness;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use harness::hooks::{HooksProcess, TEST_KEY, topic_messages, topic_records, write_hooks_config};
use harness::synapse::Synapse;
use harness::{Broker, BrokerKind, wait_for};
use mxpulse_hooks::{PseudonymKey, Pseudonymizer};
use mxpulse_schemas::vocabulary::{
    AccountChange, CallChange, Client, EventType, JoinRule, Membership, MsgType, Platform, RelType,
    Source, UserType,
};
use mxpulse_schemas::{AccountRecord, EventRecord, VisitRecord};
use serde_json::json;
use zeroize::Zeroizing;

const SERVER: &str = "interieur.localhost";
const HS_TOKEN: &str = "hs-token-synapse-e2e-0123456789";
const AS_TOKEN: &str = "as-token-synapse-e2e-0123456789";
const WEB_UA: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
const ANDROID_UA: &str = "Tchap/2.12.3 (Samsung SM-G991B; Android 14; UP1A.231005.007; Flavour GooglePlay; MatrixAndroidSdk2 1.5.30)";
const IOS_UA: &str = "Tchap/2.10.1 (iPhone; iOS 17.5.1; Scale/3.00)";
/// Tchap X on iOS (Element X's format under Tchap's name).
const TCHAP_X_IOS_UA: &str = "Tchap X/25.04.2 (iPhone 13; iOS 17.5; Scale/3.00)";

fn pseudonymizer() -> Pseudonymizer {
    Pseudonymizer::new(
        &PseudonymKey::from_bytes(Zeroizing::new(TEST_KEY.as_bytes().to_vec()), "test").unwrap(),
    )
}

fn wait_until<T>(
    what: &str,
    seconds: u64,
    hooks: &HooksProcess,
    probe: impl FnMut() -> Option<T>,
) -> T {
    wait_for(Duration::from_secs(seconds), probe).unwrap_or_else(|| {
        panic!(
            "{what} within {seconds} s; hooks log:\n{}",
            hooks.log_text()
        )
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn synapse_activity_reaches_kafka_as_exactly_the_expected_records() {
    let broker = Broker::dedicated(BrokerKind::Mock);
    let dir = tempfile::tempdir().unwrap();
    let started_ms = chrono::Utc::now().timestamp_millis();
    // The tap reads the database Synapse is about to create (the tap retries until it exists).
    let db_path = dir.path().join("synapse-db-link");
    let config = write_hooks_config(
        dir.path(),
        &broker.bootstrap,
        SERVER,
        HS_TOKEN,
        Some(&db_path),
        "",
    );
    let hooks = HooksProcess::start(&config, dir.path());
    let synapse = Synapse::start(SERVER, &hooks.url(), HS_TOKEN, AS_TOKEN);
    std::os::unix::fs::symlink(&synapse.database, &db_path).unwrap();

    // Users whose IDs encode their e-mail address, as Tchap's do; one client each.
    let alice = synapse
        .register("jeanne.martin-interieur.gouv.fr", WEB_UA)
        .await;
    let bob = synapse
        .register("paul.durand-finances.gouv.fr", ANDROID_UA)
        .await;
    let carol = synapse.register("carol", TCHAP_X_IOS_UA).await;

    let private = alice
        .create_room(json!({"preset": "private_chat", "name": "Plans", "invite": [bob.user_id]}))
        .await;
    bob.join(&private).await;
    let public = alice.create_room(json!({"preset": "public_chat", "name": "Forum", "visibility": "public", "room_alias_name": "forum"})).await;
    bob.join(&public).await;
    carol.join(&public).await;
    let direct = alice
        .create_room(
            json!({"preset": "trusted_private_chat", "is_direct": true, "invite": [carol.user_id]}),
        )
        .await;
    carol.join(&direct).await;
    let encrypted = alice.create_room(json!({
        "preset": "private_chat", "name": "Secret", "invite": [bob.user_id],
        "initial_state": [{"type": "m.room.encryption", "state_key": "", "content": {"algorithm": "m.megolm.v1.aes-sha2"}}],
    })).await;
    bob.join(&encrypted).await;

    let hello = alice
        .send(
            &public,
            "m.room.message",
            json!({"msgtype": "m.text", "body": "Bonjour à tous, confidential body"}),
        )
        .await;
    let image = bob.send(&public, "m.room.message", json!({"msgtype": "m.image", "body": "photo.png", "url": "mxc://interieur.localhost/abc"})).await;
    let thread_reply = carol.send(&public, "m.room.message", json!({
        "msgtype": "m.text", "body": "in the thread",
        "m.relates_to": {"rel_type": "m.thread", "event_id": hello, "is_falling_back": true, "m.in_reply_to": {"event_id": hello}},
    })).await;
    let reaction = carol
        .send(
            &public,
            "m.reaction",
            json!({"m.relates_to": {"rel_type": "m.annotation", "event_id": hello, "key": "👍"}}),
        )
        .await;
    let edit = alice.send(&public, "m.room.message", json!({
        "msgtype": "m.text", "body": "* Bonjour", "m.new_content": {"msgtype": "m.text", "body": "Bonjour"},
        "m.relates_to": {"rel_type": "m.replace", "event_id": hello},
    })).await;
    let secret = bob.send(&encrypted, "m.room.encrypted", json!({
        "algorithm": "m.megolm.v1.aes-sha2", "ciphertext": "AwgAEnACgAkLmt6qF84IK++J7UDH2Za1YVchHyprqTqsg", "device_id": bob.device_id, "sender_key": "Ko4PTWgw", "session_id": "X3lUlvLELLYxeTx4yOVu6UDpasGEVO0Jbu+QFnm0cKQ",
    })).await;
    let to_redact = bob
        .send(
            &public,
            "m.room.message",
            json!({"msgtype": "m.text", "body": "oops, hunter2"}),
        )
        .await;
    let redaction = alice.redact(&public, &to_redact).await;
    let call_key = format!("_{}_{}_m.call", alice.user_id, alice.device_id);
    let call_join = alice.state(&private, "org.matrix.msc3401.call.member", &call_key, json!({
        "application": "m.call", "call_id": "", "device_id": alice.device_id, "expires": 14_400_000, "scope": "m.room",
        "focus_active": {"type": "livekit", "focus_selection": "oldest_membership"}, "foci_preferred": [],
    })).await;
    let call_leave = alice
        .state(
            &private,
            "org.matrix.msc3401.call.member",
            &call_key,
            json!({}),
        )
        .await;
    let live = alice.state(&private, "m.beacon_info", &alice.user_id, json!({
        "description": "Jeanne's location", "live": true, "timeout": 600_000, "org.matrix.msc3488.ts": started_ms, "org.matrix.msc3488.asset": {"type": "m.self"},
    })).await;

    // Exactly the local events of the four rooms' timelines, once each.
    let p = pseudonymizer();
    let mut expected: BTreeMap<_, String> = BTreeMap::new();
    for room in [&private, &public, &direct, &encrypted] {
        for event in alice.timeline(room).await {
            let id = event["event_id"].as_str().unwrap().to_owned();
            expected.insert(p.event(&id), event["type"].as_str().unwrap().to_owned());
        }
    }
    let records: Vec<EventRecord> = wait_until("every event reached Kafka", 60, &hooks, || {
        let records: Vec<EventRecord> = topic_records(&broker.bootstrap);
        (records.len() >= expected.len()).then_some(records)
    });
    let got: BTreeSet<_> = records.iter().map(|r| r.event).collect();
    assert_eq!(records.len(), got.len(), "no event twice in Kafka");
    assert_eq!(
        got,
        expected.keys().copied().collect::<BTreeSet<_>>(),
        "exactly the timelines' events"
    );
    let by_id: BTreeMap<_, &EventRecord> = records.iter().map(|r| (r.event, r)).collect();
    let record = |id: &str| {
        *by_id
            .get(&p.event(id))
            .unwrap_or_else(|| panic!("no record of {id}"))
    };
    for r in &records {
        assert_eq!(r.server, SERVER);
        assert_eq!(r.source, Source::Appservice);
        assert_eq!(
            r.event_type,
            mxpulse_hooks::event_mapping::event_type(&expected[&r.event])
        );
    }

    let (a, b, c) = (
        p.user(&alice.user_id),
        p.user(&bob.user_id),
        p.user(&carol.user_id),
    );
    let hello_r = record(&hello);
    assert_eq!(
        (
            hello_r.sender,
            hello_r.room,
            hello_r.msgtype,
            hello_r.rel_type
        ),
        (a, p.room(&public), Some(MsgType::Text), None)
    );
    assert_eq!(hello_r.domain.as_deref(), Some("interieur.gouv.fr"));
    assert_eq!(record(&image).msgtype, Some(MsgType::Image));
    assert_eq!(record(&image).domain.as_deref(), Some("finances.gouv.fr"));
    assert_eq!(record(&thread_reply).rel_type, Some(RelType::Thread));
    assert_eq!(
        record(&thread_reply).domain,
        None,
        "carol's ID encodes no address"
    );
    assert_eq!(
        (record(&reaction).event_type, record(&reaction).rel_type),
        (EventType::Reaction, Some(RelType::Annotation))
    );
    assert_eq!(record(&edit).rel_type, Some(RelType::Replace));
    assert_eq!(
        (record(&secret).event_type, record(&secret).room),
        (EventType::RoomEncrypted, p.room(&encrypted))
    );
    assert_eq!(record(&redaction).event_type, EventType::RoomRedaction);
    assert_eq!(
        record(&to_redact).event_type,
        EventType::RoomMessage,
        "published before its redaction"
    );
    assert_eq!(record(&call_join).call, Some(CallChange::Join));
    assert_eq!(record(&call_leave).call, Some(CallChange::Leave));
    assert_eq!(
        (record(&live).event_type, record(&live).live),
        (EventType::BeaconInfo, Some(true))
    );

    let of_type = |t: EventType| records.iter().filter(move |r| r.event_type == t);
    assert_eq!(of_type(EventType::RoomCreate).count(), 4);
    assert!(of_type(EventType::RoomCreate).all(|r| r.sender == a));
    assert_eq!(
        of_type(EventType::RoomEncryption)
            .map(|r| r.room)
            .collect::<Vec<_>>(),
        [p.room(&encrypted)]
    );
    assert!(of_type(EventType::RoomEncryption).all(|r| r.encrypted == Some(true)));
    let join_rules: BTreeMap<_, _> = of_type(EventType::RoomJoinRules)
        .map(|r| (r.room, r.join_rule))
        .collect();
    assert_eq!(join_rules[&p.room(&public)], Some(JoinRule::Public));
    assert_eq!(join_rules[&p.room(&private)], Some(JoinRule::Invite));
    let direct_invite = of_type(EventType::RoomMember)
        .find(|r| r.room == p.room(&direct) && r.membership == Some(Membership::Invite))
        .expect("the direct invite");
    assert_eq!(
        (direct_invite.target, direct_invite.is_direct),
        (Some(c), Some(true))
    );
    let joins: BTreeSet<_> = of_type(EventType::RoomMember)
        .filter(|r| r.membership == Some(Membership::Join) && r.room == p.room(&public))
        .map(|r| r.target)
        .collect();
    assert_eq!(joins, BTreeSet::from([Some(a), Some(b), Some(c)]));

    // The database tap: one visit per user and device today, read from user_daily_visits, and
    // one account creation per user from `users`.
    let visits: Vec<VisitRecord> = wait_for(Duration::from_secs(60), || {
        let visits: Vec<VisitRecord> = topic_records(&broker.bootstrap);
        (visits.len() >= 3).then_some(visits)
    })
    .unwrap_or_else(|| {
        let tables = std::process::Command::new(harness::python())
            .arg("-c")
            .arg("import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); print([r for r in c.execute('select user_id, device_id, timestamp from user_daily_visits')], [r for r in c.execute('select user_id, device_id, last_seen from user_ips')])")
            .arg(&synapse.database)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr))
            .unwrap_or_default();
        let log = std::fs::read_to_string(synapse.log()).unwrap_or_default();
        let tail: Vec<_> = log.lines().filter(|l| l.contains("daily") || l.contains("mxpulse") || l.contains("ERROR")).take(20).collect();
        panic!("no three visits within 60 s\nsynapse tables: {tables}\nsynapse log: {tail:#?}\nhooks log:\n{}", hooks.log_text());
    });
    let today = chrono::Utc::now().date_naive();
    let mut got_visits: Vec<_> = visits
        .iter()
        .map(|v| {
            (
                v.user,
                v.device,
                v.day,
                v.platform,
                v.client,
                v.family.as_ref().map(|f| f.to_string()),
                v.domain.clone(),
            )
        })
        .collect();
    got_visits.sort();
    let mut want_visits = vec![
        (
            a,
            Some(p.device(&alice.user_id, &alice.device_id)),
            today,
            Platform::Web,
            Client::Other,
            Some("web".to_owned()),
            Some("interieur.gouv.fr".to_owned()),
        ),
        (
            b,
            Some(p.device(&bob.user_id, &bob.device_id)),
            today,
            Platform::Android,
            Client::Tchap,
            Some("tchap_android".to_owned()),
            Some("finances.gouv.fr".to_owned()),
        ),
        (
            c,
            Some(p.device(&carol.user_id, &carol.device_id)),
            today,
            Platform::Ios,
            Client::Tchap,
            Some("tchap_x_ios".to_owned()),
            None,
        ),
    ];
    want_visits.sort();
    assert_eq!(got_visits, want_visits);

    carol.deactivate().await;
    let accounts: Vec<AccountRecord> =
        wait_until("three creations and a deactivation", 60, &hooks, || {
            let accounts: Vec<AccountRecord> = topic_records(&broker.bootstrap);
            (accounts.len() >= 4).then_some(accounts)
        });
    let now_ms = chrono::Utc::now().timestamp_millis();
    let created: BTreeSet<_> = accounts
        .iter()
        .filter(|r| r.change == AccountChange::Created)
        .map(|r| r.user)
        .collect();
    assert_eq!(created, BTreeSet::from([a, b, c]));
    for r in &accounts {
        assert_eq!(r.user_type, UserType::Regular);
        // Published to the hour (docs/design.md §3).
        assert!(
            r.ts.0 % 3_600_000 == 0
                && r.ts.0 >= started_ms / 3_600_000 * 3_600_000 - 3_600_000
                && r.ts.0 <= now_ms,
            "{r:?}"
        );
    }
    let deactivated: Vec<_> = accounts
        .iter()
        .filter(|r| r.change == AccountChange::Deactivated)
        .map(|r| r.user)
        .collect();
    assert_eq!(deactivated, [c]);
    assert_eq!(accounts.len(), 4, "{accounts:?}");

    // Privacy: no identifier, address, content or user agent in any byte published.
    let mut published = Vec::new();
    for topic in mxpulse_schemas::topics::RECORD_TOPICS {
        for (key, payload) in topic_messages(&broker.bootstrap, topic) {
            published.extend_from_slice(key.as_bytes());
            published.extend_from_slice(&payload);
        }
    }
    let published = String::from_utf8_lossy(&published).into_owned();
    let mut needles: Vec<String> = vec![
        "jeanne",
        "martin",
        "paul",
        "durand",
        "carol",
        "jeanne.martin@interieur.gouv.fr",
        "Bonjour",
        "confidential",
        "hunter2",
        "photo.png",
        "mxc://",
        WEB_UA,
        ANDROID_UA,
        IOS_UA,
        TCHAP_X_IOS_UA,
        "Tchap X",
        "Firefox",
        "Samsung",
        "iPhone",
        "Plans",
        "Secret",
        "#forum",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    needles.extend(
        [
            &alice.user_id,
            &bob.user_id,
            &carol.user_id,
            &alice.device_id,
            &bob.device_id,
            &carol.device_id,
        ]
        .map(|s| s.to_string()),
    );
    needles.extend([&private, &public, &direct, &encrypted].map(|s| s.to_string()));
    needles.extend(expected_ids(&alice, [&private, &public, &direct, &encrypted]).await);
    // The public room directory's room is the one room named (docs/design.md §3).
    let directory = wait_until(
        "the public room directory reaches Kafka",
        60,
        &hooks,
        || {
            // Synapse fills its room statistics a moment after the room: the tap may see
            // the room first unnamed, then named.
            let records = topic_records::<mxpulse_schemas::DirectoryRecord>(&broker.bootstrap);
            records
                .iter()
                .any(|r| r.name.as_deref() == Some("Forum"))
                .then_some(records)
        },
    );
    assert!(
        directory
            .iter()
            .all(|r| r.room == p.room(&public) && r.listed),
        "{directory:?}"
    );
    for needle in &needles {
        assert!(
            !published.contains(needle.as_str()),
            "{needle} was published"
        );
    }

    // Backfill from the same database: every local event again, with the same identity and
    // the same facts (only `source` differs), and the same visits and accounts.
    let config_text = format!("[kafka]\nbrokers = \"{}\"\n", broker.bootstrap);
    let backfill_config = dir.path().join("backfill.toml");
    std::fs::write(&backfill_config, config_text).unwrap();
    let output = std::process::Command::new(harness::mxpulse_bin())
        .arg("--config")
        .arg(&backfill_config)
        .args(["backfill", "--server", SERVER, "--quiet", "--since"])
        .arg(
            chrono::Utc::now()
                .date_naive()
                .pred_opt()
                .unwrap()
                .to_string(),
        )
        .arg("--synapse-db")
        .arg(&synapse.database)
        .env("MXPULSE_PSEUDONYM_KEY", TEST_KEY)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{report}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        // Three creations and Carol's deactivation (the backfill reports deactivations too).
        report.contains("(0 skipped), 3 visits, 4 accounts"),
        "{report}"
    );
    let (live, replayed) = wait_until(
        "the backfill matches what the appservice sent",
        30,
        &hooks,
        || {
            let records: Vec<EventRecord> = topic_records(&broker.bootstrap);
            let (replayed, live): (Vec<_>, Vec<_>) = records
                .into_iter()
                .partition(|r| r.source == Source::SynapseDb);
            let ids = |rs: &[EventRecord]| rs.iter().map(|r| r.event).collect::<BTreeSet<_>>();
            (ids(&live) == ids(&replayed)).then_some((live, replayed))
        },
    );
    assert!(
        replayed.len() > expected.len(),
        "carol's leaves are in both: {}",
        replayed.len()
    );
    let live: BTreeMap<_, _> = live.into_iter().map(|r| (r.event, r)).collect();
    for mut r in replayed {
        r.source = Source::Appservice;
        assert_eq!(Some(&r), live.get(&r.event), "same facts from both paths");
    }
    let visit_keys: BTreeSet<_> =
        topic_messages(&broker.bootstrap, mxpulse_schemas::topics::VISITS)
            .into_iter()
            .map(|(k, _)| k)
            .collect();
    assert_eq!(
        visit_keys.len(),
        3,
        "the backfill's visits have the tap's identities"
    );
    let account_keys: BTreeSet<_> =
        topic_messages(&broker.bootstrap, mxpulse_schemas::topics::ACCOUNTS)
            .into_iter()
            .map(|(k, _)| k)
            .collect();
    assert_eq!(
        account_keys.len(),
        4,
        "the backfill's creations and deactivation have the tap's identities"
    );
    drop(synapse);
}

async fn expected_ids(user: &harness::synapse::MatrixUser, rooms: [&String; 4]) -> Vec<String> {
    let mut ids = Vec::new();
    for room in rooms {
        for event in user.timeline(room).await {
            ids.push(event["event_id"].as_str().unwrap().to_owned());
        }
    }
    ids
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broker_outage_loses_nothing_and_the_lake_stores_each_message_once() {
    let broker = Broker::dedicated(BrokerKind::Mock);
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let ingest_config =
        harness::pipeline::write_config(dir.path(), &broker.bootstrap, &lake, "outage", 1000);
    let ingest = harness::pipeline::Ingest::start(&ingest_config, dir.path(), "outage");
    let config = write_hooks_config(
        dir.path(),
        &broker.bootstrap,
        SERVER,
        HS_TOKEN,
        None,
        "delivery_timeout_ms = 1500",
    );
    let hooks = HooksProcess::start(&config, dir.path());
    let synapse = Synapse::start(SERVER, &hooks.url(), HS_TOKEN, AS_TOKEN);
    let alice = synapse.register("alice", WEB_UA).await;
    let room = alice.create_room(json!({"preset": "private_chat"})).await;
    let before = alice
        .send(
            &room,
            "m.room.message",
            json!({"msgtype": "m.text", "body": "before"}),
        )
        .await;
    wait_until("the first message acknowledged", 30, &hooks, || {
        (hooks.metric("mxpulse_hooks_records_total{table=\"events\"}") >= 1).then_some(())
    });

    broker.set_down(true);
    let mut during = Vec::new();
    for n in 0..3 {
        during.push(
            alice
                .send(
                    &room,
                    "m.room.message",
                    json!({"msgtype": "m.text", "body": format!("during {n}")}),
                )
                .await,
        );
    }
    wait_until("a transaction refused with 503", 60, &hooks, || {
        (hooks.metric("mxpulse_hooks_transactions_total{outcome=\"failed\"}") >= 1).then_some(())
    });
    let health = hooks.get("/health").unwrap_or_default();
    assert!(health.contains("\"broker\":\"down\""), "{health}");

    broker.set_down(false);
    // Synapse retries on its own backoff; a ping makes it retry now (as an operator would).
    let p = pseudonymizer();
    let wanted: BTreeSet<_> = alice
        .timeline(&room)
        .await
        .iter()
        .map(|e| p.event(e["event_id"].as_str().unwrap()))
        .collect();
    let stored = wait_until("every message in the lake", 120, &hooks, || {
        harness::block_on(synapse.ping_appservice());
        let stored: Vec<EventRecord> = harness::block_on(harness::pipeline::lake_records(&lake));
        let ids: BTreeSet<_> = stored.iter().map(|r| r.event).collect();
        ids.is_superset(&wanted).then_some(stored)
    });
    for id in std::iter::once(&before).chain(&during) {
        let n = stored.iter().filter(|r| r.event == p.event(id)).count();
        assert_eq!(n, 1, "{id} stored {n} times");
    }
    let distinct: BTreeSet<_> = stored.iter().map(|r| r.event).collect();
    assert_eq!(distinct.len(), stored.len(), "nothing twice in the lake");
    assert_eq!(distinct, wanted, "exactly the room's events");
    assert!(ingest.stop(), "ingest exits cleanly");
}

/// Every file under `dir`, as text (lossy), with its path.
fn files_under(dir: &std::path::Path) -> Vec<(std::path::PathBuf, String)> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else if let Ok(bytes) = std::fs::read(&path) {
            out.push((path, String::from_utf8_lossy(&bytes).into_owned()));
        }
    }
    out
}

/// Every dead letter's headers (not its payload: the original message, kept by design), as
/// text.
async fn dead_letter_headers(bootstrap: &str, at_least: usize) -> Vec<String> {
    use rdkafka::Message;
    use rdkafka::consumer::{Consumer, StreamConsumer};
    use rdkafka::message::Headers;
    let consumer: StreamConsumer = harness::client_config(bootstrap)
        .set("group.id", "privacy-scan-dead-letters")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer
        .subscribe(&[mxpulse_schemas::topics::DEADLETTER])
        .unwrap();
    let mut out = Vec::new();
    let end = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let wait = if out.len() >= at_least {
            Duration::from_secs(2)
        } else {
            end.saturating_duration_since(std::time::Instant::now())
        };
        let Ok(message) = tokio::time::timeout(wait, consumer.recv()).await else {
            break;
        };
        let message = message.unwrap();
        let mut text = String::new();
        for header in message.headers().map(|h| h.iter()).into_iter().flatten() {
            text.push_str(header.key);
            text.push('=');
            text.push_str(&String::from_utf8_lossy(header.value.unwrap_or_default()));
            text.push('\n');
        }
        out.push(text);
    }
    assert!(out.len() >= at_least, "{} dead letters", out.len());
    out
}

/// Issue 16, item 5: whatever leaves the hooks, and whatever the pipeline keeps after them,
/// holds none of what identifies people: Kafka records, dead-letter headers, the lake (its
/// rows, its Parquet and Delta log bytes), the hooks' and the ingest's logs at debug level,
/// both processes' /health and /metrics, the hooks' state files. The needles: Matrix IDs,
/// device, room and event IDs, e-mail addresses and their parts, display names, room names
/// and topics, message bodies, user agents, an IP address (Synapse behind a proxy records
/// the forwarded one), a free-text room state value, and a user with a hyphenated surname on
/// a domain no list knows (published as `other`, never as `leroy-exemple-inconnu.fr`).
#[tokio::test(flavor = "multi_thread")]
async fn nothing_identifying_leaves_the_hooks_in_any_output() {
    const ADDRESS: &str = "203.0.113.77";
    const POISON_KEY: &str = "@jeanne.martin-interieur.gouv.fr:interieur.localhost";
    let broker = Broker::dedicated(BrokerKind::Mock);
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let ingest_config =
        harness::pipeline::write_config(dir.path(), &broker.bootstrap, &lake, "privacy", 1000);
    let ingest = harness::pipeline::Ingest::start_logging(
        &ingest_config,
        dir.path(),
        "privacy",
        "debug,deltalake=info,datafusion=info,buoyant_kernel=info,rdkafka=info,hyper=info,h2=info,object_store=info",
    );
    let db_path = dir.path().join("synapse-db-link");
    let config = write_hooks_config(
        dir.path(),
        &broker.bootstrap,
        SERVER,
        HS_TOKEN,
        Some(&db_path),
        "",
    );
    let hooks = HooksProcess::start_logging(
        &config,
        dir.path(),
        "debug,rdkafka=info,hyper=info,sqlx=info",
    );
    let synapse = Synapse::start(SERVER, &hooks.url(), HS_TOKEN, AS_TOKEN);
    std::os::unix::fs::symlink(&synapse.database, &db_path).unwrap();

    let jeanne = synapse
        .register("jeanne.martin-interieur.gouv.fr", WEB_UA)
        .await;
    let anne = synapse
        .register_from(
            "anne.martin-leroy-exemple-inconnu.fr",
            ANDROID_UA,
            Some(ADDRESS),
        )
        .await;
    jeanne.set_display_name("Jeanne Martin").await;
    anne.set_display_name("Anne Martin-Leroy").await;
    let room = jeanne
        .create_room(json!({
            "preset": "private_chat", "name": "Cellule Dupuis-Moreau",
            "topic": "Budget confidentiel Rochefort", "invite": [anne.user_id],
        }))
        .await;
    anne.join(&room).await;
    // A forum of the public room directory: its name and topic line are what the directory
    // shows every agent, and are published; the private room's never are.
    let forum = jeanne
        .create_room(json!({
            "preset": "public_chat", "visibility": "public", "name": "Forum Tchap info",
            "topic": "Entraide entre agents\nSecond paragraphe",
        }))
        .await;
    let hello = anne
        .send(
            &room,
            "m.room.message",
            json!({"msgtype": "m.text", "body": "Écrivez à anne.martin-leroy@exemple-inconnu.fr, mot de passe Zanzibar42"}),
        )
        .await;
    jeanne
        .send(
            &room,
            "m.reaction",
            json!({"m.relates_to": {"rel_type": "m.annotation", "event_id": hello, "key": "Merci Anne"}}),
        )
        .await;
    jeanne
        .state(
            &room,
            "im.vector.room.access_rules",
            "",
            json!({"rule": "jeanne.martin@interieur.gouv.fr budget secret Rochefort"}),
        )
        .await;
    // Synapse's own daily visits (the test clock makes them minutes) and the tap.
    let events_wanted = 4;
    wait_until("the events reach Kafka", 60, &hooks, || {
        (topic_records::<EventRecord>(&broker.bootstrap).len() >= events_wanted).then_some(())
    });
    wait_until("the visits and accounts reach Kafka", 90, &hooks, || {
        let visits = topic_records::<VisitRecord>(&broker.bootstrap);
        let accounts = topic_records::<AccountRecord>(&broker.bootstrap);
        (visits.iter().any(|v| v.platform == Platform::Android) && accounts.len() >= 2)
            .then_some(())
    });
    let directory = wait_until(
        "the public room directory reaches Kafka",
        60,
        &hooks,
        || {
            // Synapse fills its room statistics a moment after the room: the tap may see
            // the room first unnamed, then named.
            let records = topic_records::<mxpulse_schemas::DirectoryRecord>(&broker.bootstrap);
            records
                .iter()
                .any(|r| {
                    r.name.as_deref() == Some("Forum Tchap info")
                        && r.topic.as_deref() == Some("Entraide entre agents")
                })
                .then_some(records)
        },
    );
    assert!(
        directory
            .iter()
            .all(|r| r.room == pseudonymizer().room(&forum) && r.listed),
        "the directory's one room; nothing of the private room: {directory:?}"
    );
    let kafka_events = topic_records::<EventRecord>(&broker.bootstrap);
    let kafka_accounts = topic_records::<AccountRecord>(&broker.bootstrap);
    // A poison message beside them: dead-lettered, and its headers tell nothing of its content.
    let producer = harness::pipeline::producer(&broker.bootstrap);
    harness::pipeline::produce_raw(
        &producer,
        mxpulse_schemas::topics::EVENTS,
        POISON_KEY,
        br#"{"v": "jeanne.martin@interieur.gouv.fr Zanzibar42", "body": "Anne Martin-Leroy"}"#,
        Some("1"),
    )
    .await;
    let letters = dead_letter_headers(&broker.bootstrap, 1).await;
    let published: usize = mxpulse_schemas::topics::RECORD_TOPICS
        .iter()
        .map(|t| topic_messages(&broker.bootstrap, t).len())
        .sum();
    wait_for(Duration::from_secs(60), || {
        // `published` counts the poison message too.
        (ingest.metric("mxpulse_ingest_messages_total") as usize >= published
            && ingest.metric("mxpulse_ingest_consumer_lag") == 0)
            .then_some(())
    })
    .unwrap_or_else(|| panic!("the ingest read everything: {}", ingest.metrics()));
    let lake_events = harness::pipeline::lake_records::<EventRecord>(&lake).await;
    let lake_accounts = harness::pipeline::lake_records::<AccountRecord>(&lake).await;
    let lake_rows = format!(
        "{lake_events:?}{:?}{lake_accounts:?}",
        harness::pipeline::lake_records::<VisitRecord>(&lake).await,
    );
    // Times as coarse as docs/design.md §3 says, in Kafka and in the lake: events to the
    // minute, accounts to the hour.
    assert!(lake_events.len() >= events_wanted && kafka_events.len() >= events_wanted);
    for event in kafka_events.iter().chain(&lake_events) {
        assert_eq!(event.ts.0 % 60_000, 0, "{event:?}");
    }
    assert!(!lake_accounts.is_empty());
    for account in kafka_accounts.iter().chain(&lake_accounts) {
        assert_eq!(account.ts.0 % 3_600_000, 0, "{account:?}");
    }
    assert!(lake_rows.contains("Android"), "the lake has the visits");

    // The needles were there to be found: Synapse holds the forwarded address and the names.
    let database: String = [".", "-wal"]
        .iter()
        .map(|suffix| {
            let path = format!(
                "{}{}",
                synapse.database.display(),
                suffix.trim_start_matches('.')
            );
            String::from_utf8_lossy(&std::fs::read(path).unwrap_or_default()).into_owned()
        })
        .collect();
    assert!(
        database.contains(ADDRESS) && database.contains("Martin-Leroy"),
        "Synapse recorded the address and the display name"
    );

    // Everything that left, or stays behind the hooks.
    let mut outputs: Vec<(String, String)> = Vec::new();
    for topic in mxpulse_schemas::topics::RECORD_TOPICS {
        for (key, payload) in topic_messages(&broker.bootstrap, topic) {
            if key == POISON_KEY {
                continue; // The test's own, not the hooks'.
            }
            outputs.push((
                format!("kafka {topic}"),
                format!("{key} {}", String::from_utf8_lossy(&payload)),
            ));
        }
    }
    outputs.extend(
        letters
            .into_iter()
            .map(|h| ("dead-letter headers".to_owned(), h)),
    );
    outputs.push(("lake rows".into(), lake_rows));
    outputs.extend(
        files_under(&lake)
            .into_iter()
            .map(|(p, text)| (format!("lake file {}", p.display()), text)),
    );
    outputs.extend(
        files_under(&dir.path().join("hooks-state"))
            .into_iter()
            .map(|(p, text)| (format!("hooks state {}", p.display()), text)),
    );
    for path in ["/health", "/metrics"] {
        outputs.push((format!("hooks {path}"), hooks.get(path).unwrap_or_default()));
        outputs.push((format!("ingest {path}"), ingest.get(path)));
    }
    // Nor where things are stored, to whoever asks without a token.
    let stored = dir.path().display().to_string();
    for (what, text) in outputs.iter().filter(|(w, _)| w.contains("/health")) {
        assert!(!text.contains(&stored), "{what}: {text}");
    }
    outputs.push(("hooks log".into(), hooks.log_text()));
    outputs.push((
        "ingest log".into(),
        std::fs::read_to_string(&ingest.log).unwrap_or_default(),
    ));
    assert!(
        outputs
            .iter()
            .any(|(what, text)| what == "hooks log" && text.contains("DEBUG")),
        "the hooks log at debug level"
    );

    let mut needles: Vec<String> = [
        "jeanne",
        "Jeanne",
        "martin",
        "Martin",
        "leroy",
        "Leroy",
        "exemple-inconnu",
        "anne.martin",
        "jeanne.martin@interieur.gouv.fr",
        "anne.martin-leroy@exemple-inconnu.fr",
        "Dupuis",
        "Moreau",
        "Rochefort",
        "confidentiel",
        "Zanzibar42",
        "Merci Anne",
        "budget secret",
        ADDRESS,
        WEB_UA,
        ANDROID_UA,
        "Firefox",
        "Samsung",
        "Gecko",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    needles.extend(
        [
            &jeanne.user_id,
            &anne.user_id,
            &jeanne.device_id,
            &anne.device_id,
        ]
        .map(|s| s.to_string()),
    );
    needles.push(room.clone());
    needles.push(forum.clone());
    needles.extend(expected_ids(&jeanne, [&room, &room, &room, &room]).await);
    let mut found = Vec::new();
    for (what, text) in &outputs {
        for needle in &needles {
            if text.contains(needle.as_str()) {
                let at = text.find(needle.as_str()).unwrap_or(0);
                let from = text.floor_char_boundary(at.saturating_sub(80));
                let to = text.ceil_char_boundary((at + needle.len() + 80).min(text.len()));
                found.push(format!("{needle:?} in {what}: …{}…", &text[from..to]));
            }
        }
    }
    assert!(found.is_empty(), "{}", found.join("\n"));
    // The unlisted domain was published as `other`.
    let visits = topic_records::<VisitRecord>(&broker.bootstrap);
    assert!(
        visits
            .iter()
            .filter(|v| v.platform == Platform::Android)
            .all(|v| v.domain.as_deref() == Some("other")),
        "{visits:?}"
    );
    drop(synapse);
}

/// Rows of a query on Synapse's database (Python's sqlite3, not our code), as JSON arrays.
fn synapse_rows(synapse: &Synapse, sql: &str) -> Vec<serde_json::Value> {
    let output = std::process::Command::new(harness::python())
        .arg("-c")
        .arg("import json,sqlite3,sys; print(json.dumps([list(r) for r in sqlite3.connect(sys.argv[1]).execute(sys.argv[2])]))")
        .arg(&synapse.database)
        .arg(sql)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice::<Vec<serde_json::Value>>(&output.stdout).unwrap()
}

/// Issue 24, item 2: invites, joins, leaves, kicks, bans, unbans and re-joins, all within
/// one minute (the precision of event times after the hooks), give each room the members
/// Synapse's own current state has: the `rooms` view follows the order Synapse gives its
/// memberships (`replaces_state`), not their times.
#[tokio::test(flavor = "multi_thread")]
async fn members_in_one_minute_equal_synapse_current_state() {
    use chrono::Timelike as _;
    let broker = Broker::dedicated(BrokerKind::Mock);
    let dir = tempfile::tempdir().unwrap();
    let config = write_hooks_config(dir.path(), &broker.bootstrap, SERVER, HS_TOKEN, None, "");
    let hooks = HooksProcess::start(&config, dir.path());
    let synapse = Synapse::start(SERVER, &hooks.url(), HS_TOKEN, AS_TOKEN);
    let alice = synapse.register("alice", WEB_UA).await;
    let bob = synapse.register("bob", ANDROID_UA).await;
    let carol = synapse.register("carol", IOS_UA).await;
    let dave = synapse.register("dave", WEB_UA).await;

    // Start at the top of a minute, so that the whole scenario shares one.
    wait_until("a fresh minute", 70, &hooks, || {
        (chrono::Utc::now().second() < 15).then_some(())
    });
    let minute = chrono::Utc::now().timestamp_millis() / 60_000;
    let direct = alice
        .create_room(
            json!({"preset": "trusted_private_chat", "is_direct": true, "invite": [bob.user_id]}),
        )
        .await;
    bob.join(&direct).await;
    let team = alice
        .create_room(
            json!({"preset": "private_chat", "invite": [bob.user_id, carol.user_id, dave.user_id]}),
        )
        .await;
    bob.join(&team).await;
    bob.membership(&team, "leave", None).await;
    alice.membership(&team, "invite", Some(&bob.user_id)).await;
    bob.join(&team).await;
    carol.join(&team).await;
    alice.membership(&team, "ban", Some(&carol.user_id)).await;
    alice.membership(&team, "unban", Some(&carol.user_id)).await;
    alice
        .membership(&team, "invite", Some(&carol.user_id))
        .await;
    carol.join(&team).await;
    dave.membership(&team, "leave", None).await; // declines the invitation
    let forum = alice
        .create_room(json!({"preset": "public_chat", "room_alias_name": "minute"}))
        .await;
    for user in [&bob, &carol, &dave] {
        user.join(&forum).await;
    }
    carol.membership(&forum, "leave", None).await;
    carol.join(&forum).await;
    alice.membership(&forum, "kick", Some(&bob.user_id)).await;
    alice.membership(&forum, "ban", Some(&dave.user_id)).await;
    let in_one_minute = chrono::Utc::now().timestamp_millis() / 60_000 == minute;

    // Every membership Synapse stored reaches Kafka.
    let stored = synapse_rows(&synapse, "SELECT count(*) FROM room_memberships")[0][0]
        .as_u64()
        .unwrap() as usize;
    let records = wait_until("every membership reaches Kafka", 60, &hooks, || {
        let records: Vec<EventRecord> = topic_records(&broker.bootstrap);
        let memberships = records
            .iter()
            .filter(|r| r.event_type == EventType::RoomMember)
            .count();
        (memberships >= stored).then_some(records)
    });
    let memberships: Vec<&EventRecord> = records
        .iter()
        .filter(|r| r.event_type == EventType::RoomMember)
        .collect();
    assert!(
        memberships.iter().filter(|r| r.replaces.is_some()).count() >= 10,
        "the changes name what they replace: {memberships:?}"
    );
    if in_one_minute {
        let minutes: BTreeSet<_> = memberships
            .iter()
            .filter(|r| r.ts.0 / 60_000 == minute)
            .map(|r| r.room)
            .collect();
        assert_eq!(
            minutes.len(),
            3,
            "all three rooms' memberships share a minute"
        );
    }

    // The lake, and its `rooms` view, against Synapse's current state.
    let lake = dir.path().join("lake");
    let root = harness::pipeline::lake_root(&lake);
    let mut table = mxpulse_ingest::lake::open_or_create::<EventRecord>(&root)
        .await
        .unwrap();
    mxpulse_ingest::lake::append(&mut table, records)
        .await
        .unwrap();
    let snapshot = mxpulse_query::lake::LakeSnapshot::load(root.url())
        .await
        .unwrap();
    let scope = mxpulse_query::session::Scope {
        server: None,
        pseudonyms: true,
    };
    let limits = mxpulse_query::session::Limits {
        memory_bytes: 256 << 20,
        timeout: Duration::from_secs(60),
        max_rows: 1000,
    };
    let ctx = mxpulse_query::session::session(&snapshot, &scope, &limits, None)
        .await
        .unwrap();
    let batches = ctx
        .sql("SELECT room, members FROM rooms")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let mut lake_members = BTreeMap::new();
    for batch in &batches {
        use datafusion::arrow::array::AsArray as _;
        use datafusion::arrow::datatypes::Int64Type;
        let (room, members) = (
            batch.column(0).as_primitive::<Int64Type>(),
            batch.column(1).as_primitive::<Int64Type>(),
        );
        for row in 0..batch.num_rows() {
            lake_members.insert(room.value(row), members.value(row));
        }
    }
    let p = pseudonymizer();
    let synapse_members: BTreeMap<i64, i64> = synapse_rows(
        &synapse,
        "SELECT room_id, count(*) FROM current_state_events \
         WHERE type = 'm.room.member' AND membership = 'join' GROUP BY room_id",
    )
    .into_iter()
    .map(|row| {
        (
            p.room(row[0].as_str().unwrap()).to_i64(),
            row[1].as_i64().unwrap(),
        )
    })
    .collect();
    // direct: alice, bob; team: alice, bob, carol; forum: alice, carol.
    assert_eq!(
        synapse_members.values().copied().collect::<BTreeSet<_>>(),
        BTreeSet::from([2, 3])
    );
    assert_eq!(lake_members, synapse_members);
    for room in [&direct, &team, &forum] {
        assert!(lake_members.contains_key(&p.room(room).to_i64()), "{room}");
    }
    drop(synapse);
}
