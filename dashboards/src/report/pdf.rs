//! The report as a PDF: Typst as a library lays out `templates/report.typ` over the report's
//! data (as JSON) and its charts (the same SVG as the pages, vector in the PDF), with DejaVu
//! Sans embedded. Typst writes tagged PDF (headings, tables, image alternatives) by default;
//! the output depends only on the report (no creation date), so the same report gives the same
//! bytes.

use serde_json::json;
use typst_as_lib::TypstEngine;

use super::MonthlyReport;
use crate::i18n::Lang;
use crate::panel::Value;

const TEMPLATE: &str = include_str!("../../templates/report.typ");

/// Why the PDF could not be made.
#[derive(Debug, thiserror::Error)]
#[error("laying out the PDF: {0}")]
pub struct PdfError(String);

fn words(lang: Lang) -> serde_json::Value {
    json!({
        "source": lang.t("source"),
        "what_changed": lang.t("what_changed"),
        "events": lang.t("events"),
        "annex": lang.t("annex"),
        "revision": lang.t("revision"),
        "forums_as_of": lang.t("forums_as_of"),
    })
}

/// The report's data as the template reads it.
fn data(report: &MonthlyReport) -> serde_json::Value {
    let lang = report.lang;
    json!({
        "title": report.title,
        "lang": lang.code(),
        "provisional": report.provisional,
        "status": report.status_line(),
        "revision": report.revision_lines(),
        "source": report.source_line(),
        "suppression": report.suppression,
        "changes": report.changes,
        "events": report.events,
        "words": words(lang),
        "definitions": report.definitions,
        "charts": report.charts.iter().map(|c| json!({
            "file": format!("charts/{}.svg", c.name),
            "title": c.data.title,
        })).collect::<Vec<_>>(),
        "tables": report.tables.iter().map(|t| json!({
            "name": t.name,
            "title": t.title,
            "headers": t.table.headers,
            "rows": t.table.rows.iter().map(|(label, cells)| {
                std::iter::once(label.clone()).chain(cells.iter().map(|c| c.display(lang))).collect::<Vec<_>>()
            }).collect::<Vec<_>>(),
            "secret": t.table.rows.iter().map(|(_, cells)| {
                std::iter::once(false).chain(cells.iter().map(|c| *c == Value::Secret)).collect::<Vec<_>>()
            }).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}

/// The report laid out as an A4 PDF.
pub fn pdf(report: &MonthlyReport) -> Result<Vec<u8>, PdfError> {
    let mut files: Vec<(String, Vec<u8>)> = vec![(
        "data.json".into(),
        serde_json::to_vec(&data(report)).map_err(|e| PdfError(e.to_string()))?,
    )];
    for c in &report.charts {
        files.push((
            format!("charts/{}.svg", c.name),
            super::files::print_svg(report, c).into_bytes(),
        ));
    }
    let engine = TypstEngine::builder()
        .main_file(TEMPLATE)
        .fonts([
            dejavu::sans::regular(),
            dejavu::sans::bold(),
            dejavu::sans::oblique(),
        ])
        .with_static_file_resolver(
            files
                .iter()
                .map(|(name, bytes)| (name.as_str(), bytes.as_slice())),
        )
        .build();
    let document = engine
        .compile()
        .output
        .map_err(|e| PdfError(format!("{e:?}")))?;
    typst_pdf::pdf(&document, &Default::default()).map_err(|e| PdfError(format!("{e:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::sample;

    #[test]
    fn a_tagged_pdf_with_its_fonts_the_same_bytes_for_the_same_report() {
        let report = sample(Lang::Fr);
        let a = pdf(&report).unwrap();
        assert!(a.starts_with(b"%PDF-"));
        assert_eq!(a, pdf(&report).unwrap(), "no date or random id inside");
        let text = String::from_utf8_lossy(&a);
        assert!(text.contains("/StructTreeRoot"), "tagged");
        assert!(text.contains("DejaVuSans"), "the font embedded");
        assert!(text.contains("/Lang(fr)"), "its language");
    }
}
