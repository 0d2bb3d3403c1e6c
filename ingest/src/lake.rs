//! The lake: one Delta table per record type under a root, partitioned by UTC day, created on
//! first use from the record's Arrow schema. Also the reads the ingest itself needs (the
//! offsets a table holds, the identities of a day) and that tests and `lake status` use.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use deltalake::datafusion::prelude::{DataFrame, SessionContext, col, lit};
use deltalake::datafusion::scalar::ScalarValue;
use deltalake::kernel::StructType;
use deltalake::kernel::engine::arrow_conversion::TryIntoKernel as _;
use deltalake::{DeltaTable, DeltaTableBuilder};
use mxpulse_schemas::Record;
use url::Url;

use crate::error::IngestError;
use crate::offsets::Offset;

/// Where the tables live.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LakeRoot(Url);

impl LakeRoot {
    /// A local directory (created if missing), a `file://` URL, or `s3://bucket/prefix` on an
    /// S3-compatible store (`crate::store`).
    pub fn parse(location: &str) -> Result<LakeRoot, IngestError> {
        let err = |reason: String| IngestError::LakeLocation {
            location: location.to_owned(),
            reason,
        };
        let url = match Url::parse(location) {
            Ok(url) if url.scheme() == "file" => url,
            Ok(url) if url.scheme() == "s3" => {
                if url.host_str().is_none_or(str::is_empty) {
                    return Err(err("s3:// needs a bucket: s3://bucket/prefix".into()));
                }
                url
            }
            Ok(url) if url.scheme().len() > 1 => {
                return Err(err(format!(
                    "{}:// lakes are not supported; use a local directory or s3://bucket/prefix",
                    url.scheme()
                )));
            }
            _ => {
                let path = Path::new(location);
                std::fs::create_dir_all(path).map_err(|e| err(e.to_string()))?;
                let path = path.canonicalize().map_err(|e| err(e.to_string()))?;
                Url::from_directory_path(&path).map_err(|()| err("not an absolute path".into()))?
            }
        };
        let mut url = url;
        if !url.path().ends_with('/') {
            url.set_path(&format!("{}/", url.path()));
        }
        Ok(LakeRoot(url))
    }

    pub fn url(&self) -> &Url {
        &self.0
    }

    /// The URL of the table that holds `R`.
    pub fn table_url<R: Record>(&self) -> Url {
        // A table name is a plain word, so joining it cannot fail.
        self.0
            .join(&format!("{}/", R::TABLE))
            .unwrap_or_else(|_| self.0.clone())
    }
}

/// Opens the table of `R`, creating it (schema and partitioning from `R`) when absent.
pub async fn open_or_create<R: Record>(root: &LakeRoot) -> Result<DeltaTable, IngestError> {
    let spec = TableSpec {
        name: R::TABLE,
        schema: R::arrow_schema(),
        partition_columns: &[R::PARTITION_COLUMN],
        configuration: Vec::new(),
    };
    open_or_create_at(root.table_url::<R>(), &spec).await
}

/// What a table is created with.
pub struct TableSpec<'a> {
    pub name: &'static str,
    pub schema: deltalake::arrow::datatypes::SchemaRef,
    pub partition_columns: &'a [&'static str],
    /// Table properties (`key`, value) set at creation.
    pub configuration: Vec<(&'static str, String)>,
}

/// Opens the table at `url`, creating it from `spec` when absent.
pub async fn open_or_create_at(url: Url, spec: &TableSpec<'_>) -> Result<DeltaTable, IngestError> {
    let open_err = |source: deltalake::DeltaTableError| IngestError::OpenTable {
        table: spec.name,
        source: Box::new(source),
    };
    if let Ok(path) = url.to_file_path() {
        // delta-rs creates a table only in a directory that exists.
        std::fs::create_dir_all(&path).map_err(|e| IngestError::LakeLocation {
            location: url.to_string(),
            reason: e.to_string(),
        })?;
    }
    let columns: StructType = spec
        .schema
        .as_ref()
        .try_into_kernel()
        .map_err(|e| open_err(e.into()))?;
    if let Ok(table) = builder(&url).map_err(open_err)?.load().await {
        return with_new_columns(table, &url, &columns, spec.name).await;
    }
    let created = builder(&url)
        .and_then(DeltaTableBuilder::build)
        .map_err(open_err)?
        .create()
        .with_table_name(spec.name)
        .with_columns(columns.fields().cloned())
        .with_partition_columns(spec.partition_columns.iter().copied())
        .with_configuration(
            spec.configuration
                .iter()
                .map(|(key, value)| (*key, Some(value.clone()))),
        )
        .with_raise_if_key_not_exists(false)
        .await;
    match created {
        Ok(table) => Ok(table),
        // Another instance created it between our load and our create: use theirs.
        Err(_) => builder(&url)
            .map_err(open_err)?
            .load()
            .await
            .map_err(open_err),
    }
}

