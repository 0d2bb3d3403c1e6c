//! Keeps the `rooms` and `forum_members` rollups: the facts of the days that changed are
//! folded into the rooms the rollup holds (merging is idempotent, so a day folded twice
//! changes nothing); a room whose creation arrives is read whole from the raw events since
//! the day before it was created. Only rooms whose facts changed are rewritten, in the
//! partitions of their months of creation; their months are recounted in `figure_cells`.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::NaiveDate;
use deltalake::DeltaTable;
use deltalake::datafusion::prelude::SessionContext;
use deltalake::protocol::SaveMode;
use mxpulse_query::figures::grouping::quote;
use mxpulse_query::figures::rollup::rooms::{
    Days, Memberships, RolledRoom, RoomFacts, facts_from_events, memberships_batch,
    memberships_from_batches, memberships_from_events, merge_memberships, rooms_batch,
    rooms_from_batches,
};
use mxpulse_query::figures::rollup::{FORUM_MEMBERS_TABLE, MONTH_COLUMN, ROOMS_TABLE};

use super::changes::Changes;
use crate::error::IngestError;

/// What one update did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RoomsUpdate {
    /// Local months of creation of the rooms whose facts changed.
    pub months: BTreeSet<String>,
    pub rooms_changed: usize,
    pub memberships_changed: usize,
}

fn write_err(table: &'static str) -> impl Fn(deltalake::DeltaTableError) -> IngestError {
    move |e| IngestError::WriteTable {
        table,
        source: Box::new(e),
    }
}

fn day_of_micros(micros: i64) -> Option<NaiveDate> {
    chrono::DateTime::from_timestamp_micros(micros).map(|t| t.date_naive())
}

/// The days to read, as the query crate's `Days`.
fn days_of(changes: &Changes) -> Days {
    match changes {
        Changes::All => Days::All,
        Changes::Days(days) => Days::These(days.iter().map(|d| d.to_string()).collect()),
    }
}

