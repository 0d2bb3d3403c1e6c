//! Golden figures: the golden lake (`golden/`), where every figure, breakdown, change, peak day
//! and suppression below was worked out by hand (k = 3, Europe/Paris), counted from the raw
//! tables; `rollups.rs` checks that the rollups give the same answers.

mod golden;

use std::collections::BTreeMap;
use std::time::Duration;

use golden::{A, B, write_lake};
use mxpulse_query::figures::disclosure::CellKeyRule;
use mxpulse_query::figures::{self, FigureCell, Filters, Granularity};
use mxpulse_query::lake::LakeSnapshot;
use mxpulse_query::session::{self, Limits, Scope};

async fn report(scope: Scope, filters: Filters) -> Vec<FigureCell> {
    let limits = Limits {
        memory_bytes: 256 << 20,
        timeout: Duration::from_secs(60),
        max_rows: 10_000,
    };
    let (_dir, ctx) = analyst_session(scope, limits).await;
    figures::compute(
        &ctx,
        Granularity::Month,
        "2024-05",
        "2024-06",
        &filters,
        &[],
        "Europe/Paris",
        // The hand-worked values are exact counts: published unmoved here; the moves
        // themselves are tested in `disclosure.rs` and `tests/disclosure.rs`.
        &CellKeyRule::new(3, 0),
    )
    .await
    .unwrap()
    .cells
}

