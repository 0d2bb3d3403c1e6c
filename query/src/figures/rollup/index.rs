//! The rollups in memory: every cell of `figure_cells` and every forum, read once per version
//! of the table and kept until the next one, so that answering a request is looking cells up
//! (microseconds), not planning and scanning SQL. At the federation's size the cube holds a
//! few hundred thousand cells: tens of megabytes.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{DataType, Float64Type, Int64Type};
use datafusion::prelude::SessionContext;

use super::super::definitions::{DimKeys, DimSet};
use super::super::grouping::{Grain, GroupRow, Tally};
use super::GRAIN_DAY;
use crate::error::QueryError;
use crate::lake::LakeSnapshot;
use crate::session::{self, Limits};

/// A cell's breakdown keys (by `Dim::index`) and tally.
type KeyedTally = (DimKeys<Arc<str>>, Tally);

pub use super::super::forums::ForumRow;

/// Every cell, by figure, breakdown set and grain, then by period.
#[derive(Debug, Default)]
pub struct CellIndex {
    /// The `figure_cells` version this holds.
    pub version: Option<u64>,
    cells: HashMap<(String, DimSet, Grain), BTreeMap<String, Vec<KeyedTally>>>,
    /// Forums by members, most first (then oldest first), every size.
    pub forums: Vec<ForumRow>,
    pub len: usize,
    /// `months_digest`'s answers for this version, by months asked.
    digests: std::sync::Mutex<HashMap<Vec<String>, String>>,
}

impl CellIndex {
    /// The newest day that has a cell: where the data ends.
    pub fn newest_day(&self) -> Option<chrono::NaiveDate> {
        self.cells
            .iter()
            .filter(|((_, _, grain), _)| *grain == Grain::Day)
            .filter_map(|(_, by_period)| by_period.keys().next_back())
            .max()
            .and_then(|day| chrono::NaiveDate::parse_from_str(day, "%Y-%m-%d").ok())
    }
}

impl CellIndex {
    /// The months that have at least one cell.
    pub fn months(&self) -> std::collections::BTreeSet<String> {
        self.cells
            .iter()
            .filter(|((_, _, grain), _)| *grain == Grain::Period)
            .flat_map(|(_, by_period)| by_period.keys())
            .filter(|period| period.len() == 7)
            .cloned()
            .collect()
    }

    /// A digest of every cell of `months` (their month cells and their days' cells, every
    /// figure and breakdown): equal while nothing counted in those months changed, so that a
    /// frozen report is served as stored without being recounted, and a late record that does
    /// change one of them is seen.
    pub fn months_digest(&self, months: &[&str]) -> String {
        let asked: Vec<String> = months.iter().map(|m| (*m).to_owned()).collect();
        if let Some(known) = self
            .digests
            .lock()
            .ok()
            .and_then(|d| d.get(&asked).cloned())
        {
            return known;
        }
        let digest = self.count_months_digest(months);
        if let Ok(mut known) = self.digests.lock() {
            known.insert(asked, digest.clone());
        }
        digest
    }

    fn count_months_digest(&self, months: &[&str]) -> String {
        use sha2::{Digest, Sha256};
        let mut keys: Vec<&(String, DimSet, Grain)> = self.cells.keys().collect();
        keys.sort();
        let mut hasher = Sha256::new();
        for month in months {
            hasher.update(month.as_bytes());
            for key in &keys {
                let Some(by_period) = self.cells.get(*key) else {
                    continue;
                };
                // `YYYY-MM` and its days `YYYY-MM-DD` sort together, before the next month.
                let range = (*month).to_owned()..=format!("{month}-\u{7f}");
                for (period, cells) in by_period.range(range) {
                    hasher.update(format!("{}|{:?}|{:?}|{period}", key.0, key.1, key.2).as_bytes());
                    for (cell_keys, tally) in cells {
                        hasher.update(format!("{cell_keys:?}").as_bytes());
                        hasher.update(tally.value.to_bits().to_le_bytes());
                        hasher.update(tally.users.to_le_bytes());
                        hasher.update(tally.key.to_le_bytes());
                    }
                }
            }
        }
        hex::encode(&hasher.finalize()[..16])
    }
}

impl CellIndex {
    /// The cells of `figure` grouped by exactly `dims`, of periods `first..=last`, whose
    /// grouped keys agree with `keys` where `keys` has one, as grouped rows.
    pub fn rows(
        &self,
        figure: &str,
        dims: DimSet,
        grain: Grain,
        (first, last): (&str, &str),
        keys: &DimKeys,
    ) -> Vec<GroupRow> {
        let Some(by_period) = self.cells.get(&(figure.to_owned(), dims, grain)) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (period, cells) in by_period.range(first.to_owned()..=last.to_owned()) {
            for (cell_keys, tally) in cells {
                let agrees = keys
                    .iter()
                    .zip(cell_keys)
                    .all(|(wanted, got)| match wanted {
                        Some(wanted) => got.as_deref() == Some(wanted.as_str()),
                        None => true,
                    });
                if agrees {
                    out.push(GroupRow {
                        grain,
                        period: period.clone(),
                        dims,
                        keys: cell_keys.clone().map(|k| k.map(|k| k.to_string())),
                        tallies: vec![Some(*tally)],
                    });
                }
            }
        }
        out
    }

