//! The lake as the query service sees it: the three Delta tables and the rollups, opened
//! read-only; an answer holds every commit older than the refresh interval, without a
//! restart. A table that does not exist yet reads as empty (the service never
//! creates one); a lake without rollups is answered from the raw tables.

use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::datatypes::SchemaRef;
use deltalake::{DeltaTable, DeltaTableBuilder};
use mxpulse_schemas::{AccountRecord, DirectoryRecord, EventRecord, Record, VisitRecord};
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
    /// Whether the cells carry their cell keys (rollups written before them do not, and
    /// cannot be published until the rollup job recounts them).
    pub has_cell_keys: bool,
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
    Ok(Some(rollup_tables(
        cells,
        load_table(root, rollup::ROOMS_TABLE).await?,
        load_table(root, rollup::FORUM_MEMBERS_TABLE).await?,
    )))
}

/// `table` brought to its newest version (only the log entries after the one it holds are
/// read), or loaded if it did not exist.
async fn newest(
    root: &Url,
    path: &str,
    table: Option<&DeltaTable>,
) -> Result<Option<DeltaTable>, QueryError> {
    let Some(table) = table else {
        return load_table(root, path).await;
    };
    let mut table = table.clone();
    table
        .update_incremental(None)
        .await
        .map_err(|e| QueryError::Lake(format!("{path}: {e}")))?;
    Ok(Some(table))
}

