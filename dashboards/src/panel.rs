//! A panel's content, built from the figures' answer: the chart's data and the table behind
//! it (the same numbers: the table is the chart's accessible alternative, and what its CSV
//! holds). A suppressed cell is `secret` in the table and a gap in the chart, never a zero.

use std::collections::{BTreeMap, BTreeSet};

use mxpulse_query::figures::{FigureCell, FiguresReport, ForumRank};

use crate::chart::{Band, ChartData, PALETTE, Series, Shape, colors_of, short_name};
use crate::definition::{ChartKind, Panel};
use crate::i18n::Lang;

/// One cell of a table.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Number(f64),
    /// A change against another period, as a fraction (`0.27`: +27 %).
    Change(f64),
    /// Built from fewer than k users: withheld.
    Secret,
    /// No data.
    Empty,
    Text(String),
}

impl Value {
    pub fn display(&self, lang: Lang) -> String {
        match self {
            Value::Number(n) => lang.number(*n),
            Value::Change(c) => lang.change(*c),
            Value::Secret => lang.t("suppressed").to_owned(),
            Value::Empty => "—".to_owned(),
            Value::Text(text) => text.clone(),
        }
    }

    /// As written in a CSV file: numbers plain (a change as a fraction to 4 decimals), `secret`
    /// spelled out, nothing for no data.
    pub fn csv(&self) -> String {
        match self {
            Value::Number(n) if n.fract() == 0.0 => format!("{n:.0}"),
            Value::Number(n) => n.to_string(),
            Value::Change(c) => format!("{:.4}", round4(*c)),
            Value::Secret => "secret".to_owned(),
            Value::Empty => String::new(),
            Value::Text(text) => text.clone(),
        }
    }

    /// The number a spreadsheet holds: a count, or a change's fraction as the CSV has it.
    pub fn number(&self) -> Option<f64> {
        match self {
            Value::Number(n) => Some(*n),
            Value::Change(c) => Some(round4(*c)),
            _ => None,
        }
    }
}

/// A fraction to 4 decimals (a tenth of a percent and a bit): what every format writes.
fn round4(fraction: f64) -> f64 {
    (fraction * 10_000.0).round() / 10_000.0
}

/// The table behind a chart.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Table {
    pub headers: Vec<String>,
    pub rows: Vec<(String, Vec<Value>)>,
}

/// A table's row as a page shows it: its label, and each cell's text and whether it is withheld.
pub type ShownRow = (String, Vec<(String, bool)>);

impl Table {
    /// The rows as a page writes them (numbers in `lang`; withheld cells marked for styling).
    pub fn shown_rows(&self, lang: Lang) -> Vec<ShownRow> {
        self.rows
            .iter()
            .map(|(label, cells)| {
                (
                    label.clone(),
                    cells
                        .iter()
                        .map(|c| (c.display(lang), *c == Value::Secret))
                        .collect(),
                )
            })
            .collect()
    }

    pub fn has_secret(&self) -> bool {
        self.rows
            .iter()
            .any(|(_, cells)| cells.contains(&Value::Secret))
    }

    /// RFC 4180 CSV (UTF-8 with a byte-order mark, so that a spreadsheet reads accents), or with
    /// `;` between fields and a decimal comma (what a French spreadsheet expects).
    pub fn csv(&self, separator: char) -> String {
        let quote = |text: &str| {
            if text.contains([separator, '"', '\n', '\r']) {
                format!("\"{}\"", text.replace('"', "\"\""))
            } else {
                text.to_owned()
            }
        };
        let field = |value: &Value| match value {
            Value::Number(_) | Value::Change(_) if separator == ';' => {
                value.csv().replace('.', ",")
            }
            _ => value.csv(),
        };
        let mut out = String::from("\u{feff}");
        let header: Vec<String> = self.headers.iter().map(|h| quote(h)).collect();
        out.push_str(&header.join(&separator.to_string()));
        out.push_str("\r\n");
        for (label, cells) in &self.rows {
            let mut fields = vec![quote(label)];
            fields.extend(cells.iter().map(|c| quote(&field(c))));
            out.push_str(&fields.join(&separator.to_string()));
            out.push_str("\r\n");
        }
        out
    }
}

/// The headline of a big-number panel: the last period's value and its changes.
#[derive(Clone, Debug, PartialEq)]
pub struct Headline {
    pub period: String,
    pub value: Value,
    pub mom: Option<f64>,
    pub yoy: Option<f64>,
}

