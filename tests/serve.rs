//! `mxpulse serve` over HTTP: tokens and roles, a ministry's scope whatever its SQL, hostile
//! SQL refused or bounded with the service alive after each, the figures API, the output
//! formats, and new lake commits visible without a restart.

mod harness;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use harness::wait_for;
use reqwest::StatusCode;
use serde_json::{Value, json};

use harness::serve::{
    A, ANALYST, B, B_ANALYST, Serve, VIEWER, cpu_over, get, lake_with_two_servers, login_cookie,
    message, psql, sql, start_on, start_with, write,
};

/// `mxpulse serve` over `lake`, publishing exact counts (`privacy.noise = 0`): these tests set
/// the figures API and the publication views against SQL over the same few rows. The noise
/// of published counts is `tests/disclosure.rs`'s.
fn start(dir: &Path, lake: &Path) -> Serve {
    start_on(
        dir,
        &format!(
            "[lake]\nroot = \"{}\"\n[privacy]\nnoise = 0\n",
            lake.display()
        ),
        "",
    )
}

/// The views every analyst session has, in name order.
const VIEWS: [&str; 7] = [
    "accounts",
    "daily_figures",
    "directory",
    "events",
    "monthly_figures",
    "rooms",
    "visits",
];

/// May 2024's active users in total, as the figures API answers.
async fn api_active_users_in_may(serve: &Serve) -> Option<f64> {
    let (_, report) = get(
        serve,
        Some(VIEWER),
        "/api/v1/figures/monthly?from=2024-05&to=2024-05&figures=active_users",
    )
    .await;
    report["cells"]
        .as_array()?
        .iter()
        .find(|c| c["figure"] == "active_users" && c["breakdown"] == "total")?["value"]
        .as_f64()
}

