//! The homeserver side of mxpulse: everything that touches Matrix identifiers and turns them
//! into anonymized records, and the two paths records take to Kafka:
//!
//! - the appservice endpoint ([`appservice`]): Synapse pushes transactions, [`event_mapping`]
//!   turns each local sender's event into an `EventRecord`, [`producer`] publishes them and
//!   the transaction is acknowledged only once Kafka acknowledged every record;
//! - the database tap ([`db_tap`], over [`synapse_db`]): visits and accounts from Synapse's
//!   own tables, with a persisted cursor; [`backfill`] replays history from the same tables.
//!
//! Invariant: nothing this crate publishes contains a Matrix ID, content, an IP address or a
//! user agent string; those stop here ([`Anonymizer`] is where identifiers become pseudonyms).

pub mod anonymizer;
pub mod appservice;
pub mod backfill;
pub mod db_tap;
pub mod email_domain;
pub mod event_mapping;
pub mod listener;
pub mod metrics;
pub mod producer;
pub mod pseudonymizer;
pub mod registration;
pub mod synapse_db;
pub mod user_agent;

pub use anonymizer::Anonymizer;
pub use email_domain::{DomainReader, TCHAP_DOMAINS};
pub use pseudonymizer::{KeyError, PseudonymKey, Pseudonymizer};
