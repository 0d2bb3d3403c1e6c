//! Lake maintenance for operators: `status` (tables, files, rows, bytes, last commit,
//! per-partition offsets, the days each holds, the rollups), `compact`, `vacuum`, `purge`
//! (retention that keeps every published figure), and the background maintenance the ingest
//! runs: rollups brought up to date every interval, retention once a day.

use std::collections::BTreeMap;

use deltalake::DeltaTable;
use futures::TryStreamExt;
use mxpulse_schemas::{AccountRecord, DirectoryRecord, EventRecord, Record, VisitRecord};

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::error::IngestError;
use crate::lake::{LakeRoot, open_or_create, partition_offsets};
use crate::metrics::IngestMetrics;
use crate::offsets::Offset;
use crate::rollup::{RollupConfig, RollupMode, RollupReport};

/// Partitions probed for offsets (Delta cannot list application transactions).
pub const MAX_PARTITIONS: i32 = 256;

/// One table as the lake holds it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableStatus {
    pub table: &'static str,
    /// The first and last UTC day partitions it holds.
    pub days: Option<(chrono::NaiveDate, chrono::NaiveDate)>,
    pub version: i64,
    pub files: usize,
    pub rows: u64,
    pub bytes: u64,
    /// Milliseconds since the epoch of the latest commit.
    pub last_commit_ms: Option<i64>,
    /// Offsets the table holds for the consumer group, per Kafka partition.
    pub offsets: BTreeMap<i32, Offset>,
}

async fn table_status<R: Record>(
    table: &DeltaTable,
    group: &str,
) -> Result<TableStatus, IngestError> {
    let read_err = |e: deltalake::DeltaTableError| IngestError::ReadTable {
        table: R::TABLE,
        source: e.into(),
    };
    let state = table.snapshot().map_err(read_err)?;
    let files: Vec<_> = state
        .snapshot()
        .file_views(table.log_store().as_ref(), None)
        .try_collect()
        .await
        .map_err(read_err)?;
    let version = state.version();
    let days = crate::rollup::changes::present_days(table, R::TABLE, R::PARTITION_COLUMN).await?;
    Ok(TableStatus {
        table: R::TABLE,
        days: days.first().copied().zip(days.last().copied()),
        version: version as i64,
        files: files.len(),
        rows: files
            .iter()
            .map(|f| f.num_records().unwrap_or(0) as u64)
            .sum(),
        bytes: files.iter().map(|f| f.size().max(0) as u64).sum(),
        last_commit_ms: state.version_timestamp(version),
        offsets: partition_offsets(table, group, R::TOPIC, MAX_PARTITIONS).await?,
    })
}

/// The status of the record tables (created empty if missing).
pub async fn status(root: &LakeRoot, group: &str) -> Result<Vec<TableStatus>, IngestError> {
    Ok(vec![
        table_status::<EventRecord>(&open_or_create::<EventRecord>(root).await?, group).await?,
        table_status::<VisitRecord>(&open_or_create::<VisitRecord>(root).await?, group).await?,
        table_status::<AccountRecord>(&open_or_create::<AccountRecord>(root).await?, group).await?,
        table_status::<DirectoryRecord>(&open_or_create::<DirectoryRecord>(root).await?, group)
            .await?,
    ])
}

/// What a maintenance run did to one table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MaintenanceReport {
    pub table: &'static str,
    pub files_added: u64,
    pub files_removed: u64,
}

fn write_error<R: Record>(source: deltalake::DeltaTableError) -> IngestError {
    IngestError::WriteTable {
        table: R::TABLE,
        source: Box::new(source),
    }
}

/// The column a table's files are sorted by when compacted.
fn sort_column<R: Record>() -> &'static str {
    // Visits have no instant (their partition is their day): sorting by user makes the
    // distinct-user counts of the figures read runs of equal values.
    if R::TABLE == VisitRecord::TABLE {
        "user"
    } else {
        "ts"
    }
}

async fn compact_table<R: Record>(root: &LakeRoot) -> Result<MaintenanceReport, IngestError> {
    let table = open_or_create::<R>(root).await?;
    // A Z-order on one column is a sort by it: the small files of each day are rewritten into
    // large ones in time order. The ingest only appends, so this never conflicts with it.
    let (_, metrics) = table
        .optimize()
        .with_type(deltalake::operations::optimize::OptimizeType::ZOrder(vec![
            sort_column::<R>().to_owned(),
        ]))
        .await
        .map_err(write_error::<R>)?;
    Ok(MaintenanceReport {
        table: R::TABLE,
        files_added: metrics.num_files_added,
        files_removed: metrics.num_files_removed,
    })
}

