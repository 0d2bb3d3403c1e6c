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
    let carol = synapse.register("carol", IOS_UA).await;

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
            Some("interieur.gouv.fr".to_owned()),
        ),
        (
            b,
            Some(p.device(&bob.user_id, &bob.device_id)),
            today,
            Platform::Android,
            Client::Tchap,
            Some("finances.gouv.fr".to_owned()),
        ),
        (
            c,
            Some(p.device(&carol.user_id, &carol.device_id)),
            today,
            Platform::Ios,
            Client::Tchap,
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
            r.ts.0 % 3_600_000 == 0 && r.ts.0 >= started_ms / 3_600_000 * 3_600_000 - 3_600_000 && r.ts.0 <= now_ms,
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
        "Firefox",
        "Samsung",
        "iPhone",
        "Plans",
        "Secret",
        "Forum",
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
        report.contains("(0 skipped), 3 visits, 3 accounts"),
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
