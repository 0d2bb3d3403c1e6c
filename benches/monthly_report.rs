//! The managers' monthly report at the federation's size, through `mxpulse serve` over the
//! benchmark lake of `figures_latency` (scale 1 by default: Tchap's size, kept under the build
//! cache): the first report of a closed month (counted, written in every format and frozen),
//! each format then, the frozen report served (one at a time, and 100 managers at once), a new
//! process serving the frozen files, 100 managers at once asking for a report not made yet, and
//! the same while the machine absorbs a peak (the simulator writing a lake through the
//! ingest's writer on both cores, and two dashboards users asking for figures without pause),
//! with the dashboards' latency meanwhile.
//!
//! `cargo bench --bench monthly_report -- [--scale 1] [--from 2023-07] [--to 2024-07]
//! [--runs 30] [--crowd 100] [--write]`: `--write` puts the table into BENCHMARKS.md (between
//! its `reports` markers) and the raw numbers into docs/bench/reports.json.
//!
//! Under `cargo test` (no `--bench` argument) it is a smoke run at a tiny scale: every number
//! is produced, every answer checked; no speed is asserted.

#[path = "../tests/harness/mod.rs"]
mod harness;

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use common::{benchmark_lake, machine, median, mxpulse};
use harness::serve::{Serve, VIEWER, start_with};
use serde_json::{Value, json};

struct Plan {
    scale: String,
    from: String,
    to: String,
    runs: usize,
    crowd: usize,
    write: bool,
    smoke: bool,
}

impl Plan {
    fn from_args() -> Plan {
        let args = common::BenchArgs::from_env();
        let smoke = args.smoke();
        let value = |name: &str| args.value(name);
        let (scale, from, runs, crowd) = if smoke {
            ("0.002", "2024-05", 3, 10)
        } else {
            ("1", "2023-07", 30, 100)
        };
        Plan {
            scale: value("--scale").unwrap_or_else(|| scale.into()),
            from: value("--from").unwrap_or_else(|| from.into()),
            to: value("--to").unwrap_or_else(|| "2024-07".into()),
            runs: value("--runs").and_then(|r| r.parse().ok()).unwrap_or(runs),
            crowd: value("--crowd")
                .and_then(|r| r.parse().ok())
                .unwrap_or(crowd),
            write: args.flag("--write"),
            smoke,
        }
    }
}

/// `serve` over `lake`, its frozen reports under `store`, nothing made ahead of requests.
fn serve(work: &Path, lake: &Path, store: &Path) -> Serve {
    std::fs::create_dir_all(work).expect("work dir");
    start_with(
        work,
        lake,
        &format!(
            "figures_timeout_ms = 3600000\nquery_memory_bytes = 8589934592\nrefresh_ms = 3600000\n\
             [reports]\ndir = \"{}\"\nprepare_interval_ms = 0\nqueue_timeout_ms = 3600000\n",
            store.display()
        ),
    )
}

/// Seconds of one request for a report file, checked: 200, and what it says it is.
async fn fetch(client: &reqwest::Client, url: &str) -> (f64, reqwest::header::HeaderMap, usize) {
    let started = Instant::now();
    let response = client
        .get(url)
        .bearer_auth(VIEWER)
        .send()
        .await
        .expect("request");
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.bytes().await.expect("body");
    let seconds = started.elapsed().as_secs_f64();
    assert!(
        status.is_success(),
        "{url}: {status} {}",
        String::from_utf8_lossy(&bytes)
    );
    (seconds, headers, bytes.len())
}

fn percentile(samples: &[f64], p: f64) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// `crowd` requests for `url` at once: their latencies.
async fn at_once(url: &str, crowd: usize) -> Value {
    let client = reqwest::Client::new();
    let tasks: Vec<_> = (0..crowd)
        .map(|_| {
            let (client, url) = (client.clone(), url.to_owned());
            tokio::spawn(async move { fetch(&client, &url).await.0 })
        })
        .collect();
    let mut times = Vec::new();
    for task in tasks {
        times.push(task.await.expect("request task"));
    }
    json!({
        "requests": crowd,
        "p50_s": percentile(&times, 0.5),
        "p99_s": percentile(&times, 0.99),
        "max_s": percentile(&times, 1.0),
    })
}

/// `runs` requests one after the other: the first, the median and the 99th percentile of the
/// rest.
async fn in_turn(url: &str, runs: usize) -> Value {
    let client = reqwest::Client::new();
    let mut times = Vec::new();
    for _ in 0..runs.max(2) {
        times.push(fetch(&client, url).await.0);
    }
    json!({
        "first_s": times[0],
        "median_s": median(times[1..].to_vec()),
        "p99_s": percentile(&times[1..], 0.99),
    })
}

