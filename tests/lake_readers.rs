//! The lake is readable as it is by other engines: DuckDB (with its delta extension) sees the
//! same rows as DataFusion.

mod harness;

use std::collections::HashSet;
use std::process::Command;
use std::time::Duration;

use harness::pipeline::*;
use harness::{Broker, BrokerKind};
use mxpulse_schemas::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duckdb_reads_the_same_lake_as_datafusion() {
    let mut rng = Rng(0xd0c);
    let broker = Broker::dedicated(BrokerKind::Mock);
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let config = write_config(dir.path(), &broker.bootstrap, &lake, "readers", 500);
    let producer = producer(&broker.bootstrap);
    produce(&producer, &events(&mut rng, 1_200)).await;
    produce(&producer, &visits(&mut rng, 300)).await;
    produce(&producer, &accounts(&mut rng, 80)).await;
    let ingest = Ingest::start(&config, dir.path(), "readers");
    wait_caught_up(&broker.bootstrap, &lake, "readers", Duration::from_secs(60)).await;
    assert!(ingest.stop());

    let output = Command::new(harness::python())
        .arg(harness::repo_root().join("tests/readers/duckdb_counts.py"))
        .arg(&lake)
        .output()
        .expect("run python with DuckDB (scripts/test installs it into .venv)");
    assert!(
        output.status.success(),
        "DuckDB failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let duck: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();

    let events: Vec<EventRecord> = lake_records(&lake).await;
    let senders: HashSet<UserPseudonym> = events.iter().map(|e| e.sender).collect();
    let days: HashSet<i32> = events.iter().map(Record::partition_day).collect();
    assert_eq!(duck["events"], events.len());
    assert_eq!(duck["event_senders"], senders.len());
    assert_eq!(duck["event_days"], days.len());
    assert_eq!(
        duck["visits"],
        lake_records::<VisitRecord>(&lake).await.len()
    );
    assert_eq!(
        duck["accounts"],
        lake_records::<AccountRecord>(&lake).await.len()
    );
    assert_eq!(
        duck["max_event_ts_ms"],
        events.iter().map(|e| e.ts.0).max().unwrap()
    );
}
