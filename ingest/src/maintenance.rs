//! Lake maintenance for operators: `status` today (tables, files, rows, bytes, last commit,
//! per-partition offsets).

use std::collections::BTreeMap;

use deltalake::DeltaTable;
use futures::TryStreamExt;
use mxpulse_schemas::{AccountRecord, EventRecord, Record, VisitRecord};

use crate::error::IngestError;
use crate::lake::{LakeRoot, open_or_create, partition_offsets};
use crate::offsets::Offset;

/// Partitions probed for offsets (Delta cannot list application transactions).
pub const MAX_PARTITIONS: i32 = 256;

/// One table as the lake holds it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableStatus {
    pub table: &'static str,
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
    Ok(TableStatus {
        table: R::TABLE,
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

/// The status of the three tables (created empty if missing).
pub async fn status(root: &LakeRoot, group: &str) -> Result<Vec<TableStatus>, IngestError> {
    Ok(vec![
        table_status::<EventRecord>(&open_or_create::<EventRecord>(root).await?, group).await?,
        table_status::<VisitRecord>(&open_or_create::<VisitRecord>(root).await?, group).await?,
        table_status::<AccountRecord>(&open_or_create::<AccountRecord>(root).await?, group).await?,
    ])
}