/// A panel ready to be drawn.
#[derive(Clone, Debug, PartialEq)]
pub struct PanelContent {
    pub chart: Option<(ChartData, Shape)>,
    pub table: Table,
    pub headline: Option<Headline>,
}

/// The figures' cells, looked up by figure, period, breakdown and key.
pub struct Cells<'a> {
    by: BTreeMap<(&'a str, &'a str, &'a str, Option<&'a str>), &'a FigureCell>,
}

impl<'a> Cells<'a> {
    pub fn new(report: &'a FiguresReport) -> Self {
        Self {
            by: report
                .cells
                .iter()
                .map(|c| {
                    (
                        (c.figure, c.period.as_str(), c.breakdown, c.key.as_deref()),
                        c,
                    )
                })
                .collect(),
        }
    }

    pub fn get(
        &self,
        figure: &str,
        period: &str,
        breakdown: &str,
        key: Option<&str>,
    ) -> Option<&'a FigureCell> {
        self.by.get(&(figure, period, breakdown, key)).copied()
    }

    pub fn value(&self, figure: &str, period: &str, breakdown: &str, key: Option<&str>) -> Value {
        match self.get(figure, period, breakdown, key) {
            Some(cell) if cell.suppressed => Value::Secret,
            Some(cell) => cell.value.map_or(Value::Secret, Value::Number),
            None => Value::Empty,
        }
    }

    /// The keys of a breakdown of `figure` over `periods`.
    pub fn keys(&self, figure: &str, breakdown: &str, periods: &[String]) -> BTreeSet<&'a str> {
        self.by
            .iter()
            .filter(|((f, p, b, _), _)| {
                *f == figure && *b == breakdown && periods.iter().any(|x| x == p)
            })
            .filter_map(|((_, _, _, k), _)| *k)
            .collect()
    }
}

fn figure_color(i: usize) -> &'static str {
    PALETTE[i % PALETTE.len()]
}

