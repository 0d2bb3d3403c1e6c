//! Freshness: how long an event takes from entering the hooks to being counted in SQL, with
//! the default settings (the ingest's flush latency 5 s, the query service's refresh 2 s).
//! One homeserver's appservice transaction of one message is sent to `mxpulse hooks`, then
//! `SELECT count(*) FROM events` is asked of `mxpulse serve` every 20 ms until the count
//! includes it; again after a random pause (so each lands at another moment of the flush and
//! refresh cycles). Everything on loopback: the mock cluster, the hooks, the ingest and the
//! query service, each a process of its own.
//!
//! Run: `cargo bench --bench freshness -- [--samples 40] [--write]` (`--write` puts the table
//! into BENCHMARKS.md and the figures into `docs/bench/freshness.json`). Under `cargo test
//! --bench freshness` (the test command) a smoke run of 3 samples that checks each is counted,
//! and measures nothing.

#[path = "../tests/harness/mod.rs"]
mod harness;
// Shared with the other benches; this one uses part of it.
#[allow(dead_code)]
mod common;

use std::time::{Duration, Instant};

use harness::Broker;
use harness::hooks::{HooksProcess, write_hooks_config};
use harness::pipeline::{Ingest, Rng, write_config};
use harness::serve::{ANALYST, sql};
use serde_json::{Value, json};

const SERVER: &str = "agent.interieur.tchap.gouv.fr";
const HS_TOKEN: &str = "freshness-bench-hs-token-0123456789";

fn main() {
    let args = common::BenchArgs::from_env();
    let samples: usize = args
        .value("--samples")
        .and_then(|s| s.parse().ok())
        .unwrap_or(if args.smoke() { 3 } else { 40 });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let result = runtime.block_on(run(samples));
    if args.smoke() {
        let p99 = result["p99_s"].as_f64().unwrap_or(f64::NAN);
        assert!(p99.is_finite() && p99 > 0.0, "p99: {p99}");
    }
    let table = markdown(&result);
    println!("{table}");
    if args.flag("--write") {
        common::write_results("freshness", &table, &result);
    }
}

/// An appservice transaction of one cleartext message, `n` making its event unique.
fn transaction(n: usize) -> Vec<u8> {
    let sender = format!("@prenom.nom-interieur.gouv.fr:{SERVER}");
    let event = json!({
        "event_id": format!("$fresh{n}-{}", std::process::id()),
        "room_id": format!("!room:{SERVER}"),
        "sender": sender, "user_id": sender, "type": "m.room.message",
        "content": {"msgtype": "m.text", "body": "Bonjour"},
        "origin_server_ts": chrono::Utc::now().timestamp_millis(),
        "unsigned": {"age": 10},
    });
    serde_json::to_vec(&json!({"events": [event], "ephemeral": []})).expect("JSON")
}

async fn run(samples: usize) -> Value {
    let broker = Broker::dedicated_mock(8);
    let dir = tempfile::tempdir().expect("temp dir");
    let lake = dir.path().join("lake");
    let hooks_config =
        write_hooks_config(dir.path(), &broker.bootstrap, SERVER, HS_TOKEN, None, "");
    let hooks = HooksProcess::start(&hooks_config, dir.path());
    // The ingest with the default flush policy (the test configuration's 100 ms latency put
    // back to the default 5 s).
    let ingest_config = write_config(dir.path(), &broker.bootstrap, &lake, "fresh", 100_000);
    let text = std::fs::read_to_string(&ingest_config)
        .expect("config")
        .replace("flush_max_latency_ms = 100", "flush_max_latency_ms = 5000");
    std::fs::write(&ingest_config, text).expect("config");
    let ingest = Ingest::start(&ingest_config, dir.path(), "fresh");
    // The tables exist once the ingest opened them; the service starts over them.
    harness::wait_for(Duration::from_secs(60), || {
        lake.join("events/_delta_log").exists().then_some(())
    })
    .expect("the ingest created the tables");
    let serve = harness::serve::start_with(dir.path(), &lake, "refresh_ms = 2000\n");

    let client = reqwest::Client::new();
    let mut rng = Rng(7);
    let mut latencies = Vec::new();
    for n in 0..samples {
        tokio::time::sleep(Duration::from_millis(rng.below(1_500))).await;
        let sent = Instant::now();
        let response = client
            .put(format!("{}/_matrix/app/v1/transactions/{n}", hooks.url()))
            .bearer_auth(HS_TOKEN)
            .header("content-type", "application/json")
            .body(transaction(n))
            .send()
            .await
            .expect("hooks answer");
        assert_eq!(response.status(), 200, "transaction {n}");
        let deadline = sent + Duration::from_secs(120);
        loop {
            let (_, answer) = sql(&serve, ANALYST, "SELECT count(*) AS n FROM events").await;
            if answer["rows"][0]["n"].as_u64().unwrap_or(0) > n as u64 {
                break;
            }
            assert!(Instant::now() < deadline, "event {n} not counted in 120 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        latencies.push(sent.elapsed().as_secs_f64());
    }
    assert!(ingest.stop(), "the ingest stops cleanly");
    drop(hooks);
    latencies.sort_by(f64::total_cmp);
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    json!({
        "machine": common::machine(),
        "profile": common::PROFILE,
        "date": chrono::Utc::now().format("%Y-%m-%d").to_string(),
        "samples": latencies.len(),
        "p50_s": pct(0.5),
        "p99_s": pct(0.99),
        "min_s": latencies.first(),
        "max_s": latencies.last(),
    })
}

fn markdown(r: &Value) -> String {
    let f = |key: &str| r[key].as_f64().unwrap_or(f64::NAN);
    format!(
        "Measured {} on {} ({} build), {} events, default settings (flush latency 5 s, query \
         refresh 2 s).\n\n\
         | from the hooks to `SELECT count(*)` | seconds |\n|---|---|\n\
         | p50 | **{:.1}** |\n| p99 | **{:.1}** (target < 60) |\n| min / max | {:.1} / {:.1} |",
        r["date"].as_str().unwrap_or("?"),
        r["machine"].as_str().unwrap_or("?"),
        r["profile"].as_str().unwrap_or("?"),
        r["samples"],
        f("p50_s"),
        f("p99_s"),
        f("min_s"),
        f("max_s"),
    )
}
