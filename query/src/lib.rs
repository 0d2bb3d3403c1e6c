//! DataFusion over the mxpulse lake (the query issue): the figure definitions of design.md §5,
//! the figures API, read-only SQL over HTTP and the PostgreSQL wire protocol, roles, scoping
//! and small-cell suppression. It never writes the lake.
//!
//! Not built yet. The crate exists so the workspace pins one datafusion and one
//! datafusion-postgres from the start; see ARCHITECTURE.md.
