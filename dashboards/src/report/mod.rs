//! The monthly report for managers: one month's figures, counted once (`MonthlyReport`, here),
//! then written in every format from the same tables and charts (`files.rs`): a tagged A4 PDF
//! (Typst, `pdf.rs`), an XLSX workbook (rust_xlsxwriter, `xlsx.rs`), CSV files in a zip, PNG
//! charts and a single offline HTML file. A closed month's report is frozen (`store.rs`):
//! stored once, served as stored, and a late record that changes its figures makes a new
//! revision that says what changed. `desk.rs` decides what to build, freeze or serve, with the
//! reports' own query slot; `web.rs` serves it over HTTP; `mxpulse report` writes it to a
//! directory.
//!
//! A withheld cell (fewer than k users) is `secret` in every format, never a zero.

pub mod desk;
pub mod files;
pub mod pdf;
pub mod store;
pub mod web;
pub mod xlsx;

use std::collections::BTreeMap;
use std::sync::Arc;

use mxpulse_query::QueryError;
use mxpulse_query::access::Principal;
use mxpulse_query::figures::definitions::CLIENT_MOVES;
use mxpulse_query::figures::planner::SourceChoice;
use mxpulse_query::figures::{FigureRequest, Granularity, periods};
use mxpulse_query::service::{Lane, QueryService};
use serde::{Deserialize, Serialize};

use crate::annotations::Annotation;
use crate::chart::{ChartData, PALETTE, Series, Shape, short_name};
use crate::i18n::Lang;
use crate::panel::{Cells, Table, Value};

/// The formats a report is written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Format {
    Pdf,
    Xlsx,
    /// CSV files, one per table, in a zip (RFC 4180, or `;` and decimal commas).
    Csv,
    /// The charts, one PNG each.
    Png,
    Html,
}

impl Format {
    pub const ALL: [Format; 5] = [
        Format::Pdf,
        Format::Xlsx,
        Format::Csv,
        Format::Png,
        Format::Html,
    ];

    pub fn parse(text: &str) -> Option<Format> {
        match text.trim() {
            "pdf" => Some(Format::Pdf),
            "xlsx" => Some(Format::Xlsx),
            "csv" | "csv.zip" => Some(Format::Csv),
            "png" => Some(Format::Png),
            "html" => Some(Format::Html),
            _ => None,
        }
    }

    /// The rendered files of this format (`files::RenderedReport`'s names).
    pub fn files(self, rendered: &files::RenderedReport) -> Vec<&str> {
        rendered
            .files
            .keys()
            .map(String::as_str)
            .filter(|name| match self {
                Format::Pdf => *name == files::PDF,
                Format::Xlsx => *name == files::XLSX,
                Format::Csv => *name == files::CSV || *name == files::CSV_SEMICOLON,
                Format::Png => name.starts_with(files::CHARTS),
                Format::Html => *name == files::HTML,
            })
            .collect()
    }
}

/// Why a report could not be made or served.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Query(#[from] QueryError),
    #[error("writing the {format}: {message}")]
    Render {
        format: &'static str,
        message: String,
    },
    #[error("the frozen reports at {path}: {source}")]
    Store {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
    /// A count shared by several requests failed (its error, as text).
    #[error("{message}")]
    Shared { status: u16, message: String },
}

impl ReportError {
    /// The HTTP status that says it.
    pub fn status(&self) -> u16 {
        match self {
            ReportError::Query(QueryError::Invalid(_)) | ReportError::Invalid(_) => 400,
            ReportError::Query(QueryError::Timeout(_)) => 408,
            ReportError::Query(QueryError::Busy(_) | QueryError::Lake(_)) => 503,
            ReportError::Shared { status, .. } => *status,
            _ => 500,
        }
    }
}

/// One named table of the report (a sheet, a CSV file, a section).
#[derive(Clone, Debug, PartialEq)]
pub struct NamedTable {
    /// File and sheet name: `headline`, `by_server`...
    pub name: &'static str,
    pub title: String,
    pub table: Table,
}

/// One chart of the report (a PNG, a figure of the PDF and HTML).
#[derive(Clone, Debug, PartialEq)]
pub struct NamedChart {
    pub name: &'static str,
    pub data: ChartData,
    pub shape: Shape,
}

/// A frozen report's revision: its number and, from the second on, what changed since the
/// one it replaces.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Revision {
    pub number: u32,
    /// When the revision it replaces was frozen (RFC 3339).
    pub replaces: Option<String>,
    pub changes: Vec<CellChange>,
}

