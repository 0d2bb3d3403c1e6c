//! Apache Superset over the PostgreSQL endpoint (issue 24, item 6), through Superset's own
//! REST API as an analyst sets it up: the database added (Superset tests the connection),
//! a dataset from `visits` (Superset reads its columns with SQLAlchemy 1.4's inspector), a
//! monthly time series chart saved and its data read back, equal to the same question over
//! the HTTP API; and SQLAlchemy 1.4's inspector over every table and view.

mod harness;

use std::collections::BTreeMap;
use std::process::Command;

use chrono::NaiveDate;
use harness::serve::{A, ANALYST, B, sql, start, write};
use harness::superset::{ADMIN, Superset};
use mxpulse_schemas::vocabulary::{Client, Platform};
use mxpulse_schemas::{KeyId, SchemaVersion, UserPseudonym, VisitRecord};
use serde_json::Value;

/// Visits over the first half of 2024: user `u` comes in the months from `u % 6` on.
async fn lake(dir: &std::path::Path) -> std::path::PathBuf {
    let lake = dir.join("lake");
    let mut visits = Vec::new();
    for user in 1..=30u64 {
        for month in (user % 6 + 1) as u32..=6 {
            visits.push(VisitRecord {
                v: SchemaVersion::CURRENT,
                key_id: KeyId([9, 9, 9, 9]),
                day: NaiveDate::from_ymd_opt(2024, month, (user % 27 + 1) as u32).unwrap(),
                server: if user % 2 == 0 { A } else { B }.into(),
                user: UserPseudonym(user),
                device: None,
                domain: None,
                platform: Platform::Web,
                client: Client::Tchap,
                family: None,
            });
        }
    }
    write(&lake, &visits).await;
    lake
}

#[tokio::test(flavor = "multi_thread")]
async fn superset_adds_the_database_and_charts_visits_as_the_api_counts_them() {
    let dir = tempfile::tempdir().unwrap();
    let lake = lake(dir.path()).await;
    let serve = start(dir.path(), &lake);
    let superset = Superset::start(dir.path());
    let output = Command::new(superset.venv.join("bin/python"))
        .arg(harness::repo_root().join("tests/clients/superset_flow.py"))
        .args([
            superset.url.as_str(),
            &serve.pg_port.to_string(),
            "dinum-analyst",
            ANALYST,
            ADMIN.1,
        ])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let flow: Value = serde_json::from_slice(&output.stdout).unwrap();
    let context = || format!("{flow:#}\nSuperset's log:\n{}", superset.log_text());

    assert_eq!(flow["login"], 200, "{}", context());
    assert_eq!(flow["test_connection"][0], 200, "{}", context());
    assert_eq!(flow["database"][0], 201, "{}", context());
    assert_eq!(
        flow["schemas"],
        serde_json::json!(["public"]),
        "{}",
        context()
    );
    let tables = flow["tables"].as_array().cloned().unwrap_or_default();
    for view in ["events", "visits", "accounts", "rooms", "monthly_figures"] {
        assert!(tables.contains(&Value::from(view)), "{view}: {}", context());
    }
    assert_eq!(flow["dataset"][0], 201, "{}", context());
    assert_eq!(
        flow["dataset_columns"]["day"],
        serde_json::json!(["DATE", true]),
        "`day` is the dataset's time column: {}",
        context()
    );
    assert_eq!(flow["chart"][0], 201, "{}", context());
    assert_eq!(flow["chart_data_status"], 200, "{}", context());
    assert_eq!(flow["chart_error"], Value::Null, "{}", context());

    // The chart's points, against the same question over the HTTP API.
    let charted: BTreeMap<String, i64> = flow["chart_rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            let month = chrono::DateTime::from_timestamp_millis(row[0].as_f64().unwrap() as i64)
                .unwrap()
                .format("%Y-%m")
                .to_string();
            (month, row[1].as_i64().unwrap())
        })
        .collect();
    let (status, answer) = sql(
        &serve,
        ANALYST,
        "SELECT to_char(date_trunc('month', day), '%Y-%m') AS month, count(DISTINCT \"user\") AS users \
         FROM visits WHERE day >= DATE '2024-01-01' AND day < DATE '2024-12-31' GROUP BY 1",
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let counted: BTreeMap<String, i64> = answer["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            (
                row["month"].as_str().unwrap().to_owned(),
                row["users"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(counted.len(), 6, "{answer}");
    assert_eq!(charted, counted, "{}", context());

    // SQLAlchemy 1.4's inspector (Superset's) reads every relation.
    let inspected = flow["inspector"].as_object().unwrap();
    assert!(inspected.len() >= 6, "{}", context());
    for (relation, facts) in inspected {
        assert!(
            facts.get("error").is_none() && !facts["columns"].as_array().unwrap().is_empty(),
            "{relation}: {facts}"
        );
    }
    drop(superset);
}
