//! Hooks throughput bench: one `mxpulse hooks` process serving the 17 homeservers of a
//! Tchap-like federation, each pushing appservice transactions of 100 events one after the
//! other as Synapse does, every transaction answered only after Kafka (the mock cluster in its
//! own process) acknowledged its records. Prints a report: records/s, transactions/s, latency
//! of a transaction, and the CPU the hooks used.
//!
//! Run: `cargo bench --bench hooks_throughput -- [--records 300000] [--write]` (`--write` puts
//! the table into BENCHMARKS.md and the figures into `docs/bench/hooks.json`). Under `cargo
//! test --bench hooks_throughput` (the test command) a smoke run of two transactions per server
//! that checks every number is produced, and measures nothing.

#[path = "../tests/harness/mod.rs"]
mod harness;
// Shared with the other benches; this one uses part of it.
#[allow(dead_code)]
mod common;

use std::time::{Duration, Instant};

use harness::hooks::HooksProcess;
use harness::{Broker, cpu_seconds};
use serde_json::{Value, json};

/// The public federation's servers, by short name (the simulator's list).
const SERVERS: [&str; 17] = mxpulse_simulator::federation::TCHAP_SERVERS;
const EVENTS_PER_TXN: usize = 100;

fn server_name(short: &str) -> String {
    let federation = mxpulse_simulator::Federation::from_short_names([short]);
    federation.servers[0].name.clone()
}

fn token(short: &str) -> String {
    format!("bench-hs-token-of-{short}-0123456789")
}

