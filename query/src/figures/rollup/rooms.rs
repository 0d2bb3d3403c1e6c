//! Room facts for the `rooms` rollup, and forum memberships for `forum_members`.
//!
//! A room's kind is read from its state (docs/design.md §5): created as a space, ever marked
//! direct, its first join rule, ever encrypted, its first access rule. Each of these merges:
//! facts read from some days and facts read from other days combine into the facts of all of
//! them (`RoomFacts::merge`: or of the flags, the earlier rule), so the rollup job folds new
//! days into what it holds without reading the old ones again, and folding a day twice
//! changes nothing. Memberships merge the same way: the later one wins.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use datafusion::arrow::datatypes::{DataType, Int64Type, TimeUnit, TimestampMicrosecondType};
use datafusion::prelude::SessionContext;

use super::{forum_members_schema, rooms_schema};
use crate::error::QueryError;

/// The room's `m.room.create` event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Creation {
    pub server: String,
    pub domain: Option<String>,
    pub creator: i64,
    /// Microseconds since the epoch.
    pub created_at: i64,
    pub room_type: Option<String>,
    /// The local month of `created_at` (`YYYY-MM`), in the rollups' time zone.
    pub month: String,
}

/// What is known of a room's state from some days of events.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RoomFacts {
    pub created: Option<Creation>,
    pub is_direct: bool,
    pub encrypted: bool,
    /// The first join rule: (its time in microseconds, the rule).
    pub join_rule: Option<(i64, Option<String>)>,
    pub access_rule: Option<(i64, Option<String>)>,
}

fn earlier<T: Clone>(a: &Option<(i64, T)>, b: &Option<(i64, T)>) -> Option<(i64, T)> {
    match (a, b) {
        (Some(x), Some(y)) => Some(if y.0 < x.0 { y.clone() } else { x.clone() }),
        (Some(x), None) | (None, Some(x)) => Some(x.clone()),
        (None, None) => None,
    }
}

impl RoomFacts {
    /// The facts of both sets of days.
    pub fn merge(&self, other: &RoomFacts) -> RoomFacts {
        let created = match (&self.created, &other.created) {
            (Some(a), Some(b)) => Some(if b.created_at < a.created_at {
                b.clone()
            } else {
                a.clone()
            }),
            (a, b) => a.clone().or_else(|| b.clone()),
        };
        RoomFacts {
            created,
            is_direct: self.is_direct || other.is_direct,
            encrypted: self.encrypted || other.encrypted,
            join_rule: earlier(&self.join_rule, &other.join_rule),
            access_rule: earlier(&self.access_rule, &other.access_rule),
        }
    }

    /// Its first join rule is public: it may be a forum, whose members are counted.
    pub fn is_forum_candidate(&self) -> bool {
        matches!(&self.join_rule, Some((_, Some(rule))) if rule == "public")
    }
}

/// Which days of the raw `events` table to read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Days {
    All,
    /// UTC dates `YYYY-MM-DD`.
    These(Vec<String>),
    /// From this UTC date on.
    From(String),
}

impl Days {
    fn condition(&self) -> String {
        match self {
            Days::All => "true".into(),
            Days::These(days) if days.is_empty() => "false".into(),
            Days::These(days) => {
                let list: Vec<String> = days.iter().map(|d| format!("DATE '{d}'")).collect();
                format!("date IN ({})", list.join(", "))
            }
            Days::From(day) => format!("date >= DATE '{day}'"),
        }
    }
}

