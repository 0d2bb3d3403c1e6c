//! `mxpulse hooks` as Synapse sees it, against a real broker: the appservice API's answers to
//! good and bad requests, repeats, a broker that goes away, a database that is not there, and
//! the registration it generates.

mod harness;

use std::time::Duration;

use harness::hooks::{HooksProcess, synapse_sql, topic_records, write_hooks_config};
use harness::{Broker, BrokerKind, wait_for};
use mxpulse_schemas::EventRecord;
use reqwest::StatusCode;
use serde_json::{Value, json};

const SERVER: &str = "interieur.localhost";
const TOKEN: &str = "hs-token-of-the-test-0123456789";

fn fixture(n: u32) -> Vec<u8> {
    let path = harness::repo_root().join(format!(
        "hooks/tests/data/synapse-appservice/txn-{n:03}.json"
    ));
    std::fs::read(path).expect("fixture")
}

async fn put(
    hooks: &HooksProcess,
    path: &str,
    token: Option<&str>,
    body: Vec<u8>,
) -> (StatusCode, Value) {
    let mut request = reqwest::Client::new()
        .put(format!("{}{path}", hooks.url()))
        .header("content-type", "application/json")
        .body(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("hooks answer");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn txn(
    hooks: &HooksProcess,
    id: &str,
    token: Option<&str>,
    body: Vec<u8>,
) -> (StatusCode, Value) {
    put(
        hooks,
        &format!("/_matrix/app/v1/transactions/{id}"),
        token,
        body,
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_get_matrix_errors_and_the_next_request_is_served() {
    let broker = Broker::dedicated(BrokerKind::Mock);
    let dir = tempfile::tempdir().unwrap();
    let config = write_hooks_config(
        dir.path(),
        &broker.bootstrap,
        SERVER,
        TOKEN,
        None,
        "max_body_bytes = 4096",
    );
    let hooks = HooksProcess::start(&config, dir.path());
    let mut next = 100;
    let mut good = async |hooks: &HooksProcess| {
        next += 1;
        let (status, body) = txn(hooks, &next.to_string(), Some(TOKEN), fixture(25)).await;
        assert_eq!(
            (status, body),
            (StatusCode::OK, json!({})),
            "the next good transaction"
        );
    };

    /// What is sent, with which token, and the status and errcode expected.
    type Case<'a> = (&'a str, Option<&'a str>, Vec<u8>, StatusCode, &'a str);
    let cases: Vec<Case> = vec![
        (
            "no token",
            None,
            fixture(25),
            StatusCode::UNAUTHORIZED,
            "M_UNAUTHORIZED",
        ),
        (
            "wrong token",
            Some("not-the-token-at-all-0000"),
            fixture(25),
            StatusCode::FORBIDDEN,
            "M_FORBIDDEN",
        ),
        (
            "not JSON",
            Some(TOKEN),
            b"{\"events\": [".to_vec(),
            StatusCode::BAD_REQUEST,
            "M_NOT_JSON",
        ),
        (
            "not an object",
            Some(TOKEN),
            b"[1, 2]".to_vec(),
            StatusCode::BAD_REQUEST,
            "M_BAD_JSON",
        ),
        (
            "no events",
            Some(TOKEN),
            b"{\"ephemeral\": []}".to_vec(),
            StatusCode::BAD_REQUEST,
            "M_BAD_JSON",
        ),
        (
            "events not a list",
            Some(TOKEN),
            b"{\"events\": 5}".to_vec(),
            StatusCode::BAD_REQUEST,
            "M_BAD_JSON",
        ),
        (
            "too large",
            Some(TOKEN),
            format!("{{\"events\": [], \"pad\": \"{}\"}}", "x".repeat(5000)).into_bytes(),
            StatusCode::PAYLOAD_TOO_LARGE,
            "M_TOO_LARGE",
        ),
    ];
    for (what, token, body, status, errcode) in cases {
        let (got, answer) = txn(&hooks, &format!("bad-{what}"), token, body).await;
        assert_eq!(got, status, "{what}: {answer}");
        assert_eq!(answer["errcode"], errcode, "{what}: {answer}");
        assert!(
            answer["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{what}: {answer}"
        );
        good(&hooks).await;
    }

    // One malformed event among good ones: the good ones are published, the bad one counted.
    let mut body: Value = serde_json::from_slice(&fixture(4)).unwrap();
    body["events"].as_array_mut().unwrap().insert(
        2,
        json!({"type": "m.room.message", "content": "not an object"}),
    );
    let (status, _) = txn(
        &hooks,
        "mixed",
        Some(TOKEN),
        serde_json::to_vec(&body).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        hooks.metric("mxpulse_hooks_events_skipped_total{reason=\"missing_field\"}"),
        1
    );

    // The legacy unprefixed path and the access_token query parameter.
    let (status, _) = put(
        &hooks,
        &format!("/transactions/legacy?access_token={TOKEN}"),
        None,
        fixture(27),
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    // A repeated txnId is acknowledged without publishing again.
    let (status, _) = txn(&hooks, "legacy", Some(TOKEN), fixture(27)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        hooks.metric("mxpulse_hooks_transactions_total{outcome=\"repeated\"}"),
        1
    );

    // Queries and ping.
    let client = reqwest::Client::new();
    for path in [
        "/_matrix/app/v1/users/@x:interieur.localhost",
        "/_matrix/app/v1/rooms/%23lobby:interieur.localhost",
        "/users/@x:y",
    ] {
        let response = client
            .get(format!("{}{path}", hooks.url()))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
        assert_eq!(
            response.json::<Value>().await.unwrap()["errcode"],
            "M_NOT_FOUND"
        );
    }
    let ping = client
        .post(format!("{}/_matrix/app/v1/ping", hooks.url()))
        .bearer_auth(TOKEN)
        .json(&json!({"transaction_id": "p"}))
        .send()
        .await
        .unwrap();
    assert_eq!(ping.status(), StatusCode::OK);
    let ping = client
        .post(format!("{}/_matrix/app/v1/ping", hooks.url()))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(ping.status(), StatusCode::UNAUTHORIZED);

    // Kafka holds exactly: 7 copies of txn 25's message (same identity: the ingest keeps one),
    // the 5 good events of the mixed transaction, and txn 27's message once.
    let records: Vec<EventRecord> = topic_records(&broker.bootstrap);
    assert_eq!(records.len(), 7 + 5 + 1, "{records:?}");
    let distinct: std::collections::BTreeSet<_> = records.iter().map(|r| r.event).collect();
    assert_eq!(distinct.len(), 1 + 5 + 1);
    assert_eq!(
        hooks.metric("mxpulse_hooks_transactions_total{outcome=\"accepted\"}"),
        7 + 1 + 1
    );
    assert_eq!(
        hooks.metric("mxpulse_hooks_transactions_total{outcome=\"rejected\"}"),
        7 + 1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broker_that_goes_away_means_503_until_it_is_back() {
    // The mock broker's outage drill keeps its data. (tansu 0.6.0, the other broker of
    // these tests, panics on idempotent produce after a restart: lite.rs:503 "more or less
    // than one row" in idempotent_message_check; the hooks' producer is idempotent.)
    let broker = Broker::dedicated(BrokerKind::Mock);
    let dir = tempfile::tempdir().unwrap();
    let config = write_hooks_config(
        dir.path(),
        &broker.bootstrap,
        SERVER,
        TOKEN,
        None,
        "delivery_timeout_ms = 1500",
    );
    let mut hooks = HooksProcess::start(&config, dir.path());
    let (status, _) = txn(&hooks, "1", Some(TOKEN), fixture(25)).await;
    assert_eq!(status, StatusCode::OK);

    broker.set_down(true);
    let (status, answer) = txn(&hooks, "2", Some(TOKEN), fixture(27)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{answer}");
    assert_eq!(answer["errcode"], "M_UNKNOWN");
    let health: Value = serde_json::from_str(&hooks.get("/health").unwrap()).unwrap();
    assert_eq!(health["broker"], "down", "{health}");
    assert!(hooks.is_running());

    // Synapse retries the same txnId; once the broker is back it is accepted.
    broker.set_down(false);
    let accepted = wait_for(Duration::from_secs(60), || {
        let (status, _) = harness::block_on(txn(&hooks, "2", Some(TOKEN), fixture(27)));
        (status == StatusCode::OK).then_some(())
    });
    assert!(
        accepted.is_some(),
        "not accepted after the broker came back; log:\n{}",
        hooks.log_text()
    );
    let health: Value = serde_json::from_str(&hooks.get("/health").unwrap()).unwrap();
    assert_eq!(health["broker"], "up", "{health}");
    let records: Vec<EventRecord> = topic_records(&broker.bootstrap);
    let distinct: std::collections::BTreeSet<_> = records.iter().map(|r| r.event).collect();
    assert_eq!(distinct.len(), 2, "both messages are in Kafka: {records:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_database_is_retried_and_shown_in_health() {
    let broker = Broker::dedicated(BrokerKind::Mock);
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-dir/homeserver.db");
    let config = write_hooks_config(
        dir.path(),
        &broker.bootstrap,
        SERVER,
        TOKEN,
        Some(&missing),
        "",
    );
    let hooks = HooksProcess::start(&config, dir.path());
    let errors = wait_for(Duration::from_secs(20), || {
        let n = hooks.metric(&format!(
            "mxpulse_hooks_synapse_db_errors_total{{server=\"{SERVER}\"}}"
        ));
        (n >= 2).then_some(n)
    });
    assert!(
        errors.is_some(),
        "the tap retried; log:\n{}",
        hooks.log_text()
    );
    let health: Value = serde_json::from_str(&hooks.get("/health").unwrap()).unwrap();
    assert_eq!(health["status"], "failing");
    assert_eq!(health["synapse_db"][SERVER]["reachable"], false, "{health}");
    assert!(
        health["synapse_db"][SERVER]["last_error"]
            .as_str()
            .unwrap()
            .contains("cannot connect")
    );
    // The appservice keeps working.
    let (status, _) = txn(&hooks, "1", Some(TOKEN), fixture(25)).await;
    assert_eq!(status, StatusCode::OK);
}

/// `mxpulse hooks classify` tries the configured rules on user agents: an operator's new app
/// is counted under its family, before the shipped rules, without a release.
#[test]
fn classify_shows_what_the_configured_rules_make_of_user_agents() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("rules.toml");
    std::fs::write(
        &config,
        "[[hooks.client_rules]]\nlike = \"Tchap Pro/%Android%\"\nfamily = \"tchap_x_pro\"\nplatform = \"android\"\n",
    )
    .unwrap();
    let run = |args: &[&str], stdin: &str| {
        use std::io::Write as _;
        let mut child = std::process::Command::new(harness::mxpulse_bin())
            .arg("--config")
            .arg(&config)
            .args(["hooks", "classify"])
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success(), "{output:?}");
        (
            String::from_utf8(output.stdout).unwrap(),
            String::from_utf8(output.stderr).unwrap(),
        )
    };
    let (out, counts) = run(
        &[
            "Tchap Pro/1.0 (Fairphone 5; Android 14)",
            "Tchap X/25.04.2 (iPhone 13; iOS 17.5; Scale/3.00)",
        ],
        "",
    );
    assert_eq!(
        out,
        "tchap_x_pro\tandroid\tTchap Pro/1.0 (Fairphone 5; Android 14)\n\
         tchap_x_ios\tios\tTchap X/25.04.2 (iPhone 13; iOS 17.5; Scale/3.00)\n"
    );
    assert!(
        counts.contains("tchap_x_ios: 1") && counts.contains("tchap_x_pro: 1"),
        "{counts}"
    );
    // From standard input, one per line, as an export of user_daily_visits gives them.
    let (out, counts) = run(
        &[],
        "Tchap/2.12.3 (Pixel 8; Android 14)\n\ncurl/8.5.0\nTchap/2.10.1 (iPhone; iOS 17.5.1)\n",
    );
    assert_eq!(out.lines().count(), 3, "{out}");
    assert!(out.starts_with("tchap_android\tandroid\t"), "{out}");
    assert!(
        counts.contains("tchap_android: 1")
            && counts.contains("other: 1")
            && counts.contains("tchap_ios: 1"),
        "{counts}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_generated_registration_works_end_to_end() {
    let output = std::process::Command::new(harness::mxpulse_bin())
        .args([
            "hooks",
            "registration",
            "--server",
            SERVER,
            "--url",
            "http://127.0.0.1:9",
        ])
        .output()
        .unwrap();
    assert!(output.status.success());
    let yaml = String::from_utf8(output.stdout).unwrap();
    let toml_snippet = String::from_utf8(output.stderr).unwrap();
    let hs_token = yaml
        .lines()
        .find_map(|l| l.strip_prefix("hs_token: \""))
        .and_then(|t| t.strip_suffix('"'))
        .expect("hs_token line")
        .to_owned();
    assert!(toml_snippet.contains(&hs_token));
    assert!(
        yaml.contains(r"regex: '@.*:interieur\.localhost'"),
        "{yaml}"
    );

    let broker = Broker::dedicated(BrokerKind::Mock);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("from-registration.toml");
    let snippet: String = toml_snippet
        .lines()
        .filter(|l| !l.starts_with("# Add"))
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(
        &config,
        format!("[kafka]\nbrokers = \"{}\"\n{snippet}\n", broker.bootstrap),
    )
    .unwrap();
    let hooks = HooksProcess::start(&config, dir.path());
    let (status, _) = txn(&hooks, "1", Some(&hs_token), fixture(25)).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = txn(&hooks, "2", Some(TOKEN), fixture(25)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

/// A Synapse-schema SQLite file (the tables the tap reads), written with Python's sqlite3.
#[tokio::test(flavor = "multi_thread")]
async fn the_database_tap_neither_skips_nor_repeats_across_a_restart() {
    use mxpulse_schemas::vocabulary::AccountChange;
    use mxpulse_schemas::{AccountRecord, VisitRecord};

    let broker = Broker::dedicated(BrokerKind::Mock);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("homeserver.db");
    let now_s = chrono::Utc::now().timestamp();
    let today_ms = now_s / 86_400 * 86_400_000;
    synapse_sql(&db, &format!(
        "CREATE TABLE users(name TEXT, password_hash TEXT, creation_ts BIGINT, admin SMALLINT DEFAULT 0 NOT NULL, is_guest SMALLINT DEFAULT 0 NOT NULL, appservice_id TEXT, user_type TEXT, deactivated SMALLINT DEFAULT 0 NOT NULL);
         CREATE TABLE user_daily_visits(user_id TEXT NOT NULL, device_id TEXT, timestamp BIGINT NOT NULL, user_agent TEXT);
         INSERT INTO users(name, creation_ts) VALUES ('@a:{SERVER}', {c}), ('@b:{SERVER}', {c});
         INSERT INTO user_daily_visits VALUES ('@a:{SERVER}', 'D1', {today_ms}, 'Mozilla/5.0'), ('@a:{SERVER}', 'D2', {today_ms}, 'Tchap/2.1 (iPhone; iOS 17.5.1; Scale/3.00)'), ('@b:{SERVER}', 'D1', {today_ms}, NULL), ('@b:{SERVER}', 'D1', {old}, 'Mozilla/5.0');",
        c = now_s - 600,
        old = today_ms - 3 * 86_400_000,
    ));
    let config = write_hooks_config(dir.path(), &broker.bootstrap, SERVER, TOKEN, Some(&db), "");
    let counts = || {
        let visits: Vec<VisitRecord> = topic_records(&broker.bootstrap);
        let accounts: Vec<AccountRecord> = topic_records(&broker.bootstrap);
        (visits, accounts)
    };
    let settle = |hooks: &HooksProcess, visits: usize, accounts: usize| {
        let polls = |h: &HooksProcess| {
            h.metric(&format!(
                "mxpulse_hooks_synapse_db_polls_total{{server=\"{SERVER}\"}}"
            ))
        };
        let reached = wait_for(Duration::from_secs(30), || {
            let (v, a) = counts();
            (v.len() >= visits && a.len() >= accounts).then_some(())
        });
        assert!(
            reached.is_some(),
            "{visits} visits and {accounts} accounts; log:\n{}",
            hooks.log_text()
        );
        // Several more polls: nothing more may appear.
        let after = polls(hooks) + 4;
        wait_for(Duration::from_secs(30), || {
            (polls(hooks) >= after).then_some(())
        })
        .expect("more polls");
        let (v, a) = counts();
        assert_eq!((v.len(), a.len()), (visits, accounts), "{v:?} {a:?}");
        (v, a)
    };

    let hooks = HooksProcess::start(&config, dir.path());
    let (visits, _) = settle(&hooks, 3, 2);
    assert!(
        visits
            .iter()
            .all(|v| v.day == chrono::Utc::now().date_naive()),
        "days before yesterday are the backfill's"
    );
    drop(hooks);

    synapse_sql(
        &db,
        &format!(
            "INSERT INTO user_daily_visits VALUES ('@b:{SERVER}', 'D2', {today_ms}, 'Mozilla/5.0');
         INSERT INTO users(name, creation_ts) VALUES ('@c:{SERVER}', {now_s});
         INSERT INTO user_daily_visits VALUES ('@c:{SERVER}', 'D1', {today_ms}, 'Mozilla/5.0');"
        ),
    );
    let hooks = HooksProcess::start(&config, dir.path());
    settle(&hooks, 5, 3);

    synapse_sql(
        &db,
        &format!("UPDATE users SET deactivated = 1 WHERE name = '@a:{SERVER}';"),
    );
    let (_, accounts) = settle(&hooks, 5, 4);
    assert_eq!(
        accounts
            .iter()
            .filter(|a| a.change == AccountChange::Deactivated)
            .count(),
        1
    );
    synapse_sql(
        &db,
        &format!("UPDATE users SET deactivated = 0 WHERE name = '@a:{SERVER}';"),
    );
    let (_, accounts) = settle(&hooks, 5, 5);
    let reactivated: Vec<_> = accounts
        .iter()
        .filter(|a| a.change == AccountChange::Reactivated)
        .collect();
    let deactivated: Vec<_> = accounts
        .iter()
        .filter(|a| a.change == AccountChange::Deactivated)
        .collect();
    assert_eq!(
        (reactivated.len(), reactivated[0].user),
        (1, deactivated[0].user)
    );
}

/// Issue 24, item 5: the tap publishes the rooms of the public room directory
/// (`rooms.is_public`) with the name and topic line Synapse's room statistics hold, and
/// nothing of a room outside it, however named; a room that leaves is said to have left,
/// a renamed one is said again, a restart repeats nothing, and `public_directory = false`
/// publishes nothing of the directory.
#[tokio::test(flavor = "multi_thread")]
async fn the_public_room_directory_is_published_and_no_other_room_is_named() {
    use mxpulse_hooks::{PseudonymKey, Pseudonymizer};
    use mxpulse_schemas::DirectoryRecord;

    let broker = Broker::dedicated(BrokerKind::Mock);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("homeserver.db");
    synapse_sql(
        &db,
        "CREATE TABLE users(name TEXT, password_hash TEXT, creation_ts BIGINT, admin SMALLINT DEFAULT 0 NOT NULL, is_guest SMALLINT DEFAULT 0 NOT NULL, appservice_id TEXT, user_type TEXT, deactivated SMALLINT DEFAULT 0 NOT NULL);
         CREATE TABLE user_daily_visits(user_id TEXT NOT NULL, device_id TEXT, timestamp BIGINT NOT NULL, user_agent TEXT);
         CREATE TABLE rooms(room_id TEXT PRIMARY KEY NOT NULL, is_public BOOL, creator TEXT, room_version TEXT, has_auth_chain_index BOOLEAN);
         CREATE TABLE room_stats_state(room_id TEXT NOT NULL, name TEXT, canonical_alias TEXT, join_rules TEXT, history_visibility TEXT, encryption TEXT, avatar TEXT, guest_access TEXT, is_federatable BOOLEAN, topic TEXT, room_type TEXT);
         INSERT INTO rooms(room_id, is_public) VALUES ('!forum:x', 1), ('!cellule:x', 0), ('!unnamed:x', 1);
         INSERT INTO room_stats_state(room_id, name, topic) VALUES
           ('!forum:x', 'Forum Tchap info', '  Entraide entre agents
Écrivez à jeanne.martin@interieur.gouv.fr'),
           ('!cellule:x', 'Cellule Rochefort', 'Budget confidentiel'),
           ('!unnamed:x', NULL, NULL);",
    );
    let p = Pseudonymizer::new(
        &PseudonymKey::from_bytes(
            zeroize::Zeroizing::new(harness::hooks::TEST_KEY.as_bytes().to_vec()),
            "test",
        )
        .unwrap(),
    );
    let (forum, cellule, unnamed) = (
        p.room("!forum:x"),
        p.room("!cellule:x"),
        p.room("!unnamed:x"),
    );
    let records = || topic_records::<DirectoryRecord>(&broker.bootstrap);
    let polls = |h: &HooksProcess| {
        h.metric(&format!(
            "mxpulse_hooks_synapse_db_polls_total{{server=\"{SERVER}\"}}"
        ))
    };
    // `count` records, and no more after several polls.
    let settle = |hooks: &HooksProcess, count: usize| {
        wait_for(Duration::from_secs(30), || {
            (records().len() >= count).then_some(())
        })
        .unwrap_or_else(|| {
            panic!(
                "{count} directory records: {:?}\n{}",
                records(),
                hooks.log_text()
            )
        });
        let after = polls(hooks) + 3;
        wait_for(Duration::from_secs(30), || {
            (polls(hooks) >= after).then_some(())
        })
        .expect("more polls");
        let got = records();
        assert_eq!(got.len(), count, "{got:?}");
        got
    };

    let config = write_hooks_config(dir.path(), &broker.bootstrap, SERVER, TOKEN, Some(&db), "");
    let hooks = HooksProcess::start(&config, dir.path());
    let first = settle(&hooks, 2);
    let by_room = |records: &[DirectoryRecord], room| {
        records
            .iter()
            .filter(|r| r.room == room)
            .cloned()
            .collect::<Vec<_>>()
    };
    let listed = by_room(&first, forum);
    assert_eq!(listed.len(), 1, "{first:?}");
    assert!(listed[0].listed && listed[0].server == SERVER);
    assert_eq!(listed[0].name.as_deref(), Some("Forum Tchap info"));
    assert_eq!(
        listed[0].topic.as_deref(),
        Some("Entraide entre agents"),
        "the topic's first line only"
    );
    assert_eq!(
        by_room(&first, unnamed)
            .iter()
            .map(|r| (r.listed, r.name.clone()))
            .collect::<Vec<_>>(),
        [(true, None)]
    );
    assert!(by_room(&first, cellule).is_empty(), "{first:?}");
    let payloads: String =
        harness::hooks::topic_messages(&broker.bootstrap, mxpulse_schemas::topics::DIRECTORY)
            .into_iter()
            .map(|(key, payload)| format!("{key} {}", String::from_utf8_lossy(&payload)))
            .collect();
    for needle in [
        "Rochefort",
        "Cellule",
        "confidentiel",
        "jeanne",
        "!forum",
        "!cellule",
    ] {
        assert!(!payloads.contains(needle), "{needle} in {payloads}");
    }

    // A restart repeats nothing; a rename is said again; a room that leaves is said to have
    // left, without a name.
    drop(hooks);
    let hooks = HooksProcess::start(&config, dir.path());
    settle(&hooks, 2);
    synapse_sql(
        &db,
        "UPDATE room_stats_state SET name = 'Emploi public' WHERE room_id = '!unnamed:x';
         UPDATE rooms SET is_public = 0 WHERE room_id = '!forum:x';",
    );
    let later = settle(&hooks, 4);
    // (Kafka orders within a partition only: compared as a set.)
    let mut forum_now: Vec<_> = by_room(&later, forum)
        .iter()
        .map(|r| (r.listed, r.name.clone(), r.topic.clone()))
        .collect();
    forum_now.sort();
    assert_eq!(
        forum_now,
        [
            (false, None, None),
            (
                true,
                Some("Forum Tchap info".to_owned()),
                Some("Entraide entre agents".to_owned())
            ),
        ]
    );
    assert!(
        by_room(&later, unnamed)
            .iter()
            .any(|r| r.listed && r.name.as_deref() == Some("Emploi public"))
    );
    drop(hooks);

    // Turned off: nothing of the directory, from a fresh start.
    let off = tempfile::tempdir().unwrap();
    let off_broker = Broker::dedicated(BrokerKind::Mock);
    let config = write_hooks_config(
        off.path(),
        &off_broker.bootstrap,
        SERVER,
        TOKEN,
        Some(&db),
        "public_directory = false",
    );
    let hooks = HooksProcess::start(&config, off.path());
    synapse_sql(&db, "UPDATE rooms SET is_public = 1;");
    let after = polls(&hooks) + 4;
    wait_for(Duration::from_secs(30), || {
        (polls(&hooks) >= after).then_some(())
    })
    .expect("polls");
    assert!(
        topic_records::<DirectoryRecord>(&off_broker.bootstrap).is_empty(),
        "{}",
        hooks.log_text()
    );
}