/// The columns of `view`, as a query over HTTP returns them.
async fn http_columns(serve: &Serve, view: &str) -> Vec<String> {
    let (_, answer) = sql(serve, ANALYST, &format!("SELECT * FROM {view} LIMIT 0")).await;
    answer["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_roles_and_scopes_hold_whatever_the_sql() {
    let dir = tempfile::tempdir().unwrap();
    let lake = lake_with_two_servers(dir.path()).await;
    let serve = start(dir.path(), &lake);

    assert_eq!(
        get(
            &serve,
            None,
            "/api/v1/figures/monthly?from=2024-05&to=2024-05"
        )
        .await
        .0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        get(
            &serve,
            Some("not-a-token-at-all"),
            "/api/v1/figures/monthly?from=2024-05&to=2024-05"
        )
        .await
        .0,
        StatusCode::UNAUTHORIZED
    );
    let (status, answer) = sql(&serve, VIEWER, "SELECT 1").await;
    assert_eq!(
        (status, answer["error"]["kind"].as_str()),
        (StatusCode::FORBIDDEN, Some("forbidden"))
    );

    // The viewer's figures: 7 active users in May 2024 (4 on A, 3 on B), 9 messages.
    let (status, report) = get(
        &serve,
        Some(VIEWER),
        "/api/v1/figures/monthly?from=2024-05&to=2024-05",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{report}");
    let total = |report: &Value, figure: &str| {
        report["cells"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["figure"] == figure && c["breakdown"] == "total")
            .cloned()
            .unwrap_or(Value::Null)
    };
    assert_eq!(total(&report, "active_users")["value"], 7.0);
    assert_eq!(total(&report, "messages")["value"], 9.0);
    let by_server: Vec<_> = report["cells"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["figure"] == "active_users" && c["breakdown"] == "server")
        .map(|c| (c["key"].clone(), c["value"].clone()))
        .collect();
    assert_eq!(by_server.len(), 2, "{by_server:?}");
    // The same figure from SQL.
    let (_, answer) = sql(
        &serve,
        ANALYST,
        "SELECT count(DISTINCT \"user\") AS n FROM visits WHERE platform <> 'unknown'",
    )
    .await;
    assert_eq!(answer["rows"][0]["n"], 7);

    // The finances analyst sees only B, whatever it writes.
    for query in [
        "SELECT DISTINCT server FROM events",
        "SELECT DISTINCT e.server FROM events e JOIN visits v ON true",
        "SELECT server FROM visits UNION SELECT server FROM events",
        "SELECT DISTINCT server FROM (SELECT * FROM events WHERE server = 'agent.interieur.tchap.gouv.fr' OR true)",
    ] {
        let (status, answer) = sql(&serve, B_ANALYST, query).await;
        assert_eq!(status, StatusCode::OK, "{query}: {answer}");
        let servers: Vec<_> = answer["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["server"].clone())
            .collect();
        assert_eq!(servers, [json!(B)], "{query}");
    }
    let (_, answer) = sql(&serve, B_ANALYST, "SELECT count(*) AS n FROM events").await;
    assert_eq!(answer["rows"][0]["n"], 3);
    // Its figures too: 3 users on B, the 4 of A nowhere.
    let (_, report) = get(
        &serve,
        Some(B_ANALYST),
        "/api/v1/figures/monthly?from=2024-05&to=2024-05",
    )
    .await;
    assert_eq!(total(&report, "active_users")["value"], 3.0);
    assert!(!report.to_string().contains(A));

    // Every SQL query is logged with its user.
    let log = std::fs::read_to_string(&serve.log).unwrap();
    assert!(
        log.contains("finances-analyst") && log.contains("SELECT DISTINCT server FROM events"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_sql_over_http_is_refused_and_the_service_answers_after() {
    let dir = tempfile::tempdir().unwrap();
    let lake = lake_with_two_servers(dir.path()).await;
    let serve = start(dir.path(), &lake);
    let cases = [
        (
            "CREATE TABLE t AS SELECT 1",
            StatusCode::BAD_REQUEST,
            "refused",
        ),
        ("DELETE FROM events", StatusCode::BAD_REQUEST, "refused"),
        (
            "COPY (SELECT * FROM events) TO '/tmp/mxpulse-stolen.csv'",
            StatusCode::BAD_REQUEST,
            "refused",
        ),
        (
            "CREATE EXTERNAL TABLE p (line VARCHAR) STORED AS CSV LOCATION '/etc/passwd'",
            StatusCode::BAD_REQUEST,
            "refused",
        ),
        (
            "SELECT * FROM 'file:///etc/passwd'",
            StatusCode::BAD_REQUEST,
            "invalid",
        ),
        (
            "SELECT * FROM 'https://example.org/x.parquet'",
            StatusCode::BAD_REQUEST,
            "invalid",
        ),
        (
            "SET datafusion.execution.batch_size = 1",
            StatusCode::BAD_REQUEST,
            "refused",
        ),
        (
            "SELECT max(a.value + b.value) FROM generate_series(1, 100000000) a CROSS JOIN generate_series(1, 100000000) b",
            StatusCode::UNPROCESSABLE_ENTITY,
            "memory",
        ),
        (
            "SELECT count(*) FROM generate_series(1, 5000000000) WHERE value % 7 = 3",
            StatusCode::REQUEST_TIMEOUT,
            "timeout",
        ),
        ("SELEC nonsense", StatusCode::BAD_REQUEST, "invalid"),
    ];
    for (query, status, kind) in cases {
        let (got, answer) = sql(&serve, ANALYST, query).await;
        assert_eq!(
            (got, answer["error"]["kind"].as_str()),
            (status, Some(kind)),
            "{query}: {answer}"
        );
        assert!(
            answer["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
        let (ok, answer) = sql(&serve, ANALYST, "SELECT count(*) AS n FROM events").await;
        assert_eq!(
            (ok, &answer["rows"][0]["n"]),
            (StatusCode::OK, &json!(9)),
            "after {query}"
        );
    }
    assert!(!Path::new("/tmp/mxpulse-stolen.csv").exists());
    let (_, answer) = sql(
        &serve,
        ANALYST,
        "SELECT value FROM generate_series(1, 5000)",
    )
    .await;
    assert_eq!(
        (answer["row_count"].as_u64(), answer["truncated"].as_bool()),
        (Some(1000), Some(true))
    );
}

/// The count of `events` the analyst's SQL sees.
async fn events_seen(serve: &Serve) -> Value {
    let (status, answer) = sql(serve, ANALYST, "SELECT count(*) AS n FROM events").await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    answer["rows"][0]["n"].clone()
}

/// The first answer after an idle spell holds every commit older than `refresh_ms`, after
/// a short spell (the background reloads kept the snapshot fresh) and after a long one (no
/// reloads while nobody asks: the request waits for one). Before, it came from the snapshot
/// of the last request, and the next ones caught up.
#[tokio::test(flavor = "multi_thread")]
async fn the_first_answer_after_an_idle_spell_holds_every_commit_older_than_the_refresh() {
    const REFRESH: Duration = Duration::from_millis(200);
    let dir = tempfile::tempdir().unwrap();
    let lake = lake_with_two_servers(dir.path()).await;
    let serve = start_with(dir.path(), &lake, "refresh_ms = 200\n");
    assert_eq!(events_seen(&serve).await, json!(9));
    // Idle spells are the scenario, not waits for a condition: nothing asks meanwhile.
    for (n, idle) in [(10, REFRESH * 5), (11, REFRESH * 35)] {
        std::thread::sleep(idle);
        write(&lake, &[message(n, 1, A)]).await;
        std::thread::sleep(REFRESH);
        assert_eq!(events_seen(&serve).await, json!(n), "after {idle:?} idle");
    }
    // SIGTERM: the service says it stopped, as the hooks and the ingest do (it said nothing).
    let log = serve.log.clone();
    drop(serve);
    let said = std::fs::read_to_string(&log).unwrap();
    assert!(said.contains("query service stopped"), "{said}");
}

#[tokio::test(flavor = "multi_thread")]
async fn formats_and_new_commits_without_restart() {
    let dir = tempfile::tempdir().unwrap();
    let lake = lake_with_two_servers(dir.path()).await;
    let serve = start(dir.path(), &lake);
    let client = reqwest::Client::new();
    let csv = client
        .post(format!("{}/api/v1/sql", serve.url))
        .bearer_auth(ANALYST)
        .header("accept", "text/csv")
        .json(&json!({"sql": "SELECT server, count(*) AS n FROM events GROUP BY server ORDER BY server"}))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(csv, format!("server,n\n{B},3\n{A},6\n"));
    let arrow = client
        .post(format!("{}/api/v1/sql", serve.url))
        .bearer_auth(ANALYST)
        .header("accept", "application/vnd.apache.arrow.stream")
        .json(&json!({"sql": "SELECT count(*) AS n FROM events"}))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let reader = datafusion::arrow::ipc::reader::StreamReader::try_new(
        std::io::Cursor::new(arrow.to_vec()),
        None,
    )
    .unwrap();
    let batches: Vec<_> = reader.map(|b| b.unwrap()).collect();
    assert_eq!(batches[0].num_rows(), 1);

    // The OpenAPI document names every API route, its answer types and the bearer scheme.
    let (status, doc) = get(&serve, None, "/api/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    let paths: Vec<_> = doc["paths"].as_object().unwrap().keys().cloned().collect();
    assert_eq!(
        paths,
        [
            "/api/v1/figures/daily",
            "/api/v1/figures/forums",
            "/api/v1/figures/monthly",
            "/api/v1/indicators/monthly",
            "/api/v1/sql"
        ]
    );
    assert!(
        doc["components"]["schemas"]["FigureCell"]["properties"]["suppressed"].is_object(),
        "{doc}"
    );
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );

    // The figures and the pages are kept for the lake's version: asked again, the same answer
    // comes from the cache; after a commit, the new one.
    let messages =
        "/api/v1/figures/monthly?from=2024-05&to=2024-05&figures=messages&breakdowns=none";
    let (_, first) = get(&serve, Some(VIEWER), messages).await;
    assert_eq!(messages_total(&first), Some(9.0), "{first}");
    let cookie = login_cookie(&serve, VIEWER).await;
    let page_before = page(&serve, &cookie, "/d/overview?from=2024-05&to=2024-05").await;
    assert!(page_before.contains("<svg"), "{page_before}");
    let cached_before = cached_figures(&serve).await;
    let (_, again) = get(&serve, Some(VIEWER), messages).await;
    assert_eq!(again, first);
    assert_eq!(
        page(&serve, &cookie, "/d/overview?from=2024-05&to=2024-05").await,
        page_before
    );
    assert_eq!(
        cached_figures(&serve).await,
        cached_before + 1,
        "the repeated question was answered from the cache (the page's own from its cache)"
    );

    write(&lake, &[message(100, 1, A), message(101, 2, A)]).await;
    let seen = wait_for(Duration::from_secs(20), || {
        let (_, answer) =
            harness::block_on(sql(&serve, ANALYST, "SELECT count(*) AS n FROM events"));
        (answer["rows"][0]["n"] == 11).then_some(())
    });
    assert!(seen.is_some(), "the new commit shows without a restart");
    let (_, after) = get(&serve, Some(VIEWER), messages).await;
    assert_eq!(
        messages_total(&after),
        Some(11.0),
        "no answer outlives its version: {after}"
    );
    let page_after = page(&serve, &cookie, "/d/overview?from=2024-05&to=2024-05").await;
    assert_ne!(
        page_after, page_before,
        "the page was rendered again for the new version"
    );
}

/// The total of the `messages` figure in a figures answer.
fn messages_total(answer: &Value) -> Option<f64> {
    answer["cells"]
        .as_array()?
        .iter()
        .find(|c| c["figure"] == "messages" && c["breakdown"] == "total")?["value"]
        .as_f64()
}

/// A dashboards page, as a logged-in viewer's browser gets it.
async fn page(serve: &Serve, cookie: &str, path: &str) -> String {
    let response = reqwest::Client::new()
        .get(format!("{}{path}", serve.url))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.text().await.unwrap()
}

/// `mxpulse_query_figures_cached_total`.
async fn cached_figures(serve: &Serve) -> u64 {
    let metrics = harness::serve::metrics(serve).await;
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("mxpulse_query_figures_cached_total "))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no cached counter: {metrics}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn psql_over_the_wire_with_the_same_answers_guard_and_scope() {
    let dir = tempfile::tempdir().unwrap();
    let lake = lake_with_two_servers(dir.path()).await;
    let serve = start(dir.path(), &lake);
    // The views are listed, as \dv and as a query over information_schema.
    let tables = psql(
        &serve,
        "dinum-analyst",
        ANALYST,
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1",
    )
    .unwrap();
    let all_views = VIEWS;
    assert_eq!(tables.lines().collect::<Vec<_>>(), all_views);
    for listing in ["\\dv", "\\dv+", "\\d"] {
        let views = psql(&serve, "dinum-analyst", ANALYST, listing).unwrap();
        let names: Vec<_> = views.lines().filter_map(|l| l.split('|').nth(1)).collect();
        assert_eq!(names, all_views, "{listing}: {views}");
    }
    // `\d VIEW` describes that view: its columns are the ones a query over HTTP returns.
    for view in all_views {
        let described = psql(&serve, "dinum-analyst", ANALYST, &format!("\\d {view}")).unwrap();
        let columns: Vec<_> = described
            .lines()
            .filter_map(|l| l.split('|').next())
            .collect();
        assert_eq!(columns, http_columns(&serve, view).await, "\\d {view}");
    }
    // A figure's query answers what the HTTP API answers.
    let n = psql(
        &serve,
        "dinum-analyst",
        ANALYST,
        "SELECT count(DISTINCT \"user\") FROM visits WHERE platform <> 'unknown'",
    )
    .unwrap();
    let http = api_active_users_in_may(&serve).await.unwrap();
    assert_eq!(n.parse::<f64>().unwrap(), http);
    // The publication view holds the API's cell.
    let published = psql(
        &serve,
        "dinum-analyst",
        ANALYST,
        "SELECT value FROM monthly_figures WHERE figure = 'active_users' AND breakdown = 'total' AND period = '2024-05'",
    )
    .unwrap();
    assert_eq!(published.parse::<f64>().ok(), Some(http), "{published}");
    // Wrong password, viewer role, hostile SQL: refused, and the next query answers.
    let denied = psql(&serve, "dinum-analyst", "wrong-password-0000", "SELECT 1")
        .unwrap_err()
        .to_lowercase();
    assert!(
        denied.contains("password") || denied.contains("authentication"),
        "{denied}"
    );
    assert!(
        psql(&serve, "product-lead", VIEWER, "SELECT 1")
            .unwrap_err()
            .contains("figures only")
    );
    for hostile in [
        "CREATE TABLE t AS SELECT 1",
        "DELETE FROM events",
        "COPY (SELECT 1) TO '/tmp/mxpulse-pg-stolen.csv'",
        "CREATE EXTERNAL TABLE p (line VARCHAR) STORED AS CSV LOCATION '/etc/passwd'",
        "SET datafusion.execution.batch_size = 1",
        "SELECT * FROM 'file:///etc/passwd'",
        "SELECT max(a.value + b.value) FROM generate_series(1, 100000000) a CROSS JOIN generate_series(1, 100000000) b",
        "SELECT count(*) FROM generate_series(1, 5000000000) WHERE value % 7 = 3",
    ] {
        let err = psql(&serve, "dinum-analyst", ANALYST, hostile).unwrap_err();
        assert!(err.contains("ERROR"), "{hostile}: {err}");
        assert_eq!(
            psql(
                &serve,
                "dinum-analyst",
                ANALYST,
                "SELECT count(*) FROM events"
            )
            .unwrap(),
            "9",
            "after {hostile}"
        );
    }
    // Over the row limit: cut, and psql says so.
    let cut = Command::new("psql")
        .args(["-h", "127.0.0.1", "-p", &serve.pg_port.to_string()])
        .args(["-U", "dinum-analyst", "-d", "mxpulse", "-X", "-A", "-t"])
        .args(["-c", "SELECT value FROM generate_series(1, 1500)"])
        .env("PGPASSWORD", ANALYST)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&cut.stdout).lines().count(), 1000);
    let said = String::from_utf8_lossy(&cut.stderr);
    assert!(
        said.contains("NOTICE") && said.contains("cut at 1000 rows"),
        "{said}"
    );
    // The ministry's user sees its server only.
    let servers = psql(
        &serve,
        "finances-analyst",
        B_ANALYST,
        "SELECT DISTINCT e.server FROM events e JOIN visits v ON true",
    )
    .unwrap();
    assert_eq!(servers, B);
}

/// The facts `tests/clients/JdbcClient.java` prints, run by Java over pgjdbc as `user`, asking
/// about `server`'s events; `mode` is `all` or `scope` (prepared statements only).
fn jdbc(
    serve: &Serve,
    user: &str,
    password: &str,
    server: &str,
    mode: &str,
) -> BTreeMap<String, String> {
    let jar = Path::new("/usr/share/java/postgresql.jar");
    assert!(
        jar.exists(),
        "pgjdbc is missing (scripts/test installs libpostgresql-jdbc-java)"
    );
    let output = Command::new("java")
        .arg("-cp")
        .arg(jar)
        .arg(harness::repo_root().join("tests/clients/JdbcClient.java"))
        .args([&serve.pg_port.to_string(), user, password, server, mode])
        .output()
        .expect("java (scripts/test installs default-jdk-headless)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn jdbc_tools_connect_prepare_and_read_the_catalog_within_the_same_guard_and_scope() {
    let dir = tempfile::tempdir().unwrap();
    let lake = lake_with_two_servers(dir.path()).await;
    let serve = start(dir.path(), &lake);
    let facts = jdbc(&serve, "dinum-analyst", ANALYST, A, "all");
    assert_eq!(facts.get("error"), None, "{facts:?}");
    assert_eq!(facts["isolation"], "2", "read committed: {facts:?}");
    assert_eq!(facts["views"], VIEWS.join(","));
    // The columns of the view asked for, in the table's order, with PostgreSQL's types.
    assert_eq!(
        facts["visits_columns"],
        "day:date,server:text,domain:text,user:int8,device:int8,platform:text,client:text,key_id:text,v:int2,family:text",
    );
    // Seven executions of one prepared statement (named and binary after the fifth): the
    // bound value selects, it is never SQL text.
    assert_eq!(facts["events_of_server"], ["6"; 7].join(","));
    // A figure with date parameters answers what the figures API answers.
    let api = api_active_users_in_may(&serve).await;
    assert_eq!(
        facts["active_users_may"].parse::<f64>().ok(),
        api,
        "{facts:?}"
    );
    assert_eq!(facts["first_day"], "2024-05-06");
    assert_eq!(facts["visits_in_transaction"], "7", "BEGIN ... COMMIT");
    assert_eq!(facts["events"], "9");
    // Each hostile statement refused with its SQLSTATE: insufficient privilege (not a query),
    // syntax error (CREATE EXTERNAL TABLE is not PostgreSQL; a URL is no table), the query
    // cancelled at the time limit; and the connection answers after each.
    let expected = [
        "42501", "42501", "42501", "42601", "42501", "42601", "57014",
    ];
    for (i, expected) in expected.iter().enumerate() {
        assert_eq!(&facts[&format!("hostile_{i}")], expected, "hostile {i}");
        assert_eq!(
            facts[&format!("events_after_{i}")],
            "9",
            "after hostile {i}"
        );
    }
    assert!(!Path::new("/tmp/mxpulse-jdbc-stolen.csv").exists());

    // The ministry's user: its server only, whatever it binds.
    let scoped = jdbc(&serve, "finances-analyst", B_ANALYST, A, "scope");
    assert_eq!(scoped.get("error"), None, "{scoped:?}");
    assert_eq!(scoped["events_of_server"], ["0"; 7].join(","));
    assert_eq!(scoped["visits_in_transaction"], "3");
    assert_eq!(scoped["events"], "3");
    let own = jdbc(&serve, "finances-analyst", B_ANALYST, B, "scope");
    assert_eq!(own["events_of_server"], ["3"; 7].join(","));

    // A viewer gets connected (the driver's own statements) but no SQL; a wrong password no
    // connection.
    let viewer = jdbc(&serve, "product-lead", VIEWER, A, "scope");
    assert!(
        viewer["error"].starts_with("42501") && viewer["error"].contains("figures only"),
        "{viewer:?}"
    );
    let denied = jdbc(&serve, "dinum-analyst", "wrong-password-0000", A, "scope");
    assert!(denied["error"].starts_with("28"), "{denied:?}");
    // Every query was logged with its user, the refused ones too (refused at Parse).
    let log = std::fs::read_to_string(&serve.log).unwrap();
    assert!(log.contains("finances-analyst") && log.contains("Pgwire"));
    assert!(
        log.lines().any(|l| l.contains("refused")
            && l.contains("user=dinum-analyst")
            && l.contains("DELETE FROM events")),
        "{log}"
    );
}

/// What `tests/clients/python_clients.py` saw as `user`, asking about `server`'s events.
fn python_clients(serve: &Serve, user: &str, password: &str, server: &str) -> Value {
    let output = Command::new(harness::python())
        .arg(harness::repo_root().join("tests/clients/python_clients.py"))
        .args([&serve.pg_port.to_string(), user, password, server])
        .output()
        .expect("python with psycopg, SQLAlchemy and pandas (scripts/test installs them)");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn python_analysts_psycopg_and_pandas_get_the_http_answers() {
    let dir = tempfile::tempdir().unwrap();
    let lake = lake_with_two_servers(dir.path()).await;
    let serve = start(dir.path(), &lake);
    let facts = python_clients(&serve, "dinum-analyst", ANALYST, A);
    // Each answer against the same question over HTTP.
    let http = |query: &'static str| {
        let serve = &serve;
        async move { sql(serve, ANALYST, query).await.1["rows"].clone() }
    };
    let of_a = http(
        "SELECT count(*) AS n, max(date) AS last FROM events WHERE server = 'agent.interieur.tchap.gouv.fr'",
    )
    .await;
    assert_eq!(facts["psycopg_events_of_server"], of_a[0]["n"]);
    assert_eq!(facts["psycopg_binary_prepared"][0], of_a[0]["n"]);
    assert_eq!(facts["psycopg_binary_prepared"][1], of_a[0]["last"]);
    assert_eq!(
        facts["psycopg_injection"], 0,
        "the value was bound, not pasted"
    );
    assert_eq!(facts["psycopg_delete"], "42501");
    assert_eq!(facts["psycopg_events_after_delete"], 9);
    // Over the row limit: cut, and the client told so.
    assert_eq!(facts["psycopg_long_rows"], 1000);
    assert!(
        facts["psycopg_notices"][0]
            .as_str()
            .is_some_and(|n| n.contains("cut at 1000 rows")),
        "{facts}"
    );
    let mau = http(
        "SELECT count(DISTINCT \"user\") AS n FROM visits WHERE platform <> 'unknown' AND day BETWEEN '2024-05-01' AND '2024-05-31'",
    )
    .await;
    assert_eq!(facts["psycopg2_active_users_may"], mau[0]["n"]);
    let daily = http(
        "SELECT CAST(date AS VARCHAR) AS day, count(*) AS n FROM events WHERE type = 'm.room.message' GROUP BY date ORDER BY date",
    )
    .await;
    let daily: Vec<Value> = daily
        .as_array()
        .unwrap()
        .iter()
        .map(|row| json!([row["day"], row["n"]]))
        .collect();
    assert!(!daily.is_empty());
    for driver in ["psycopg2", "psycopg"] {
        assert_eq!(
            facts[format!("pandas_{driver}_daily_messages")],
            Value::Array(daily.clone()),
            "{driver}"
        );
        // SQLAlchemy's inspector (what Superset runs when a database is added) over every
        // view: the HTTP API's columns, no key, no index. It failed on `LIKE ... ESCAPE '/'`,
        // `pg_get_serial_sequence` and `unnest(pg_index.indkey)`.
        let inspected = &facts[format!("inspector_{driver}")];
        assert!(
            inspected["schemas"]
                .as_array()
                .unwrap()
                .contains(&json!("public")),
            "{inspected}"
        );
        let views = inspected["views"].as_object().unwrap();
        for view in ["events", "visits", "accounts", "rooms"] {
            let seen = &views[view];
            assert_eq!(
                seen["columns"],
                json!(http_columns(&serve, view).await),
                "{driver} {view}"
            );
            assert_eq!(seen["primary_key"], json!([]), "{driver} {view}");
            assert_eq!(seen["indexes"], json!([]), "{driver} {view}");
        }
        // Superset's time filter, in PostgreSQL's date formats.
        assert_eq!(
            facts[format!("superset_time_filter_{driver}")],
            json!(["2024-05-06", "2024-05-06 13:45:10"]),
            "{driver}"
        );
    }
    // The ministry's analyst, through the same drivers: its server's rows only.
    let scoped = python_clients(&serve, "finances-analyst", B_ANALYST, A);
    assert_eq!(scoped["psycopg_events_of_server"], 0);
    assert_eq!(scoped["psycopg_events_after_delete"], 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn metabase_and_grafana_catalog_queries_answer_over_jdbc() {
    let dir = tempfile::tempdir().unwrap();
    let lake = lake_with_two_servers(dir.path()).await;
    let serve = start(dir.path(), &lake);
    let queries = harness::repo_root().join("tests/clients/bi_catalog_queries.sql");
    let answers = jdbc(
        &serve,
        "dinum-analyst",
        ANALYST,
        "queries",
        queries.to_str().unwrap(),
    );
    let errors: Vec<_> = answers.keys().filter(|k| k.ends_with("_error")).collect();
    assert!(errors.is_empty(), "{answers:#?}");
    let rows = |n: usize| answers[&format!("query_{n}_rows")].as_str();
    let first = |n: usize| answers[&format!("query_{n}_first")].as_str();
    assert_eq!(answers.len(), 2 * 10, "every query ran: {answers:#?}");
    let views = VIEWS;
    // The columns of each view, as a query over HTTP returns them.
    let mut columns_of = BTreeMap::new();
    for view in views {
        columns_of.insert(view, http_columns(&serve, view).await);
    }
    assert_eq!(first(0), "pg_catalog,public", "schemas");
    assert_eq!(rows(1), VIEWS.len().to_string(), "tables");
    let all_columns: Vec<String> = columns_of.values().flatten().cloned().collect();
    assert_eq!(first(2), all_columns.join(","), "Metabase's fields");
    assert_eq!(rows(3), "0", "no materialized views");
    assert_eq!(rows(4), "0", "no foreign keys");
    assert_eq!(rows(5), "0", "the SELECT probe");
    assert_eq!(rows(6), "1", "one week of messages");
    assert_eq!(first(7), views.join(","), "Grafana's tables");
    assert_eq!(
        first(8),
        columns_of["events"].join(","),
        "Grafana's columns"
    );
    assert_eq!(rows(9), "1", "one day of messages");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_query_whose_client_leaves_or_cancels_stops_running() {
    const ENDLESS: &str = "SELECT count(*) FROM generate_series(1, 5000000000) WHERE value % 7 = 3";
    let dir = tempfile::tempdir().unwrap();
    let lake = lake_with_two_servers(dir.path()).await;
    let serve = start(dir.path(), &lake);
    let idle = cpu_over(&serve, Duration::ZERO, Duration::from_secs(2));

    // An HTTP client that gives up after half a second: the query goes with it, whatever
    // its time limit (a query left behind would keep a core busy for minutes).
    let gave_up = reqwest::Client::new()
        .post(format!("{}/api/v1/sql", serve.url))
        .bearer_auth(ANALYST)
        .json(&json!({ "sql": ENDLESS }))
        .timeout(Duration::from_millis(500))
        .send()
        .await;
    assert!(gave_up.is_err());
    let after_http = cpu_over(&serve, Duration::from_millis(500), Duration::from_secs(2));
    assert!(
        after_http < idle + 0.5,
        "still working after the client left: {after_http} s of CPU in 2 s (idle {idle})"
    );

    // psql's Ctrl-C sends PostgreSQL's cancel request.
    let psql = Command::new("psql")
        .args(["-h", "127.0.0.1", "-p", &serve.pg_port.to_string()])
        .args(["-U", "dinum-analyst", "-d", "mxpulse", "-X", "-c", ENDLESS])
        .env("PGPASSWORD", ANALYST)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    // SAFETY: kill(2) on the PID of a child this test spawned and has not reaped.
    unsafe { libc::kill(psql.id() as i32, libc::SIGINT) };
    let output = psql.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(said.contains("cancel"), "{said}");
    assert!(
        !said.contains("ran longer"),
        "cancelled, not timed out: {said}"
    );
    let after_cancel = cpu_over(&serve, Duration::from_millis(500), Duration::from_secs(2));
    assert!(
        after_cancel < idle + 0.5,
        "still working after the cancel: {after_cancel} s of CPU in 2 s (idle {idle})"
    );
    let (status, answer) = sql(&serve, ANALYST, "SELECT count(*) AS n FROM events").await;
    assert_eq!(
        (status, answer["rows"][0]["n"].clone()),
        (StatusCode::OK, json!(9))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_clients_over_tls_and_none_without_when_it_is_required() {
    let dir = tempfile::tempdir().unwrap();
    let lake = lake_with_two_servers(dir.path()).await;
    // A self-signed certificate for 127.0.0.1, which the client trusts as its root.
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let made = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args([
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let serve = start_with(
        dir.path(),
        &lake,
        &format!(
            "pgwire_tls_cert = \"{}\"\npgwire_tls_key = \"{}\"\npgwire_tls_required = true\n",
            cert.display(),
            key.display()
        ),
    );
    let psql = |sslmode: &str, sql: &str| {
        Command::new("psql")
            .arg(format!(
                "host=127.0.0.1 port={} user=dinum-analyst dbname=mxpulse sslmode={sslmode} sslrootcert={}",
                serve.pg_port,
                cert.display()
            ))
            .args(["-X", "-A", "-t", "-c", sql])
            .env("PGPASSWORD", ANALYST)
            .output()
            .unwrap()
    };
    // The certificate checked against the host name: the encrypted session answers.
    let verified = psql("verify-full", "SELECT count(*) FROM events");
    assert_eq!(String::from_utf8_lossy(&verified.stdout).trim(), "9");
    let info = psql("verify-full", "\\conninfo");
    assert!(
        String::from_utf8_lossy(&info.stdout).contains("SSL connection"),
        "{}",
        String::from_utf8_lossy(&info.stdout)
    );
    // Without TLS: refused before any password is sent.
    let plain = psql("disable", "SELECT 1");
    assert!(!plain.status.success());
    let said = String::from_utf8_lossy(&plain.stderr);
    assert!(said.contains("TLS connections only"), "{said}");
}
