//! One DataFusion session per request, built from a lake snapshot for one principal: the
//! tables appear as views (`events`, `visits`, `accounts`, `rooms`), filtered to the
//! principal's server when it has a scope and without pseudonym columns when it may not see
//! them. The raw tables are never registered by name, so no SQL can reach around the filter.
//! Each session has its own memory pool (the per-query limit); the service bounds how many
//! run at once.

use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::TableProvider;
use datafusion::catalog::view::ViewTable;
use datafusion::common::ParamValues;
use datafusion::common::ScalarValue;
use datafusion::datasource::{MemTable, provider_as_source};
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::logical_expr::LogicalPlanBuilder;
use datafusion::logical_expr::cast;
use datafusion::prelude::{SessionConfig, SessionContext, col, lit};
use futures::StreamExt as _;

use crate::catalog::OrderedCatalog;
use crate::error::QueryError;
use crate::executor::QueryExecutor;
use crate::guard;
use crate::lake::LakeSnapshot;

/// Columns holding pseudonyms, by table: hidden from principals that may not see them.
pub const PSEUDONYM_COLUMNS: &[(&str, &[&str])] = &[
    ("events", &["sender", "room", "event", "target", "replaces"]),
    ("visits", &["user", "device"]),
    ("accounts", &["user"]),
    ("directory", &["room"]),
];

/// What a session may see.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scope {
    /// Only this server's rows.
    pub server: Option<String>,
    /// Pseudonym columns visible.
    pub pseudonyms: bool,
}

/// Bounds of one query.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub memory_bytes: usize,
    pub timeout: Duration,
    pub max_rows: usize,
}

/// The rooms view: one row per room created by a local user, with its kind read from the
/// room's initial state (docs/design.md §5, `figures::definitions::ROOM_KIND`): space, direct,
/// forum (public, unencrypted), external (encrypted, unrestricted), private (the rest:
/// encrypted or invite-only, restricted). Facts and members come from every server's events
/// (a room's kind is the room's, whoever looks); a scoped session sees the rooms created on
/// its server.
fn rooms_select() -> String {
    format!(
        "WITH created AS (
  SELECT room, server, domain, sender AS creator, ts AS created_at, room_type
  FROM events WHERE type = 'm.room.create'
), facts AS (
  SELECT room,
    bool_or(is_direct) AS is_direct,
    bool_or(type = 'm.room.encryption') AS encrypted,
    first_value(join_rule ORDER BY ts) FILTER (WHERE type = 'm.room.join_rules') AS join_rule,
    first_value(access_rule ORDER BY ts) FILTER (WHERE type = 'im.vector.room.access_rules') AS access_rule
  FROM events GROUP BY room
), members AS (
  SELECT room, count(*) AS members, sum(target & {mask}) AS members_key FROM (
    {last}
  ) WHERE membership = 'join' GROUP BY room
), joined AS (
  SELECT c.room, c.server, c.domain, c.creator, c.created_at, c.room_type,
    coalesce(f.is_direct, false) AS is_direct, coalesce(f.encrypted, false) AS encrypted,
    f.join_rule, f.access_rule, coalesce(m.members, 0) AS members,
    coalesce(m.members_key, 0) AS members_key
  FROM created c LEFT JOIN facts f ON f.room = c.room LEFT JOIN members m ON m.room = c.room
)
SELECT room, server, domain, creator, created_at, {kind} AS kind, encrypted, join_rule,
  access_rule, members, members_key
FROM joined",
        kind = crate::figures::definitions::ROOM_KIND,
        mask = crate::figures::disclosure::RECORD_KEY_MASK,
        last = last_memberships("true"),
    )
}

/// `(room, target, ts, membership)`: each user's last membership in each room, over the
/// membership events that meet `condition`. Event times leave the hooks to the minute, so
/// an invite and the join that follows often share one: the last is the membership no other
/// one replaces (`replaces`, Synapse's `replaces_state`); the time decides only between
/// memberships that name none (written before the hooks recorded it, or forks of the
/// room's state). docs/design.md §5.
pub fn last_memberships(condition: &str) -> String {
    format!(
        "SELECT m.room, m.target, max(m.ts) AS ts, last_value(m.membership ORDER BY m.ts) AS membership \
         FROM (SELECT room, target, ts, membership, event FROM events \
               WHERE type = 'm.room.member' AND {condition}) AS m \
         LEFT ANTI JOIN (SELECT DISTINCT replaces FROM events \
               WHERE type = 'm.room.member' AND replaces IS NOT NULL AND {condition}) AS r \
           ON r.replaces = m.event \
         GROUP BY m.room, m.target"
    )
}

/// How published figures are cut: month boundaries and the small-cell threshold.
#[derive(Clone, Debug)]
pub struct Publication {
    pub timezone: String,
    /// Cells from fewer distinct users are withheld (docs/design.md §4).
    pub min_users: u32,
    /// The largest move of a published count, in steps (docs/design.md §4).
    pub noise: u32,
}

