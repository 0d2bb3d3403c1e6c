//! What every record type has in common: its topic, its identity, its schema version and
//! its Arrow form. The ingest and the tests are generic over [`Record`].

use std::borrow::Cow;
use std::fmt;

use arrow_array::RecordBatch;
use arrow_schema::{ArrowError, SchemaRef};
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::arrow_form::ArrowFormError;

/// Version of the record schemas this build writes and reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SchemaVersion(pub u16);

impl SchemaVersion {
    pub const V1: SchemaVersion = SchemaVersion(1);
    /// Visits gained their client family (docs/design.md §3); every other record is as in 1.
    pub const V2: SchemaVersion = SchemaVersion(2);
    /// What this build writes.
    pub const CURRENT: SchemaVersion = SchemaVersion::V2;
    /// The oldest version this build still reads: records already in Kafka and in the lake
    /// stay readable when the hooks move to a newer version (fields only ever added).
    pub const OLDEST_READ: SchemaVersion = SchemaVersion::V1;

    /// Whether this build reads records of this version.
    pub fn is_read(self) -> bool {
        (Self::OLDEST_READ..=Self::CURRENT).contains(&self)
    }
}

impl fmt::Display for SchemaVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl Serialize for SchemaVersion {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u16(self.0)
    }
}

impl<'de> Deserialize<'de> for SchemaVersion {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let found = SchemaVersion(u16::deserialize(deserializer)?);
        if found.is_read() {
            Ok(found)
        } else {
            Err(serde::de::Error::custom(format_args!(
                "unsupported schema version {found}"
            )))
        }
    }
}

impl JsonSchema for SchemaVersion {
    fn schema_name() -> Cow<'static, str> {
        "SchemaVersion".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "integer",
            "minimum": SchemaVersion::OLDEST_READ.0,
            "maximum": SchemaVersion::CURRENT.0,
        })
    }
}

/// The identity of a record: its Kafka message key, and what the lake keeps once.
/// A replayed transaction, or one event seen by both the appservice and the database tap,
/// gives the same key.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RecordKey(pub String);

impl RecordKey {
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Display for RecordKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A record's identity in 128 bits, for the ingest's sets of millions of identities: no
/// allocation per record and cheap to hash (string keys and SipHash took a fifth of the
/// ingest's CPU). An event's is its pseudonym itself; another record's is the first 16 bytes
/// of SHA-256 over its [`RecordKey`] (two keys of one day collide with probability ~2^-128
/// per pair).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyPrint(pub u128);

impl KeyPrint {
    pub fn of(key: &RecordKey) -> KeyPrint {
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(key.as_bytes());
        let mut first = [0u8; 16];
        first.copy_from_slice(&digest[..16]);
        KeyPrint(u128::from_be_bytes(first))
    }
}

/// One record type of docs/design.md §3.
pub trait Record:
    Serialize + DeserializeOwned + JsonSchema + Clone + fmt::Debug + PartialEq + Send + Sync + 'static
{
    /// The Kafka topic the type travels on.
    const TOPIC: &'static str;
    /// The lake table the type lands in.
    const TABLE: &'static str;
    /// The column the lake table is partitioned by (a UTC date).
    const PARTITION_COLUMN: &'static str;

    /// The columns the identity is made of.
    const IDENTITY_COLUMNS: &'static [&'static str];

    /// The record's identity (see [`RecordKey`]).
    fn key(&self) -> RecordKey;

    /// The identities of a batch that holds at least [`Self::IDENTITY_COLUMNS`] (reading a
    /// day's identities from the lake needs no other column).
    fn keys_from_batch(batch: &RecordBatch) -> Result<Vec<RecordKey>, ArrowFormError>;

    /// The identity as a [`KeyPrint`]; always `KeyPrint::of(&self.key())` unless a type has a
    /// cheaper exact form.
    fn key_print(&self) -> KeyPrint {
        KeyPrint::of(&self.key())
    }

    /// [`Self::key_print`] of each row of a batch, as [`Self::keys_from_batch`] reads them.
    fn key_prints_from_batch(batch: &RecordBatch) -> Result<Vec<KeyPrint>, ArrowFormError> {
        Ok(Self::keys_from_batch(batch)?
            .iter()
            .map(KeyPrint::of)
            .collect())
    }

    /// Value of the partition column: the UTC day, as days since 1970-01-01.
    fn partition_day(&self) -> i32;

    /// Time order within a table's files (microseconds since the epoch).
    fn time_micros(&self) -> i64;

    /// The Arrow schema of the lake table, partition column included.
    fn arrow_schema() -> SchemaRef;

    /// Columnar form of a slice of records, in the order given.
    fn to_record_batch(records: &[Self]) -> Result<RecordBatch, ArrowError>;

    /// Records back from a batch of the table's schema (columns found by name, so a batch
    /// read from the lake with a different column order still reads).
    fn from_record_batch(batch: &RecordBatch) -> Result<Vec<Self>, ArrowFormError>;
}