/// Registers `rooms` as the table `mx_wanted_rooms` (one column `room`), to read only those.
fn want_rooms(ctx: &SessionContext, rooms: &[i64]) -> Result<(), QueryError> {
    let _ = ctx.deregister_table("mx_wanted_rooms")?;
    let schema = Arc::new(datafusion::arrow::datatypes::Schema::new(vec![
        datafusion::arrow::datatypes::Field::new("room", DataType::Int64, false),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![Arc::new(Int64Array::from(rooms.to_vec())) as ArrayRef],
    )?;
    let table = datafusion::datasource::MemTable::try_new(schema, vec![vec![batch]])?;
    ctx.register_table("mx_wanted_rooms", Arc::new(table))?;
    Ok(())
}

fn i64s(column: &ArrayRef) -> Result<ArrayRef, QueryError> {
    Ok(datafusion::arrow::compute::cast(column, &DataType::Int64)?)
}

fn micros(column: &ArrayRef) -> Result<ArrayRef, QueryError> {
    Ok(datafusion::arrow::compute::cast(
        column,
        &DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
    )?)
}

fn strings(column: &ArrayRef) -> Result<ArrayRef, QueryError> {
    Ok(datafusion::arrow::compute::cast(column, &DataType::Utf8)?)
}

fn opt_string(array: &StringArray, row: usize) -> Option<String> {
    (!array.is_null(row)).then(|| array.value(row).to_owned())
}

fn opt_ts(array: &TimestampMicrosecondArray, row: usize) -> Option<i64> {
    (!array.is_null(row)).then(|| array.value(row))
}

/// The facts that `days` of raw events hold about each room (all rooms, or `only` these);
/// months of creation are local to `timezone`.
pub async fn facts_from_events(
    ctx: &SessionContext,
    days: &Days,
    only: Option<&[i64]>,
    timezone: &str,
) -> Result<BTreeMap<i64, RoomFacts>, QueryError> {
    let mut rooms_condition = String::new();
    if let Some(rooms) = only {
        if rooms.is_empty() {
            return Ok(BTreeMap::new());
        }
        want_rooms(ctx, rooms)?;
        rooms_condition = " AND room IN (SELECT room FROM mx_wanted_rooms)".into();
    }
    let create = "type = 'm.room.create'";
    let sql = format!(
        "SELECT room, \
           coalesce(bool_or(is_direct), false), \
           coalesce(bool_or(type = 'm.room.encryption'), false), \
           min(ts) FILTER (WHERE type = 'm.room.join_rules'), \
           first_value(join_rule ORDER BY ts) FILTER (WHERE type = 'm.room.join_rules'), \
           min(ts) FILTER (WHERE type = 'im.vector.room.access_rules'), \
           first_value(access_rule ORDER BY ts) FILTER (WHERE type = 'im.vector.room.access_rules'), \
           min(ts) FILTER (WHERE {create}), \
           first_value(server ORDER BY ts) FILTER (WHERE {create}), \
           first_value(domain ORDER BY ts) FILTER (WHERE {create}), \
           first_value(sender ORDER BY ts) FILTER (WHERE {create}), \
           first_value(room_type ORDER BY ts) FILTER (WHERE {create}), \
           to_char(min({local}) FILTER (WHERE {create}), '%Y-%m') \
         FROM events \
         WHERE {days} AND (type IN ('m.room.create', 'm.room.encryption', 'm.room.join_rules', \
                                    'im.vector.room.access_rules') OR is_direct IS NOT NULL){rooms_condition} \
         GROUP BY room",
        days = days.condition(),
        local = super::super::definitions::Source::Events.time(timezone),
    );
    let batches = ctx.sql(&sql).await?.collect().await?;
    let mut out = BTreeMap::new();
    for batch in batches {
        let c = |i: usize| batch.column(i);
        let room = i64s(c(0))?;
        let (is_direct, encrypted) = (c(1).as_boolean(), c(2).as_boolean());
        let (jr_ts, jr, ar_ts, ar) = (micros(c(3))?, strings(c(4))?, micros(c(5))?, strings(c(6))?);
        let (created_at, server, domain, creator, room_type) = (
            micros(c(7))?,
            strings(c(8))?,
            strings(c(9))?,
            i64s(c(10))?,
            strings(c(11))?,
        );
        let room = room.as_primitive::<Int64Type>();
        let (jr_ts, ar_ts, created_at) = (
            jr_ts.as_primitive::<TimestampMicrosecondType>(),
            ar_ts.as_primitive::<TimestampMicrosecondType>(),
            created_at.as_primitive::<TimestampMicrosecondType>(),
        );
        let (jr, ar, server, domain, room_type) = (
            jr.as_string::<i32>(),
            ar.as_string::<i32>(),
            server.as_string::<i32>(),
            domain.as_string::<i32>(),
            room_type.as_string::<i32>(),
        );
        let creator = creator.as_primitive::<Int64Type>();
        let month = strings(c(12))?;
        let month = month.as_string::<i32>();
        for row in 0..batch.num_rows() {
            let created = match (
                opt_ts(created_at, row),
                opt_string(server, row),
                opt_string(month, row),
            ) {
                (Some(at), Some(server), Some(month)) if !creator.is_null(row) => Some(Creation {
                    server,
                    domain: opt_string(domain, row),
                    creator: creator.value(row),
                    created_at: at,
                    room_type: opt_string(room_type, row),
                    month,
                }),
                _ => None,
            };
            out.insert(
                room.value(row),
                RoomFacts {
                    created,
                    is_direct: !is_direct.is_null(row) && is_direct.value(row),
                    encrypted: !encrypted.is_null(row) && encrypted.value(row),
                    join_rule: opt_ts(jr_ts, row).map(|ts| (ts, opt_string(jr, row))),
                    access_rule: opt_ts(ar_ts, row).map(|ts| (ts, opt_string(ar, row))),
                },
            );
        }
    }
    Ok(out)
}

/// A room of the `rooms` rollup: its pseudonym and its facts (with its creation).
pub type RolledRoom = (i64, RoomFacts);

/// Rows of the `rooms` table.
pub fn rooms_batch(rooms: &[RolledRoom]) -> Result<RecordBatch, QueryError> {
    let created: Vec<&Creation> = rooms
        .iter()
        .map(|(room, facts)| {
            facts
                .created
                .as_ref()
                .ok_or_else(|| QueryError::Internal(format!("room {room} without creation")))
        })
        .collect::<Result<_, _>>()?;
    let ts = |values: Vec<Option<i64>>| {
        Arc::new(TimestampMicrosecondArray::from(values).with_timezone("UTC")) as ArrayRef
    };
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(
            created.iter().map(|c| &c.month),
        )),
        Arc::new(Int64Array::from_iter_values(
            rooms.iter().map(|(room, _)| *room),
        )),
        Arc::new(StringArray::from_iter_values(
            created.iter().map(|c| &c.server),
        )),
        Arc::new(StringArray::from_iter(
            created.iter().map(|c| c.domain.as_deref()),
        )),
        Arc::new(Int64Array::from_iter_values(
            created.iter().map(|c| c.creator),
        )),
        ts(created.iter().map(|c| Some(c.created_at)).collect()),
        Arc::new(StringArray::from_iter(
            created.iter().map(|c| c.room_type.as_deref()),
        )),
        Arc::new(BooleanArray::from_iter(
            rooms.iter().map(|(_, facts)| Some(facts.is_direct)),
        )),
        Arc::new(BooleanArray::from_iter(
            rooms.iter().map(|(_, facts)| Some(facts.encrypted)),
        )),
        Arc::new(StringArray::from_iter(rooms.iter().map(|(_, facts)| {
            facts
                .join_rule
                .as_ref()
                .and_then(|(_, rule)| rule.as_deref())
        }))),
        ts(rooms
            .iter()
            .map(|(_, facts)| facts.join_rule.as_ref().map(|(t, _)| *t))
            .collect()),
        Arc::new(StringArray::from_iter(rooms.iter().map(|(_, facts)| {
            facts
                .access_rule
                .as_ref()
                .and_then(|(_, rule)| rule.as_deref())
        }))),
        ts(rooms
            .iter()
            .map(|(_, facts)| facts.access_rule.as_ref().map(|(t, _)| *t))
            .collect()),
    ];
    Ok(RecordBatch::try_new(rooms_schema(), columns)?)
}

