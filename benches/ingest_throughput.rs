//! The ingest's throughput beside the transport's limit and DuckDB: one `mxpulse ingest` process
//! moving event records from Kafka (the mock cluster, in a process of its own) into a Delta lake
//! on local disk with the default flush policy, in the same run as
//!
//! - a bare rdkafka consumer draining the same topic (no decoding, no writing): the transport's
//!   limit on this machine;
//! - the conversion stage alone: the same records as JSON lines into Parquet by mxpulse's writer
//!   (decode, Arrow, Parquet with the lake's settings) and by DuckDB's
//!   `COPY (SELECT * FROM read_json(..)) TO .. (FORMAT parquet)` (`benches/peers/convert.py`);
//! - the bytes per record of the lake beside DuckDB's Parquet of the same rows;
//! - the same ingest into a lake on S3 (moto's server on loopback).
//!
//! Run: `cargo bench --bench ingest_throughput -- [--records 2000000] [--write]` (`--write`
//! puts the table into BENCHMARKS.md and the figures into `docs/bench/ingest.json`). Under
//! `cargo test --bench ingest_throughput` (the test command) a smoke run of 20,000 records that
//! checks every number is produced and the lake holds every record, and measures nothing.

#[path = "../tests/harness/mod.rs"]
mod harness;
// Shared with the other benches; this one uses part of it.
#[allow(dead_code)]
mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::BenchArgs;
use harness::pipeline::*;
use harness::{Broker, cpu_seconds};
use mxpulse_schemas::{EventRecord, Record};
use serde_json::{Value, json};

fn main() {
    let args = BenchArgs::from_env();
    let smoke = args.smoke();
    let records: usize = args
        .value("--records")
        .and_then(|r| r.parse().ok())
        .unwrap_or(if smoke { 20_000 } else { 2_000_000 });
    // The mock cluster keeps at most 5 MB per partition (~19,000 records of ~260 bytes).
    let partitions = (records / 15_000 + 1).clamp(4, 256) as i32;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let result = runtime.block_on(run(records, partitions, smoke));
    if smoke {
        // Every number produced, none asserted: a smoke run measures nothing.
        for key in [
            "bare_drain_records_per_s",
            "ingest_records_per_s",
            "ingest_sustained_records_per_s",
            "ingest_s3_records_per_s",
            "ingest_s3_sustained_records_per_s",
            "lake_bytes_per_record",
            "duckdb_bytes_per_record",
        ] {
            let value = result[key].as_f64().unwrap_or(f64::NAN);
            assert!(value.is_finite() && value > 0.0, "{key}: {value}");
        }
        for engine in ["mxpulse", "duckdb"] {
            let seconds = result["conversion"][engine]["seconds"].as_f64();
            assert!(seconds.is_some_and(|s| s > 0.0), "{engine}'s conversion");
        }
    }
    let table = markdown(&result);
    println!("{table}");
    if args.flag("--write") {
        common::write_results("ingest", &table, &result);
    }
}