/// `table`, with the nullable columns `columns` has and the table lacks added at its end: a
/// record type gains optional fields over time (docs/design.md §3), and files written
/// before read them as null. A missing column that may not be null is refused.
async fn with_new_columns(
    table: DeltaTable,
    url: &Url,
    columns: &StructType,
    name: &'static str,
) -> Result<DeltaTable, IngestError> {
    let open_err = |source: deltalake::DeltaTableError| IngestError::OpenTable {
        table: name,
        source: Box::new(source),
    };
    let missing = |table: &DeltaTable| -> Result<Vec<_>, IngestError> {
        let known = table.snapshot().map_err(open_err)?.schema();
        Ok(columns
            .fields()
            .filter(|field| known.field(field.name()).is_none())
            .cloned()
            .collect())
    };
    let new_fields = missing(&table)?;
    if new_fields.is_empty() {
        return Ok(table);
    }
    if let Some(field) = new_fields.iter().find(|field| !field.is_nullable()) {
        return Err(open_err(deltalake::DeltaTableError::Generic(format!(
            "the table lacks the column `{}`, which may not be null: it cannot be added to \
             the rows already written",
            field.name()
        ))));
    }
    let names: Vec<String> = new_fields.iter().map(|f| f.name().to_owned()).collect();
    match table.add_columns().with_fields(new_fields).await {
        Ok(table) => {
            tracing::info!(table = name, columns = ?names, "added columns to the table");
            Ok(table)
        }
        // Another writer may have added them first: what counts is that they are there.
        Err(error) => {
            let table = builder(url)
                .map_err(open_err)?
                .load()
                .await
                .map_err(open_err)?;
            if missing(&table)?.is_empty() {
                Ok(table)
            } else {
                Err(open_err(error))
            }
        }
    }
}

/// An existing table, opened as every writer opens one.
pub async fn open_existing(url: &Url) -> Result<DeltaTable, deltalake::DeltaTableError> {
    builder(url)?.load().await
}

/// How every writer opens a table: a local one through `SyncedLocalStore`, so that what it
/// writes is on disk before the write returns (`durable.rs`).
fn builder(url: &Url) -> Result<DeltaTableBuilder, deltalake::DeltaTableError> {
    let builder = DeltaTableBuilder::from_url(url.clone())?;
    Ok(if url.scheme() == "file" {
        builder.with_storage_backend(
            std::sync::Arc::new(crate::durable::SyncedLocalStore::new()),
            url.clone(),
        )
    } else {
        builder
    })
}

/// The URL of a table at `path` (`rollups/figure_cells`) under the root.
pub fn table_url_at(root: &LakeRoot, path: &str) -> Url {
    root.url()
        .join(&format!("{path}/"))
        .unwrap_or_else(|_| root.url().clone())
}

/// The last offset of `app_id` that the table's current snapshot holds.
pub async fn committed_offset(
    table: &DeltaTable,
    app_id: &str,
) -> Result<Option<Offset>, IngestError> {
    let snapshot =
        table.snapshot().map_err(
            |source: deltalake::DeltaTableError| IngestError::OpenTable {
                table: "?",
                source: Box::new(source),
            },
        )?;
    let version = snapshot
        .transaction_version(table.log_store().as_ref(), app_id)
        .await
        .map_err(
            |source: deltalake::DeltaTableError| IngestError::OpenTable {
                table: "?",
                source: Box::new(source),
            },
        )?;
    Ok(version.map(Offset))
}

/// The offsets the table holds for `group` on `topic`, probing partitions `0..max_partitions`
/// (Delta has no listing of application transactions).
pub async fn partition_offsets(
    table: &DeltaTable,
    group: &str,
    topic: &str,
    max_partitions: i32,
) -> Result<BTreeMap<i32, Offset>, IngestError> {
    let mut offsets = BTreeMap::new();
    for partition in 0..max_partitions {
        if let Some(offset) =
            committed_offset(table, &crate::offsets::app_id(group, topic, partition)).await?
        {
            offsets.insert(partition, offset);
        }
    }
    Ok(offsets)
}

