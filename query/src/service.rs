//! `QueryService`: what the HTTP and PostgreSQL surfaces share (the lake, the principals, the
//! limits, the query threads, the metrics), and the one path every analyst query takes,
//! whichever surface it came by: role check, guard, a session scoped to the principal on the
//! newest snapshot, the limits, a log line with the user, the metrics.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::ParamValues;
use datafusion::prelude::SessionContext;

use crate::access::{AccessList, Principal};
use crate::answers::AnswerCache;
use crate::error::QueryError;
use crate::executor::QueryExecutor;
use crate::lake::Lake;
use crate::session::{self, Limits, QueryOutput};
use crate::slots::{QuerySlots, Slot};
use crate::{explain, guard};

/// Who a figures request is for: the pages and the API take the service's figure slots
/// (`figure_slots`, apart from the SQL's); the reports have slots of their own (held by their caller, `mxpulse_dashboards`'
/// report desk), so that a manager's report never waits behind the dashboards, nor makes them
/// wait, during a peak.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lane {
    Interactive,
    /// The caller holds a report slot.
    Reports,
}

/// A question for the figures' tables.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Ask {
    Figures(crate::figures::FigureRequest),
    /// The largest forums, this many.
    Forums(usize),
}

#[derive(Clone)]
enum Answer {
    Figures(Box<crate::figures::FiguresReport>),
    Forums(Vec<crate::figures::ForumRank>),
}

/// A question as the figures' answer cache knows it: the principal's scope, the tables asked
/// for, the question.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FiguresQuestion {
    scope: Option<String>,
    choice: crate::figures::planner::SourceChoice,
    ask: Ask,
}

/// The figures' answers by question, for the lake's current version. Each is a few kilobytes
/// to a few hundred (a year by day and by server): 512 of them (`query.kept_answers`) are tens
/// of megabytes.
pub struct FiguresAnswers(AnswerCache<FiguresQuestion, Answer>);

impl FiguresAnswers {
    pub fn new(capacity: usize) -> Self {
        Self(AnswerCache::new(capacity))
    }
}

/// Everything the surfaces share.
pub struct QueryService {
    pub lake: Lake,
    pub access: AccessList,
    pub limits: Limits,
    /// Bound of a figures request.
    pub figures_timeout: std::time::Duration,
    pub timezone: String,
    pub min_users: u32,
    /// The largest move of a published count (docs/design.md §4).
    pub noise: u32,
    /// The analysts' statements running at once and waiting: with the per-query memory
    /// limit, the service's memory bound.
    pub sql_slots: QuerySlots,
    /// The figures requests (pages, API) running at once and waiting: their own, so that no
    /// amount of analysts' SQL keeps a dashboard waiting.
    pub figure_slots: QuerySlots,
    /// The longest period one figures request may cover.
    pub spans: crate::figures::SpanLimits,
    /// The threads DataFusion runs analysts' SQL on.
    pub executor: QueryExecutor,
    /// The threads the figures are counted on (pages, API, reports): apart from the SQL's, so
    /// that heavy statements occupying theirs leave the figures a thread.
    pub figures_executor: QueryExecutor,
    /// The rollups' cells in memory, for the figures.
    pub cells: crate::figures::rollup::index::IndexCache,
    /// The figures already counted for the lake's current version (`crate::answers`).
    pub answers: FiguresAnswers,
    pub metrics: QueryMetrics,
}

#[derive(Debug, Default)]
pub struct QueryMetrics {
    pub sql_ok: AtomicU64,
    pub sql_refused: AtomicU64,
    pub sql_failed: AtomicU64,
    /// Figures requests answered from the rollups...
    pub figures_rollups: AtomicU64,
    /// ... and from the raw tables.
    pub figures_raw: AtomicU64,
    /// Figures requests (of both) answered from the answers kept for the lake's version.
    pub figures_cached: AtomicU64,
    /// Requests refused because no slot freed within `queue_timeout`.
    pub busy: AtomicU64,
    pub unauthorized: AtomicU64,
    pub micros: AtomicU64,
}