/// Rewrites each day partition's files into few large files sorted by time.
pub async fn compact(root: &LakeRoot) -> Result<Vec<MaintenanceReport>, IngestError> {
    Ok(vec![
        compact_table::<EventRecord>(root).await?,
        compact_table::<VisitRecord>(root).await?,
        compact_table::<AccountRecord>(root).await?,
        compact_table::<DirectoryRecord>(root).await?,
    ])
}

async fn vacuum_table<R: Record>(
    root: &LakeRoot,
    retain: chrono::Duration,
) -> Result<MaintenanceReport, IngestError> {
    let table = open_or_create::<R>(root).await?;
    let (_, metrics) = table
        .vacuum()
        .with_retention_period(retain)
        // The operator chose the period; Delta's 7-day guard protects readers of old versions,
        // which mxpulse does not have.
        .with_enforce_retention_duration(false)
        .await
        .map_err(write_error::<R>)?;
    Ok(MaintenanceReport {
        table: R::TABLE,
        files_removed: metrics.files_deleted.len() as u64,
        ..Default::default()
    })
}

/// Deletes the files that no table version younger than `retain` uses any more.
pub async fn vacuum(
    root: &LakeRoot,
    retain: chrono::Duration,
) -> Result<Vec<MaintenanceReport>, IngestError> {
    Ok(vec![
        vacuum_table::<EventRecord>(root, retain).await?,
        vacuum_table::<VisitRecord>(root, retain).await?,
        vacuum_table::<AccountRecord>(root, retain).await?,
        vacuum_table::<DirectoryRecord>(root, retain).await?,
    ])
}

async fn purge_table<R: Record>(
    root: &LakeRoot,
    before_day: i32,
) -> Result<MaintenanceReport, IngestError> {
    use deltalake::datafusion::prelude::{col, lit};
    use deltalake::datafusion::scalar::ScalarValue;
    let table = open_or_create::<R>(root).await?;
    // A predicate on the partition column only: whole files are removed, nothing rewritten.
    let predicate = col(R::PARTITION_COLUMN).lt(lit(ScalarValue::Date32(Some(before_day))));
    let (_, metrics) = table
        .delete()
        .with_predicate(predicate)
        .await
        .map_err(write_error::<R>)?;
    Ok(MaintenanceReport {
        table: R::TABLE,
        files_added: metrics.num_added_files as u64,
        files_removed: metrics.num_removed_files as u64,
    })
}

/// What a reset of a partition's offset did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetReset {
    pub table: &'static str,
    /// What the lake held for the partition before.
    pub before: Option<Offset>,
    /// The first offset the ingest will read next.
    pub next: Offset,
    pub version: i64,
}

async fn reset_table_offsets<R: Record>(
    root: &LakeRoot,
    group: &str,
    partition: i32,
    next: Offset,
    reason: &str,
) -> Result<OffsetReset, IngestError> {
    use deltalake::kernel::Transaction;
    use deltalake::kernel::transaction::{CommitBuilder, CommitProperties};
    use deltalake::protocol::{DeltaOperation, SaveMode};
    let table = open_or_create::<R>(root).await?;
    let app_id = crate::offsets::app_id(group, R::TOPIC, partition);
    let before = crate::lake::committed_offset(&table, &app_id).await?;
    // The last offset held is the one before `next` (-1: read from the beginning); the
    // fingerprint 0 is "unknown": the message at it is not checked.
    let txns = vec![
        Transaction::new(&app_id, next.0 - 1),
        Transaction::new(crate::position::fingerprint_app_id(&app_id), 0),
    ];
    let metadata = [
        (
            "mxpulse.operation".to_owned(),
            serde_json::json!("reset-offsets"),
        ),
        ("mxpulse.reason".to_owned(), serde_json::json!(reason)),
        (
            "mxpulse.partition".to_owned(),
            serde_json::json!({"topic": R::TOPIC, "partition": partition,
                "before": before.map(|o| o.0), "next": next.0}),
        ),
    ];
    let snapshot = table.snapshot().map_err(write_error::<R>)?;
    let finalized = CommitBuilder::from(
        CommitProperties::default()
            .with_application_transactions(txns)
            .with_metadata(metadata),
    )
    .with_actions(Vec::new())
    .build(
        Some(snapshot),
        table.log_store(),
        DeltaOperation::Write {
            mode: SaveMode::Append,
            partition_by: None,
            predicate: None,
        },
    )
    .await
    .map_err(write_error::<R>)?;
    Ok(OffsetReset {
        table: R::TABLE,
        before,
        next,
        version: finalized.version() as i64,
    })
}

