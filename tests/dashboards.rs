//! The dashboards in a real browser: Debian's Chromium driven by Playwright
//! (`tests/clients/dashboards_browser.py`) over a lake the simulator wrote (May to August 2024,
//! the Olympics included) and rolled up. Every shipped dashboard (and an operator's own with a
//! SQL panel) renders with no console error and no request leaving the service, each card with
//! its chart and its table; the Overview's tables hold the figures API's numbers; a filter in
//! the URL changes the page; axe-core finds no serious accessibility violation; a ministry's
//! login sees its server only, in every panel, table and CSV; a viewer gets no SQL panel; no
//! cookie, no page. The monthly reports' list opens from the dashboards' menu, and a report's
//! offline HTML from it, both without accessibility violations. Screenshots go to `$CARGO_TARGET_DIR/dashboards-screenshots/`.

mod harness;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use harness::serve::{ANALYST, B, B_ANALYST, Serve, VIEWER, get, login_cookie, start_with};
use reqwest::StatusCode;
use serde_json::Value;

const SHIPPED: [&str; 7] = [
    "overview",
    "ministries",
    "platforms",
    "features",
    "transitions",
    "forums",
    "period",
];
const MONTHS: &str = "from=2024-05&to=2024-08";
const DAYS: &str = "from=2024-07-15&to=2024-08-20";

/// The operator's own dashboard: an analysts' SQL panel.
const ANALYSTS: &str = r#"
slug = "analysts"
order = 9
title = { fr = "Pour les analystes", en = "For analysts" }

[[panel]]
id = "messages_by_server_sql"
kind = "table"
sql = "SELECT server, count(*) AS messages FROM events WHERE type = 'm.room.message' AND date BETWEEN :from AND :to GROUP BY server ORDER BY messages DESC"
title = { fr = "Messages en clair par serveur (SQL)", en = "Cleartext messages by server (SQL)" }
"#;

fn screenshots() -> PathBuf {
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| harness::repo_root().join("target"))
        .join("dashboards-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// axe-core's script, installed from npm by `scripts/test`.
fn axe() -> PathBuf {
    std::env::var_os("MXPULSE_TEST_AXE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default())
                .join(".cache/mxpulse/npm/node_modules/axe-core/axe.min.js")
        })
}

/// Runs the browser through the pages as `token`; its report.
fn browse(serve: &Serve, token: &str, name: &str, server: Option<&str>) -> Value {
    let pages: BTreeMap<&str, &str> = SHIPPED
        .iter()
        .chain(["analysts"].iter())
        .map(|slug| (*slug, if *slug == "period" { DAYS } else { MONTHS }))
        .collect();
    let shots = screenshots().join(name);
    std::fs::create_dir_all(&shots).unwrap();
    let mut command = Command::new(harness::python());
    command
        .arg(harness::repo_root().join("tests/clients/dashboards_browser.py"))
        .arg(&serve.url)
        .arg(token)
        .arg(serde_json::to_string(&pages).unwrap())
        .arg(axe())
        .arg(&shots);
    if let Some(server) = server {
        command.arg(server);
    }
    let out = command.output().expect("python");
    assert!(
        out.status.success(),
        "the browser run failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the browser's JSON report")
}

/// A number as the pages write it (`230 561`, `7,000`), or `None` for `secret` and `—`.
fn number(text: &str) -> Option<f64> {
    let digits: String = text
        .chars()
        .filter(|c| c.is_ascii_digit() || *c == '−' || *c == '-')
        .collect();
    digits.replace('−', "-").parse().ok()
}

fn card<'a>(page: &'a Value, id: &str) -> &'a Value {
    page["cards"]
        .as_array()
        .and_then(|cards| cards.iter().find(|c| c["id"] == format!("panel-{id}")))
        .unwrap_or_else(|| panic!("no card {id}: {page}"))
}

