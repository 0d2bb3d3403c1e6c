//! Hooks throughput bench: one `mxpulse hooks` process serving the 17 homeservers of a
//! Tchap-like federation, each pushing appservice transactions of 100 events one after the
//! other as Synapse does, every transaction answered only after Kafka (the mock cluster in its
//! own process) acknowledged its records. Prints a report: records/s, transactions/s, latency
//! of a transaction, and the CPU the hooks used.
//!
//! Run: `cargo bench --bench hooks_throughput -- [RECORDS]` (release build; default 300,000).

#[path = "../tests/harness/mod.rs"]
mod harness;

use std::time::{Duration, Instant};

use harness::hooks::HooksProcess;
use harness::{Broker, cpu_seconds};

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
    let records: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(300_000);
    let per_server = records.div_ceil(EVENTS_PER_TXN * SERVERS.len());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let broker = Broker::dedicated_mock(32);
        let dir = tempfile::tempdir().unwrap();
        let mut config = format!("[kafka]\nbrokers = \"{}\"\n", broker.bootstrap);
        for short in SERVERS {
            config.push_str(&format!(
                "[[hooks.homeservers]]\nserver_name = \"{}\"\nhs_token = \"{}\"\n",
                server_name(short),
                token(short)
            ));
        }
        let config_path = dir.path().join("hooks.toml");
        std::fs::write(&config_path, config).unwrap();
        let hooks = HooksProcess::start(&config_path, dir.path());
        // Quiet logs: the bench measures the work, not the terminal.
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
            latencies.extend(task.await.unwrap());
        }
        let elapsed = started.elapsed().as_secs_f64();
        let cpu = cpu_seconds(hooks.pid()) - cpu_before;
        latencies.sort();
        let total = latencies.len() * EVENTS_PER_TXN;
        let published = hooks.metric("mxpulse_hooks_records_total{table=\"events\"}");
        assert_eq!(published as usize, total, "every record acknowledged");
        let pct = |p: f64| {
            latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)]
                .as_secs_f64()
                * 1000.0
        };
        println!("## mxpulse hooks throughput\n");
        println!("| measure | value |\n|---|---|");
        println!(
            "| homeservers (one sequential Synapse sender each) | {} |",
            SERVERS.len()
        );
        println!(
            "| transactions x events | {} x {EVENTS_PER_TXN} |",
            latencies.len()
        );
        println!("| JSON received | {:.1} MB |", bytes as f64 / 1e6);
        println!("| wall time, first PUT to last 200 | {elapsed:.2} s |");
        println!(
            "| **records/s (acknowledged by Kafka)** | **{:.0}** |",
            total as f64 / elapsed
        );
        println!(
            "| transactions/s | {:.0} |",
            latencies.len() as f64 / elapsed
        );
        println!(
            "| transaction latency p50 / p99 / max | {:.1} / {:.1} / {:.1} ms |",
            pct(0.5),
            pct(0.99),
            pct(1.0)
        );
        println!(
            "| hooks CPU | {cpu:.2} s = {:.0}% of one core |",
            100.0 * cpu / elapsed
        );
    });
}
