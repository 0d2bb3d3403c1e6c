//! A real Synapse homeserver for the tests: installed by `scripts/test` into `.venv`
//! (`matrix-synapse` in tests/requirements.txt), configured here on loopback with SQLite,
//! registration open, no federation, relaxed rate limits and mxpulse as its application
//! service; stopped (by PID) on `Drop`. `MatrixUser` drives the client-server API.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use super::{free_port, python, stop, wait_for};

pub const APPSERVICE_ID: &str = "mxpulse-test";

pub struct Synapse {
    child: Child,
    pub dir: tempfile::TempDir,
    pub server_name: String,
    pub url: String,
    pub as_token: String,
    pub database: PathBuf,
}

impl Synapse {
    /// Starts a homeserver whose appservice is at `hooks_url` with these tokens.
    pub fn start(server_name: &str, hooks_url: &str, hs_token: &str, as_token: &str) -> Synapse {
        let dir = tempfile::tempdir().expect("temp dir");
        let d = dir.path();
        let port = free_port();
        let url = format!("http://127.0.0.1:{port}");
        let regex = server_name.replace('.', "\\\\.");
        std::fs::write(
            d.join("registration.yaml"),
            format!(
                "id: {APPSERVICE_ID}\nurl: \"{hooks_url}\"\nas_token: \"{as_token}\"\nhs_token: \"{hs_token}\"\n\
                 sender_localpart: mxpulse\nnamespaces:\n  users:\n    - exclusive: false\n      regex: \"@.*:{regex}\"\n\
                 \x20 rooms:\n    - exclusive: false\n      regex: \"!.*\"\n  aliases: []\nrate_limited: false\n\
                 receive_ephemeral: true\nde.sorunome.msc2409.push_ephemeral: true\n"
            ),
        )
        .expect("registration");
        std::fs::write(
            d.join("log.config"),
            format!(
                "version: 1\nformatters:\n  precise:\n    format: '%(asctime)s %(name)s %(levelname)s %(message)s'\n\
                 handlers:\n  file:\n    class: logging.FileHandler\n    formatter: precise\n    filename: {}\n\
                 root:\n  level: INFO\n  handlers: [file]\ndisable_existing_loggers: false\n",
                d.join("homeserver.log").display()
            ),
        )
        .expect("log config");
        let rate = "{per_second: 1000, burst_count: 10000}";
        let database = d.join("homeserver.db");
        std::fs::write(
            d.join("homeserver.yaml"),
            format!(
                "server_name: \"{server_name}\"\npublic_baseurl: \"{url}/\"\npid_file: \"{dir}/homeserver.pid\"\n\
                 listeners:\n  - port: {port}\n    bind_addresses: ['127.0.0.1']\n    type: http\n    tls: false\n    x_forwarded: true\n    resources:\n      - names: [client]\n        compress: false\n\
                 database:\n  name: sqlite3\n  args:\n    database: \"{db}\"\n\
                 log_config: \"{dir}/log.config\"\nmedia_store_path: \"{dir}/media\"\nsigning_key_path: \"{dir}/signing.key\"\n\
                 registration_shared_secret: \"test-shared-secret\"\nmacaroon_secret_key: \"test-macaroon-secret\"\nform_secret: \"test-form-secret\"\n\
                 enable_registration: true\nenable_registration_without_verification: true\n\
                 report_stats: false\ntrusted_key_servers: []\nsuppress_key_server_warning: true\nfederation_domain_whitelist: []\n\
                 url_preview_enabled: false\nenable_metrics: false\npresence:\n  enabled: true\nroom_list_publication_rules:\n  - action: allow\n\
                 app_service_config_files:\n  - \"{dir}/registration.yaml\"\n\
                 modules:\n  - module: mxpulse_test_clock.FastDailyVisits\n    config: {{}}\n\
                 rc_message: {rate}\nrc_registration: {rate}\nrc_login:\n  address: {rate}\n  account: {rate}\n  failed_attempts: {rate}\n\
                 rc_joins:\n  local: {rate}\n  remote: {rate}\nrc_joins_per_room: {rate}\nrc_invites:\n  per_room: {rate}\n  per_user: {rate}\n  per_issuer: {rate}\n\
                 rc_admin_redaction: {rate}\nrc_presence:\n  per_user: {rate}\nrc_room_creation: {rate}\nrc_profile: {rate}\n",
                dir = d.display(),
                db = database.display(),
            ),
        )
        .expect("homeserver.yaml");
        let modules = super::repo_root().join("tests/synapse");
        let status = Command::new(python())
            .args(["-m", "synapse.app.homeserver", "-c"])
            .arg(d.join("homeserver.yaml"))
            .arg("--generate-keys")
            .env("PYTHONPATH", &modules)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("run synapse (scripts/test installs it into .venv)");
        assert!(status.success(), "synapse --generate-keys failed");
        let stdout = std::fs::File::create(d.join("synapse.stdout")).expect("stdout file");
        let mut child = Command::new(python())
            .args(["-m", "synapse.app.homeserver", "-c"])
            .arg(d.join("homeserver.yaml"))
            .env("PYTHONPATH", &modules)
            .stdout(stdout.try_clone().expect("clone"))
            .stderr(stdout)
            .spawn()
            .expect("spawn synapse");
        let health = format!("127.0.0.1:{port}");
        let healthy = wait_for(Duration::from_secs(120), || {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("synapse exited with {status}; see its log");
            }
            http_get(&health, "/health")
                .filter(|body| body.ends_with("OK"))
                .map(|_| ())
        });
        if healthy.is_none() {
            stop(&mut child);
            panic!("synapse was not healthy within 120 s");
        }
        Synapse {
            child,
            dir,
            server_name: server_name.to_owned(),
            url,
            as_token: as_token.to_owned(),
            database,
        }
    }

    pub fn log(&self) -> PathBuf {
        self.dir.path().join("homeserver.log")
    }

    /// Registers `localpart` with its own device; every later request carries `user_agent`.
    pub async fn register(&self, localpart: &str, user_agent: &str) -> MatrixUser {
        self.register_from(localpart, user_agent, None).await
    }

    /// `register`, every request also saying it was forwarded for `address` (Synapse trusts
    /// `X-Forwarded-For` here, as behind a reverse proxy, and records that address).
    pub async fn register_from(
        &self,
        localpart: &str,
        user_agent: &str,
        address: Option<&str>,
    ) -> MatrixUser {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(address) = address {
            headers.insert(
                "x-forwarded-for",
                reqwest::header::HeaderValue::from_str(address).expect("an address"),
            );
        }
        let http = reqwest::Client::builder()
            .user_agent(user_agent)
            .default_headers(headers)
            .build()
            .expect("http client");
        let password = format!("pw-{localpart}-0123456789");
        let response: Value = http
            .post(format!("{}/_matrix/client/v3/register", self.url))
            .json(&json!({
                "username": localpart, "password": password,
                "auth": {"type": "m.login.dummy"},
                "initial_device_display_name": "test device",
            }))
            .send()
            .await
            .expect("register")
            .json()
            .await
            .expect("register answer");
        let token = response["access_token"]
            .as_str()
            .unwrap_or_else(|| panic!("register {localpart}: {response}"));
        MatrixUser {
            http,
            base: self.url.clone(),
            user_id: response["user_id"].as_str().expect("user_id").to_owned(),
            device_id: response["device_id"]
                .as_str()
                .expect("device_id")
                .to_owned(),
            token: token.to_owned(),
            password,
            txn: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Asks Synapse to ping its appservice, which also makes it retry what it holds now.
    pub async fn ping_appservice(&self) -> reqwest::StatusCode {
        reqwest::Client::new()
            .post(format!(
                "{}/_matrix/client/v1/appservice/{APPSERVICE_ID}/ping",
                self.url
            ))
            .bearer_auth(&self.as_token)
            .json(&json!({"transaction_id": "mxpulse-test-ping"}))
            .send()
            .await
            .map(|r| r.status())
            .unwrap_or(reqwest::StatusCode::BAD_GATEWAY)
    }
}

impl Drop for Synapse {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

/// A plain HTTP/1.1 GET on loopback; the body, or `None` if nothing answered.
pub fn http_get(address: &str, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.trim().to_owned())
}

/// A logged-in user of the test homeserver.
pub struct MatrixUser {
    http: reqwest::Client,
    base: String,
    pub user_id: String,
    pub device_id: String,
    token: String,
    password: String,
    txn: std::sync::atomic::AtomicU64,
}

impl MatrixUser {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self
            .http
            .request(
                method.clone(),
                format!("{}/_matrix/client/v3{path}", self.base),
            )
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("client-server request");
        let status = response.status();
        let value: Value = response.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "{method} {path}: {status} {value}");
        value
    }

    fn next_txn(&self) -> u64 {
        self.txn.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    pub async fn set_display_name(&self, name: &str) {
        let path = format!("/profile/{}/displayname", self.user_id);
        self.call(
            reqwest::Method::PUT,
            &path,
            Some(json!({"displayname": name})),
        )
        .await;
    }

    pub async fn create_room(&self, body: Value) -> String {
        let answer = self
            .call(reqwest::Method::POST, "/createRoom", Some(body))
            .await;
        answer["room_id"].as_str().expect("room_id").to_owned()
    }

    pub async fn join(&self, room: &str) {
        self.call(
            reqwest::Method::POST,
            &format!("/join/{}", encode(room)),
            Some(json!({})),
        )
        .await;
    }

    /// `POST /rooms/{room}/{action}` (`invite`, `leave`, `ban`, `unban`, `kick`), about
    /// `user` where the action names one.
    pub async fn membership(&self, room: &str, action: &str, user: Option<&str>) {
        let body = match user {
            Some(user) => json!({"user_id": user}),
            None => json!({}),
        };
        self.call(
            reqwest::Method::POST,
            &format!("/rooms/{}/{action}", encode(room)),
            Some(body),
        )
        .await;
    }

    /// Sends a timeline event; its event ID.
    pub async fn send(&self, room: &str, event_type: &str, content: Value) -> String {
        let path = format!(
            "/rooms/{}/send/{event_type}/t{}",
            encode(room),
            self.next_txn()
        );
        let answer = self.call(reqwest::Method::PUT, &path, Some(content)).await;
        answer["event_id"].as_str().expect("event_id").to_owned()
    }

    pub async fn state(
        &self,
        room: &str,
        event_type: &str,
        state_key: &str,
        content: Value,
    ) -> String {
        let path = format!(
            "/rooms/{}/state/{event_type}/{}",
            encode(room),
            encode(state_key)
        );
        let answer = self.call(reqwest::Method::PUT, &path, Some(content)).await;
        answer["event_id"].as_str().expect("event_id").to_owned()
    }

    pub async fn redact(&self, room: &str, event_id: &str) -> String {
        let path = format!(
            "/rooms/{}/redact/{}/r{}",
            encode(room),
            encode(event_id),
            self.next_txn()
        );
        let answer = self
            .call(reqwest::Method::PUT, &path, Some(json!({"reason": "test"})))
            .await;
        answer["event_id"].as_str().expect("event_id").to_owned()
    }

    /// Every event of a room's timeline, oldest first.
    pub async fn timeline(&self, room: &str) -> Vec<Value> {
        let answer = self
            .call(
                reqwest::Method::GET,
                &format!("/rooms/{}/messages?dir=f&limit=1000", encode(room)),
                None,
            )
            .await;
        answer["chunk"].as_array().cloned().unwrap_or_default()
    }

    pub async fn deactivate(&self) {
        self.call(
            reqwest::Method::POST,
            "/account/deactivate",
            Some(json!({"auth": {
                "type": "m.login.password",
                "identifier": {"type": "m.id.user", "user": self.user_id},
                "password": self.password,
            }})),
        )
        .await;
    }
}

fn encode(segment: &str) -> String {
    let mut out = String::new();
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}
