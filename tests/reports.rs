//! The managers' monthly report, end to end: `mxpulse serve` over a lake the simulator wrote
//! (May to August 2024) and rolled up. July's report, asked over HTTP and with `mxpulse
//! report`, in every format: the PDF opens with poppler (A4, tagged, fonts embedded, the API's
//! numbers in its text), the XLSX reads back with calamine with exactly the CSV's and the API's
//! numbers, the PNG charts decode at twice the pages' size and are drawn, the HTML stands
//! alone. A ministry's principal gets its server only; no token, 401. A closed month is frozen:
//! asked twice, the same bytes (and 304 for a client that has them); a late record for July
//! makes revision 2, which says what changed, and leaves revision 1 as it was. The indicators
//! endpoint gives the same figures as integers, in JSON and CSV.

mod harness;

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use calamine::{Data, Reader as _, Xlsx};
use harness::serve::{B, B_ANALYST, Serve, VIEWER, get, start_with};
use reqwest::StatusCode;
use serde_json::Value;

const MONTH: &str = "2024-07";

async fn fetch(serve: &Serve, token: Option<&str>, path: &str) -> reqwest::Response {
    let mut request = reqwest::Client::new().get(format!("{}{path}", serve.url));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap()
}

/// A report file and its headers, asserting it was served.
async fn file(serve: &Serve, token: &str, path: &str) -> (reqwest::header::HeaderMap, Vec<u8>) {
    let response = fetch(serve, Some(token), path).await;
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.bytes().await.unwrap().to_vec();
    assert_eq!(
        status,
        StatusCode::OK,
        "{path}: {}",
        String::from_utf8_lossy(&bytes)
    );
    (headers, bytes)
}

/// July's cells of the monthly API for `token`: (figure, breakdown, key) -> value (None when
/// withheld).
async fn api_cells(serve: &Serve, token: &str) -> BTreeMap<(String, String, String), Option<f64>> {
    let (status, answer) = get(
        serve,
        Some(token),
        &format!("/api/v1/figures/monthly?from={MONTH}&to={MONTH}"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    answer["cells"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                (
                    c["figure"].as_str().unwrap().to_owned(),
                    c["breakdown"].as_str().unwrap().to_owned(),
                    c["key"].as_str().unwrap_or("").to_owned(),
                ),
                c["value"].as_f64(),
            )
        })
        .collect()
}

/// A count as the French pages write it: `230 561` with narrow no-break spaces.
fn french(value: f64) -> String {
    let digits = format!("{value:.0}");
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push('\u{202f}');
        }
        out.push(c);
    }
    out
}

