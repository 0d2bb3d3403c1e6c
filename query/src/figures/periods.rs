//! Calendar arithmetic of the figures: months `YYYY-MM`, days `YYYY-MM-DD`, the UTC dates a
//! local period reads, and the change between two values.

use chrono::{Days, Months, NaiveDate};

use crate::error::QueryError;

pub fn month_start(month: &str) -> Result<NaiveDate, QueryError> {
    NaiveDate::parse_from_str(&format!("{month}-01"), "%Y-%m-%d")
        .ok()
        .filter(|_| month.len() == 7)
        .ok_or_else(|| QueryError::Invalid(format!("{month:?} is not a month (YYYY-MM)")))
}

/// The last day of a month `YYYY-MM`.
pub fn month_end(month: &str) -> Result<NaiveDate, QueryError> {
    month_start(month)?
        .checked_add_months(Months::new(1))
        .and_then(|next| next.pred_opt())
        .ok_or_else(|| QueryError::Invalid(format!("{month:?} is out of range")))
}

pub fn parse_day(day: &str) -> Result<NaiveDate, QueryError> {
    NaiveDate::parse_from_str(day, "%Y-%m-%d")
        .ok()
        .filter(|_| day.len() == 10)
        .ok_or_else(|| QueryError::Invalid(format!("{day:?} is not a day (YYYY-MM-DD)")))
}

/// Today in `timezone` (an IANA name; UTC if it is not one).
pub fn today_in(timezone: &str) -> NaiveDate {
    let now = chrono::Utc::now();
    match timezone.parse::<chrono_tz::Tz>() {
        Ok(tz) => now.with_timezone(&tz).date_naive(),
        Err(_) => now.date_naive(),
    }
}

pub fn month_of(day: NaiveDate) -> String {
    day.format("%Y-%m").to_string()
}

/// The month `back` months before `month`.
pub fn shift(month: &str, back: u32) -> Option<String> {
    month_start(month)
        .ok()?
        .checked_sub_months(Months::new(back))
        .map(month_of)
}

/// The month after `month`.
pub fn next(month: &str) -> Option<String> {
    month_start(month)
        .ok()?
        .checked_add_months(Months::new(1))
        .map(month_of)
}

/// The months from `from` to `to`, both included.
pub fn months(from: &str, to: &str) -> Result<Vec<String>, QueryError> {
    let (mut month, last) = (month_start(from)?, month_start(to)?);
    let mut out = Vec::new();
    while month <= last {
        out.push(month_of(month));
        month = month
            .checked_add_months(Months::new(1))
            .ok_or_else(|| QueryError::Invalid("month out of range".into()))?;
    }
    Ok(out)
}

/// Months between two months, counted as in a calendar (2024-01 to 2024-03: 2).
pub fn months_apart(from: &str, to: &str) -> Result<i64, QueryError> {
    use chrono::Datelike as _;
    let (a, b) = (month_start(from)?, month_start(to)?);
    Ok(i64::from(b.year() - a.year()) * 12 + i64::from(b.month()) - i64::from(a.month()))
}

/// The relative change from `before` to `now`, when both are shown and `before` is not 0.
pub fn change(now: Option<f64>, before: Option<f64>) -> Option<f64> {
    match (now, before) {
        (Some(now), Some(before)) if before != 0.0 => Some((now - before) / before),
        _ => None,
    }
}

/// The UTC dates a query reads, a day wider on each side than the local periods it shows
/// (time zones): the tables are partitioned by UTC date, so the rest is never opened.
#[derive(Clone, Copy, Debug)]
pub struct DateRange {
    pub from: Option<NaiveDate>,
    pub to: NaiveDate,
}

impl DateRange {
    pub fn predicate(&self, column: &str) -> String {
        let mut predicate = format!(" AND {column} <= DATE '{}'", self.to + Days::new(1));
        if let Some(from) = self.from {
            predicate.push_str(&format!(" AND {column} >= DATE '{}'", from - Days::new(1)));
        }
        predicate
    }

    /// The local dates of one month.
    pub fn month(month: &str) -> Result<DateRange, QueryError> {
        Ok(DateRange {
            from: Some(month_start(month)?),
            to: month_end(month)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_and_days() {
        assert_eq!(
            months("2023-11", "2024-02").unwrap(),
            ["2023-11", "2023-12", "2024-01", "2024-02"]
        );
        assert_eq!(months_apart("2023-11", "2024-02").unwrap(), 3);
        assert_eq!(shift("2024-01", 12).as_deref(), Some("2023-01"));
        assert_eq!(next("2024-12").as_deref(), Some("2025-01"));
        assert_eq!(month_end("2024-02").unwrap().to_string(), "2024-02-29");
        for bad in ["2024-13", "2024-1", "24-01", "2024-01-01", ""] {
            assert!(month_start(bad).is_err(), "{bad}");
        }
        assert!(parse_day("2024-02-30").is_err());
        assert!(parse_day("2024-2-3").is_err());
        assert_eq!(change(Some(3.0), Some(2.0)), Some(0.5));
        assert_eq!(change(Some(3.0), Some(0.0)), None);
        assert_eq!(change(None, Some(2.0)), None);
    }
}
