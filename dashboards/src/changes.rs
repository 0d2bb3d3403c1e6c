//! "What changed": for each headline figure, a sentence on the last closed month's change and
//! the servers, platforms and domains that contributed most to it, computed from the
//! breakdowns. Only cells shown in both months are compared: a withheld cell is never named.

use crate::i18n::Lang;
use crate::panel::Cells;

/// One figure's sentence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub figure: String,
    pub sentence: String,
}

/// The change of each of `figures` in `month` against `previous`.
pub fn what_changed(
    cells: &Cells<'_>,
    figures: &[&str],
    month: &str,
    previous: &str,
    lang: Lang,
) -> Vec<Change> {
    let mut out = Vec::new();
    for figure in figures {
        let now = cells.value(figure, month, "total", None).number();
        let before = cells.value(figure, previous, "total", None).number();
        let (Some(now), Some(before)) = (now, before) else {
            continue;
        };
        let delta = now - before;
        let mut sentence = format!(
            "{} : {} ({}), {} {}",
            lang.figure(figure),
            lang.number(now),
            lang.period(month),
            if before != 0.0 {
                lang.change(delta / before)
            } else {
                lang.number(delta)
            },
            lang.t("mom"),
        );
        // The keys whose change went the same way, largest first.
        let mut contributors: Vec<(String, f64)> = Vec::new();
        for breakdown in ["server", "platform", "domain"] {
            let periods = [month.to_owned(), previous.to_owned()];
            for key in cells.keys(figure, breakdown, &periods) {
                let shown =
                    |period: &str| cells.value(figure, period, breakdown, Some(key)).number();
                if let (Some(a), Some(b)) = (shown(month), shown(previous)) {
                    let d = a - b;
                    if d != 0.0 && (d > 0.0) == (delta > 0.0) {
                        contributors.push((key.to_owned(), d));
                    }
                }
            }
            // One breakdown at a time: the first that explains the change.
            if !contributors.is_empty() {
                break;
            }
        }
        contributors.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()).then(a.0.cmp(&b.0)));
        if delta != 0.0 && !contributors.is_empty() {
            let named: Vec<String> = contributors
                .iter()
                .take(2)
                .map(|(key, d)| {
                    format!(
                        "{} ({}{})",
                        key.trim_start_matches("agent.")
                            .trim_end_matches(".tchap.gouv.fr"),
                        if *d > 0.0 { "+" } else { "−" },
                        lang.number(d.abs())
                    )
                })
                .collect();
            sentence.push_str(&format!(
                " ; {} {}",
                lang.t("contributed"),
                named.join(", ")
            ));
        }
        sentence.push('.');
        out.push(Change {
            figure: (*figure).to_owned(),
            sentence,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use mxpulse_query::figures::{FigureCell, FigureSource, FiguresReport, Filters, Granularity};

    fn cell(
        period: &str,
        breakdown: &'static str,
        key: Option<&str>,
        value: Option<f64>,
    ) -> FigureCell {
        FigureCell {
            figure: "messages",
            period: period.into(),
            breakdown,
            key: key.map(str::to_owned),
            value,
            suppressed: value.is_none(),
            mom: None,
            yoy: None,
            peak_day: None,
            peak_value: None,
        }
    }

    #[test]
    fn the_change_and_who_made_it_without_naming_a_withheld_cell() {
        let report = FiguresReport {
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
                cell("2024-06", "total", None, Some(5_512.0)),
                cell("2024-07", "total", None, Some(7_000.0)),
                cell(
                    "2024-06",
                    "server",
                    Some("agent.interieur.tchap.gouv.fr"),
                    Some(3_000.0),
                ),
                cell(
                    "2024-07",
                    "server",
                    Some("agent.interieur.tchap.gouv.fr"),
                    Some(4_200.0),
                ),
                cell(
                    "2024-06",
                    "server",
                    Some("agent.finances.tchap.gouv.fr"),
                    Some(2_500.0),
                ),
                cell(
                    "2024-07",
                    "server",
                    Some("agent.finances.tchap.gouv.fr"),
                    Some(2_788.0),
                ),
                cell(
                    "2024-06",
                    "server",
                    Some("agent.secret.tchap.gouv.fr"),
                    None,
                ),
                cell(
                    "2024-07",
                    "server",
                    Some("agent.secret.tchap.gouv.fr"),
                    Some(12.0),
                ),
            ],
        };
        let cells = Cells::new(&report);
        let changes = what_changed(
            &cells,
            &["messages", "active_users"],
            "2024-07",
            "2024-06",
            Lang::Fr,
        );
        assert_eq!(changes.len(), 1, "no sentence without both months");
        let sentence = &changes[0].sentence;
        assert!(sentence.starts_with("Messages envoyés : 7\u{202f}000 (juil. 2024), +27,0\u{a0}% sur un mois ; dont interieur (+1\u{202f}200), finances (+288)."), "{sentence}");
        assert!(!sentence.contains("secret"), "{sentence}");
    }
}
