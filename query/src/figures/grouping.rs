//! The one SQL shape every figure is counted with: the figures of one source in one scan, a
//! `GROUPING SETS` query with one `FILTER`ed aggregate (value, distinct users) per figure. The
//! raw path asks for the sets a request shows (total, one breakdown at a time, the days for
//! the peak); the rollup job asks for the whole cube (every combination of breakdowns, by
//! month and by day), from which any request's cells are then read back.

use datafusion::arrow::array::{Array, ArrayRef, AsArray, StringArray};
use datafusion::arrow::datatypes::{DataType, Float64Type, Int64Type};
use datafusion::prelude::SessionContext;

use mxpulse_schemas::ClientFamily;

pub use super::definitions::CLIENT_MOVES;
use super::definitions::{Dim, DimKeys, DimSet, Figure};
use super::periods::DateRange;
use crate::error::QueryError;

/// By period (a month, or a day for daily requests), or by day within the period.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Grain {
    Period,
    Day,
}

/// One grouping set: a grain and the breakdown columns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupingSet {
    pub grain: Grain,
    pub dims: DimSet,
}

/// A value, the distinct users it was built from, and their cell key (the sum of their
/// record keys: `disclosure`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tally {
    pub value: f64,
    pub users: i64,
    pub key: i64,
}

/// One group of a scan: its coordinates and, per figure asked, its tally (`None`: no row of
/// that figure in the group, so no cell, as a query of its own would give).
#[derive(Clone, Debug, PartialEq)]
pub struct GroupRow {
    pub grain: Grain,
    /// The period (`YYYY-MM` or a day), or the day for `Grain::Day`.
    pub period: String,
    pub dims: DimSet,
    /// The value of each grouped dimension, by `Dim::index` (NULL stays `None`).
    pub keys: DimKeys,
    pub tallies: Vec<Option<Tally>>,
}

/// What to count in one scan.
pub struct Scan<'a> {
    pub figures: &'a [&'a Figure],
    pub timezone: &'a str,
    /// Further row conditions (the request's filters, the month of a rollup), ANDed.
    pub conditions: Vec<String>,
    /// The UTC dates read (partition pruning); `None`: all.
    pub range: Option<DateRange>,
    /// `%Y-%m` for months, `%Y-%m-%d` for days.
    pub period_format: &'a str,
    pub sets: Vec<GroupingSet>,
}

pub fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

fn utf8(column: &ArrayRef) -> Result<ArrayRef, QueryError> {
    Ok(datafusion::arrow::compute::cast(column, &DataType::Utf8)?)
}

fn int64(column: &ArrayRef) -> Result<ArrayRef, QueryError> {
    Ok(datafusion::arrow::compute::cast(column, &DataType::Int64)?)
}

fn key_at(keys: &StringArray, row: usize) -> Option<String> {
    (!keys.is_null(row)).then(|| keys.value(row).to_owned())
}

