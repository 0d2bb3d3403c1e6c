//! Record types of every mxpulse topic (`EventRecord`, `VisitRecord`, `AccountRecord`,
//! `DirectoryRecord`), their JSON wire format with its schema version, their Arrow schemas
//! for the lake, and their JSON Schema files for other producers and consumers.
//!
//! This crate does no I/O and knows no Kafka, HTTP or Matrix type: it is the contract between
//! the hooks, the ingest and the query service.

mod account;
mod arrow_form;
mod client_family;
mod directory;
mod event;
mod pseudonym;
mod record;
pub mod time;
pub mod topics;
mod visit;
pub mod vocabulary;
mod wire;

pub use account::AccountRecord;
pub use arrow_form::{ArrowFormError, timestamp_type};
pub use client_family::{CLIENT_FAMILY_CHARS, ClientFamily};
pub use directory::{DIRECTORY_TEXT_CHARS, DirectoryRecord};
pub use event::EventRecord;
pub use pseudonym::{
    DevicePseudonym, EventPseudonym, KeyId, PseudonymFormatError, RoomPseudonym, UserPseudonym,
};
pub use record::{KeyPrint, Record, RecordKey, SchemaVersion};
pub use time::UnixMillis;
pub use visit::VisitRecord;
pub use wire::{DecodeError, Envelope, SCHEMA_VERSION_HEADER, decode, encode};

/// The JSON Schema of a record type, as committed under `schemas/json/`.
pub fn json_schema<R: Record>() -> serde_json::Value {
    let mut schema = schemars::schema_for!(R).to_value();
    if let Some(object) = schema.as_object_mut() {
        object.insert(
            "$id".into(),
            format!(
                "https://mxpulse.invalid/schemas/{}",
                json_schema_file::<R>()
            )
            .into(),
        );
    }
    schema
}

/// File name of a record type's JSON Schema under `schemas/json/`.
pub fn json_schema_file<R: Record>() -> String {
    format!("{}.schema.json", R::TOPIC)
}
