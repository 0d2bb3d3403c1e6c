//! The query service against an attacker with a token and an unlucky crowd (issue 16, items
//! 6-9): statements that would allocate without bound or abort the process, EXPLAIN as a
//! ministry's analyst, fifty heavy statements while a viewer's dashboard asks for its figures,
//! and what the audit log and an unauthenticated /health tell.

mod harness;

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use harness::serve::{
    A, ANALYST, B, B_ANALYST, Serve, VIEWER, get, lake_with_two_servers, psql, sql, start,
    start_with,
};

/// The highest resident memory of the process so far (`VmHWM`), in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .unwrap()
}

async fn alive(serve: &Serve, after: &str) {
    let (status, answer) = sql(serve, ANALYST, "SELECT count(*) AS n FROM events").await;
    assert_eq!(
        (status, &answer["rows"][0]["n"]),
        (StatusCode::OK, &json!(9)),
        "the service answers after {after}"
    );
}

/// Each of these would allocate by its arguments, outside the query's memory pool: gigabytes,
/// or (the first) a terabyte through an infallible allocation that aborts the process.
const ALLOCATING: [&str; 9] = [
    "SELECT repeat(arrow_cast('x', 'LargeUtf8'), 1000000000000) AS s",
    "SELECT repeat('x', 2147483647) AS s",
    "SELECT lpad('x', 2000000000) AS s",
    "SELECT rpad('x', 2000000000, 'yz') AS s",
    "SELECT range(1, 800000000) AS r",
    "SELECT generate_series(1, 800000000) AS r",
    "SELECT array_repeat(1, 1000000000) AS r",
    "SELECT length(string_agg(repeat('x', 1000), ',')) AS n FROM generate_series(1, 10000000)",
    "SELECT cardinality(array_agg(value)) AS n FROM generate_series(1, 1000000000)",
];

