//! `EventRecord`: one Matrix event sent by a user local to the reporting homeserver, reduced
//! to the facts the figures need (docs/design.md §3). No content, no Matrix ID, no room name.

use std::sync::{Arc, LazyLock};

use arrow_array::{
    ArrayRef, BinaryArray, BooleanArray, Date32Array, Int16Array, Int64Array, RecordBatch,
    StringArray, TimestampMicrosecondArray,
};
use arrow_schema::{ArrowError, DataType, Schema, SchemaRef};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::arrow_form::{ArrowFormError, CellAt, Columns, field, parsed, required, timestamp_type};
use crate::pseudonym::{EventPseudonym, KeyId, RoomPseudonym, UserPseudonym};
use crate::record::{KeyPrint, Record, RecordKey, SchemaVersion};
use crate::time::UnixMillis;
use crate::topics;
use crate::vocabulary::{
    AccessRule, CallChange, EventType, JoinRule, Membership, MsgType, RelType, RoomType, Source,
};

/// One event, as the hooks publish it on `mxpulse.events.v1`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(title = "mxpulse event record, v1")]
pub struct EventRecord {
    /// Schema version (also in the `mxpulse-schema-version` header).
    pub v: SchemaVersion,
    /// Public id of the key that made the pseudonyms.
    pub key_id: KeyId,
    /// Pseudonym of the event ID: the record's identity.
    pub event: EventPseudonym,
    /// `origin_server_ts`, milliseconds since the epoch, UTC.
    pub ts: UnixMillis,
    /// Server name of the reporting homeserver (public, not personal).
    pub server: String,
    /// Pseudonym of the sender.
    pub sender: UserPseudonym,
    /// E-mail domain read from the sender's localpart, where the server encodes one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// Pseudonym of the room.
    pub room: RoomPseudonym,
    /// Matrix event type from the allow-list, else `other`.
    #[serde(rename = "type")]
    pub event_type: EventType,
    /// `msgtype` of a cleartext message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub msgtype: Option<MsgType>,
    /// `rel_type` from the cleartext `m.relates_to`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rel_type: Option<RelType>,
    /// Pseudonym of the user a membership event is about (its `state_key`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<UserPseudonym>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub membership: Option<Membership>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub join_rule: Option<JoinRule>,
    /// Tchap's `im.vector.room.access_rules` rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_rule: Option<AccessRule>,
    /// True on `m.room.encryption` (and on a create event whose room starts encrypted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encrypted: Option<bool>,
    /// `is_direct` of an invite or of the create event's initial state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_direct: Option<bool>,
    /// `type` of `m.room.create` (spaces).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room_type: Option<RoomType>,
    /// MatrixRTC membership join or leave.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call: Option<CallChange>,
    /// `live` of `m.beacon_info`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live: Option<bool>,
    /// Which path of the hooks saw the event.
    pub source: Source,
    /// Pseudonym of the state event this one replaces (Synapse's `replaces_state`), on
    /// membership changes: the order of a room's memberships without their times, which
    /// leave the hooks to the minute (docs/design.md §3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaces: Option<EventPseudonym>,
}

impl EventRecord {
    /// A record with only the required facts; the optional ones start empty.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        key_id: KeyId,
        event: EventPseudonym,
        ts: UnixMillis,
        server: impl Into<String>,
        sender: UserPseudonym,
        room: RoomPseudonym,
        event_type: EventType,
        source: Source,
    ) -> Self {
        Self {
            v: SchemaVersion::CURRENT,
            key_id,
            event,
            ts,
            server: server.into(),
            sender,
            domain: None,
            room,
            event_type,
            msgtype: None,
            rel_type: None,
            target: None,
            membership: None,
            join_rule: None,
            access_rule: None,
            encrypted: None,
            is_direct: None,
            room_type: None,
            call: None,
            live: None,
            source,
            replaces: None,
        }
    }
}