/// One cell that a revision changed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CellChange {
    /// The table's title, the row's label, the column's header.
    pub table: String,
    pub row: String,
    pub column: String,
    pub before: String,
    pub after: String,
}

/// Everything a month's report says.
#[derive(Clone, Debug, PartialEq)]
pub struct MonthlyReport {
    pub month: String,
    pub lang: Lang,
    /// The one server a ministry's report covers.
    pub server: Option<String>,
    pub title: String,
    pub tables: Vec<NamedTable>,
    pub charts: Vec<NamedChart>,
    pub changes: Vec<String>,
    pub events: Vec<String>,
    /// (figure name for people, definition)
    pub definitions: Vec<(String, String)>,
    pub suppression: String,
    /// When the lake data it holds was written (RFC 3339).
    pub data_as_of: Option<String>,
    /// `rollups` or `raw`.
    pub counted_from: &'static str,
    /// The rollups' table version the figures were read at.
    pub lake_version: Option<u64>,
    pub timezone: String,
    /// When it was counted (RFC 3339, to the second).
    pub generated_at: String,
    /// The month is not over (plus its grace period): the figures may still move.
    pub provisional: bool,
    /// Set when frozen.
    pub revision: Option<Revision>,
}

/// The headline figures of the report, in order.
pub const HEADLINE: [&str; 6] = [
    "active_users",
    "messages",
    "rooms_created",
    "accounts_created",
    "total_active_accounts",
    "r30_users",
];

/// The figures by server and day by day.
const BY_SERVER: [&str; 4] = [
    "active_users",
    "messages",
    "rooms_created",
    "accounts_created",
];

const FEATURES: [&str; 10] = [
    "calls_started",
    "call_participants",
    "live_location_shares",
    "threads",
    "reactions",
    "rooms_created_direct",
    "rooms_created_private",
    "rooms_created_external",
    "rooms_created_forum",
    "rooms_created_space",
];

const ROOM_KINDS: [&str; 5] = [
    "rooms_created_direct",
    "rooms_created_private",
    "rooms_created_external",
    "rooms_created_forum",
    "rooms_created_space",
];

/// The months a report's figures read: the month, the one before (month on month, what
/// changed) and the same month a year before (year on year).
pub fn months_read(month: &str) -> Vec<String> {
    [periods::shift(month, 12), periods::shift(month, 1)]
        .into_iter()
        .flatten()
        .chain(std::iter::once(month.to_owned()))
        .collect()
}

/// What makes two reports the same: every number and text of their tables, what changed and
/// the events; not when they were made, nor the forums' ranking (as of the day it was counted,
/// not of the month).
#[derive(Serialize)]
struct Fingerprint<'a> {
    month: &'a str,
    lang: &'a str,
    server: &'a Option<String>,
    values: BTreeMap<String, String>,
    changes: &'a [String],
    events: &'a [String],
}

impl MonthlyReport {
    /// A digest of its content: equal for equal figures, whenever they were counted.
    pub fn digest(&self) -> String {
        use sha2::{Digest, Sha256};
        let fingerprint = Fingerprint {
            month: &self.month,
            lang: self.lang.code(),
            server: &self.server,
            values: self.values(),
            changes: &self.changes,
            events: &self.events,
        };
        let json = serde_json::to_vec(&fingerprint).unwrap_or_default();
        hex::encode(&Sha256::digest(&json)[..16])
    }

    /// Every cell of its tables but the forums', as `table\x1frow\x1fcolumn` → CSV text: what
    /// a revision compares.
    pub fn values(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for t in self.tables.iter().filter(|t| t.name != "forums") {
            for (row, cells) in &t.table.rows {
                for (column, cell) in t.table.headers.iter().skip(1).zip(cells) {
                    out.insert(format!("{}\x1f{row}\x1f{column}", t.title), cell.csv());
                }
            }
        }
        out
    }

