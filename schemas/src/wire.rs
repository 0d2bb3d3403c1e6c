//! The wire format: one JSON object per Kafka message, the schema version both in the field
//! `v` and in a message header, the record's identity as the message key.

use serde::Deserialize;

use crate::record::{Record, RecordKey, SchemaVersion};

/// Kafka header that carries the schema version as decimal text, so a consumer can route a
/// message without parsing it.
pub const SCHEMA_VERSION_HEADER: &str = "mxpulse-schema-version";

/// A record ready for Kafka.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    pub topic: &'static str,
    pub key: RecordKey,
    pub payload: Vec<u8>,
}

impl Envelope {
    /// Value of the [`SCHEMA_VERSION_HEADER`] for what this build writes.
    pub fn version_header() -> String {
        SchemaVersion::CURRENT.to_string()
    }
}

/// Why bytes are not a record of the expected type. Each variant is a dead-letter reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("not a JSON object: {reason}")]
    NotJson { reason: String },
    #[error(
        "unknown schema version {found} (this build reads {} to {supported})",
        SchemaVersion::OLDEST_READ
    )]
    UnknownVersion {
        found: String,
        supported: SchemaVersion,
    },
    #[error("header says schema version {header}, payload says {payload}")]
    VersionMismatch { header: String, payload: String },
    #[error("missing field `{field}`")]
    MissingField { field: String },
    #[error("invalid record: {reason}")]
    Invalid { reason: String },
}

impl DecodeError {
    /// The kind of problem, without any value from the message: what logs may say.
    pub fn kind(&self) -> &'static str {
        match self {
            DecodeError::NotJson { .. } => "not_json",
            DecodeError::UnknownVersion { .. } => "unknown_version",
            DecodeError::VersionMismatch { .. } => "version_mismatch",
            DecodeError::MissingField { .. } => "missing_field",
            DecodeError::Invalid { .. } => "invalid",
        }
    }
}

/// Serializes a record for its topic.
pub fn encode<R: Record>(record: &R) -> Envelope {
    Envelope {
        topic: R::TOPIC,
        key: record.key(),
        // Serializing these types cannot fail: every field is a string, number, bool or a
        // newtype of one, and no map has non-string keys.
        payload: serde_json::to_vec(record).unwrap_or_default(),
    }
}

/// Only the version of a payload, read before the whole record so that a record of another
/// version is refused as such rather than as whatever field it happens to lack.
#[derive(Deserialize)]
struct VersionProbe {
    v: Option<serde_json::Value>,
}

/// Decodes a message of `R`'s topic. `header` is the [`SCHEMA_VERSION_HEADER`] value when the
/// message carried one.
pub fn decode<R: Record>(header: Option<&[u8]>, payload: &[u8]) -> Result<R, DecodeError> {
    let probe: VersionProbe =
        serde_json::from_slice(payload).map_err(|e| DecodeError::NotJson {
            reason: without_values(&e),
        })?;
    let found = match probe.v {
        None => return Err(DecodeError::MissingField { field: "v".into() }),
        Some(v) => v,
    };
    let supported = SchemaVersion::CURRENT;
    let found_text = found.to_string();
    let readable = found
        .as_u64()
        .and_then(|v| u16::try_from(v).ok())
        .is_some_and(|v| SchemaVersion(v).is_read());
    if !readable {
        return Err(DecodeError::UnknownVersion {
            found: shown_version(&found_text),
            supported,
        });
    }
    if let Some(header) = header {
        let header = String::from_utf8_lossy(header);
        if header.trim() != found_text {
            return Err(DecodeError::VersionMismatch {
                header: shown_version(&header),
                payload: found_text,
            });
        }
    }
    serde_json::from_slice(payload).map_err(classify)
}

/// A version as an error may show it: a number as itself, anything else by its size only
/// (a producer's bug may put anything there, names included; errors go to logs and to the
/// dead letters' headers).
fn shown_version(text: &str) -> String {
    let text = text.trim();
    if !text.is_empty() && text.len() <= 20 && text.bytes().all(|b| b.is_ascii_digit()) {
        text.to_owned()
    } else {
        format!("(not a number, {} bytes)", text.len())
    }
}

/// serde's message without the values it quotes from the payload: its kind ("invalid
/// type", "unknown variant"), what the schema expected (our own words), and where.
fn without_values(error: &serde_json::Error) -> String {
    let text = error.to_string();
    let message = text
        .rsplit_once(" at line ")
        .map_or(text.as_str(), |(m, _)| m);
    let kind = message
        .split([':', '`', '"'])
        .next()
        .unwrap_or_default()
        .trim();
    let expected = message
        .rsplit_once(", expected ")
        .map(|(_, e)| format!(", expected {e}"))
        .unwrap_or_default();
    format!(
        "{kind}{expected} at line {} column {}",
        error.line(),
        error.column()
    )
}

fn classify(error: serde_json::Error) -> DecodeError {
    let text = error.to_string();
    // serde's derive reports an absent required field as "missing field `name`"; that is
    // the one data error worth its own variant (a producer that dropped a field).
    if let Some(rest) = text.strip_prefix("missing field `")
        && let Some(end) = rest.find('`')
    {
        return DecodeError::MissingField {
            field: rest[..end].to_string(),
        };
    }
    DecodeError::Invalid {
        reason: without_values(&error),
    }
}
