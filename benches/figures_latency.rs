//! The figures at the federation's size: a lake the simulator writes at `--scale` (1 is
//! Tchap's: ~240k monthly active users, ~6.5M messages a month), kept under the build cache and
//! reused across runs; the rollups' cost (built whole, and for a day of new data) and size;
//! then, through `mxpulse serve`, a manager's monthly report and a product lead's 24-month
//! overview, cold (the first request after start) and warm (the median), from the rollups and
//! from the raw tables; and the same figures computed by DuckDB and by chDB with equivalent SQL
//! over the same raw Parquet files (`benches/peers/figures.py`). The peers' headline values
//! must equal mxpulse's: that is what makes the SQL equivalent.
//!
//! `cargo bench --bench figures_latency -- [--scale 1] [--from 2023-07] [--to 2024-07]
//! [--runs 15] [--write]`: `--write` puts the table into BENCHMARKS.md (between its
//! `figures` markers) and the raw numbers into docs/bench/figures.json.
//!
//! Under `cargo test` (no `--bench` argument) it is a smoke run at a tiny scale in a temporary
//! directory: every number is produced and the peers agree with mxpulse; no speed is asserted.

#[path = "../tests/harness/mod.rs"]
mod harness;

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use serde_json::{Value, json};

use common::{benchmark_lake, dir_bytes, machine, median, mxpulse};

/// What to measure.
#[derive(Clone, Debug)]
struct Plan {
    scale: String,
    from: String,
    to: String,
    runs: usize,
    write: bool,
    smoke: bool,
}

impl Plan {
    fn from_args() -> Plan {
        let args = common::BenchArgs::from_env();
        let smoke = args.smoke();
        let value = |name: &str| args.value(name);
        let (scale, from, runs) = if smoke {
            ("0.002", "2024-05", 3)
        } else {
            ("1", "2023-07", 15)
        };
        Plan {
            scale: value("--scale").unwrap_or_else(|| scale.into()),
            from: value("--from").unwrap_or_else(|| from.into()),
            to: value("--to").unwrap_or_else(|| "2024-07".into()),
            runs: value("--runs").and_then(|r| r.parse().ok()).unwrap_or(runs),
            write: args.flag("--write"),
            smoke,
        }
    }

    /// The month of the report: the last one.
    fn month(&self) -> &str {
        &self.to
    }

    /// The overview's first month: 24 months up to the report's.
    fn overview_from(&self) -> String {
        let (year, month) = self.to.split_once('-').expect("YYYY-MM");
        let index: i32 =
            year.parse::<i32>().expect("year") * 12 + month.parse::<i32>().expect("month") - 1 - 23;
        format!("{:04}-{:02}", index / 12, index % 12 + 1)
    }
}