/// Which surface a query came by: PostgreSQL clients also get `pg_catalog` (psql's `\d`,
/// JDBC's metadata) and a PostgreSQL `version()`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Surface {
    Http,
    Pgwire,
}

/// What a prepared statement takes and returns, for the extended query protocol's Describe.
#[derive(Clone, Debug)]
pub struct PreparedShape {
    /// The type DataFusion inferred for `$1`, `$2`...; `None` where nothing tells.
    pub parameters: Vec<Option<DataType>>,
    pub schema: SchemaRef,
}

impl std::fmt::Debug for QueryService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryService")
            .field("access", &self.access)
            .finish_non_exhaustive()
    }
}

impl QueryService {
    /// Month boundaries and the small-cell threshold of the published figures.
    pub fn publication(&self) -> session::Publication {
        session::Publication {
            timezone: self.timezone.clone(),
            min_users: self.min_users,
            noise: self.noise,
        }
    }

    /// Answers one analyst query, with `params` bound to its placeholders. Every SQL surface
    /// goes through here.
    pub async fn answer_sql(
        self: &Arc<Self>,
        who: &Principal,
        sql: String,
        params: Option<ParamValues>,
        surface: Surface,
    ) -> Result<QueryOutput, QueryError> {
        self.answer_sql_then(who, sql, params, surface, Ok).await
    }

    /// `answer_sql`, then `finish` (encoding the answer) while the query's slot is still held:
    /// an answer being encoded is memory and CPU the slot stands for.
    pub async fn answer_sql_then<T>(
        self: &Arc<Self>,
        who: &Principal,
        sql: String,
        params: Option<ParamValues>,
        surface: Surface,
        finish: impl FnOnce(QueryOutput) -> Result<T, QueryError>,
    ) -> Result<T, QueryError> {
        tracing::info!(user = %who.name, scope = ?who.server, ?surface, sql = %sql, params = %ShownParams(params.as_ref()), "sql query");
        let started = Instant::now();
        let result = async {
            may_query(who)?;
            // Refused statements cost no slot and no session.
            guard::check(&sql)?;
            let explain = explain::ask_of(&sql);
            explain::check(who, explain)?;
            let slot = self
                .sql_slots
                .take()
                .await
                .inspect_err(|e| self.count_busy(e))?;
            let ctx = self.sql_session(who, &sql, surface).await?;
            let (mut output, _slot) =
                session::run_sql_holding(&self.executor, ctx, sql, params, self.limits, slot)
                    .await?;
            if explain.is_some() {
                output = explain::without_paths(output)?;
            }
            finish(output)
        }
        .await;
        self.metrics
            .micros
            .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        self.count(&result);
        if let Err(error) = &result {
            tracing::warn!(user = %who.name, %error, "sql query failed");
        }
        result
    }

    /// Plans `sql` for `who` without running it: the parameters it takes and the columns it
    /// returns. The same checks as `answer_sql`, so a statement refused there is refused here
    /// already, and logged and counted with its user likewise (a prepared statement that
    /// passes is logged when it runs).
    pub async fn prepare_sql(
        self: &Arc<Self>,
        who: &Principal,
        sql: String,
        surface: Surface,
    ) -> Result<PreparedShape, QueryError> {
        tracing::debug!(user = %who.name, ?surface, sql = %sql, "sql prepare");
        let result = self.plan_shape(who, sql.clone(), surface).await;
        if let Err(error) = &result {
            self.count(&result);
            tracing::warn!(user = %who.name, scope = ?who.server, ?surface, sql = %sql, %error, "sql prepare refused or failed");
        }
        result
    }

