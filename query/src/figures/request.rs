//! A figures request, checked: the periods, the filters, the figures and breakdowns asked
//! for, and the bounds on what one request may cost.

use serde::Serialize;

use super::definitions::{Dim, DimSet, FIGURES, Figure, SPECIAL_FIGURES, Source, is_known};
use super::periods::{self, month_start, months_apart, parse_day};
use crate::error::QueryError;

/// Calendar months or days.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Granularity {
    Month,
    Day,
}

/// What the caller narrowed the figures to.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
pub struct Filters {
    pub server: Option<String>,
    pub domain: Option<String>,
    pub platform: Option<String>,
    /// A client family (`tchap_x_android`, ...): visits only, like `platform`.
    pub family: Option<String>,
}

impl Filters {
    pub fn value(&self, dim: Dim) -> Option<&str> {
        match dim {
            Dim::Server => self.server.as_deref(),
            Dim::Domain => self.domain.as_deref(),
            Dim::Platform => self.platform.as_deref(),
            Dim::Family => self.family.as_deref(),
        }
    }

    /// Whether a filter only visits have (platform, client family) is set.
    pub fn visits_only(&self) -> bool {
        self.platform.is_some() || self.family.is_some()
    }

    /// The filtered dimensions, among `dims`.
    pub fn dims(&self, dims: &[Dim]) -> DimSet {
        dims.iter()
            .filter(|d| self.value(**d).is_some())
            .fold(DimSet::NONE, |set, d| set.with(*d))
    }
}

/// The longest periods one request may ask for: a request's cost grows with its span.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpanLimits {
    pub max_months: u32,
    pub max_days: u32,
}

impl Default for SpanLimits {
    fn default() -> Self {
        // Ten years of months; a year and a month of days (a year over year by day).
        Self {
            max_months: 120,
            max_days: 400,
        }
    }
}

/// One request of the figures API.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FigureRequest {
    pub granularity: Granularity,
    /// First period shown: `YYYY-MM` (monthly) or `YYYY-MM-DD` (daily).
    pub from: String,
    /// Last period shown, included.
    pub to: String,
    pub filters: Filters,
    /// The figures asked for; every figure when empty.
    pub only: Vec<String>,
    /// The breakdowns shown besides the total.
    pub breakdowns: Vec<Dim>,
}

impl FigureRequest {
    /// Every figure, with every breakdown.
    pub fn new(granularity: Granularity, from: &str, to: &str) -> Self {
        Self {
            granularity,
            from: from.to_owned(),
            to: to.to_owned(),
            filters: Filters::default(),
            only: Vec::new(),
            breakdowns: Dim::ALL.to_vec(),
        }
    }

    /// Refuses what cannot be answered, or would cost more than `spans` allow.
    pub fn check(&self, spans: &SpanLimits) -> Result<(), QueryError> {
        for name in &self.only {
            if !is_known(name) {
                return Err(QueryError::Invalid(format!("no figure named {name:?}")));
            }
        }
        match self.granularity {
            Granularity::Month => {
                let span = months_apart(&self.from, &self.to)?;
                if span < 0 {
                    return Err(QueryError::Invalid(format!(
                        "from {} is after to {}",
                        self.from, self.to
                    )));
                }
                if span >= i64::from(spans.max_months) {
                    return Err(QueryError::Invalid(format!(
                        "{} months asked for; at most {} months in one request",
                        span + 1,
                        spans.max_months
                    )));
                }
            }
            Granularity::Day => {
                let (from, to) = (parse_day(&self.from)?, parse_day(&self.to)?);
                let span = (to - from).num_days();
                if span < 0 {
                    return Err(QueryError::Invalid(format!(
                        "from {} is after to {}",
                        self.from, self.to
                    )));
                }
                if span >= i64::from(spans.max_days) {
                    return Err(QueryError::Invalid(format!(
                        "{} days asked for; at most {} days in one request",
                        span + 1,
                        spans.max_days
                    )));
                }
            }
        }
        Ok(())
    }

    pub fn wants(&self, name: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|n| n == name)
    }

    /// The grouped figures shown: with a platform or family filter, those of visits only.
    pub fn shown(&self) -> Vec<&'static Figure> {
        FIGURES
            .iter()
            .filter(|f| {
                (!self.filters.visits_only() || f.source == Source::Visits) && self.wants(f.name)
            })
            .collect()
    }

    /// The special figures shown: monthly only, and none is by platform or family.
    pub fn shows_special(&self, name: &str) -> bool {
        debug_assert!(SPECIAL_FIGURES.contains(&name));
        self.granularity == Granularity::Month && !self.filters.visits_only() && self.wants(name)
    }

    /// The first period read: a year before `from` for monthly requests (year over year).
    pub fn first_period(&self) -> Result<String, QueryError> {
        match self.granularity {
            Granularity::Month => {
                month_start(&self.from)?;
                Ok(periods::shift(&self.from, 12).unwrap_or_else(|| self.from.clone()))
            }
            Granularity::Day => Ok(self.from.clone()),
        }
    }

    pub fn shows_breakdown(&self, dim: Dim) -> bool {
        self.breakdowns.contains(&dim)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(granularity: Granularity, from: &str, to: &str) -> Result<(), String> {
        FigureRequest::new(granularity, from, to)
            .check(&SpanLimits::default())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn spans_are_bounded() {
        assert!(check(Granularity::Month, "2015-01", "2024-12").is_ok());
        let err = check(Granularity::Month, "2014-12", "2024-12").unwrap_err();
        assert!(err.contains("121 months asked for; at most 120"), "{err}");
        assert!(check(Granularity::Month, "0001-01", "9999-12").is_err());
        assert!(check(Granularity::Month, "2024-02", "2024-01").is_err());
        assert!(check(Granularity::Day, "2024-01-01", "2025-02-03").is_ok());
        let err = check(Granularity::Day, "2024-01-01", "2025-02-04").unwrap_err();
        assert!(err.contains("401 days asked for; at most 400"), "{err}");
        assert!(check(Granularity::Day, "2024-01", "2024-02").is_err());
        assert!(check(Granularity::Month, "2024-01-01", "2024-02-01").is_err());
    }

    #[test]
    fn unknown_figures_are_refused() {
        let mut request = FigureRequest::new(Granularity::Month, "2024-01", "2024-02");
        request.only = vec!["active_users".into(), "r30_users".into()];
        assert!(request.check(&SpanLimits::default()).is_ok());
        request.only.push("account_changes".into());
        assert!(request.check(&SpanLimits::default()).is_err());
    }
}
