//! From tallies to the published cells: small-cell suppression (fewer than k distinct users:
//! no value, `suppressed`), month-over-month and year-over-year changes between shown values
//! only, the peak day of each month, and the running totals of `total_active_accounts`.
//!
//! Every loop here yields to the runtime now and then: a request cut by its time limit stops
//! at the next yield instead of finishing a long synchronous loop on the query threads.

use std::collections::{BTreeMap, BTreeSet};

use super::FigureCell;
use super::periods::{change, months, shift};
use super::protect;
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

/// The key standing for a breakdown's domains hidden as small: their names are not shown
/// (a one-person domain would name its person), only that some are hidden.
pub const SMALL_DOMAINS: &str = "*";

/// The one cell standing for `figure`'s domains hidden as small in `period`: suppressed, and
/// keyed `SMALL_DOMAINS` instead of their names.
fn small_domains_cell(figure: &'static str, period: String) -> FigureCell {
    FigureCell {
        figure,
        period,
        breakdown: "domain",
        key: Some(SMALL_DOMAINS.to_owned()),
        value: None,
        suppressed: true,
        mom: None,
        yoy: None,
        peak_day: None,
        peak_value: None,
    }
}

/// The cells of `request` out of `tallies`, suppressing those from fewer than `k` users and
/// their complements (`protect`). `tallies` may hold more than the request shows (whole
/// months of days, a room kind's family: `FigureRequest::counted`): the suppression is
/// decided on all of it, then only what was asked is shown.
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
    let all: Vec<(&'static str, &Cells)> = tallies
        .figures
        .iter()
        .map(|(figure, t)| (figure.name, &t.cells))
        .collect();
    let hidden = protect::hidden(&all, !monthly, k);
    budget.step().await;
    for (figure, tallies) in &tallies.figures {
        if !request.wants(figure.name) {
            continue;
        }
        let raw = &tallies.cells;
        let is_hidden = |period: &str, breakdown: &'static str, key: &Option<String>| {
            hidden.contains(&(figure.name, period.to_owned(), breakdown, key.clone()))
        };
        let value_of = |period: &str, breakdown: &'static str, key: &Option<String>| {
            raw.get(&(period.to_owned(), breakdown, key.clone()))
                .filter(|_| !is_hidden(period, breakdown, key))
                .map(|t| t.value)
        };
        // Peak days of the totals, from the daily series (the first day wins a tie), among
        // the days a daily request would show.
        let mut peaks: BTreeMap<String, (String, f64)> = BTreeMap::new();
        if monthly {
            let days: Cells = tallies
                .daily
                .iter()
                .map(|(day, t)| ((day.clone(), "total", None), *t))
                .collect();
            let hidden_days = protect::hidden(&[(figure.name, &days)], true, k);
            for (day, tally) in &tallies.daily {
                budget.step().await;
                if hidden_days.contains(&(figure.name, day.clone(), "total", None)) {
                    continue;
                }
                let Some(month) = day.get(..7).map(str::to_owned) else {
                    continue;
                };
                let entry = peaks.entry(month).or_insert((day.clone(), tally.value));
                if tally.value > entry.1 {
                    *entry = (day.clone(), tally.value);
                }
            }
        }
        let mut small_domains: BTreeSet<String> = BTreeSet::new();
        for ((period, breakdown, key), tally) in raw {
            budget.step().await;
            if period.as_str() < first.as_str() || period.as_str() > to || period.as_str() < from {
                continue;
            }
            let suppressed = is_hidden(period, breakdown, key);
            if suppressed && *breakdown == "domain" {
                small_domains.insert(period.clone());
                continue;
            }
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
        out.extend(
            small_domains
                .into_iter()
                .map(|period| small_domains_cell(figure.name, period)),
        );
    }
    if let Some(changes) = tallies.account_changes
        && request.shows_special("total_active_accounts")
    {
        out.extend(total_active_accounts(from, to, &changes, k, &mut budget).await?);
    }
    if let Some(r30) = tallies.r30
        && request.shows_special("r30_users")
    {
        out.extend(r30_users(from, to, &r30, k, &mut budget).await);
    }
    Ok(out)
}

/// Month -> (net change of accounts, users whose account changed).
type MonthlyChanges = BTreeMap<String, (f64, i64)>;

