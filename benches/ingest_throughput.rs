//! Ingest throughput bench: one `mxpulse ingest` process moving event records from Kafka (the
//! mock cluster in its own process) into a Delta lake on local disk, with the default flush
//! policy. Prints a report: records/s, bytes per record on disk, and the CPU the ingest used
//! (to tell whether it was CPU-bound).
//!
//! Run: `cargo bench --bench ingest_throughput -- [RECORDS]` (release build; default 500,000).

#[path = "../tests/harness/mod.rs"]
mod harness;

use std::time::{Duration, Instant};

use harness::pipeline::*;
use harness::{Broker, cpu_seconds};

fn main() {
    let records: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(500_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        // 64 partitions: the mock cluster keeps at most 5 MB per partition.
        let broker = Broker::dedicated_mock(64);
        let dir = tempfile::tempdir().unwrap();
        let dir_keep = dir.path().to_owned();
        eprintln!("bench dir {}", dir_keep.display());
        let lake = dir.path().join("lake");
        // Default flush policy (100k rows, 64 MiB, 5 s), as in production.
        let config = write_config(dir.path(), &broker.bootstrap, &lake, "bench", 100_000);
        let text = std::fs::read_to_string(&config)
            .unwrap()
            .replace("flush_max_latency_ms = 100", "flush_max_latency_ms = 5000");
        std::fs::write(&config, text).unwrap();

        let mut rng = Rng(42);
        let generated = Instant::now();
        let batch: Vec<_> = (0..records / 50_000)
            .map(|_| events(&mut rng, 50_000))
            .collect();
        let generate_secs = generated.elapsed().as_secs_f64();
        let producer = producer(&broker.bootstrap);
        let produced = Instant::now();
        for chunk in &batch {
            produce(&producer, chunk).await;
        }
        let produce_secs = produced.elapsed().as_secs_f64();
        let total = batch.iter().map(Vec::len).sum::<usize>();

        let started = Instant::now();
        let ingest = Ingest::start(&config, dir.path(), "bench");
        wait_caught_up(&broker.bootstrap, &lake, "bench", Duration::from_secs(3600)).await;
        let ingest_secs = started.elapsed().as_secs_f64();
        let cpu = cpu_seconds(ingest.pid());
        let status = mxpulse_ingest::maintenance::status(&lake_root(&lake), "bench")
            .await
            .unwrap();
        assert!(ingest.stop());
        let events = status.iter().find(|t| t.table == "events").unwrap();
        if events.rows as usize != total {
            let kept = dir.keep();
            panic!(
                "the lake holds {} rows of {total}; logs in {}",
                events.rows,
                kept.display()
            );
        }

        println!("# Ingest throughput\n");
        println!("| what | value |\n|---|---|");
        println!("| records (events) | {total} |");
        println!(
            "| generate + encode | {:.0} records/s |",
            total as f64 / generate_secs
        );
        println!(
            "| produce to the mock cluster (acks=all, idempotent) | {:.0} records/s |",
            total as f64 / produce_secs
        );
        println!(
            "| ingest, from process start to the last offset in the lake | {:.1} s |",
            ingest_secs
        );
        println!(
            "| **ingest throughput** | **{:.0} records/s** |",
            total as f64 / ingest_secs
        );
        println!(
            "| ingest CPU (user + system) | {:.1} s, {:.0}% of one core over the run |",
            cpu,
            100.0 * cpu / ingest_secs
        );
        println!("| lake | {} files, {} bytes |", events.files, events.bytes);
        println!(
            "| **bytes per record on disk** (Parquet, zstd) | **{:.1}** |",
            events.bytes as f64 / total as f64
        );
        println!(
            "| JSON bytes per record on the wire | {:.1} |",
            batch[0]
                .iter()
                .map(|e| mxpulse_schemas::encode(e).payload.len())
                .sum::<usize>() as f64
                / batch[0].len() as f64
        );
    });
}