    async fn plan_shape(
        self: &Arc<Self>,
        who: &Principal,
        sql: String,
        surface: Surface,
    ) -> Result<PreparedShape, QueryError> {
        may_query(who)?;
        guard::check(&sql)?;
        explain::check(who, explain::ask_of(&sql))?;
        let slot = self
            .sql_slots
            .take()
            .await
            .inspect_err(|e| self.count_busy(e))?;
        let ctx = self.sql_session(who, &sql, surface).await?;
        self.executor
            .run(self.limits.timeout, async move {
                // Held until the planning has stopped.
                let _slot = slot;
                let frame = ctx
                    .sql_with_options(&sql, guard::read_only_options())
                    .await?;
                let types = frame.logical_plan().get_parameter_types()?;
                let parameters: Vec<(usize, Option<DataType>)> = types
                    .into_iter()
                    .map(|(id, ty)| {
                        let position = id.trim_start_matches('$').parse().map_err(|_| {
                            QueryError::Invalid(format!("placeholder {id}: use $1, $2..."))
                        })?;
                        Ok((position, ty))
                    })
                    .collect::<Result<_, QueryError>>()?;
                if parameters.iter().any(|(position, _)| *position == 0) {
                    return Err(QueryError::Invalid(
                        "placeholders are numbered from $1".into(),
                    ));
                }
                // A number the statement does not use (the client's SQL named it, and the
                // catalog rewriting of `pgwire::postgres_sql` dropped the expression holding
                // it) is a parameter of unknown type whose value nothing reads.
                let count = parameters.iter().map(|(p, _)| *p).max().unwrap_or(0);
                // The protocol's own limit (a 16-bit count): `$999999999` would otherwise
                // allocate a slot per number up to it.
                if count > usize::from(u16::MAX) {
                    return Err(QueryError::Invalid(format!(
                        "placeholders are numbered up to ${}",
                        u16::MAX
                    )));
                }
                let mut by_position: Vec<Option<DataType>> = vec![None; count];
                for (position, ty) in parameters {
                    by_position[position - 1] = ty;
                }
                Ok(PreparedShape {
                    parameters: by_position,
                    schema: Arc::new(frame.schema().as_arrow().clone()),
                })
            })
            .await
    }

    /// The figures of `request` for `who` (its scope applied), from the rollups or the raw
    /// tables as `choice` says: a query slot (waited for at most `queue_timeout`, held until
    /// the answer is built), the figures' time limit, the metrics. The API and the dashboards
    /// both answer through here.
    pub async fn figures(
        self: &Arc<Self>,
        who: &Principal,
        request: crate::figures::FigureRequest,
        choice: crate::figures::planner::SourceChoice,
    ) -> Result<crate::figures::FiguresReport, QueryError> {
        self.figures_in(Lane::Interactive, who, request, choice)
            .await
    }

    /// `figures`, in `lane`.
    pub async fn figures_in(
        self: &Arc<Self>,
        lane: Lane,
        who: &Principal,
        request: crate::figures::FigureRequest,
        choice: crate::figures::planner::SourceChoice,
    ) -> Result<crate::figures::FiguresReport, QueryError> {
        request.check(&self.spans)?;
        match self.ask(lane, who, choice, Ask::Figures(request)).await? {
            Answer::Figures(report) => Ok(*report),
            Answer::Forums(_) => Err(QueryError::Internal("forums for figures".into())),
        }
    }

    /// The `limit` largest forums `who` may see, like `figures`.
    pub async fn forums(
        self: &Arc<Self>,
        who: &Principal,
        limit: usize,
        choice: crate::figures::planner::SourceChoice,
    ) -> Result<Vec<crate::figures::ForumRank>, QueryError> {
        self.forums_in(Lane::Interactive, who, limit, choice).await
    }

    /// `forums`, in `lane`.
    pub async fn forums_in(
        self: &Arc<Self>,
        lane: Lane,
        who: &Principal,
        limit: usize,
        choice: crate::figures::planner::SourceChoice,
    ) -> Result<Vec<crate::figures::ForumRank>, QueryError> {
        match self.ask(lane, who, choice, Ask::Forums(limit)).await? {
            Answer::Forums(ranks) => Ok(ranks),
            Answer::Figures(_) => Err(QueryError::Internal("figures for forums".into())),
        }
    }