/// The rooms of batches of the `rooms` table.
pub fn rooms_from_batches(batches: &[RecordBatch]) -> Result<Vec<RolledRoom>, QueryError> {
    let mut out = Vec::new();
    for batch in batches {
        let column = |name: &str| {
            batch
                .column_by_name(name)
                .cloned()
                .ok_or_else(|| QueryError::Lake(format!("rooms rollup without column {name}")))
        };
        let (month, server, domain, room_type, jr, ar) = (
            strings(&column("month")?)?,
            strings(&column("server")?)?,
            strings(&column("domain")?)?,
            strings(&column("room_type")?)?,
            strings(&column("join_rule")?)?,
            strings(&column("access_rule")?)?,
        );
        let (room, creator) = (i64s(&column("room")?)?, i64s(&column("creator")?)?);
        let (created_at, jr_ts, ar_ts) = (
            micros(&column("created_at")?)?,
            micros(&column("join_rule_ts")?)?,
            micros(&column("access_rule_ts")?)?,
        );
        let (is_direct, encrypted) = (column("is_direct")?, column("encrypted")?);
        let (is_direct, encrypted) = (is_direct.as_boolean(), encrypted.as_boolean());
        let (month, server, domain, room_type, jr, ar) = (
            month.as_string::<i32>(),
            server.as_string::<i32>(),
            domain.as_string::<i32>(),
            room_type.as_string::<i32>(),
            jr.as_string::<i32>(),
            ar.as_string::<i32>(),
        );
        let (room, creator) = (
            room.as_primitive::<Int64Type>(),
            creator.as_primitive::<Int64Type>(),
        );
        let (created_at, jr_ts, ar_ts) = (
            created_at.as_primitive::<TimestampMicrosecondType>(),
            jr_ts.as_primitive::<TimestampMicrosecondType>(),
            ar_ts.as_primitive::<TimestampMicrosecondType>(),
        );
        for row in 0..batch.num_rows() {
            out.push((
                room.value(row),
                RoomFacts {
                    created: Some(Creation {
                        server: server.value(row).to_owned(),
                        domain: opt_string(domain, row),
                        creator: creator.value(row),
                        created_at: created_at.value(row),
                        room_type: opt_string(room_type, row),
                        month: month.value(row).to_owned(),
                    }),
                    is_direct: is_direct.value(row),
                    encrypted: encrypted.value(row),
                    join_rule: opt_ts(jr_ts, row).map(|t| (t, opt_string(jr, row))),
                    access_rule: opt_ts(ar_ts, row).map(|t| (t, opt_string(ar, row))),
                },
            ));
        }
    }
    Ok(out)
}

