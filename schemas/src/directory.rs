//! `DirectoryRecord`: a room of a homeserver's public room directory, with the name and topic
//! every user of the directory sees, from Synapse's `rooms.is_public` and `room_stats_state`
//! (docs/design.md §3). Rooms outside the directory are never named: a record of one says
//! only that it left.

use std::sync::{Arc, LazyLock};

use arrow_array::{
    ArrayRef, BooleanArray, Date32Array, Int16Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use arrow_schema::{ArrowError, DataType, Schema, SchemaRef};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::arrow_form::{ArrowFormError, CellAt, Columns, field, parsed, required, timestamp_type};
use crate::pseudonym::{KeyId, RoomPseudonym};
use crate::record::{Record, RecordKey, SchemaVersion};
use crate::time::{UnixMillis, days_to_date};
use crate::topics;

/// The longest name or topic line kept, in characters.
pub const DIRECTORY_TEXT_CHARS: usize = 200;

/// One room's entry in one server's public directory, as the hooks publish it on
/// `mxpulse.directory.v1`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(title = "mxpulse directory record, v1")]
pub struct DirectoryRecord {
    /// Schema version (also in the `mxpulse-schema-version` header).
    pub v: SchemaVersion,
    /// Public id of the key that made the pseudonyms.
    pub key_id: KeyId,
    /// When the hooks read the directory, milliseconds since the epoch, UTC, to the minute.
    pub ts: UnixMillis,
    /// Server name of the reporting homeserver, whose directory lists the room.
    pub server: String,
    /// Pseudonym of the room.
    pub room: RoomPseudonym,
    /// Whether the room is in the directory; `false` when it left (nothing else is then said).
    pub listed: bool,
    /// The room's name, at most 200 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The first line of the room's topic, at most 200 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
}

impl DirectoryRecord {
    /// `text` as a directory shows it in a list: its first non-empty line, trimmed, cut to
    /// [`DIRECTORY_TEXT_CHARS`] characters (with an ellipsis when cut); `None` when empty.
    pub fn one_line(text: &str) -> Option<String> {
        let line = text.lines().map(str::trim).find(|l| !l.is_empty())?;
        let mut chars = line.chars();
        let mut kept: String = chars.by_ref().take(DIRECTORY_TEXT_CHARS).collect();
        if chars.next().is_some() {
            kept.pop();
            kept.push('…');
        }
        Some(kept)
    }
}

/// server + room + UTC day + what is said: the hooks say each listed room again every day
/// (and after each start), and a change of the day is a new record.
fn directory_key(
    server: &str,
    room: RoomPseudonym,
    day: i32,
    listed: bool,
    name: Option<&str>,
    topic: Option<&str>,
) -> RecordKey {
    use sha2::{Digest, Sha256};
    let mut said = Sha256::new();
    for part in [name, topic] {
        said.update(part.map_or(&b"\x00-"[..], str::as_bytes));
        said.update(b"\x00");
    }
    let digest = said.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    let day = days_to_date(day).map_or_else(|| day.to_string(), |d| d.to_string());
    RecordKey(format!(
        "{server}:{room}:{day}:{listed}:{:016x}",
        u64::from_be_bytes(first)
    ))
}

static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        field("date", DataType::Date32, false),
        field("ts", timestamp_type(), false),
        field("server", DataType::Utf8, false),
        field("room", DataType::Int64, false),
        field("listed", DataType::Boolean, false),
        field("name", DataType::Utf8, true),
        field("topic", DataType::Utf8, true),
        field("key_id", DataType::Utf8, false),
        field("v", DataType::Int16, false),
    ]))
});

impl Record for DirectoryRecord {
    const TOPIC: &'static str = topics::DIRECTORY;
    const TABLE: &'static str = "directory";
    const PARTITION_COLUMN: &'static str = "date";

    const IDENTITY_COLUMNS: &'static [&'static str] =
        &["server", "room", "date", "listed", "name", "topic"];

    fn key(&self) -> RecordKey {
        directory_key(
            &self.server,
            self.room,
            self.ts.utc_day(),
            self.listed,
            self.name.as_deref(),
            self.topic.as_deref(),
        )
    }

    fn keys_from_batch(batch: &RecordBatch) -> Result<Vec<RecordKey>, ArrowFormError> {
        let c = Columns(batch);
        let (server, room, date, listed, name, topic) = (
            c.strings("server")?,
            c.i64s("room")?,
            c.dates("date")?,
            c.bools("listed")?,
            c.strings("name")?,
            c.strings("topic")?,
        );
        (0..batch.num_rows())
            .map(|row| {
                Ok(directory_key(
                    required("server", row, server.at(row))?,
                    RoomPseudonym::from_i64(required("room", row, room.at(row))?),
                    required("date", row, date.at(row))?,
                    required("listed", row, listed.at(row))?,
                    name.at(row),
                    topic.at(row),
                ))
            })
            .collect()
    }

    fn partition_day(&self) -> i32 {
        self.ts.utc_day()
    }

    fn time_micros(&self) -> i64 {
        self.ts.to_micros()
    }

    fn arrow_schema() -> SchemaRef {
        SCHEMA.clone()
    }

    fn to_record_batch(records: &[Self]) -> Result<RecordBatch, ArrowError> {
        let r = records;
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Date32Array::from_iter_values(
                r.iter().map(|e| e.ts.utc_day()),
            )),
            Arc::new(
                TimestampMicrosecondArray::from_iter_values(r.iter().map(|e| e.ts.to_micros()))
                    .with_timezone("UTC"),
            ),
            Arc::new(StringArray::from_iter_values(r.iter().map(|e| &e.server))),
            Arc::new(Int64Array::from_iter_values(
                r.iter().map(|e| e.room.to_i64()),
            )),
            Arc::new(BooleanArray::from_iter(r.iter().map(|e| Some(e.listed)))),
            Arc::new(StringArray::from_iter(r.iter().map(|e| e.name.as_deref()))),
            Arc::new(StringArray::from_iter(r.iter().map(|e| e.topic.as_deref()))),
            Arc::new(StringArray::from_iter_values(
                r.iter().map(|e| e.key_id.to_string()),
            )),
            Arc::new(Int16Array::from_iter_values(r.iter().map(|e| e.v.0 as i16))),
        ];
        RecordBatch::try_new(Self::arrow_schema(), columns)
    }

    fn from_record_batch(batch: &RecordBatch) -> Result<Vec<Self>, ArrowFormError> {
        let c = Columns(batch);
        let (ts, server, room, listed) = (
            c.timestamps("ts")?,
            c.strings("server")?,
            c.i64s("room")?,
            c.bools("listed")?,
        );
        let (name, topic, key_id, v) = (
            c.strings("name")?,
            c.strings("topic")?,
            c.strings("key_id")?,
            c.i16s("v")?,
        );
        (0..batch.num_rows())
            .map(|row| {
                Ok(DirectoryRecord {
                    v: SchemaVersion(required("v", row, v.at(row))? as u16),
                    key_id: required("key_id", row, parsed("key_id", row, key_id.at(row))?)?,
                    ts: UnixMillis::from_micros(required("ts", row, ts.at(row))?),
                    server: required("server", row, server.at(row).map(str::to_owned))?,
                    room: RoomPseudonym::from_i64(required("room", row, room.at(row))?),
                    listed: required("listed", row, listed.at(row))?,
                    name: name.at(row).map(str::to_owned),
                    topic: topic.at(row).map(str::to_owned),
                })
            })
            .collect()
    }
}