    /// Answers `ask` for `who` from the tables `choice` says: a slot of `lane`, the newest
    /// snapshot, the figures' time limit, the metrics.
    async fn ask(
        self: &Arc<Self>,
        lane: Lane,
        who: &Principal,
        choice: crate::figures::planner::SourceChoice,
        ask: Ask,
    ) -> Result<Answer, QueryError> {
        use crate::figures::planner;
        let snapshot = self.lake.snapshot().await?;
        let publication = self.publication();
        let source = planner::choose(&snapshot, &publication, choice)?;
        let version = snapshot.version();
        let question = FiguresQuestion {
            scope: who.server.clone(),
            choice,
            ask: ask.clone(),
        };
        if let Some(answer) = self.answers.0.get(&version, &question) {
            self.metrics.figures_cached.fetch_add(1, Ordering::Relaxed);
            self.count_figures(source);
            return Ok(answer);
        }
        let slot = self.slot_in(lane).await?;
        let shared = self.clone();
        let scope = who.server.clone();
        let answer = self
            .figures_executor
            .run(self.figures_timeout, async move {
                // Held until the counting has stopped.
                let _slot = slot;
                let with = planner::Answering {
                    snapshot: &snapshot,
                    cells: &shared.cells,
                    publication: &publication,
                    limits: &shared.limits,
                };
                match ask {
                    Ask::Figures(request) => {
                        planner::figures(&with, &request, scope.as_deref(), source)
                            .await
                            .map(|report| Answer::Figures(Box::new(report)))
                    }
                    Ask::Forums(limit) => planner::forums(&with, limit, scope.as_deref(), source)
                        .await
                        .map(Answer::Forums),
                }
            })
            .await?;
        self.answers.0.put(&version, question, answer.clone());
        self.count_figures(source);
        Ok(answer)
    }

    /// The versions of the lake's tables now (the snapshot at most `query.refresh_ms` old).
    pub async fn lake_version(&self) -> Result<crate::lake::LakeVersion, QueryError> {
        Ok(self.lake.snapshot().await?.version())
    }

    /// When the lake's data was last written: the rollups' time, else the newest raw commit.
    pub async fn data_as_of(&self) -> Result<Option<chrono::DateTime<chrono::Utc>>, QueryError> {
        let snapshot = self.lake.snapshot().await?;
        let ms = snapshot
            .rollups
            .as_ref()
            .and_then(|r| r.as_of_ms)
            .or_else(|| snapshot.newest_commit_ms());
        Ok(ms.and_then(chrono::DateTime::from_timestamp_millis))
    }

    /// The newest day with data (from the rollups), else the day of the newest write.
    pub async fn newest_data(&self) -> Result<Option<chrono::NaiveDate>, QueryError> {
        let snapshot = self.lake.snapshot().await?;
        let usable = snapshot
            .rollups
            .as_ref()
            .is_some_and(|r| r.timezone.as_deref() == Some(self.timezone.as_str()));
        if usable {
            let index = self
                .cells
                .index(&snapshot, &self.limits, &self.timezone)
                .await?;
            if let Some(day) = index.newest_day() {
                return Ok(Some(day));
            }
        }
        Ok(self.data_as_of().await?.map(|t| t.date_naive()))
    }

    /// What `months`' figures stand on: the rollups' version and a digest of those months'
    /// cells (`CellIndex::months_digest`), or `None` when the rollups do not answer (none yet,
    /// or counted in another time zone): then only recounting tells whether they changed.
    pub async fn months_digest(
        &self,
        months: &[&str],
    ) -> Result<Option<(Option<u64>, String)>, QueryError> {
        let snapshot = self.lake.snapshot().await?;
        let usable = snapshot
            .rollups
            .as_ref()
            .is_some_and(|r| r.timezone.as_deref() == Some(self.timezone.as_str()));
        if !usable {
            return Ok(None);
        }
        let index = self
            .cells
            .index(&snapshot, &self.limits, &self.timezone)
            .await?;
        Ok(Some((index.version, index.months_digest(months))))
    }

