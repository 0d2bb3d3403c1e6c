//! The rollup job (docs/design.md §7): brings the rollup tables (`mxpulse_query::figures::
//! rollup`) up to date with the raw tables, so that the figures are read from a few thousand
//! cells instead of counted over millions of rows.
//!
//! Incremental and exactly once: the `figure_cells` table records, in the same commit as the
//! cells, the version of each raw table it holds (a Delta application transaction per table).
//! A run reads the raw tables' Delta log after those versions, finds the UTC days whose rows
//! changed (new commits, late records for an old day; not compaction), folds the rooms facts
//! of changed days into the `rooms` rollup, and recounts, with the figures' own definitions,
//! every local month those days (and the rooms whose kind changed) fall in, replacing that
//! month's cells in one commit with the new versions. A crash before that commit leaves the
//! old cells and versions: the next run does the same work again (room facts merge
//! idempotently). `Rebuild` recounts every month the raw tables hold.
//!
//! Retention: months whose raw rows were purged are frozen (the first day still held is
//! recorded in the cells table before any raw row is deleted): their cells are never
//! recounted, so purging raw rows changes no published figure.

pub mod changes;
mod rooms;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use chrono::{Datelike, Days, NaiveDate};
use deltalake::DeltaTable;
use deltalake::datafusion::prelude::SessionContext;
use deltalake::kernel::Transaction;
use deltalake::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake::protocol::{DeltaOperation, SaveMode};
use mxpulse_query::figures::definitions::MONTHLY_USER_FIGURES;
use mxpulse_query::figures::grouping::quote;
use mxpulse_query::figures::rollup::{
    self as tables, CELLS_TABLE, CUBE_VERSION, CUBE_VERSION_APP_ID, FORUM_MEMBERS_TABLE,
    MONTH_COLUMN, PURGED_BEFORE_APP_ID, ROOMS_TABLE, TIMEZONE_KEY, watermark_app_id,
};
use mxpulse_schemas::{AccountRecord, EventRecord, Record, VisitRecord};

use crate::error::IngestError;
use crate::lake::{
    LakeRoot, TableSpec, committed_offset, open_or_create, open_or_create_at, table_url_at,
};
use changes::Changes;

/// How the rollups cut months.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RollupConfig {
    /// The time zone of calendar months (the query service's).
    pub timezone: String,
}

/// Only what changed since the last run, or everything again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RollupMode {
    Incremental,
    Rebuild,
}

/// What a run did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RollupReport {
    /// The local months recounted.
    pub months: Vec<String>,
    pub cells: usize,
    pub rooms_changed: usize,
    pub memberships_changed: usize,
    /// The raw tables' versions the rollups now hold.
    pub versions: BTreeMap<&'static str, i64>,
    /// The first UTC day of the raw tables; earlier months are frozen.
    pub purged_before: Option<NaiveDate>,
    pub elapsed: Duration,
}

/// What the rollups hold, as recorded in `figure_cells`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RollupState {
    pub timezone: Option<String>,
    /// Raw table -> the version whose changes the rollups hold.
    pub watermarks: BTreeMap<&'static str, i64>,
    pub purged_before: Option<NaiveDate>,
    /// What the cube holds (`CUBE_VERSION`; 1 when the table does not say).
    pub cube: i64,
    /// The cells table's version and its commit time (milliseconds).
    pub version: i64,
    pub written_ms: Option<i64>,
}

const RAW_TABLES: [(&str, &str); 3] = [
    (EventRecord::TABLE, EventRecord::PARTITION_COLUMN),
    (VisitRecord::TABLE, VisitRecord::PARTITION_COLUMN),
    (AccountRecord::TABLE, AccountRecord::PARTITION_COLUMN),
];

fn epoch() -> NaiveDate {
    NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default()
}

fn days_since_epoch(day: NaiveDate) -> i64 {
    (day - epoch()).num_days()
}

fn read_err(table: &'static str) -> impl Fn(deltalake::DeltaTableError) -> IngestError {
    move |e| IngestError::ReadTable {
        table,
        source: e.into(),
    }
}

