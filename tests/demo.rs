//! `mxpulse demo` end to end: the simulator's activity through the hooks (appservice
//! transactions and the database backfill), Kafka, the ingest and the lake into the figures
//! API; calibrated ratios out of the lake; the live trickle; a clean Ctrl-C.

mod harness;

use std::time::Duration;

use harness::demo::Demo;
use harness::wait_for;
use serde_json::Value;

fn value(cells: &harness::demo::Cells, figure: &str, period: &str) -> f64 {
    cells
        .get(&(figure.to_owned(), period.to_owned()))
        .and_then(Value::as_f64)
        .unwrap_or_else(|| panic!("no unsuppressed {figure} for {period}"))
}

/// At scale 0.001 the simulator produces each month's totals exactly (scaled and rounded:
/// see simulator/src/lib.rs), so the only deviation from a published ratio is rounding to
/// whole counts, at most 0.5 / count relative on each side of a ratio. The smallest counts
/// here (accounts created: 8 in May 2024; MAU 2023: ~151) bound the tolerances below; the
/// rest is what the pipeline would lose or double, which must be nothing. So the figures are
/// published exact here (`privacy.noise = 0`, through the environment every service of the
/// demo reads); the published figures' noise is tested in `tests/disclosure.rs`.
#[test]
fn the_demo_federation_reaches_the_figures_with_the_published_ratios() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut demo = Demo::start_with_env(
        dir.path(),
        &[
            "--scale",
            "0.001",
            "--from",
            "2023-05",
            "--to",
            "2024-07",
            "--trickle-messages",
            "1",
        ],
        &[("MXPULSE_PRIVACY_NOISE", "0")],
    );
    demo.wait_line("history generated", Duration::from_secs(900));
    let figures = "active_users,messages,accounts_created,rooms_created";
    // Every record in the lake: the ingest commits at most 5 s after the last one (each topic on
    // its own); the service refreshes each second. July's messages and accounts are the last
    // events and visits the history sent.
    // What the simulator generated for July at this scale (its calibration table, scaled).
    let july = mxpulse_simulator::MonthTargets::of(
        chrono::NaiveDate::from_ymd_opt(2024, 7, 1).expect("date"),
    )
    .scaled(0.001);
    let complete = |cells: &harness::demo::Cells| {
        let has = |figure: &str, period: &str, want: Option<f64>| {
            let got = cells
                .get(&(figure.to_owned(), period.to_owned()))
                .and_then(Value::as_f64);
            got.is_some() && (want.is_none() || got == want)
        };
        has("messages", "2024-07", Some(july.messages as f64))
            && has(
                "accounts_created",
                "2024-07",
                Some(july.accounts_created as f64),
            )
            && has(
                "active_users",
                "2024-07",
                Some(july.monthly_active_users as f64),
            )
    };
    // Issue 24, item 1: once the demo says the history is in the figures, the first request
    // has all of it (it used to announce "live activity flowing" while July was still empty).
    let line = demo.wait_line("history in the figures", Duration::from_secs(900));
    assert!(line.contains("live activity flowing"), "{line}");
    let cells = demo
        .try_monthly(figures, "2024-05", "2024-07")
        .unwrap_or_else(|e| panic!("the figures right after {line:?}: {e}"));
    assert!(
        complete(&cells),
        "July 2024 not whole in the first answer after {line:?}: {:?}",
        demo.monthly(figures, "2024-07", "2024-07")
    );
    // Issue 24, item 5: the forums of the homeservers' public room directories are named
    // as there (the simulator lists the published directory's forums in its databases);
    // every named one is one of them, and none else is named.
    let forums = wait_for(Duration::from_secs(120), || {
        let forums = demo.try_forums().ok()?;
        forums
            .iter()
            .any(|f| f["name"].is_string())
            .then_some(forums)
    })
    .unwrap_or_else(|| panic!("no named forum: {:?}", demo.try_forums()));
    let directory: Vec<&str> = mxpulse_simulator::DIRECTORY_FORUMS
        .iter()
        .map(|(name, _, _)| *name)
        .collect();
    for forum in &forums {
        if let Some(name) = forum["name"].as_str() {
            assert!(directory.contains(&name), "{forum}");
            assert!(
                forum["topic"].as_str().is_some_and(|t| t.starts_with(name)),
                "{forum}"
            );
        }
    }
    let published_mau = [
        ("2024-05", 226_855.0),
        ("2024-06", 241_295.0),
        ("2024-07", 230_561.0),
    ];
    let yoy = demo.monthly("active_users", "2023-05", "2023-07");
    for (month, mau) in published_mau {
        let got = value(&cells, "active_users", month);
        assert!(
            (got / (mau * 0.001) - 1.0).abs() < 0.02,
            "MAU {month}: {got} vs {mau} x 0.001"
        );
        let year_before = format!("2023-{}", &month[5..]);
        let growth = got / value(&yoy, "active_users", &year_before);
        assert!(
            (growth - 1.5).abs() < 0.02,
            "MAU {month} over {year_before}: {growth}"
        );
    }
    let ratio = |figure: &str| value(&cells, figure, "2024-07") / value(&cells, figure, "2024-05");
    assert!(
        (ratio("messages") - 1.27).abs() < 0.005,
        "messages July/May {}",
        ratio("messages")
    );
    assert!(
        (ratio("accounts_created") - 2.0).abs() < 0.13,
        "accounts July/May {}",
        ratio("accounts_created")
    );
    assert!(
        (ratio("rooms_created") - 1.44).abs() < 0.03,
        "rooms July/May {}",
        ratio("rooms_created")
    );
    // An ordinary 2024 month: about 6.5M messages.
    let june = value(&cells, "messages", "2024-06");
    assert!(
        (june / 6_500.0 - 1.0).abs() < 0.05,
        "June 2024: {june} messages"
    );

    assert!(
        demo.interrupt().is_some_and(|s| s.success()),
        "the demo stops cleanly on Ctrl-C"
    );
}