/// Accepts that a partition's messages before `next` will not be read (they are gone: a
/// retention that ran out, a re-created topic): the lake records `next - 1` as the last
/// offset it holds for `topic`'s `partition`, with `reason`, in the table's history. The
/// ingest reads from `next` at its next start.
pub async fn reset_offsets(
    root: &LakeRoot,
    group: &str,
    topic: &str,
    partition: i32,
    next: Offset,
    reason: &str,
) -> Result<OffsetReset, IngestError> {
    match topic {
        t if t == EventRecord::TOPIC => {
            reset_table_offsets::<EventRecord>(root, group, partition, next, reason).await
        }
        t if t == VisitRecord::TOPIC => {
            reset_table_offsets::<VisitRecord>(root, group, partition, next, reason).await
        }
        t if t == AccountRecord::TOPIC => {
            reset_table_offsets::<AccountRecord>(root, group, partition, next, reason).await
        }
        t if t == DirectoryRecord::TOPIC => {
            reset_table_offsets::<DirectoryRecord>(root, group, partition, next, reason).await
        }
        other => Err(IngestError::UnknownTopic(other.to_owned())),
    }
}

/// What a purge did: the rollup run before it, and the raw files removed.
#[derive(Debug, Clone, PartialEq)]
pub struct PurgeReport {
    pub rollup: RollupReport,
    pub tables: Vec<MaintenanceReport>,
}

/// Retention of raw records (docs/design.md §4) that keeps every figure: brings the rollups
/// up to date, records in them that the months before `before` are frozen, then removes
/// every raw day partition before `before`. Run `vacuum` afterwards to delete the files.
/// A crash in between leaves the raw rows and frozen months: nothing is lost either way.
pub async fn purge(
    root: &LakeRoot,
    rollup: &RollupConfig,
    before: chrono::NaiveDate,
) -> Result<PurgeReport, IngestError> {
    let report = crate::rollup::run(root, rollup, RollupMode::Incremental).await?;
    crate::rollup::freeze_before(root, rollup, before).await?;
    let before_day = mxpulse_schemas::time::date_to_days(before);
    Ok(PurgeReport {
        rollup: report,
        tables: vec![
            purge_table::<EventRecord>(root, before_day).await?,
            purge_table::<VisitRecord>(root, before_day).await?,
            purge_table::<AccountRecord>(root, before_day).await?,
            purge_table::<DirectoryRecord>(root, before_day).await?,
        ],
    })
}

