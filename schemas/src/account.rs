//! `AccountRecord`: an account was created, deactivated or reactivated, from Synapse's
//! `users` table or admin API (docs/design.md §3).

use std::sync::{Arc, LazyLock};

use arrow_array::{
    ArrayRef, Date32Array, Int16Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use arrow_schema::{ArrowError, DataType, Schema, SchemaRef};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::arrow_form::{ArrowFormError, CellAt, Columns, field, parsed, required, timestamp_type};
use crate::pseudonym::{KeyId, UserPseudonym};
use crate::record::{Record, RecordKey, SchemaVersion};
use crate::time::UnixMillis;
use crate::topics;
use crate::vocabulary::{AccountChange, UserType};

/// One change of one account, as the hooks publish it on `mxpulse.accounts.v1`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(title = "mxpulse account record, v1")]
pub struct AccountRecord {
    /// Schema version (also in the `mxpulse-schema-version` header).
    pub v: SchemaVersion,
    /// Public id of the key that made the pseudonyms.
    pub key_id: KeyId,
    /// When the change happened, milliseconds since the epoch, UTC (Synapse's
    /// `users.creation_ts` is in seconds: the hooks convert it).
    pub ts: UnixMillis,
    /// Server name of the reporting homeserver.
    pub server: String,
    /// Pseudonym of the user.
    pub user: UserPseudonym,
    /// E-mail domain read from the localpart, where the server encodes one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    pub change: AccountChange,
    pub user_type: UserType,
}

fn account_key(user: UserPseudonym, change: &str, ts: UnixMillis) -> RecordKey {
    RecordKey(format!("{user}:{change}:{}", ts.0))
}

static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        field("date", DataType::Date32, false),
        field("ts", timestamp_type(), false),
        field("server", DataType::Utf8, false),
        field("domain", DataType::Utf8, true),
        field("user", DataType::Int64, false),
        field("change", DataType::Utf8, false),
        field("user_type", DataType::Utf8, false),
        field("key_id", DataType::Utf8, false),
        field("v", DataType::Int16, false),
    ]))
});

impl Record for AccountRecord {
    const TOPIC: &'static str = topics::ACCOUNTS;
    const TABLE: &'static str = "accounts";
    const PARTITION_COLUMN: &'static str = "date";

    const IDENTITY_COLUMNS: &'static [&'static str] = &["user", "change", "ts"];

    /// user + change + ts: an account can be deactivated and reactivated more than once.
    fn key(&self) -> RecordKey {
        account_key(self.user, self.change.as_str(), self.ts)
    }

    fn keys_from_batch(batch: &RecordBatch) -> Result<Vec<RecordKey>, ArrowFormError> {
        let c = Columns(batch);
        let (user, change, ts) = (c.i64s("user")?, c.strings("change")?, c.timestamps("ts")?);
        (0..batch.num_rows())
            .map(|row| {
                let change: AccountChange =
                    required("change", row, parsed("change", row, change.at(row))?)?;
                Ok(account_key(
                    UserPseudonym::from_i64(required("user", row, user.at(row))?),
                    change.as_str(),
                    UnixMillis::from_micros(required("ts", row, ts.at(row))?),
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
            Arc::new(StringArray::from_iter(
                r.iter().map(|e| e.domain.as_deref()),
            )),
            Arc::new(Int64Array::from_iter_values(
                r.iter().map(|e| e.user.to_i64()),
            )),
            Arc::new(StringArray::from_iter_values(
                r.iter().map(|e| e.change.as_str()),
            )),
            Arc::new(StringArray::from_iter_values(
                r.iter().map(|e| e.user_type.as_str()),
            )),
            Arc::new(StringArray::from_iter_values(
                r.iter().map(|e| e.key_id.to_string()),
            )),
            Arc::new(Int16Array::from_iter_values(r.iter().map(|e| e.v.0 as i16))),
        ];
        RecordBatch::try_new(Self::arrow_schema(), columns)
    }

    fn from_record_batch(batch: &RecordBatch) -> Result<Vec<Self>, ArrowFormError> {
        let c = Columns(batch);
        let (ts, server, domain, user) = (
            c.timestamps("ts")?,
            c.strings("server")?,
            c.strings("domain")?,
            c.i64s("user")?,
        );
        let (change, user_type, key_id, v) = (
            c.strings("change")?,
            c.strings("user_type")?,
            c.strings("key_id")?,
            c.i16s("v")?,
        );
        (0..batch.num_rows())
            .map(|row| {
                Ok(AccountRecord {
                    v: SchemaVersion(required("v", row, v.at(row))? as u16),
                    key_id: required("key_id", row, parsed("key_id", row, key_id.at(row))?)?,
                    ts: UnixMillis::from_micros(required("ts", row, ts.at(row))?),
                    server: required("server", row, server.at(row).map(str::to_owned))?,
                    user: UserPseudonym::from_i64(required("user", row, user.at(row))?),
                    domain: domain.at(row).map(str::to_owned),
                    change: required("change", row, parsed("change", row, change.at(row))?)?,
                    user_type: required(
                        "user_type",
                        row,
                        parsed("user_type", row, user_type.at(row))?,
                    )?,
                })
            })
            .collect()
    }
}