#[tokio::test(flavor = "multi_thread")]
async fn no_statement_takes_the_service_down_and_memory_stays_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let lake = lake_with_two_servers(dir.path()).await;
    let serve = start_with(
        dir.path(),
        &lake,
        "query_memory_bytes = 16777216\nmax_rows = 100000\nquery_timeout_ms = 5000\n",
    );

    for statement in ALLOCATING {
        let (status, answer) = sql(&serve, ANALYST, statement).await;
        assert!(
            [
                StatusCode::UNPROCESSABLE_ENTITY,
                StatusCode::REQUEST_TIMEOUT
            ]
            .contains(&status),
            "{statement}: {status} {answer}"
        );
        assert!(
            answer["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{statement}: {answer}"
        );
        alive(&serve, statement).await;
        // The same over the PostgreSQL protocol: an error, and the service still there.
        let error = psql(&serve, "dinum-analyst", ANALYST, statement)
            .expect_err(&format!("psql: {statement}"));
        assert!(error.contains("ERROR"), "{statement}: {error}");
        alive(&serve, &format!("psql {statement}")).await;
    }

    // An answer is bounded in bytes, not only in rows: 100000 rows of 600 bytes are more than
    // the query's 16 MiB, so the answer stops before and says so.
    let (status, answer) = sql(
        &serve,
        ANALYST,
        "SELECT repeat('x', 600) || value AS s FROM generate_series(1, 100000)",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let rows = answer["row_count"].as_u64().unwrap();
    assert_eq!(answer["truncated"], json!(true));
    assert!(rows > 0 && rows < 100_000, "{rows}");
    let error = psql(
        &serve,
        "dinum-analyst",
        ANALYST,
        "SELECT repeat('x', 600) || value AS s FROM generate_series(1, 100000)",
    )
    .map(|out| out.lines().count());
    assert!(
        matches!(error, Ok(n) if n > 0 && n < 100_000),
        "psql: {error:?}"
    );

    // All of it within a bound a 24 GiB machine notices: the gigabyte statements never ran.
    let peak = peak_rss(serve.child.id());
    assert!(peak < 1 << 30, "peak resident memory {peak} bytes");
}

#[tokio::test(flavor = "multi_thread")]
async fn explain_tells_a_scoped_analyst_nothing_of_other_servers_and_nobody_the_paths() {
    let dir = tempfile::tempdir().unwrap();
    let lake = lake_with_two_servers(dir.path()).await;
    let serve = start(dir.path(), &lake);
    let query = "SELECT count(*) AS n FROM events WHERE msgtype = 'm.text'";

    for explain in [
        "EXPLAIN ANALYZE",
        "EXPLAIN VERBOSE",
        "EXPLAIN ANALYZE VERBOSE",
        "explain analyze",
    ] {
        let statement = format!("{explain} {query}");
        let (status, answer) = sql(&serve, B_ANALYST, &statement).await;
        assert_eq!(
            (status, answer["error"]["kind"].as_str()),
            (StatusCode::BAD_REQUEST, Some("refused")),
            "{statement}: {answer}"
        );
        let error = psql(&serve, "finances-analyst", B_ANALYST, &statement)
            .expect_err(&format!("psql: {statement}"));
        assert!(error.contains("plain EXPLAIN"), "{error}");
    }
    // Options in parentheses ask the same.
    let (status, answer) = sql(&serve, B_ANALYST, &format!("EXPLAIN (ANALYZE) {query}")).await;
    assert_ne!(status, StatusCode::OK, "{answer}");

    // The plain plan answers, and shows neither where the lake is nor its files.
    let lake_path = lake.display().to_string();
    for (who, token, explain) in [
        ("finances-analyst", B_ANALYST, "EXPLAIN"),
        ("dinum-analyst", ANALYST, "EXPLAIN"),
        ("dinum-analyst", ANALYST, "EXPLAIN VERBOSE"),
        ("dinum-analyst", ANALYST, "EXPLAIN ANALYZE"),
    ] {
        let statement = format!("{explain} {query}");
        let (status, answer) = sql(&serve, token, &statement).await;
        assert_eq!(status, StatusCode::OK, "{who} {statement}: {answer}");
        let plan = answer["rows"].to_string();
        assert!(plan.contains("<lake>"), "{who} {statement}: {plan}");
        for secret in [lake_path.as_str(), ".parquet", "part-0"] {
            assert!(!plan.contains(secret), "{who} {statement}: {plan}");
        }
        let plan = psql(&serve, who, token, &statement).unwrap();
        assert!(
            !plan.contains(&lake_path) && !plan.contains(".parquet"),
            "psql {who} {statement}: {plan}"
        );
    }
    // The ministry's plain plan does not name the other server either.
    let (_, answer) = sql(&serve, B_ANALYST, &format!("EXPLAIN {query}")).await;
    assert!(!answer.to_string().contains(A), "{answer}");
    assert!(
        answer.to_string().contains(B),
        "the scope's own filter: {answer}"
    );
}

/// A request to the SQL API with its status and `Retry-After`.
async fn heavy_statement(url: String) -> (StatusCode, Option<String>) {
    let response = reqwest::Client::new()
        .post(format!("{url}/api/v1/sql"))
        .bearer_auth(ANALYST)
        .json(&json!({"sql": "SELECT count(*) FROM generate_series(1, 5000000000) WHERE value % 7 = 3"}))
        .send()
        .await
        .unwrap();
    let retry = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    (response.status(), retry)
}

#[tokio::test(flavor = "multi_thread")]
async fn fifty_heavy_statements_leave_the_dashboards_their_slots() {
    let dir = tempfile::tempdir().unwrap();
    let lake = lake_with_two_servers(dir.path()).await;
    let serve = start_with(
        dir.path(),
        &lake,
        "query_timeout_ms = 8000\nqueue_timeout_ms = 2000\nmax_concurrent_queries = 2\n",
    );
    let heavy: Vec<_> = (0..50)
        .map(|_| tokio::spawn(heavy_statement(serve.url.clone())))
        .collect();
    // Every SQL slot taken, the rest queued.
    tokio::time::sleep(Duration::from_millis(700)).await;

    // A viewer's dashboard figures: its own slots, answered.
    let (status, report) = get(
        &serve,
        Some(VIEWER),
        "/api/v1/figures/monthly?from=2024-05&to=2024-05",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{report}");
    // So are the pages.
    let page = reqwest::Client::new()
        .get(format!("{}/?lang=en", serve.url))
        .bearer_auth(VIEWER)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    // A refused statement costs no slot: refused at once, not queued until busy.
    let (status, answer) = sql(&serve, ANALYST, "DELETE FROM events").await;
    assert_eq!(
        (status, answer["error"]["kind"].as_str()),
        (StatusCode::BAD_REQUEST, Some("refused")),
        "{answer}"
    );

    let mut outcomes = std::collections::BTreeMap::<u16, usize>::new();
    for task in heavy {
        let (status, retry) = task.await.unwrap();
        *outcomes.entry(status.as_u16()).or_default() += 1;
        if status == StatusCode::SERVICE_UNAVAILABLE {
            assert!(
                retry.is_some_and(|s| s.parse::<u64>().is_ok()),
                "Retry-After"
            );
        }
    }
    // Two ran to their time limit; the others waited their queue's deadline and were told
    // to come back.
    assert_eq!(outcomes.get(&408), Some(&2), "{outcomes:?}");
    assert_eq!(outcomes.get(&503), Some(&48), "{outcomes:?}");
    alive(&serve, "the crowd").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_audit_log_has_bound_values_and_health_no_paths() {
    let dir = tempfile::tempdir().unwrap();
    let lake = lake_with_two_servers(dir.path()).await;
    let serve = start(dir.path(), &lake);

    // psycopg binds the value over the extended protocol: the audit log shows it.
    let script = format!(
        "import psycopg\n\
         with psycopg.connect('host=127.0.0.1 port={} user=dinum-analyst password={ANALYST} dbname=mxpulse') as c:\n    \
         print(c.execute('SELECT count(*) FROM events WHERE server = %s', ['audit-marker-4711']).fetchone()[0])\n",
        serve.pg_port
    );
    let output = std::process::Command::new(harness::python())
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "0");
    let log = std::fs::read_to_string(&serve.log).unwrap();
    assert!(
        log.lines().any(|l| l.contains("sql query")
            && l.contains("dinum-analyst")
            && l.contains("$1")
            && l.contains("audit-marker-4711")),
        "{log}"
    );

    // A lake that cannot be read: /health says so to anyone, and says where to nobody.
    let (status, health) = get(&serve, None, "/health").await;
    assert_eq!(status, StatusCode::OK, "{health}");
    std::fs::write(
        lake.join("events/_delta_log/00000000000000000001.json"),
        "not a commit\n",
    )
    .unwrap();
    let failing = harness::wait_for(Duration::from_secs(20), || {
        let (status, health) = harness::block_on(get(&serve, None, "/health"));
        (status == StatusCode::SERVICE_UNAVAILABLE).then_some(health)
    })
    .expect("/health sees the broken lake");
    let shown = failing.to_string();
    assert!(shown.contains("failing"), "{shown}");
    assert!(
        !shown.contains(&dir.path().display().to_string()) && !shown.contains("_delta_log"),
        "{shown}"
    );
    // The operator's log has the detail.
    let log = std::fs::read_to_string(&serve.log).unwrap();
    assert!(
        log.contains("_delta_log") || log.contains("events"),
        "{log}"
    );
    // Meanwhile the figures still answer, from the last snapshot read (their as_of says when).
    let (status, answer) = get(
        &serve,
        Some(VIEWER),
        "/api/v1/figures/monthly?from=2024-05&to=2024-05&figures=messages&breakdowns=none",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert!(answer["as_of"].is_string(), "{answer}");
}
