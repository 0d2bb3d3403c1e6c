//! DataFusion over the mxpulse lake: the figure definitions of docs/design.md §5, the figures API
//! and read-only SQL over HTTP, principals with roles and server scopes, small-cell
//! suppression. It never writes the lake.
//!
//! A request moves through: `access` (who is asking: a `Principal` with a role and a scope),
//! `lake` (the latest `LakeSnapshot`), `session` (a DataFusion session of views filtered to
//! the scope, with the per-query memory pool), then `service::QueryService::answer_sql` (the
//! `guard`, then `session::run_sql_with`) for SQL from HTTP or pgwire, or `figures` for the
//! monthly and daily figures.

pub mod access;
pub mod answers;
pub mod bounded_functions;
pub mod catalog;
pub mod error;
pub mod executor;
pub mod explain;
pub mod figures;
pub mod guard;
pub mod http;
pub mod indicators;
pub mod lake;
pub mod pgwire;
pub mod postgres_functions;
pub mod service;
pub mod session;
pub mod slots;

pub use error::QueryError;
