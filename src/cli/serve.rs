//! `mxpulse serve`: the query service over the lake until SIGINT or SIGTERM: the figures API,
//! read-only SQL over HTTP and the PostgreSQL wire protocol, `/metrics` and `/health`.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use mxpulse_ingest::LakeRoot;
use mxpulse_query::access::{AccessList, Principal, Role};
use mxpulse_query::executor::QueryExecutor;
use mxpulse_query::http;
use mxpulse_query::lake::Lake;
use mxpulse_query::pgwire::PgwireTls;
use mxpulse_query::service::QueryService;
use mxpulse_query::session::Limits;

use crate::config::Config;

#[derive(Debug, Args)]
pub struct ServeArgs {}

/// The service's parts from the configuration.
pub fn query_service(config: &Config) -> anyhow::Result<QueryService> {
    let q = &config.query;
    let root = LakeRoot::parse(&config.lake.root).context("lake.root")?;
    let principals = q.principals.iter().map(|p| {
        let role = match p.role.as_str() {
            "viewer" => Role::Viewer,
            "analyst" => Role::Analyst,
            _ => Role::Admin,
        };
        let server = (!p.server.is_empty()).then(|| p.server.clone());
        (
            p.token.clone(),
            Principal {
                name: p.name.clone(),
                role,
                server,
            },
        )
    });
    Ok(QueryService {
        lake: Lake::new(root.url().clone(), Duration::from_millis(q.refresh_ms)),
        access: AccessList::new(principals),
        limits: Limits {
            memory_bytes: q.query_memory_bytes as usize,
            timeout: Duration::from_millis(q.query_timeout_ms),
            max_rows: q.max_rows as usize,
        },
        figures_timeout: Duration::from_millis(q.figures_timeout_ms),
        timezone: q.timezone.clone(),
        min_users: config.privacy.min_users,
        running: tokio::sync::Semaphore::new(q.max_concurrent_queries as usize),
        queue_timeout: Duration::from_millis(q.queue_timeout_ms),
        spans: mxpulse_query::figures::SpanLimits {
            max_months: u32::try_from(q.max_months).unwrap_or(u32::MAX),
            max_days: u32::try_from(q.max_days).unwrap_or(u32::MAX),
        },
        executor: QueryExecutor::new(q.threads as usize)?,
        cells: Default::default(),
        metrics: Default::default(),
    })
}

pub fn run(_args: &ServeArgs, config: &Config) -> anyhow::Result<()> {
    if config.query.principals.is_empty() {
        tracing::warn!("no [[query.principals]] configured: every request will be refused");
    }
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let service = Arc::new(query_service(config)?);
        let q = &config.query;
        let tls = (!q.pgwire_tls_cert.is_empty())
            .then(|| {
                PgwireTls::from_pem_files(
                    q.pgwire_tls_cert.as_ref(),
                    q.pgwire_tls_key.as_ref(),
                    q.pgwire_tls_required,
                )
            })
            .transpose()?;
        let (pg_bound, _pgwire) =
            mxpulse_query::pgwire::serve(q.pgwire_listen, service.clone(), tls)
                .await
                .with_context(|| format!("cannot listen on {}", q.pgwire_listen))?;
        let (bound, server) = http::serve(config.query.listen, service, super::shutdown_signal())
            .await
            .with_context(|| format!("cannot listen on {}", config.query.listen))?;
        tracing::info!(%bound, pgwire = %pg_bound, "query service listening");
        server.await??;
        anyhow::Ok(())
    })
}
