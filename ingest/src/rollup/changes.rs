//! What changed in a raw table since a version: the UTC day partitions that commits after it
//! added rows to or removed rows from, read from the Delta log. Compaction (rewrites with
//! `dataChange: false`) changes no day: the rollups need not be recounted after it.

use std::collections::BTreeSet;

use chrono::NaiveDate;
use deltalake::DeltaTable;
use deltalake::kernel::Action;
use futures::TryStreamExt as _;

use crate::error::IngestError;

/// The days whose rows changed, or every day.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Changes {
    All,
    Days(BTreeSet<NaiveDate>),
}

impl Changes {
    pub fn none() -> Changes {
        Changes::Days(BTreeSet::new())
    }

    pub fn is_empty(&self) -> bool {
        matches!(self, Changes::Days(days) if days.is_empty())
    }
}

fn read_err(table: &'static str) -> impl Fn(deltalake::DeltaTableError) -> IngestError {
    move |e| IngestError::ReadTable {
        table,
        source: e.into(),
    }
}

fn day_of(
    partition_values: &std::collections::HashMap<String, Option<String>>,
    column: &str,
) -> Option<NaiveDate> {
    partition_values
        .get(column)?
        .as_deref()
        .and_then(|text| NaiveDate::parse_from_str(text, "%Y-%m-%d").ok())
}

/// The days changed by the commits after `since` up to the table's loaded version; `All` when
/// there is no `since`, or when a commit of that range is no longer in the log (expired), or
/// does not say its partition.
pub async fn since(
    table: &DeltaTable,
    name: &'static str,
    partition_column: &str,
    since: Option<i64>,
) -> Result<Changes, IngestError> {
    let Some(since) = since else {
        return Ok(Changes::All);
    };
    let Some(version) = table.version() else {
        return Ok(Changes::none());
    };
    let mut days = BTreeSet::new();
    let first = u64::try_from(since + 1).unwrap_or(0);
    for v in first..=version {
        let Some(bytes) = table
            .log_store()
            .read_commit_entry(v)
            .await
            .map_err(read_err(name))?
        else {
            tracing::info!(
                table = name,
                version = v,
                "commit no longer in the log: recounting every day"
            );
            return Ok(Changes::All);
        };
        for action in deltalake::logstore::get_actions(v, &bytes).map_err(read_err(name))? {
            let day = match &action {
                Action::Add(add) if add.data_change => {
                    day_of(&add.partition_values, partition_column)
                }
                Action::Remove(remove) if remove.data_change => match &remove.partition_values {
                    Some(values) => day_of(values, partition_column),
                    None => return Ok(Changes::All),
                },
                _ => continue,
            };
            match day {
                Some(day) => {
                    days.insert(day);
                }
                None => return Ok(Changes::All),
            }
        }
    }
    Ok(Changes::Days(days))
}

/// Every day partition the table holds now.
pub async fn present_days(
    table: &DeltaTable,
    name: &'static str,
    partition_column: &str,
) -> Result<BTreeSet<NaiveDate>, IngestError> {
    let Ok(snapshot) = table.snapshot() else {
        return Ok(BTreeSet::new());
    };
    let files: Vec<_> = snapshot
        .snapshot()
        .file_views(table.log_store().as_ref(), None)
        .try_collect()
        .await
        .map_err(read_err(name))?;
    Ok(files
        .iter()
        .filter_map(|f| day_of(&f.partition_values_map(), partition_column))
        .collect())
}
