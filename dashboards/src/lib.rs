//! Dashboards as code (definition files) and their rendering with plotters, and the monthly
//! report exports built on the figures API.
//!
//! Not built yet; see ARCHITECTURE.md.