/// A day of new data: the last day's events and visits copied to the next day with new
/// identities. Returns that day, to delete it afterwards.
async fn append_next_day(lake: &Path, to: &str) -> String {
    use deltalake::datafusion::prelude::SessionContext;
    let root = mxpulse_ingest::LakeRoot::parse(&lake.display().to_string()).expect("lake");
    let last = mxpulse_query::figures::periods::month_end(to).expect("month");
    let next = last + chrono::Days::new(1);
    for (table, day_column, shift) in [
        ("events", "date", "ts + INTERVAL '1 day' AS ts"),
        ("visits", "day", ""),
    ] {
        let delta = mxpulse_query::lake::load_table(root.url(), table)
            .await
            .expect("load")
            .expect("table");
        let ctx = SessionContext::new();
        delta
            .update_datafusion_session(&ctx.state())
            .expect("session");
        ctx.register_table("t", delta.table_provider().await.expect("provider"))
            .expect("register");
        let columns: Vec<String> = ctx
            .table("t")
            .await
            .expect("table")
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().to_owned())
            .collect();
        let select: Vec<String> = columns
            .iter()
            .map(|c| match c.as_str() {
                "ts" if !shift.is_empty() => shift.to_owned(),
                c if c == day_column => format!("CAST('{next}' AS DATE) AS {c}"),
                c => format!("\"{c}\""),
            })
            .collect();
        let batches = ctx
            .sql(&format!(
                "SELECT {} FROM t WHERE {day_column} = CAST('{last}' AS DATE)",
                select.join(", ")
            ))
            .await
            .expect("select")
            .collect()
            .await
            .expect("collect");
        // New identities: each byte of the event pseudonym flipped.
        let batches: Vec<_> = batches
            .into_iter()
            .map(|b| {
                if table != "events" {
                    return b;
                }
                let i = b.schema().index_of("event").expect("event");
                let ids = deltalake::arrow::compute::cast(
                    b.column(i),
                    &deltalake::arrow::datatypes::DataType::Binary,
                )
                .expect("binary");
                let ids = ids
                    .as_any()
                    .downcast_ref::<deltalake::arrow::array::BinaryArray>()
                    .expect("binary");
                let flipped = deltalake::arrow::array::BinaryArray::from_iter_values(
                    (0..deltalake::arrow::array::Array::len(ids))
                        .map(|r| ids.value(r).iter().map(|b| b ^ 0xa5).collect::<Vec<u8>>()),
                );
                let mut columns = b.columns().to_vec();
                columns[i] = std::sync::Arc::new(flipped);
                let mut fields: Vec<_> = b.schema().fields().iter().cloned().collect();
                fields[i] = std::sync::Arc::new(deltalake::arrow::datatypes::Field::new(
                    "event",
                    deltalake::arrow::datatypes::DataType::Binary,
                    false,
                ));
                let schema = deltalake::arrow::datatypes::Schema::new(fields);
                deltalake::arrow::array::RecordBatch::try_new(std::sync::Arc::new(schema), columns)
                    .expect("batch")
            })
            .collect();
        delta.write(batches).await.expect("append the next day");
    }
    next.to_string()
}

async fn delete_day(lake: &Path, day: &str) {
    let root = mxpulse_ingest::LakeRoot::parse(&lake.display().to_string()).expect("lake");
    for (table, column) in [("events", "date"), ("visits", "day")] {
        let delta = mxpulse_query::lake::load_table(root.url(), table)
            .await
            .expect("load")
            .expect("table");
        delta
            .delete()
            .with_predicate(format!("{column} = CAST('{day}' AS DATE)"))
            .await
            .expect("delete the added day");
    }
}

/// Seconds of one request (the answer must be 200 and, for figures, from `source`).
async fn request(url: &str, source: &str) -> (f64, Value) {
    let started = Instant::now();
    let response = reqwest::Client::new()
        .get(format!("{url}&source={source}"))
        .bearer_auth(harness::serve::VIEWER)
        .send()
        .await
        .expect("request");
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    let seconds = started.elapsed().as_secs_f64();
    assert!(status.is_success(), "{url}: {status} {body}");
    if let Some(answered) = body.get("source") {
        assert_eq!(answered, source, "{url}");
    }
    (seconds, body)
}

/// Cold (first) and warm (median of the rest) seconds of a set of requests run in turn.
async fn timed(urls: &[String], source: &str, runs: usize) -> (Value, Vec<Value>) {
    let mut times = Vec::new();
    let mut answers = Vec::new();
    for _ in 0..runs {
        let mut total = 0.0;
        answers.clear();
        for url in urls {
            let (seconds, body) = request(url, source).await;
            total += seconds;
            answers.push(body);
        }
        times.push(total);
    }
    let warm = if times.len() > 1 {
        median(times[1..].to_vec())
    } else {
        times[0]
    };
    (
        json!({"cold_s": times[0], "warm_s": warm, "runs": times.len()}),
        answers,
    )
}