async fn run(records: usize, partitions: i32, smoke: bool) -> Value {
    let broker = Broker::dedicated_mock(partitions);
    let dir = tempfile::tempdir().expect("temp dir");
    let lake = dir.path().join("lake");
    // The default flush policy (100k rows, 64 MiB, 5 s), as in production; a smoke run commits
    // every 5,000 rows, so that its few records still make several commits.
    let max_rows = if smoke { 5_000 } else { 100_000 };
    let config = write_config(dir.path(), &broker.bootstrap, &lake, "bench", max_rows);
    let text = std::fs::read_to_string(&config)
        .expect("config")
        .replace("flush_max_latency_ms = 100", "flush_max_latency_ms = 5000");
    std::fs::write(&config, text).expect("config");

    let mut rng = Rng(42);
    let generated = Instant::now();
    let batches: Vec<Vec<EventRecord>> = (0..records.div_ceil(50_000))
        .map(|i| events(&mut rng, (records - i * 50_000).min(50_000)))
        .collect();
    let generate_s = generated.elapsed().as_secs_f64();
    let total = batches.iter().map(Vec::len).sum::<usize>();
    let producer = producer(&broker.bootstrap);
    let produced = Instant::now();
    for chunk in &batches {
        produce(&producer, chunk).await;
    }
    let produce_s = produced.elapsed().as_secs_f64();

    let drained = Instant::now();
    let drain_count = bare_drain(&broker.bootstrap, total);
    let drain_s = drained.elapsed().as_secs_f64();
    assert_eq!(drain_count, total, "the bare consumer read every message");

    let started = Instant::now();
    let ingest = Ingest::start(&config, dir.path(), "bench");
    wait_caught_up(&broker.bootstrap, &lake, "bench", Duration::from_secs(3600)).await;
    let ingest_s = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds(ingest.pid());
    let status = mxpulse_ingest::maintenance::status(&lake_root(&lake), "bench")
        .await
        .expect("lake status");
    let log = std::fs::read_to_string(dir.path().join("ingest-bench.log")).unwrap_or_default();
    assert!(ingest.stop(), "the ingest stops cleanly");
    let events = status
        .iter()
        .find(|t| t.table == "events")
        .expect("events table");
    assert_eq!(events.rows as usize, total, "the lake holds every record");
    let sustained = sustained_rate(&log).expect("the ingest logged its commits");

    // The same records by a second ingest (its own group) into a lake on S3: moto's server on
    // loopback, so this measures the ingest's S3 path and moto (a Python server), not AWS.
    let s3 = harness::s3::S3Server::start(dir.path(), "bench");
    let s3_root = "s3://bench/lake";
    s3.use_in_process(s3_root);
    let s3_config = write_config_on(
        dir.path(),
        &broker.bootstrap,
        &s3.lake_settings(s3_root),
        "bench-s3",
        max_rows,
        "",
        "",
    );
    let text = std::fs::read_to_string(&s3_config)
        .expect("config")
        .replace("flush_max_latency_ms = 100", "flush_max_latency_ms = 5000");
    std::fs::write(&s3_config, text).expect("config");
    let started = Instant::now();
    let on_s3 = Ingest::start(&s3_config, dir.path(), "bench-s3");
    wait_caught_up(
        &broker.bootstrap,
        Path::new(s3_root),
        "bench-s3",
        Duration::from_secs(3600),
    )
    .await;
    let s3_s = started.elapsed().as_secs_f64();
    let s3_log =
        std::fs::read_to_string(dir.path().join("ingest-bench-s3.log")).unwrap_or_default();
    assert!(on_s3.stop(), "the ingest on S3 stops cleanly");
    let s3_sustained = sustained_rate(&s3_log).expect("the ingest on S3 logged its commits");
    drop(s3);

    let wire_bytes: usize = batches
        .iter()
        .flatten()
        .map(|e| mxpulse_schemas::encode(e).payload.len())
        .sum();
    let conversion = convert_both(dir.path(), &batches);
    let duckdb_bytes = conversion["duckdb"]["bytes"].as_f64().unwrap_or(0.0);
    json!({
        "machine": common::machine(),
        "profile": common::PROFILE,
        "date": chrono::Utc::now().format("%Y-%m-%d").to_string(),
        "records": total,
        "partitions": partitions,
        "generate_records_per_s": total as f64 / generate_s,
        "produce_records_per_s": total as f64 / produce_s,
        "bare_drain_records_per_s": total as f64 / drain_s,
        "ingest_s": ingest_s,
        "ingest_records_per_s": total as f64 / ingest_s,
        "ingest_sustained_records_per_s": sustained.0,
        "ingest_commits": sustained.1,
        "ingest_s3_records_per_s": total as f64 / s3_s,
        "ingest_s3_sustained_records_per_s": s3_sustained.0,
        "ingest_cpu_s": cpu,
        "lake_files": events.files,
        "lake_bytes": events.bytes,
        "lake_bytes_per_record": events.bytes as f64 / total as f64,
        "duckdb_bytes_per_record": duckdb_bytes / total as f64,
        "wire_bytes_per_record": wire_bytes as f64 / total as f64,
        "conversion": conversion,
    })
}

/// Reads every message of the events topic with a bare rdkafka consumer (no decoding, no
/// writing), from its creation to the last message: the transport's limit on this machine.
fn bare_drain(bootstrap: &str, total: usize) -> usize {
    use rdkafka::Message;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "bare-drain")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("bare consumer");
    consumer
        .subscribe(&[mxpulse_schemas::topics::EVENTS])
        .expect("subscribe");
    let (mut count, mut bytes) = (0, 0usize);
    let deadline = Instant::now() + Duration::from_secs(600);
    while count < total && Instant::now() < deadline {
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) {
            bytes += message.payload().map_or(0, <[u8]>::len);
            count += 1;
        }
    }
    std::hint::black_box(bytes);
    count
}