/// Runs one scan: every set of `scan.sets` over the rows of any of `scan.figures`.
pub async fn grouped(ctx: &SessionContext, scan: &Scan<'_>) -> Result<Vec<GroupRow>, QueryError> {
    let Some(source) = scan.figures.first().map(|f| f.source) else {
        return Ok(Vec::new());
    };
    let any_figure: Vec<String> = scan
        .figures
        .iter()
        .map(|f| format!("({})", f.filter))
        .collect();
    let mut filter = format!("({})", any_figure.join(" OR "));
    for condition in &scan.conditions {
        filter.push_str(&format!(" AND ({condition})"));
    }
    if let (Some(column), Some(range)) = (source.partition_column(), scan.range) {
        filter.push_str(&range.predicate(column));
    }
    let user = source.user();
    let aggregates: String = scan
        .figures
        .iter()
        .enumerate()
        .map(|(i, f)| {
            format!(
                ", CAST({value} FILTER (WHERE {filter}) AS DOUBLE) AS value_{i}, \
                 COUNT(DISTINCT {user}) FILTER (WHERE {filter}) AS users_{i}, \
                 CAST({key} AS BIGINT) AS key_{i}",
                value = f.value_sql(),
                filter = f.filter,
                key = f.key_sql(),
            )
        })
        .collect();
    let dims: &[Dim] = source.dims();
    let sets: Vec<String> = scan
        .sets
        .iter()
        .map(|set| {
            let mut columns = vec!["mx_period"];
            if set.grain == Grain::Day {
                columns.push("mx_day");
            }
            columns.extend(
                dims.iter()
                    .filter(|d| set.dims.contains(**d))
                    .map(|d| d.name()),
            );
            format!("({})", columns.join(", "))
        })
        .collect();
    // A column in no grouping set may not be selected: NULL, never grouped, instead.
    let grouped_by = |dim: Dim| scan.sets.iter().any(|set| set.dims.contains(dim));
    let dim_columns: String = dims
        .iter()
        .map(|d| match grouped_by(*d) {
            true => format!(", {}", d.name()),
            false => format!(", CAST(NULL AS VARCHAR) AS mx_no_{}", d.name()),
        })
        .collect();
    let flags: String = dims
        .iter()
        .map(|d| match grouped_by(*d) {
            true => format!(", grouping({})", d.name()),
            false => format!(", 1 AS mx_never_{}", d.name()),
        })
        .collect();
    let by_day = scan.sets.iter().any(|set| set.grain == Grain::Day);
    let (day, day_flag) = if by_day {
        ("mx_day", "grouping(mx_day)")
    } else {
        ("CAST(NULL AS VARCHAR)", "1")
    };
    let sql = format!(
        "SELECT mx_period, {day}{dim_columns}, {day_flag}{flags}{aggregates} \
         FROM (SELECT *, to_char(t, '{period_format}') AS mx_period, to_char(t, '%Y-%m-%d') AS mx_day \
               FROM (SELECT *, {time} AS t FROM {table} WHERE {filter}) AS x) AS y \
         GROUP BY GROUPING SETS ({sets})",
        period_format = scan.period_format,
        time = source.time(scan.timezone),
        table = source.relation(),
        sets = sets.join(", "),
    );
    let batches = ctx.sql(&sql).await?.collect().await?;
    let mut rows = Vec::new();
    for batch in batches {
        let period = utf8(batch.column(0))?;
        let day = utf8(batch.column(1))?;
        let (period, day) = (period.as_string::<i32>(), day.as_string::<i32>());
        let keys = (0..dims.len())
            .map(|i| utf8(batch.column(2 + i)))
            .collect::<Result<Vec<_>, _>>()?;
        let day_flag = int64(batch.column(2 + dims.len()))?;
        let dim_flags = (0..dims.len())
            .map(|i| int64(batch.column(3 + dims.len() + i)))
            .collect::<Result<Vec<_>, _>>()?;
        let first_aggregate = 3 + 2 * dims.len();
        // Each figure's (value, users, key) columns, downcast once per batch.
        let aggregates: Vec<_> = (0..scan.figures.len())
            .map(|i| {
                (
                    batch
                        .column(first_aggregate + 3 * i)
                        .as_primitive::<Float64Type>(),
                    batch
                        .column(first_aggregate + 3 * i + 1)
                        .as_primitive::<Int64Type>(),
                    batch
                        .column(first_aggregate + 3 * i + 2)
                        .as_primitive::<Int64Type>(),
                )
            })
            .collect();
        for row in 0..batch.num_rows() {
            if period.is_null(row) {
                continue;
            }
            let is_day = day_flag.as_primitive::<Int64Type>().value(row) == 0;
            if is_day && day.is_null(row) {
                continue;
            }
            let mut set = DimSet::NONE;
            let mut row_keys: DimKeys = Default::default();
            for (i, dim) in dims.iter().enumerate() {
                if dim_flags[i].as_primitive::<Int64Type>().value(row) == 0 {
                    set = set.with(*dim);
                    row_keys[dim.index()] = key_at(keys[i].as_string::<i32>(), row);
                }
            }
            let tallies = aggregates
                .iter()
                .map(|(values, users, keys)| {
                    let users = users.value(row);
                    (users != 0).then(|| Tally {
                        value: if values.is_null(row) {
                            0.0
                        } else {
                            values.value(row)
                        },
                        users,
                        key: if keys.is_null(row) {
                            0
                        } else {
                            keys.value(row)
                        },
                    })
                })
                .collect();
            rows.push(GroupRow {
                grain: if is_day { Grain::Day } else { Grain::Period },
                period: if is_day {
                    day.value(row).to_owned()
                } else {
                    period.value(row).to_owned()
                },
                dims: set,
                keys: row_keys,
                tallies,
            });
        }
    }
    Ok(rows)
}

