//! From tallies to the published cells: small-cell suppression (fewer than k distinct users:
//! no value, `suppressed`), month-over-month and year-over-year changes between shown values
//! only, the peak day of each month, and the running totals of `total_active_accounts`.
//!
//! Every loop here yields to the runtime now and then: a request cut by its time limit stops
//! at the next yield instead of finishing a long synchronous loop on the query threads.

use std::collections::BTreeMap;

use super::FigureCell;
use super::periods::{change, months, shift};
use super::request::{FigureRequest, Granularity};
use super::tally::{Cells, Tallies};
use crate::error::QueryError;

/// Yields to the runtime every so many steps.
pub(crate) struct Budget(u32);

impl Budget {
    pub(crate) fn new() -> Self {
        Budget(0)
    }

    pub(crate) async fn step(&mut self) {
        self.0 += 1;
        if self.0.is_multiple_of(2048) {
            tokio::task::yield_now().await;
        }
    }
}

/// The cells of `request` out of `tallies`, suppressing those from fewer than `k` users.
pub async fn cells(
    request: &FigureRequest,
    tallies: Tallies,
    k: i64,
) -> Result<Vec<FigureCell>, QueryError> {
    let (from, to) = (request.from.as_str(), request.to.as_str());
    let first = request.first_period()?;
    let monthly = request.granularity == Granularity::Month;
    let mut budget = Budget::new();
    let mut out = Vec::new();
    for (figure, tallies) in tallies.figures {
        let raw = tallies.cells;
        let value_of = |period: &str, breakdown: &'static str, key: &Option<String>| {
            raw.get(&(period.to_owned(), breakdown, key.clone()))
                .filter(|t| t.users >= k)
                .map(|t| t.value)
        };
        // Peak days of the totals, from the daily series (the first day wins a tie).
        let mut peaks: BTreeMap<String, (String, f64)> = BTreeMap::new();
        if monthly {
            for (day, tally) in tallies.daily {
                budget.step().await;
                if tally.users < k {
                    continue;
                }
                let Some(month) = day.get(..7).map(str::to_owned) else {
                    continue;
                };
                let entry = peaks.entry(month).or_insert((day.clone(), tally.value));
                if tally.value > entry.1 {
                    *entry = (day, tally.value);
                }
            }
        }
        for ((period, breakdown, key), tally) in &raw {
            budget.step().await;
            if period.as_str() < first.as_str() || period.as_str() > to || period.as_str() < from {
                continue;
            }
            let suppressed = tally.users < k;
            let value = (!suppressed).then_some(tally.value);
            let (mom, yoy) = if monthly {
                (
                    shift(period, 1).and_then(|p| change(value, value_of(&p, breakdown, key))),
                    shift(period, 12).and_then(|p| change(value, value_of(&p, breakdown, key))),
                )
            } else {
                (None, None)
            };
            let peak = (*breakdown == "total" && !suppressed)
                .then(|| peaks.get(period))
                .flatten();
            out.push(FigureCell {
                figure: figure.name,
                period: period.clone(),
                breakdown,
                key: key.clone(),
                value,
                suppressed,
                mom,
                yoy,
                peak_day: peak.map(|(day, _)| day.clone()),
                peak_value: peak.map(|(_, value)| *value),
            });
        }
    }
    if let Some(changes) = tallies.account_changes {
        out.extend(total_active_accounts(from, to, &changes, k, &mut budget).await?);
    }
    if let Some(r30) = tallies.r30 {
        out.extend(r30_users(from, to, &r30, k, &mut budget).await);
    }
    Ok(out)
}

/// Regular accounts open at the end of each month from `from` to `to`: the running sum of
/// the monthly net changes (in total, by server, by domain). Accounts are users: a cell is
/// built from its value of them.
async fn total_active_accounts(
    from: &str,
    to: &str,
    changes: &Cells,
    k: i64,
    budget: &mut Budget,
) -> Result<Vec<FigureCell>, QueryError> {
    let mut series: BTreeMap<(&'static str, Option<String>), BTreeMap<String, f64>> =
        BTreeMap::new();
    for ((month, breakdown, key), tally) in changes {
        budget.step().await;
        if month.as_str() <= to {
            series
                .entry((breakdown, key.clone()))
                .or_default()
                .insert(month.clone(), tally.value);
        }
    }
    // The months shown, and the year before them for the changes.
    let first = shift(from, 12).unwrap_or_else(|| from.to_owned());
    let shown_months = months(from, to)?;
    let all_months = months(&first, to)?;
    let mut cells = Vec::new();
    for ((breakdown, key), deltas) in series {
        // Running sums at each month's end, in one pass.
        let mut at_end: BTreeMap<&str, f64> = BTreeMap::new();
        let before_first: f64 = deltas.range(..first.clone()).map(|(_, d)| d).sum();
        let mut total = before_first;
        for month in &all_months {
            budget.step().await;
            total += deltas.get(month).copied().unwrap_or(0.0);
            at_end.insert(month.as_str(), total);
        }
        let shown = |month: &str| at_end.get(month).copied().filter(|v| (*v as i64) >= k);
        for month in &shown_months {
            budget.step().await;
            let value = at_end.get(month.as_str()).copied().unwrap_or(0.0);
            let suppressed = (value as i64) < k;
            let value = (!suppressed).then_some(value);
            cells.push(FigureCell {
                figure: "total_active_accounts",
                period: month.clone(),
                breakdown,
                key: key.clone(),
                value,
                suppressed,
                mom: change(value, shift(month, 1).and_then(|m| shown(&m))),
                yoy: change(value, shift(month, 12).and_then(|m| shown(&m))),
                peak_day: None,
                peak_value: None,
            });
        }
    }
    Ok(cells)
}

/// `r30_users` cells from the months' counts.
async fn r30_users(
    from: &str,
    to: &str,
    counts: &Cells,
    k: i64,
    budget: &mut Budget,
) -> Vec<FigureCell> {
    let mut series: BTreeMap<(&'static str, Option<String>), BTreeMap<String, i64>> =
        BTreeMap::new();
    for ((period, breakdown, key), tally) in counts {
        budget.step().await;
        series
            .entry((breakdown, key.clone()))
            .or_default()
            .insert(period.clone(), tally.users);
    }
    let mut cells = Vec::new();
    for ((breakdown, key), series) in series {
        let shown = |period: &str| {
            series
                .get(period)
                .copied()
                .filter(|users| *users >= k)
                .map(|u| u as f64)
        };
        for (period, users) in &series {
            budget.step().await;
            if period.as_str() < from || period.as_str() > to {
                continue;
            }
            let value = shown(period);
            cells.push(FigureCell {
                figure: "r30_users",
                period: period.clone(),
                breakdown,
                key: key.clone(),
                value,
                suppressed: *users < k,
                mom: shift(period, 1).and_then(|p| change(value, shown(&p))),
                yoy: shift(period, 12).and_then(|p| change(value, shown(&p))),
                peak_day: None,
                peak_value: None,
            });
        }
    }
    cells
}