/// Records per second from the end of the ingest's first commit to the end of its last full
/// one (the process start and the group join left out, and the last commit too: a partial
/// batch, it waits for the flush latency, 5 s), and the number of commits.
fn sustained_rate(log: &str) -> Option<(f64, usize)> {
    let commits: Vec<(chrono::DateTime<chrono::Utc>, u64)> = log
        .lines()
        .filter(|l| l.contains(" committed ") && l.contains("table=\"events\""))
        .filter_map(|l| {
            let at = l.split_whitespace().next()?.parse().ok()?;
            let rows = l
                .split("rows=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()?;
            Some((at, rows))
        })
        .collect();
    let full = &commits[..commits.len().saturating_sub(1).max(2).min(commits.len())];
    let (first, last) = (full.first()?, full.last()?);
    let seconds = (last.0 - first.0).as_seconds_f64();
    let rows: u64 = full.iter().skip(1).map(|c| c.1).sum();
    Some((
        if seconds > 0.0 {
            rows as f64 / seconds
        } else {
            0.0
        },
        commits.len(),
    ))
}

/// The same records as JSON lines into one Parquet file, by mxpulse's writer and by DuckDB.
fn convert_both(dir: &Path, batches: &[Vec<EventRecord>]) -> Value {
    let jsonl = dir.join("records.jsonl");
    let mut text = Vec::new();
    for record in batches.iter().flatten() {
        text.extend_from_slice(&mxpulse_schemas::encode(record).payload);
        text.push(b'\n');
    }
    std::fs::write(&jsonl, &text).expect("write records.jsonl");

    let ours = dir.join("mxpulse.parquet");
    let started = Instant::now();
    let (rows, stages) = mxpulse_convert(&text, &ours);
    let mxpulse_s = started.elapsed().as_secs_f64();
    let mxpulse_bytes = std::fs::metadata(&ours).map_or(0, |m| m.len());

    let (arrow_json_s, arrow_json_rows) = arrow_json_decode(&text);
    assert_eq!(arrow_json_rows, rows, "arrow-json read every record");

    let theirs = dir.join("duckdb.parquet");
    let out = Command::new(harness::python())
        .arg(harness::repo_root().join("benches/peers/convert.py"))
        .arg(&jsonl)
        .arg(&theirs)
        .output()
        .expect("python");
    assert!(
        out.status.success(),
        "duckdb: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let duckdb: Value = serde_json::from_slice(&out.stdout).expect("DuckDB's JSON");
    assert_eq!(
        duckdb["rows"].as_u64(),
        Some(rows as u64),
        "DuckDB read every record"
    );
    json!({
        "json_bytes": text.len(),
        "mxpulse": {"seconds": mxpulse_s, "rows": rows, "bytes": mxpulse_bytes, "threads": 1,
            "decode_s": stages[0], "arrow_s": stages[1], "parquet_s": stages[2]},
        "duckdb": duckdb,
        "arrow_json_decode_s": arrow_json_s,
    })
}

/// What the ingest does to a table's batch, on one thread: each line decoded and validated as
/// a record, sorted by time, made an Arrow batch and written as Parquet with the lake's settings.
/// The rows, and the seconds of each stage: decoding, Arrow, Parquet.
fn mxpulse_convert(jsonl: &[u8], out: &Path) -> (usize, [f64; 3]) {
    let started = Instant::now();
    use deltalake::parquet::arrow::ArrowWriter;
    let header = mxpulse_schemas::Envelope::version_header();
    let mut records: Vec<EventRecord> = jsonl
        .split(|b| *b == b'\n')
        .filter(|line| !line.is_empty())
        .map(|line| mxpulse_schemas::decode(Some(header.as_bytes()), line).expect("a valid record"))
        .collect();
    let decoded = Instant::now();
    records.sort_by_key(Record::time_micros);
    let batch = EventRecord::to_record_batch(&records).expect("Arrow batch");
    let arrow = Instant::now();
    let file = std::fs::File::create(out).expect("create the Parquet file");
    let mut writer = ArrowWriter::try_new(
        file,
        batch.schema(),
        Some(mxpulse_ingest::lake::writer_properties()),
    )
    .expect("Parquet writer");
    writer.write(&batch).expect("write Parquet");
    writer.close().expect("close Parquet");
    let stages = [decoded - started, arrow - decoded, arrow.elapsed()];
    (records.len(), stages.map(|d| d.as_secs_f64()))
}

/// The alternative to the records' own decoding the issue names: arrow-json's `Decoder`, JSON
/// bytes straight into Arrow batches against the wire schema (strings as sent: the hex
/// pseudonyms, the vocabularies unchecked). Its seconds and rows.
fn arrow_json_decode(jsonl: &[u8]) -> (f64, usize) {
    use arrow_json::reader::{ReaderBuilder, infer_json_schema_from_iterator};
    let sample = jsonl
        .split(|b| *b == b'\n')
        .filter(|line| !line.is_empty())
        .take(10_000)
        .map(|line| {
            serde_json::from_slice::<Value>(line)
                .map_err(|e| arrow_schema::ArrowError::JsonError(e.to_string()))
        });
    let schema = infer_json_schema_from_iterator(sample).expect("the wire schema");
    let started = Instant::now();
    let mut decoder = ReaderBuilder::new(std::sync::Arc::new(schema))
        .with_batch_size(100_000)
        .build_decoder()
        .expect("arrow-json decoder");
    let (mut rest, mut rows) = (jsonl, 0);
    while !rest.is_empty() {
        let read = decoder.decode(rest).expect("arrow-json decodes");
        rest = &rest[read..];
        if let Some(batch) = decoder.flush().expect("arrow-json batch") {
            rows += batch.num_rows();
        }
    }
    if let Some(batch) = decoder.flush().expect("arrow-json batch") {
        rows += batch.num_rows();
    }
    (started.elapsed().as_secs_f64(), rows)
}

fn markdown(r: &Value) -> String {
    let f = |key: &str| r[key].as_f64().unwrap_or(f64::NAN);
    let c = &r["conversion"];
    let (ours, duck) = (
        c["mxpulse"]["seconds"].as_f64().unwrap_or(f64::NAN),
        c["duckdb"]["seconds"].as_f64().unwrap_or(f64::NAN),
    );
    let rows = f("records");
    format!(
        "Measured {} on {} ({} build), {} event records of ~{:.0} JSON bytes over {} partitions.\n\n\
         | | records/s | |\n|---|---|---|\n\
         | bare rdkafka consumer draining the topic (the transport's limit) | {:.0} | |\n\
         | **mxpulse ingest, sustained** (first commit to last full one, of {}) | **{:.0}** | {:.0}% of the bare drain; target 300,000 and 50% |\n\
         | mxpulse ingest, from process start to the last offset in the lake (the last, partial batch waits for the 5 s flush latency) | {:.0} | {:.1} s, CPU {:.1} s |\n\
         | mxpulse ingest into a lake on S3 (moto's server on loopback), sustained | {:.0} | from start to the last offset: {:.0} |\n\
         | conversion stage alone, JSON lines to Parquet: mxpulse's writer (1 thread) | {:.0} | {:.2} s: decoding {:.2} s, Arrow {:.2} s, Parquet {:.2} s |\n\
         | arrow-json's `Decoder` alone, into the wire form (strings, nothing validated) | {:.0} | {:.2} s, beside the records' decoding and Arrow {:.2} s |\n\
         | the same by DuckDB `COPY (SELECT * FROM read_json(..)) TO .. (FORMAT parquet)` ({} threads) | {:.0} | {:.2} s: mxpulse {:.2}x DuckDB; target 1.5x |\n\n\
         | bytes per record | |\n|---|---|\n\
         | in the lake (Parquet, zstd, {} files) | **{:.1}** ({:.2}x DuckDB's; target 0.8x) |\n\
         | mxpulse's writer, one file | {:.1} |\n\
         | DuckDB's default Parquet of the same rows | {:.1} |\n\
         | JSON on the wire | {:.1} |",
        r["date"].as_str().unwrap_or("?"),
        r["machine"].as_str().unwrap_or("?"),
        r["profile"].as_str().unwrap_or("?"),
        rows,
        f("wire_bytes_per_record"),
        r["partitions"],
        f("bare_drain_records_per_s"),
        r["ingest_commits"],
        f("ingest_sustained_records_per_s"),
        100.0 * f("ingest_sustained_records_per_s") / f("bare_drain_records_per_s"),
        f("ingest_records_per_s"),
        f("ingest_s"),
        f("ingest_cpu_s"),
        f("ingest_s3_sustained_records_per_s"),
        f("ingest_s3_records_per_s"),
        rows / ours,
        ours,
        c["mxpulse"]["decode_s"].as_f64().unwrap_or(f64::NAN),
        c["mxpulse"]["arrow_s"].as_f64().unwrap_or(f64::NAN),
        c["mxpulse"]["parquet_s"].as_f64().unwrap_or(f64::NAN),
        rows / c["arrow_json_decode_s"].as_f64().unwrap_or(f64::NAN),
        c["arrow_json_decode_s"].as_f64().unwrap_or(f64::NAN),
        c["mxpulse"]["decode_s"].as_f64().unwrap_or(f64::NAN)
            + c["mxpulse"]["arrow_s"].as_f64().unwrap_or(f64::NAN),
        c["duckdb"]["threads"],
        rows / duck,
        duck,
        duck / ours,
        r["lake_files"],
        f("lake_bytes_per_record"),
        f("lake_bytes_per_record") / f("duckdb_bytes_per_record"),
        c["mxpulse"]["bytes"].as_f64().unwrap_or(f64::NAN) / rows,
        f("duckdb_bytes_per_record"),
        f("wire_bytes_per_record"),
    )
}