impl Publication {
    /// The rule every published count goes through.
    pub fn rule(&self) -> crate::figures::disclosure::CellKeyRule {
        crate::figures::disclosure::CellKeyRule::new(self.min_users, self.noise)
    }

    /// The publication views are planned only for the statements that may read them (they
    /// name them, or browse the catalog): planning twelve grouped figures costs more than
    /// most queries.
    pub fn wanted_by(&self, sql: &str) -> Option<&Self> {
        let sql = sql.to_ascii_lowercase();
        [
            "_figures",
            "information_schema",
            "pg_catalog",
            "show tables",
        ]
        .iter()
        .any(|word| sql.contains(word))
        .then_some(self)
    }
}

/// A session over `snapshot` for `scope`, with `limits`' memory pool, and the publication
/// views when `publication` is given.
pub async fn session(
    snapshot: &LakeSnapshot,
    scope: &Scope,
    limits: &Limits,
    publication: Option<&Publication>,
) -> Result<SessionContext, QueryError> {
    // No spilling: a query over its memory limit fails instead of filling the disk.
    let runtime = RuntimeEnvBuilder::new()
        .with_memory_limit(limits.memory_bytes, 1.0)
        .with_disk_manager_builder(
            DiskManagerBuilder::default().with_mode(DiskManagerMode::Disabled),
        )
        .build_arc()?;
    let config = SessionConfig::new()
        .with_information_schema(true)
        .with_create_default_catalog_and_schema(false)
        .with_default_catalog_and_schema("mxpulse", "public");
    let ctx = SessionContext::new_with_config_rt(config.clone(), runtime.clone());
    // A function call may produce no more than the query may hold.
    crate::bounded_functions::register(&ctx, limits.memory_bytes);
    ctx.register_catalog("mxpulse", Arc::new(OrderedCatalog::with_schema("public")));
    // The rooms view reads every server's events: planned in a session of its own where
    // `events` is the whole table, then filtered to the scope like the tables.
    let unscoped = SessionContext::new_with_config_rt(config, runtime);
    unscoped.register_catalog("mxpulse", Arc::new(OrderedCatalog::with_schema("public")));
    for table in &snapshot.tables {
        let provider: Arc<dyn TableProvider> = match &table.delta {
            Some(delta) => {
                delta
                    .update_datafusion_session(&ctx.state())
                    .map_err(|e| QueryError::Lake(e.to_string()))?;
                delta
                    .table_provider()
                    .await
                    .map_err(|e| QueryError::Lake(e.to_string()))?
            }
            None => Arc::new(MemTable::try_new(table.schema.clone(), vec![vec![]])?),
        };
        let mut plan = LogicalPlanBuilder::scan(table.name, provider_as_source(provider), None)?;
        plan = with_absent_columns(plan, &table.schema)?;
        if table.name == "events" {
            let whole = ViewTable::new(plan.clone().build()?, None);
            unscoped.register_table("events", Arc::new(whole))?;
        }
        if let Some(server) = &scope.server {
            plan = plan.filter(col("server").eq(lit(server.as_str())))?;
        }
        if !scope.pseudonyms {
            let hidden = PSEUDONYM_COLUMNS
                .iter()
                .find(|(name, _)| *name == table.name)
                .map_or(&[][..], |(_, columns)| *columns);
            let kept: Vec<_> = table
                .schema
                .fields()
                .iter()
                .filter(|f| !hidden.contains(&f.name().as_str()))
                .map(|f| col(f.name()))
                .collect();
            plan = plan.project(kept)?;
        }
        let view = ViewTable::new(plan.build()?, None);
        ctx.register_table(table.name, Arc::new(view))?;
    }
    // Views that count distinct users need the pseudonym columns (viewers see figures
    // through the API instead).
    if scope.pseudonyms {
        let mut rooms =
            LogicalPlanBuilder::from(unscoped.sql(&rooms_select()).await?.into_unoptimized_plan());
        if let Some(server) = &scope.server {
            rooms = rooms.filter(col("server").eq(lit(server.as_str())))?;
        }
        ctx.register_table("rooms", Arc::new(ViewTable::new(rooms.build()?, None)))?;
        if let Some(publication) = publication {
            ctx.register_udf(crate::figures::disclosure::publish_udf(publication.rule()));
            for view in crate::figures::publication_views(&publication.timezone) {
                ctx.sql(&view).await?;
            }
        }
    }
    Ok(ctx)
}

/// `plan` with the columns of `schema` that its table lacks, as nulls of their type: a
/// table written before a record type gained an optional field reads like a new one
/// (docs/design.md §3).
fn with_absent_columns(
    plan: LogicalPlanBuilder,
    schema: &SchemaRef,
) -> Result<LogicalPlanBuilder, QueryError> {
    let present = plan.schema().clone();
    if schema
        .fields()
        .iter()
        .all(|f| present.has_column_with_unqualified_name(f.name()))
    {
        return Ok(plan);
    }
    let columns: Vec<_> = schema
        .fields()
        .iter()
        .map(|f| {
            if present.has_column_with_unqualified_name(f.name()) {
                col(f.name())
            } else {
                cast(lit(ScalarValue::Null), f.data_type().clone()).alias(f.name())
            }
        })
        .collect();
    Ok(plan.project(columns)?)
}