#[test]
fn the_demo_prints_where_to_look_keeps_activity_flowing_and_stops_on_ctrl_c() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut demo = Demo::start(
        dir.path(),
        &[
            "--scale",
            "0.0005",
            "--from",
            "2024-07",
            "--to",
            "2024-07",
            "--trickle-interval-ms",
            "300",
        ],
    );
    let figures_line = demo.wait_line("figures", Duration::from_secs(120));
    assert!(
        figures_line.contains(&format!("http://{}/api/v1/figures/monthly", demo.http)),
        "{figures_line}"
    );
    demo.wait_line("Ctrl-C stops everything", Duration::from_secs(5));
    let psql = demo.printed_value("psql");
    assert!(
        psql.contains("psql -h 127.0.0.1") && psql.contains("-U analyst"),
        "{psql}"
    );
    demo.wait_line("live activity flowing", Duration::from_secs(300));
    // The dashboards: a login page, then the Overview for the viewer's session.
    let dashboards = demo.printed_value("dashboards");
    let url = dashboards
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned();
    assert!(
        url.starts_with(&format!("http://{}/d/overview?from=", demo.http)),
        "{dashboards}"
    );
    let page = harness::block_on(async {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let token = demo.printed_value("viewer token");
        let origin = format!("http://{}", demo.http);
        let login = client
            .post(format!("{origin}/login"))
            .header("origin", &origin)
            .form(&[("token", token.as_str()), ("next", "/")])
            .send()
            .await
            .unwrap();
        let cookie = login.headers()["set-cookie"].to_str().unwrap().to_owned();
        let cookie = cookie.split(';').next().unwrap_or_default().to_owned();
        let get = |path: String| client.get(path).header("cookie", cookie.clone()).send();
        let page = get(url.clone()).await.unwrap();
        let transitions = get(format!("{origin}/d/transitions?from=2024-06&to=2024-07"))
            .await
            .unwrap();
        (
            page.text().await.unwrap_or_default(),
            transitions.text().await.unwrap_or_default(),
        )
    });
    let (page, transitions) = page;
    // The Tchap X rollout of the simulated history: its annotation, its app families.
    assert!(
        transitions.contains("Tchap X publié (hypothèse de la démo)")
            && transitions.contains("tchap_x_android"),
        "the Transitions dashboard shows the rollout: {}",
        &transitions[..transitions.len().min(2000)]
    );
    assert!(
        // The apostrophe is HTML-escaped by the template.
        page.contains("<h1>Vue d&#39;ensemble</h1>") && page.contains("<svg"),
        "the Overview after logging in: {}",
        &page[..page.len().min(500)]
    );

    // The report the demo points to: a PDF, for the viewer's token.
    let reports = demo.printed_value("reports");
    let pdf_url = reports
        .split_whitespace()
        .last()
        .unwrap_or_default()
        .to_owned();
    assert!(pdf_url.ends_with(".pdf"), "{reports}");
    let pdf = harness::block_on(async {
        reqwest::Client::new()
            .get(&pdf_url)
            .bearer_auth(demo.printed_value("viewer token"))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
    });
    assert!(pdf.starts_with(b"%PDF-"), "{pdf_url}");

    // The current month fills with the live trickle and keeps growing.
    let now = chrono::Utc::now().format("%Y-%m").to_string();
    let messages_now = |demo: &Demo| {
        demo.monthly("messages", &now, &now)
            .get(&("messages".into(), now.clone()))
            .and_then(Value::as_f64)
    };
    let first = wait_for(Duration::from_secs(60), || messages_now(&demo))
        .expect("live messages reach the figures");
    let later = wait_for(Duration::from_secs(60), || {
        messages_now(&demo).filter(|v| *v > first)
    });
    assert!(later.is_some(), "the live figures stopped at {first}");

    let status = demo.interrupt();
    assert!(
        status.is_some_and(|s| s.success()),
        "exit after Ctrl-C: {status:?}"
    );
    demo.wait_line("demo stopped", Duration::from_secs(5));
    // Everything it started is gone: nothing answers on its address any more.
    assert!(
        std::net::TcpStream::connect(&demo.http).is_err(),
        "the query service still listens"
    );
    let logs = dir.path().join("demo").join("logs");
    for service in ["hooks", "ingest", "serve", "dev-broker"] {
        assert!(
            logs.join(format!("{service}.log")).exists(),
            "{service} ran"
        );
    }
}
