//! The figures of design.md §5, one definition each, computed with DataFusion SQL over the
//! session's views: monthly (calendar months in the configured time zone; visits are UTC
//! days as Synapse writes them) or daily, in total and by server, e-mail domain and (for
//! visits) platform, with month-over-month and year-over-year change, the peak day of each
//! month, and small-cell suppression: a cell built from fewer than k distinct users is
//! returned without its value, marked `suppressed`.

use std::collections::BTreeMap;

use chrono::{Months, NaiveDate};
use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{Float64Type, Int64Type};
use datafusion::prelude::SessionContext;
use serde::Serialize;

use crate::error::QueryError;

/// Where a figure is counted from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    Events,
    Visits,
    Accounts,
    Rooms,
}

impl Source {
    fn table(self) -> &'static str {
        match self {
            Source::Events => "events",
            Source::Visits => "visits",
            Source::Accounts => "accounts",
            Source::Rooms => "rooms",
        }
    }

    /// The local time of a row (visits: the UTC day itself).
    fn time(self, timezone: &str) -> String {
        let local = |column: &str| {
            format!("arrow_cast({column}, 'Timestamp(Microsecond, Some(\"{timezone}\"))')")
        };
        match self {
            Source::Events | Source::Accounts => local("ts"),
            Source::Rooms => local("created_at"),
            Source::Visits => "day".into(),
        }
    }

    /// The UTC date the table is partitioned by (the rooms view has none).
    fn partition_column(self) -> Option<&'static str> {
        match self {
            Source::Events | Source::Accounts => Some("date"),
            Source::Visits => Some("day"),
            Source::Rooms => None,
        }
    }

    fn user(self) -> &'static str {
        match self {
            Source::Events => "sender",
            Source::Rooms => "creator",
            Source::Visits | Source::Accounts => "\"user\"",
        }
    }
}

/// One figure's definition.
#[derive(Clone, Copy, Debug)]
pub struct Figure {
    pub name: &'static str,
    pub description: &'static str,
    source: Source,
    /// Which rows count.
    filter: &'static str,
    /// The value of a cell (`t` is the row's local time); `None` counts rows.
    value: Option<&'static str>,
}

/// Every figure, in the order the API returns them.
pub const FIGURES: &[Figure] = &[
    Figure {
        name: "active_users",
        description: "Distinct users with at least one visit, platform known (Tchap's MAU in a month).",
        source: Source::Visits,
        filter: "platform <> 'unknown'",
        value: Some("COUNT(DISTINCT \"user\")"),
    },
    Figure {
        name: "messages",
        description: "Messages sent (m.room.message and m.room.encrypted by local senders), reactions and edits excluded.",
        source: Source::Events,
        filter: "type IN ('m.room.message', 'm.room.encrypted') AND (rel_type IS NULL OR rel_type NOT IN ('m.annotation', 'm.replace'))",
        value: None,
    },
    Figure {
        name: "threads",
        description: "Messages sent in threads (rel_type m.thread); also counted in messages.",
        source: Source::Events,
        filter: "type IN ('m.room.message', 'm.room.encrypted') AND rel_type = 'm.thread'",
        value: None,
    },
    Figure {
        name: "reactions",
        description: "Reactions (m.reaction).",
        source: Source::Events,
        filter: "type = 'm.reaction'",
        value: None,
    },
    Figure {
        name: "rooms_created",
        description: "Rooms created (m.room.create), every kind.",
        source: Source::Rooms,
        filter: "true",
        value: None,
    },
    Figure {
        name: "rooms_created_direct",
        description: "Direct rooms created.",
        source: Source::Rooms,
        filter: "kind = 'direct'",
        value: None,
    },
    Figure {
        name: "rooms_created_private",
        description: "Private rooms created (invite-only or restricted).",
        source: Source::Rooms,
        filter: "kind = 'private'",
        value: None,
    },
    Figure {
        name: "rooms_created_external",
        description: "External rooms created (encrypted, open to external users).",
        source: Source::Rooms,
        filter: "kind = 'external'",
        value: None,
    },
    Figure {
        name: "rooms_created_forum",
        description: "Forums created (public, unencrypted).",
        source: Source::Rooms,
        filter: "kind = 'forum'",
        value: None,
    },
    Figure {
        name: "rooms_created_space",
        description: "Spaces created.",
        source: Source::Rooms,
        filter: "kind = 'space'",
        value: None,
    },
    Figure {
        name: "accounts_created",
        description: "Regular accounts created.",
        source: Source::Accounts,
        filter: "change = 'created' AND user_type = 'regular'",
        value: None,
    },
    Figure {
        name: "calls_started",
        description: "Calls started: 1:1 call invites, and group calls (a room's MatrixRTC joins on a day).",
        source: Source::Events,
        filter: "type = 'm.call.invite' OR (type = 'm.call.member' AND call = 'join')",
        value: Some(
            "COUNT(DISTINCT CASE WHEN type = 'm.call.invite' THEN encode(event, 'hex') ELSE concat(CAST(room AS VARCHAR), ' ', to_char(t, '%Y-%m-%d')) END)",
        ),
    },
    Figure {
        name: "call_participants",
        description: "Distinct users who joined a group call (MatrixRTC) or placed or answered a 1:1 call.",
        source: Source::Events,
        filter: "(type = 'm.call.member' AND call = 'join') OR type IN ('m.call.invite', 'm.call.answer')",
        value: Some("COUNT(DISTINCT sender)"),
    },
    Figure {
        name: "live_location_shares",
        description: "Live location shares started (m.beacon_info with live = true).",
        source: Source::Events,
        filter: "type = 'm.beacon_info' AND live",
        value: None,
    },
];