static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        field("date", DataType::Date32, false),
        field("ts", timestamp_type(), false),
        field("server", DataType::Utf8, false),
        field("domain", DataType::Utf8, true),
        field("sender", DataType::Int64, false),
        field("room", DataType::Int64, false),
        field("event", DataType::Binary, false),
        field("type", DataType::Utf8, false),
        field("msgtype", DataType::Utf8, true),
        field("rel_type", DataType::Utf8, true),
        field("target", DataType::Int64, true),
        field("membership", DataType::Utf8, true),
        field("join_rule", DataType::Utf8, true),
        field("access_rule", DataType::Utf8, true),
        field("encrypted", DataType::Boolean, true),
        field("is_direct", DataType::Boolean, true),
        field("room_type", DataType::Utf8, true),
        field("call", DataType::Utf8, true),
        field("live", DataType::Boolean, true),
        field("source", DataType::Utf8, false),
        field("key_id", DataType::Utf8, false),
        field("v", DataType::Int16, false),
        // Added after the first tables were written: last, as a table's schema evolves.
        field("replaces", DataType::Binary, true),
    ]))
});

/// The `event` column of a batch, checked whole before any row is used.
fn event_pseudonyms(
    batch: &RecordBatch,
) -> Result<impl Iterator<Item = EventPseudonym>, ArrowFormError> {
    let event = Columns(batch).binaries("event")?;
    let events = (0..batch.num_rows())
        .map(|row| {
            let bytes = required("event", row, event.at(row))?;
            let bytes: [u8; 16] = bytes.try_into().map_err(|_| ArrowFormError::Value {
                column: "event",
                row,
                reason: format!("{} bytes, expected 16", bytes.len()),
            })?;
            Ok(EventPseudonym::from_bytes(bytes))
        })
        .collect::<Result<Vec<_>, ArrowFormError>>()?;
    Ok(events.into_iter())
}

impl Record for EventRecord {
    const TOPIC: &'static str = topics::EVENTS;
    const TABLE: &'static str = "events";
    const PARTITION_COLUMN: &'static str = "date";

