//! Kafka to the Delta lake, exactly once (the ingest issue): a consumer group over the three
//! record topics that writes the `events`, `visits` and `accounts` tables, storing its offsets
//! as Delta application transactions in the same commits as the files.
//!
//! Not built yet. The crate exists so the workspace pins one deltalake (and so one arrow,
//! parquet and datafusion) from the start; see ARCHITECTURE.md.
