//! A report written in every format at once (`RenderedReport`): the PDF (`pdf.rs`), the XLSX
//! (`xlsx.rs`), and here the CSV files in a zip (RFC 4180, and `;` with decimal commas for a
//! French spreadsheet), the charts as PNG (the same SVG as the pages, through resvg), and one
//! offline HTML file (inline style and SVG: it opens from an e-mail attachment with no
//! network, and looks like the dashboards).
//!
//! Every file depends on the report only: the same report gives the same bytes.

use std::collections::BTreeMap;
use std::io::Write as _;

use askama::Template;

use super::{MonthlyReport, ReportError};
use crate::chart;
use crate::panel::Value;

pub const PDF: &str = "report.pdf";
pub const XLSX: &str = "report.xlsx";
pub const CSV: &str = "report.csv.zip";
pub const CSV_SEMICOLON: &str = "report.semicolon.csv.zip";
pub const HTML: &str = "report.html";
/// The charts' folder: `charts/messages.png`.
pub const CHARTS: &str = "charts/";

/// Charts are rasterized at twice their size: sharp on slides.
const PNG_SCALE: f32 = 2.0;

/// The report in every format, by file name.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RenderedReport {
    pub files: BTreeMap<String, Vec<u8>>,
}

impl RenderedReport {
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.files.get(name).map(Vec::as_slice)
    }
}

/// The content type of one of the files.
pub fn content_type(name: &str) -> &'static str {
    if name.ends_with(".pdf") {
        "application/pdf"
    } else if name.ends_with(".xlsx") {
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    } else if name.ends_with(".zip") {
        "application/zip"
    } else if name.ends_with(".png") {
        "image/png"
    } else if name.ends_with(".html") {
        "text/html; charset=utf-8"
    } else {
        "application/octet-stream"
    }
}

/// Writes `report` in every format. CPU work (tens to hundreds of milliseconds): run it on a
/// blocking thread.
pub fn render(report: &MonthlyReport) -> Result<RenderedReport, ReportError> {
    let mut files = BTreeMap::new();
    files.insert(
        PDF.to_owned(),
        super::pdf::pdf(report).map_err(|e| ReportError::Render {
            format: "PDF",
            message: e.to_string(),
        })?,
    );
    files.insert(XLSX.to_owned(), super::xlsx::xlsx(report)?);
    files.insert(CSV.to_owned(), csv_zip(report, ',')?);
    files.insert(CSV_SEMICOLON.to_owned(), csv_zip(report, ';')?);
    for c in &report.charts {
        let png =
            crate::png::png(&print_svg(report, c), PNG_SCALE).map_err(|e| ReportError::Render {
                format: "PNG",
                message: e.to_string(),
            })?;
        files.insert(format!("{CHARTS}{}.png", c.name), png);
    }
    files.insert(HTML.to_owned(), html(report)?.into_bytes());
    Ok(RenderedReport { files })
}

/// A chart's SVG for paper and images: dark text on white (no dark mode outside a page).
pub fn print_svg(report: &MonthlyReport, c: &super::NamedChart) -> String {
    chart::svg(&c.data, c.shape, report.lang, c.name).replacen(
        "<svg ",
        "<svg color=\"#161616\" ",
        1,
    )
}

/// The notes every format carries: title, source, what changed, events, the suppression
/// rule, the definitions, as (label, text) lines.
pub fn notes(report: &MonthlyReport) -> Vec<(String, String)> {
    let lang = report.lang;
    let mut out = vec![
        (lang.t("report").to_owned(), report.title.clone()),
        (lang.t("source").to_owned(), report.source_line()),
    ];
    out.push((String::new(), report.status_line()));
    for line in report.revision_lines() {
        out.push((lang.t("revision").to_owned(), line));
    }
    for sentence in &report.changes {
        out.push((lang.t("what_changed").to_owned(), sentence.clone()));
    }
    for event in &report.events {
        out.push((lang.t("events").to_owned(), event.clone()));
    }
    out.push((lang.t("suppressed").to_owned(), report.suppression.clone()));
    out.push((
        lang.t("top_forums").to_owned(),
        lang.t("forums_as_of").to_owned(),
    ));
    for (figure, definition) in &report.definitions {
        out.push((figure.clone(), definition.clone()));
    }
    out
}