    const IDENTITY_COLUMNS: &'static [&'static str] = &["event"];

    fn key(&self) -> RecordKey {
        RecordKey(self.event.to_string())
    }

    fn keys_from_batch(batch: &RecordBatch) -> Result<Vec<RecordKey>, ArrowFormError> {
        Ok(event_pseudonyms(batch)?
            .map(|event| RecordKey(event.to_string()))
            .collect())
    }

    /// The event pseudonym itself: already 128 bits, unique per event.
    fn key_print(&self) -> KeyPrint {
        KeyPrint(self.event.0)
    }

    fn key_prints_from_batch(batch: &RecordBatch) -> Result<Vec<KeyPrint>, ArrowFormError> {
        Ok(event_pseudonyms(batch)?
            .map(|event| KeyPrint(event.0))
            .collect())
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
            Arc::new(StringArray::from_iter(
                r.iter().map(|e| e.domain.as_deref()),
            )),
            Arc::new(Int64Array::from_iter_values(
                r.iter().map(|e| e.sender.to_i64()),
            )),
            Arc::new(Int64Array::from_iter_values(
                r.iter().map(|e| e.room.to_i64()),
            )),
            Arc::new(BinaryArray::from_iter_values(
                r.iter().map(|e| e.event.to_bytes()),
            )),
            Arc::new(StringArray::from_iter_values(
                r.iter().map(|e| e.event_type.as_str()),
            )),
            Arc::new(StringArray::from_iter(
                r.iter().map(|e| e.msgtype.map(MsgType::as_str)),
            )),
            Arc::new(StringArray::from_iter(
                r.iter().map(|e| e.rel_type.map(RelType::as_str)),
            )),
            Arc::new(Int64Array::from_iter(
                r.iter().map(|e| e.target.map(UserPseudonym::to_i64)),
            )),
            Arc::new(StringArray::from_iter(
                r.iter().map(|e| e.membership.map(Membership::as_str)),
            )),
            Arc::new(StringArray::from_iter(
                r.iter().map(|e| e.join_rule.map(JoinRule::as_str)),
            )),
            Arc::new(StringArray::from_iter(
                r.iter().map(|e| e.access_rule.map(AccessRule::as_str)),
            )),
            Arc::new(BooleanArray::from_iter(r.iter().map(|e| e.encrypted))),
            Arc::new(BooleanArray::from_iter(r.iter().map(|e| e.is_direct))),
            Arc::new(StringArray::from_iter(
                r.iter().map(|e| e.room_type.map(RoomType::as_str)),
            )),
            Arc::new(StringArray::from_iter(
                r.iter().map(|e| e.call.map(CallChange::as_str)),
            )),
            Arc::new(BooleanArray::from_iter(r.iter().map(|e| e.live))),
            Arc::new(StringArray::from_iter_values(
                r.iter().map(|e| e.source.as_str()),
            )),
            Arc::new(StringArray::from_iter_values(
                r.iter().map(|e| e.key_id.to_string()),
            )),
            Arc::new(Int16Array::from_iter_values(r.iter().map(|e| e.v.0 as i16))),
            Arc::new(BinaryArray::from_iter(
                r.iter().map(|e| e.replaces.map(|p| p.to_bytes())),
            )),
        ];
        RecordBatch::try_new(Self::arrow_schema(), columns)
    }

    fn from_record_batch(batch: &RecordBatch) -> Result<Vec<Self>, ArrowFormError> {
        let c = Columns(batch);
        let (ts, server, domain, sender, room, event) = (
            c.timestamps("ts")?,
            c.strings("server")?,
            c.strings("domain")?,
            c.i64s("sender")?,
            c.i64s("room")?,
            c.binaries("event")?,
        );
        let (event_type, msgtype, rel_type, target, membership) = (
            c.strings("type")?,
            c.strings("msgtype")?,
            c.strings("rel_type")?,
            c.i64s("target")?,
            c.strings("membership")?,
        );
        let (join_rule, access_rule, encrypted, is_direct, room_type) = (
            c.strings("join_rule")?,
            c.strings("access_rule")?,
            c.bools("encrypted")?,
            c.bools("is_direct")?,
            c.strings("room_type")?,
        );
        let (call, live, source, key_id, v) = (
            c.strings("call")?,
            c.bools("live")?,
            c.strings("source")?,
            c.strings("key_id")?,
            c.i16s("v")?,
        );
        // Absent from batches of tables written before it existed.
        let replaces = batch
            .schema()
            .index_of("replaces")
            .ok()
            .map(|_| c.binaries("replaces"))
            .transpose()?;

        (0..batch.num_rows())
            .map(|row| {
                let event_bytes = required("event", row, event.at(row))?;
                let event_bytes: [u8; 16] =
                    event_bytes.try_into().map_err(|_| ArrowFormError::Value {
                        column: "event",
                        row,
                        reason: format!("{} bytes, expected 16", event_bytes.len()),
                    })?;
                Ok(EventRecord {
                    v: SchemaVersion(required("v", row, v.at(row))? as u16),
                    key_id: required("key_id", row, parsed("key_id", row, key_id.at(row))?)?,
                    event: EventPseudonym::from_bytes(event_bytes),
                    ts: UnixMillis::from_micros(required("ts", row, ts.at(row))?),
                    server: required("server", row, server.at(row).map(str::to_owned))?,
                    sender: UserPseudonym::from_i64(required("sender", row, sender.at(row))?),
                    domain: domain.at(row).map(str::to_owned),
                    room: RoomPseudonym::from_i64(required("room", row, room.at(row))?),
                    event_type: required("type", row, parsed("type", row, event_type.at(row))?)?,
                    msgtype: parsed("msgtype", row, msgtype.at(row))?,
                    rel_type: parsed("rel_type", row, rel_type.at(row))?,
                    target: target.at(row).map(UserPseudonym::from_i64),
                    membership: parsed("membership", row, membership.at(row))?,
                    join_rule: parsed("join_rule", row, join_rule.at(row))?,
                    access_rule: parsed("access_rule", row, access_rule.at(row))?,
                    encrypted: encrypted.at(row),
                    is_direct: is_direct.at(row),
                    room_type: parsed("room_type", row, room_type.at(row))?,
                    call: parsed("call", row, call.at(row))?,
                    live: live.at(row),
                    source: required("source", row, parsed("source", row, source.at(row))?)?,
                    replaces: match replaces.as_ref().and_then(|column| column.at(row)) {
                        None => None,
                        Some(bytes) => Some(EventPseudonym::from_bytes(bytes.try_into().map_err(
                            |_| ArrowFormError::Value {
                                column: "replaces",
                                row,
                                reason: format!("{} bytes, expected 16", bytes.len()),
                            },
                        )?)),
                    },
                })
            })
            .collect()
    }
}