/// A PDF's text as `pdftotext -layout` lays it out, every run of spaces (no-break ones too)
/// made one: a table's row reads `Utilisateurs actifs 230 561 ...`.
fn pdf_text(pdf: &Path) -> String {
    let text = poppler("pdftotext", pdf, &["-layout"]).replace(['\u{202f}', '\u{a0}'], " ");
    text.split(' ')
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

fn spaced(text: &str) -> String {
    text.replace(['\u{202f}', '\u{a0}'], " ")
}

fn poppler(tool: &str, pdf: &Path, args: &[&str]) -> String {
    let out = Command::new(tool)
        .args(args)
        .arg(pdf)
        .args(if tool == "pdftotext" {
            &["-"][..]
        } else {
            &[][..]
        })
        .output()
        .unwrap_or_else(|e| panic!("{tool} (Debian poppler-utils): {e}"));
    assert!(
        out.status.success(),
        "{tool}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The sheets of a workbook: title -> rows of cells.
fn sheets(bytes: &[u8]) -> BTreeMap<String, Vec<Vec<Data>>> {
    let mut book: Xlsx<_> = Xlsx::new(std::io::Cursor::new(bytes.to_vec())).unwrap();
    book.sheet_names()
        .into_iter()
        .map(|name| {
            let range = book.worksheet_range(&name).unwrap();
            (name, range.rows().map(<[Data]>::to_vec).collect())
        })
        .collect()
}

/// The CSV files of a zip: name -> rows of fields (RFC 4180 as the report writes it: no field
/// holds the separator but quoted ones, which these tables do not have).
fn csv_files(bytes: &[u8], separator: char) -> BTreeMap<String, Vec<Vec<String>>> {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes.to_vec())).unwrap();
    let names: Vec<String> = archive
        .file_names()
        .map(|n| n.unwrap().to_string())
        .collect();
    names
        .into_iter()
        .map(|name| {
            let mut text = String::new();
            archive
                .by_name(&name)
                .unwrap()
                .read_to_string(&mut text)
                .unwrap();
            assert!(text.starts_with('\u{feff}'), "{name}: a BOM");
            let rows = text
                .trim_start_matches('\u{feff}')
                .split("\r\n")
                .filter(|l| !l.is_empty())
                .map(|l| l.split(separator).map(str::to_owned).collect())
                .collect();
            (name, rows)
        })
        .collect()
}

/// The CSV files by the sheet they match (the tables' French titles).
const TABLES: [(&str, &str); 7] = [
    ("headline.csv", "Chiffres clés"),
    ("by_server.csv", "Par ministère (serveur)"),
    ("by_platform.csv", "Par plateforme"),
    ("daily.csv", "Jour par jour"),
    ("features.csv", "Fonctionnalités"),
    ("transitions.csv", "Passage à Tchap X"),
    ("forums.csv", "Forums les plus suivis"),
];

/// Every cell of every table: the CSV's text is the XLSX's number (or `secret`, or nothing).
fn assert_xlsx_is_csv(
    xlsx: &BTreeMap<String, Vec<Vec<Data>>>,
    csv: &BTreeMap<String, Vec<Vec<String>>>,
    decimal: char,
) {
    let mut numbers = 0;
    for (file, sheet) in TABLES {
        let (rows, sheet_rows) = (&csv[file], &xlsx[sheet]);
        assert_eq!(rows.len(), sheet_rows.len(), "{file}: rows");
        for (row, sheet_row) in rows.iter().zip(sheet_rows).skip(1) {
            for (field, cell) in row.iter().zip(sheet_row) {
                match cell {
                    Data::Float(x) => {
                        let parsed: f64 = field
                            .replace(decimal, ".")
                            .parse()
                            .unwrap_or_else(|_| panic!("{file}: {field:?} is the number {x}"));
                        assert!((parsed - x).abs() < 1e-9, "{file}: {field} vs {x}");
                        numbers += 1;
                    }
                    Data::String(text) => assert_eq!(field, text, "{file}"),
                    Data::Empty => assert_eq!(field, "", "{file}"),
                    other => panic!("{file}: unexpected cell {other:?}"),
                }
            }
        }
    }
    assert!(numbers > 150, "the tables hold numbers ({numbers})");
}

fn label_of(figure: &str) -> String {
    mxpulse_dashboards::i18n::Lang::Fr.figure(figure)
}

fn xlsx_value(cell: &Data) -> Option<f64> {
    match cell {
        Data::Float(x) => Some(*x),
        Data::String(s) if s == "secret" => None,
        other => panic!("not a figure: {other:?}"),
    }
}

/// A late record for July: `count` messages of server B on 15 July by five known senders.
async fn write_late_messages(lake: &Path, count: u128) {
    use mxpulse_schemas::vocabulary::{EventType, MsgType, Source};
    use mxpulse_schemas::{
        EventPseudonym, EventRecord, KeyId, Record as _, RoomPseudonym, UnixMillis, UserPseudonym,
    };
    let root = mxpulse_ingest::LakeRoot::parse(&lake.display().to_string()).unwrap();
    let table = mxpulse_ingest::lake::open_or_create::<EventRecord>(&root)
        .await
        .unwrap();
    let at = UnixMillis(1_721_037_600_000); // 2024-07-15T10:00:00Z
    let records: Vec<EventRecord> = (0..count)
        .map(|i| {
            let mut r = EventRecord::new(
                KeyId([9, 9, 9, 9]),
                EventPseudonym(u128::MAX - i),
                UnixMillis(at.0 + i as i64),
                B,
                UserPseudonym(u64::MAX - (i % 5) as u64),
                RoomPseudonym(u64::MAX - 1),
                EventType::RoomMessage,
                Source::Appservice,
            );
            r.msgtype = Some(MsgType::Text);
            r
        })
        .collect();
    table
        .write(vec![EventRecord::to_record_batch(&records).unwrap()])
        .with_partition_columns([EventRecord::PARTITION_COLUMN])
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_months_report_in_every_format_holds_the_apis_numbers_frozen_then_revised() {
    let dir = tempfile::tempdir().unwrap();
    let lake = harness::lakes::generated(dir.path(), "0.002", "2024-05", "2024-08");
    let store = dir.path().join("reports");
    let serve = start_with(
        dir.path(),
        &lake,
        &format!(
            "figures_timeout_ms = 60000\n[reports]\ndir = \"{}\"\nprepare_interval_ms = 0\n",
            store.display()
        ),
    );

    // No token, or a wrong one: 401, for the files, the charts, the list and the indicators.
    for path in [
        "/reports/2024-07.pdf",
        "/reports/2024-07/messages.png",
        "/reports",
        "/api/v1/indicators/monthly?month=2024-07",
    ] {
        assert_eq!(
            fetch(&serve, None, path).await.status(),
            StatusCode::UNAUTHORIZED,
            "{path}"
        );
        assert_eq!(
            fetch(&serve, Some("not-a-token"), path).await.status(),
            StatusCode::UNAUTHORIZED,
            "{path}"
        );
    }
    assert!(!store.exists(), "nothing was counted for a refused request");

    // A viewer: the PDF, frozen (July is closed).
    let api = api_cells(&serve, VIEWER).await;
    let total = |figure: &str| api[&(figure.to_owned(), "total".to_owned(), String::new())];
    let (headers, pdf) = file(&serve, VIEWER, "/reports/2024-07.pdf").await;
    assert_eq!(headers["content-type"], "application/pdf");
    assert_eq!(headers["x-mxpulse-report"], "frozen");
    assert_eq!(headers["x-mxpulse-revision"], "1");
    assert!(
        headers["content-disposition"]
            .to_str()
            .unwrap()
            .contains("mxpulse-2024-07-fr.pdf")
    );
    let pdf_path = dir.path().join("july.pdf");
    std::fs::write(&pdf_path, &pdf).unwrap();
    let info = poppler("pdfinfo", &pdf_path, &[]);
    assert!(info.contains("Tagged:          yes"), "{info}");
    assert!(info.contains("(A4)"), "{info}");
    let pages: u32 = info
        .lines()
        .find_map(|l| l.strip_prefix("Pages:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap();
    assert!((3..=8).contains(&pages), "{pages} pages");
    let fonts = poppler("pdffonts", &pdf_path, &[]);
    let font_lines: Vec<&str> = fonts.lines().skip(2).collect();
    assert!(!font_lines.is_empty(), "{fonts}");
    for line in font_lines {
        assert!(
            line.contains("DejaVuSans") && line.contains(" yes yes yes "),
            "embedded: {line}"
        );
    }
    let text = pdf_text(&pdf_path);
    for figure in ["active_users", "messages", "rooms_created"] {
        let value = total(figure).unwrap_or_else(|| panic!("{figure} shown"));
        assert!(
            text.contains(&spaced(&format!("{} {}", label_of(figure), french(value)))),
            "{figure} = {value} in the PDF's text: {text}"
        );
    }
    assert!(
        text.contains("Jeux olympiques") || text.contains("Jeux Olympiques"),
        "the Games are named"
    );
    assert!(text.contains("secret"), "the suppression rule");
    // Every headline figure is defined in the annex, the running ones (open accounts, r30)
    // too: they were the two missing.
    let annex = text
        .replace('\n', " ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    for figure in mxpulse_dashboards::report::HEADLINE {
        let definition = mxpulse_dashboards::i18n::Lang::Fr.definition(figure);
        let opening: String = definition
            .split_whitespace()
            .take(4)
            .collect::<Vec<_>>()
            .join(" ");
        assert!(
            annex.contains(&opening),
            "{figure} defined in the PDF: {opening:?}"
        );
    }
    assert!(text.contains("agent.finances.tchap.gouv.fr"));
    // Asked again: the same bytes; a client that has them gets 304.
    let (again, pdf_again) = file(&serve, VIEWER, "/reports/2024-07.pdf").await;
    assert_eq!(pdf_again, pdf, "a frozen report is served as stored");
    assert_eq!(again["etag"], headers["etag"]);
    let not_modified = reqwest::Client::new()
        .get(format!("{}/reports/2024-07.pdf", serve.url))
        .bearer_auth(VIEWER)
        .header("if-none-match", headers["etag"].clone())
        .send()
        .await
        .unwrap();
    assert_eq!(not_modified.status(), StatusCode::NOT_MODIFIED);

    // The XLSX: exactly the CSV's numbers, and the API's.
    let (headers, xlsx) = file(&serve, VIEWER, "/reports/2024-07.xlsx").await;
    assert_eq!(
        headers["content-type"],
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    );
    let book = sheets(&xlsx);
    assert!(book.contains_key("Notes"), "{:?}", book.keys());
    for figure in mxpulse_dashboards::report::HEADLINE {
        let definition = mxpulse_dashboards::i18n::Lang::Fr.definition(figure);
        assert!(
            book["Notes"].iter().any(|row| row.len() > 1
                && row[0] == Data::String(label_of(figure))
                && row[1] == Data::String(definition.clone())),
            "{figure} defined in the XLSX notes"
        );
    }
    let (_, csv) = file(&serve, VIEWER, "/reports/2024-07.csv.zip").await;
    let csv = csv_files(&csv, ',');
    assert!(csv.contains_key("notes.csv"));
    assert_xlsx_is_csv(&book, &csv, '.');
    let (_, french_csv) = file(&serve, VIEWER, "/reports/2024-07.csv.zip?sep=semicolon").await;
    assert_xlsx_is_csv(&book, &csv_files(&french_csv, ';'), ',');
    let headline = &book["Chiffres clés"];
    for figure in [
        "active_users",
        "messages",
        "rooms_created",
        "accounts_created",
    ] {
        let row = headline
            .iter()
            .find(|r| r[0] == Data::String(label_of(figure)))
            .unwrap_or_else(|| panic!("{figure} in {headline:?}"));
        assert_eq!(xlsx_value(&row[1]), total(figure), "{figure}");
    }
    let by_server = &book["Par ministère (serveur)"];
    assert!(by_server.len() > 10, "every server");
    for row in &by_server[1..] {
        let Data::String(server) = &row[0] else {
            panic!("{row:?}")
        };
        let key = (
            "active_users".to_owned(),
            "server".to_owned(),
            server.clone(),
        );
        assert_eq!(xlsx_value(&row[1]), api[&key], "{server}");
    }
    assert_eq!(book["Jour par jour"].len(), 32, "a header and 31 days");
    // The move to Tchap X (launched in June in the generated history): the app families of
    // July's active users and the moves, as the API publishes them.
    let transitions = &book["Passage à Tchap X"];
    let row_of = |label: &str| {
        transitions
            .iter()
            .find(|r| r[0] == Data::String(label.to_owned()))
            .unwrap_or_else(|| panic!("{label} in {transitions:?}"))
    };
    for family in ["tchap_x_android", "tchap_android", "web"] {
        let key = (
            "active_users".to_owned(),
            "family".to_owned(),
            family.to_owned(),
        );
        let row = row_of(&format!("{} — {family}", label_of("active_users")));
        assert_eq!(xlsx_value(&row[1]), api[&key], "{family}");
        assert!(
            api[&key].is_some_and(|v| v > 0.0),
            "{family} has users in July"
        );
    }
    let moved = (
        "client_moves_to_x".to_owned(),
        "total".to_owned(),
        String::new(),
    );
    assert!(
        api[&moved].is_some_and(|v| v > 0.0),
        "people moved to Tchap X in July"
    );
    assert_eq!(
        xlsx_value(&row_of(&label_of("client_moves_to_x"))[1]),
        api[&moved]
    );

    // The charts: PNG at twice the pages' size, drawn.
    for chart in ["active_users", "messages", "servers", "rooms"] {
        let (headers, png) = file(&serve, VIEWER, &format!("/reports/2024-07/{chart}.png")).await;
        assert_eq!(headers["content-type"], "image/png");
        let decoder = png::Decoder::new(std::io::Cursor::new(png));
        let mut reader = decoder.read_info().unwrap();
        let mut pixels = vec![0; reader.output_buffer_size().expect("a decodable size")];
        let frame = reader.next_frame(&mut pixels).unwrap();
        assert_eq!(frame.width, 1280, "{chart}");
        assert!(frame.height >= 200, "{chart}: {}", frame.height);
        let channels = frame.line_size / frame.width as usize;
        let inked = pixels[..frame.buffer_size()]
            .chunks(channels)
            .filter(|p| p[..3].iter().any(|c| *c < 200))
            .count();
        let share = inked as f64 / f64::from(frame.width * frame.height);
        assert!(share > 0.01, "{chart}: {share} of the pixels drawn");
    }
    assert_eq!(
        fetch(&serve, Some(VIEWER), "/reports/2024-07/nothing.png")
            .await
            .status(),
        StatusCode::NOT_FOUND
    );

    // The offline HTML: everything inline.
    let (headers, html) = file(&serve, VIEWER, "/reports/2024-07.html").await;
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    let html = String::from_utf8(html).unwrap();
    assert!(html.matches("<svg").count() >= 4);
    assert!(html.contains(&french(total("active_users").unwrap())));
    for outside in ["src=\"http", "href=\"http", "<script", "<link"] {
        assert!(!html.contains(outside), "{outside}");
    }

    // The list of months, with links.
    let list = fetch(&serve, Some(VIEWER), "/reports")
        .await
        .text()
        .await
        .unwrap();
    assert!(
        list.contains("/reports/2024-07.pdf") && list.contains("Révision 1"),
        "{list}"
    );

    // A ministry's principal: its server only.
    let scoped_api = api_cells(&serve, B_ANALYST).await;
    let (_, scoped) = file(&serve, B_ANALYST, "/reports/2024-07.xlsx").await;
    let scoped = sheets(&scoped);
    let servers: Vec<&Data> = scoped["Par ministère (serveur)"][1..]
        .iter()
        .map(|r| &r[0])
        .collect();
    assert_eq!(servers, vec![&Data::String(B.into())]);
    let scoped_users = scoped["Chiffres clés"]
        .iter()
        .find(|r| r[0] == Data::String(label_of("active_users")))
        .map(|r| xlsx_value(&r[1]))
        .unwrap();
    assert_eq!(
        scoped_users,
        scoped_api[&("active_users".to_owned(), "total".to_owned(), String::new())]
    );
    assert_ne!(scoped_users, total("active_users"));
    let (_, scoped_html) = file(&serve, B_ANALYST, "/reports/2024-07.html").await;
    let scoped_html = String::from_utf8(scoped_html).unwrap();
    for other in [
        "agent.interieur.tchap.gouv.fr",
        "agent.education.tchap.gouv.fr",
    ] {
        assert!(!scoped_html.contains(other), "{other} in a finances report");
    }

    // The command line: the same frozen files; an open month's report is provisional and
    // never stored.
    let config = dir.path().join("serve.toml");
    let out = dir.path().join("cli");
    let run = Command::new(harness::mxpulse_bin())
        .arg("--config")
        .arg(&config)
        .args([
            "report",
            "--month",
            MONTH,
            "--format",
            "pdf,xlsx,png",
            "--out",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert_eq!(
        std::fs::read(out.join("mxpulse-2024-07-fr.pdf")).unwrap(),
        pdf
    );
    assert!(out.join("mxpulse-2024-07-fr-messages.png").exists());
    assert!(
        !out.join("mxpulse-2024-07-fr.html").exists(),
        "only the formats asked"
    );
    let run = Command::new(harness::mxpulse_bin())
        .arg("--config")
        .arg(&config)
        .args([
            "report", "--month", "2024-08", "--lang", "en", "--format", "html", "--out",
        ])
        .arg(&out)
        .env("MXPULSE_REPORTS_GRACE_DAYS", "100000")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        run.status.success() && stderr.contains("provisional"),
        "{stderr}"
    );
    let english = std::fs::read_to_string(out.join("mxpulse-2024-08-en.html")).unwrap();
    assert!(english.contains("<html lang=\"en\">") && english.contains("Provisional"));
    assert!(!store.join("federation/2024-08").exists(), "not frozen");

    // The indicators: integers, the API's; CSV too.
    let (status, indicators) = get(
        &serve,
        Some(VIEWER),
        "/api/v1/indicators/monthly?month=2024-07",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{indicators}");
    assert_eq!(indicators["schema"], "mxpulse.indicators.monthly/1");
    assert_eq!(indicators["month_over"], true);
    let find = |name: &str| {
        indicators["indicators"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["name"] == name)
            .cloned()
            .unwrap()
    };
    for figure in [
        "active_users",
        "messages",
        "rooms_created",
        "accounts_created",
        "client_moves_to_x",
    ] {
        let value = &find(figure)["value"];
        assert!(value.is_i64(), "{figure}: an integer, not {value}");
        assert_eq!(value.as_f64(), total(figure), "{figure}");
    }
    let csv = fetch(
        &serve,
        Some(VIEWER),
        "/api/v1/indicators/monthly?month=2024-07&format=csv",
    )
    .await
    .text()
    .await
    .unwrap();
    assert!(
        csv.contains(&format!(
            "2024-07,messages,{},false\r\n",
            total("messages").unwrap()
        )),
        "{csv}"
    );
    let (status, _) = get(
        &serve,
        Some(VIEWER),
        "/api/v1/indicators/monthly?month=July",
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (_, scoped_indicators) = get(
        &serve,
        Some(B_ANALYST),
        "/api/v1/indicators/monthly?month=2024-07",
    )
    .await;
    assert_eq!(scoped_indicators["server"], B);

    // A late record for July: a new revision that says what changed; the first one stays.
    write_late_messages(&lake, 500).await;
    let rolled = Command::new(harness::mxpulse_bin())
        .args(["lake", "rollup"])
        .env("MXPULSE_LAKE_ROOT", &lake)
        .output()
        .unwrap();
    assert!(
        rolled.status.success(),
        "{}",
        String::from_utf8_lossy(&rolled.stderr)
    );
    let revised = harness::wait_for(Duration::from_secs(30), || {
        let (headers, bytes) = harness::block_on(file(&serve, VIEWER, "/reports/2024-07.pdf"));
        (headers["x-mxpulse-revision"] == "2").then_some(bytes)
    })
    .expect("revision 2 after a late record");
    assert_ne!(revised, pdf);
    let revised_path = dir.path().join("july-2.pdf");
    std::fs::write(&revised_path, &revised).unwrap();
    let text = pdf_text(&revised_path);
    let messages = total("messages").unwrap();
    assert!(text.contains("Révision 2"), "{text}");
    // From one published value to the next, as the API now publishes it (500 more messages,
    // moved by the cell key rule: never a bare "+1" of one person's message).
    let now = api_cells(&serve, VIEWER).await;
    let revised_messages = now[&("messages".to_owned(), "total".to_owned(), String::new())]
        .expect("messages published");
    assert!(revised_messages > messages + 400.0, "{revised_messages}");
    assert!(
        text.contains(&format!("{messages} → {revised_messages}")),
        "the revision names the change of messages: {text}"
    );
    let series = store.join("federation/2024-07/fr");
    let mut revisions: Vec<String> = std::fs::read_dir(&series)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('r'))
        .collect();
    revisions.sort();
    assert_eq!(revisions.len(), 2, "{revisions:?}");
    assert_eq!(
        std::fs::read(series.join(&revisions[0]).join("report.pdf")).unwrap(),
        pdf,
        "revision 1 is kept as it was"
    );
    let manifest: Value = serde_json::from_slice(
        &std::fs::read(series.join(&revisions[1]).join("manifest.json")).unwrap(),
    )
    .unwrap();
    assert!(
        manifest["changes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["row"] == "Messages envoyés" && c["after"] == format!("{revised_messages}")),
        "{manifest}"
    );
}