    /// The months the rollups have figures for (none when they do not answer).
    pub async fn months_with_data(&self) -> Result<Vec<String>, QueryError> {
        let snapshot = self.lake.snapshot().await?;
        let usable = snapshot
            .rollups
            .as_ref()
            .is_some_and(|r| r.timezone.as_deref() == Some(self.timezone.as_str()));
        if !usable {
            return Ok(Vec::new());
        }
        let index = self
            .cells
            .index(&snapshot, &self.limits, &self.timezone)
            .await?;
        Ok(index.months().into_iter().collect())
    }

    /// Counts a figures answer by the tables it came from.
    pub fn count_figures(&self, source: crate::figures::FigureSource) {
        let counter = match source {
            crate::figures::FigureSource::Rollups => &self.metrics.figures_rollups,
            crate::figures::FigureSource::Raw => &self.metrics.figures_raw,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts an answer in the metrics by outcome.
    fn count<T>(&self, result: &Result<T, QueryError>) {
        let counter = match result {
            Ok(_) => &self.metrics.sql_ok,
            Err(QueryError::Refused(_) | QueryError::Forbidden(_)) => &self.metrics.sql_refused,
            Err(_) => &self.metrics.sql_failed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// A slot of `lane`: one of the figure slots, or none for the reports, whose caller holds
    /// one of theirs.
    async fn slot_in(&self, lane: Lane) -> Result<Option<Slot>, QueryError> {
        match lane {
            Lane::Interactive => self
                .figure_slots
                .take()
                .await
                .inspect_err(|e| self.count_busy(e))
                .map(Some),
            Lane::Reports => Ok(None),
        }
    }

    fn count_busy(&self, error: &QueryError) {
        if matches!(error, QueryError::Busy(_)) {
            self.metrics.busy.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A session over the newest snapshot, scoped to `who`, with the publication views when
    /// `sql` may read them.
    async fn sql_session(
        &self,
        who: &Principal,
        sql: &str,
        surface: Surface,
    ) -> Result<SessionContext, QueryError> {
        let snapshot = self.lake.snapshot().await?;
        let publication = self.publication();
        let ctx = session::session(
            &snapshot,
            &who.scope(),
            &self.limits,
            publication.wanted_by(sql),
        )
        .await?;
        if surface == Surface::Pgwire {
            crate::catalog::for_postgres_clients(&ctx, sql).await?;
        }
        Ok(ctx)
    }
}

/// Bound parameters as the audit log shows them: `$1='x', $2=42`.
struct ShownParams<'a>(Option<&'a ParamValues>);

impl std::fmt::Display for ShownParams<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let values = match self.0 {
            Some(ParamValues::List(values)) => values,
            Some(ParamValues::Map(_)) => return f.write_str("(named)"),
            None => return Ok(()),
        };
        for (i, value) in values.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            // Bounded, without copying a long value whole: a parameter may be megabytes.
            use datafusion::common::ScalarValue as V;
            match value.value() {
                V::Utf8(Some(text)) | V::LargeUtf8(Some(text)) | V::Utf8View(Some(text)) => {
                    let cut: String = text.chars().take(200).collect();
                    let more = if cut.len() < text.len() { "..." } else { "" };
                    write!(f, "${}={cut:?}{more}", i + 1)?;
                }
                V::Binary(Some(bytes))
                | V::LargeBinary(Some(bytes))
                | V::BinaryView(Some(bytes)) => {
                    write!(f, "${}=({} bytes)", i + 1, bytes.len())?;
                }
                other => write!(f, "${}={other}", i + 1)?,
            }
        }
        Ok(())
    }
}

fn may_query(who: &Principal) -> Result<(), QueryError> {
    if who.role.may_query_sql() {
        Ok(())
    } else {
        Err(QueryError::Forbidden(format!(
            "{} may read figures only",
            who.name
        )))
    }
}
