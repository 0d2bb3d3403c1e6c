//! The indicators of a month for other systems (`GET /api/v1/indicators/monthly`): every
//! monthly figure's total as an integer, or `null` when withheld, in a schema that does not
//! change under `v1` (fields may be added, never renamed, retyped or removed). It replaces
//! scraping a dashboard's French-formatted strings (`"367 146"`).

use serde::Serialize;

use crate::figures::{FigureCell, FiguresReport};

/// The schema's name and version, in every answer.
pub const SCHEMA: &str = "mxpulse.indicators.monthly/1";

/// A month's indicators.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct MonthlyIndicators {
    /// Always `mxpulse.indicators.monthly/1` under `/api/v1`.
    pub schema: &'static str,
    /// `YYYY-MM`, a calendar month in `time_zone`.
    pub month: String,
    pub time_zone: String,
    /// The one server the figures cover (the principal's scope), or `null`: the federation.
    pub server: Option<String>,
    /// The month has ended in `time_zone` (its figures may still move with late data).
    pub month_over: bool,
    /// Cells built from fewer users than this, none included, are withheld (`value: null`).
    pub min_users: u32,
    /// The largest move of a published count, in steps (docs/design.md §4).
    pub noise: u32,
    /// When the lake data the figures hold was written (RFC 3339), if any.
    pub data_as_of: Option<String>,
    pub indicators: Vec<Indicator>,
}

/// One figure's total of the month.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Indicator {
    /// The figure's name (`active_users`, `messages`...), as in `/api/v1/figures/monthly`.
    pub name: &'static str,
    /// The published count, or `null` when withheld.
    pub value: Option<i64>,
    /// Withheld: built from fewer than `min_users` users, none included (docs/design.md §4:
    /// nothing tells "nobody" from "one or two people").
    pub suppressed: bool,
}

/// The indicators of `month` from its figures (totals of every figure).
pub fn from_figures(
    month: &str,
    figures: &FiguresReport,
    server: Option<String>,
    month_over: bool,
) -> MonthlyIndicators {
    let total = |name: &str| -> Option<&FigureCell> {
        figures
            .cells
            .iter()
            .find(|c| c.figure == name && c.period == month && c.breakdown == "total")
    };
    // The counted figures, then the special ones (open accounts, r30, the client moves).
    let names = crate::figures::FIGURES
        .iter()
        .map(|f| f.name)
        .chain(crate::figures::SPECIAL_FIGURES);
    let indicators = names
        .map(|name| {
            let cell = total(name);
            Indicator {
                name,
                // Every figure counts things: its value is whole (`round` only guards against
                // a float sum's last bit).
                value: cell
                    .filter(|c| !c.suppressed)
                    .and_then(|c| c.value)
                    .map(|v| v.round() as i64),
                suppressed: cell.is_none_or(|c| c.suppressed || c.value.is_none()),
            }
        })
        .collect();
    MonthlyIndicators {
        schema: SCHEMA,
        month: month.to_owned(),
        time_zone: figures.timezone.clone(),
        server,
        month_over,
        min_users: figures.min_users,
        noise: figures.noise,
        data_as_of: figures.as_of.clone(),
        indicators,
    }
}

impl MonthlyIndicators {
    /// RFC 4180 CSV: `month,name,value,suppressed`, one row per indicator, `value` empty when
    /// withheld.
    pub fn csv(&self) -> String {
        let mut out = String::from("month,name,value,suppressed\r\n");
        for i in &self.indicators {
            out.push_str(&format!(
                "{},{},{},{}\r\n",
                self.month,
                i.name,
                i.value.map(|v| v.to_string()).unwrap_or_default(),
                i.suppressed
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::figures::{FigureSource, Filters, Granularity};

    fn cell(
        figure: &'static str,
        period: &str,
        value: Option<f64>,
        suppressed: bool,
    ) -> FigureCell {
        FigureCell {
            figure,
            period: period.into(),
            breakdown: "total",
            key: None,
            value,
            suppressed,
            mom: None,
            yoy: None,
            peak_day: None,
            peak_value: None,
        }
    }

    fn find_name(indicators: &MonthlyIndicators, name: &str) -> bool {
        indicators.indicators.iter().any(|i| i.name == name)
    }

    #[test]
    fn integers_or_null_for_every_figure_of_the_month_only() {
        let figures = FiguresReport {
            granularity: Granularity::Month,
            from: "2024-06".into(),
            to: "2024-07".into(),
            timezone: "Europe/Paris".into(),
            min_users: 5,
            noise: 2,
            filters: Filters::default(),
            source: FigureSource::Rollups,
            as_of: Some("2024-08-01T00:00:00Z".into()),
            cells: vec![
                cell("active_users", "2024-07", Some(230_561.0), false),
                cell("active_users", "2024-06", Some(1.0), false),
                cell("calls_started", "2024-07", None, true),
            ],
        };
        let got = from_figures("2024-07", &figures, None, true);
        assert_eq!(got.schema, SCHEMA);
        assert_eq!(
            got.indicators.len(),
            crate::figures::FIGURES.len() + crate::figures::SPECIAL_FIGURES.len()
        );
        assert!(find_name(&got, "client_moves_to_x") && find_name(&got, "r30_users"));
        let find = |name: &str| got.indicators.iter().find(|i| i.name == name).unwrap();
        assert_eq!(find("active_users").value, Some(230_561));
        assert!(find("calls_started").suppressed && find("calls_started").value.is_none());
        // No cell is withheld alike: zero and small are one answer.
        assert!(find("messages").suppressed && find("messages").value.is_none());
        let csv = got.csv();
        assert!(csv.starts_with("month,name,value,suppressed\r\n"));
        assert!(csv.contains("2024-07,active_users,230561,false\r\n"));
        assert!(csv.contains("2024-07,calls_started,,true\r\n"));
        let json = serde_json::to_value(&got).unwrap();
        assert_eq!(json["indicators"][0]["value"], serde_json::json!(230_561));
    }
}