    /// The cells that differ from `before` (`values` of an earlier revision), tables in the
    /// report's order.
    pub fn changes_since(&self, before: &BTreeMap<String, String>) -> Vec<CellChange> {
        let now = self.values();
        let order = |table: &str| self.tables.iter().position(|t| t.title == table);
        let mut out: Vec<CellChange> = now
            .iter()
            .filter(|(key, value)| before.get(*key) != Some(*value))
            .chain(before.iter().filter(|(key, _)| !now.contains_key(*key)))
            .filter_map(|(key, _)| {
                let mut parts = key.split('\x1f');
                let (table, row, column) = (parts.next()?, parts.next()?, parts.next()?);
                Some(CellChange {
                    table: table.to_owned(),
                    row: row.to_owned(),
                    column: column.to_owned(),
                    before: before.get(key).cloned().unwrap_or_default(),
                    after: now.get(key).cloned().unwrap_or_default(),
                })
            })
            .collect();
        out.sort_by_key(|c| order(&c.table));
        out
    }

    /// The source line: who counted, from what data, when, in which version.
    pub fn source_line(&self) -> String {
        let lang = self.lang;
        let mut line = format!(
            "{} — {} {}, {} {} ({} {}",
            lang.t("source_text"),
            lang.t("data_of"),
            self.data_as_of.as_deref().unwrap_or("—"),
            lang.t("counted_from"),
            self.counted_from,
            lang.t("time_zone"),
            self.timezone,
        );
        if let Some(version) = self.lake_version {
            line.push_str(&format!(", {} {version}", lang.t("lake_version")));
        }
        line.push_str(&format!(
            "), {} {}, mxpulse {}",
            lang.t("generated"),
            self.generated_at,
            env!("CARGO_PKG_VERSION")
        ));
        line
    }

    /// Whether its figures may still move, or it is frozen (and which revision).
    pub fn status_line(&self) -> String {
        let lang = self.lang;
        match &self.revision {
            _ if self.provisional => lang.t("provisional").to_owned(),
            Some(revision) => format!(
                "{} ({} {})",
                lang.t("frozen"),
                lang.t("revision").to_lowercase(),
                revision.number
            ),
            None => lang.t("closed_not_frozen").to_owned(),
        }
    }

    /// What a revision after the first changed: which revision, what it replaces, each
    /// changed cell. Nothing for a first revision.
    pub fn revision_lines(&self) -> Vec<String> {
        let Some(revision) = self.revision.as_ref().filter(|r| r.number > 1) else {
            return Vec::new();
        };
        let lang = self.lang;
        let mut lines = vec![match &revision.replaces {
            Some(date) => format!(
                "{} {} — {} {date}.",
                lang.t("revision"),
                revision.number,
                lang.t("replaces")
            ),
            None => format!("{} {}.", lang.t("revision"), revision.number),
        }];
        const SHOWN: usize = 20;
        for c in revision.changes.iter().take(SHOWN) {
            lines.push(format!(
                "{} › {} › {} : {} → {}",
                c.table,
                c.row,
                c.column,
                if c.before.is_empty() {
                    "—"
                } else {
                    &c.before
                },
                if c.after.is_empty() { "—" } else { &c.after },
            ));
        }
        if revision.changes.len() > SHOWN {
            lines.push(format!("(+{})", revision.changes.len() - SHOWN));
        }
        lines
    }

    /// The file name's stem.
    pub fn file_stem(&self) -> String {
        file_stem(self.server.as_deref(), &self.month, self.lang)
    }
}

/// The stem of a report's file names: `mxpulse-2024-07-fr`, `mxpulse-2024-07-agriculture-en`.
pub fn file_stem(scope: Option<&str>, month: &str, lang: Lang) -> String {
    let scope = scope
        .map(|s| format!("-{}", store::safe_name(short_name(s))))
        .unwrap_or_default();
    format!("mxpulse-{month}{scope}-{}", lang.code())
}

fn change_value(change: Option<f64>) -> Value {
    change.map_or(Value::Empty, Value::Change)
}

/// A principal for the reports a command writes: the whole federation, or one server.
pub fn operator(server: Option<String>) -> Principal {
    Principal {
        name: "mxpulse-report".into(),
        role: mxpulse_query::access::Role::Viewer,
        server,
    }
}