/// Calendar months or days.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Granularity {
    Month,
    Day,
}

/// What the caller narrowed the figures to.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Filters {
    pub server: Option<String>,
    pub domain: Option<String>,
    pub platform: Option<String>,
}

/// One cell: a figure for a period, in total or for one breakdown key.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct FigureCell {
    pub figure: &'static str,
    pub period: String,
    /// `total`, `server`, `domain` or `platform`.
    pub breakdown: &'static str,
    pub key: Option<String>,
    /// `None` when suppressed.
    pub value: Option<f64>,
    pub suppressed: bool,
    /// Change over the previous month / the same month a year before, as a fraction.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mom: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub yoy: Option<f64>,
    /// The day of the month with the highest daily value (totals of monthly figures).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peak_day: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peak_value: Option<f64>,
}

/// The answer of the figures API.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct FiguresReport {
    pub granularity: Granularity,
    pub from: String,
    pub to: String,
    pub timezone: String,
    pub min_users: u32,
    pub filters: Filters,
    pub cells: Vec<FigureCell>,
}

fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// (period, breakdown, key) -> (value, users)
type Raw = BTreeMap<(String, &'static str, Option<String>), (f64, i64)>;

/// A figure's cells and, when asked, its daily totals (for the peak days): one scan.
#[derive(Debug, Default)]
struct RawFigure {
    cells: Raw,
    /// day -> (value, users)
    daily: BTreeMap<String, (f64, i64)>,
}

/// The UTC dates a query reads, a day wider on each side than the local periods it shows
/// (time zones): the tables are partitioned by UTC date, so the rest is never opened.
#[derive(Clone, Copy, Debug)]
struct DateRange {
    from: Option<NaiveDate>,
    to: NaiveDate,
}

impl DateRange {
    fn predicate(&self, column: &str) -> String {
        let mut predicate = format!(" AND {column} <= DATE '{}'", self.to + chrono::Days::new(1));
        if let Some(from) = self.from {
            predicate.push_str(&format!(
                " AND {column} >= DATE '{}'",
                from - chrono::Days::new(1)
            ));
        }
        predicate
    }
}

fn utf8(
    column: &datafusion::arrow::array::ArrayRef,
) -> Result<datafusion::arrow::array::ArrayRef, QueryError> {
    Ok(datafusion::arrow::compute::cast(
        column,
        &datafusion::arrow::datatypes::DataType::Utf8,
    )?)
}

/// The views meant for publication, `monthly_figures` and `daily_figures`: every figure of
/// `FIGURES` by period, in total and by server, domain (and platform for visits), with the
/// cells from fewer than `min_users` distinct users suppressed (value NULL, `suppressed`
/// true). The same definitions as the figures API, as SQL an analyst can join and filter; the
/// API adds MoM, YoY, peak days and the total of active accounts.
pub fn publication_views(timezone: &str, min_users: u32) -> [String; 2] {
    [("monthly_figures", "%Y-%m"), ("daily_figures", "%Y-%m-%d")].map(|(name, format)| {
        let selects: Vec<String> = FIGURES
            .iter()
            .map(|figure| {
                let source = figure.source;
                let mut dims = vec!["server", "domain"];
                if source == Source::Visits {
                    dims.push("platform");
                }
                let breakdown: String = dims
                    .iter()
                    .map(|d| format!("WHEN grouping({d}) = 0 THEN '{d}' "))
                    .collect();
                let key: String = dims
                    .iter()
                    .map(|d| format!("WHEN grouping({d}) = 0 THEN CAST({d} AS VARCHAR) "))
                    .collect();
                let sets: Vec<String> = std::iter::once("(period)".to_owned())
                    .chain(dims.iter().map(|d| format!("(period, {d})")))
                    .collect();
                format!(
                    "SELECT '{name}' AS figure, period, CASE {breakdown}ELSE 'total' END AS breakdown, \
                     CASE {key}END AS key, CAST({value} AS DOUBLE) AS value, COUNT(DISTINCT {user}) AS users \
                     FROM (SELECT *, to_char(t, '{format}') AS period \
                           FROM (SELECT *, {time} AS t FROM {table} WHERE {filter}) AS w) AS x \
                     GROUP BY GROUPING SETS ({sets})",
                    name = figure.name,
                    value = figure.value.unwrap_or("COUNT(*)"),
                    user = source.user(),
                    time = source.time(timezone),
                    table = source.table(),
                    filter = figure.filter,
                    sets = sets.join(", "),
                )
            })
            .collect();
        format!(
            "CREATE VIEW {name} AS SELECT figure, period, breakdown, key, \
             CASE WHEN users >= {min_users} THEN value END AS value, users < {min_users} AS suppressed \
             FROM ({}) AS cells",
            selects.join(" UNION ALL ")
        )
    })
}

/// How a figure's rows are grouped, and which dates are read.
#[derive(Clone, Copy, Debug)]
struct Grouping<'a> {
    period_format: &'a str,
    /// By server, domain (and platform for visits) besides the total.
    breakdowns: bool,
    /// Daily totals too (for the peak days).
    daily: bool,
    range: DateRange,
}

