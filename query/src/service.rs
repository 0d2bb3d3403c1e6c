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
use crate::error::QueryError;
use crate::executor::QueryExecutor;
use crate::guard;
use crate::lake::Lake;
use crate::session::{self, Limits, QueryOutput};

/// Everything the surfaces share.
pub struct QueryService {
    pub lake: Lake,
    pub access: AccessList,
    pub limits: Limits,
    /// Bound of a figures request.
    pub figures_timeout: std::time::Duration,
    pub timezone: String,
    pub min_users: u32,
    /// Bounds the queries running at once: with the per-query memory limit, the service's.
    pub running: tokio::sync::Semaphore,
    /// How long a request may wait for a slot before it is answered "busy" (503).
    pub queue_timeout: std::time::Duration,
    /// The longest period one figures request may cover.
    pub spans: crate::figures::SpanLimits,
    /// The threads DataFusion runs on (figures and SQL).
    pub executor: QueryExecutor,
    /// The rollups' cells in memory, for the figures.
    pub cells: crate::figures::rollup::index::IndexCache,
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
        tracing::info!(user = %who.name, scope = ?who.server, ?surface, sql = %sql, "sql query");
        let started = Instant::now();
        let result = async {
            may_query(who)?;
            let _permit = self.permit().await?;
            let ctx = self.sql_session(who, &sql, surface).await?;
            session::run_sql_with(&self.executor, ctx, sql, params, self.limits).await
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
        let _permit = self.permit().await?;
        let ctx = self.sql_session(who, &sql, surface).await?;
        self.executor
            .run(self.limits.timeout, async move {
                let frame = ctx
                    .sql_with_options(&sql, guard::read_only_options())
                    .await?;
                let types = frame.logical_plan().get_parameter_types()?;
                let mut parameters: Vec<(usize, Option<DataType>)> = types
                    .into_iter()
                    .map(|(id, ty)| {
                        let position = id.trim_start_matches('$').parse().map_err(|_| {
                            QueryError::Invalid(format!("placeholder {id}: use $1, $2..."))
                        })?;
                        Ok((position, ty))
                    })
                    .collect::<Result<_, QueryError>>()?;
                parameters.sort_by_key(|(position, _)| *position);
                if parameters.iter().enumerate().any(|(i, (p, _))| *p != i + 1) {
                    return Err(QueryError::Invalid(
                        "placeholders must be numbered $1, $2... without gaps".into(),
                    ));
                }
                Ok(PreparedShape {
                    parameters: parameters.into_iter().map(|(_, ty)| ty).collect(),
                    schema: Arc::new(frame.schema().as_arrow().clone()),
                })
            })
            .await
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

    /// A slot among the queries running at once, waited for at most `queue_timeout`.
    pub async fn permit(&self) -> Result<tokio::sync::SemaphorePermit<'_>, QueryError> {
        match tokio::time::timeout(self.queue_timeout, self.running.acquire()).await {
            Ok(Ok(permit)) => Ok(permit),
            Ok(Err(_)) => Err(QueryError::Internal("the service is stopping".into())),
            Err(_) => {
                self.metrics.busy.fetch_add(1, Ordering::Relaxed);
                Err(QueryError::Busy(self.queue_timeout))
            }
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
