//! Kafka to the Delta lake, exactly once: a consumer group over the three record topics that
//! writes the `events`, `visits` and `accounts` tables, each commit carrying the offsets it
//! covers as Delta application transactions (the kafka-delta-ingest method), repeats dropped
//! by identity, undecodable messages sent to the dead-letter topic.
//!
//! Main types: `IngestConfig`, `TableSink` (one table), `pipeline::run` (the loop);
//! `rollup::run` keeps the rollup tables the figures are read from, `maintenance` the rest.
//! This crate knows Kafka and Delta; it knows nothing of Matrix, and never reads the
//! environment or a config file (the binary hands it an `IngestConfig`).

mod buffer;
pub mod dead_letter;
mod durable;
mod error;
pub mod http;
mod identity;
pub mod lake;
pub mod maintenance;
pub mod metrics;
pub mod offsets;
pub mod pipeline;
pub mod position;
pub mod rollup;
mod sink;
pub mod store;

use std::collections::BTreeMap;

pub use buffer::FlushPolicy;
pub use error::IngestError;
pub use lake::LakeRoot;
pub use sink::{Admission, CommitReport, TableSink};

/// Everything `pipeline::run` needs.
#[derive(Clone, Debug)]
pub struct IngestConfig {
    /// `bootstrap.servers`.
    pub brokers: String,
    /// Consumer group; also part of the offsets' application-transaction ids in the lake.
    pub group_id: String,
    /// Further librdkafka properties (security, timeouts).
    pub kafka_properties: BTreeMap<String, String>,
    pub lake: LakeRoot,
    pub flush: FlushPolicy,
    /// Day partitions whose identities are kept in memory to drop repeats.
    pub identity_days: usize,
    /// How long dead letters may go unacknowledged before the ingest stops rather than
    /// commit past them.
    pub dead_letter_deadline: std::time::Duration,
}
