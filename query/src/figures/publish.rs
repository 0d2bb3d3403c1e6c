//! From tallies to the published cells (docs/design.md §4): every count through the cell key
//! rule (`disclosure`), so that a cell has one published value whatever request shows it;
//! month-over-month and year-over-year changes between published values only; the peak day
//! of each month among the published daily values; the running totals of
//! `total_active_accounts`, whose cell key is the running sum of the accounts' keys.
//!
//! A cell nobody is behind is withheld like a small one, and every period and breakdown key
//! of a request is answered, present or not: an absent cell would tell "nobody" from "one or
//! two people".
//!
//! Every loop here yields to the runtime now and then: a request cut by its time limit stops
//! at the next yield instead of finishing a long synchronous loop on the query threads.

use std::collections::{BTreeMap, BTreeSet};

use super::FigureCell;
use super::definitions::Dim;
use super::disclosure::CellKeyRule;
use super::grouping::Tally;
use super::periods::{change, months, parse_day, shift};
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

/// The key standing for a breakdown's withheld domains: their names are not shown (a
/// one-person domain would name its person), only one withheld cell for all of them.
pub const SMALL_DOMAINS: &str = "*";

/// The periods a request shows: its months, or its days.
fn shown_periods(request: &FigureRequest) -> Result<Vec<String>, QueryError> {
    match request.granularity {
        Granularity::Month => months(&request.from, &request.to),
        Granularity::Day => {
            let (from, to) = (parse_day(&request.from)?, parse_day(&request.to)?);
            Ok(from
                .iter_days()
                .take_while(|d| *d <= to)
                .map(|d| d.format("%Y-%m-%d").to_string())
                .collect())
        }
    }
}

/// The keys of each breakdown that any figure of the request has in its periods: every one of
/// them is answered for every figure, withheld where the figure has no or few people.
fn breakdown_keys<'a>(
    cells: impl Iterator<Item = &'a Cells>,
) -> BTreeMap<&'static str, BTreeSet<String>> {
    let mut keys: BTreeMap<&'static str, BTreeSet<String>> = BTreeMap::new();
    for cells in cells {
        for (_, breakdown, key) in cells.keys() {
            if let Some(key) = key {
                keys.entry(breakdown).or_default().insert(key.clone());
            }
        }
    }
    keys
}

/// One figure's cells for the shown periods, in total and by each breakdown asked.
struct Series<'a> {
    name: &'static str,
    cells: &'a Cells,
    dims: Vec<Dim>,
}

/// What every series of a request is published with.
struct Shown<'a> {
    periods: Vec<String>,
    monthly: bool,
    /// The keys of each breakdown (`breakdown_keys`).
    keys: BTreeMap<&'static str, BTreeSet<String>>,
    rule: &'a CellKeyRule,
}

/// Writes the cells of `series` into `out`: its published values, their changes (monthly)
/// and the peak days of `peaks`.
async fn publish_series(
    shown: &Shown<'_>,
    series: &Series<'_>,
    peaks: &BTreeMap<String, (String, f64)>,
    budget: &mut Budget,
    out: &mut Vec<FigureCell>,
) {
    let Shown {
        periods,
        monthly,
        keys,
        rule,
    } = shown;
    let monthly = *monthly;
    let published = |period: &str, breakdown: &'static str, key: &Option<String>| {
        rule.published(
            series
                .cells
                .get(&(period.to_owned(), breakdown, key.clone())),
        )
    };
    let no_keys = BTreeSet::new();
    for period in periods {
        let mut coordinates: Vec<(&'static str, Option<String>)> = vec![("total", None)];
        for dim in &series.dims {
            let of_dim = keys.get(dim.name()).unwrap_or(&no_keys);
            coordinates.extend(of_dim.iter().map(|k| (dim.name(), Some(k.clone()))));
        }
        let mut small_domains = false;
        for (breakdown, key) in coordinates {
            budget.step().await;
            let value = published(period, breakdown, &key);
            if value.is_none() && breakdown == Dim::Domain.name() {
                small_domains = true;
                continue;
            }
            let (mom, yoy) = if monthly {
                (
                    shift(period, 1).and_then(|p| change(value, published(&p, breakdown, &key))),
                    shift(period, 12).and_then(|p| change(value, published(&p, breakdown, &key))),
                )
            } else {
                (None, None)
            };
            let peak = (breakdown == "total" && value.is_some())
                .then(|| peaks.get(period))
                .flatten();
            out.push(FigureCell {
                figure: series.name,
                period: period.clone(),
                breakdown,
                key,
                value,
                suppressed: value.is_none(),
                mom,
                yoy,
                peak_day: peak.map(|(day, _)| day.clone()),
                peak_value: peak.map(|(_, value)| *value),
            });
        }
        if small_domains || series.dims.contains(&Dim::Domain) {
            out.push(FigureCell {
                figure: series.name,
                period: period.clone(),
                breakdown: Dim::Domain.name(),
                key: Some(SMALL_DOMAINS.to_owned()),
                value: None,
                suppressed: true,
                mom: None,
                yoy: None,
                peak_day: None,
                peak_value: None,
            });
        }
    }
}

