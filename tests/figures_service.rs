//! The figures service over a lake the simulator wrote (its fast path into the lake: a few
//! months at a small scale) and `mxpulse lake rollup` rolled up: every figure, breakdown and
//! filter answered from the rollups equals the raw tables' answer, over HTTP, for a viewer and
//! for a ministry's scope; and no figures request can hold the service: a period too long is
//! refused, a slow one is cut at its time limit and frees its slot (the service goes idle, the
//! next request answers), and one that cannot get a slot in time is answered 503 with
//! Retry-After instead of queueing forever.

mod harness;

use std::time::Duration;

use harness::serve::{B, B_ANALYST, Serve, VIEWER, cpu_over, get, start_with};
use reqwest::StatusCode;
use serde_json::Value;

async fn figures(serve: &Serve, token: &str, path: &str, source: &str) -> Value {
    let separator = if path.contains('?') { '&' } else { '?' };
    let (status, answer) = get(
        serve,
        Some(token),
        &format!("{path}{separator}source={source}"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{path} from {source}: {answer}");
    answer
}

/// The keys of a breakdown in an answer.
fn keys(answer: &Value, breakdown: &str) -> Vec<String> {
    let mut keys: Vec<String> = answer["cells"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["breakdown"] == breakdown)
        .filter_map(|c| c["key"].as_str().map(str::to_owned))
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

async fn status_of(serve: &Serve, path: &str) -> (StatusCode, Option<String>, Value) {
    let response = reqwest::Client::new()
        .get(format!("{}{path}", serve.url))
        .bearer_auth(VIEWER)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let retry = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    (status, retry, response.json().await.unwrap_or(Value::Null))
}

const SLOW: &str = "/api/v1/figures/daily?from=2024-05-01&to=2024-07-31&source=raw";
const QUICK: &str =
    "/api/v1/figures/monthly?from=2024-06&to=2024-06&figures=active_users&breakdowns=none";
const QUICK_OTHER: &str =
    "/api/v1/figures/monthly?from=2024-06&to=2024-06&figures=messages&breakdowns=none";

#[tokio::test(flavor = "multi_thread")]
async fn figures_from_rollups_equal_the_raw_tables_and_no_request_holds_the_service() {
    let dir = tempfile::tempdir().unwrap();
    let lake = harness::lakes::generated(dir.path(), "0.005", "2024-05", "2024-07");
    let serve = start_with(dir.path(), &lake, "");

    // Every figure and breakdown, by month and by day, from both.
    let monthly = "/api/v1/figures/monthly?from=2024-05&to=2024-07";
    let rolled = figures(&serve, VIEWER, monthly, "auto").await;
    assert_eq!(rolled["source"], "rollups", "auto answers from the rollups");
    let servers = keys(&rolled, "server");
    let domains = keys(&rolled, "domain");
    assert!(
        servers.len() >= 10 && domains.len() >= 10,
        "{servers:?} {domains:?}"
    );
    let mut paths = vec![
        monthly.to_owned(),
        "/api/v1/figures/daily?from=2024-06-01&to=2024-06-30".to_owned(),
        format!("{monthly}&server={B}"),
        format!("{monthly}&domain={}", domains[domains.len() / 2]),
        format!("{monthly}&platform=ios"),
        format!("{monthly}&server={B}&platform=web&breakdowns=domain"),
        "/api/v1/figures/forums?limit=20".to_owned(),
    ];
    paths.push(format!("{monthly}&breakdowns=none"));
    for (token, who) in [(VIEWER, "viewer"), (B_ANALYST, "finances' analyst")] {
        for path in &paths {
            let rolled = figures(&serve, token, path, "rollups").await;
            let raw = figures(&serve, token, path, "raw").await;
            let (rolled_cells, raw_cells) = if path.contains("forums") {
                (&rolled, &raw)
            } else {
                assert_eq!(
                    (&rolled["source"], &raw["source"]),
                    (&"rollups".into(), &"raw".into())
                );
                (&rolled["cells"], &raw["cells"])
            };
            assert!(
                token != VIEWER || raw_cells.as_array().is_some_and(|c| !c.is_empty()),
                "{who} {path}: {raw}"
            );
            assert_eq!(rolled_cells, raw_cells, "{who} {path}");
        }
    }
    let (status, health) = get(&serve, None, "/health").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(health["rollups"]["used"], true, "{health}");
    assert_eq!(health["rollups"]["timezone"], "Europe/Paris", "{health}");
    let scoped = figures(&serve, B_ANALYST, monthly, "rollups").await;
    assert_eq!(
        keys(&scoped, "server"),
        [B],
        "a ministry sees its server only"
    );
    drop(serve);

    // Bounded: one slot, cut after 600 ms, a wait for a slot of at most 150 ms.
    let serve = start_with(
        dir.path(),
        &lake,
        "max_concurrent_figures = 1\nfigures_timeout_ms = 600\nqueue_timeout_ms = 150\n",
    );
    let (status, _, answer) =
        status_of(&serve, "/api/v1/figures/monthly?from=2014-01&to=2024-07").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("127 months asked for; at most 120")),
        "{answer}"
    );
    let (status, _, answer) = status_of(
        &serve,
        "/api/v1/figures/daily?from=2024-01-01&to=2025-03-01",
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");

    // A process's first rollups request loads the cube, in a task of its own that a cut
    // request does not stop: loaded (a question asked until answered) before the limits are tried.
    let warm =
        "/api/v1/figures/monthly?from=2024-06&to=2024-06&figures=rooms_created&breakdowns=none";
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while status_of(&serve, warm).await.0 != StatusCode::OK {
        assert!(
            std::time::Instant::now() < deadline,
            "the rollups load within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rollups_answers = |metrics: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix("mxpulse_query_figures_total{source=\"rollups\"} "))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0)
    };
    let warmed = rollups_answers(&harness::serve::metrics(&serve).await);
    // The raw tables take seconds for three months of days in this build: cut at 600 ms...
    let (status, _, answer) = status_of(&serve, SLOW).await;
    assert_eq!(status, StatusCode::REQUEST_TIMEOUT, "{answer}");
    // ... its work stopped (the service idles) and its slot is free: the next one answers.
    let cpu = cpu_over(&serve, Duration::from_millis(300), Duration::from_secs(1));
    assert!(
        cpu < 0.3,
        "the cut request still runs: {cpu:.2} CPU-s in 1 s"
    );
    let (status, _, answer) = status_of(&serve, QUICK).await;
    assert_eq!(status, StatusCode::OK, "{answer}");

    // While a slow request holds the only slot, another waits 150 ms and is told to retry (a
    // question not asked before: an answer already given comes from the cache, without a slot).
    let slow = {
        let url = format!("{}{SLOW}", serve.url);
        tokio::spawn(async move {
            reqwest::Client::new()
                .get(url)
                .bearer_auth(VIEWER)
                .send()
                .await
                .map(|r| r.status())
        })
    };
    tokio::time::sleep(Duration::from_millis(150)).await;
    let (status, retry, answer) = status_of(&serve, QUICK_OTHER).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{answer}");
    assert_eq!(answer["error"]["kind"], "busy", "{answer}");
    assert_eq!(retry.as_deref(), Some("1"));
    assert_eq!(slow.await.unwrap().unwrap(), StatusCode::REQUEST_TIMEOUT);
    let (status, _, _) = status_of(&serve, QUICK).await;
    assert_eq!(status, StatusCode::OK);
    let metrics = harness::serve::metrics(&serve).await;
    assert!(
        metrics.contains("mxpulse_query_busy_total 1\n"),
        "{metrics}"
    );
    assert_eq!(rollups_answers(&metrics), warmed + 2, "{metrics}");
}
