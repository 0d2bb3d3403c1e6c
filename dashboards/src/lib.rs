//! The dashboards of the query service: dashboards as code (`definition`: one TOML file per
//! dashboard, shipped ones and an operator's own), pages rendered on the server (`web`) with
//! their charts as inline SVG (`chart`) and PNG (`png`), each panel a card with the table
//! behind its chart (`panel`), known events drawn on every time chart (`annotations`), what
//! changed in the last closed month (`changes`), in French or English (`i18n`), behind a
//! login with signed session cookies (`session`); the managers' monthly reports (`report`).
//!
//! The figures come from the query service (`mxpulse_query::service::QueryService`), asked
//! with the principal's scope: nothing here counts anything, or reads the lake itself.

pub mod annotations;
pub mod changes;
pub mod chart;
pub mod definition;
pub mod i18n;
pub mod panel;
pub mod png;
pub mod report;
pub mod session;
pub mod web;

pub use definition::{Dashboard, DefinitionError};
pub use web::{DashboardState, router};
