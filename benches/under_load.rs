//! The dashboards and the figures API at 100 concurrent clients while the ingest absorbs new
//! records: `mxpulse serve` over a lake of two months (the simulator's, through the ingest's
//! writer, rolled up), `mxpulse ingest` writing into the same lake records produced at 1,000 a
//! second (the Olympic month, July 2024, had ~7M messages: ~2.6 a second on average, so this is
//! ~380 times its average and well over 10 times its peak hours), and 100 clients, each asking
//! without pause, in turn, for the Overview dashboard's page (a viewer's session cookie) and
//! for a dashboard-sized request of the figures API (two figures over the year, by server).
//!
//! Run: `cargo bench --bench under_load -- [--seconds 30] [--write]` (`--write` puts the table
//! into BENCHMARKS.md and the figures into `docs/bench/under_load.json`). Under `cargo test
//! --bench under_load` (the test command) a smoke run of 3 seconds at a tiny scale that checks
//! every request was answered, and measures nothing.

#[path = "../tests/harness/mod.rs"]
mod harness;
// Shared with the other benches; this one uses part of it.
#[allow(dead_code)]
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use harness::Broker;
use harness::pipeline::{Ingest, Rng, events, produce, producer, write_config};
use harness::serve::VIEWER;
use serde_json::{Value, json};

const CLIENTS: usize = 100;
const RECORDS_PER_S: usize = 1_000;

fn main() {
    let args = common::BenchArgs::from_env();
    let smoke = args.smoke();
    let seconds: u64 = args
        .value("--seconds")
        .and_then(|s| s.parse().ok())
        .unwrap_or(if smoke { 3 } else { 30 });
    let scale = if smoke { "0.002" } else { "0.1" };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let result = runtime.block_on(run(scale, Duration::from_secs(seconds)));
    if smoke {
        for key in ["page_p99_ms", "api_p99_ms", "requests_per_s"] {
            let value = result[key].as_f64().unwrap_or(f64::NAN);
            assert!(value.is_finite() && value > 0.0, "{key}: {value}");
        }
    }
    let table = markdown(&result);
    println!("{table}");
    if args.flag("--write") {
        common::write_results("under_load", &table, &result);
    }
}

async fn run(scale: &str, duration: Duration) -> Value {
    let dir = tempfile::tempdir().expect("temp dir");
    let lake = dir.path().join("lake");
    common::mxpulse(
        &lake,
        &[
            "generate",
            "--scale",
            scale,
            "--from",
            "2024-06",
            "--to",
            "2024-07",
            "--lake",
            &lake.display().to_string(),
        ],
    );
    common::mxpulse(&lake, &["lake", "rollup", "--rebuild"]);

    let broker = Broker::dedicated_mock(16);
    let config = write_config(dir.path(), &broker.bootstrap, &lake, "load", 100_000);
    // The default flush latency (the test configuration has 100 ms).
    let text = std::fs::read_to_string(&config)
        .expect("config")
        .replace("flush_max_latency_ms = 100", "flush_max_latency_ms = 5000");
    std::fs::write(&config, text).expect("config");
    let ingest = Ingest::start(&config, dir.path(), "load");
    let serve = harness::serve::start_with(dir.path(), &lake, "refresh_ms = 2000\n");

    // The peak: records produced at a steady rate for the whole run.
    let producing = Arc::new(AtomicBool::new(true));
    let producer_task = {
        let (producing, bootstrap) = (producing.clone(), broker.bootstrap.clone());
        tokio::spawn(async move {
            let producer = producer(&bootstrap);
            let mut rng = Rng(11);
            let mut sent = 0;
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            while producing.load(Ordering::Relaxed) {
                tick.tick().await;
                produce(&producer, &events(&mut rng, RECORDS_PER_S / 10)).await;
                sent += RECORDS_PER_S / 10;
            }
            sent
        })
    };

    let cookie = login(&serve.url).await;
    let page = format!("{}/d/overview", serve.url);
    let api = format!(
        "{}/api/v1/figures/monthly?from=2024-06&to=2024-07&figures=active_users,messages&breakdowns=server",
        serve.url
    );
    let client = reqwest::Client::new();
    // Warm: the first request of each kind after the service started.
    for (url, cookie) in [(&page, Some(&cookie)), (&api, None)] {
        assert_eq!(request(&client, url, cookie).await.0, 200, "{url}");
    }
    let until = Instant::now() + duration;
    let started = Instant::now();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|n| {
            let (client, page, api, cookie) =
                (client.clone(), page.clone(), api.clone(), cookie.clone());
            tokio::spawn(async move {
                let (mut pages, mut apis, mut failures) = (Vec::new(), Vec::new(), 0);
                let mut turn = n;
                while Instant::now() < until {
                    let (status, ms) = if turn % 2 == 0 {
                        let answer = request(&client, &page, Some(&cookie)).await;
                        pages.push(answer.1);
                        answer
                    } else {
                        let answer = request(&client, &api, None).await;
                        apis.push(answer.1);
                        answer
                    };
                    if status != 200 || ms.is_nan() {
                        if failures == 0 {
                            eprintln!("client {n}: status {status}");
                        }
                        failures += 1;
                    }
                    turn += 1;
                }
                (pages, apis, failures)
            })
        })
        .collect();
    let (mut pages, mut apis, mut failures) = (Vec::new(), Vec::new(), 0);
    for client in clients {
        let (p, a, f) = client.await.expect("client task");
        pages.extend(p);
        apis.extend(a);
        failures += f;
    }
    let elapsed = started.elapsed().as_secs_f64();
    producing.store(false, Ordering::Relaxed);
    let produced = producer_task.await.expect("producer task");
    let rows_written = ingest.metric("mxpulse_ingest_rows_written_total");
    assert!(ingest.stop(), "the ingest stops cleanly");
    assert_eq!(failures, 0, "every request answered 200");
    let requests = pages.len() + apis.len();
    json!({
        "machine": common::machine(),
        "profile": common::PROFILE,
        "date": chrono::Utc::now().format("%Y-%m-%d").to_string(),
        "scale": scale,
        "clients": CLIENTS,
        "seconds": elapsed,
        "requests": requests,
        "requests_per_s": requests as f64 / elapsed,
        "page_p50_ms": percentile(&mut pages, 0.5),
        "page_p99_ms": percentile(&mut pages, 0.99),
        "api_p50_ms": percentile(&mut apis, 0.5),
        "api_p99_ms": percentile(&mut apis, 0.99),
        "records_produced": produced,
        "records_written_by_ingest": rows_written,
    })
}

