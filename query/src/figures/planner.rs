//! Rollups or raw tables: a request is answered from the rollups when the lake has them and
//! they were cut in the configured time zone (months are local), else from the raw tables;
//! a caller may ask for either. The answer says which (`FiguresReport::source`).

use super::request::FigureRequest;
use super::rollup::index::IndexCache;
use super::{FigureSource, FiguresReport, ForumRank, publish, raw, report, rollup};
use crate::error::QueryError;
use crate::lake::LakeSnapshot;
use crate::session::{self, Limits, Publication, Scope};

/// Which tables a caller wants the figures from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum SourceChoice {
    /// The rollups when they can answer, else the raw tables.
    #[default]
    Auto,
    Rollups,
    Raw,
}

impl SourceChoice {
    pub fn parse(text: &str) -> Result<SourceChoice, QueryError> {
        match text {
            "auto" => Ok(SourceChoice::Auto),
            "rollups" => Ok(SourceChoice::Rollups),
            "raw" => Ok(SourceChoice::Raw),
            other => Err(QueryError::Invalid(format!(
                "source {other:?}: auto, rollups or raw"
            ))),
        }
    }
}

/// Where a request will be answered from, and why not from the rollups.
pub fn choose(
    snapshot: &LakeSnapshot,
    publication: &Publication,
    choice: SourceChoice,
) -> Result<FigureSource, QueryError> {
    let unusable = match &snapshot.rollups {
        None => Some("the lake has no rollups yet (`mxpulse lake rollup` builds them)".to_owned()),
        Some(rollups) if rollups.timezone.as_deref() != Some(publication.timezone.as_str()) => {
            Some(format!(
                "the rollups were cut in time zone {}, the service counts in {}",
                rollups.timezone.as_deref().unwrap_or("(none)"),
                publication.timezone
            ))
        }
        Some(rollups) if !rollups.has_cell_keys => Some(
            "the rollups predate cell keys: the rollup job recounts them (`mxpulse lake rollup`)"
                .to_owned(),
        ),
        Some(_) => None,
    };
    match (choice, unusable) {
        (SourceChoice::Raw, _) => Ok(FigureSource::Raw),
        (SourceChoice::Rollups, Some(reason)) => Err(QueryError::Invalid(reason)),
        (SourceChoice::Auto, Some(_)) => Ok(FigureSource::Raw),
        (_, None) => Ok(FigureSource::Rollups),
    }
}

/// What answering takes: the lake's newest snapshot, the rollups' cells in memory, how
/// figures are published and the bounds of one query.
pub struct Answering<'a> {
    pub snapshot: &'a LakeSnapshot,
    pub cells: &'a IndexCache,
    pub publication: &'a Publication,
    pub limits: &'a Limits,
}

/// The figures of `request` for a principal limited to `scope` (a server), if any.
pub async fn figures(
    with: &Answering<'_>,
    request: &FigureRequest,
    scope: Option<&str>,
    source: FigureSource,
) -> Result<FiguresReport, QueryError> {
    let Answering {
        snapshot,
        cells: cache,
        publication,
        limits,
    } = *with;
    let rule = publication.rule();
    let shown = request;
    let (tallies, as_of) = match source {
        FigureSource::Rollups => {
            let index = cache.index(snapshot, limits, &publication.timezone).await?;
            let tallies = rollup::read::tallies(&index, request, scope)?;
            let as_of = snapshot.rollups.as_ref().and_then(|r| r.as_of_ms);
            (tallies, as_of)
        }
        FigureSource::Raw => {
            // Figures never show pseudonyms; the session may read them to count users.
            let scope = Scope {
                server: scope.map(str::to_owned),
                pseudonyms: true,
            };
            let ctx = session::session(snapshot, &scope, limits, None).await?;
            let tallies = raw::tallies(&ctx, request, &publication.timezone).await?;
            (tallies, snapshot.newest_commit_ms())
        }
    };
    let cells = publish::cells(shown, tallies, &rule).await?;
    let as_of = as_of
        .and_then(chrono::DateTime::from_timestamp_millis)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    Ok(report(
        shown,
        &publication.timezone,
        &rule,
        source,
        as_of,
        cells,
    ))
}

/// The largest forums, from the rollups or the raw tables.
pub async fn forums(
    with: &Answering<'_>,
    limit: usize,
    scope: Option<&str>,
    source: FigureSource,
) -> Result<Vec<ForumRank>, QueryError> {
    let Answering {
        snapshot,
        cells: cache,
        publication,
        limits,
    } = *with;
    match source {
        FigureSource::Rollups => {
            let index = cache.index(snapshot, limits, &publication.timezone).await?;
            // The directory is a small raw table, read as it is now.
            let whole = Scope {
                server: None,
                pseudonyms: true,
            };
            let ctx = session::session(snapshot, &whole, limits, None).await?;
            let names = super::forums::directory_names(&ctx).await?;
            Ok(rollup::read::top_forums(
                &index,
                limit,
                &publication.rule(),
                scope,
                &names,
            ))
        }
        FigureSource::Raw => {
            let scope = Scope {
                server: scope.map(str::to_owned),
                pseudonyms: true,
            };
            let ctx = session::session(snapshot, &scope, limits, None).await?;
            super::forums::top_forums(&ctx, limit, &publication.timezone, &publication.rule()).await
        }
    }
}