fn rollup_tables(
    cells: DeltaTable,
    rooms: Option<DeltaTable>,
    forum_members: Option<DeltaTable>,
) -> RollupTables {
    use crate::figures::rollup;
    let timezone = cells.snapshot().ok().and_then(|s| {
        s.metadata()
            .configuration()
            .get(rollup::TIMEZONE_KEY)
            .cloned()
    });
    let has_cell_keys = cells.snapshot().ok().is_some_and(|s| {
        s.schema()
            .fields()
            .any(|f| f.name() == rollup::CELL_KEY_COLUMN)
    });
    RollupTables {
        has_cell_keys,
        as_of_ms: commit_ms(&cells),
        rooms,
        forum_members,
        timezone,
        cells,
    }
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

    /// The snapshot holding the commits made since this one, `None` when there are none.
    /// Each table reads only its log after the version it holds: when nothing changed, a
    /// listing per table, which is what lets the service keep its snapshot fresh cheaply.
    pub async fn newer(&self, root: &Url) -> Result<Option<Self>, QueryError> {
        use crate::figures::rollup;
        let mut tables = Vec::with_capacity(self.tables.len());
        for table in &self.tables {
            tables.push(LakeTable {
                name: table.name,
                schema: table.schema.clone(),
                delta: newest(root, table.name, table.delta.as_ref()).await?,
            });
        }
        let rollups = match &self.rollups {
            None => load_rollups(root).await?,
            Some(held) => {
                let cells = newest(root, rollup::CELLS_TABLE, Some(&held.cells)).await?;
                let rooms = newest(root, rollup::ROOMS_TABLE, held.rooms.as_ref()).await?;
                let forum_members = newest(
                    root,
                    rollup::FORUM_MEMBERS_TABLE,
                    held.forum_members.as_ref(),
                )
                .await?;
                cells.map(|cells| rollup_tables(cells, rooms, forum_members))
            }
        };
        let snapshot = Self { tables, rollups };
        Ok((snapshot.version() != self.version()).then_some(snapshot))
    }

    pub async fn load(root: &Url) -> Result<Self, QueryError> {
        Ok(Self {
            tables: vec![
                load::<EventRecord>(root).await?,
                load::<VisitRecord>(root).await?,
                load::<AccountRecord>(root).await?,
                load::<DirectoryRecord>(root).await?,
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
    shared: Arc<Cached>,
}

/// How long after the last request the background reloads go on, in refresh intervals (a
/// minute at the default two seconds): a service nobody asks reads nothing.
const KEEP_FRESH_AFTER_REQUEST: u32 = 30;

/// How often the lake is read whole rather than from the versions held, in refresh
/// intervals (under two minutes by default): a log damaged where it was already read (a
/// commit file rewritten, a disk error) shows within that, in `/health` and the answers.
const WHOLE_LOAD_EVERY: u32 = 50;

#[derive(Default)]
struct Cached {
    /// The newest snapshot, with the moment its load started: it holds every commit made
    /// before that moment.
    current: std::sync::Mutex<Option<(Instant, Arc<LakeSnapshot>)>>,
    /// Held by the one load running.
    loading: tokio::sync::Mutex<()>,
    /// Why the last load failed and when, until one succeeds.
    failure: std::sync::Mutex<Option<(Instant, String)>>,
    /// When a request last asked for a snapshot.
    asked: std::sync::Mutex<Option<Instant>>,
    /// When the last load of the whole lake started.
    loaded_whole: std::sync::Mutex<Option<Instant>>,
}

impl Cached {
    fn current(&self) -> Option<(Instant, Arc<LakeSnapshot>)> {
        self.current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The current snapshot if its load started less than `refresh` ago.
    fn fresh(&self, refresh: Duration) -> Option<Arc<LakeSnapshot>> {
        self.current()
            .filter(|(started, _)| started.elapsed() < refresh)
            .map(|(_, snapshot)| snapshot)
    }

    fn set(&self, started: Instant, snapshot: Arc<LakeSnapshot>) {
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = Some((started, snapshot));
        *self.failure.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    fn fail(&self, failure: String) {
        *self.failure.lock().unwrap_or_else(|e| e.into_inner()) = Some((Instant::now(), failure));
    }

    fn failed_within(&self, window: Duration) -> bool {
        self.failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .is_some_and(|(at, _)| at.elapsed() < window)
    }

    fn asked_within(&self, window: Duration) -> bool {
        self.asked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some_and(|at| at.elapsed() < window)
    }

    /// Brings the snapshot up to date with `root` (the held one moved on by the commits made
    /// since, or loaded whole the first time) and keeps it; the caller holds `loading`.
    async fn reload(&self, root: &Url, refresh: Duration) -> Result<Arc<LakeSnapshot>, QueryError> {
        let started = Instant::now();
        let whole_due = self
            .loaded_whole
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_none_or(|at| at.elapsed() >= refresh * WHOLE_LOAD_EVERY);
        // A table re-created under the same path (a rebuilt rollup) cannot move forward from
        // the version held: it is then loaded whole, like the first time.
        let moved_on = match self.current() {
            Some((_, held)) if !whole_due => held
                .newer(root)
                .await
                .ok()
                .map(|n| n.map_or(held, Arc::new)),
            _ => None,
        };
        let loaded = match moved_on {
            Some(snapshot) => Ok(snapshot),
            None => {
                *self.loaded_whole.lock().unwrap_or_else(|e| e.into_inner()) = Some(started);
                LakeSnapshot::load(root).await.map(Arc::new)
            }
        };
        match loaded {
            Ok(snapshot) => {
                self.set(started, snapshot.clone());
                Ok(snapshot)
            }
            Err(error) => {
                self.fail(error.to_string());
                Err(error)
            }
        }
    }
}

impl Lake {
    pub fn new(root: Url, refresh: Duration) -> Self {
        Self {
            root,
            refresh,
            shared: Arc::default(),
        }
    }

    /// A snapshot holding every commit made more than `refresh` ago (docs/design.md §6).
    ///
    /// Loading reads six Delta logs (tens to hundreds of milliseconds while the ingest
    /// commits). While requests come, a background task reloads every half `refresh`, so
    /// the snapshot is fresh when asked and no request waits (every request waiting for a
    /// reload made the dashboards' p99 at 100 clients). After an idle spell (nobody asked for
    /// a minute, and then nothing is read) the first request waits for a reload: answering it
    /// from the old snapshot showed a product lead the morning's figures after lunch. A load
    /// that fails leaves the previous snapshot to answer (their `as_of` says how old their
    /// data is; `/health` fails) and is tried again after `refresh`.
    pub async fn snapshot(&self) -> Result<Arc<LakeSnapshot>, QueryError> {
        *self.shared.asked.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
        if let Some(snapshot) = self.shared.fresh(self.refresh) {
            return Ok(snapshot);
        }
        let first = self.shared.current().is_none();
        let _loading = self.shared.loading.lock().await;
        // Another request's load, started after this one asked, will do.
        if let Some(snapshot) = self.shared.fresh(self.refresh) {
            return Ok(snapshot);
        }
        let stale = self.shared.current().map(|(_, snapshot)| snapshot);
        if let Some(stale) = &stale
            && self.shared.failed_within(self.refresh)
        {
            return Ok(stale.clone());
        }
        let reloaded = self.shared.reload(&self.root, self.refresh).await;
        if first && reloaded.is_ok() {
            self.keep_fresh();
        }
        match (reloaded, stale) {
            (Ok(snapshot), _) => Ok(snapshot),
            (Err(error), Some(stale)) => {
                tracing::warn!(%error, "cannot reload the lake: answering from the previous snapshot");
                Ok(stale)
            }
            (Err(error), None) => Err(error),
        }
    }

    /// Starts the background reloads; they end with the last `Lake` holding the cache.
    fn keep_fresh(&self) {
        let (shared, root, refresh) = (
            Arc::downgrade(&self.shared),
            self.root.clone(),
            self.refresh,
        );
        tokio::spawn(async move {
            let period = (refresh / 2).max(Duration::from_millis(10));
            loop {
                tokio::time::sleep(period).await;
                let Some(shared) = shared.upgrade() else {
                    return;
                };
                if !shared.asked_within(refresh * KEEP_FRESH_AFTER_REQUEST) {
                    continue;
                }
                let Ok(_loading) = shared.loading.try_lock() else {
                    continue;
                };
                if let Err(error) = shared.reload(&root, refresh).await {
                    tracing::warn!(%error, "cannot reload the lake: answering from the previous snapshot");
                }
            }
        });
    }

    /// Why the lake could not be reloaded, while the answers come from an older snapshot.
    pub fn load_failure(&self) -> Option<String> {
        self.shared
            .failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|(_, why)| why.clone())
    }
}