/// The count's own time, from the service's log (`report frozen ... ms=`).
fn logged_count_ms(serve: &Serve) -> Option<f64> {
    let log = std::fs::read_to_string(&serve.log).ok()?;
    log.lines()
        .filter(|l| l.contains("report frozen"))
        .find_map(|l| l.split("ms=").nth(1))
        .and_then(|ms| ms.split_whitespace().next())
        .and_then(|ms| ms.parse().ok())
}

fn main() {
    let plan = Plan::from_args();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let scratch = tempfile::tempdir().expect("temp dir");
    let smoke_dir = plan.smoke.then(|| scratch.path());
    let (lake, made) = benchmark_lake(&plan.scale, &plan.from, &plan.to, smoke_dir);
    mxpulse(&lake, &["lake", "rollup"]);
    let month = plan.to.clone();
    let work = tempfile::tempdir().expect("temp dir");
    let formats = ["pdf", "xlsx", "csv.zip", "html"];

    // A closed month asked for the first time: counted, written in every format, frozen.
    let store = work.path().join("store");
    let first = serve(&work.path().join("a"), &lake, &store);
    let pdf_url = format!("{}/reports/{month}.pdf", first.url);
    let client = reqwest::Client::new();
    let (cold_s, headers, pdf_bytes) = runtime.block_on(fetch(&client, &pdf_url));
    assert_eq!(headers["x-mxpulse-report"], "frozen", "{month} is closed");
    let mut files = serde_json::Map::new();
    for format in formats {
        let url = format!("{}/reports/{month}.{format}", first.url);
        let (s, _, bytes) = runtime.block_on(fetch(&client, &url));
        files.insert(format.into(), json!({"bytes": bytes, "then_s": s}));
    }
    let (png_s, _, png_bytes) = runtime.block_on(fetch(
        &client,
        &format!("{}/reports/{month}/messages.png", first.url),
    ));
    files.insert("png".into(), json!({"bytes": png_bytes, "then_s": png_s}));
    let count_ms = logged_count_ms(&first);
    // Frozen, served: one at a time, then a crowd.
    let frozen = runtime.block_on(in_turn(&pdf_url, plan.runs));
    let frozen_crowd = runtime.block_on(at_once(&pdf_url, plan.crowd));
    drop(first);

    // A new process over the frozen store.
    let second = serve(&work.path().join("b"), &lake, &store);
    let restarted = runtime.block_on(in_turn(
        &format!("{}/reports/{month}.pdf", second.url),
        plan.runs,
    ));
    drop(second);

    // A crowd asking for a report not made yet (a new store): one count for all.
    let third = serve(&work.path().join("c"), &lake, &work.path().join("store-c"));
    let crowd_cold = runtime.block_on(at_once(
        &format!("{}/reports/{month}.pdf", third.url),
        plan.crowd,
    ));
    drop(third);

    // The same during a peak: the simulator writing a lake through the ingest's writer, and
    // two dashboards users asking for a year of figures without pause.
    let peak_lake = work.path().join("peak-lake");
    let mut writer = Command::new(harness::mxpulse_bin())
        .args([
            "generate",
            "--scale",
            if plan.smoke { "0.01" } else { "0.3" },
        ])
        .args(["--from", "2024-01", "--to", "2024-06", "--lake"])
        .arg(&peak_lake)
        .env("MXPULSE_PSEUDONYM_KEY", common::PSEUDONYM_KEY)
        .env("MXPULSE_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the peak's writer");
    let fourth = serve(&work.path().join("d"), &lake, &work.path().join("store-d"));
    let figures_url = format!(
        "{}/api/v1/figures/monthly?from={}&to={month}&figures=active_users,messages&breakdowns=server",
        fourth.url, plan.from
    );
    let (peak_report, dashboards) = runtime.block_on(async {
        // Warm the rollups' index first: the peak is not a cold start.
        fetch(&reqwest::Client::new(), &format!("{figures_url}&x=warm")).await;
        let stop = Arc::new(AtomicBool::new(false));
        let users: Vec<_> = (0..2)
            .map(|_| {
                let (stop, url) = (stop.clone(), figures_url.clone());
                tokio::spawn(async move {
                    let client = reqwest::Client::new();
                    let mut times = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        times.push(fetch(&client, &url).await.0);
                    }
                    times
                })
            })
            .collect();
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        let report = at_once(&format!("{}/reports/{month}.pdf", fourth.url), plan.crowd).await;
        stop.store(true, Ordering::Relaxed);
        let mut times = Vec::new();
        for user in users {
            times.extend(user.await.expect("dashboards user"));
        }
        let dashboards = json!({
            "requests": times.len(),
            "median_s": median(times.clone()),
            "p99_s": percentile(&times, 0.99),
        });
        (report, dashboards)
    });
    let writer_running = writer.try_wait().expect("writer").is_none();
    harness::stop(&mut writer);
    drop(fourth);

    let result = json!({
        "machine": machine(),
        "scale": plan.scale, "from": plan.from, "to": plan.to, "month": month,
        "lake": made,
        "first": {"all_formats_s": cold_s, "count_and_write_ms": count_ms, "pdf_bytes": pdf_bytes, "files": files},
        "frozen": frozen,
        "frozen_crowd": frozen_crowd,
        "restarted": restarted,
        "crowd_not_made": crowd_cold,
        "peak": {"report_crowd": peak_report, "dashboards": dashboards, "writer_still_running": writer_running},
    });
    let table = markdown(&result);
    println!("{table}");
    if plan.write {
        common::write_results("reports", &table, &result);
    }
}