fn write_err(table: &'static str) -> impl Fn(deltalake::DeltaTableError) -> IngestError {
    move |e| IngestError::WriteTable {
        table,
        source: Box::new(e),
    }
}

async fn open_cells(root: &LakeRoot, timezone: &str) -> Result<DeltaTable, IngestError> {
    let spec = TableSpec {
        name: CELLS_TABLE,
        schema: tables::cells_schema(),
        partition_columns: &[MONTH_COLUMN],
        configuration: vec![(TIMEZONE_KEY, timezone.to_owned())],
    };
    open_or_create_at(table_url_at(root, CELLS_TABLE), &spec).await
}

async fn open_rooms(root: &LakeRoot) -> Result<(DeltaTable, DeltaTable), IngestError> {
    let rooms = TableSpec {
        name: ROOMS_TABLE,
        schema: tables::rooms_schema(),
        partition_columns: &[MONTH_COLUMN],
        configuration: Vec::new(),
    };
    let members = TableSpec {
        name: FORUM_MEMBERS_TABLE,
        schema: tables::forum_members_schema(),
        partition_columns: &[],
        configuration: Vec::new(),
    };
    Ok((
        open_or_create_at(table_url_at(root, ROOMS_TABLE), &rooms).await?,
        open_or_create_at(table_url_at(root, FORUM_MEMBERS_TABLE), &members).await?,
    ))
}

/// Whether the cells table has the column of the cell keys.
fn has_cell_keys(cells: &DeltaTable) -> bool {
    cells.snapshot().is_ok_and(|s| {
        s.schema()
            .fields()
            .any(|f| f.name() == tables::CELL_KEY_COLUMN)
    })
}

/// What the rollups of the lake hold, if it has any.
pub async fn state(root: &LakeRoot) -> Result<Option<RollupState>, IngestError> {
    let url = table_url_at(root, CELLS_TABLE);
    if !mxpulse_query::lake::has_delta_log(&url)
        .await
        .map_err(|e| IngestError::RollupState(e.to_string()))?
    {
        return Ok(None);
    }
    let cells = deltalake::DeltaTableBuilder::from_url(url)
        .map_err(read_err(CELLS_TABLE))?
        .load()
        .await
        .map_err(read_err(CELLS_TABLE))?;
    Ok(Some(read_state(&cells).await?))
}

async fn read_state(cells: &DeltaTable) -> Result<RollupState, IngestError> {
    let snapshot = cells.snapshot().map_err(read_err(CELLS_TABLE))?;
    let timezone = snapshot
        .metadata()
        .configuration()
        .get(TIMEZONE_KEY)
        .cloned();
    let mut watermarks = BTreeMap::new();
    for (table, _) in RAW_TABLES {
        if let Some(version) = committed_offset(cells, &watermark_app_id(table)).await? {
            watermarks.insert(table, version.0);
        }
    }
    let purged_before = committed_offset(cells, PURGED_BEFORE_APP_ID)
        .await?
        .and_then(|days| epoch().checked_add_days(Days::new(u64::try_from(days.0).ok()?)));
    let cube = committed_offset(cells, CUBE_VERSION_APP_ID)
        .await?
        .map_or(1, |v| v.0);
    let version = snapshot.version();
    Ok(RollupState {
        cube,
        timezone,
        watermarks,
        purged_before,
        version: i64::try_from(version).unwrap_or(i64::MAX),
        written_ms: snapshot.version_timestamp(version),
    })
}

/// The local months a UTC day's rows can fall in (any time zone is within a day of UTC).
fn local_months(day: NaiveDate) -> [String; 2] {
    let month = |d: NaiveDate| d.format("%Y-%m").to_string();
    [month(day - Days::new(1)), month(day + Days::new(1))]
}

fn month_of(day: NaiveDate) -> String {
    day.format("%Y-%m").to_string()
}

fn month_start(month: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(&format!("{month}-01"), "%Y-%m-%d").ok()
}