fn read_error<R: Record>(
    source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
) -> IngestError {
    IngestError::ReadTable {
        table: R::TABLE,
        source: source.into(),
    }
}

/// The table's current snapshot as a DataFusion frame, in a session of its own.
async fn frame<R: Record>(table: &DeltaTable) -> Result<DataFrame, IngestError> {
    let ctx = SessionContext::new();
    table
        .update_datafusion_session(&ctx.state())
        .map_err(read_error::<R>)?;
    let provider = table.table_provider().await.map_err(read_error::<R>)?;
    ctx.read_table(provider).map_err(read_error::<R>)
}

/// Every record of the table's current snapshot.
pub async fn read_all<R: Record>(table: &DeltaTable) -> Result<Vec<R>, IngestError> {
    let batches = frame::<R>(table)
        .await?
        .collect()
        .await
        .map_err(read_error::<R>)?;
    let mut records = Vec::new();
    for batch in &batches {
        records.extend(R::from_record_batch(batch).map_err(read_error::<R>)?);
    }
    Ok(records)
}

/// The identities stored in one day partition (reading only the identity columns).
pub async fn identities_of_day<R: Record>(
    table: &DeltaTable,
    day: i32,
) -> Result<crate::identity::KeySet, IngestError> {
    let batches = frame::<R>(table)
        .await?
        .filter(col(R::PARTITION_COLUMN).eq(lit(ScalarValue::Date32(Some(day)))))
        .and_then(|frame| frame.select_columns(R::IDENTITY_COLUMNS))
        .map_err(read_error::<R>)?
        .collect()
        .await
        .map_err(read_error::<R>)?;
    let mut keys = crate::identity::KeySet::default();
    for batch in &batches {
        keys.extend(R::key_prints_from_batch(batch).map_err(read_error::<R>)?);
    }
    Ok(keys)
}

/// How the lake's Parquet files are written: zstd, and page-level statistics (which also
/// write the column and offset indexes readers prune pages with).
pub fn writer_properties() -> deltalake::parquet::file::properties::WriterProperties {
    use deltalake::parquet::basic::{Compression, ZstdLevel};
    use deltalake::parquet::file::properties::{EnabledStatistics, WriterProperties};
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).unwrap_or_default()))
        .set_statistics_enabled(EnabledStatistics::Page)
        .build()
}

/// Appends `records` (sorted by time, as the ingest writes them) in one commit, without
/// offsets or deduplication: for the generator's lake fast path and tests, never for Kafka.
pub async fn append<R: Record>(
    table: &mut DeltaTable,
    mut records: Vec<R>,
) -> Result<(), IngestError> {
    use deltalake::writer::{DeltaWriter, RecordBatchWriter};
    if records.is_empty() {
        return Ok(());
    }
    records.sort_by_key(Record::time_micros);
    let write_err = |source: deltalake::DeltaTableError| IngestError::WriteTable {
        table: R::TABLE,
        source: Box::new(source),
    };
    let mut writer = RecordBatchWriter::for_table(table)
        .map_err(write_err)?
        .with_writer_properties(writer_properties());
    for chunk in records.chunks(500_000) {
        let batch = R::to_record_batch(chunk).map_err(|source| IngestError::Batch {
            table: R::TABLE,
            source,
        })?;
        writer.write(batch).await.map_err(write_err)?;
    }
    writer.flush_and_commit(table).await.map_err(write_err)?;
    Ok(())
}

/// Rows of the table's current snapshot, from its files' statistics.
pub async fn row_count(table: &DeltaTable) -> Result<u64, IngestError> {
    use futures::TryStreamExt as _;
    let name = "?";
    let snapshot = table.snapshot().map_err(read_error_named(name))?;
    let files: Vec<_> = snapshot
        .snapshot()
        .file_views(table.log_store().as_ref(), None)
        .try_collect()
        .await
        .map_err(read_error_named(name))?;
    Ok(files
        .iter()
        .map(|f| f.num_records().unwrap_or(0) as u64)
        .sum())
}

fn read_error_named(table: &'static str) -> impl Fn(deltalake::DeltaTableError) -> IngestError {
    move |e| IngestError::ReadTable {
        table,
        source: e.into(),
    }
}

/// Shared handle for readers that refresh a table on their own schedule.
pub type SharedTable = Arc<tokio::sync::Mutex<DeltaTable>>;
