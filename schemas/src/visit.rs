//! `VisitRecord`: a user was active on a device on a UTC day, from Synapse's
//! `user_daily_visits` (docs/design.md §3). The user agent is reduced to platform and client.

use std::sync::{Arc, LazyLock};

use arrow_array::{ArrayRef, Date32Array, Int16Array, Int64Array, RecordBatch, StringArray};
use arrow_schema::{ArrowError, DataType, Schema, SchemaRef};
use chrono::NaiveDate;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::arrow_form::{ArrowFormError, CellAt, Columns, field, parsed, required};
use crate::client_family::ClientFamily;
use crate::pseudonym::{DevicePseudonym, KeyId, UserPseudonym};
use crate::record::{Record, RecordKey, SchemaVersion};
use crate::time::{date_to_days, days_to_date};
use crate::topics;
use crate::vocabulary::{Client, Platform};

/// One (user, device, UTC day), as the hooks publish it on `mxpulse.visits.v1`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(title = "mxpulse visit record, v2")]
pub struct VisitRecord {
    /// Schema version (also in the `mxpulse-schema-version` header).
    pub v: SchemaVersion,
    /// Public id of the key that made the pseudonyms.
    pub key_id: KeyId,
    /// The UTC day, as Synapse writes `user_daily_visits.timestamp`.
    pub day: NaiveDate,
    /// Server name of the reporting homeserver.
    pub server: String,
    /// Pseudonym of the user.
    pub user: UserPseudonym,
    /// Pseudonym of the user's device; absent when Synapse recorded none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<DevicePseudonym>,
    /// E-mail domain read from the localpart, where the server encodes one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    pub platform: Platform,
    pub client: Client,
    /// The app, by the hooks' user-agent rules (schema version 2; absent in version 1, whose
    /// visits are counted under the family `unknown`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family: Option<ClientFamily>,
}

fn visit_key(user: UserPseudonym, device: Option<DevicePseudonym>, day: NaiveDate) -> RecordKey {
    let device = device.map_or_else(|| "-".to_owned(), |d| d.to_string());
    RecordKey(format!("{user}:{device}:{day}"))
}

static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        field("day", DataType::Date32, false),
        field("server", DataType::Utf8, false),
        field("domain", DataType::Utf8, true),
        field("user", DataType::Int64, false),
        field("device", DataType::Int64, true),
        field("platform", DataType::Utf8, false),
        field("client", DataType::Utf8, false),
        field("key_id", DataType::Utf8, false),
        field("v", DataType::Int16, false),
        // Version 2: tables written before it gain the column (nullable, at the end).
        field("family", DataType::Utf8, true),
    ]))
});

impl Record for VisitRecord {
    const TOPIC: &'static str = topics::VISITS;
    const TABLE: &'static str = "visits";
    const PARTITION_COLUMN: &'static str = "day";

    const IDENTITY_COLUMNS: &'static [&'static str] = &["user", "device", "day"];

    /// user + device + day: Synapse writes one row per device per day, so the row is the visit.
    fn key(&self) -> RecordKey {
        visit_key(self.user, self.device, self.day)
    }

    fn keys_from_batch(batch: &RecordBatch) -> Result<Vec<RecordKey>, ArrowFormError> {
        let c = Columns(batch);
        let (user, device, day) = (c.i64s("user")?, c.i64s("device")?, c.dates("day")?);
        (0..batch.num_rows())
            .map(|row| {
                let days = required("day", row, day.at(row))?;
                let date = days_to_date(days).ok_or_else(|| ArrowFormError::Value {
                    column: "day",
                    row,
                    reason: format!("{days} is out of range"),
                })?;
                Ok(visit_key(
                    UserPseudonym::from_i64(required("user", row, user.at(row))?),
                    device.at(row).map(DevicePseudonym::from_i64),
                    date,
                ))
            })
            .collect()
    }

    fn partition_day(&self) -> i32 {
        date_to_days(self.day)
    }

    fn time_micros(&self) -> i64 {
        i64::from(date_to_days(self.day)) * 86_400_000_000
    }

    fn arrow_schema() -> SchemaRef {
        SCHEMA.clone()
    }

    fn to_record_batch(records: &[Self]) -> Result<RecordBatch, ArrowError> {
        let r = records;
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Date32Array::from_iter_values(
                r.iter().map(|e| date_to_days(e.day)),
            )),
            Arc::new(StringArray::from_iter_values(r.iter().map(|e| &e.server))),
            Arc::new(StringArray::from_iter(
                r.iter().map(|e| e.domain.as_deref()),
            )),
            Arc::new(Int64Array::from_iter_values(
                r.iter().map(|e| e.user.to_i64()),
            )),
            Arc::new(Int64Array::from_iter(
                r.iter().map(|e| e.device.map(DevicePseudonym::to_i64)),
            )),
            Arc::new(StringArray::from_iter_values(
                r.iter().map(|e| e.platform.as_str()),
            )),
            Arc::new(StringArray::from_iter_values(
                r.iter().map(|e| e.client.as_str()),
            )),
            Arc::new(StringArray::from_iter_values(
                r.iter().map(|e| e.key_id.to_string()),
            )),
            Arc::new(Int16Array::from_iter_values(r.iter().map(|e| e.v.0 as i16))),
            Arc::new(StringArray::from_iter(
                r.iter()
                    .map(|e| e.family.as_ref().map(ClientFamily::as_str)),
            )),
        ];
        RecordBatch::try_new(Self::arrow_schema(), columns)
    }

    fn from_record_batch(batch: &RecordBatch) -> Result<Vec<Self>, ArrowFormError> {
        let c = Columns(batch);
        let (day, server, domain, user, device) = (
            c.dates("day")?,
            c.strings("server")?,
            c.strings("domain")?,
            c.i64s("user")?,
            c.i64s("device")?,
        );
        let (platform, client, key_id, v) = (
            c.strings("platform")?,
            c.strings("client")?,
            c.strings("key_id")?,
            c.i16s("v")?,
        );
        // A batch of a table written before version 2 has no `family` column.
        let family = batch
            .schema()
            .index_of("family")
            .ok()
            .map(|_| c.strings("family"))
            .transpose()?;
        (0..batch.num_rows())
            .map(|row| {
                let days = required("day", row, day.at(row))?;
                Ok(VisitRecord {
                    v: SchemaVersion(required("v", row, v.at(row))? as u16),
                    key_id: required("key_id", row, parsed("key_id", row, key_id.at(row))?)?,
                    day: days_to_date(days).ok_or_else(|| ArrowFormError::Value {
                        column: "day",
                        row,
                        reason: format!("{days} is out of range"),
                    })?,
                    server: required("server", row, server.at(row).map(str::to_owned))?,
                    user: UserPseudonym::from_i64(required("user", row, user.at(row))?),
                    device: device.at(row).map(DevicePseudonym::from_i64),
                    domain: domain.at(row).map(str::to_owned),
                    platform: required(
                        "platform",
                        row,
                        parsed("platform", row, platform.at(row))?,
                    )?,
                    client: required("client", row, parsed("client", row, client.at(row))?)?,
                    family: match &family {
                        Some(column) => parsed("family", row, column.at(row))?,
                        None => None,
                    },
                })
            })
            .collect()
    }
}