/// A session over the rollup tables of `snapshot` (`figures::rollup`): `figure_cells`,
/// `rollup_rooms` with its `rooms` view, `forum_members` (empty tables where absent), for
/// the figures API only: analysts' SQL never sees them.
pub async fn rollup_session(
    snapshot: &LakeSnapshot,
    limits: &Limits,
) -> Result<SessionContext, QueryError> {
    use crate::figures::rollup;
    let Some(rollups) = &snapshot.rollups else {
        return Err(QueryError::Lake("the lake has no rollups".into()));
    };
    let runtime = RuntimeEnvBuilder::new()
        .with_memory_limit(limits.memory_bytes, 1.0)
        .with_disk_manager_builder(
            DiskManagerBuilder::default().with_mode(DiskManagerMode::Disabled),
        )
        .build_arc()?;
    let ctx = SessionContext::new_with_config_rt(SessionConfig::new(), runtime);
    let tables = [
        ("figure_cells", Some(&rollups.cells), rollup::cells_schema()),
        (
            "rollup_rooms",
            rollups.rooms.as_ref(),
            rollup::rooms_schema(),
        ),
        (
            "forum_members",
            rollups.forum_members.as_ref(),
            rollup::forum_members_schema(),
        ),
    ];
    for (name, delta, schema) in tables {
        let provider: Arc<dyn TableProvider> = match delta {
            Some(delta) => {
                delta
                    .update_datafusion_session(&ctx.state())
                    .map_err(|e| QueryError::Lake(e.to_string()))?;
                delta
                    .table_provider()
                    .await
                    .map_err(|e| QueryError::Lake(e.to_string()))?
            }
            None => Arc::new(MemTable::try_new(schema, vec![vec![]])?),
        };
        ctx.register_table(name, provider)?;
    }
    ctx.sql(&rollup::rooms_view_sql()).await?;
    Ok(ctx)
}

/// The rows of a query, at most `max_rows` of them.
#[derive(Debug)]
pub struct QueryOutput {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
    pub rows: usize,
    /// More rows were there than `max_rows`.
    pub truncated: bool,
}

/// Runs one analyst query on `executor`: the guard, read-only planning, the row limit, and a
/// wall-clock timeout that cancels the running stream.
pub async fn run_sql(
    executor: &QueryExecutor,
    ctx: SessionContext,
    sql: String,
    limits: Limits,
) -> Result<QueryOutput, QueryError> {
    run_sql_with(executor, ctx, sql, None, limits).await
}

/// `run_sql` with `params` bound to the query's placeholders (`$1`, `$2`...), after the guard
/// and read-only planning: values never become SQL text.
pub async fn run_sql_with(
    executor: &QueryExecutor,
    ctx: SessionContext,
    sql: String,
    params: Option<ParamValues>,
    limits: Limits,
) -> Result<QueryOutput, QueryError> {
    run_sql_holding(executor, ctx, sql, params, limits, ())
        .await
        .map(|(output, ())| output)
}

/// `run_sql_with`, holding `slot` for as long as the query's work runs (an aborted query
/// frees it when it has stopped), and giving it back with the answer.
pub async fn run_sql_holding<S: Send + 'static>(
    executor: &QueryExecutor,
    ctx: SessionContext,
    sql: String,
    params: Option<ParamValues>,
    limits: Limits,
    slot: S,
) -> Result<(QueryOutput, S), QueryError> {
    guard::check(&sql)?;
    executor
        .run(limits.timeout, async move {
            let mut frame = ctx
                .sql_with_options(&sql, guard::read_only_options())
                .await?;
            if let Some(params) = params {
                frame = frame.with_param_values(params)?;
            }
            let schema: SchemaRef = Arc::new(frame.schema().as_arrow().clone());
            let mut stream = frame.execute_stream().await?;
            let mut batches = Vec::new();
            let mut rows = 0;
            let mut bytes = 0;
            let mut truncated = false;
            // The rows kept are bounded in number and in bytes (the query's memory limit: what
            // the answer holds, encoded afterwards, is not in its pool).
            while let Some(batch) = stream.next().await {
                let batch = batch?;
                let mut room = limits.max_rows - rows;
                let batch_bytes = batch.get_array_memory_size();
                if bytes + batch_bytes > limits.memory_bytes && batch.num_rows() > 0 {
                    let per_row = batch_bytes.div_ceil(batch.num_rows()).max(1);
                    room = room.min(limits.memory_bytes.saturating_sub(bytes) / per_row);
                }
                if batch.num_rows() > room {
                    batches.push(batch.slice(0, room));
                    rows += room;
                    truncated = true;
                    break;
                }
                rows += batch.num_rows();
                bytes += batch_bytes;
                batches.push(batch);
            }
            Ok((
                QueryOutput {
                    schema,
                    batches,
                    rows,
                    truncated,
                },
                slot,
            ))
        })
        .await
}