/// The content of a figures panel over `periods` (their labels: `labels`).
pub fn figures_panel(
    panel: &Panel,
    cells: &Cells<'_>,
    periods: &[String],
    bands: Vec<Band>,
    lang: Lang,
    title: &str,
) -> PanelContent {
    let labels: Vec<String> = periods.iter().map(|p| lang.period(p)).collect();
    let figures: Vec<&str> = panel.figures.iter().map(|f| f.get_ref().as_str()).collect();
    let breakdown = panel.breakdown.as_str();
    let last = periods.last().cloned().unwrap_or_default();
    // A ranking: the last period's value of each key.
    if panel.last_period_only || (breakdown != "total" && panel.kind == ChartKind::Bar) {
        let figure = figures.first().copied().unwrap_or_default();
        let mut keys: Vec<(&str, Value)> = cells
            .keys(figure, breakdown, std::slice::from_ref(&last))
            .into_iter()
            .map(|k| (k, cells.value(figure, &last, breakdown, Some(k))))
            .collect();
        keys.sort_by(|a, b| {
            b.1.number()
                .unwrap_or(-1.0)
                .total_cmp(&a.1.number().unwrap_or(-1.0))
                .then(a.0.cmp(b.0))
        });
        let shown: Vec<&(&str, Value)> =
            keys.iter().take(panel.top.unwrap_or(usize::MAX)).collect();
        let chart = ChartData {
            categories: shown
                .iter()
                .map(|(k, _)| short_name(k).to_owned())
                .collect(),
            series: vec![Series {
                name: lang.figure(figure),
                color: figure_color(0),
                values: shown.iter().map(|(_, v)| v.number()).collect(),
            }],
            bands: Vec::new(),
            title: format!("{title}, {}", lang.period(&last)),
        };
        let table = Table {
            headers: vec![lang.t(breakdown).to_owned(), lang.figure(figure)],
            rows: keys
                .into_iter()
                .map(|(k, v)| (k.to_owned(), vec![v]))
                .collect(),
        };
        return PanelContent {
            chart: Some((chart, Shape::Ranking)),
            table,
            headline: None,
        };
    }
    // Series over time: one per figure in total, or one per key of the breakdown.
    let mut series: Vec<(String, &'static str, Vec<Value>)> = Vec::new();
    if breakdown == "total" {
        for (i, figure) in figures.iter().enumerate() {
            series.push((
                lang.figure(figure),
                figure_color(i),
                periods
                    .iter()
                    .map(|p| cells.value(figure, p, "total", None))
                    .collect(),
            ));
        }
    } else {
        let figure = figures.first().copied().unwrap_or_default();
        let mut keys: Vec<&str> = cells.keys(figure, breakdown, periods).into_iter().collect();
        // The largest last (or overall) values first; the table keeps every key.
        let weight = |k: &str| {
            periods
                .iter()
                .filter_map(|p| cells.value(figure, p, breakdown, Some(k)).number())
                .sum::<f64>()
        };
        keys.sort_by(|a, b| weight(b).total_cmp(&weight(a)).then(a.cmp(b)));
        let drawn: Vec<&str> = keys
            .iter()
            .copied()
            .take(panel.top.unwrap_or(usize::MAX))
            .collect();
        let colors = colors_of(&drawn);
        for (i, key) in keys.iter().enumerate() {
            series.push((
                (*key).to_owned(),
                colors.get(i).copied().unwrap_or(PALETTE[7]),
                periods
                    .iter()
                    .map(|p| cells.value(figure, p, breakdown, Some(key)))
                    .collect(),
            ));
        }
        if panel.kind == ChartKind::Table {
            // A table of keys by period reads best a key per row.
            let table = Table {
                headers: std::iter::once(lang.t(breakdown).to_owned())
                    .chain(periods.iter().map(|p| lang.period(p)))
                    .collect(),
                rows: series
                    .iter()
                    .map(|(name, _, values)| (name.clone(), values.clone()))
                    .collect(),
            };
            return PanelContent {
                chart: None,
                table,
                headline: None,
            };
        }
    }
    let table = Table {
        headers: std::iter::once(
            lang.t(if periods.first().is_some_and(|p| p.len() > 7) {
                "day"
            } else {
                "month"
            })
            .to_owned(),
        )
        .chain(series.iter().map(|(name, _, _)| name.clone()))
        .collect(),
        rows: periods
            .iter()
            .enumerate()
            .map(|(i, p)| {
                (
                    lang.period(p),
                    series
                        .iter()
                        .map(|(_, _, values)| values[i].clone())
                        .collect(),
                )
            })
            .collect(),
    };
    // A big number, and a line of one figure (open accounts, r30: headline figures drawn as
    // a line) lead with their last period's value.
    let one_line = panel.kind == ChartKind::Line && breakdown == "total" && figures.len() == 1;
    let headline = (panel.kind == ChartKind::BigNumber || one_line).then(|| {
        let figure = figures.first().copied().unwrap_or_default();
        let cell = cells.get(figure, &last, "total", None);
        Headline {
            period: last.clone(),
            value: cells.value(figure, &last, "total", None),
            mom: cell.and_then(|c| c.mom),
            yoy: cell.and_then(|c| c.yoy),
        }
    });
    let shape = match panel.kind {
        ChartKind::Bar => Shape::Bars,
        ChartKind::StackedBar => Shape::StackedBars,
        ChartKind::Table => {
            return PanelContent {
                chart: None,
                table,
                headline,
            };
        }
        _ => Shape::Line,
    };
    let drawn: Vec<Series> = series
        .into_iter()
        .take(panel.top.unwrap_or(usize::MAX))
        .map(|(name, color, values)| Series {
            name: short_name(&name).to_owned(),
            color,
            values: values.iter().map(Value::number).collect(),
        })
        .collect();
    PanelContent {
        chart: Some((
            ChartData {
                categories: labels,
                series: drawn,
                bands,
                title: title.to_owned(),
            },
            shape,
        )),
        table,
        headline,
    }
}

/// The forums directory: rank, server, members, month of creation; the members as a ranking.
pub fn forums_panel(forums: &[ForumRank], lang: Lang, title: &str) -> PanelContent {
    // A forum of a public room directory by its name there, else by its server.
    let label = |f: &ForumRank| match &f.name {
        Some(name) => format!("{}. {name}", f.rank),
        None => format!("{}. {}", f.rank, short_name(&f.server)),
    };
    PanelContent {
        chart: (!forums.is_empty()).then(|| {
            (
                ChartData {
                    categories: forums.iter().map(label).collect(),
                    series: vec![Series {
                        name: lang.t("members").to_owned(),
                        color: PALETTE[0],
                        values: forums.iter().map(|f| Some(f.members as f64)).collect(),
                    }],
                    bands: Vec::new(),
                    title: title.to_owned(),
                },
                Shape::Ranking,
            )
        }),
        table: Table {
            headers: vec![
                lang.t("rank").to_owned(),
                lang.t("forum").to_owned(),
                lang.t("topic").to_owned(),
                lang.t("server").to_owned(),
                lang.t("members").to_owned(),
                lang.t("created").to_owned(),
            ],
            rows: forums
                .iter()
                .map(|f| {
                    (
                        f.rank.to_string(),
                        vec![
                            Value::Text(f.name.clone().unwrap_or_default()),
                            Value::Text(f.topic.clone().unwrap_or_default()),
                            Value::Text(f.server.clone()),
                            Value::Number(f.members as f64),
                            Value::Text(lang.period(&f.created)),
                        ],
                    )
                })
                .collect(),
        },
        headline: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mxpulse_query::figures::{FigureSource, Filters, Granularity};

    fn cell(
        figure: &'static str,
        period: &str,
        breakdown: &'static str,
        key: Option<&str>,
        value: Option<f64>,
    ) -> FigureCell {
        FigureCell {
            figure,
            period: period.into(),
            breakdown,
            key: key.map(str::to_owned),
            value,
            suppressed: value.is_none(),
            mom: Some(0.5),
            yoy: None,
            peak_day: None,
            peak_value: None,
        }
    }

    fn report() -> FiguresReport {
        FiguresReport {
            granularity: Granularity::Month,
            from: "2024-06".into(),
            to: "2024-07".into(),
            timezone: "Europe/Paris".into(),
            min_users: 3,
            noise: 2,
            filters: Filters::default(),
            source: FigureSource::Rollups,
            as_of: None,
            cells: vec![
                cell("messages", "2024-06", "total", None, Some(10.0)),
                cell("messages", "2024-07", "total", None, Some(15.0)),
                cell("messages", "2024-07", "server", Some("a"), Some(12.0)),
                cell("messages", "2024-07", "server", Some("b"), None),
            ],
        }
    }

    fn panel(text: &str) -> Panel {
        let dashboard: crate::definition::Dashboard = toml::from_str(&format!(
            "slug = \"t\"\ntitle = {{ fr = \"t\" }}\n[[panel]]\nid = \"p\"\n{text}"
        ))
        .unwrap();
        dashboard.panels[0].clone()
    }

    #[test]
    fn the_table_holds_the_charts_numbers_and_withheld_cells_as_secret() {
        let report = report();
        let cells = Cells::new(&report);
        let periods = vec!["2024-06".to_owned(), "2024-07".to_owned()];
        let content = figures_panel(
            &panel("kind = \"big_number\"\nfigures = [\"messages\"]"),
            &cells,
            &periods,
            Vec::new(),
            Lang::Fr,
            "Messages",
        );
        let headline = content.headline.unwrap();
        assert_eq!(
            (headline.value, headline.mom),
            (Value::Number(15.0), Some(0.5))
        );
        let (chart, _) = content.chart.unwrap();
        assert_eq!(chart.series[0].values, [Some(10.0), Some(15.0)]);
        // A line of one figure leads with its number too; a line of several does not.
        let line = |figures: &str| {
            figures_panel(
                &panel(&format!("kind = \"line\"\nfigures = {figures}")),
                &cells,
                &periods,
                Vec::new(),
                Lang::Fr,
                "Line",
            )
            .headline
        };
        assert_eq!(
            line("[\"messages\"]").map(|h| h.value),
            Some(Value::Number(15.0))
        );
        assert_eq!(line("[\"messages\", \"active_users\"]"), None);
        assert_eq!(
            content.table.rows[1],
            ("juil. 2024".to_owned(), vec![Value::Number(15.0)])
        );
        let ranking = figures_panel(
            &panel("kind = \"bar\"\nfigures = [\"messages\"]\nbreakdown = \"server\""),
            &cells,
            &periods,
            Vec::new(),
            Lang::En,
            "By server",
        );
        assert_eq!(
            ranking.table.rows,
            [
                ("a".to_owned(), vec![Value::Number(12.0)]),
                ("b".to_owned(), vec![Value::Secret])
            ]
        );
        assert!(ranking.table.has_secret());
        let csv = ranking.table.csv(';');
        assert!(csv.starts_with('\u{feff}'));
        assert!(csv.contains("a;12\r\nb;secret\r\n"), "{csv:?}");
    }
}