fn cell<'a>(
    cells: &'a [FigureCell],
    figure: &str,
    period: &str,
    breakdown: &str,
    key: Option<&str>,
) -> &'a FigureCell {
    cells
        .iter()
        .find(|c| {
            c.figure == figure
                && c.period == period
                && c.breakdown == breakdown
                && c.key.as_deref() == key
        })
        .unwrap_or_else(|| panic!("no cell {figure} {period} {breakdown} {key:?}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn every_figure_matches_the_hand_worked_values() {
    let cells = report(
        Scope {
            server: None,
            pseudonyms: true,
        },
        Filters::default(),
    )
    .await;
    let total =
        |figure: &'static str, period: &'static str| cell(&cells, figure, period, "total", None);

    // Active users: May 2024 = users 1-5 (6 has no known platform); June 2 users: suppressed.
    let may = total("active_users", "2024-05");
    assert_eq!((may.value, may.suppressed), (Some(5.0), false));
    assert_eq!(may.yoy, Some(0.25), "May 2023 had 4");
    assert_eq!(may.mom, Some(0.25), "April 2024 had 4");
    assert_eq!(
        (may.peak_day.as_deref(), may.peak_value),
        (Some("2024-05-14"), Some(4.0))
    );
    let june = total("active_users", "2024-06");
    assert_eq!((june.value, june.suppressed, june.mom), (None, true, None));
    assert!(
        cell(&cells, "active_users", "2024-05", "server", Some(B)).suppressed,
        "2 users"
    );
    // A's 3 are shown: B's 2 as 5 - 3 holds only for exact counts; published ones are moved
    // (docs/design.md §4, tested in tests/disclosure.rs).
    assert_eq!(
        cell(&cells, "active_users", "2024-05", "server", Some(A)).value,
        Some(3.0)
    );
    // Web: users 1, 3, 5; Android: 2 and, on 14 May, 1-4; iOS: user 4 alone.
    assert_eq!(
        cell(&cells, "active_users", "2024-05", "platform", Some("web")).value,
        Some(3.0)
    );
    assert_eq!(
        cell(
            &cells,
            "active_users",
            "2024-05",
            "platform",
            Some("android")
        )
        .value,
        Some(4.0)
    );
    assert!(cell(&cells, "active_users", "2024-05", "platform", Some("ios")).suppressed);

    // Messages in May (Paris): the 1 May 00:30 message, 7 encrypted, 2 thread replies = 10;
    // the edit and the reactions are not messages; 4 senders.
    let messages = total("messages", "2024-05");
    assert_eq!(messages.value, Some(10.0));
    assert_eq!(
        messages.peak_day.as_deref(),
        Some("2024-05-07"),
        "4 messages on 7 May"
    );
    assert_eq!(messages.peak_value, Some(5.0));
    assert!(
        total("messages", "2024-06").suppressed,
        "one sender in June"
    );
    assert!(total("threads", "2024-05").suppressed, "2 senders");
    assert!(total("reactions", "2024-05").suppressed, "2 senders");

    // Rooms: 5 created by 3 users; one of each kind, each by one user: suppressed.
    assert_eq!(total("rooms_created", "2024-05").value, Some(5.0));
    for kind in ["direct", "private", "external", "forum", "space"] {
        let figure = format!("rooms_created_{kind}");
        let c = cell(&cells, &figure, "2024-05", "total", None);
        assert!(c.suppressed && c.value.is_none(), "{kind}: {c:?}");
    }
    // Accounts: four regular, the bot not counted; still four open at the end of June.
    assert_eq!(total("accounts_created", "2024-05").value, Some(4.0));
    assert_eq!(total("total_active_accounts", "2024-05").value, Some(4.0));
    assert_eq!(total("total_active_accounts", "2024-06").value, Some(4.0));
    assert_eq!(total("total_active_accounts", "2024-06").mom, Some(0.0));
    // Nothing published for months outside the request.
    assert!(
        cells
            .iter()
            .all(|c| c.period == "2024-05" || c.period == "2024-06")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_scoped_session_sees_only_its_server_and_kinds_are_right() {
    let cells = report(
        Scope {
            server: Some(B.into()),
            pseudonyms: true,
        },
        Filters::default(),
    )
    .await;
    // Server B: users 4 and 5 only, suppressed; none of A's events.
    let may = cell(&cells, "active_users", "2024-05", "total", None);
    assert!(may.suppressed);
    assert!(cells.iter().all(|c| c.figure == "active_users"
        || c.figure == "accounts_created"
        || c.value.is_none()));
    assert!(
        !cells.iter().any(|c| c.key.as_deref() == Some(A)),
        "no row of server A"
    );
    // B created no rooms: withheld, like a small count (zero is not told apart).
    let kinds: BTreeMap<_, _> = cells
        .iter()
        .filter(|c| c.figure.starts_with("rooms_created"))
        .map(|c| (c.figure, c.value))
        .collect();
    assert!(
        !kinds.is_empty() && kinds.values().all(Option::is_none),
        "B created no rooms: {kinds:?}"
    );
}

async fn analyst_session(
    scope: Scope,
    limits: Limits,
) -> (tempfile::TempDir, datafusion::prelude::SessionContext) {
    let dir = tempfile::tempdir().unwrap();
    let root = mxpulse_ingest::LakeRoot::parse(&dir.path().display().to_string()).unwrap();
    write_lake(&root).await;
    let snapshot = LakeSnapshot::load(root.url()).await.unwrap();
    let publication = session::Publication {
        timezone: "Europe/Paris".into(),
        min_users: 3,
        noise: 0,
    };
    let ctx = session::session(&snapshot, &scope, &limits, Some(&publication))
        .await
        .unwrap();
    (dir, ctx)
}

fn limits() -> Limits {
    Limits {
        memory_bytes: 64 << 20,
        timeout: Duration::from_secs(5),
        max_rows: 1_000,
    }
}

fn executor() -> mxpulse_query::executor::QueryExecutor {
    mxpulse_query::executor::QueryExecutor::new(2).unwrap()
}

async fn rows(ctx: &datafusion::prelude::SessionContext, sql: &str) -> Vec<String> {
    let out = session::run_sql(&executor(), ctx.clone(), sql.into(), limits())
        .await
        .unwrap();
    let text = datafusion::arrow::util::pretty::pretty_format_batches(&out.batches)
        .unwrap()
        .to_string();
    // The table's lines without its header.
    text.lines()
        .filter(|l| l.starts_with("| "))
        .skip(1)
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn rooms_have_the_kind_of_their_initial_state() {
    let (_dir, ctx) = analyst_session(
        Scope {
            server: None,
            pseudonyms: true,
        },
        limits(),
    )
    .await;
    let kinds = rows(&ctx, "SELECT room, kind FROM rooms ORDER BY room").await;
    assert_eq!(
        kinds,
        [
            "| 201 | direct |",
            "| 202 | forum |",
            "| 203 | space |",
            "| 204 | private |",
            "| 205 | external |"
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_sql_is_refused_or_bounded_and_the_session_still_answers() {
    let (_dir, ctx) = analyst_session(
        Scope {
            server: None,
            pseudonyms: true,
        },
        limits(),
    )
    .await;
    let x = executor();
    let refused = [
        "CREATE TABLE t AS SELECT 1",
        "INSERT INTO events SELECT * FROM events",
        "COPY (SELECT * FROM events) TO '/tmp/stolen.csv'",
        "CREATE EXTERNAL TABLE p (line VARCHAR) STORED AS CSV LOCATION '/etc/passwd'",
        "SET datafusion.execution.batch_size = 1",
        "DROP VIEW events",
    ];
    for sql in refused {
        let err = session::run_sql(&x, ctx.clone(), sql.into(), limits())
            .await
            .unwrap_err();
        assert!(
            matches!(err, mxpulse_query::QueryError::Refused(_)),
            "{sql}: {err}"
        );
    }
    for sql in [
        "SELECT * FROM '/etc/passwd'",
        "SELECT * FROM 'https://example.org/data.parquet'",
        "SELECT * FROM read_csv('/etc/passwd')",
    ] {
        let err = session::run_sql(&x, ctx.clone(), sql.into(), limits())
            .await
            .unwrap_err();
        assert!(
            matches!(err, mxpulse_query::QueryError::Invalid(_)),
            "{sql}: {err}"
        );
    }
    let err = session::run_sql(
        &x,
        ctx.clone(),
        "SELECT max(a.value + b.value) FROM generate_series(1, 100000000) a CROSS JOIN generate_series(1, 100000000) b".into(),
        limits(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, mxpulse_query::QueryError::Memory(_)),
        "memory: {err}"
    );
    let slow = Limits {
        timeout: Duration::from_millis(500),
        ..limits()
    };
    let err = session::run_sql(
        &x,
        ctx.clone(),
        "SELECT count(*) FROM generate_series(1, 2000000000) WHERE value % 7 = 3".into(),
        slow,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, mxpulse_query::QueryError::Timeout(_)),
        "timeout: {err}"
    );
    let few = Limits {
        max_rows: 3,
        ..limits()
    };
    let out = session::run_sql(&x, ctx.clone(), "SELECT * FROM events".into(), few)
        .await
        .unwrap();
    assert_eq!((out.rows, out.truncated), (3, true));
    assert_eq!(
        rows(&ctx, "SELECT count(*) AS n FROM accounts").await,
        ["| 5 |"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn every_example_of_docs_sql_md_runs() {
    let (_dir, ctx) = analyst_session(
        Scope {
            server: None,
            pseudonyms: true,
        },
        limits(),
    )
    .await;
    let docs = std::fs::read_to_string(
        // At run time first: cargo may reuse a test binary built in another checkout.
        std::path::PathBuf::from(
            std::env::var_os("CARGO_MANIFEST_DIR")
                .unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
        )
        .join("../docs/sql.md"),
    )
    .unwrap();
    let examples: Vec<&str> = docs
        .split("```sql")
        .skip(1)
        .filter_map(|block| block.split("```").next())
        .collect();
    assert!(examples.len() >= 4, "{} examples", examples.len());
    let x = executor();
    for sql in examples {
        let sql = sql.trim().trim_end_matches(';');
        let out = session::run_sql(&x, ctx.clone(), sql.into(), limits()).await;
        assert!(out.is_ok(), "{sql}: {:?}", out.err());
        assert!(
            out.unwrap().rows > 0,
            "{sql} returns rows over the test lake"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn top_forums_rank_by_members_and_leave_small_ones_out() {
    let (_dir, ctx) = analyst_session(
        Scope {
            server: None,
            pseudonyms: true,
        },
        limits(),
    )
    .await;
    // Forum 202 has no joined member in the test lake: nobody to count, left out at any k.
    for k in [3, 1] {
        let ranks = figures::top_forums(&ctx, 10, "Europe/Paris", &CellKeyRule::new(k, 0))
            .await
            .unwrap();
        assert!(ranks.is_empty(), "{ranks:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn only_the_figures_asked_for_and_unknown_names_are_refused() {
    let scope = Scope {
        server: None,
        pseudonyms: true,
    };
    let (_dir, ctx) = analyst_session(scope, limits()).await;
    let only = ["messages".to_owned(), "total_active_accounts".to_owned()];
    let cells = report_cells_of(&ctx, &only).await;
    let names: std::collections::BTreeSet<_> = cells.iter().map(|c| c.figure).collect();
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        ["messages", "total_active_accounts"]
    );
    // The same cells as in the full report.
    let full = report_cells_of(&ctx, &[]).await;
    for c in &cells {
        assert!(full.contains(c), "{c:?}");
    }
    let unknown = figures::compute(
        &ctx,
        Granularity::Month,
        "2024-05",
        "2024-06",
        &Filters::default(),
        &["messagez".to_owned()],
        "Europe/Paris",
        // The hand-worked values are exact counts: published unmoved here; the moves
        // themselves are tested in `disclosure.rs` and `tests/disclosure.rs`.
        &CellKeyRule::new(3, 0),
    )
    .await;
    assert!(
        matches!(&unknown, Err(mxpulse_query::QueryError::Invalid(m)) if m.contains("messagez")),
        "{unknown:?}"
    );
}

async fn report_cells_of(
    ctx: &datafusion::prelude::SessionContext,
    only: &[String],
) -> Vec<FigureCell> {
    figures::compute(
        ctx,
        Granularity::Month,
        "2024-05",
        "2024-06",
        &Filters::default(),
        only,
        "Europe/Paris",
        // The hand-worked values are exact counts: published unmoved here; the moves
        // themselves are tested in `disclosure.rs` and `tests/disclosure.rs`.
        &CellKeyRule::new(3, 0),
    )
    .await
    .unwrap()
    .cells
}

/// (figure, period, breakdown, key) of a cell.
type CellKey = (String, String, String, String);

fn key_of(c: &FigureCell) -> CellKey {
    (
        c.figure.to_owned(),
        c.period.clone(),
        c.breakdown.to_owned(),
        c.key.clone().unwrap_or_else(|| "-".into()),
    )
}

/// The cells of a publication view: every cell that exists, shown or not.
async fn view_cells(
    ctx: &datafusion::prelude::SessionContext,
    view: &str,
) -> BTreeMap<CellKey, (String, bool)> {
    rows(
        ctx,
        &format!(
            "SELECT figure, period, breakdown, coalesce(key, '-'), coalesce(CAST(value AS VARCHAR), 'NULL'), suppressed \
             FROM {view} WHERE period >= '2024-05' AND period < '2024-07'"
        ),
    )
    .await
    .into_iter()
    .map(|line| {
        let f: Vec<String> = line
            .trim_matches('|')
            .split('|')
            .map(|s| s.trim().to_owned())
            .collect();
        (
            (f[0].clone(), f[1].clone(), f[2].clone(), f[3].clone()),
            (f[4].clone(), f[5] == "true"),
        )
    })
    .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_publication_views_hold_the_api_cells_with_small_cells_suppressed() {
    let scope = Scope {
        server: None,
        pseudonyms: true,
    };
    let (_dir, ctx) = analyst_session(scope, limits()).await;
    let api = report_cells_of(&ctx, &[]).await;
    let view = view_cells(&ctx, "monthly_figures").await;
    // Every value the API shows is the view's; every cell the view hides, the API hides; a
    // cell the view has no row for (nobody) the API withholds.
    for c in api
        .iter()
        .filter(|c| !figures::SPECIAL_FIGURES.contains(&c.figure))
    {
        if c.key.as_deref() == Some(figures::publish::SMALL_DOMAINS) {
            continue;
        }
        let Some((value, suppressed)) = view.get(&key_of(c)) else {
            assert!(c.suppressed && c.value.is_none(), "{c:?}");
            continue;
        };
        match c.value {
            Some(v) => assert_eq!(
                (value.as_str(), *suppressed),
                (format!("{v:?}").as_str(), false)
            ),
            None => assert!(c.suppressed),
        }
    }
    for (key, (_, suppressed)) in &view {
        if *suppressed && key.2 != "domain" {
            let c = api.iter().find(|c| key_of(c) == *key).unwrap();
            assert!(c.suppressed && c.value.is_none(), "{key:?}");
        }
    }
    assert!(
        view.values().any(|(v, s)| *s && v == "NULL"),
        "some cells are suppressed"
    );
    // Daily cells: suppressed ones show no value, the others never exceed their month.
    let leaks = rows(
        &ctx,
        "SELECT count(*) FROM daily_figures WHERE suppressed AND value IS NOT NULL",
    )
    .await;
    assert_eq!(leaks, ["| 0 |"]);
    let over = rows(
        &ctx,
        "SELECT count(*) FROM daily_figures d JOIN monthly_figures m \
         ON m.figure = d.figure AND m.breakdown = d.breakdown AND m.period = substr(d.period, 1, 7) \
         WHERE d.figure = 'messages' AND d.breakdown = 'total' AND d.value > m.value",
    )
    .await;
    assert_eq!(over, ["| 0 |"]);
}

/// r30v2 at May's end (window 2 April – 31 May): users 1–3 were seen on 10 April and on
/// 14 May, 34 days apart; user 4 moved servers (a pseudonym per server: two users of a few
/// days each); user 5 only in May. At June's end (window 2 May – 30 June): users 1 and 2
/// (2 May and 3 June), fewer than k.
#[tokio::test(flavor = "multi_thread")]
async fn r30_counts_users_seen_more_than_30_days_apart_within_60() {
    let scope = Scope {
        server: None,
        pseudonyms: true,
    };
    let (_dir, ctx) = analyst_session(scope, limits()).await;
    let cells = report_cells_of(&ctx, &["r30_users".to_owned()]).await;
    let find = |period: &str, breakdown: &str, key: Option<&str>| {
        cells
            .iter()
            .find(|c| c.period == period && c.breakdown == breakdown && c.key.as_deref() == key)
            .unwrap_or_else(|| panic!("no r30 cell {period} {breakdown} {key:?}: {cells:?}"))
    };
    assert_eq!(find("2024-05", "total", None).value, Some(3.0));
    assert_eq!(find("2024-05", "server", Some(A)).value, Some(3.0));
    assert_eq!(
        find("2024-05", "domain", Some("interieur.gouv.fr")).value,
        Some(3.0)
    );
    let june = find("2024-06", "total", None);
    assert!(june.suppressed && june.value.is_none(), "{june:?}");
    assert!(cells.iter().all(|c| c.figure == "r30_users"));
    assert!(
        !cells.iter().any(|c| c.key.as_deref() == Some(B)),
        "nobody on B qualifies"
    );
}