/// Regular accounts open at the end of each month from `from` to `to`: the running sum of
/// the monthly net changes (in total, by server, by domain). Accounts are users: a cell is
/// built from its value of them. A month is shown when it is not small, its difference with
/// the last shown month is not a handful of people (`protect::running_total_shown`), and no
/// single breakdown key can be had by subtraction (`protect`).
async fn total_active_accounts(
    from: &str,
    to: &str,
    changes: &Cells,
    k: i64,
    budget: &mut Budget,
) -> Result<Vec<FigureCell>, QueryError> {
    const NAME: &str = "total_active_accounts";
    let mut series: BTreeMap<(&'static str, Option<String>), MonthlyChanges> = BTreeMap::new();
    for ((month, breakdown, key), tally) in changes {
        budget.step().await;
        if month.as_str() <= to {
            series
                .entry((breakdown, key.clone()))
                .or_default()
                .insert(month.clone(), (tally.value, tally.users));
        }
    }
    // Every month from the first change (the walk decides alike whatever months are shown).
    let Some(start) = series
        .values()
        .filter_map(|d| d.keys().next())
        .min()
        .cloned()
    else {
        return Ok(Vec::new());
    };
    let start = start.min(shift(from, 12).unwrap_or_else(|| from.to_owned()));
    let all_months = months(&start, to)?;
    let shown_months = months(from, to)?;
    let mut values: Cells = BTreeMap::new();
    let mut not_shown: BTreeSet<protect::CellId> = BTreeSet::new();
    for ((breakdown, key), deltas) in &series {
        let mut at_end: BTreeMap<String, f64> = BTreeMap::new();
        let mut total = 0.0;
        for month in &all_months {
            budget.step().await;
            total += deltas.get(month).map(|(d, _)| *d).unwrap_or(0.0);
            at_end.insert(month.clone(), total);
        }
        let shown = protect::running_total_shown(&at_end, deltas, k);
        for (month, value) in at_end {
            if !shown.contains(&month) {
                not_shown.insert((NAME, month.clone(), breakdown, key.clone()));
            }
            values.insert(
                (month, breakdown, key.clone()),
                super::grouping::Tally {
                    value,
                    users: value as i64,
                },
            );
        }
    }
    let hidden = protect::hidden_from(&[(NAME, &values)], false, k, not_shown);
    let shown = |month: &str, breakdown: &'static str, key: &Option<String>| {
        values
            .get(&(month.to_owned(), breakdown, key.clone()))
            .filter(|_| !hidden.contains(&(NAME, month.to_owned(), breakdown, key.clone())))
            .map(|t| t.value)
    };
    let mut cells = Vec::new();
    let mut small_domains = BTreeSet::new();
    for (breakdown, key) in series.keys() {
        for month in &shown_months {
            budget.step().await;
            let value = shown(month, breakdown, key);
            let suppressed = value.is_none();
            if suppressed && *breakdown == "domain" {
                small_domains.insert(month.clone());
                continue;
            }
            cells.push(FigureCell {
                figure: NAME,
                period: month.clone(),
                breakdown,
                key: key.clone(),
                value,
                suppressed,
                mom: change(
                    value,
                    shift(month, 1).and_then(|m| shown(&m, breakdown, key)),
                ),
                yoy: change(
                    value,
                    shift(month, 12).and_then(|m| shown(&m, breakdown, key)),
                ),
                peak_day: None,
                peak_value: None,
            });
        }
    }
    cells.extend(
        small_domains
            .into_iter()
            .map(|period| small_domains_cell(NAME, period)),
    );
    Ok(cells)
}

/// `r30_users` cells from the months' counts, with complementary suppression across the
/// breakdowns.
async fn r30_users(
    from: &str,
    to: &str,
    counts: &Cells,
    k: i64,
    budget: &mut Budget,
) -> Vec<FigureCell> {
    const NAME: &str = "r30_users";
    let users: Cells = counts
        .iter()
        .map(|(id, t)| {
            (
                id.clone(),
                super::grouping::Tally {
                    value: t.users as f64,
                    users: t.users,
                },
            )
        })
        .collect();
    let hidden = protect::hidden(&[(NAME, &users)], false, k);
    budget.step().await;
    let shown = |period: &str, breakdown: &'static str, key: &Option<String>| {
        users
            .get(&(period.to_owned(), breakdown, key.clone()))
            .filter(|_| !hidden.contains(&(NAME, period.to_owned(), breakdown, key.clone())))
            .map(|t| t.value)
    };
    let mut cells = Vec::new();
    let mut small_domains = BTreeSet::new();
    for (period, breakdown, key) in users.keys() {
        budget.step().await;
        if period.as_str() < from || period.as_str() > to {
            continue;
        }
        let value = shown(period, breakdown, key);
        if value.is_none() && *breakdown == "domain" {
            small_domains.insert(period.clone());
            continue;
        }
        cells.push(FigureCell {
            figure: NAME,
            period: period.clone(),
            breakdown,
            key: key.clone(),
            value,
            suppressed: value.is_none(),
            mom: shift(period, 1).and_then(|p| change(value, shown(&p, breakdown, key))),
            yoy: shift(period, 12).and_then(|p| change(value, shown(&p, breakdown, key))),
            peak_day: None,
            peak_value: None,
        });
    }
    cells.extend(
        small_domains
            .into_iter()
            .map(|period| small_domains_cell(NAME, period)),
    );
    cells
}