/// A viewer's session cookie, as the login page's form gets it.
async fn login(url: &str) -> String {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let response = client
        .post(format!("{url}/login"))
        .form(&[("token", VIEWER)])
        .send()
        .await
        .expect("login");
    let cookie = response
        .headers()
        .get(reqwest::header::SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::to_owned);
    cookie.unwrap_or_else(|| panic!("no session cookie: {}", response.status()))
}

/// One GET: its status and milliseconds (the whole body read).
async fn request(client: &reqwest::Client, url: &str, cookie: Option<&String>) -> (u16, f64) {
    let sent = Instant::now();
    let mut request = client.get(url);
    request = match cookie {
        Some(cookie) => request.header(reqwest::header::COOKIE, cookie.as_str()),
        None => request.bearer_auth(VIEWER),
    };
    match request.send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            let body = response.bytes().await.map(|b| b.len()).unwrap_or(0);
            std::hint::black_box(body);
            (status, sent.elapsed().as_secs_f64() * 1000.0)
        }
        Err(_) => (0, f64::NAN),
    }
}

fn percentile(samples: &mut [f64], p: f64) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    samples.sort_by(f64::total_cmp);
    samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)]
}

fn markdown(r: &Value) -> String {
    let f = |key: &str| r[key].as_f64().unwrap_or(f64::NAN);
    format!(
        "Measured {} on {} ({} build), a lake of June and July 2024 at scale {}, {} clients for \
         {:.0} s while the ingest wrote {} new records into the same lake ({} produced at \
         1,000 a second).\n\n\
         | at {} concurrent clients | p50 | p99 |\n|---|---|---|\n\
         | Overview dashboard page | {:.1} ms | **{:.1} ms** (target < 100) |\n\
         | figures API, two figures by server over two months | {:.1} ms | **{:.1} ms** (target < 100) |\n\n\
         {} requests, {:.0} a second, every one answered 200.",
        r["date"].as_str().unwrap_or("?"),
        r["machine"].as_str().unwrap_or("?"),
        r["profile"].as_str().unwrap_or("?"),
        r["scale"].as_str().unwrap_or("?"),
        r["clients"],
        f("seconds"),
        r["records_written_by_ingest"],
        r["records_produced"],
        r["clients"],
        f("page_p50_ms"),
        f("page_p99_ms"),
        f("api_p50_ms"),
        f("api_p99_ms"),
        r["requests"],
        f("requests_per_s"),
    )
}
