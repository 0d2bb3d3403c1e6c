//! `mxpulse serve` for a test: started on free ports over a lake with three principals (a
//! viewer, an analyst, a ministry's analyst), stopped on `Drop`; HTTP helpers.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::{free_port, mxpulse_bin, stop, wait_for};

pub const B: &str = "agent.finances.tchap.gouv.fr";
pub const VIEWER: &str = "viewer-token-0123456789";
pub const ANALYST: &str = "analyst-token-0123456789";
pub const B_ANALYST: &str = "finances-analyst-token-0123456789";

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
            "[lake]\nroot = \"{}\"\n[query]\nlisten = \"127.0.0.1:{port}\"\npgwire_listen = \"127.0.0.1:{pg_port}\"\n{defaults}{query_settings}\
             [[query.principals]]\nname = \"product-lead\"\nrole = \"viewer\"\ntoken = \"{VIEWER}\"\n\
             [[query.principals]]\nname = \"dinum-analyst\"\nrole = \"analyst\"\ntoken = \"{ANALYST}\"\n\
             [[query.principals]]\nname = \"finances-analyst\"\nrole = \"analyst\"\ntoken = \"{B_ANALYST}\"\nserver = \"{B}\"\n",
            lake.display()
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