/// Every cell of each of `figures` (all of one source) by period, in total and by each
/// breakdown, and with `daily` by day in total: one grouping-sets query over one scan, each
/// figure an aggregate with its own `FILTER`.
async fn raw(
    ctx: &SessionContext,
    figures: &[&Figure],
    timezone: &str,
    filters: &Filters,
    grouping: Grouping<'_>,
) -> Result<Vec<RawFigure>, QueryError> {
    let Grouping {
        period_format,
        breakdowns,
        daily,
        range,
    } = grouping;
    let Some(source) = figures.first().map(|f| f.source) else {
        return Ok(Vec::new());
    };
    let any_figure: Vec<String> = figures.iter().map(|f| format!("({})", f.filter)).collect();
    let mut filter = format!("({})", any_figure.join(" OR "));
    for (column, value) in [("server", &filters.server), ("domain", &filters.domain)] {
        if let Some(value) = value {
            filter.push_str(&format!(" AND {column} = {}", quote(value)));
        }
    }
    if let Some(platform) = &filters.platform {
        filter.push_str(&format!(" AND platform = {}", quote(platform)));
    }
    if let Some(column) = source.partition_column() {
        filter.push_str(&range.predicate(column));
    }
    let user = source.user();
    let aggregates: String = figures
        .iter()
        .enumerate()
        .map(|(i, f)| {
            format!(
                ", CAST({value} FILTER (WHERE {filter}) AS DOUBLE) AS value_{i}, \
                 COUNT(DISTINCT {user}) FILTER (WHERE {filter}) AS users_{i}",
                value = f.value.unwrap_or("COUNT(*)"),
                filter = f.filter,
            )
        })
        .collect();
    let mut dims: Vec<&'static str> = Vec::new();
    if breakdowns {
        dims.extend(["server", "domain"]);
        if source == Source::Visits {
            dims.push("platform");
        }
    }
    let mut sets = vec!["(mx_period)".to_owned()];
    sets.extend(dims.iter().map(|d| format!("(mx_period, {d})")));
    if daily {
        sets.push("(mx_period, mx_day)".into());
    }
    let dim_columns: String = dims.iter().map(|d| format!(", {d}")).collect();
    let flags: String = dims.iter().map(|d| format!(", grouping({d})")).collect();
    let sql = format!(
        "SELECT mx_period, {day}{dim_columns}, {day_flag}{flags}{aggregates} \
         FROM (SELECT *, to_char(t, '{period_format}') AS mx_period, to_char(t, '%Y-%m-%d') AS mx_day \
               FROM (SELECT *, {time} AS t FROM {table} WHERE {filter}) AS x) AS y \
         GROUP BY GROUPING SETS ({sets})",
        day = if daily {
            "mx_day"
        } else {
            "CAST(NULL AS VARCHAR)"
        },
        day_flag = if daily { "grouping(mx_day)" } else { "1" },
        time = source.time(timezone),
        table = source.table(),
        sets = sets.join(", "),
    );
    let batches = ctx.sql(&sql).await?.collect().await?;
    let mut out: Vec<RawFigure> = figures.iter().map(|_| RawFigure::default()).collect();
    for batch in batches {
        let period = utf8(batch.column(0))?;
        let day = utf8(batch.column(1))?;
        let (period, day) = (period.as_string::<i32>(), day.as_string::<i32>());
        let keys = (0..dims.len())
            .map(|i| utf8(batch.column(2 + i)))
            .collect::<Result<Vec<_>, _>>()?;
        let flag_column = |i: usize| {
            datafusion::arrow::compute::cast(
                batch.column(2 + dims.len() + i),
                &datafusion::arrow::datatypes::DataType::Int64,
            )
        };
        let day_flag = flag_column(0)?;
        let dim_flags = (0..dims.len())
            .map(|i| flag_column(1 + i))
            .collect::<Result<Vec<_>, _>>()?;
        let first_aggregate = 3 + 2 * dims.len();
        // Each figure's (value, users) columns, downcast once per batch.
        let aggregates: Vec<_> = (0..out.len())
            .map(|i| {
                (
                    batch
                        .column(first_aggregate + 2 * i)
                        .as_primitive::<Float64Type>(),
                    batch
                        .column(first_aggregate + 2 * i + 1)
                        .as_primitive::<Int64Type>(),
                )
            })
            .collect();
        for row in 0..batch.num_rows() {
            if period.is_null(row) {
                continue;
            }
            let grouped =
                (0..dims.len()).find(|i| dim_flags[*i].as_primitive::<Int64Type>().value(row) == 0);
            let (name, key) = match grouped {
                Some(i) => {
                    let keys = keys[i].as_string::<i32>();
                    (
                        dims[i],
                        (!keys.is_null(row)).then(|| keys.value(row).to_owned()),
                    )
                }
                None => ("total", None),
            };
            let is_day = day_flag.as_primitive::<Int64Type>().value(row) == 0;
            for (raw, (values, users)) in out.iter_mut().zip(&aggregates) {
                let users = users.value(row);
                // No row of this figure in the group: no cell, as with a query of its own.
                if users == 0 {
                    continue;
                }
                let value = if values.is_null(row) {
                    0.0
                } else {
                    values.value(row)
                };
                let cell = (value, users);
                if is_day {
                    if !day.is_null(row) {
                        raw.daily.insert(day.value(row).to_owned(), cell);
                    }
                } else {
                    raw.cells
                        .insert((period.value(row).to_owned(), name, key.clone()), cell);
                }
            }
        }
    }
    Ok(out)
}