fn month_end(month: &str) -> Option<NaiveDate> {
    month_start(month)?
        .checked_add_months(chrono::Months::new(1))?
        .pred_opt()
}

/// r30 at a month's end reads the 60 days up to it: a visit day counts in the months
/// ending within 59 days after it.
const R30_DAYS: u64 = 59;

/// How much of a month's cells may be recounted once raw days before `purged_before` are gone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Recount {
    Everything,
    /// Every cell but the monthly user figures, whose windows (r30's 60 days, the client
    /// moves' month before) reach purged days.
    AllButR30,
    Nothing,
}

fn recount(month: &str, purged_before: Option<NaiveDate>) -> Recount {
    let (Some(before), Some(start), Some(end)) =
        (purged_before, month_start(month), month_end(month))
    else {
        return Recount::Everything;
    };
    let month_before = start.checked_sub_months(chrono::Months::new(1));
    if start - Days::new(1) < before {
        Recount::Nothing
    } else if end - Days::new(R30_DAYS) < before || month_before.is_none_or(|m| m < before) {
        Recount::AllButR30
    } else {
        Recount::Everything
    }
}

/// The local months whose cells the changed days of each raw table touch.
fn months_of_changes(changes: &BTreeMap<&'static str, BTreeSet<NaiveDate>>) -> BTreeSet<String> {
    let mut months = BTreeSet::new();
    for (table, days) in changes {
        for day in days {
            if *table == VisitRecord::TABLE {
                // Visits are counted by UTC day; r30 of the months ending within 59 days, and
                // the client moves of the month after.
                let mut d = *day;
                let last = *day + Days::new(R30_DAYS);
                months.insert(month_of(d));
                if let Some(next) = day
                    .with_day(1)
                    .and_then(|first| first.checked_add_months(chrono::Months::new(1)))
                {
                    months.insert(month_of(next));
                }
                while let Some(next) = d
                    .with_day(1)
                    .and_then(|first| first.checked_add_months(chrono::Months::new(1)))
                    .filter(|next| *next <= last)
                {
                    months.insert(month_of(next));
                    d = next;
                }
            } else {
                months.extend(local_months(*day));
            }
        }
    }
    months
}