/// Folds the `changes` of the raw `events` (registered in `ctx`, with the current rooms
/// rollup as `rollup_rooms` and memberships as `forum_members`) into the two tables.
/// `keep_before`: when rebuilding after a purge, rooms created before this UTC day are kept
/// as they are (their creation is no longer in the raw table), the rest is recounted.
pub async fn update(
    ctx: &SessionContext,
    rooms_table: &DeltaTable,
    members_table: &DeltaTable,
    changes: &Changes,
    rebuild: Option<Option<NaiveDate>>,
    timezone: &str,
) -> Result<RoomsUpdate, IngestError> {
    let mut update = RoomsUpdate::default();
    if changes.is_empty() && rebuild.is_none() {
        return Ok(update);
    }
    let batches = ctx
        .sql("SELECT * FROM rollup_rooms")
        .await
        .map_err(|e| IngestError::Rollup(e.into()))?
        .collect()
        .await
        .map_err(|e| IngestError::Rollup(e.into()))?;
    let mut old: HashMap<i64, RoomFacts> = rooms_from_batches(&batches)?.into_iter().collect();
    if let Some(keep_before) = rebuild {
        // Recount everything the raw table still holds.
        old.retain(|_, facts| {
            let created = facts
                .created
                .as_ref()
                .and_then(|c| day_of_micros(c.created_at));
            matches!((created, keep_before), (Some(day), Some(before)) if day < before)
        });
    }
    let days = days_of(changes);
    let delta = facts_from_events(ctx, &days, None, timezone).await?;
    // Rooms created in these days that the rollup does not hold: read whole.
    let new: Vec<(i64, i64)> = delta
        .iter()
        .filter(|(room, _)| !old.contains_key(room))
        .filter_map(|(room, facts)| facts.created.as_ref().map(|c| (*room, c.created_at)))
        .collect();
    let complete: BTreeMap<i64, RoomFacts> = match (&days, new.iter().map(|(_, at)| *at).min()) {
        (Days::All, _) | (_, None) => BTreeMap::new(),
        (_, Some(first)) => {
            let from = day_of_micros(first)
                .map(|d| d - chrono::Days::new(1))
                .map(|d| d.to_string())
                .unwrap_or_else(|| "1970-01-01".into());
            let rooms: Vec<i64> = new.iter().map(|(room, _)| *room).collect();
            facts_from_events(ctx, &Days::From(from), Some(&rooms), timezone).await?
        }
    };
    let was_candidate: BTreeSet<i64> = old
        .iter()
        .filter(|(_, facts)| facts.is_forum_candidate())
        .map(|(room, _)| *room)
        .collect();
    let mut changed: BTreeMap<i64, RoomFacts> = BTreeMap::new();
    for (room, facts) in delta {
        let merged = match (old.get(&room), complete.get(&room)) {
            (Some(known), _) => known.merge(&facts),
            (None, Some(whole)) => whole.merge(&facts),
            (None, None) => facts,
        };
        // A room counts once its creation is known (rooms created elsewhere never do).
        if merged.created.is_none() || old.get(&room) == Some(&merged) {
            continue;
        }
        changed.insert(room, merged);
    }
    update.rooms_changed = changed.len();
    for facts in changed.values() {
        if let Some(created) = &facts.created {
            update.months.insert(created.month.clone());
        }
    }
    // Forums: the memberships of every room that may be one.
    let newly_candidates: Vec<(i64, i64)> = changed
        .iter()
        .filter(|(room, facts)| facts.is_forum_candidate() && !was_candidate.contains(room))
        .filter_map(|(room, facts)| facts.created.as_ref().map(|c| (*room, c.created_at)))
        .collect();
    let candidates: Vec<i64> = was_candidate
        .iter()
        .copied()
        .chain(newly_candidates.iter().map(|(room, _)| *room))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();

    // Write the rooms.
    if rebuild.is_some() {
        let mut all: BTreeMap<i64, RoomFacts> = old.clone().into_iter().collect();
        all.extend(changed.clone());
        let rows: Vec<RolledRoom> = all.into_iter().collect();
        update.months.extend(
            rows.iter()
                .filter_map(|(_, f)| f.created.as_ref().map(|c| c.month.clone())),
        );
        rooms_table
            .clone()
            .write(vec![rooms_batch(&rows)?])
            .with_save_mode(SaveMode::Overwrite)
            .await
            .map_err(write_err(ROOMS_TABLE))?;
    } else if !changed.is_empty() {
        let months = &update.months;
        let mut rows: BTreeMap<i64, RoomFacts> = old
            .iter()
            .filter(|(_, f)| {
                f.created
                    .as_ref()
                    .is_some_and(|c| months.contains(&c.month))
            })
            .map(|(room, facts)| (*room, facts.clone()))
            .collect();
        rows.extend(changed.clone());
        let rows: Vec<RolledRoom> = rows.into_iter().collect();
        let list: Vec<String> = months.iter().map(|m| quote(m)).collect();
        rooms_table
            .clone()
            .write(vec![rooms_batch(&rows)?])
            .with_save_mode(SaveMode::Overwrite)
            .with_replace_where(format!("{MONTH_COLUMN} IN ({})", list.join(", ")))
            .await
            .map_err(write_err(ROOMS_TABLE))?;
    }

    // Fold the memberships.
    let old_members = ctx
        .sql("SELECT room, target, ts, membership FROM forum_members")
        .await
        .map_err(|e| IngestError::Rollup(e.into()))?
        .collect()
        .await
        .map_err(|e| IngestError::Rollup(e.into()))?;
    let mut members: Memberships = memberships_from_batches(&old_members)?;
    if rebuild.is_some() {
        members.retain(|(room, _), _| old.contains_key(room));
    }
    let before = members.clone();
    merge_memberships(
        &mut members,
        memberships_from_events(ctx, &days, &candidates).await?,
    );
    if !matches!(days, Days::All)
        && let Some(first) = newly_candidates.iter().map(|(_, at)| *at).min()
    {
        let from = day_of_micros(first)
            .map(|d| (d - chrono::Days::new(1)).to_string())
            .unwrap_or_else(|| "1970-01-01".into());
        let rooms: Vec<i64> = newly_candidates.iter().map(|(room, _)| *room).collect();
        merge_memberships(
            &mut members,
            memberships_from_events(ctx, &Days::From(from), &rooms).await?,
        );
    }
    if members != before || rebuild.is_some() {
        update.memberships_changed = members
            .iter()
            .filter(|(key, value)| before.get(key) != Some(value))
            .count();
        members_table
            .clone()
            .write(vec![memberships_batch(&members)?])
            .with_save_mode(SaveMode::Overwrite)
            .await
            .map_err(write_err(FORUM_MEMBERS_TABLE))?;
    }
    Ok(update)
}
