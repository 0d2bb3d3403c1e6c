//! The figures of docs/design.md §5: monthly (calendar months in the configured time zone;
//! visits are UTC days as Synapse writes them) or daily, in total and by server, e-mail
//! domain and (for visits) platform, with month-over-month and year-over-year change, the
//! peak day of each month, every count published through the cell key rule (`disclosure`,
//! docs/design.md §4): a cell built from fewer than k distinct users (none included) is
//! withheld, without its value, marked `suppressed`; the others are moved by a small
//! deterministic amount, the same in every request.
//!
//! A request moves through: `request` (a `FigureRequest`, checked and bounded), `planner`
//! (rollups or raw tables), then `rollup::read` or `raw` (counted into `tally::Tallies` with
//! the SQL of `grouping`, from the definitions in `definitions`), then `publish` (the cell key rule,
//! changes, peaks) into a `FiguresReport`. `rollup` also computes the rollup tables' content
//! for the rollup job; `forums` ranks the forums.

pub mod definitions;
pub mod disclosure;
pub mod forums;
pub mod grouping;
pub mod periods;
pub mod planner;
pub mod publish;
pub mod raw;
pub mod request;
pub mod rollup;
pub mod tally;

use datafusion::prelude::SessionContext;
use serde::Serialize;

pub use definitions::{Dim, FIGURES, Figure, SPECIAL_FIGURES, Source, publication_views};
pub use forums::top_forums;
pub use request::{FigureRequest, Filters, Granularity, SpanLimits};

use crate::error::QueryError;

/// One cell: a figure for a period, in total or for one breakdown key.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct FigureCell {
    pub figure: &'static str,
    pub period: String,
    /// `total`, `server`, `domain` or `platform`.
    pub breakdown: &'static str,
    pub key: Option<String>,
    /// The published value (docs/design.md §4); `None` when withheld: fewer than k people,
    /// or none.
    pub value: Option<f64>,
    /// Withheld: fewer than k people (none included).
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

/// Which tables an answer was counted from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum FigureSource {
    /// The rollup tables (as of `as_of`).
    Rollups,
    /// The raw tables.
    Raw,
}

impl FigureSource {
    pub fn as_str(self) -> &'static str {
        match self {
            FigureSource::Rollups => "rollups",
            FigureSource::Raw => "raw",
        }
    }
}

/// The answer of the figures API.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct FiguresReport {
    pub granularity: Granularity,
    pub from: String,
    pub to: String,
    pub timezone: String,
    pub min_users: u32,
    /// The largest move of a published count, in steps: one person for counts of people, the
    /// cell's mean per person for counts of events (docs/design.md §4).
    pub noise: u32,
    pub filters: Filters,
    /// Counted from the rollups or from the raw tables.
    pub source: FigureSource,
    /// The lake data the answer holds: the time of the last raw commit folded into the
    /// rollups, or of the newest raw commit (RFC 3339); absent for an empty lake.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub as_of: Option<String>,
    pub cells: Vec<FigureCell>,
}

/// One of the largest forums (public, unencrypted rooms), without any identifier; named
/// only if it is in a homeserver's public room directory (docs/design.md §5).
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ForumRank {
    pub rank: usize,
    pub server: String,
    /// Local users whose last membership is `join`.
    pub members: i64,
    /// Month of its creation, in the configured time zone.
    pub created: String,
    /// Its name in the public room directory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The first line of its topic in the public room directory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
}

/// The figures between two periods (inclusive; months `YYYY-MM` or days `YYYY-MM-DD`),
/// counted from the raw tables of `ctx`; `only` names the figures wanted (all when empty).
#[allow(clippy::too_many_arguments)]
pub async fn compute(
    ctx: &SessionContext,
    granularity: Granularity,
    from: &str,
    to: &str,
    filters: &Filters,
    only: &[String],
    timezone: &str,
    rule: &disclosure::CellKeyRule,
) -> Result<FiguresReport, QueryError> {
    let request = FigureRequest {
        filters: filters.clone(),
        only: only.to_vec(),
        ..FigureRequest::new(granularity, from, to)
    };
    request.check(&SpanLimits {
        max_months: u32::MAX,
        max_days: u32::MAX,
    })?;
    let tallies = raw::tallies(ctx, &request, timezone).await?;
    let cells = publish::cells(&request, tallies, rule).await?;
    Ok(report(
        &request,
        timezone,
        rule,
        FigureSource::Raw,
        None,
        cells,
    ))
}

/// The answer to `request` out of its cells.
pub fn report(
    request: &FigureRequest,
    timezone: &str,
    rule: &disclosure::CellKeyRule,
    source: FigureSource,
    as_of: Option<String>,
    cells: Vec<FigureCell>,
) -> FiguresReport {
    FiguresReport {
        granularity: request.granularity,
        from: request.from.clone(),
        to: request.to.clone(),
        timezone: timezone.to_owned(),
        min_users: u32::try_from(rule.min_users).unwrap_or(u32::MAX),
        noise: u32::try_from(rule.spread).unwrap_or(u32::MAX),
        filters: request.filters.clone(),
        source,
        as_of,
        cells,
    }
}
