//! Lake maintenance end to end: compaction while an ingest runs (it loses nothing and sorts
//! each file by time), retention (purge) and vacuum, through the `mxpulse lake` commands.

mod harness;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use deltalake::arrow::array::{Array, TimestampMicrosecondArray};
use deltalake::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use harness::pipeline::*;
use harness::{Broker, BrokerKind, mxpulse_bin};
use mxpulse_ingest::lake::open_or_create;
use mxpulse_ingest::maintenance::status;
use mxpulse_schemas::*;

const GROUP: &str = "maintenance-test";

fn lake_command(config: &Path, args: &[&str]) -> String {
    let output = Command::new(mxpulse_bin())
        .arg("--config")
        .arg(config)
        .arg("lake")
        .args(args)
        .output()
        .expect("run mxpulse lake");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "mxpulse lake {args:?} failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// Files added and removed for a table, as `mxpulse lake` reports them.
fn files_changed(report: &str, table: &str) -> (u64, u64) {
    let line = report
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some(table))
        .unwrap_or_else(|| panic!("no {table} in {report}"));
    let numbers: Vec<u64> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    (numbers[0], numbers[1])
}

/// Every data file of the events table is in time order.
async fn assert_files_sorted_by_time(lake: &Path) {
    let table = open_or_create::<EventRecord>(&lake_root(lake))
        .await
        .unwrap();
    let uris: Vec<String> = table.get_file_uris().unwrap().collect();
    assert!(!uris.is_empty());
    for uri in uris {
        let path = url::Url::parse(&uri)
            .ok()
            .and_then(|u| u.to_file_path().ok())
            .unwrap_or_else(|| uri.clone().into());
        let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&path).unwrap())
            .unwrap()
            .build()
            .unwrap();
        let mut last = i64::MIN;
        for batch in reader {
            let batch = batch.unwrap();
            let ts = batch
                .column_by_name("ts")
                .unwrap()
                .as_any()
                .downcast_ref::<TimestampMicrosecondArray>()
                .unwrap();
            for i in 0..ts.len() {
                assert!(
                    ts.value(i) >= last,
                    "{} is not sorted by ts",
                    path.display()
                );
                last = ts.value(i);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_during_ingest_then_purge_and_vacuum() {
    let mut rng = Rng(0xc0ffee);
    let broker = Broker::dedicated(BrokerKind::Mock);
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    // Tiny commits: many small files to compact.
    let config = write_config(dir.path(), &broker.bootstrap, &lake, GROUP, 50);
    let producer = producer(&broker.bootstrap);

    let old = events(&mut rng, 400);
    let mut recent = events(&mut rng, 200);
    let yesterday = chrono::Utc::now().timestamp_millis() - 86_400_000;
    for (i, e) in recent.iter_mut().enumerate() {
        e.ts = UnixMillis(yesterday + i as i64);
    }
    produce(&producer, &old).await;
    let ingest = Ingest::start(&config, dir.path(), "maintenance");
    wait_caught_up(&broker.bootstrap, &lake, GROUP, Duration::from_secs(90)).await;
    let before = status(&lake_root(&lake), GROUP).await.unwrap();
    let events_before = before.iter().find(|t| t.table == "events").unwrap();
    assert!(
        events_before.files > 20,
        "expected many small files, got {}",
        events_before.files
    );

    // Compact while the ingest keeps committing.
    let more = tokio::spawn({
        let producer = producer.clone();
        let recent = recent.clone();
        async move {
            for chunk in recent.chunks(30) {
                produce(&producer, chunk).await;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    });
    let compacted = tokio::task::spawn_blocking({
        let config = config.clone();
        move || lake_command(&config, &["compact"])
    })
    .await
    .unwrap();
    more.await.unwrap();
    let (added, removed) = files_changed(&compacted, "events");
    assert!(
        removed > added && added > 0,
        "compaction should merge files: {compacted}"
    );
    wait_caught_up(&broker.bootstrap, &lake, GROUP, Duration::from_secs(90)).await;
    assert_eq!(
        ingest.metric("mxpulse_ingest_commit_failures_total"),
        0,
        "compaction disturbed the ingest: {}",
        ingest.metrics()
    );
    assert!(ingest.stop());

    let all: Vec<EventRecord> = old.iter().chain(&recent).cloned().collect();
    assert_exactly(lake_records::<EventRecord>(&lake).await, &all);
    assert_files_sorted_by_time(&lake).await;

    // Retention: the old records go, yesterday's stay.
    let purged = lake_command(&config, &["purge", "--older-than", "30d"]);
    assert!(files_changed(&purged, "events").1 > 0, "{purged}");
    assert_exactly(lake_records::<EventRecord>(&lake).await, &recent);

    let vacuumed = lake_command(&config, &["vacuum", "--retain-hours", "0"]);
    assert!(
        files_changed(&vacuumed, "events").1 > 0,
        "vacuum should delete the purged and compacted files: {vacuumed}"
    );
    assert_exactly(lake_records::<EventRecord>(&lake).await, &recent);

    let status_text = lake_command(&config, &["status"]);
    assert!(
        status_text.contains(&format!("offsets of group {GROUP}: 0:")),
        "{status_text}"
    );
}

/// Every file under `dir` (data, commits, checkpoints), recursively.
fn all_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(all_files(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// Before: a domain published by mistake (part of a surname: `durand-ac-lyon.fr`) stayed in the
/// lake's rows, its files' statistics, the Delta log and the rollups, and a corrected record was
/// dropped as a repeat. `mxpulse lake rewrite` makes it `other` in the rows, recounts the rollups
/// and deletes every file and commit that held it: no byte of the lake spells it any more, and
/// the figures still count its users (under `other`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_domain_published_by_mistake_is_forgotten_by_the_whole_lake() {
    const LEAKED: &str = "durand-ac-lyon.fr";
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let root = lake_root(&lake);
    let mut rng = Rng(7);
    let mut events = events(&mut rng, 400);
    for e in events.iter_mut().take(40) {
        e.domain = Some(LEAKED.into());
    }
    let mut visits = visits(&mut rng, 100);
    for v in visits.iter_mut().take(10) {
        v.domain = Some(LEAKED.into());
    }
    // Two commits each, so that several versions and files hold the value.
    for half in events.chunks(200) {
        let mut table = open_or_create::<EventRecord>(&root).await.unwrap();
        mxpulse_ingest::lake::append(&mut table, half.to_vec())
            .await
            .unwrap();
    }
    let mut table = open_or_create::<VisitRecord>(&root).await.unwrap();
    mxpulse_ingest::lake::append(&mut table, visits.clone())
        .await
        .unwrap();
    let config = dir.path().join("mxpulse.toml");
    std::fs::write(&config, format!("[lake]\nroot = \"{}\"\n", lake.display())).unwrap();
    lake_command(&config, &["rollup"]);
    let spelled = |lake: &Path| -> Vec<String> {
        all_files(lake)
            .into_iter()
            .filter(|f| {
                std::fs::read(f)
                    .map(|b| b.windows(LEAKED.len()).any(|w| w == LEAKED.as_bytes()))
                    .unwrap_or(false)
            })
            .map(|f| f.display().to_string())
            .collect()
    };
    assert!(
        !spelled(&lake).is_empty(),
        "the value is in the lake to begin with"
    );

    let out = lake_command(
        &config,
        &["rewrite", "--column", "domain", "--from", LEAKED],
    );
    assert!(out.contains("40 rows"), "{out}");
    assert_eq!(spelled(&lake), Vec::<String>::new(), "{out}");
    // The rows are all there, under `other`.
    let stored = lake_records::<EventRecord>(&lake).await;
    assert_eq!(stored.len(), 400);
    assert_eq!(
        stored
            .iter()
            .filter(|e| e.domain.as_deref() == Some("other"))
            .count(),
        40
    );
    // And the lake still works: a rollup and a status run.
    lake_command(&config, &["rollup"]);
    lake_command(&config, &["status"]);
}