/// Counts the report of `month` for `who` (its scope applied), as of now, in the reports'
/// lane: the caller holds a report slot.
pub async fn build(
    service: &Arc<QueryService>,
    who: &Principal,
    month: &str,
    lang: Lang,
    annotations: &[Annotation],
    provisional: bool,
) -> Result<MonthlyReport, ReportError> {
    let (first, last) = (periods::month_start(month)?, periods::month_end(month)?);
    let previous = periods::shift(month, 1)
        .ok_or_else(|| ReportError::Invalid(format!("{month} has no month before it")))?;
    let monthly = service
        .figures_in(
            Lane::Reports,
            who,
            FigureRequest::new(Granularity::Month, &previous, month),
            SourceChoice::Auto,
        )
        .await?;
    let daily = service
        .figures_in(
            Lane::Reports,
            who,
            FigureRequest {
                breakdowns: Vec::new(),
                only: BY_SERVER.iter().map(|f| (*f).to_owned()).collect(),
                ..FigureRequest::new(Granularity::Day, &first.to_string(), &last.to_string())
            },
            SourceChoice::Auto,
        )
        .await?;
    let forums = service
        .forums_in(Lane::Reports, who, 10, SourceChoice::Auto)
        .await?;
    let lake_version = match service.months_digest(&[month]).await {
        Ok(found) => found.and_then(|(version, _)| version),
        Err(_) => None,
    };
    let cells = Cells::new(&monthly);
    let days = Cells::new(&daily);
    let t = |key: &str| lang.t(key).to_owned();
    let month_name = lang.period(month);

    let headline = Table {
        headers: vec![
            t("figure"),
            month_name.clone(),
            t("mom"),
            t("yoy"),
            t("busiest_day"),
            t("that_day"),
        ],
        rows: HEADLINE
            .iter()
            .map(|figure| {
                let cell = cells.get(figure, month, "total", None);
                let peak = cell.filter(|c| !c.suppressed);
                (
                    lang.figure(figure),
                    vec![
                        cells.value(figure, month, "total", None),
                        change_value(cell.and_then(|c| c.mom)),
                        change_value(cell.and_then(|c| c.yoy)),
                        peak.and_then(|c| c.peak_day.clone())
                            .map_or(Value::Empty, Value::Text),
                        peak.and_then(|c| c.peak_value)
                            .map_or(Value::Empty, Value::Number),
                    ],
                )
            })
            .collect(),
    };

    let this_month = [month.to_owned()];
    let mut servers: Vec<&str> = BY_SERVER
        .iter()
        .flat_map(|f| cells.keys(f, "server", &this_month))
        .collect();
    servers.sort_unstable();
    servers.dedup();
    let by_server = Table {
        headers: std::iter::once(t("server"))
            .chain(BY_SERVER.iter().map(|f| lang.figure(f)))
            .collect(),
        rows: servers
            .iter()
            .map(|s| {
                (
                    (*s).to_owned(),
                    BY_SERVER
                        .iter()
                        .map(|f| cells.value(f, month, "server", Some(s)))
                        .collect(),
                )
            })
            .collect(),
    };
    let by_platform = Table {
        headers: vec![t("platform"), lang.figure("active_users")],
        rows: cells
            .keys("active_users", "platform", &this_month)
            .into_iter()
            .map(|p| {
                (
                    p.to_owned(),
                    vec![cells.value("active_users", month, "platform", Some(p))],
                )
            })
            .collect(),
    };
    let day_list: Vec<String> = first
        .iter_days()
        .take_while(|d| *d <= last)
        .map(|d| d.to_string())
        .collect();
    let daily_table = Table {
        headers: std::iter::once(t("day"))
            .chain(BY_SERVER.iter().map(|f| lang.figure(f)))
            .collect(),
        rows: day_list
            .iter()
            .map(|d| {
                (
                    d.clone(),
                    BY_SERVER
                        .iter()
                        .map(|f| days.value(f, d, "total", None))
                        .collect(),
                )
            })
            .collect(),
    };
    let features = Table {
        headers: vec![t("figure"), month_name.clone(), t("mom"), t("yoy")],
        rows: FEATURES
            .iter()
            .map(|figure| {
                let cell = cells.get(figure, month, "total", None);
                (
                    lang.figure(figure),
                    vec![
                        cells.value(figure, month, "total", None),
                        change_value(cell.and_then(|c| c.mom)),
                        change_value(cell.and_then(|c| c.yoy)),
                    ],
                )
            })
            .collect(),
    };
    // The move to Tchap X: active users by app family this month, then the moves.
    let family_rows = cells
        .keys("active_users", "family", &this_month)
        .into_iter()
        .map(|family| {
            let cell = cells.get("active_users", month, "family", Some(family));
            (
                format!("{} — {family}", lang.figure("active_users")),
                vec![
                    cells.value("active_users", month, "family", Some(family)),
                    change_value(cell.and_then(|c| c.mom)),
                ],
            )
        });
    let move_rows = CLIENT_MOVES.iter().map(|figure| {
        let cell = cells.get(figure, month, "total", None);
        (
            lang.figure(figure),
            vec![
                cells.value(figure, month, "total", None),
                change_value(cell.and_then(|c| c.mom)),
            ],
        )
    });
    let transitions = Table {
        headers: vec![t("figure"), month_name.clone(), t("mom")],
        rows: family_rows.chain(move_rows).collect(),
    };
    let forum_table = crate::panel::forums_panel(&forums, lang, "").table;

    // Charts: the month day by day, the servers, the kinds of rooms.
    let day_labels: Vec<String> = day_list
        .iter()
        .map(|d| d.get(8..).unwrap_or(d).trim_start_matches('0').to_owned())
        .collect();
    let bands = crate::annotations::bands(annotations, &day_list, lang);
    let daily_chart = |figure: &str, color: &'static str| ChartData {
        categories: day_labels.clone(),
        series: vec![Series {
            name: lang.figure(figure),
            color,
            values: day_list
                .iter()
                .map(|d| days.value(figure, d, "total", None).number())
                .collect(),
        }],
        bands: bands.clone(),
        title: format!("{}, {}", lang.figure(figure), month_name),
    };
    let mut ranked = by_server.rows.clone();
    let first_number = |cells: &[Value]| cells.first().and_then(Value::number).unwrap_or(-1.0);
    ranked.sort_by(|a, b| first_number(&b.1).total_cmp(&first_number(&a.1)));
    let servers_title = format!("{} — {}", lang.figure("active_users"), month_name);
    let charts = vec![
        NamedChart {
            name: "active_users",
            data: daily_chart("active_users", PALETTE[0]),
            shape: Shape::Line,
        },
        NamedChart {
            name: "messages",
            data: daily_chart("messages", PALETTE[1]),
            shape: Shape::Bars,
        },
        NamedChart {
            name: "servers",
            data: ChartData {
                categories: ranked
                    .iter()
                    .map(|(k, _)| short_name(k).to_owned())
                    .collect(),
                series: vec![Series {
                    name: servers_title.clone(),
                    color: PALETTE[0],
                    values: ranked
                        .iter()
                        .map(|(_, c)| c.first().and_then(Value::number))
                        .collect(),
                }],
                bands: Vec::new(),
                title: servers_title,
            },
            shape: Shape::Ranking,
        },
        NamedChart {
            name: "rooms",
            data: ChartData {
                categories: ROOM_KINDS.iter().map(|k| lang.figure(k)).collect(),
                series: vec![Series {
                    name: lang.figure("rooms_created"),
                    color: PALETTE[2],
                    values: ROOM_KINDS
                        .iter()
                        .map(|k| cells.value(k, month, "total", None).number())
                        .collect(),
                }],
                bands: Vec::new(),
                title: format!("{}, {}", lang.figure("rooms_created"), month_name),
            },
            shape: Shape::Ranking,
        },
    ];

    let changes = crate::changes::what_changed(&cells, &HEADLINE[..4], month, &previous, lang)
        .into_iter()
        .map(|c| c.sentence)
        .collect();
    let events = annotations
        .iter()
        .filter(|a| a.from <= last && a.to >= first)
        .map(|a| {
            format!(
                "{} : {} – {}",
                a.label.get(lang),
                lang.period(&a.from.to_string()),
                lang.period(&a.to.to_string())
            )
        })
        .collect();
    // Every published figure: the counted ones and the two running ones (open accounts, r30),
    // both headline figures.
    let definitions = mxpulse_query::figures::FIGURES
        .iter()
        .map(|f| f.name)
        .chain(mxpulse_query::figures::SPECIAL_FIGURES)
        .map(|name| (lang.figure(name), lang.definition(name)))
        .collect();
    let scope = who
        .server
        .as_deref()
        .map(|s| format!(" — {}", short_name(s)))
        .unwrap_or_default();
    let named = |name: &'static str, key: &str, table: Table| NamedTable {
        name,
        title: t(key),
        table,
    };
    Ok(MonthlyReport {
        month: month.to_owned(),
        lang,
        server: who.server.clone(),
        title: format!("{} — {month_name}{scope}", t("report")),
        tables: vec![
            named("headline", "headline", headline),
            named("by_server", "by_server", by_server),
            named("by_platform", "by_platform", by_platform),
            named("daily", "daily", daily_table),
            named("features", "features", features),
            named("transitions", "transitions", transitions),
            named("forums", "top_forums", forum_table),
        ],
        charts,
        changes,
        events,
        definitions,
        suppression: crate::i18n::privacy_legend(lang, service.min_users, service.noise),
        data_as_of: monthly.as_of.clone(),
        counted_from: match monthly.source {
            mxpulse_query::figures::FigureSource::Rollups => "rollups",
            mxpulse_query::figures::FigureSource::Raw => "raw",
        },
        lake_version,
        timezone: monthly.timezone.clone(),
        generated_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        provisional,
        revision: None,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A small report, as `build` makes them, for the format tests.
    pub fn sample(lang: Lang) -> MonthlyReport {
        let table = Table {
            headers: vec![
                "Indicateur".into(),
                "juil. 2024".into(),
                "sur un mois".into(),
            ],
            rows: vec![
                (
                    "Utilisateurs actifs".into(),
                    vec![Value::Number(230_561.0), Value::Change(0.0312)],
                ),
                (
                    "Appels visibles lancés".into(),
                    vec![Value::Secret, Value::Empty],
                ),
            ],
        };
        let daily = Table {
            headers: vec!["Jour".into(), "Messages envoyés".into()],
            rows: (1..=31)
                .map(|d| {
                    (
                        format!("2024-07-{d:02}"),
                        vec![Value::Number(f64::from(d) * 1000.0)],
                    )
                })
                .collect(),
        };
        MonthlyReport {
            month: "2024-07".into(),
            lang,
            server: None,
            title: "Rapport mensuel — juil. 2024".into(),
            tables: vec![
                NamedTable {
                    name: "headline",
                    title: "Chiffres clés".into(),
                    table,
                },
                NamedTable {
                    name: "daily",
                    title: "Jour par jour".into(),
                    table: daily.clone(),
                },
            ],
            charts: vec![NamedChart {
                name: "messages",
                data: ChartData {
                    categories: (1..=31).map(|d| d.to_string()).collect(),
                    series: vec![Series {
                        name: "Messages envoyés".into(),
                        color: PALETTE[1],
                        values: daily.rows.iter().map(|(_, c)| c[0].number()).collect(),
                    }],
                    bands: Vec::new(),
                    title: "Messages envoyés, juil. 2024".into(),
                },
                shape: Shape::Bars,
            }],
            changes: vec!["Messages envoyés : 6 512 340 (juil. 2024), +27,0 % sur un mois".into()],
            events: vec!["Jeux Olympiques : 26 juil. 2024 – 11 août 2024".into()],
            definitions: vec![(
                "Utilisateurs actifs".into(),
                "Utilisateurs distincts.".into(),
            )],
            suppression: "« secret » : moins de 5 utilisateurs.".into(),
            data_as_of: Some("2024-08-04T10:00:00Z".into()),
            counted_from: "rollups",
            lake_version: Some(42),
            timezone: "Europe/Paris".into(),
            generated_at: "2024-08-05T06:00:00Z".into(),
            provisional: false,
            revision: None,
        }
    }

    #[test]
    fn the_digest_follows_the_figures_not_the_time_and_a_revision_names_its_changes() {
        let a = sample(Lang::Fr);
        let mut b = a.clone();
        b.generated_at = "2024-09-01T00:00:00Z".into();
        b.data_as_of = Some("2024-09-01T00:00:00Z".into());
        assert_eq!(a.digest(), b.digest());
        b.tables[0].table.rows[0].1[0] = Value::Number(230_562.0);
        assert_ne!(a.digest(), b.digest());
        let changes = b.changes_since(&a.values());
        assert_eq!(
            changes,
            vec![CellChange {
                table: "Chiffres clés".into(),
                row: "Utilisateurs actifs".into(),
                column: "juil. 2024".into(),
                before: "230561".into(),
                after: "230562".into(),
            }]
        );
        b.revision = Some(Revision {
            number: 2,
            replaces: Some("2024-08-05T06:00:00Z".into()),
            changes,
        });
        let lines = b.revision_lines();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with("Révision 2"), "{lines:?}");
        assert!(lines[1].contains("230561 → 230562"), "{lines:?}");
        assert_eq!(
            months_read("2024-07"),
            vec!["2023-07".to_owned(), "2024-06".into(), "2024-07".into()]
        );
    }
}