/// The cells of `request` out of `tallies`, every count published through `rule`.
/// `tallies` may hold more than the request shows (the months before, for the changes).
pub async fn cells(
    request: &FigureRequest,
    tallies: Tallies,
    rule: &CellKeyRule,
) -> Result<Vec<FigureCell>, QueryError> {
    let monthly = request.granularity == Granularity::Month;
    let mut budget = Budget::new();
    let mut out = Vec::new();
    let shown = Shown {
        periods: shown_periods(request)?,
        monthly,
        keys: breakdown_keys(
            tallies
                .figures
                .iter()
                .map(|(_, t)| &t.cells)
                .chain(tallies.account_changes.iter())
                .chain(tallies.monthly_users.values()),
        ),
        rule,
    };
    for (figure, figure_tallies) in &tallies.figures {
        if !request.wants(figure.name) {
            continue;
        }
        // Peak days of the totals, among the published daily values (the first day wins a
        // tie): a withheld day is never a peak.
        let mut peaks: BTreeMap<String, (String, f64)> = BTreeMap::new();
        if monthly {
            for (day, tally) in &figure_tallies.daily {
                budget.step().await;
                let (Some(value), Some(month)) = (rule.publish(tally), day.get(..7)) else {
                    continue;
                };
                let entry = peaks
                    .entry(month.to_owned())
                    .or_insert((day.clone(), value));
                if value > entry.1 {
                    *entry = (day.clone(), value);
                }
            }
        }
        let series = Series {
            name: figure.name,
            cells: &figure_tallies.cells,
            dims: breakdowns_of(request, figure.source.dims()),
        };
        publish_series(&shown, &series, &peaks, &mut budget, &mut out).await;
    }
    let no_peaks = BTreeMap::new();
    if let Some(changes) = tallies.account_changes
        && request.shows_special("total_active_accounts")
    {
        let open = open_accounts(&request.to, &changes, &mut budget).await?;
        let series = Series {
            name: "total_active_accounts",
            cells: &open,
            dims: breakdowns_of(request, &[Dim::Server, Dim::Domain]),
        };
        publish_series(&shown, &series, &no_peaks, &mut budget, &mut out).await;
    }
    for (name, cells) in &tallies.monthly_users {
        if !request.shows_special(name) {
            continue;
        }
        let series = Series {
            name,
            cells,
            dims: breakdowns_of(request, &[Dim::Server, Dim::Domain]),
        };
        publish_series(&shown, &series, &no_peaks, &mut budget, &mut out).await;
    }
    Ok(out)
}

/// The breakdowns of `request` that a figure of these dimensions has.
fn breakdowns_of(request: &FigureRequest, dims: &[Dim]) -> Vec<Dim> {
    dims.iter()
        .copied()
        .filter(|d| request.shows_breakdown(*d))
        .collect()
}

/// Regular accounts open at the end of each month up to `to`: the running sum of the monthly
/// net changes (in total, by server, by domain). The people behind a month's cell are the
/// accounts open, so its users are its value and its key the running sum of the changes'
/// keys: the key of exactly the accounts open (docs/design.md §4).
async fn open_accounts(
    to: &str,
    changes: &Cells,
    budget: &mut Budget,
) -> Result<Cells, QueryError> {
    let mut series: BTreeMap<(&'static str, Option<String>), BTreeMap<String, Tally>> =
        BTreeMap::new();
    for ((month, breakdown, key), tally) in changes {
        budget.step().await;
        if month.as_str() <= to {
            series
                .entry((breakdown, key.clone()))
                .or_default()
                .insert(month.clone(), *tally);
        }
    }
    let Some(start) = series
        .values()
        .filter_map(|d| d.keys().next())
        .min()
        .cloned()
    else {
        return Ok(Cells::new());
    };
    let mut open = Cells::new();
    for ((breakdown, key), deltas) in &series {
        let (mut value, mut cell_key) = (0.0, 0i64);
        for month in months(&start, to)? {
            budget.step().await;
            if let Some(delta) = deltas.get(&month) {
                value += delta.value;
                cell_key = cell_key.wrapping_add(delta.key);
            }
            open.insert(
                (month, breakdown, key.clone()),
                Tally {
                    value,
                    users: value as i64,
                    key: cell_key,
                },
            );
        }
    }
    Ok(open)
}