/// The monthly totals of `figure` in a card's table: month label -> value.
fn table_totals(card: &Value) -> BTreeMap<String, Option<f64>> {
    card["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            let row = row.as_array().unwrap();
            (
                row[0].as_str().unwrap().to_owned(),
                number(row[1].as_str().unwrap()),
            )
        })
        .collect()
}

/// The API's monthly totals of `figure`, keyed like the pages' tables (French month names).
async fn api_totals(serve: &Serve, figure: &str, filter: &str) -> BTreeMap<String, Option<f64>> {
    let (status, answer) = get(
        serve,
        Some(VIEWER),
        &format!("/api/v1/figures/monthly?{MONTHS}&figures={figure}&breakdowns=none{filter}"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let months = ["mai 2024", "juin 2024", "juil. 2024", "août 2024"];
    let periods = ["2024-05", "2024-06", "2024-07", "2024-08"];
    periods
        .iter()
        .zip(months)
        .map(|(period, label)| {
            let value = answer["cells"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| {
                    c["figure"] == figure && c["period"] == *period && c["breakdown"] == "total"
                })
                .and_then(|c| c["value"].as_f64());
            (label.to_owned(), value)
        })
        .collect()
}

fn check_pages(report: &Value, who: &str) {
    assert_eq!(
        report["without_session"], "/login",
        "{who}: no cookie, no page"
    );
    assert_eq!(report["after_login"], "/d/overview", "{who}");
    assert_eq!(report["console_errors"], serde_json::json!([]), "{who}");
    assert_eq!(report["outside_requests"], serde_json::json!([]), "{who}");
    assert_eq!(report["failed_requests"], serde_json::json!([]), "{who}");
    for slug in SHIPPED {
        let page = &report["pages"][slug];
        assert_eq!(page["status"], 200, "{who} {slug}");
        assert_eq!(page["lang"], "fr", "{who} {slug}: French by default");
        assert!(
            page["weight"].as_u64().unwrap() < 200_000,
            "{who} {slug}: {} bytes",
            page["weight"]
        );
        let cards = page["cards"].as_array().unwrap();
        assert!(!cards.is_empty(), "{who} {slug}");
        for card in cards {
            let kind_has_chart = !card["id"].as_str().unwrap().contains("rooms_by_server");
            if kind_has_chart {
                assert!(
                    card["svg"].as_u64().unwrap() > 200,
                    "{who} {slug} {}: a chart",
                    card["id"]
                );
                assert!(
                    card["points"].as_u64().unwrap() > 0,
                    "{who} {slug} {}: with marks",
                    card["id"]
                );
            }
            assert!(
                !card["rows"].as_array().unwrap().is_empty(),
                "{who} {slug} {}: a table",
                card["id"]
            );
            assert_eq!(
                (&card["sticks_out"], &card["cut_tables"]),
                (&Value::Bool(false), &serde_json::json!(0)),
                "{who} {slug} {}: its content fits the card or scrolls",
                card["id"]
            );
            assert_eq!(
                (&card["wraps_focusable"], &card["labels_stay"]),
                (&Value::Bool(true), &Value::Bool(true)),
                "{who} {slug} {}",
                card["id"]
            );
            assert!(
                card["csv"]
                    .as_str()
                    .is_some_and(|h| h.ends_with(".csv") || h.contains(".csv?")),
                "{card}"
            );
        }
    }
    assert_eq!(report["english"]["lang"], "en", "{who}");
    assert_eq!(report["phone_columns"], 1, "{who}: one column on a phone");
    for card in report["phone_ministries"].as_array().unwrap() {
        assert_eq!(
            (&card["sticks_out"], &card["cut_tables"]),
            (&Value::Bool(false), &serde_json::json!(0)),
            "{who}: on a phone, {} fits or scrolls",
            card["id"]
        );
    }
    // Issue 24, item 4: the table of rooms by server (a column per month) is wider than a
    // phone: it scrolls, from the keyboard too, and keeps each row's server in view.
    let by_server = report["phone_ministries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "panel-rooms_by_server")
        .unwrap();
    assert_eq!(
        (
            &by_server["tables_fit"],
            &by_server["labels_stay"],
            &by_server["wraps_focusable"]
        ),
        (&Value::Bool(false), &Value::Bool(true), &Value::Bool(true)),
        "{who}: {by_server}"
    );
    let serious: Vec<&Value> = report["axe"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| matches!(v["impact"].as_str(), Some("serious" | "critical")))
        .collect();
    assert!(
        serious.is_empty(),
        "{who}: accessibility violations {serious:?}"
    );
    assert_eq!(report["reports"]["status"], 200, "{who}: the reports' list");
    let links = report["reports"]["links"].as_array().unwrap();
    assert!(
        links.iter().any(|l| l == "/reports/2024-07.pdf"),
        "{who}: July's report is listed: {links:?}"
    );
    let html = &report["reports"]["html"];
    assert_eq!(html["status"], 200, "{who}: {html}");
    assert_eq!(html["lang"], "fr");
    assert!(html["charts"].as_u64().unwrap() >= 4, "{who}: {html}");
    assert!(html["tables"].as_u64().unwrap() >= 6, "{who}: {html}");
    assert_eq!(report["after_logout"], "/login", "{who}: logged out");
}

#[tokio::test(flavor = "multi_thread")]
async fn every_dashboard_renders_in_chromium_with_the_apis_numbers_and_scopes_hold() {
    let dir = tempfile::tempdir().unwrap();
    let lake = harness::lakes::generated(dir.path(), "0.002", "2024-05", "2024-08");
    let own = dir.path().join("own-dashboards");
    std::fs::create_dir_all(&own).unwrap();
    std::fs::write(own.join("analysts.toml"), ANALYSTS).unwrap();
    let serve = start_with(
        dir.path(),
        &lake,
        &format!(
            "figures_timeout_ms = 60000\n[dashboards]\ndir = \"{}\"\n",
            own.display()
        ),
    );

    // No cookie: no page, no file.
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for path in [
        "/d/overview",
        "/d/ministries/active_users_ranking.csv",
        "/d/overview/messages.png",
    ] {
        let response = client
            .get(format!("{}{path}", serve.url))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::SEE_OTHER, "{path}");
        assert!(
            response.headers()["location"]
                .to_str()
                .unwrap()
                .starts_with("/login")
        );
    }
    // A login from another site is refused.
    let forged = client
        .post(format!("{}/login", serve.url))
        .header("origin", "https://evil.example")
        .form(&[("token", VIEWER)])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);

    // A product lead.
    let viewer = tokio::task::block_in_place(|| browse(&serve, VIEWER, "viewer", Some(B)));
    check_pages(&viewer, "viewer");
    let overview = &viewer["pages"]["overview"];
    for figure in [
        "active_users",
        "messages",
        "rooms_created",
        "accounts_created",
    ] {
        let shown = table_totals(card(overview, figure));
        assert_eq!(
            shown,
            api_totals(&serve, figure, "").await,
            "{figure}: the page's table is the API's"
        );
        assert!(shown.values().flatten().count() >= 3, "{figure}: {shown:?}");
    }
    // The Olympics are drawn and listed.
    assert!(
        viewer["pages"]["overview"]["cards"]
            .to_string()
            .contains("active_users")
    );
    let filtered = &viewer["filtered"];
    let filtered_users = table_totals(
        filtered
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == "panel-active_users")
            .unwrap(),
    );
    assert_eq!(
        filtered_users,
        api_totals(&serve, "active_users", &format!("&server={B}")).await
    );
    assert_ne!(
        filtered_users,
        table_totals(card(overview, "active_users")),
        "the filter changed the page"
    );
    assert!(
        viewer["pages"]["analysts"]["cards"]
            .as_array()
            .unwrap()
            .is_empty(),
        "a viewer gets no SQL panel: {}",
        viewer["pages"]["analysts"]
    );
    assert!(
        viewer["pages"]["ministries"]["server_options"]
            .as_array()
            .unwrap()
            .len()
            >= 10
    );

    // An analyst of the whole federation sees the SQL panel, every server in it.
    let analyst = tokio::task::block_in_place(|| browse(&serve, ANALYST, "analyst", None));
    let sql = card(&analyst["pages"]["analysts"], "messages_by_server_sql");
    assert!(sql["rows"].as_array().unwrap().len() >= 10, "{sql}");

    // A ministry's analyst: its server only, everywhere.
    let ministry = tokio::task::block_in_place(|| browse(&serve, B_ANALYST, "ministry", None));
    check_pages(&ministry, "ministry");
    for slug in SHIPPED.iter().chain(["analysts"].iter()) {
        let page = &ministry["pages"][*slug];
        let options = page["server_options"].as_array().unwrap();
        assert!(options.iter().all(|o| o == B), "{slug}: {options:?}");
        for card in page["cards"].as_array().unwrap() {
            for row in card["rows"].as_array().unwrap() {
                let text = row.to_string();
                assert!(
                    !text.contains("tchap.gouv.fr") || text.contains(B),
                    "{slug} {}: another server in {text}",
                    card["id"]
                );
            }
        }
    }
    let sql = card(&ministry["pages"]["analysts"], "messages_by_server_sql");
    assert_eq!(sql["rows"].as_array().unwrap().len(), 1, "{sql}");
    let ranking = card(&ministry["pages"]["ministries"], "active_users_ranking");
    let csv_path = ranking["csv"].as_str().unwrap().to_owned();
    // The CSV of the ministry's session: its server only (a viewer's holds them all).
    for (token, expect_one) in [(B_ANALYST, true), (VIEWER, false)] {
        let cookie = login_cookie(&serve, token).await;
        let csv = client
            .get(format!("{}{csv_path}", serve.url))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let servers = csv
            .lines()
            .skip(1)
            .filter(|l| l.contains("tchap.gouv.fr"))
            .count();
        assert!(csv.starts_with('\u{feff}'), "a BOM for spreadsheets");
        if expect_one {
            assert_eq!(servers, 1, "{csv}");
            assert!(csv.contains(B), "{csv}");
        } else {
            assert!(servers >= 10, "{csv}");
        }
        let png = client
            .get(format!("{}/d/overview/messages.png?{MONTHS}", serve.url))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(png.headers()["content-type"], "image/png");
        let bytes = png.bytes().await.unwrap();
        assert_eq!(&bytes[1..4], b"PNG");
        assert!(bytes.len() > 5_000, "a drawn chart ({} bytes)", bytes.len());
    }
}

/// The session cookie a login with `token` sets.
#[test]
fn a_malformed_dashboard_file_stops_the_start_naming_the_file_and_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let own = dir.path().join("own");
    std::fs::create_dir_all(&own).unwrap();
    std::fs::write(
        own.join("broken.toml"),
        "slug = \"broken\"\ntitle = { fr = \"Cassé\" }\n\n[[panel]]\nid = \"a\"\nkind = \"line\"\nfigures = [\"active_user\"]\n",
    )
    .unwrap();
    let config = dir.path().join("serve.toml");
    std::fs::write(
        &config,
        format!(
            "[lake]\nroot = \"{}\"\n[query]\nlisten = \"127.0.0.1:0\"\npgwire_listen = \"127.0.0.1:0\"\n[dashboards]\ndir = \"{}\"\n",
            dir.path().join("lake").display(),
            own.display()
        ),
    )
    .unwrap();
    let out = Command::new(harness::mxpulse_bin())
        .arg("--config")
        .arg(&config)
        .arg("serve")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("broken.toml, line 7")
            && stderr.contains("no figure named \"active_user\""),
        "{stderr}"
    );
}