/// The last membership of a user in a room: (its time, the membership).
pub type Membership = (i64, Option<String>);

/// (room, target) -> the last membership.
pub type Memberships = BTreeMap<(i64, Option<i64>), Membership>;

/// Folds `other` into `into`: the later membership of each user wins. `other` is counted
/// from whole days from its first on, so it holds every membership of the minute of one of
/// `into`'s that it also covers: at equal times, `other`'s is the one ordered last.
pub fn merge_memberships(into: &mut Memberships, other: Memberships) {
    for (key, membership) in other {
        match into.get(&key) {
            Some(known) if known.0 > membership.0 => {}
            _ => {
                into.insert(key, membership);
            }
        }
    }
}

/// The last membership of each user in `rooms` over `days` of raw events.
pub async fn memberships_from_events(
    ctx: &SessionContext,
    days: &Days,
    rooms: &[i64],
) -> Result<Memberships, QueryError> {
    if rooms.is_empty() {
        return Ok(Memberships::new());
    }
    want_rooms(ctx, rooms)?;
    let sql = crate::session::last_memberships(&format!(
        "{days} AND room IN (SELECT room FROM mx_wanted_rooms)",
        days = days.condition()
    ));
    let batches = ctx.sql(&sql).await?.collect().await?;
    memberships_from_batches(&batches)
}

/// The memberships of batches of `(room, target, ts, membership)` columns.
pub fn memberships_from_batches(batches: &[RecordBatch]) -> Result<Memberships, QueryError> {
    let mut out = Memberships::new();
    for batch in batches {
        let (room, target, ts, membership) = (
            i64s(batch.column(0))?,
            i64s(batch.column(1))?,
            micros(batch.column(2))?,
            strings(batch.column(3))?,
        );
        let (room, target) = (
            room.as_primitive::<Int64Type>(),
            target.as_primitive::<Int64Type>(),
        );
        let ts = ts.as_primitive::<TimestampMicrosecondType>();
        let membership = membership.as_string::<i32>();
        for row in 0..batch.num_rows() {
            let target = (!target.is_null(row)).then(|| target.value(row));
            out.insert(
                (room.value(row), target),
                (ts.value(row), opt_string(membership, row)),
            );
        }
    }
    Ok(out)
}

/// Rows of the `forum_members` table.
pub fn memberships_batch(memberships: &Memberships) -> Result<RecordBatch, QueryError> {
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from_iter_values(
            memberships.keys().map(|(room, _)| *room),
        )),
        Arc::new(Int64Array::from_iter(
            memberships.keys().map(|(_, target)| *target),
        )),
        Arc::new(
            TimestampMicrosecondArray::from_iter_values(memberships.values().map(|(ts, _)| *ts))
                .with_timezone("UTC"),
        ),
        Arc::new(StringArray::from_iter(
            memberships.values().map(|(_, m)| m.as_deref()),
        )),
    ];
    Ok(RecordBatch::try_new(forum_members_schema(), columns)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(direct: bool, encrypted: bool, join: Option<(i64, &str)>) -> RoomFacts {
        RoomFacts {
            created: None,
            is_direct: direct,
            encrypted,
            join_rule: join.map(|(t, r)| (t, Some(r.to_owned()))),
            access_rule: None,
        }
    }

    #[test]
    fn facts_merge_whatever_the_order_and_twice() {
        let a = facts(false, false, Some((20, "invite")));
        let b = facts(true, false, Some((10, "public")));
        let c = facts(false, true, None);
        let abc = a.merge(&b).merge(&c);
        assert_eq!(abc, c.merge(&a).merge(&b));
        assert_eq!(
            abc,
            abc.merge(&b),
            "folding the same days again changes nothing"
        );
        assert_eq!(abc.join_rule, Some((10, Some("public".into()))));
        assert!(abc.is_direct && abc.encrypted);
        assert!(abc.is_forum_candidate());
        assert!(!a.is_forum_candidate());
    }

    #[test]
    fn the_later_membership_wins() {
        let mut known = Memberships::new();
        known.insert((1, Some(7)), (100, Some("join".into())));
        let mut new = Memberships::new();
        new.insert((1, Some(7)), (50, Some("leave".into())));
        new.insert((1, Some(8)), (60, Some("join".into())));
        merge_memberships(&mut known, new.clone());
        assert_eq!(known[&(1, Some(7))].1.as_deref(), Some("join"));
        assert_eq!(known.len(), 2);
        new.insert((1, Some(7)), (150, Some("leave".into())));
        merge_memberships(&mut known, new);
        assert_eq!(known[&(1, Some(7))].1.as_deref(), Some("leave"));
    }
}
