//! The rollup tables (docs/design.md §7): the smallest tables from which every figure is
//! exact, kept as Delta tables beside the raw ones under `<lake>/rollups/`:
//!
//! - `figure_cells`: for each local month, the whole cube of every figure: by month and by
//!   day, in total and by every combination of server, domain (and platform for visits),
//!   each cell with its value and its distinct users (for suppression, applied when read:
//!   k may change). Plus `r30_users` at the month's end and `account_changes`, the monthly
//!   net change of regular accounts that `total_active_accounts` sums. Partitioned by month.
//!   Any request (any filters, any breakdown) is a lookup in the cube, and so are the
//!   publication's count-distinct figures: nothing is approximated.
//! - `rooms`: one row per room created by a local user, with the facts of its state that
//!   decide its kind (merged as new events arrive: earliest join rule, any encryption...).
//!   Partitioned by the local month of creation.
//! - `forum_members`: the last membership of each user in each room whose join rule is
//!   public (the forums' member counts).
//!
//! This module defines the tables and computes their content from the raw tables; the
//! rollup job (`mxpulse_ingest::rollup`) decides what to recompute and writes it, and the
//! query service reads it back (`read`). Nothing here writes.

pub mod cells;
pub mod index;
pub mod read;
pub mod rooms;

use std::sync::{Arc, LazyLock};

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

/// Where the rollup tables live, under the lake's root.
pub const CELLS_TABLE: &str = "rollups/figure_cells";
pub const ROOMS_TABLE: &str = "rollups/rooms";
pub const FORUM_MEMBERS_TABLE: &str = "rollups/forum_members";

/// The partition column of `figure_cells` and `rooms`: a local month `YYYY-MM`.
pub const MONTH_COLUMN: &str = "month";

/// `grain` of a month's cell, and of a day's.
pub const GRAIN_MONTH: &str = "month";
pub const GRAIN_DAY: &str = "day";

/// The figure `r30_users` in the cube (one cell per month and server/domain combination).
pub const R30_FIGURE: &str = "r30_users";

/// The column of `figure_cells` holding each cell's key; rollups written before it existed
/// are recounted (`mxpulse_ingest::rollup`).
pub const CELL_KEY_COLUMN: &str = "cell_key";

/// What the cube holds: 2 since visits are broken down by client family. Rollups of an older
/// cube (no application transaction `CUBE_VERSION_APP_ID`: version 1) are recounted from the
/// raw tables, months frozen by retention excepted (those keep their older breakdowns).
pub const CUBE_VERSION: i64 = 2;

/// The application transaction of `figure_cells` holding its `CUBE_VERSION`.
pub const CUBE_VERSION_APP_ID: &str = "mxpulse-rollup-cube";

/// The table property of `figure_cells` naming the time zone its months were cut in.
pub const TIMEZONE_KEY: &str = "mxpulse.rollup.timezone";

/// The application transaction of `figure_cells` holding the version of raw table `table`
/// whose changes the rollups hold (a Delta `txn` action, written in the same commit as the
/// cells: the rollups and what they hold move together).
pub fn watermark_app_id(table: &str) -> String {
    format!("mxpulse-rollup-{table}")
}

/// The application transaction holding the first UTC day (days since 1970-01-01) still in
/// the raw tables: months with an earlier day are frozen in the rollups (retention purged
/// their raw rows, so they can no longer be recounted).
pub const PURGED_BEFORE_APP_ID: &str = "mxpulse-rollup-purged-before";

fn timestamp() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

static CELLS_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new(MONTH_COLUMN, DataType::Utf8, false),
        Field::new("grain", DataType::Utf8, false),
        Field::new("period", DataType::Utf8, false),
        Field::new("figure", DataType::Utf8, false),
        // The breakdown columns the cell is grouped by: 1 server, 2 domain, 4 platform,
        // 8 client family.
        Field::new("dims", DataType::Int32, false),
        Field::new("server", DataType::Utf8, true),
        Field::new("domain", DataType::Utf8, true),
        Field::new("platform", DataType::Utf8, true),
        Field::new("value", DataType::Float64, false),
        Field::new("users", DataType::Int64, false),
        // The cell key of the distinct users (docs/design.md §4).
        Field::new(CELL_KEY_COLUMN, DataType::Int64, false),
        // Cube version 2: the client family of visits (dims bit 8). Added at the end, as
        // tables only grow; the rollups of version 1 are recounted (`CUBE_VERSION`).
        Field::new("family", DataType::Utf8, true),
    ]))
});

static ROOMS_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new(MONTH_COLUMN, DataType::Utf8, false),
        Field::new("room", DataType::Int64, false),
        Field::new("server", DataType::Utf8, false),
        Field::new("domain", DataType::Utf8, true),
        Field::new("creator", DataType::Int64, false),
        Field::new("created_at", timestamp(), false),
        Field::new("room_type", DataType::Utf8, true),
        Field::new("is_direct", DataType::Boolean, false),
        Field::new("encrypted", DataType::Boolean, false),
        Field::new("join_rule", DataType::Utf8, true),
        Field::new("join_rule_ts", timestamp(), true),
        Field::new("access_rule", DataType::Utf8, true),
        Field::new("access_rule_ts", timestamp(), true),
    ]))
});

static FORUM_MEMBERS_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("room", DataType::Int64, false),
        Field::new("target", DataType::Int64, true),
        Field::new("ts", timestamp(), false),
        Field::new("membership", DataType::Utf8, true),
    ]))
});

pub fn cells_schema() -> SchemaRef {
    CELLS_SCHEMA.clone()
}

pub fn rooms_schema() -> SchemaRef {
    ROOMS_SCHEMA.clone()
}

pub fn forum_members_schema() -> SchemaRef {
    FORUM_MEMBERS_SCHEMA.clone()
}

/// The rooms of the rollup as the figures read them (the same columns and kinds as the
/// session's `rooms` view over raw events), from the table registered as `rollup_rooms`.
pub fn rooms_view_sql() -> String {
    format!(
        "CREATE VIEW rooms AS SELECT room, server, domain, creator, created_at, {MONTH_COLUMN}, \
         {kind} AS kind, encrypted, join_rule, access_rule FROM rollup_rooms",
        kind = super::definitions::ROOM_KIND,
    )
}