/// One transaction body: cleartext and encrypted messages, replies in threads, reactions.
fn transaction(server: &str, n: usize) -> Vec<u8> {
    let events: Vec<serde_json::Value> = (0..EVENTS_PER_TXN)
        .map(|i| {
            let k = n * EVENTS_PER_TXN + i;
            let sender = format!("@prenom{}.nom{}-interieur.gouv.fr:{server}", k % 997, k % 13);
            let (event_type, content) = match k % 10 {
                0..=4 => ("m.room.encrypted", serde_json::json!({"algorithm": "m.megolm.v1.aes-sha2", "ciphertext": "AwgAEnACgAkLmt6qF84IK", "session_id": "X3lUlvLELLYx"})),
                5..=7 => ("m.room.message", serde_json::json!({"msgtype": "m.text", "body": "Bonjour, voici le compte rendu de la réunion"})),
                8 => ("m.room.message", serde_json::json!({"msgtype": "m.text", "body": "oui", "m.relates_to": {"rel_type": "m.thread", "event_id": "$root"}})),
                _ => ("m.reaction", serde_json::json!({"m.relates_to": {"rel_type": "m.annotation", "event_id": "$x", "key": "👍"}})),
            };
            serde_json::json!({
                "event_id": format!("$bench{k}-{server}"), "room_id": format!("!room{}:{server}", k % 211),
                "sender": sender, "user_id": sender, "type": event_type, "content": content,
                "origin_server_ts": 1_720_000_000_000_i64 + k as i64, "age": 50, "unsigned": {"age": 50},
            })
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({"events": events, "ephemeral": [], "de.sorunome.msc2409.ephemeral": [], "de.sorunome.msc2409.to_device": []})).unwrap()
}

fn main() {
    let args = common::BenchArgs::from_env();
    let records: usize = args
        .value("--records")
        .and_then(|r| r.parse().ok())
        .unwrap_or(if args.smoke() {
            2 * 17 * EVENTS_PER_TXN
        } else {
            300_000
        });
    let per_server = records.div_ceil(EVENTS_PER_TXN * SERVERS.len());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let result = runtime.block_on(run(per_server));
    if args.smoke() {
        for key in ["records_per_s", "transactions_per_s", "p50_ms", "p99_ms"] {
            let value = result[key].as_f64().unwrap_or(f64::NAN);
            assert!(value.is_finite() && value > 0.0, "{key}: {value}");
        }
    }
    let table = markdown(&result);
    println!("{table}");
    if args.flag("--write") {
        common::write_results("hooks", &table, &result);
    }
}

async fn run(per_server: usize) -> Value {
    let broker = Broker::dedicated_mock(32);
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = format!("[kafka]\nbrokers = \"{}\"\n", broker.bootstrap);
    for short in SERVERS {
        config.push_str(&format!(
            "[[hooks.homeservers]]\nserver_name = \"{}\"\nhs_token = \"{}\"\n",
            server_name(short),
            token(short)
        ));
    }
    let config_path = dir.path().join("hooks.toml");
    std::fs::write(&config_path, config).expect("hooks.toml");
    let hooks = HooksProcess::start(&config_path, dir.path());
    let bodies: Vec<Vec<Vec<u8>>> = SERVERS
        .iter()
        .map(|short| {
            (0..per_server)
                .map(|n| transaction(&server_name(short), n))
                .collect()
        })
        .collect();
    let bytes: usize = bodies.iter().flatten().map(Vec::len).sum();
    let cpu_before = cpu_seconds(hooks.pid());
    let started = Instant::now();
    let client = reqwest::Client::new();
    let tasks: Vec<_> = SERVERS
        .iter()
        .zip(bodies)
        .map(|(short, bodies)| {
            let (client, url, token) = (client.clone(), hooks.url(), token(short));
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                for (n, body) in bodies.into_iter().enumerate() {
                    let sent = Instant::now();
                    let response = client
                        .put(format!("{url}/_matrix/app/v1/transactions/{n}"))
                        .bearer_auth(&token)
                        .header("content-type", "application/json")
                        .body(body)
                        .send()
                        .await
                        .expect("hooks answer");
                    assert_eq!(response.status(), 200, "transaction {n}");
                    latencies.push(sent.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut latencies: Vec<Duration> = Vec::new();
    for task in tasks {
        latencies.extend(task.await.expect("sender task"));
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds(hooks.pid()) - cpu_before;
    latencies.sort();
    let total = latencies.len() * EVENTS_PER_TXN;
    let published = hooks.metric("mxpulse_hooks_records_total{table=\"events\"}");
    assert_eq!(published as usize, total, "every record acknowledged");
    let pct = |p: f64| {
        latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)].as_secs_f64()
            * 1000.0
    };
    json!({
        "machine": common::machine(),
        "profile": common::PROFILE,
        "date": chrono::Utc::now().format("%Y-%m-%d").to_string(),
        "homeservers": SERVERS.len(),
        "transactions": latencies.len(),
        "events_per_transaction": EVENTS_PER_TXN,
        "json_bytes": bytes,
        "seconds": elapsed,
        "records_per_s": total as f64 / elapsed,
        "transactions_per_s": latencies.len() as f64 / elapsed,
        "p50_ms": pct(0.5),
        "p99_ms": pct(0.99),
        "max_ms": pct(1.0),
        "cpu_s": cpu,
    })
}

fn markdown(r: &Value) -> String {
    let f = |key: &str| r[key].as_f64().unwrap_or(f64::NAN);
    format!(
        "Measured {} on {} ({} build): {} homeservers, each one sequential Synapse sender, {} \
         transactions of {} events ({:.1} MB of JSON).\n\n\
         | | |\n|---|---|\n\
         | **records/s acknowledged by Kafka** | **{:.0}** |\n\
         | transactions/s | {:.0} |\n\
         | transaction latency p50 / p99 / max | {:.1} / {:.1} / {:.1} ms |\n\
         | hooks CPU | {:.1} s, {:.0}% of one core |",
        r["date"].as_str().unwrap_or("?"),
        r["machine"].as_str().unwrap_or("?"),
        r["profile"].as_str().unwrap_or("?"),
        r["homeservers"],
        r["transactions"],
        r["events_per_transaction"],
        f("json_bytes") / 1e6,
        f("records_per_s"),
        f("transactions_per_s"),
        f("p50_ms"),
        f("p99_ms"),
        f("max_ms"),
        f("cpu_s"),
        100.0 * f("cpu_s") / f("seconds"),
    )
}
