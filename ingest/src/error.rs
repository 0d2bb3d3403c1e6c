//! What can go wrong while ingesting. A record that does not decode is not here: it is data,
//! and becomes a dead letter.

use deltalake::DeltaTableError;

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("lake location {location:?}: {reason}")]
    LakeLocation { location: String, reason: String },
    #[error("opening or creating table {table}: {source}")]
    OpenTable {
        table: &'static str,
        source: Box<DeltaTableError>,
    },
    #[error("reading table {table}: {source}")]
    ReadTable {
        table: &'static str,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("writing table {table}: {source}")]
    WriteTable {
        table: &'static str,
        source: Box<DeltaTableError>,
    },
    #[error("commit to table {table} at offsets {offsets}: {source}")]
    Commit {
        table: &'static str,
        offsets: String,
        source: Box<DeltaTableError>,
    },
    #[error("building the Arrow batch for {table}: {source}")]
    Batch {
        table: &'static str,
        source: deltalake::arrow::error::ArrowError,
    },
    #[error("rollups: {0}")]
    Rollup(#[from] mxpulse_query::QueryError),
    #[error("rollups: {0}")]
    RollupState(String),
    #[error("Kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("dead letter for {topic}/{partition}@{offset} not acknowledged: {reason}")]
    DeadLetter {
        topic: String,
        partition: i32,
        offset: i64,
        reason: String,
    },
    #[error("HTTP listener {address}: {source}")]
    Listen {
        address: std::net::SocketAddr,
        source: std::io::Error,
    },
}