fn month_start(month: &str) -> Result<NaiveDate, QueryError> {
    NaiveDate::parse_from_str(&format!("{month}-01"), "%Y-%m-%d")
        .map_err(|_| QueryError::Invalid(format!("{month:?} is not a month (YYYY-MM)")))
}

/// The last day of a month `YYYY-MM`.
fn month_end(month: &str) -> Result<NaiveDate, QueryError> {
    month_start(month)?
        .checked_add_months(Months::new(1))
        .and_then(|next| next.pred_opt())
        .ok_or_else(|| QueryError::Invalid(format!("{month:?} is out of range")))
}

fn shift(month: &str, back: u32) -> Option<String> {
    month_start(month)
        .ok()?
        .checked_sub_months(Months::new(back))
        .map(|d| d.format("%Y-%m").to_string())
}

fn change(now: Option<f64>, before: Option<f64>) -> Option<f64> {
    match (now, before) {
        (Some(now), Some(before)) if before != 0.0 => Some((now - before) / before),
        _ => None,
    }
}

/// The figures between two periods (inclusive; months `YYYY-MM` or days `YYYY-MM-DD`);
/// `only` names the figures wanted (all when empty).
#[allow(clippy::too_many_arguments)]
pub async fn compute(
    ctx: &SessionContext,
    granularity: Granularity,
    from: &str,
    to: &str,
    filters: &Filters,
    only: &[String],
    timezone: &str,
    min_users: u32,
) -> Result<FiguresReport, QueryError> {
    let k = i64::from(min_users);
    for name in only {
        if !SPECIAL_FIGURES.contains(&name.as_str()) && !FIGURES.iter().any(|f| f.name == name) {
            return Err(QueryError::Invalid(format!("no figure named {name:?}")));
        }
    }
    let wanted = |name: &str| only.is_empty() || only.iter().any(|n| n == name);
    let (format, first, range) = match granularity {
        Granularity::Month => {
            // A year before `from`, for the year-over-year change.
            let first = shift(from, 12).unwrap_or_else(|| from.to_owned());
            let range = DateRange {
                from: Some(month_start(&first)?),
                to: month_end(to)?,
            };
            ("%Y-%m", first, range)
        }
        Granularity::Day => {
            let parse = |day: &str| {
                NaiveDate::parse_from_str(day, "%Y-%m-%d")
                    .map_err(|_| QueryError::Invalid(format!("{day:?} is not a day (YYYY-MM-DD)")))
            };
            let range = DateRange {
                from: Some(parse(from)?),
                to: parse(to)?,
            };
            ("%Y-%m-%d", from.to_owned(), range)
        }
    };
    let mut cells = Vec::new();
    let monthly = granularity == Granularity::Month;
    let shown: Vec<&Figure> = FIGURES
        .iter()
        .filter(|f| (filters.platform.is_none() || f.source == Source::Visits) && wanted(f.name))
        .collect();
    // One scan per source for all its figures.
    let mut computed: BTreeMap<&'static str, RawFigure> = BTreeMap::new();
    for source in [
        Source::Visits,
        Source::Events,
        Source::Rooms,
        Source::Accounts,
    ] {
        let of_source: Vec<&Figure> = shown
            .iter()
            .copied()
            .filter(|f| f.source == source)
            .collect();
        let grouping = Grouping {
            period_format: format,
            breakdowns: true,
            daily: monthly,
            range,
        };
        let raws = raw(ctx, &of_source, timezone, filters, grouping).await?;
        computed.extend(of_source.iter().map(|f| f.name).zip(raws));
    }
    for figure in shown {
        let RawFigure { cells: raw, daily } = computed.remove(figure.name).unwrap_or_default();
        let visible = |period: &str| period >= first.as_str() && period <= to;
        let value_of = |period: &str, breakdown: &'static str, key: &Option<String>| {
            raw.get(&(period.to_owned(), breakdown, key.clone()))
                .filter(|(_, users)| *users >= k)
                .map(|(value, _)| *value)
        };
        // Peak days of the totals, from the daily series.
        let peaks: BTreeMap<String, (String, f64)> = if monthly {
            let mut peaks: BTreeMap<String, (String, f64)> = BTreeMap::new();
            for (day, (value, users)) in daily {
                if users < k {
                    continue;
                }
                let Some(month) = day.get(..7).map(str::to_owned) else {
                    continue;
                };
                let entry = peaks.entry(month).or_insert((day.clone(), value));
                if value > entry.1 {
                    *entry = (day, value);
                }
            }
            peaks
        } else {
            BTreeMap::new()
        };
        for ((period, breakdown, key), (value, users)) in &raw {
            if !visible(period) || period.as_str() < from {
                continue;
            }
            let suppressed = *users < k;
            let value = (!suppressed).then_some(*value);
            let (mom, yoy) = if granularity == Granularity::Month {
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
            cells.push(FigureCell {
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
    if granularity == Granularity::Month
        && filters.platform.is_none()
        && wanted("total_active_accounts")
    {
        cells.extend(total_active_accounts(ctx, from, to, filters, timezone, k).await?);
    }
    if granularity == Granularity::Month && wanted("r30_users") {
        cells.extend(r30_users(ctx, from, to, filters, k).await?);
    }
    Ok(FiguresReport {
        granularity,
        from: from.to_owned(),
        to: to.to_owned(),
        timezone: timezone.to_owned(),
        min_users,
        filters: filters.clone(),
        cells,
    })
}

/// Monthly figures computed on their own (running totals, windows across months).
pub const SPECIAL_FIGURES: [&str; 2] = ["total_active_accounts", "r30_users"];

/// Synapse's r30v2 retention at each month's end: users seen (platform known) on two days
/// more than 30 days apart within the 60 days up to the month's last day. A pseudonym belongs
/// to one server, so a user is counted within the server and domain it was seen with.
async fn r30_users(
    ctx: &SessionContext,
    from: &str,
    to: &str,
    filters: &Filters,
    k: i64,
) -> Result<Vec<FigureCell>, QueryError> {
    // The months shown and the year before them (for MoM and YoY).
    let mut months = Vec::new();
    let mut month = month_start(&shift(from, 12).unwrap_or_else(|| from.to_owned()))?;
    let last = month_start(to)?;
    while month <= last {
        let period = month.format("%Y-%m").to_string();
        months.push((period.clone(), month_end(&period)?));
        month = month
            .checked_add_months(Months::new(1))
            .ok_or_else(|| QueryError::Invalid("month out of range".into()))?;
    }
    let (Some((_, first_end)), Some((_, last_end))) = (months.first(), months.last()) else {
        return Ok(Vec::new());
    };
    let ends: Vec<String> = months
        .iter()
        .map(|(period, end)| format!("('{period}', DATE '{end}')"))
        .collect();
    let mut filter = format!(
        "v.platform <> 'unknown' AND v.day > DATE '{}' AND v.day <= DATE '{last_end}'",
        *first_end - chrono::Days::new(91)
    );
    for (column, value) in [("server", &filters.server), ("domain", &filters.domain)] {
        if let Some(value) = value {
            filter.push_str(&format!(" AND v.{column} = {}", quote(value)));
        }
    }
    let sql = format!(
        "SELECT period, CAST(server AS VARCHAR), CAST(domain AS VARCHAR), grouping(server), grouping(domain), \
                COUNT(DISTINCT \"user\") \
         FROM (SELECT e.period, v.\"user\", v.server, v.domain, min(v.day) AS first_day, max(v.day) AS last_day \
               FROM visits AS v JOIN (VALUES {ends}) AS e(period, end_day) \
                 ON v.day > e.end_day - INTERVAL '60 days' AND v.day <= e.end_day \
               WHERE {filter} \
               GROUP BY e.period, v.\"user\", v.server, v.domain) AS seen \
         WHERE arrow_cast(last_day, 'Int32') - arrow_cast(first_day, 'Int32') > 30 \
         GROUP BY GROUPING SETS ((period), (period, server), (period, domain))",
        ends = ends.join(", ")
    );
    let batches = ctx.sql(&sql).await?.collect().await?;
    let mut counts: BTreeMap<(&'static str, Option<String>), BTreeMap<String, i64>> =
        BTreeMap::new();
    for batch in batches {
        let period = utf8(batch.column(0))?;
        let (server, domain) = (utf8(batch.column(1))?, utf8(batch.column(2))?);
        let flags = |i: usize| {
            datafusion::arrow::compute::cast(
                batch.column(i),
                &datafusion::arrow::datatypes::DataType::Int64,
            )
        };
        let (server_flag, domain_flag) = (flags(3)?, flags(4)?);
        let users = batch.column(5).as_primitive::<Int64Type>();
        let (period, server, domain) = (
            period.as_string::<i32>(),
            server.as_string::<i32>(),
            domain.as_string::<i32>(),
        );
        for row in 0..batch.num_rows() {
            let key_of = |keys: &datafusion::arrow::array::StringArray| {
                (!keys.is_null(row)).then(|| keys.value(row).to_owned())
            };
            let (breakdown, key) = if server_flag.as_primitive::<Int64Type>().value(row) == 0 {
                ("server", key_of(server))
            } else if domain_flag.as_primitive::<Int64Type>().value(row) == 0 {
                ("domain", key_of(domain))
            } else {
                ("total", None)
            };
            counts
                .entry((breakdown, key))
                .or_default()
                .insert(period.value(row).to_owned(), users.value(row));
        }
    }
    let mut cells = Vec::new();
    for ((breakdown, key), series) in counts {
        let shown = |period: &str| {
            series
                .get(period)
                .copied()
                .filter(|users| *users >= k)
                .map(|u| u as f64)
        };
        for (period, users) in &series {
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
    Ok(cells)
}

/// Regular accounts open at the end of each month: created, minus deactivated, plus
/// reactivated, over all history up to that month's end (in total, by server, by domain).
async fn total_active_accounts(
    ctx: &SessionContext,
    from: &str,
    to: &str,
    filters: &Filters,
    timezone: &str,
    k: i64,
) -> Result<Vec<FigureCell>, QueryError> {
    let figure = Figure {
        name: "total_active_accounts",
        description: "",
        source: Source::Accounts,
        filter: "user_type = 'regular'",
        value: Some(
            "SUM(CASE change WHEN 'created' THEN 1 WHEN 'reactivated' THEN 1 WHEN 'deactivated' THEN -1 ELSE 0 END)",
        ),
    };
    // All history up to `to`: the totals are running sums.
    let range = DateRange {
        from: None,
        to: month_end(to)?,
    };
    let grouping = Grouping {
        period_format: "%Y-%m",
        breakdowns: true,
        daily: false,
        range,
    };
    let changes = raw(ctx, &[&figure], timezone, filters, grouping)
        .await?
        .pop()
        .unwrap_or_default()
        .cells;
    // Running sums per (breakdown, key), month by month.
    let mut series: BTreeMap<(&'static str, Option<String>), BTreeMap<String, f64>> =
        BTreeMap::new();
    for ((month, breakdown, key), (delta, _)) in &changes {
        series
            .entry((breakdown, key.clone()))
            .or_default()
            .insert(month.clone(), *delta);
    }
    let mut months = Vec::new();
    let mut month = month_start(from)?;
    let last = month_start(to)?;
    while month <= last {
        months.push(month.format("%Y-%m").to_string());
        month = month
            .checked_add_months(Months::new(1))
            .ok_or_else(|| QueryError::Invalid("month out of range".into()))?;
    }
    let mut cells = Vec::new();
    for ((breakdown, key), deltas) in series {
        let at_end = |month: &str| {
            deltas
                .range(..=month.to_owned())
                .map(|(_, d)| d)
                .sum::<f64>()
        };
        for month in &months {
            let value = at_end(month);
            // Accounts are users: the cell is built from `value` of them.
            let suppressed = (value as i64) < k;
            let shown = (!suppressed).then_some(value);
            let before = |back: u32| {
                shift(month, back)
                    .map(|m| at_end(&m))
                    .filter(|v| (*v as i64) >= k)
            };
            cells.push(FigureCell {
                figure: "total_active_accounts",
                period: month.clone(),
                breakdown,
                key: key.clone(),
                value: shown,
                suppressed,
                mom: change(shown, before(1)),
                yoy: change(shown, before(12)),
                peak_day: None,
                peak_value: None,
            });
        }
    }
    Ok(cells)
}

/// One of the largest forums (public, unencrypted rooms), without any identifier.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ForumRank {
    pub rank: usize,
    pub server: String,
    /// Local users whose last membership is `join`.
    pub members: i64,
    /// Month of its creation, in the configured time zone.
    pub created: String,
}

/// The `limit` forums with the most members; forums of fewer than `min_users` members are
/// left out (small cells).
pub async fn top_forums(
    ctx: &SessionContext,
    limit: usize,
    timezone: &str,
    min_users: u32,
) -> Result<Vec<ForumRank>, QueryError> {
    let sql = format!(
        "SELECT server, members, to_char({time}, '%Y-%m') AS created FROM rooms \
         WHERE kind = 'forum' AND members >= {min_users} ORDER BY members DESC, created_at LIMIT {limit}",
        time = Source::Rooms.time(timezone),
    );
    let batches = ctx.sql(&sql).await?.collect().await?;
    let mut ranks = Vec::new();
    for batch in batches {
        let utf8 = datafusion::arrow::datatypes::DataType::Utf8;
        let server = datafusion::arrow::compute::cast(batch.column(0), &utf8)?;
        let members = datafusion::arrow::compute::cast(
            batch.column(1),
            &datafusion::arrow::datatypes::DataType::Int64,
        )?;
        let created = datafusion::arrow::compute::cast(batch.column(2), &utf8)?;
        let (server, members, created) = (
            server.as_string::<i32>(),
            members.as_primitive::<Int64Type>(),
            created.as_string::<i32>(),
        );
        for row in 0..batch.num_rows() {
            ranks.push(ForumRank {
                rank: ranks.len() + 1,
                server: server.value(row).to_owned(),
                members: members.value(row),
                created: created.value(row).to_owned(),
            });
        }
    }
    Ok(ranks)
}