/// What a rewrite changed.
#[derive(Debug, Default)]
pub struct RewriteReport {
    /// Rows rewritten, by table.
    pub rows: Vec<(&'static str, u64)>,
    pub rollup: Option<RollupReport>,
    /// Files deleted (the old ones, which held the value), table by table.
    pub files_deleted: u64,
    /// Commit files deleted (their file statistics could hold the value too).
    pub logs_deleted: usize,
}

async fn rewrite_table<R: Record>(
    root: &LakeRoot,
    column: &str,
    from: &str,
    to: &str,
) -> Result<u64, IngestError> {
    use deltalake::datafusion::prelude::{col, lit};
    let table = open_or_create::<R>(root).await?;
    let has_column = table
        .snapshot()
        .map_err(write_error::<R>)?
        .schema()
        .fields()
        .any(|f| f.name() == column);
    if !has_column {
        return Ok(0);
    }
    let (_, metrics) = table
        .update()
        .with_predicate(col(column).eq(lit(from)))
        .with_update(column, lit(to))
        .await
        .map_err(write_error::<R>)?;
    Ok(metrics.num_updated_rows as u64)
}

/// Forgets a published value everywhere the lake kept it: every raw row whose `column` is
/// `from` gets `to` (a new Delta version), the rollups are recounted from the raw tables, then
/// the files that held `from` and the commit files whose statistics could name it are deleted
/// (a checkpoint keeps each table readable, offsets included). For a value that should never
/// have been published: a domain of fewer than k users, a field to coarsen. Time travel to
/// versions before the rewrite is gone with it, on purpose. Months whose raw records were
/// purged keep their rollup cells as they were.
pub async fn rewrite(
    root: &LakeRoot,
    rollup: &RollupConfig,
    column: &str,
    from: &str,
    to: &str,
) -> Result<RewriteReport, IngestError> {
    let mut report = RewriteReport {
        rows: vec![
            (
                EventRecord::TABLE,
                rewrite_table::<EventRecord>(root, column, from, to).await?,
            ),
            (
                VisitRecord::TABLE,
                rewrite_table::<VisitRecord>(root, column, from, to).await?,
            ),
            (
                AccountRecord::TABLE,
                rewrite_table::<AccountRecord>(root, column, from, to).await?,
            ),
            (
                DirectoryRecord::TABLE,
                rewrite_table::<DirectoryRecord>(root, column, from, to).await?,
            ),
        ],
        ..Default::default()
    };
    report.rollup = Some(crate::rollup::run(root, rollup, RollupMode::Rebuild).await?);
    let mut urls: Vec<url::Url> = [
        EventRecord::TABLE,
        VisitRecord::TABLE,
        AccountRecord::TABLE,
        DirectoryRecord::TABLE,
    ]
    .iter()
    .map(|t| crate::lake::table_url_at(root, t))
    .collect();
    urls.extend(
        [
            mxpulse_query::figures::rollup::CELLS_TABLE,
            mxpulse_query::figures::rollup::ROOMS_TABLE,
            mxpulse_query::figures::rollup::FORUM_MEMBERS_TABLE,
        ]
        .iter()
        .map(|t| crate::lake::table_url_at(root, t)),
    );
    for url in urls {
        // A table that does not exist yet holds nothing to forget.
        let Ok(table) = crate::lake::open_existing(&url).await else {
            continue;
        };
        let (table, metrics) = table
            .vacuum()
            .with_retention_period(chrono::Duration::zero())
            .with_enforce_retention_duration(false)
            .await
            .map_err(|source| IngestError::WriteTable {
                table: "rewrite",
                source: Box::new(source),
            })?;
        report.files_deleted += metrics.files_deleted.len() as u64;
        let version = table.version().unwrap_or_default();
        deltalake::checkpoints::create_checkpoint(&table, None)
            .await
            .map_err(|source| IngestError::WriteTable {
                table: "rewrite",
                source: Box::new(source),
            })?;
        report.logs_deleted += deltalake::checkpoints::cleanup_expired_logs_for(
            version,
            table.log_store().as_ref(),
            chrono::Utc::now().timestamp_millis() + 1,
            None,
        )
        .await
        .map_err(|source| IngestError::WriteTable {
            table: "rewrite",
            source: Box::new(source),
        })?;
    }
    Ok(report)
}

/// What the background maintenance does, and how often.
#[derive(Clone, Debug)]
pub struct MaintenancePlan {
    pub rollup: RollupConfig,
    /// Rollups brought up to date at most this often; `None`: never.
    pub rollup_interval: Option<Duration>,
    /// Raw records older than this many days are purged, checked once a day; `None`: kept.
    pub retention_days: Option<u32>,
}

/// Brings the rollups up to date every interval and applies the retention once a day, until
/// `shutdown`. A failed run is logged and counted; the next one does its work.
pub fn background_maintenance(
    root: LakeRoot,
    plan: MaintenancePlan,
    metrics: Arc<IngestMetrics>,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut shutdown = shutdown;
        let tick = plan.rollup_interval.unwrap_or(Duration::from_secs(3600));
        let mut last_retention: Option<Instant> = None;
        loop {
            tokio::select! {
                _ = shutdown.changed() => break,
                () = tokio::time::sleep(tick) => {}
            }
            if *shutdown.borrow() {
                break;
            }
            if plan.rollup_interval.is_some() {
                let started = Instant::now();
                match crate::rollup::run(&root, &plan.rollup, RollupMode::Incremental).await {
                    Ok(report) => {
                        metrics.rollup_runs.fetch_add(1, Ordering::Relaxed);
                        metrics
                            .rollup_last_micros
                            .store(started.elapsed().as_micros() as u64, Ordering::Relaxed);
                        metrics
                            .rollup_last_unix_ms
                            .store(chrono::Utc::now().timestamp_millis(), Ordering::Relaxed);
                        if !report.months.is_empty() {
                            tracing::info!(months = ?report.months, cells = report.cells, rooms = report.rooms_changed, elapsed = ?report.elapsed, "rollups up to date");
                        }
                    }
                    Err(error) => {
                        metrics.rollup_failures.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(%error, "rollup run failed; the next one will do its work");
                    }
                }
            }
            let Some(days) = plan.retention_days else {
                continue;
            };
            if last_retention.is_some_and(|at| at.elapsed() < Duration::from_secs(86_400)) {
                continue;
            }
            last_retention = Some(Instant::now());
            let before = chrono::Utc::now().date_naive() - chrono::Days::new(u64::from(days));
            match purge(&root, &plan.rollup, before).await {
                Ok(report) => {
                    metrics.purges.fetch_add(1, Ordering::Relaxed);
                    let removed: u64 = report.tables.iter().map(|t| t.files_removed).sum();
                    tracing::info!(%before, files_removed = removed, "retention: raw records purged, figures kept");
                }
                Err(error) => {
                    tracing::warn!(%error, "retention purge failed; retried in a day");
                }
            }
        }
    })
}
