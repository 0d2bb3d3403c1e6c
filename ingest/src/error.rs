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
    /// Another writer committed records of the same days while we wrote ours: our commit is
    /// refused (its identities were not checked against theirs) and its batch read again.
    #[error(
        "{table}: another writer committed records of the same days at the same time; the batch is read again"
    )]
    CommitRace { table: &'static str },
    /// The task running a commit died (a bug): the table's handle went with it.
    #[error("the commit task of table {table} failed: {reason}; restart the ingest")]
    CommitTask { table: &'static str, reason: String },
    #[error("building the Arrow batch for {table}: {source}")]
    Batch {
        table: &'static str,
        source: deltalake::arrow::error::ArrowError,
    },
    #[error("rollups: {0}")]
    Rollup(#[from] mxpulse_query::QueryError),
    #[error("rollups: {0}")]
    RollupState(String),
    #[error(
        "no table is filled from topic {0:?} (mxpulse.events.v1, mxpulse.visits.v1, mxpulse.accounts.v1)"
    )]
    UnknownTopic(String),
    #[error("Kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error(
        "{pending} dead letters not acknowledged by Kafka for {since_s} s: stopping without \
         committing past them (is the dead-letter topic writable?); they are sent again at the \
         next start"
    )]
    DeadLetter { pending: usize, since_s: u64 },
    #[error("HTTP listener {address}: {source}")]
    Listen {
        address: std::net::SocketAddr,
        source: std::io::Error,
    },
}