fn headline(answer: &Value, month: &str) -> Value {
    let mut out = serde_json::Map::new();
    for cell in answer["cells"].as_array().into_iter().flatten() {
        if cell["period"] == month
            && cell["breakdown"] == "total"
            && let Some(figure) = cell["figure"].as_str()
        {
            out.insert(figure.to_owned(), cell["value"].clone());
        }
    }
    Value::Object(out)
}

fn peers(plan: &Plan, lake: &Path) -> Vec<Value> {
    // The tables' current files, for DuckDB's read_parquet (chDB reads the Delta log itself).
    let mut files = serde_json::Map::new();
    for table in ["events", "visits", "accounts"] {
        let mut paths: Vec<String> = std::fs::read_dir(lake.join(table))
            .expect("table dir")
            .flatten()
            .filter(|e| e.path().is_dir() && !e.file_name().to_string_lossy().starts_with('_'))
            .flat_map(|d| std::fs::read_dir(d.path()).into_iter().flatten().flatten())
            .map(|f| f.path().display().to_string())
            .filter(|p| p.ends_with(".parquet"))
            .collect();
        paths.sort();
        files.insert(table.to_owned(), json!(paths));
    }
    let listing = lake.with_extension("files.json");
    std::fs::write(&listing, Value::Object(files).to_string()).expect("files.json");
    let script = harness::repo_root().join("benches/peers/figures.py");
    ["duckdb", "chdb"]
        .iter()
        .map(|engine| {
            let out = Command::new(harness::python())
                .arg(&script)
                .arg(engine)
                .arg(lake)
                .arg(&listing)
                .args([
                    plan.month(),
                    &plan.overview_from(),
                    "Europe/Paris",
                    &plan.runs.clamp(2, 7).to_string(),
                ])
                .output()
                .expect("python");
            assert!(
                out.status.success(),
                "{engine}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            serde_json::from_slice(&out.stdout).expect("peer JSON")
        })
        .collect()
}

fn main() {
    let plan = Plan::from_args();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let scratch = tempfile::tempdir().expect("temp dir");
    let smoke_dir = plan.smoke.then(|| scratch.path());
    let (lake, made) = benchmark_lake(&plan.scale, &plan.from, &plan.to, smoke_dir);

    // The rollups: built whole, then the cost of a day of new data.
    let (_, rebuild_s) = mxpulse(&lake, &["lake", "rollup", "--rebuild"]);
    let next_day = runtime.block_on(append_next_day(&lake, &plan.to));
    let (day_run, day_s) = mxpulse(&lake, &["lake", "rollup"]);
    runtime.block_on(delete_day(&lake, &next_day));
    let (_, undo_s) = mxpulse(&lake, &["lake", "rollup"]);
    mxpulse(&lake, &["lake", "vacuum", "--retain-hours", "0"]);
    // The rollups' current version only: the runs above left older files behind (no vacuum
    // runs on the rollups), which are no part of what the service reads.
    let rollup_bytes = runtime.block_on(rollup_current_bytes(&lake));
    let raw_bytes: u64 = ["events", "visits", "accounts"]
        .iter()
        .map(|t| dir_bytes(&lake.join(t)))
        .sum();

    // The service.
    let work = tempfile::tempdir().expect("temp dir");
    // Exact counts (`privacy.noise = 0`): the peers' answers are compared with mxpulse's to
    // the unit, so both publish the same numbers.
    let serve = harness::serve::start_on(
        work.path(),
        &format!(
            "[lake]\nroot = \"{}\"\n[privacy]\nnoise = 0\n",
            lake.display()
        ),
        // Every request counted (nothing kept): this measures the counting.
        "figures_timeout_ms = 3600000\nquery_memory_bytes = 8589934592\nrefresh_ms = 3600000\n\
         kept_answers = 0\n",
    );
    let month = plan.month().to_owned();
    let base = format!("{}/api/v1/figures", serve.url);
    let report_urls = vec![
        format!("{base}/monthly?from={month}&to={month}"),
        format!(
            "{base}/daily?from={month}-01&to={}",
            mxpulse_query::figures::periods::month_end(&month).expect("month")
        ),
        format!("{base}/forums?limit=10"),
    ];
    let overview_urls = vec![format!(
        "{base}/monthly?from={}&to={month}&figures=active_users,messages,rooms_created,accounts_created,total_active_accounts&breakdowns=none",
        plan.overview_from()
    )];
    let (report, report_answers) = runtime.block_on(timed(&report_urls, "rollups", plan.runs));
    let (overview, _) = runtime.block_on(timed(&overview_urls, "rollups", plan.runs));
    // The raw tables take seconds to minutes at scale 1: two runs, cold and warm.
    let raw_runs = 2;
    let (report_raw, raw_answers) = runtime.block_on(timed(&report_urls, "raw", raw_runs));
    let (overview_raw, _) = runtime.block_on(timed(&overview_urls, "raw", raw_runs));
    let identical = report_answers
        .iter()
        .zip(&raw_answers)
        .all(|(a, b)| a.get("cells").unwrap_or(a) == b.get("cells").unwrap_or(b));
    assert!(
        identical,
        "the report from the rollups differs from the raw tables'"
    );
    let ours = headline(&report_answers[0], &month);
    drop(serve);

    // The peers, and their agreement with mxpulse.
    let peers = peers(&plan, &lake);
    for peer in &peers {
        for (figure, value) in peer["headline"].as_object().into_iter().flatten() {
            if figure == "forums" {
                let forums = report_answers[2].as_array().map_or(0, Vec::len);
                assert_eq!(
                    value.as_u64(),
                    Some(forums as u64),
                    "{} forums",
                    peer["engine"]
                );
                continue;
            }
            assert_eq!(
                value.as_f64(),
                ours[figure].as_f64(),
                "{} {figure} differs from mxpulse's",
                peer["engine"]
            );
        }
    }
    let fastest = |what: &str| {
        peers
            .iter()
            .filter_map(|p| p[what]["warm_s"].as_f64())
            .fold(f64::INFINITY, f64::min)
    };
    let result = json!({
        "machine": machine(),
        "scale": plan.scale, "from": plan.from, "to": plan.to, "month": month,
        "lake": made,
        "raw_bytes": raw_bytes,
        "rollup_bytes": rollup_bytes,
        "rollup_rebuild_s": rebuild_s,
        "rollup_day_s": day_s,
        "rollup_day_run": day_run.trim(),
        "rollup_undo_s": undo_s,
        "report": {"rollups": report, "raw": report_raw},
        "overview": {"rollups": overview, "raw": overview_raw},
        "peers": peers,
        "headline": ours,
        "ratio_report": report["warm_s"].as_f64().unwrap_or(0.0) / fastest("report"),
        "ratio_overview": overview["warm_s"].as_f64().unwrap_or(0.0) / fastest("overview"),
        "identical_to_raw": identical,
    });
    let table = markdown(&result);
    println!("{table}");
    if plan.write {
        common::write_results("figures", &table, &result);
    }
}

fn markdown(r: &Value) -> String {
    let s = |v: &Value| {
        v.as_f64().map_or("?".into(), |x| {
            if x < 1.0 {
                format!("{:.0} ms", x * 1000.0)
            } else {
                format!("{x:.2} s")
            }
        })
    };
    let mb = |v: &Value| {
        v.as_f64()
            .map_or("?".into(), |x| format!("{:.1} MB", x / 1e6))
    };
    let peer = |engine: &str, what: &str, kind: &str| {
        r["peers"]
            .as_array()
            .and_then(|p| p.iter().find(|p| p["engine"] == engine))
            .map_or("?".into(), |p| s(&p[what][kind]))
    };
    let mut out = String::new();
    out.push_str(&format!(
        "Measured {} on {} ({} build), scale {} ({} to {}): {}\n\n",
        chrono::Utc::now().format("%Y-%m-%d"),
        r["machine"].as_str().unwrap_or("?"),
        common::PROFILE,
        r["scale"].as_str().unwrap_or("?"),
        r["from"].as_str().unwrap_or("?"),
        r["to"].as_str().unwrap_or("?"),
        r["lake"]["generate"].as_str().unwrap_or("?"),
    ));
    out.push_str(
        "| | mxpulse, rollups | mxpulse, raw tables | DuckDB | chDB |\n|---|---|---|---|---|\n",
    );
    for (label, what) in [
        (
            format!(
                "monthly report of {} (every figure and breakdown, MoM, YoY, peak day, days of the month, top forums)",
                r["month"].as_str().unwrap_or("?")
            ),
            "report",
        ),
        (
            "24-month overview (headline figures, totals, MoM, YoY)".to_owned(),
            "overview",
        ),
    ] {
        for kind in ["warm_s", "cold_s"] {
            out.push_str(&format!(
                "| {label}, {} | **{}** | {} | {} | {} |\n",
                if kind == "warm_s" {
                    "warm (median)"
                } else {
                    "cold (first)"
                },
                s(&r[what]["rollups"][kind]),
                s(&r[what]["raw"][kind]),
                peer("duckdb", what, kind),
                peer("chdb", what, kind),
            ));
        }
    }
    out.push_str(&format!(
        "\nWarm, mxpulse (rollups) answers the report {:.0} times faster than the fastest peer, \
         the overview {:.0} times. The rollups' answers are identical to the raw tables'; \
         DuckDB's and chDB's headline figures equal mxpulse's ({}).\n\n",
        1.0 / r["ratio_report"].as_f64().unwrap_or(1.0),
        1.0 / r["ratio_overview"].as_f64().unwrap_or(1.0),
        r["headline"],
    ));
    out.push_str(&format!(
        "| rollups | |\n|---|---|\n| built whole (`lake rollup --rebuild`) | {} |\n| a day of new data (`lake rollup` after it: {}) | {} |\n| size | {} beside {} of raw tables ({:.2}%) |\n| lake generation (once, kept under the build cache) | {}, compaction {} |\n",
        s(&r["rollup_rebuild_s"]),
        r["rollup_day_run"].as_str().unwrap_or("?").replace('|', "/"),
        s(&r["rollup_day_s"]),
        mb(&r["rollup_bytes"]),
        mb(&r["raw_bytes"]),
        r["rollup_bytes"].as_f64().unwrap_or(0.0) / r["raw_bytes"].as_f64().unwrap_or(1.0) * 100.0,
        s(&r["lake"]["generate_s"]),
        s(&r["lake"]["compact_s"]),
    ));
    out
}

/// Bytes of the files of the rollup tables' current versions.
async fn rollup_current_bytes(lake: &Path) -> u64 {
    use futures::TryStreamExt;
    use mxpulse_query::figures::rollup::{CELLS_TABLE, FORUM_MEMBERS_TABLE, ROOMS_TABLE};
    let root = mxpulse_ingest::LakeRoot::parse(&lake.display().to_string()).expect("lake");
    let mut bytes = 0;
    for name in [CELLS_TABLE, ROOMS_TABLE, FORUM_MEMBERS_TABLE] {
        let url = mxpulse_ingest::lake::table_url_at(&root, name);
        let table = deltalake::DeltaTableBuilder::from_url(url)
            .expect("rollup table url")
            .load()
            .await
            .expect("rollup table");
        let state = table.snapshot().expect("rollup snapshot");
        let files: Vec<_> = state
            .snapshot()
            .file_views(table.log_store().as_ref(), None)
            .try_collect()
            .await
            .expect("rollup files");
        bytes += files.iter().map(|f| f.size().max(0) as u64).sum::<u64>();
    }
    bytes
}
