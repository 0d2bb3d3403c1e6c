//! The lake as the query service sees it: the three Delta tables and the rollups, opened
//! read-only and reloaded when they are older than the refresh interval, so new commits show
//! without a restart. A table that does not exist yet reads as empty (the service never
//! creates one); a lake without rollups is answered from the raw tables.

use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::datatypes::SchemaRef;
use deltalake::{DeltaTable, DeltaTableBuilder};
use mxpulse_schemas::{AccountRecord, EventRecord, Record, VisitRecord};
use url::Url;

use crate::error::QueryError;

/// One table of a snapshot: its name, its schema, and the Delta table if it exists.
pub struct LakeTable {
    pub name: &'static str,
    pub schema: SchemaRef,
    pub delta: Option<DeltaTable>,
}

/// The rollup tables (`figures::rollup`) at one moment.
pub struct RollupTables {
    pub cells: DeltaTable,
    pub rooms: Option<DeltaTable>,
    pub forum_members: Option<DeltaTable>,
    /// The time zone the rollups' months were cut in.
    pub timezone: Option<String>,
    /// When the rollups were last written (milliseconds since the epoch).
    pub as_of_ms: Option<i64>,
}

/// The three tables, and the rollups if the lake has them, at one moment.
pub struct LakeSnapshot {
    pub tables: Vec<LakeTable>,
    pub rollups: Option<RollupTables>,
}

/// The Delta table at `path` under `root`, if it exists.
pub async fn load_table(root: &Url, path: &str) -> Result<Option<DeltaTable>, QueryError> {
    let url = root
        .join(&format!("{path}/"))
        .map_err(|e| QueryError::Lake(e.to_string()))?;
    if !has_delta_log(&url).await? {
        return Ok(None);
    }
    let table = DeltaTableBuilder::from_url(url.clone())
        .map_err(|e| QueryError::Lake(format!("{url}: {e}")))?
        .load()
        .await
        .map_err(|e| QueryError::Lake(format!("{url}: {e}")))?;
    Ok(Some(table))
}

/// Whether a Delta table lives at `url`: its `_delta_log` directory, or on object storage, at
/// least one object under `_delta_log/`.
pub async fn has_delta_log(url: &Url) -> Result<bool, QueryError> {
    use deltalake::logstore::object_store::path::Path as StorePath;
    use futures::StreamExt;
    if let Ok(path) = url.to_file_path() {
        return Ok(path.join("_delta_log").is_dir());
    }
    let store = deltalake::logstore::store_for(url, std::iter::empty::<(String, String)>())
        .map_err(|e| QueryError::Lake(format!("{url}: {e}")))?;
    let mut listing = store.list(Some(&StorePath::from("_delta_log")));
    match listing.next().await {
        None => Ok(false),
        Some(Ok(_)) => Ok(true),
        Some(Err(e)) => Err(QueryError::Lake(format!("{url}: {e}"))),
    }
}

async fn load<R: Record>(root: &Url) -> Result<LakeTable, QueryError> {
    Ok(LakeTable {
        name: R::TABLE,
        schema: R::arrow_schema(),
        delta: load_table(root, R::TABLE).await?,
    })
}

/// Milliseconds since the epoch of a table's latest commit.
pub fn commit_ms(table: &DeltaTable) -> Option<i64> {
    let snapshot = table.snapshot().ok()?;
    snapshot.version_timestamp(snapshot.version())
}

async fn load_rollups(root: &Url) -> Result<Option<RollupTables>, QueryError> {
    use crate::figures::rollup;
    let Some(cells) = load_table(root, rollup::CELLS_TABLE).await? else {
        return Ok(None);
    };
    let timezone = cells.snapshot().ok().and_then(|s| {
        s.metadata()
            .configuration()
            .get(rollup::TIMEZONE_KEY)
            .cloned()
    });
    Ok(Some(RollupTables {
        as_of_ms: commit_ms(&cells),
        rooms: load_table(root, rollup::ROOMS_TABLE).await?,
        forum_members: load_table(root, rollup::FORUM_MEMBERS_TABLE).await?,
        timezone,
        cells,
    }))
}

/// The version of every table of a snapshot (events, visits, accounts, then the rollups'
/// cells, rooms and forum members; `None`: no such table yet). Two snapshots at the same
/// `LakeVersion` give the same figures.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct LakeVersion(Vec<Option<u64>>);

impl LakeVersion {
    pub fn of(versions: Vec<Option<u64>>) -> Self {
        Self(versions)
    }

    /// Every table at the same or a later version than in `other`, one at least later. Delta
    /// versions only grow, so of two snapshots of one lake the later is newer (or equal).
    pub fn is_newer_than(&self, other: &LakeVersion) -> bool {
        self.0.len() == other.0.len()
            && self.0.iter().zip(&other.0).all(|(a, b)| a >= b)
            && self != other
    }
}

impl LakeSnapshot {
    /// The versions of the tables this snapshot reads.
    pub fn version(&self) -> LakeVersion {
        let rollups = self.rollups.as_ref();
        let versions = self
            .tables
            .iter()
            .map(|t| t.delta.as_ref().and_then(DeltaTable::version))
            .chain([
                rollups.and_then(|r| r.cells.version()),
                rollups.and_then(|r| r.rooms.as_ref().and_then(DeltaTable::version)),
                rollups.and_then(|r| r.forum_members.as_ref().and_then(DeltaTable::version)),
            ])
            .collect();
        LakeVersion(versions)
    }

    pub async fn load(root: &Url) -> Result<Self, QueryError> {
        Ok(Self {
            tables: vec![
                load::<EventRecord>(root).await?,
                load::<VisitRecord>(root).await?,
                load::<AccountRecord>(root).await?,
            ],
            rollups: load_rollups(root).await?,
        })
    }

    /// Milliseconds since the epoch of the newest commit to a raw table.
    pub fn newest_commit_ms(&self) -> Option<i64> {
        self.tables
            .iter()
            .filter_map(|t| t.delta.as_ref().and_then(commit_ms))
            .max()
    }
}

/// The lake with a cached snapshot.
pub struct Lake {
    root: Url,
    refresh: Duration,
    cached: tokio::sync::Mutex<Option<(Instant, Arc<LakeSnapshot>)>>,
}

impl Lake {
    pub fn new(root: Url, refresh: Duration) -> Self {
        Self {
            root,
            refresh,
            cached: tokio::sync::Mutex::new(None),
        }
    }

    /// The latest snapshot, at most `refresh` old.
    pub async fn snapshot(&self) -> Result<Arc<LakeSnapshot>, QueryError> {
        let mut cached = self.cached.lock().await;
        if let Some((at, snapshot)) = cached.as_ref()
            && at.elapsed() < self.refresh
        {
            return Ok(snapshot.clone());
        }
        let snapshot = Arc::new(LakeSnapshot::load(&self.root).await?);
        *cached = Some((Instant::now(), snapshot.clone()));
        Ok(snapshot)
    }
}
