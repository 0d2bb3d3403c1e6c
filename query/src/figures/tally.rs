//! What a request's cells are built from, whichever way they were counted: per figure, a tally
//! (value, distinct users) for each period and breakdown key, and the daily totals the peak
//! days come from. The raw path and the rollup path both produce `Tallies`; `publish` turns
//! them into the answer, so both answers go through the same suppression, changes and peaks.

use std::collections::BTreeMap;

use super::definitions::{Dim, DimKeys, DimSet, Figure};
use super::grouping::{Grain, GroupRow, Tally};
use super::request::Filters;

/// (period, breakdown, key) -> tally; breakdown is `total` or a dimension's name.
pub type Cells = BTreeMap<(String, &'static str, Option<String>), Tally>;

/// One grouped figure's tallies.
#[derive(Debug, Default, PartialEq)]
pub struct FigureTallies {
    pub cells: Cells,
    /// Day -> the total of that day (monthly requests: for the peak days).
    pub daily: BTreeMap<String, Tally>,
}

/// Everything a request's answer is built from.
#[derive(Debug, Default)]
pub struct Tallies {
    pub figures: Vec<(&'static Figure, FigureTallies)>,
    /// The monthly counts of users over a window reaching before the month (`r30_users`,
    /// the client moves: `definitions::MONTHLY_USER_FIGURES`), those the request shows.
    pub monthly_users: BTreeMap<&'static str, Cells>,
    /// Net change of regular accounts per month, over all history up to `to`.
    pub account_changes: Option<Cells>,
}

impl Tallies {
    /// The tallies of a request nobody is behind (a scoped principal asking for another
    /// server): every figure shown, no cell, as a count over no row gives.
    pub fn nobody(request: &super::request::FigureRequest) -> Tallies {
        Tallies {
            figures: request
                .shown()
                .into_iter()
                .map(|f| (f, FigureTallies::default()))
                .collect(),
            monthly_users: super::definitions::MONTHLY_USER_FIGURES
                .into_iter()
                .filter(|name| request.shows_special(name))
                .map(|name| (name, Cells::new()))
                .collect(),
            account_changes: request
                .shows_special("total_active_accounts")
                .then(Cells::new),
        }
    }
}

/// Where a request's cells sit among grouped rows: the rows grouped by the filtered
/// dimensions with the filters' values (the rollups' cube), or by nothing (the raw path,
/// whose filters were applied to the rows before grouping).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Base {
    pub dims: DimSet,
    pub keys: DimKeys,
}

impl Base {
    pub const UNFILTERED: Base = Base {
        dims: DimSet::NONE,
        keys: [None, None, None, None],
    };

    /// The cube coordinates of `filters`, among `dims`.
    pub fn of_filters(filters: &Filters, dims: &[Dim]) -> Base {
        let mut keys: DimKeys = Default::default();
        for dim in dims {
            keys[dim.index()] = filters.value(*dim).map(str::to_owned);
        }
        Base {
            dims: filters.dims(dims),
            keys,
        }
    }

    fn matches(&self, dims: DimSet, keys: &DimKeys) -> bool {
        self.dims
            .dims()
            .all(|d| dims.contains(d) && keys[d.index()] == self.keys[d.index()])
    }
}

/// The cells a request shows, out of the grouped rows of one figure (`i`th tally of each
/// row): the total is the row grouped by exactly `base`; breakdown `d` the rows grouped by
/// `base` and `d` (or, when `d` is itself filtered, the total under the filter's key).
pub fn request_cells(
    rows: &[GroupRow],
    i: usize,
    base: &Base,
    breakdowns: &[Dim],
    source_dims: &[Dim],
) -> FigureTallies {
    let mut out = FigureTallies::default();
    for row in rows {
        let Some(tally) = row.tallies.get(i).copied().flatten() else {
            continue;
        };
        if !base.matches(row.dims, &row.keys) {
            continue;
        }
        let extra = DimSet(row.dims.0 & !base.dims.0);
        match row.grain {
            Grain::Day => {
                if extra == DimSet::NONE {
                    out.daily.insert(row.period.clone(), tally);
                }
            }
            Grain::Period => {
                if extra == DimSet::NONE {
                    out.cells.insert((row.period.clone(), "total", None), tally);
                    // A breakdown by a filtered dimension has the filter's key only.
                    for dim in base.dims.dims() {
                        if breakdowns.contains(&dim) && source_dims.contains(&dim) {
                            let key = base.keys[dim.index()].clone();
                            out.cells
                                .insert((row.period.clone(), dim.name(), key), tally);
                        }
                    }
                    continue;
                }
                let mut added = extra.dims();
                if let (Some(dim), None) = (added.next(), added.next())
                    && breakdowns.contains(&dim)
                {
                    let key = row.keys[dim.index()].clone();
                    out.cells
                        .insert((row.period.clone(), dim.name(), key), tally);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(grain: Grain, period: &str, dims: &[(Dim, &str)], value: f64) -> GroupRow {
        let mut keys: DimKeys = Default::default();
        let mut set = DimSet::NONE;
        for (dim, key) in dims {
            set = set.with(*dim);
            keys[dim.index()] = Some((*key).to_owned());
        }
        GroupRow {
            grain,
            period: period.into(),
            dims: set,
            keys,
            tallies: vec![Some(Tally {
                value,
                users: 5,
                key: 0,
            })],
        }
    }

    fn check(base: Base, expected: &[(&str, Option<&str>, f64)], expected_daily: &[f64]) {
        use Dim::*;
        let rows = vec![
            row(Grain::Period, "m", &[], 10.0),
            row(Grain::Period, "m", &[(Server, "a")], 6.0),
            row(Grain::Period, "m", &[(Server, "b")], 4.0),
            row(Grain::Period, "m", &[(Domain, "x")], 7.0),
            row(Grain::Period, "m", &[(Server, "a"), (Domain, "x")], 5.0),
            row(Grain::Period, "m", &[(Server, "b"), (Domain, "x")], 2.0),
            row(Grain::Period, "m", &[(Server, "a"), (Domain, "y")], 1.0),
            row(Grain::Day, "d1", &[], 3.0),
            row(Grain::Day, "d1", &[(Server, "a")], 2.0),
        ];
        let got = request_cells(
            &rows,
            0,
            &base,
            &[Server, Domain, Platform],
            &[Server, Domain],
        );
        let cells: Vec<(&str, Option<&str>, f64)> = got
            .cells
            .iter()
            .map(|((_, b, k), t)| (*b, k.as_deref(), t.value))
            .collect();
        assert_eq!(cells, expected);
        let daily: Vec<f64> = got.daily.values().map(|t| t.value).collect();
        assert_eq!(daily, expected_daily);
    }

    #[test]
    fn cells_of_a_request_out_of_the_cube() {
        check(
            Base::UNFILTERED,
            &[
                ("domain", Some("x"), 7.0),
                ("server", Some("a"), 6.0),
                ("server", Some("b"), 4.0),
                ("total", None, 10.0),
            ],
            &[3.0],
        );
        let server_a = Base::of_filters(
            &Filters {
                server: Some("a".into()),
                ..Default::default()
            },
            &[Dim::Server, Dim::Domain],
        );
        check(
            server_a,
            &[
                ("domain", Some("x"), 5.0),
                ("domain", Some("y"), 1.0),
                ("server", Some("a"), 6.0),
                ("total", None, 6.0),
            ],
            &[2.0],
        );
    }
}
