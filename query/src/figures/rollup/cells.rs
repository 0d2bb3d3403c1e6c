//! One local month of `figure_cells`, counted from the raw tables with the figures' own
//! definitions: for each source, one scan of the month's date partitions grouped by every
//! combination of its breakdowns, by month and by day; `account_changes` by month; r30 at the
//! month's end. The session must hold `events`, `visits`, `accounts` (raw) and `rooms` (the
//! rollup's, `super::rooms_view_sql`).

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray,
};
use datafusion::prelude::SessionContext;

use super::super::definitions::{ACCOUNT_CHANGES, DIM_COUNT, Dim, DimSet, FIGURES, Figure, Source};
use super::super::grouping::{self, Grain, GroupRow, GroupingSet, Scan, quote};
use super::super::periods::{DateRange, month_end, month_start};
use super::{GRAIN_DAY, GRAIN_MONTH, MONTH_COLUMN, R30_FIGURE, cells_schema};
use crate::error::QueryError;

/// Every grouping set of a source's cube, by month and by day (`by_day`).
fn cube(source: Source, by_day: bool) -> Vec<GroupingSet> {
    let grains: &[Grain] = if by_day {
        &[Grain::Period, Grain::Day]
    } else {
        &[Grain::Period]
    };
    grains
        .iter()
        .flat_map(|grain| {
            DimSet::subsets(source.dims())
                .into_iter()
                .map(|dims| GroupingSet {
                    grain: *grain,
                    dims,
                })
        })
        .collect()
}

/// Rows of the cells table, gathered column by column.
#[derive(Default)]
struct CellColumns {
    grain: Vec<&'static str>,
    period: Vec<String>,
    figure: Vec<&'static str>,
    dims: Vec<i32>,
    keys: [Vec<Option<String>>; DIM_COUNT],
    value: Vec<f64>,
    users: Vec<i64>,
    key: Vec<i64>,
}

impl CellColumns {
    fn add(&mut self, rows: Vec<GroupRow>, figures: &[&'static str]) {
        for row in rows {
            for (figure, tally) in figures.iter().zip(&row.tallies) {
                let Some(tally) = tally else { continue };
                self.grain.push(match row.grain {
                    Grain::Period => GRAIN_MONTH,
                    Grain::Day => GRAIN_DAY,
                });
                self.period.push(row.period.clone());
                self.figure.push(figure);
                self.dims.push(i32::from(row.dims.0));
                for dim in Dim::ALL {
                    self.keys[dim.index()].push(row.keys[dim.index()].clone());
                }
                self.value.push(tally.value);
                self.users.push(tally.users);
                self.key.push(tally.key);
            }
        }
    }

    fn batch(self, month: &str) -> Result<RecordBatch, QueryError> {
        let n = self.grain.len();
        let [server, domain, platform, family] = self.keys;
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter_values(std::iter::repeat_n(month, n))),
            Arc::new(StringArray::from_iter_values(self.grain)),
            Arc::new(StringArray::from_iter_values(self.period)),
            Arc::new(StringArray::from_iter_values(self.figure)),
            Arc::new(Int32Array::from(self.dims)),
            Arc::new(StringArray::from(server)),
            Arc::new(StringArray::from(domain)),
            Arc::new(StringArray::from(platform)),
            Arc::new(Float64Array::from(self.value)),
            Arc::new(Int64Array::from(self.users)),
            Arc::new(Int64Array::from(self.key)),
            Arc::new(StringArray::from(family)),
        ];
        Ok(RecordBatch::try_new(cells_schema(), columns)?)
    }
}

/// The cells of local month `month` (`YYYY-MM`), as one batch of the cells table; without
/// `with_r30`, all but the monthly user figures, r30 and the client moves (whose windows
/// reach raw days that were purged).
pub async fn month_cells(
    ctx: &SessionContext,
    month: &str,
    timezone: &str,
    with_r30: bool,
) -> Result<RecordBatch, QueryError> {
    let range = DateRange::month(month)?;
    let mut out = CellColumns::default();
    let mut scans: Vec<(Vec<&'static Figure>, bool)> = Source::ALL
        .iter()
        .map(|source| {
            let figures: Vec<&'static Figure> =
                FIGURES.iter().filter(|f| f.source == *source).collect();
            (figures, true)
        })
        .collect();
    scans.push((vec![&ACCOUNT_CHANGES], false));
    for (figures, by_day) in scans {
        let Some(source) = figures.first().map(|f| f.source) else {
            continue;
        };
        let mut conditions = vec![format!(
            "to_char({}, '%Y-%m') = {}",
            source.time(timezone),
            quote(month)
        )];
        if source == Source::Rooms {
            // The rollup's rooms are partitioned by month of creation.
            conditions.push(format!("{MONTH_COLUMN} = {}", quote(month)));
        }
        let scan = Scan {
            figures: &figures,
            timezone,
            conditions,
            range: Some(range),
            period_format: "%Y-%m",
            sets: cube(source, by_day),
        };
        let rows = grouping::grouped(ctx, &scan).await?;
        let names: Vec<&'static str> = figures.iter().map(|f| f.name).collect();
        out.add(rows, &names);
    }
    if with_r30 {
        let r30_sets = DimSet::subsets(&[Dim::Server, Dim::Domain]);
        let rows = grouping::r30(
            ctx,
            &[(month.to_owned(), month_end(month)?)],
            &[],
            &r30_sets,
        )
        .await?;
        out.add(rows, &[R30_FIGURE]);
        let start = month_start(month)?;
        let rows = grouping::client_moves(
            ctx,
            &[(month.to_owned(), start, month_end(month)?)],
            &[],
            &r30_sets,
        )
        .await?;
        out.add(rows, &grouping::CLIENT_MOVES);
    }
    out.batch(month)
}