/// Synapse's r30v2 at each month's end, for the months `ends` (`(month, last day)`):
/// distinct users seen (platform known) on two days more than 30 days apart within the 60
/// days up to that day, grouped by each of `sets` of server and domain. A pseudonym belongs to
/// one server, so a user counts within the server and domain it was seen with.
pub async fn r30(
    ctx: &SessionContext,
    ends: &[(String, chrono::NaiveDate)],
    conditions: &[String],
    sets: &[DimSet],
) -> Result<Vec<GroupRow>, QueryError> {
    let (Some((_, first_end)), Some((_, last_end))) = (ends.first(), ends.last()) else {
        return Ok(Vec::new());
    };
    let values: Vec<String> = ends
        .iter()
        .map(|(period, end)| format!("('{period}', DATE '{end}')"))
        .collect();
    let mut filter = format!(
        "v.platform <> 'unknown' AND v.day > DATE '{}' AND v.day <= DATE '{last_end}'",
        *first_end - chrono::Days::new(91)
    );
    for condition in conditions {
        filter.push_str(&format!(" AND ({condition})"));
    }
    let (grouping, [server, domain, server_flag, domain_flag]) = monthly_user_sets(sets);
    let sql = format!(
        "SELECT period, {server}, {domain}, {server_flag}, {domain_flag}, \
                COUNT(DISTINCT \"user\"), CAST({key} AS BIGINT) \
         FROM (SELECT e.period, v.\"user\", v.server, v.domain, min(v.day) AS first_day, max(v.day) AS last_day \
               FROM visits AS v JOIN (VALUES {values}) AS e(period, end_day) \
                 ON v.day > e.end_day - INTERVAL '60 days' AND v.day <= e.end_day \
               WHERE {filter} \
               GROUP BY e.period, v.\"user\", v.server, v.domain) AS seen \
         WHERE arrow_cast(last_day, 'Int32') - arrow_cast(first_day, 'Int32') > 30 \
         GROUP BY GROUPING SETS ({grouping})",
        values = values.join(", "),
        key = super::disclosure::cell_key_sql("\"user\"", "true"),
    );
    let batches = ctx.sql(&sql).await?.collect().await?;
    monthly_user_rows(&batches, 1)
}

/// The grouping sets of a monthly count of users, by server and domain (`r30`,
/// `client_moves`): the SQL list, and the selected key columns and grouping flags.
fn monthly_user_sets(sets: &[DimSet]) -> (String, [String; 4]) {
    let grouping: Vec<String> = sets
        .iter()
        .map(|set| {
            let mut columns = vec!["period"];
            columns.extend(set.dims().map(Dim::name));
            format!("({})", columns.join(", "))
        })
        .collect();
    // A column in no grouping set may not be selected: NULL, never grouped, instead.
    let column = |dim: Dim| match sets.iter().any(|set| set.contains(dim)) {
        true => (
            format!("CAST({} AS VARCHAR)", dim.name()),
            format!("grouping({})", dim.name()),
        ),
        false => (
            format!("CAST(NULL AS VARCHAR) AS mx_no_{}", dim.name()),
            format!("1 AS mx_never_{}", dim.name()),
        ),
    };
    let ((server, server_flag), (domain, domain_flag)) = (column(Dim::Server), column(Dim::Domain));
    (
        grouping.join(", "),
        [server, domain, server_flag, domain_flag],
    )
}

/// The rows of a monthly count of users: columns period, server, domain, their two grouping
/// flags, then (distinct users, cell key) for each of `figures` counts.
fn monthly_user_rows(
    batches: &[datafusion::arrow::array::RecordBatch],
    figures: usize,
) -> Result<Vec<GroupRow>, QueryError> {
    let mut rows = Vec::new();
    for batch in batches {
        let period = utf8(batch.column(0))?;
        let (server, domain) = (utf8(batch.column(1))?, utf8(batch.column(2))?);
        let (server_flag, domain_flag) = (int64(batch.column(3))?, int64(batch.column(4))?);
        let counts: Vec<(ArrayRef, ArrayRef)> = (0..figures)
            .map(|i| {
                Ok((
                    int64(batch.column(5 + 2 * i))?,
                    int64(batch.column(6 + 2 * i))?,
                ))
            })
            .collect::<Result<_, QueryError>>()?;
        let period = period.as_string::<i32>();
        for row in 0..batch.num_rows() {
            let mut set = DimSet::NONE;
            let mut keys: DimKeys = Default::default();
            if server_flag.as_primitive::<Int64Type>().value(row) == 0 {
                set = set.with(Dim::Server);
                keys[Dim::Server.index()] = key_at(server.as_string::<i32>(), row);
            }
            if domain_flag.as_primitive::<Int64Type>().value(row) == 0 {
                set = set.with(Dim::Domain);
                keys[Dim::Domain.index()] = key_at(domain.as_string::<i32>(), row);
            }
            let tallies = counts
                .iter()
                .map(|(users, cell_keys)| {
                    let users = users.as_primitive::<Int64Type>().value(row);
                    (users != 0).then(|| Tally {
                        value: users as f64,
                        users,
                        key: cell_keys.as_primitive::<Int64Type>().value(row),
                    })
                })
                .collect();
            rows.push(GroupRow {
                grain: Grain::Period,
                period: period.value(row).to_owned(),
                dims: set,
                keys,
                tallies,
            });
        }
    }
    Ok(rows)
}

