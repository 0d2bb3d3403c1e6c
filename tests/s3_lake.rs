//! The lake on a real S3 server (moto's, on loopback): two ingests in one consumer group,
//! killed at random, write every record exactly once; two query services over the same lake
//! answer alike and both see a new commit; the maintenance (`lake rollup`, `compact`,
//! `vacuum`, `purge`) runs there; and a store that ignores conditional writes, with more than
//! one writer possible, is refused at start with the reason.

mod harness;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use harness::pipeline::*;
use harness::s3::{S3Server, SECRET_KEY};
use harness::serve::{
    A, ANALYST, B, VIEWER, get, lake_with_two_servers_at, login_cookie, message, sql, start_on,
    write,
};
use harness::{Broker, BrokerKind, mxpulse_bin, wait_for};
use mxpulse_schemas::EventRecord;
use reqwest::StatusCode;
use serde_json::Value;

/// `mxpulse --config config args...`.
fn mxpulse(config: &Path, args: &[&str]) -> Output {
    Command::new(mxpulse_bin())
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .expect("run mxpulse")
}

fn succeeded(output: &Output, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{what} failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_ingests_killed_at_random_on_an_s3_lake_write_every_record_once() {
    let seed = seed();
    eprintln!("seed {seed}");
    let mut rng = Rng(seed);
    let group = "s3-ingest";
    let dir = tempfile::tempdir().unwrap();
    let s3 = S3Server::start(dir.path(), "federation");
    let root = "s3://federation/lake";
    s3.use_in_process(root);
    let lake = Path::new(root);
    let broker = Broker::dedicated(BrokerKind::Mock);
    let config = write_config_on(
        dir.path(),
        &broker.bootstrap,
        &s3.lake_settings(root),
        group,
        300,
        "",
        "",
    );
    let producer = producer(&broker.bootstrap);
    let mut produced = Produced::default();

    // Two instances share the partitions; one or both die by SIGKILL at random moments, with
    // new records arriving between the crashes.
    for round in 0..5 {
        produced.round(&mut rng, &producer, (600, 150, 40)).await;
        let first = Ingest::start(&config, dir.path(), &format!("s3-a-{round}"));
        let second = Ingest::start(&config, dir.path(), &format!("s3-b-{round}"));
        tokio::time::sleep(Duration::from_millis(1_000 + rng.below(4_000))).await;
        first.kill();
        if rng.below(2) == 0 {
            second.kill();
        } else {
            tokio::time::sleep(Duration::from_millis(rng.below(1_500))).await;
            second.kill();
        }
    }
    let first = Ingest::start(&config, dir.path(), "s3-a-final");
    let second = Ingest::start(&config, dir.path(), "s3-b-final");
    produced.round(&mut rng, &producer, (300, 80, 20)).await;
    wait_caught_up(&broker.bootstrap, lake, group, Duration::from_secs(300)).await;
    assert!(
        first.stop() & second.stop(),
        "an ingest did not exit on SIGTERM"
    );
    produced.assert_in_lake(lake).await;

    // The tables are the bucket's objects, not local files.
    let keys = s3.keys("federation");
    for table in ["events", "visits", "accounts"] {
        let first_commit = format!("lake/{table}/_delta_log/00000000000000000000.json");
        assert!(keys.contains(&first_commit), "{first_commit} in {keys:?}");
        assert!(
            keys.iter()
                .any(|k| k.starts_with(&format!("lake/{table}/")) && k.ends_with(".parquet")),
            "{table}'s data files"
        );
    }
    assert!(
        !keys.iter().any(|k| k.contains("commit-probe")),
        "the writers' probe objects are deleted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_query_services_over_one_s3_lake_answer_alike_and_both_see_a_new_commit() {
    let dir = tempfile::tempdir().unwrap();
    let s3 = S3Server::start(dir.path(), "shared");
    let root = "s3://shared/mxpulse";
    s3.use_in_process(root);
    let lake = Path::new(root);
    lake_with_two_servers_at(lake).await;
    let reports = dir.path().join("reports");
    // Behind a load balancer: one session key for every instance.
    let settings = format!(
        "{}[reports]\ndir = \"{}\"\n[dashboards]\nsession_key = \"{}\"\n",
        s3.lake_settings(root),
        reports.display(),
        "5e".repeat(32)
    );
    // The rollups, counted on S3 by the maintenance command: first cut in UTC, then recut in
    // the federation's time zone (the UTC ones deleted from the bucket).
    let config = dir.path().join("lake.toml");
    std::fs::write(&config, format!("{settings}[query]\ntimezone = \"UTC\"\n")).unwrap();
    succeeded(&mxpulse(&config, &["lake", "rollup"]), "lake rollup in UTC");
    std::fs::write(&config, &settings).unwrap();
    succeeded(
        &mxpulse(&config, &["lake", "rollup", "--rebuild"]),
        "lake rollup --rebuild recut",
    );

    let (one, two) = (dir.path().join("one"), dir.path().join("two"));
    std::fs::create_dir_all(&one).unwrap();
    std::fs::create_dir_all(&two).unwrap();
    // Exact counts (`privacy.noise = 0`): the answers are set against the rows written.
    let exact = format!("{settings}[privacy]\nnoise = 0\n");
    let first = start_on(&one, &exact, "");
    let second = start_on(&two, &exact, "");
    let monthly = "/api/v1/figures/monthly?from=2024-05&to=2024-05";
    for source in ["rollups", "raw"] {
        let path = format!("{monthly}&source={source}");
        let (status, a) = get(&first, Some(VIEWER), &path).await;
        assert_eq!(status, StatusCode::OK, "{a}");
        let (_, b) = get(&second, Some(VIEWER), &path).await;
        assert_eq!(a["source"], source);
        assert_eq!(a["cells"], b["cells"], "{source}");
        assert_eq!(total(&a, "messages"), Some(9.0), "{a}");
    }
    let (_, health) = get(&second, None, "/health").await;
    assert_eq!(health["rollups"]["timezone"], "Europe/Paris", "{health}");
    let (_, rows) = sql(
        &first,
        ANALYST,
        "SELECT server, count(*) AS n FROM events GROUP BY server ORDER BY server",
    )
    .await;
    let (_, same) = sql(
        &second,
        ANALYST,
        "SELECT server, count(*) AS n FROM events GROUP BY server ORDER BY server",
    )
    .await;
    assert_eq!(rows["rows"], same["rows"]);
    assert_eq!(rows["rows"][0]["server"], B, "{rows}");

    // A login on one instance holds on the other.
    let cookie = login_cookie(&first, VIEWER).await;
    let page = reqwest::Client::new()
        .get(format!("{}/d/overview?from=2024-05&to=2024-05", second.url))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(
        page.status(),
        StatusCode::OK,
        "the other instance knows the session"
    );

    // A commit made by another process reaches both services without a restart.
    write(lake, &[message(100, 1, A), message(101, 2, A)]).await;
    for serve in [&first, &second] {
        let seen = wait_for(Duration::from_secs(20), || {
            let (_, answer) = harness::block_on(get(
                serve,
                Some(VIEWER),
                &format!("{monthly}&source=raw&figures=messages"),
            ));
            (total(&answer, "messages") == Some(11.0)).then_some(())
        });
        assert!(seen.is_some(), "{} sees the new commit", serve.url);
    }
}

/// A figure's total in a figures answer.
fn total(answer: &Value, figure: &str) -> Option<f64> {
    answer["cells"]
        .as_array()?
        .iter()
        .find(|c| c["figure"] == figure && c["breakdown"] == "total")?["value"]
        .as_f64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compact_vacuum_and_purge_run_on_an_s3_lake() {
    let dir = tempfile::tempdir().unwrap();
    let s3 = S3Server::start(dir.path(), "upkeep");
    let root = "s3://upkeep/lake";
    s3.use_in_process(root);
    let lake = Path::new(root);
    // Ten small commits: ten small files to compact.
    let mut expected = Vec::new();
    for batch in 0..10u128 {
        let records: Vec<EventRecord> = (0..20)
            .map(|i| message(batch * 100 + i, (i % 5) as u64 + 1, A))
            .collect();
        write(lake, &records).await;
        expected.extend(records);
    }
    let config = dir.path().join("lake.toml");
    std::fs::write(&config, s3.lake_settings(root)).unwrap();
    let files = |keys: &[String]| {
        keys.iter()
            .filter(|k| k.starts_with("lake/events/") && k.ends_with(".parquet"))
            .count()
    };
    let before = files(&s3.keys("upkeep"));
    assert!(before >= 10, "{before} files");

    let compacted = succeeded(&mxpulse(&config, &["lake", "compact"]), "lake compact");
    assert!(compacted.contains("compact events"), "{compacted}");
    assert_exactly(lake_records::<EventRecord>(lake).await, &expected);
    succeeded(
        &mxpulse(&config, &["lake", "vacuum", "--retain-hours", "0"]),
        "lake vacuum",
    );
    let after = files(&s3.keys("upkeep"));
    assert!(
        after < before,
        "vacuum removed the compacted files: {before} -> {after}"
    );
    assert_exactly(lake_records::<EventRecord>(lake).await, &expected);

    // May 2024 is more than a year old: purged, its figures kept in the rollups.
    let purged = succeeded(
        &mxpulse(&config, &["lake", "purge", "--older-than", "1y"]),
        "lake purge",
    );
    assert!(purged.contains("purging raw records before"), "{purged}");
    assert!(lake_records::<EventRecord>(lake).await.is_empty());
    let status = succeeded(&mxpulse(&config, &["lake", "status"]), "lake status");
    assert!(status.contains("lake s3://upkeep/lake/"), "{status}");
    let rollups = s3.keys("upkeep");
    assert!(
        rollups
            .iter()
            .any(|k| k.starts_with("lake/rollups/figure_cells/_delta_log/")),
        "the rollups live on S3 too: {rollups:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_ignores_conditional_writes_is_refused_unless_one_writer_is_declared() {
    let dir = tempfile::tempdir().unwrap();
    let s3 = S3Server::start(dir.path(), "careless");
    // The same server behind a proxy that drops If-None-Match: a store that ignores it.
    let careless = harness::s3::HeaderDroppingProxy::start(&s3.endpoint, "if-none-match").await;
    let root = "s3://careless/lake";
    let settings = s3
        .lake_settings(root)
        .replace(&s3.endpoint, &careless.endpoint);
    let config = dir.path().join("careless.toml");
    std::fs::write(
        &config,
        format!("{settings}[kafka]\nbrokers = \"127.0.0.1:1\"\n"),
    )
    .unwrap();
    for args in [&["ingest"][..], &["lake", "compact"][..]] {
        let output = mxpulse(&config, args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?} started: {stderr}");
        assert!(
            stderr.contains("ignores conditional writes") && stderr.contains("single_writer"),
            "{args:?}: {stderr}"
        );
    }
    assert!(
        !s3.keys("careless").iter().any(|k| k.contains("_delta_log")),
        "nothing was written before the refusal"
    );

    // The operator declares this process the only writer: it runs.
    std::fs::write(&config, format!("{}single_writer = true\n", settings)).unwrap();
    succeeded(
        &mxpulse(&config, &["lake", "compact"]),
        "lake compact, one writer",
    );

    // Through the real server, conditional writes are honoured: no refusal.
    std::fs::write(&config, s3.lake_settings(root)).unwrap();
    succeeded(&mxpulse(&config, &["lake", "compact"]), "lake compact");

    // The secret never shows.
    let shown = succeeded(&mxpulse(&config, &["config"]), "mxpulse config");
    assert!(!shown.contains(SECRET_KEY), "{shown}");
    assert!(
        shown.contains("s3_secret_access_key = \"<redacted>\""),
        "{shown}"
    );
}