    /// Reads every cell and forum of the rollups in `ctx` (a `session::rollup_session`).
    async fn load(
        ctx: &SessionContext,
        version: Option<u64>,
        timezone: &str,
    ) -> Result<CellIndex, QueryError> {
        let mut index = CellIndex {
            version,
            ..Default::default()
        };
        let mut interned: HashMap<String, Arc<str>> = HashMap::new();
        let batches = ctx
            .sql("SELECT figure, grain, period, dims, server, domain, platform, family, value, users, cell_key FROM figure_cells")
            .await?
            .collect()
            .await?;
        for batch in batches {
            let text =
                |i: usize| datafusion::arrow::compute::cast(batch.column(i), &DataType::Utf8);
            let (figure, grain, period) = (text(0)?, text(1)?, text(2)?);
            let dims = datafusion::arrow::compute::cast(batch.column(3), &DataType::Int64)?;
            let keys = [text(4)?, text(5)?, text(6)?, text(7)?];
            let value = datafusion::arrow::compute::cast(batch.column(8), &DataType::Float64)?;
            let users = datafusion::arrow::compute::cast(batch.column(9), &DataType::Int64)?;
            let cell_key = datafusion::arrow::compute::cast(batch.column(10), &DataType::Int64)?;
            let cell_key = cell_key.as_primitive::<Int64Type>();
            let (figure, grain, period) = (
                figure.as_string::<i32>(),
                grain.as_string::<i32>(),
                period.as_string::<i32>(),
            );
            let (dims, value, users) = (
                dims.as_primitive::<Int64Type>(),
                value.as_primitive::<Float64Type>(),
                users.as_primitive::<Int64Type>(),
            );
            let keys = keys.each_ref().map(|k| k.as_string::<i32>().clone());
            for row in 0..batch.num_rows() {
                let mut key = |i: usize| {
                    (!keys[i].is_null(row)).then(|| {
                        let text = keys[i].value(row);
                        interned
                            .entry(text.to_owned())
                            .or_insert_with(|| Arc::from(text))
                            .clone()
                    })
                };
                let cell_keys = [key(0), key(1), key(2), key(3)];
                let grain = if grain.value(row) == GRAIN_DAY {
                    Grain::Day
                } else {
                    Grain::Period
                };
                let set = DimSet(u8::try_from(dims.value(row)).unwrap_or(0));
                index
                    .cells
                    .entry((figure.value(row).to_owned(), set, grain))
                    .or_default()
                    .entry(period.value(row).to_owned())
                    .or_default()
                    .push((
                        cell_keys,
                        Tally {
                            value: value.value(row),
                            users: users.value(row),
                            key: cell_key.value(row),
                        },
                    ));
                index.len += 1;
            }
        }
        let time = super::super::definitions::Source::Rooms
            .time(timezone)
            .replace("created_at", "r.created_at");
        let sql = format!(
            "SELECT r.server, m.members, m.members_key, arrow_cast(r.created_at, 'Int64'), \
                    to_char({time}, '%Y-%m'), r.room \
             FROM rooms AS r JOIN (SELECT room, count(*) AS members, \
                                          sum(target & {mask}) AS members_key FROM forum_members \
                                   WHERE membership = 'join' GROUP BY room) AS m ON m.room = r.room \
             WHERE r.kind = 'forum' ORDER BY m.members DESC, r.created_at",
            mask = super::super::disclosure::RECORD_KEY_MASK,
        );
        index.forums = super::super::forums::forum_rows(ctx, &sql).await?;
        Ok(index)
    }
}

/// The index of the newest rollups, loaded when their version changes.
#[derive(Debug, Default)]
pub struct IndexCache {
    cached: Arc<tokio::sync::Mutex<Option<Arc<CellIndex>>>>,
}

impl IndexCache {
    /// The index of `snapshot`'s rollups (loaded now if the cached one is of another version).
    ///
    /// The load runs as a task of its own that fills the cache when it ends: a request cut by
    /// its time limit while waiting for it does not cut the load, so the next request finds
    /// it done (or still running, and waits for it) instead of starting it again. Else a
    /// cube that takes longer to load than the limit would never be answered from.
    pub async fn index(
        &self,
        snapshot: &LakeSnapshot,
        limits: &Limits,
        timezone: &str,
    ) -> Result<Arc<CellIndex>, QueryError> {
        let Some(rollups) = &snapshot.rollups else {
            return Err(QueryError::Lake("the lake has no rollups".into()));
        };
        let version = rollups.cells.version();
        if let Some(index) = self.cached.lock().await.as_ref()
            && index.version == version
        {
            return Ok(index.clone());
        }
        let ctx = session::rollup_session(snapshot, limits).await?;
        let (cache, timezone) = (self.cached.clone(), timezone.to_owned());
        let loading = tokio::spawn(async move {
            let mut cached = cache.lock().await;
            if let Some(index) = cached.as_ref()
                && index.version == version
            {
                return Ok(index.clone());
            }
            let index = Arc::new(CellIndex::load(&ctx, version, &timezone).await?);
            tracing::info!(
                cells = index.len,
                forums = index.forums.len(),
                ?version,
                "rollups loaded"
            );
            *cached = Some(index.clone());
            Ok::<_, QueryError>(index)
        });
        loading
            .await
            .map_err(|e| QueryError::Internal(format!("loading the rollups: {e}")))?
    }
}
