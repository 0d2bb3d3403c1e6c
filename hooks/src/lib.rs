//! The homeserver side of mxpulse: everything that touches Matrix identifiers and turns them
//! into anonymized records. Today: keyed pseudonymization, the e-mail domain of Tchap-style
//! localparts, and user agent classification. The appservice endpoint, the Synapse database
//! tap and the Kafka producer join them (issue "Homeserver hooks").
//!
//! Invariant: nothing this crate publishes contains a Matrix ID, content, an IP address or a
//! user agent string; those stop here.

pub mod email_domain;
pub mod pseudonymizer;
pub mod user_agent;

pub use email_domain::{DomainReader, TCHAP_DOMAINS};
pub use pseudonymizer::{KeyError, PseudonymKey, Pseudonymizer};
