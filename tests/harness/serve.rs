//! `mxpulse serve` for a test: started on free ports over a lake with three principals (a
//! viewer, an analyst, a ministry's analyst), stopped on `Drop`; HTTP helpers.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use chrono::NaiveDate;
use mxpulse_schemas::vocabulary::{Client, EventType, MsgType, Platform, Source};
use mxpulse_schemas::{
    EventPseudonym, EventRecord, KeyId, Record, RoomPseudonym, SchemaVersion, UnixMillis,
    UserPseudonym, VisitRecord,
};
use reqwest::StatusCode;
use serde_json::{Value, json};

use super::{free_port, mxpulse_bin, stop, wait_for};

pub const A: &str = "agent.interieur.tchap.gouv.fr";
pub const B: &str = "agent.finances.tchap.gouv.fr";
pub const VIEWER: &str = "viewer-token-0123456789";
pub const ANALYST: &str = "analyst-token-0123456789";
pub const B_ANALYST: &str = "finances-analyst-token-0123456789";
pub const B_VIEWER: &str = "finances-viewer-token-0123456789";

pub struct Serve {
    pub child: Child,
    pub url: String,
    pub pg_port: u16,
    pub log: std::path::PathBuf,
}

impl Drop for Serve {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

pub fn start(dir: &Path, lake: &Path) -> Serve {
    start_with(dir, lake, "")
}

/// `start` with more `[query]` settings.
pub fn start_with(dir: &Path, lake: &Path, query_settings: &str) -> Serve {
    start_on(
        dir,
        &format!("[lake]\nroot = \"{}\"\n", lake.display()),
        query_settings,
    )
}

/// `start_with` over the lake `lake_settings` describe (its `[lake]` section, and any other
/// section but `[query]`).
pub fn start_on(dir: &Path, lake_settings: &str, query_settings: &str) -> Serve {
    let port = free_port();
    let pg_port = free_port();
    let config = dir.join("serve.toml");
    // The test's own settings replace these defaults.
    let given: Vec<&str> = query_settings
        .lines()
        .filter_map(|l| l.split('=').next().map(str::trim))
        .collect();
    let defaults: String = [
        "query_timeout_ms = 2000",
        "query_memory_bytes = 67108864",
        "max_rows = 1000",
        "refresh_ms = 200",
    ]
    .iter()
    .filter(|l| !given.iter().any(|g| l.starts_with(&format!("{g} "))))
    .map(|l| format!("{l}\n"))
    .collect();
    std::fs::write(
        &config,
        format!(
            "{lake_settings}[query]\nlisten = \"127.0.0.1:{port}\"\npgwire_listen = \"127.0.0.1:{pg_port}\"\n{defaults}{query_settings}\
             [[query.principals]]\nname = \"product-lead\"\nrole = \"viewer\"\ntoken = \"{VIEWER}\"\n\
             [[query.principals]]\nname = \"dinum-analyst\"\nrole = \"analyst\"\ntoken = \"{ANALYST}\"\n\
             [[query.principals]]\nname = \"finances-analyst\"\nrole = \"analyst\"\ntoken = \"{B_ANALYST}\"\nserver = \"{B}\"\n\
             [[query.principals]]\nname = \"finances-lead\"\nrole = \"viewer\"\ntoken = \"{B_VIEWER}\"\nserver = \"{B}\"\n",
        ),
    )
    .unwrap();
    let log = dir.join("serve.log");
    let child = Command::new(mxpulse_bin())
        .arg("--config")
        .arg(&config)
        .arg("serve")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let serve = Serve {
        child,
        url,
        pg_port,
        log,
    };
    wait_for(Duration::from_secs(30), || {
        super::synapse::http_get(&format!("127.0.0.1:{port}"), "/health")
            .filter(|b| b.contains("ok"))
    })
    .unwrap_or_else(|| {
        panic!(
            "serve did not start: {}",
            std::fs::read_to_string(&serve.log).unwrap_or_default()
        )
    });
    serve
}

pub async fn sql(serve: &Serve, token: &str, sql: &str) -> (StatusCode, Value) {
    let response = reqwest::Client::new()
        .post(format!("{}/api/v1/sql", serve.url))
        .bearer_auth(token)
        .json(&json!({"sql": sql}))
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

pub async fn get(serve: &Serve, token: Option<&str>, path: &str) -> (StatusCode, Value) {
    let mut request = reqwest::Client::new().get(format!("{}{path}", serve.url));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// CPU seconds `serve` spends in `window`, starting `settle` from now.
pub fn cpu_over(serve: &Serve, settle: Duration, window: Duration) -> f64 {
    std::thread::sleep(settle);
    let before = super::cpu_seconds(serve.child.id());
    std::thread::sleep(window);
    super::cpu_seconds(serve.child.id()) - before
}

pub async fn write<R: Record>(lake: &Path, records: &[R]) {
    let root = mxpulse_ingest::LakeRoot::parse(&lake.display().to_string()).unwrap();
    let table = mxpulse_ingest::lake::open_or_create::<R>(&root)
        .await
        .unwrap();
    table
        .write(vec![R::to_record_batch(records).unwrap()])
        .with_partition_columns([R::PARTITION_COLUMN])
        .await
        .unwrap();
}

pub fn visit(user: u64, server: &str, day: u32) -> VisitRecord {
    VisitRecord {
        v: SchemaVersion::CURRENT,
        key_id: KeyId([9, 9, 9, 9]),
        day: NaiveDate::from_ymd_opt(2024, 5, day).unwrap(),
        server: server.into(),
        user: UserPseudonym(user),
        device: None,
        domain: None,
        platform: Platform::Web,
        client: Client::Tchap,
        family: "web".parse().ok(),
    }
}

pub fn message(n: u128, sender: u64, server: &str) -> EventRecord {
    let mut r = EventRecord::new(
        KeyId([9, 9, 9, 9]),
        EventPseudonym(n),
        UnixMillis(1_715_000_000_000 + n as i64 * 1000),
        server,
        UserPseudonym(sender),
        RoomPseudonym(7),
        EventType::RoomMessage,
        Source::Appservice,
    );
    r.msgtype = Some(MsgType::Text);
    r
}

/// A lake of May 2024: 4 users and 6 messages on `A`, 3 users and 3 messages on `B`.
pub async fn lake_with_two_servers(dir: &Path) -> std::path::PathBuf {
    let lake = dir.join("lake");
    lake_with_two_servers_at(&lake).await;
    lake
}

/// `lake_with_two_servers` at `lake` (a directory, or an `s3://` URL as a path).
pub async fn lake_with_two_servers_at(lake: &Path) {
    let mut visits: Vec<_> = (1..=4).map(|u| visit(u, A, 6)).collect();
    visits.extend((11..=13).map(|u| visit(u, B, 7)));
    write(lake, &visits).await;
    let mut events: Vec<_> = (1..=6).map(|n| message(n, n as u64 % 3 + 1, A)).collect();
    events.extend((7..=9).map(|n| message(n, n as u64 % 3 + 11, B)));
    write(lake, &events).await;
}

/// psql's answer to `sql` as `user` (unaligned, tuples only), or its error text.
pub fn psql(serve: &Serve, user: &str, password: &str, sql: &str) -> Result<String, String> {
    let output = Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &serve.pg_port.to_string(),
            "-U",
            user,
            "-d",
            "mxpulse",
            "-X",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            sql,
        ])
        .env("PGPASSWORD", password)
        .env("PGCONNECT_TIMEOUT", "10")
        .output()
        .expect("psql (scripts/test installs postgresql-client)");
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

/// The session cookie (`name=value`) a dashboards login with `token` sets.
pub async fn login_cookie(serve: &Serve, token: &str) -> String {
    let response = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .post(format!("{}/login", serve.url))
        .form(&[("token", token), ("next", "/")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let set = response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    set.split(';').next().unwrap().to_owned()
}

/// The service's `/metrics` text.
pub async fn metrics(serve: &Serve) -> String {
    reqwest::get(format!("{}/metrics", serve.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}