async fn register_raw(
    ctx: &SessionContext,
    tables: &[(&'static str, &DeltaTable)],
) -> Result<(), IngestError> {
    for (name, table) in tables {
        table
            .update_datafusion_session(&ctx.state())
            .map_err(read_err(name))?;
        let provider = table
            .table_provider()
            .await
            .map_err(|e| IngestError::Rollup(e.into()))?;
        let _ = ctx
            .deregister_table(*name)
            .map_err(|e| IngestError::Rollup(e.into()))?;
        ctx.register_table(*name, provider)
            .map_err(|e| IngestError::Rollup(e.into()))?;
    }
    Ok(())
}

/// Brings the rollups up to date with the raw tables (or recounts them all).
pub async fn run(
    root: &LakeRoot,
    config: &RollupConfig,
    mode: RollupMode,
) -> Result<RollupReport, IngestError> {
    let started = Instant::now();
    let events = open_or_create::<EventRecord>(root).await?;
    let visits = open_or_create::<VisitRecord>(root).await?;
    let accounts = open_or_create::<AccountRecord>(root).await?;
    let mut cells = open_cells(root, &config.timezone).await?;
    let mut state = read_state(&cells).await?;
    if !has_cell_keys(&cells) {
        // Rollups written before the cell keys (docs/design.md §4) cannot be published:
        // recounted from the raw tables, unless some months can no longer be.
        if let Some(before) = state.purged_before {
            return Err(IngestError::RollupState(format!(
                "the rollups predate cell keys and the raw records before {before} were \
                 purged: those months cannot be recounted with them"
            )));
        }
        tracing::warn!("the rollups predate cell keys: recounting them from the raw tables");
        crate::store::remove_tree(root, "rollups").await?;
        cells = open_cells(root, &config.timezone).await?;
        state = read_state(&cells).await?;
    }
    if state.timezone.as_deref() != Some(config.timezone.as_str()) {
        let cut_in = state.timezone.clone().unwrap_or_else(|| "(none)".into());
        if mode == RollupMode::Incremental {
            return Err(IngestError::RollupState(format!(
                "the rollups were cut in time zone {cut_in}, the configuration says {}: \
                 run `mxpulse lake rollup --rebuild`",
                config.timezone
            )));
        }
        if let Some(before) = state.purged_before {
            return Err(IngestError::RollupState(format!(
                "the rollups were cut in time zone {cut_in} and the raw records before {before} \
                 were purged: those months cannot be recounted in {}",
                config.timezone
            )));
        }
        // Nothing frozen: start the rollups afresh in the new time zone.
        crate::store::remove_tree(root, "rollups").await?;
        cells = open_cells(root, &config.timezone).await?;
        state = read_state(&cells).await?;
    }
    // A cube of an older version lacks breakdowns (docs/design.md §7): every month that can
    // be is recounted; months frozen by retention keep what they hold.
    let mode = if state.cube < CUBE_VERSION {
        if state.version > 0 {
            tracing::info!(
                from = state.cube,
                to = CUBE_VERSION,
                "the rollups are of an older cube: recounting them from the raw tables"
            );
        }
        RollupMode::Rebuild
    } else {
        mode
    };
    let (rooms_table, members_table) = open_rooms(root).await?;
    let raw: [(&'static str, &'static str, &DeltaTable); 3] = [
        (RAW_TABLES[0].0, RAW_TABLES[0].1, &events),
        (RAW_TABLES[1].0, RAW_TABLES[1].1, &visits),
        (RAW_TABLES[2].0, RAW_TABLES[2].1, &accounts),
    ];
    let mut versions = BTreeMap::new();
    let mut changed: BTreeMap<&'static str, Changes> = BTreeMap::new();
    for (name, column, table) in raw {
        versions.insert(name, table.version().map_or(-1, |v| v as i64));
        let since = match mode {
            RollupMode::Rebuild => None,
            RollupMode::Incremental => state.watermarks.get(name).copied(),
        };
        changed.insert(name, changes::since(table, name, column, since).await?);
    }
    let purged_before = state.purged_before;

    let ctx = SessionContext::new();
    register_raw(
        &ctx,
        &[
            ("events", &events),
            ("visits", &visits),
            ("accounts", &accounts),
            ("rollup_rooms", &rooms_table),
            ("forum_members", &members_table),
        ],
    )
    .await?;
    let rebuild = (mode == RollupMode::Rebuild).then_some(purged_before);
    let events_changes = changed
        .get(EventRecord::TABLE)
        .cloned()
        .unwrap_or(Changes::All);
    let rooms_update = rooms::update(
        &ctx,
        &rooms_table,
        &members_table,
        &events_changes,
        rebuild,
        &config.timezone,
    )
    .await?;
    // The figures count rooms from the updated rollup.
    let (rooms_table, _) = open_rooms(root).await?;
    register_raw(&ctx, &[("rollup_rooms", &rooms_table)]).await?;
    ctx.sql(&tables::rooms_view_sql())
        .await
        .map_err(|e| IngestError::Rollup(e.into()))?;

    // Which months to recount.
    let mut days: BTreeMap<&'static str, BTreeSet<NaiveDate>> = BTreeMap::new();
    for (name, column, table) in raw {
        let of_table = match &changed[name] {
            Changes::All => changes::present_days(table, name, column).await?,
            Changes::Days(days) => days.clone(),
        };
        days.insert(name, of_table);
    }
    let mut months = months_of_changes(&days);
    months.extend(rooms_update.months.iter().cloned());
    let mut recounted: Vec<(String, Recount)> = months
        .into_iter()
        .map(|m| {
            let r = recount(&m, purged_before);
            (m, r)
        })
        .filter(|(_, r)| *r != Recount::Nothing)
        .collect();
    recounted.sort();

    let mut batches = Vec::new();
    let mut cell_count = 0;
    for (month, how) in &recounted {
        let batch =
            tables::cells::month_cells(&ctx, month, &config.timezone, *how == Recount::Everything)
                .await?;
        cell_count += batch.num_rows();
        batches.push(batch);
    }
    let mut txns: Vec<Transaction> = versions
        .iter()
        .filter(|(name, version)| **version >= 0 && state.watermarks.get(**name) != Some(*version))
        .map(|(name, version)| Transaction::new(watermark_app_id(name), *version))
        .collect();
    if state.cube != CUBE_VERSION {
        txns.push(Transaction::new(CUBE_VERSION_APP_ID, CUBE_VERSION));
    }
    let properties = CommitProperties::default().with_application_transactions(txns.clone());
    if mode == RollupMode::Rebuild {
        let write = cells
            .clone()
            .write(batches)
            .with_save_mode(SaveMode::Overwrite)
            .with_commit_properties(properties);
        let write = match frozen_predicate(purged_before) {
            Some(predicate) => write.with_replace_where(predicate),
            None => write,
        };
        write.await.map_err(write_err(CELLS_TABLE))?;
    } else if !recounted.is_empty() {
        cells
            .clone()
            .write(batches)
            .with_save_mode(SaveMode::Overwrite)
            .with_replace_where(replaced(&recounted))
            .with_commit_properties(properties)
            .await
            .map_err(write_err(CELLS_TABLE))?;
    } else if !txns.is_empty() {
        commit_state(&cells, txns).await?;
    }
    let mut months: Vec<String> = recounted.into_iter().map(|(m, _)| m).collect();
    months.sort();
    Ok(RollupReport {
        months,
        cells: cell_count,
        rooms_changed: rooms_update.rooms_changed,
        memberships_changed: rooms_update.memberships_changed,
        versions,
        purged_before,
        elapsed: started.elapsed(),
    })
}

/// The cells a recount replaces: the months recounted whole, and all but the monthly user
/// figures (r30, client moves) of the others.
fn replaced(recounted: &[(String, Recount)]) -> String {
    let list = |how: Recount| {
        recounted
            .iter()
            .filter(|(_, r)| *r == how)
            .map(|(m, _)| quote(m))
            .collect::<Vec<_>>()
    };
    let (whole, partial) = (list(Recount::Everything), list(Recount::AllButR30));
    let windowed: Vec<String> = MONTHLY_USER_FIGURES.iter().map(|f| quote(f)).collect();
    let mut parts = Vec::new();
    if !whole.is_empty() {
        parts.push(format!("{MONTH_COLUMN} IN ({})", whole.join(", ")));
    }
    if !partial.is_empty() {
        parts.push(format!(
            "({MONTH_COLUMN} IN ({}) AND figure NOT IN ({}))",
            partial.join(", "),
            windowed.join(", ")
        ));
    }
    parts.join(" OR ")
}

/// What a rebuild replaces when raw days were purged: everything not frozen.
fn frozen_predicate(purged_before: Option<NaiveDate>) -> Option<String> {
    let before = purged_before?;
    // The first month recounted whole, and the months before it whose monthly user figures
    // (r30, client moves) stay.
    let mut month = month_of(before);
    while recount(&month, purged_before) == Recount::Nothing {
        month = month_of(month_start(&month)?.checked_add_months(chrono::Months::new(1))?);
    }
    let mut r30_kept = Vec::new();
    let mut m = month.clone();
    while recount(&m, purged_before) == Recount::AllButR30 {
        r30_kept.push(quote(&m));
        m = month_of(month_start(&m)?.checked_add_months(chrono::Months::new(1))?);
    }
    let mut predicate = format!("{MONTH_COLUMN} >= {}", quote(&month));
    if !r30_kept.is_empty() {
        let windowed: Vec<String> = MONTHLY_USER_FIGURES.iter().map(|f| quote(f)).collect();
        predicate.push_str(&format!(
            " AND NOT ({MONTH_COLUMN} IN ({}) AND figure IN ({}))",
            r30_kept.join(", "),
            windowed.join(", ")
        ));
    }
    Some(predicate)
}

/// A commit of `figure_cells` holding application transactions only.
async fn commit_state(cells: &DeltaTable, txns: Vec<Transaction>) -> Result<(), IngestError> {
    let snapshot = cells.snapshot().map_err(write_err(CELLS_TABLE))?;
    CommitBuilder::from(CommitProperties::default().with_application_transactions(txns))
        .with_actions(Vec::new())
        .build(
            Some(snapshot),
            cells.log_store(),
            DeltaOperation::Write {
                mode: SaveMode::Append,
                partition_by: None,
                predicate: None,
            },
        )
        .await
        .map_err(write_err(CELLS_TABLE))?;
    Ok(())
}

/// Records that raw days before `before` are about to be purged: from now on the rollups'
/// months before it are frozen. Call it, with the rollups up to date, before deleting.
pub async fn freeze_before(
    root: &LakeRoot,
    config: &RollupConfig,
    before: NaiveDate,
) -> Result<(), IngestError> {
    let cells = open_cells(root, &config.timezone).await?;
    let state = read_state(&cells).await?;
    if state.purged_before.is_some_and(|known| known >= before) {
        return Ok(());
    }
    commit_state(
        &cells,
        vec![Transaction::new(
            PURGED_BEFORE_APP_ID,
            days_since_epoch(before),
        )],
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(text: &str) -> NaiveDate {
        NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap()
    }

    fn months(table: &'static str, days: &[&str]) -> Vec<String> {
        let mut changes = BTreeMap::new();
        changes.insert(table, days.iter().map(|d| day(d)).collect());
        months_of_changes(&changes).into_iter().collect()
    }

    #[test]
    fn a_changed_day_recounts_the_months_it_counts_in() {
        // Events: the local month of a UTC day is that of the day before or after it.
        assert_eq!(months("events", &["2024-05-31"]), ["2024-05", "2024-06"]);
        assert_eq!(months("events", &["2024-05-15"]), ["2024-05"]);
        // Visits: their UTC day's month, r30 at the end of the months 59 days on, and the
        // client moves of the month after (31 July is 61 days after 1 July).
        assert_eq!(
            months("visits", &["2024-05-15"]),
            ["2024-05", "2024-06", "2024-07"]
        );
        assert_eq!(months("visits", &["2024-05-01"]), ["2024-05", "2024-06"]);
        assert_eq!(months("visits", &["2024-07-01"]), ["2024-07", "2024-08"]);
    }

    #[test]
    fn purged_months_are_frozen() {
        let before = Some(day("2024-03-01"));
        // March reads 29 February (local time zones): frozen too.
        assert_eq!(recount("2024-03", before), Recount::Nothing);
        // r30 at 30 April reads 2 March to 30 April.
        assert_eq!(recount("2024-04", before), Recount::Everything);
        let before = Some(day("2024-03-15"));
        assert_eq!(recount("2024-02", before), Recount::Nothing);
        assert_eq!(recount("2024-03", before), Recount::Nothing);
        assert_eq!(recount("2024-04", before), Recount::AllButR30);
        assert_eq!(recount("2024-05", before), Recount::Everything);
        // The client moves of May read April; r30 at 31 May reads 2 April on.
        let before = Some(day("2024-04-02"));
        assert_eq!(recount("2024-05", before), Recount::AllButR30);
        let before = Some(day("2024-03-15"));
        assert_eq!(recount("2020-01", None), Recount::Everything);
        assert_eq!(
            frozen_predicate(before).as_deref(),
            Some(
                "month >= '2024-04' AND NOT (month IN ('2024-04') AND figure IN ('r30_users', \
                 'client_moves_to_x', 'client_moves_to_classic', 'clients_both'))"
            )
        );
        assert_eq!(
            replaced(&[
                ("2024-04".into(), Recount::AllButR30),
                ("2024-05".into(), Recount::Everything)
            ]),
            "month IN ('2024-05') OR (month IN ('2024-04') AND figure NOT IN ('r30_users', \
             'client_moves_to_x', 'client_moves_to_classic', 'clients_both'))"
        );
    }
}
