//! The forums directory: the largest forums (public, unencrypted rooms) by members, without
//! any identifier. Members are people: each forum's count is published through the cell key
//! rule (docs/design.md §4), forums whose count is withheld are left out, and the ranking is
//! by the published counts. A forum in a homeserver's public room directory is shown with
//! the name and topic that directory shows every user; any other is not named.

use std::collections::BTreeMap;

use datafusion::arrow::array::{Array as _, AsArray};
use datafusion::arrow::datatypes::{DataType, Int64Type};
use datafusion::prelude::SessionContext;

use super::ForumRank;
use super::definitions::Source;
use super::disclosure::CellKeyRule;
use super::grouping::Tally;
use crate::error::QueryError;

/// A forum before publication: its room, server, members and their cell key, creation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForumRow {
    /// The room's pseudonym: to find its directory entry, never published.
    pub room: i64,
    pub server: String,
    pub members: i64,
    pub members_key: i64,
    /// Microseconds since the epoch.
    pub created_at: i64,
    /// Local month of creation.
    pub created: String,
}

/// The `limit` forums with the most members, from the session's `rooms` view over raw events.
pub async fn top_forums(
    ctx: &SessionContext,
    limit: usize,
    timezone: &str,
    rule: &CellKeyRule,
) -> Result<Vec<ForumRank>, QueryError> {
    let sql = format!(
        "SELECT server, members, members_key, arrow_cast(created_at, 'Int64'), \
                to_char({time}, '%Y-%m') AS created, room FROM rooms \
         WHERE kind = 'forum' AND members > 0",
        time = Source::Rooms.time(timezone),
    );
    let names = directory_names(ctx).await?;
    Ok(ranked(
        forum_rows(ctx, &sql).await?.iter(),
        limit,
        rule,
        None,
        &names,
    ))
}

/// A room's name and topic line in the public room directory.
pub type DirectoryNames = BTreeMap<i64, (Option<String>, Option<String>)>;

/// The rooms in a public room directory now, with their names and topics, from the
/// session's `directory` view: a room is listed when its newest record says so and comes
/// from its server's newest day (the hooks say every listed room again each day, so a room
/// that left while they were stopped is not listed any more).
pub async fn directory_names(ctx: &SessionContext) -> Result<DirectoryNames, QueryError> {
    let sql = "WITH newest AS (
  SELECT server, room, listed, name, topic, date,
    row_number() OVER (PARTITION BY server, room ORDER BY ts DESC) AS n
  FROM directory
), last_day AS (SELECT server, max(date) AS day FROM directory GROUP BY server)
SELECT e.room, e.name, e.topic FROM newest e JOIN last_day d ON d.server = e.server
WHERE e.n = 1 AND e.listed AND e.date = d.day";
    let mut names = DirectoryNames::new();
    for batch in ctx.sql(sql).await?.collect().await? {
        let room = datafusion::arrow::compute::cast(batch.column(0), &DataType::Int64)?;
        let (name, topic) = (
            datafusion::arrow::compute::cast(batch.column(1), &DataType::Utf8)?,
            datafusion::arrow::compute::cast(batch.column(2), &DataType::Utf8)?,
        );
        let room = room.as_primitive::<Int64Type>();
        let (name, topic) = (name.as_string::<i32>(), topic.as_string::<i32>());
        let text = |column: &datafusion::arrow::array::StringArray, row: usize| {
            (!column.is_null(row)).then(|| column.value(row).to_owned())
        };
        for row in 0..batch.num_rows() {
            names.insert(room.value(row), (text(name, row), text(topic, row)));
        }
    }
    Ok(names)
}

/// Runs a query of `(server, members, members_key, created_at, created, room)` rows.
pub(crate) async fn forum_rows(
    ctx: &SessionContext,
    sql: &str,
) -> Result<Vec<ForumRow>, QueryError> {
    let batches = ctx.sql(sql).await?.collect().await?;
    let mut rows = Vec::new();
    for batch in batches {
        let text = |i: usize| datafusion::arrow::compute::cast(batch.column(i), &DataType::Utf8);
        let int = |i: usize| datafusion::arrow::compute::cast(batch.column(i), &DataType::Int64);
        let (server, members, key, created_at, created, room) =
            (text(0)?, int(1)?, int(2)?, int(3)?, text(4)?, int(5)?);
        let (server, members, key, created_at, created) = (
            server.as_string::<i32>(),
            members.as_primitive::<Int64Type>(),
            key.as_primitive::<Int64Type>(),
            created_at.as_primitive::<Int64Type>(),
            created.as_string::<i32>(),
        );
        let room = room.as_primitive::<Int64Type>();
        for row in 0..batch.num_rows() {
            rows.push(ForumRow {
                room: room.value(row),
                server: server.value(row).to_owned(),
                members: members.value(row),
                members_key: key.value(row),
                created_at: created_at.value(row),
                created: created.value(row).to_owned(),
            });
        }
    }
    Ok(rows)
}

/// The `limit` forums of `forums` (of `scope`'s server only, if any) with the most published
/// members (the oldest first on a tie); withheld ones left out.
pub fn ranked<'a>(
    forums: impl Iterator<Item = &'a ForumRow>,
    limit: usize,
    rule: &CellKeyRule,
    scope: Option<&str>,
    names: &DirectoryNames,
) -> Vec<ForumRank> {
    let mut published: Vec<(i64, i64, &ForumRow)> = forums
        .filter(|f| scope.is_none_or(|server| f.server == server))
        .filter_map(|f| {
            let tally = Tally {
                value: f.members as f64,
                users: f.members,
                key: f.members_key,
            };
            rule.publish(&tally).map(|v| (v as i64, f.created_at, f))
        })
        .collect();
    published.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    published
        .into_iter()
        .take(limit)
        .enumerate()
        .map(|(i, (members, _, f))| {
            let (name, topic) = names.get(&f.room).cloned().unwrap_or_default();
            ForumRank {
                rank: i + 1,
                server: f.server.clone(),
                members,
                created: f.created.clone(),
                name,
                topic,
            }
        })
        .collect()
}
