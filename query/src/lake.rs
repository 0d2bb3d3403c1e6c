//! The lake as the query service sees it: the three Delta tables, opened read-only and
//! reloaded when they are older than the refresh interval, so new commits show without a
//! restart. A table that does not exist yet reads as empty (the service never creates one).

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

/// The three tables at one moment.
pub struct LakeSnapshot {
    pub tables: Vec<LakeTable>,
}

async fn load<R: Record>(root: &Url) -> Result<LakeTable, QueryError> {
    let url = root
        .join(&format!("{}/", R::TABLE))
        .map_err(|e| QueryError::Lake(e.to_string()))?;
    let exists = url
        .to_file_path()
        .map(|path| path.join("_delta_log").is_dir())
        .unwrap_or(true);
    let delta = if exists {
        let table = DeltaTableBuilder::from_url(url.clone())
            .map_err(|e| QueryError::Lake(format!("{url}: {e}")))?
            .load()
            .await
            .map_err(|e| QueryError::Lake(format!("{url}: {e}")))?;
        Some(table)
    } else {
        None
    };
    Ok(LakeTable {
        name: R::TABLE,
        schema: R::arrow_schema(),
        delta,
    })
}

impl LakeSnapshot {
    pub async fn load(root: &Url) -> Result<Self, QueryError> {
        Ok(Self {
            tables: vec![
                load::<EventRecord>(root).await?,
                load::<VisitRecord>(root).await?,
                load::<AccountRecord>(root).await?,
            ],
        })
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
