//! The report as an XLSX workbook (rust_xlsxwriter): one sheet per table, numbers as numbers
//! (counts with a thousands separator, changes as percentages), a withheld cell as the text
//! `secret`, the daily series and the servers drawn as native Excel charts, and a Notes sheet
//! (source, what changed, events, the suppression rule, the definitions).

use rust_xlsxwriter::{Chart, DocProperties, Format, Workbook, Worksheet};

use super::{MonthlyReport, NamedTable, ReportError};
use crate::panel::Value;

fn fail(e: rust_xlsxwriter::XlsxError) -> ReportError {
    ReportError::Render {
        format: "XLSX",
        message: e.to_string(),
    }
}

/// A sheet's name: at most 31 characters, none of `[]:*?/\`.
fn sheet_name(title: &str) -> String {
    title
        .chars()
        .filter(|c| !"[]:*?/\\".contains(*c))
        .take(31)
        .collect()
}

struct Formats {
    header: Format,
    count: Format,
    decimal: Format,
    change: Format,
    secret: Format,
    wrap: Format,
}

fn write_table(sheet: &mut Worksheet, t: &NamedTable, f: &Formats) -> Result<(), ReportError> {
    sheet.set_name(sheet_name(&t.title)).map_err(fail)?;
    for (col, header) in (0u16..).zip(&t.table.headers) {
        sheet
            .write_string_with_format(0, col, header, &f.header)
            .map_err(fail)?;
        let width = if col == 0 { 34 } else { 18 };
        sheet.set_column_width(col, width).map_err(fail)?;
    }
    for (row, (label, cells)) in (1u32..).zip(&t.table.rows) {
        sheet.write_string(row, 0, label).map_err(fail)?;
        for (col, cell) in (1u16..).zip(cells) {
            match cell {
                Value::Number(n) => {
                    let format = if n.fract() == 0.0 {
                        &f.count
                    } else {
                        &f.decimal
                    };
                    sheet.write_number_with_format(row, col, *n, format)
                }
                Value::Change(_) => {
                    let fraction = cell.number().unwrap_or_default();
                    sheet.write_number_with_format(row, col, fraction, &f.change)
                }
                Value::Secret => sheet.write_string_with_format(row, col, "secret", &f.secret),
                Value::Text(text) => sheet.write_string(row, col, text),
                Value::Empty => Ok(&mut *sheet),
            }
            .map_err(fail)?;
        }
    }
    sheet.set_freeze_panes(1, 1).map_err(fail)?;
    Ok(())
}

/// A native chart of `columns` of a sheet's rows 1..=`rows`, categories in column 0.
fn chart_of(mut chart: Chart, sheet: &str, rows: u32, columns: &[u16], title: &str) -> Chart {
    for &col in columns {
        chart
            .add_series()
            .set_categories((sheet, 1, 0, rows, 0))
            .set_values((sheet, 1, col, rows, col))
            .set_name((sheet, 0, col));
    }
    chart.title().set_name(title);
    chart.set_width(720).set_height(320);
    chart
}

/// The workbook's bytes.
pub fn xlsx(report: &MonthlyReport) -> Result<Vec<u8>, ReportError> {
    let mut workbook = Workbook::new();
    // The time it was counted, not of writing: the same report gives the same bytes.
    let created = chrono::DateTime::parse_from_rfc3339(&report.generated_at)
        .map(|t| t.with_timezone(&chrono::Utc))
        .unwrap_or_default();
    workbook.set_properties(
        &DocProperties::new()
            .set_title(&report.title)
            .set_author("mxpulse")
            .set_comment(report.source_line())
            .set_creation_datetime(&created),
    );
    let formats = Formats {
        header: Format::new().set_bold().set_text_wrap(),
        count: Format::new().set_num_format("#,##0"),
        decimal: Format::new().set_num_format("#,##0.0"),
        change: Format::new().set_num_format("+0.0%;-0.0%;0.0%"),
        secret: Format::new().set_italic().set_font_color("#8A4B00"),
        wrap: Format::new().set_text_wrap(),
    };
    for t in &report.tables {
        let sheet = workbook.add_worksheet();
        write_table(sheet, t, &formats)?;
        let name = sheet_name(&t.title);
        let rows = u32::try_from(t.table.rows.len()).unwrap_or(u32::MAX);
        let chart = match t.name {
            "daily" if rows > 0 => Some(chart_of(
                Chart::new_line(),
                &name,
                rows,
                &[1],
                &report
                    .charts
                    .iter()
                    .find(|c| c.name == "active_users")
                    .map_or(name.clone(), |c| c.data.title.clone()),
            )),
            "by_server" if rows > 0 => Some(chart_of(
                Chart::new_bar(),
                &name,
                rows,
                &[1],
                &t.table.headers.get(1).cloned().unwrap_or_default(),
            )),
            _ => None,
        };
        if let Some(chart) = chart {
            let col = u16::try_from(t.table.headers.len() + 1).unwrap_or(8);
            sheet.insert_chart(1, col, &chart).map_err(fail)?;
        }
    }
    let notes = workbook.add_worksheet();
    notes
        .set_name(sheet_name(report.lang.t("notes")))
        .map_err(fail)?;
    notes.set_column_width(0, 34).map_err(fail)?;
    notes.set_column_width(1, 120).map_err(fail)?;
    for (row, (label, text)) in (0u32..).zip(super::files::notes(report)) {
        notes
            .write_string_with_format(row, 0, label, &formats.header)
            .map_err(fail)?;
        notes
            .write_string_with_format(row, 1, text, &formats.wrap)
            .map_err(fail)?;
    }
    workbook.save_to_buffer().map_err(fail)
}

#[cfg(test)]
mod tests {
    use calamine::{Data, Reader as _, Xlsx};

    use super::*;
    use crate::i18n::Lang;
    use crate::report::tests::sample;

    #[test]
    fn numbers_stay_numbers_and_secret_cells_say_so() {
        let report = sample(Lang::Fr);
        let bytes = xlsx(&report).unwrap();
        assert_eq!(bytes, xlsx(&report).unwrap(), "same report, same bytes");
        let mut book: Xlsx<_> = Xlsx::new(std::io::Cursor::new(bytes)).unwrap();
        assert_eq!(
            book.sheet_names(),
            vec!["Chiffres clés", "Jour par jour", "Notes"]
        );
        let sheet = book.worksheet_range("Chiffres clés").unwrap();
        assert_eq!(sheet.get_value((1, 1)), Some(&Data::Float(230_561.0)));
        assert_eq!(sheet.get_value((1, 2)), Some(&Data::Float(0.0312)));
        assert_eq!(
            sheet.get_value((2, 1)),
            Some(&Data::String("secret".into()))
        );
        let daily = book.worksheet_range("Jour par jour").unwrap();
        assert_eq!(daily.get_value((31, 1)), Some(&Data::Float(31_000.0)));
        let notes = book.worksheet_range("Notes").unwrap();
        let texts: Vec<String> = notes.rows().map(|r| r[1].to_string()).collect();
        assert!(texts.iter().any(|t| t.contains("moins de 5")), "{texts:?}");
        assert!(texts.iter().any(|t| t.contains("Jeux Olympiques")));
    }
}
