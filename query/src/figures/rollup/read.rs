//! A request answered from the rollups: the cells of its periods, at the cube coordinates of
//! its filters, looked up in the `CellIndex` of `figure_cells`, and the forums from the
//! index's list. The same `Tallies` as the raw path, so the same publication follows.

use super::super::ForumRank;
use super::super::definitions::{ACCOUNT_CHANGES, Dim, Figure, MONTHLY_USER_FIGURES, Source};
use super::super::grouping::{Grain, GroupRow};
use super::super::request::{FigureRequest, Granularity};
use super::super::tally::{Base, Tallies, request_cells};
use super::index::CellIndex;
use crate::error::QueryError;

/// The cells of `figure` at `base` and at `base` with one breakdown more, by `grain`, over
/// periods `first..=last`.
fn cells_around(
    index: &CellIndex,
    figure: &str,
    base: &Base,
    breakdowns: &[Dim],
    dims: &[Dim],
    grain: Grain,
    periods: (&str, &str),
) -> Vec<GroupRow> {
    let mut rows = index.rows(figure, base.dims, grain, periods, &base.keys);
    for dim in dims {
        if breakdowns.contains(dim) && !base.dims.contains(*dim) {
            rows.extend(index.rows(figure, base.dims.with(*dim), grain, periods, &base.keys));
        }
    }
    rows
}

/// The last day of a month, or the day itself.
fn last_day(period: &str) -> Result<String, QueryError> {
    if period.len() == 7 {
        Ok(super::super::periods::month_end(period)?.to_string())
    } else {
        Ok(period.to_owned())
    }
}

/// Everything `request` needs, from the rollups; `scope` is a server the principal is
/// limited to.
pub fn tallies(
    index: &CellIndex,
    request: &FigureRequest,
    scope: Option<&str>,
) -> Result<Tallies, QueryError> {
    let mut filters = request.filters.clone();
    if let Some(server) = scope {
        match &filters.server {
            // Another server than its own: nothing to see, as the raw path would find no row.
            Some(asked) if asked != server => return Ok(Tallies::nobody(request)),
            _ => filters.server = Some(server.to_owned()),
        }
    }
    let first = request.first_period()?;
    let monthly = request.granularity == Granularity::Month;
    let shown = request.shown();
    let mut out = Tallies::default();
    for source in Source::ALL {
        let figures: Vec<&'static Figure> = shown
            .iter()
            .copied()
            .filter(|f| f.source == source)
            .collect();
        let base = Base::of_filters(&filters, source.dims());
        for figure in figures {
            // A daily request's periods are the cells by day.
            let grain = if monthly { Grain::Period } else { Grain::Day };
            let mut rows = cells_around(
                index,
                figure.name,
                &base,
                &request.breakdowns,
                source.dims(),
                grain,
                (&first, &request.to),
            );
            if !monthly {
                for row in &mut rows {
                    row.grain = Grain::Period;
                }
            } else {
                // The daily totals of the months shown, for the peak days.
                let (from, to) = (format!("{}-01", request.from), last_day(&request.to)?);
                rows.extend(index.rows(
                    figure.name,
                    base.dims,
                    Grain::Day,
                    (&from, &to),
                    &base.keys,
                ));
            }
            out.figures.push((
                figure,
                request_cells(&rows, 0, &base, &request.breakdowns, source.dims()),
            ));
        }
    }
    out.figures
        .sort_by_key(|(f, _)| shown.iter().position(|s| s.name == f.name));
    let special_dims = [Dim::Server, Dim::Domain];
    let base = Base::of_filters(&filters, &special_dims);
    if request.shows_special("total_active_accounts") {
        // Every month up to `to`: the totals are running sums over all history.
        let rows = cells_around(
            index,
            ACCOUNT_CHANGES.name,
            &base,
            &request.breakdowns,
            &special_dims,
            Grain::Period,
            ("", &request.to),
        );
        out.account_changes =
            Some(request_cells(&rows, 0, &base, &request.breakdowns, &special_dims).cells);
    }
    for name in MONTHLY_USER_FIGURES {
        if !request.shows_special(name) {
            continue;
        }
        let rows = cells_around(
            index,
            name,
            &base,
            &request.breakdowns,
            &special_dims,
            Grain::Period,
            (&first, &request.to),
        );
        let cells = request_cells(&rows, 0, &base, &request.breakdowns, &special_dims).cells;
        out.monthly_users.insert(name, cells);
    }
    Ok(out)
}

/// The `limit` forums with the most published members (`forums::ranked`).
pub fn top_forums(
    index: &CellIndex,
    limit: usize,
    rule: &super::super::disclosure::CellKeyRule,
    scope: Option<&str>,
    names: &super::super::forums::DirectoryNames,
) -> Vec<ForumRank> {
    super::super::forums::ranked(index.forums.iter(), limit, rule, scope, names)
}