/// Each table as `{name}.csv` and the notes as `notes.csv`, in a zip whose entries carry a
/// fixed date (the bytes depend on the report only).
fn csv_zip(report: &MonthlyReport, separator: char) -> Result<Vec<u8>, ReportError> {
    let fail = |e: &dyn std::fmt::Display| ReportError::Render {
        format: "CSV zip",
        message: e.to_string(),
    };
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .last_modified_time(zip::DateTime::default());
    for t in &report.tables {
        zip.start_file(format!("{}.csv", t.name), options)
            .map_err(|e| fail(&e))?;
        zip.write_all(t.table.csv(separator).as_bytes())
            .map_err(|e| fail(&e))?;
    }
    let notes = crate::panel::Table {
        headers: vec![String::new(), report.lang.t("notes").to_owned()],
        rows: notes(report)
            .into_iter()
            .map(|(label, text)| (label, vec![Value::Text(text)]))
            .collect(),
    };
    zip.start_file("notes.csv", options).map_err(|e| fail(&e))?;
    zip.write_all(notes.csv(separator).as_bytes())
        .map_err(|e| fail(&e))?;
    Ok(zip.finish().map_err(|e| fail(&e))?.into_inner())
}

/// A table for the HTML template: cells shown, and whether each is withheld.
struct HtmlTable {
    id: &'static str,
    title: String,
    headers: Vec<String>,
    rows: Vec<crate::panel::ShownRow>,
}

struct HtmlChart {
    title: String,
    svg: String,
}

#[derive(Template)]
#[template(path = "report.html")]
struct ReportPage<'a> {
    lang: &'static str,
    style: &'static str,
    report: &'a MonthlyReport,
    source: String,
    status: String,
    revision: Vec<String>,
    what_changed: &'static str,
    events_title: &'static str,
    annex: &'static str,
    forums_note: &'static str,
    headline: Vec<HtmlTable>,
    charts: Vec<HtmlChart>,
    tables: Vec<HtmlTable>,
}

/// The report as one HTML file, everything inline.
pub fn html(report: &MonthlyReport) -> Result<String, ReportError> {
    let lang = report.lang;
    let table = |t: &super::NamedTable| HtmlTable {
        id: t.name,
        title: t.title.clone(),
        headers: t.table.headers.clone(),
        rows: t.table.shown_rows(lang),
    };
    let page = ReportPage {
        lang: lang.code(),
        style: concat!(
            include_str!("../../templates/style.css"),
            include_str!("../../templates/report.css")
        ),
        report,
        source: report.source_line(),
        status: report.status_line(),
        revision: report.revision_lines(),
        what_changed: lang.t("what_changed"),
        events_title: lang.t("events"),
        annex: lang.t("annex"),
        forums_note: lang.t("forums_as_of"),
        headline: report
            .tables
            .iter()
            .filter(|t| t.name == "headline")
            .map(table)
            .collect(),
        charts: report
            .charts
            .iter()
            .map(|c| HtmlChart {
                title: c.data.title.clone(),
                svg: chart::svg(&c.data, c.shape, lang, c.name),
            })
            .collect(),
        tables: report
            .tables
            .iter()
            .filter(|t| t.name != "headline")
            .map(table)
            .collect(),
    };
    page.render().map_err(|e| ReportError::Render {
        format: "HTML",
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;

    use super::*;
    use crate::i18n::Lang;
    use crate::report::tests::sample;

    #[test]
    fn the_csv_zip_holds_each_table_and_the_notes_in_both_dialects() {
        let report = sample(Lang::Fr);
        for (separator, number, change) in [(',', "230561", "0.0312"), (';', "230561", "0,0312")] {
            let bytes = csv_zip(&report, separator).unwrap();
            assert_eq!(bytes, csv_zip(&report, separator).unwrap(), "same bytes");
            let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
            let mut names: Vec<String> = archive
                .file_names()
                .map(|n| n.unwrap().to_string())
                .collect();
            names.sort();
            assert_eq!(names, ["daily.csv", "headline.csv", "notes.csv"]);
            let mut text = String::new();
            archive
                .by_name("headline.csv")
                .unwrap()
                .read_to_string(&mut text)
                .unwrap();
            assert!(text.starts_with('\u{feff}'), "a BOM for spreadsheets");
            let row = format!("Utilisateurs actifs{separator}{number}{separator}{change}\r\n");
            assert!(text.contains(&row), "{text}");
            assert!(text.contains(&format!(
                "Appels visibles lancés{separator}secret{separator}\r\n"
            )));
        }
    }

    #[test]
    fn the_html_stands_alone_and_marks_secret_cells() {
        let html = html(&sample(Lang::Fr)).unwrap();
        assert!(html.starts_with("<!doctype html>"));
        assert!(html.contains("<html lang=\"fr\">"));
        assert!(html.contains("<svg"), "charts inline");
        assert!(html.contains("230\u{202f}561"));
        assert!(html.contains("<td class=\"secret\">secret</td>"));
        for outside in [
            "src=\"http",
            "href=\"http",
            "<script",
            "<link rel=\"stylesheet",
        ] {
            assert!(
                !html.contains(outside),
                "nothing loaded from outside: {outside}"
            );
        }
        assert!(html.contains("Jeux Olympiques"));
    }
}