/// The moves between the classic Tchap mobile apps and Tchap X in each month of `months`
/// (`(month, first day, last day)`, UTC days as visits are), by each of `sets` of server and
/// domain: users seen on a classic app in the month before and, this month, on Tchap X and
/// on no classic app; the reverse; and users seen on both this month.
pub async fn client_moves(
    ctx: &SessionContext,
    months: &[(String, chrono::NaiveDate, chrono::NaiveDate)],
    conditions: &[String],
    sets: &[DimSet],
) -> Result<Vec<GroupRow>, QueryError> {
    let (Some((_, first_start, _)), Some((_, _, last_end))) = (months.first(), months.last())
    else {
        return Ok(Vec::new());
    };
    let values: Vec<String> = months
        .iter()
        .filter_map(|(period, start, end)| {
            let before = start.checked_sub_months(chrono::Months::new(1))?;
            Some(format!(
                "('{period}', DATE '{before}', DATE '{start}', DATE '{end}')"
            ))
        })
        .collect();
    let Some(earliest) = first_start.checked_sub_months(chrono::Months::new(1)) else {
        return Ok(Vec::new());
    };
    let mut filter = format!("v.day >= DATE '{earliest}' AND v.day <= DATE '{last_end}'");
    for condition in conditions {
        filter.push_str(&format!(" AND ({condition})"));
    }
    let classic: Vec<String> = ClientFamily::CLASSIC_MOBILE
        .iter()
        .map(|f| format!("'{f}'"))
        .collect();
    let classic = format!("v.family IN ({})", classic.join(", "));
    let tchap_x = format!("starts_with(v.family, '{}')", ClientFamily::TCHAP_X_PREFIX);
    let (grouping, [server, domain, server_flag, domain_flag]) = monthly_user_sets(sets);
    let moved = [
        "classic_before AND x_now AND NOT classic_now",
        "x_before AND classic_now AND NOT x_now",
        "classic_now AND x_now",
    ];
    let counts: String = moved
        .iter()
        .map(|condition| {
            format!(
                ", COUNT(DISTINCT \"user\") FILTER (WHERE {condition}), CAST({key} AS BIGINT)",
                key = super::disclosure::cell_key_sql("\"user\"", condition),
            )
        })
        .collect();
    let sql = format!(
        "SELECT period, {server}, {domain}, {server_flag}, {domain_flag}{counts} \
         FROM (SELECT e.period, v.\"user\", v.server, v.domain, \
                 bool_or(v.day < e.start_day AND {classic}) AS classic_before, \
                 bool_or(v.day < e.start_day AND {tchap_x}) AS x_before, \
                 bool_or(v.day >= e.start_day AND {classic}) AS classic_now, \
                 bool_or(v.day >= e.start_day AND {tchap_x}) AS x_now \
               FROM {visits} AS v JOIN (VALUES {values}) AS e(period, before_day, start_day, end_day) \
                 ON v.day >= e.before_day AND v.day <= e.end_day \
               WHERE {filter} \
               GROUP BY e.period, v.\"user\", v.server, v.domain) AS seen \
         GROUP BY GROUPING SETS ({grouping})",
        visits = super::definitions::Source::Visits.relation(),
        values = values.join(", "),
    );
    let batches = ctx.sql(&sql).await?.collect().await?;
    monthly_user_rows(&batches, CLIENT_MOVES.len())
}
