//! Kafka topic names: one topic per record type, versioned in the name so that a breaking
//! schema change is a new topic that old and new consumers can read side by side.

/// Event records (`EventRecord`).
pub const EVENTS: &str = "mxpulse.events.v1";
/// Visit records (`VisitRecord`).
pub const VISITS: &str = "mxpulse.visits.v1";
/// Account records (`AccountRecord`).
pub const ACCOUNTS: &str = "mxpulse.accounts.v1";
/// Public room directory records (`DirectoryRecord`).
pub const DIRECTORY: &str = "mxpulse.directory.v1";
/// Messages that failed to decode or validate, with the reason and where they came from.
pub const DEADLETTER: &str = "mxpulse.deadletter.v1";

/// The record topics, which the ingest consumes as one consumer group.
pub const RECORD_TOPICS: [&str; 4] = [EVENTS, VISITS, ACCOUNTS, DIRECTORY];

/// Every topic mxpulse writes, for brokers where topics must be created up front.
pub const ALL: [&str; 5] = [EVENTS, VISITS, ACCOUNTS, DIRECTORY, DEADLETTER];
