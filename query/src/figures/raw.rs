//! Tallies counted from the raw tables (the session's `events`, `visits`, `accounts` and
//! `rooms` views): the request's filters become row conditions, and each source is one scan
//! of the date partitions of the period (and the year before it, for the year-over-year
//! change). Exact at any moment, and the reference the rollups are tested against; slow on a
//! large lake, where the rollups answer instead.

use datafusion::prelude::SessionContext;

use super::definitions::{ACCOUNT_CHANGES, Dim, DimSet, Source};
use super::grouping::{self, Grain, GroupingSet, Scan, quote};
use super::periods::{DateRange, month_end, month_start, months, parse_day};
use super::request::{FigureRequest, Granularity};
use super::tally::{Base, Cells, Tallies, request_cells};
use crate::error::QueryError;

/// The request's filters as row conditions, for the dimensions a source has (`prefix`: a
/// table alias with its dot, or nothing).
fn conditions(request: &FigureRequest, dims: &[Dim], prefix: &str) -> Vec<String> {
    dims.iter()
        .filter_map(|dim| {
            request
                .filters
                .value(*dim)
                .map(|value| format!("{prefix}{} = {}", dim.name(), quote(value)))
        })
        .collect()
}

/// The sets a request shows: the total, each breakdown alone, and (monthly) the days.
fn request_sets(request: &FigureRequest, dims: &[Dim], daily: bool) -> Vec<GroupingSet> {
    let mut sets = vec![GroupingSet {
        grain: Grain::Period,
        dims: DimSet::NONE,
    }];
    sets.extend(
        dims.iter()
            .filter(|d| request.shows_breakdown(**d))
            .map(|d| GroupingSet {
                grain: Grain::Period,
                dims: DimSet::NONE.with(*d),
            }),
    );
    if daily {
        sets.push(GroupingSet {
            grain: Grain::Day,
            dims: DimSet::NONE,
        });
    }
    sets
}

/// Everything `request` needs, counted from the raw tables of `ctx`.
pub async fn tallies(
    ctx: &SessionContext,
    request: &FigureRequest,
    timezone: &str,
) -> Result<Tallies, QueryError> {
    let monthly = request.granularity == Granularity::Month;
    let first = request.first_period()?;
    let (format, range) = match request.granularity {
        Granularity::Month => (
            "%Y-%m",
            DateRange {
                from: Some(month_start(&first)?),
                to: month_end(&request.to)?,
            },
        ),
        Granularity::Day => (
            "%Y-%m-%d",
            DateRange {
                from: Some(parse_day(&request.from)?),
                to: parse_day(&request.to)?,
            },
        ),
    };
    let shown = request.shown();
    let mut out = Tallies::default();
    for source in Source::ALL {
        let figures: Vec<_> = shown
            .iter()
            .copied()
            .filter(|f| f.source == source)
            .collect();
        if figures.is_empty() {
            continue;
        }
        let scan = Scan {
            figures: &figures,
            timezone,
            conditions: conditions(request, source.dims(), ""),
            range: Some(range),
            period_format: format,
            sets: request_sets(request, source.dims(), monthly),
        };
        let rows = grouping::grouped(ctx, &scan).await?;
        for (i, figure) in figures.iter().enumerate() {
            let tallies = request_cells(
                &rows,
                i,
                &Base::UNFILTERED,
                &request.breakdowns,
                source.dims(),
            );
            out.figures.push((figure, tallies));
        }
    }
    // Back in the order of `FIGURES`.
    out.figures
        .sort_by_key(|(f, _)| shown.iter().position(|s| s.name == f.name));
    if request.shows_special("total_active_accounts") {
        out.account_changes = Some(account_changes(ctx, request, timezone).await?);
    }
    if request.shows_special("r30_users") {
        let cells = r30(ctx, request, &first).await?;
        out.monthly_users.insert("r30_users", cells);
    }
    if grouping::CLIENT_MOVES
        .iter()
        .any(|name| request.shows_special(name))
    {
        for (name, cells) in client_moves(ctx, request, &first).await? {
            if request.shows_special(name) {
                out.monthly_users.insert(name, cells);
            }
        }
    }
    Ok(out)
}

/// Net changes of regular accounts per month over all history up to `to`.
async fn account_changes(
    ctx: &SessionContext,
    request: &FigureRequest,
    timezone: &str,
) -> Result<Cells, QueryError> {
    let dims = ACCOUNT_CHANGES.source.dims();
    let scan = Scan {
        figures: &[&ACCOUNT_CHANGES],
        timezone,
        conditions: conditions(request, dims, ""),
        range: Some(DateRange {
            from: None,
            to: month_end(&request.to)?,
        }),
        period_format: "%Y-%m",
        sets: request_sets(request, dims, false),
    };
    let rows = grouping::grouped(ctx, &scan).await?;
    Ok(request_cells(&rows, 0, &Base::UNFILTERED, &request.breakdowns, dims).cells)
}

/// The client moves of each month from `first` to `to`.
async fn client_moves(
    ctx: &SessionContext,
    request: &FigureRequest,
    first: &str,
) -> Result<Vec<(&'static str, Cells)>, QueryError> {
    let spans = months(first, &request.to)?
        .into_iter()
        .map(|month| {
            let (start, end) = (month_start(&month)?, month_end(&month)?);
            Ok((month, start, end))
        })
        .collect::<Result<Vec<_>, QueryError>>()?;
    let dims = [Dim::Server, Dim::Domain];
    let sets: Vec<DimSet> = request_sets(request, &dims, false)
        .into_iter()
        .map(|s| s.dims)
        .collect();
    let rows =
        grouping::client_moves(ctx, &spans, &conditions(request, &dims, "v."), &sets).await?;
    Ok(grouping::CLIENT_MOVES
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let cells =
                request_cells(&rows, i, &Base::UNFILTERED, &request.breakdowns, &dims).cells;
            (*name, cells)
        })
        .collect())
}

/// r30 at the end of each month from `first` to `to`.
async fn r30(
    ctx: &SessionContext,
    request: &FigureRequest,
    first: &str,
) -> Result<Cells, QueryError> {
    let ends = months(first, &request.to)?
        .into_iter()
        .map(|month| {
            let end = month_end(&month)?;
            Ok((month, end))
        })
        .collect::<Result<Vec<_>, QueryError>>()?;
    let dims = [Dim::Server, Dim::Domain];
    let sets: Vec<DimSet> = request_sets(request, &dims, false)
        .into_iter()
        .map(|s| s.dims)
        .collect();
    let rows = grouping::r30(ctx, &ends, &conditions(request, &dims, "v."), &sets).await?;
    Ok(request_cells(&rows, 0, &Base::UNFILTERED, &request.breakdowns, &dims).cells)
}