fn ms(value: &Value) -> String {
    value.as_f64().map_or_else(
        || "—".into(),
        |s| {
            let ms = s * 1000.0;
            if ms < 10.0 {
                format!("{ms:.2} ms")
            } else {
                format!("{ms:.0} ms")
            }
        },
    )
}

fn markdown(r: &Value) -> String {
    let mut out = format!(
        "Measured {} on {} ({} build), scale {} ({} to {}), the report of {}.\n\n\
         | | time | target |\n|---|---|---|\n",
        chrono::Utc::now().format("%Y-%m-%d"),
        r["machine"].as_str().unwrap_or("?"),
        common::PROFILE,
        r["scale"].as_str().unwrap_or("?"),
        r["from"].as_str().unwrap_or("?"),
        r["to"].as_str().unwrap_or("?"),
        r["month"].as_str().unwrap_or("?"),
    );
    let rows = [
        (
            format!(
                "first request of a closed month: counted, every format written (PDF {} KB, XLSX, CSV, PNG, HTML), frozen; the count and writing alone: {} ms",
                r["first"]["pdf_bytes"].as_u64().unwrap_or(0) / 1024,
                r["first"]["count_and_write_ms"]
                    .as_f64()
                    .map_or_else(|| "?".into(), |ms| format!("{ms:.0}"))
            ),
            ms(&r["first"]["all_formats_s"]),
            "< 2 s",
        ),
        (
            "frozen PDF served, one request at a time (median)".into(),
            ms(&r["frozen"]["median_s"]),
            "< 50 ms",
        ),
        (
            "frozen PDF served, one at a time (p99)".into(),
            ms(&r["frozen"]["p99_s"]),
            "",
        ),
        (
            format!(
                "{} managers at once, frozen PDF (p99)",
                r["frozen_crowd"]["requests"]
            ),
            ms(&r["frozen_crowd"]["p99_s"]),
            "< 1 s",
        ),
        (
            "a new process serving the frozen PDF: first request (loads the rollups), then median"
                .into(),
            format!(
                "{} / {}",
                ms(&r["restarted"]["first_s"]),
                ms(&r["restarted"]["median_s"])
            ),
            "",
        ),
        (
            format!(
                "{} managers at once, report not made yet, new process (p99; one count for all)",
                r["crowd_not_made"]["requests"]
            ),
            ms(&r["crowd_not_made"]["p99_s"]),
            "< 1 s",
        ),
        (
            format!(
                "the same during a peak (a lake being written on both cores, two dashboards users without pause): {} managers, p99",
                r["peak"]["report_crowd"]["requests"]
            ),
            ms(&r["peak"]["report_crowd"]["p99_s"]),
            "< 1 s",
        ),
        (
            format!(
                "meanwhile, the dashboards' figures ({} requests): median / p99",
                r["peak"]["dashboards"]["requests"]
            ),
            format!(
                "{} / {}",
                ms(&r["peak"]["dashboards"]["median_s"]),
                ms(&r["peak"]["dashboards"]["p99_s"])
            ),
            "",
        ),
    ];
    for (what, time, target) in rows {
        out.push_str(&format!("| {what} | **{time}** | {target} |\n"));
    }
    out
}
