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
use mxpulse_query::slots::QuerySlots;

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
        noise: config.privacy.noise,
        sql_slots: QuerySlots::new(
            usize::try_from(q.max_concurrent_queries).unwrap_or(1),
            usize::try_from(q.max_queued).unwrap_or(usize::MAX),
            Duration::from_millis(q.queue_timeout_ms),
        ),
        figure_slots: QuerySlots::new(
            usize::try_from(q.max_concurrent_figures).unwrap_or(1),
            usize::try_from(q.max_queued_figures).unwrap_or(usize::MAX),
            Duration::from_millis(q.queue_timeout_ms),
        ),
        spans: mxpulse_query::figures::SpanLimits {
            max_months: u32::try_from(q.max_months).unwrap_or(u32::MAX),
            max_days: u32::try_from(q.max_days).unwrap_or(u32::MAX),
        },
        executor: QueryExecutor::new(q.threads as usize)?,
        figures_executor: QueryExecutor::new(q.figures_threads as usize)?,
        cells: Default::default(),
        answers: mxpulse_query::service::FiguresAnswers::new(
            usize::try_from(q.kept_answers).unwrap_or(usize::MAX),
        ),
        metrics: Default::default(),
    })
}

/// The dashboards: the shipped and the operator's definitions (a malformed file stops the
/// start, naming it), the known events, the session key.
pub fn dashboard_state(
    config: &Config,
    service: Arc<QueryService>,
) -> anyhow::Result<mxpulse_dashboards::DashboardState> {
    let d = &config.dashboards;
    let dir = (!d.dir.is_empty()).then(|| std::path::Path::new(&d.dir));
    let dashboards = mxpulse_dashboards::definition::load(dir)?;
    let annotations_file =
        (!d.annotations_file.is_empty()).then(|| std::path::Path::new(&d.annotations_file));
    let annotations = mxpulse_dashboards::annotations::load(annotations_file)?;
    let key = if d.session_key.is_empty() {
        let mut key = vec![0u8; 32];
        getrandom::fill(&mut key)
            .map_err(|e| anyhow::anyhow!("no randomness for the session key: {e}"))?;
        tracing::info!(
            "no dashboards.session_key: logins last until the service restarts, on this instance only"
        );
        key
    } else {
        hex::decode(&d.session_key).context("dashboards.session_key")?
    };
    let reports = Arc::new(mxpulse_dashboards::report::desk::ReportDesk::new(
        service.clone(),
        annotations.clone(),
        report_settings(config)?,
    ));
    Ok(mxpulse_dashboards::DashboardState {
        service,
        dashboards,
        annotations,
        reports,
        pages: mxpulse_dashboards::web::RenderedPages::new(
            usize::try_from(config.query.kept_answers).unwrap_or(usize::MAX),
        ),
        keys: mxpulse_dashboards::session::SessionKeys::new(
            key,
            Duration::from_secs(d.session_hours * 3600),
            d.cookie_secure,
        ),
    })
}

/// The reports' settings: frozen under `reports.dir`, else `_reports` in the lake's directory.
pub fn report_settings(
    config: &Config,
) -> anyhow::Result<mxpulse_dashboards::report::desk::ReportSettings> {
    let r = &config.reports;
    let dir = if r.dir.is_empty() {
        let root = LakeRoot::parse(&config.lake.root).context("lake.root")?;
        let lake = root.url().to_file_path().map_err(|()| {
            anyhow::anyhow!(
                "the lake is on object storage: set reports.dir, a directory every query \
                     instance shares (a frozen report must be the same whichever answers)"
            )
        })?;
        lake.join("_reports")
    } else {
        std::path::PathBuf::from(&r.dir)
    };
    Ok(mxpulse_dashboards::report::desk::ReportSettings {
        dir: Some(dir),
        grace_days: u32::try_from(r.grace_days).unwrap_or(u32::MAX),
        slots: usize::try_from(r.max_concurrent).unwrap_or(1),
        queue_timeout: Duration::from_millis(r.queue_timeout_ms),
    })
}

/// A lake with no table is most often not the ingest's: a relative `lake.root` is taken from
/// each process's working directory. Said at the start, where the operator looks.
fn warn_of_an_empty_lake(config: &Config) {
    let Ok(root) = LakeRoot::parse(&config.lake.root) else {
        return;
    };
    let Ok(path) = root.url().to_file_path() else {
        return;
    };
    let tables = ["events", "visits", "accounts"]
        .iter()
        .filter(|t| path.join(t).join("_delta_log").is_dir())
        .count();
    if tables == 0 {
        tracing::warn!(
            lake = %path.display(),
            given = %config.lake.root,
            "the lake holds no table yet: every figure is empty until the ingest writes here. If the ingest runs, give both the same absolute path (lake.root)"
        );
    }
}

/// Makes the newest closed month's reports every `interval`, from a minute after the start
/// (the rollups are loaded by then, and the first pages are not slowed).
async fn prepare_reports(
    desk: Arc<mxpulse_dashboards::report::desk::ReportDesk>,
    interval: Duration,
) {
    tokio::time::sleep(Duration::from_secs(60).min(interval)).await;
    loop {
        match desk.prepare().await {
            Ok(Some(month)) => tracing::debug!(%month, "monthly reports ready"),
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "cannot prepare the monthly reports"),
        }
        tokio::time::sleep(interval).await;
    }
}

pub fn run(_args: &ServeArgs, config: &Config) -> anyhow::Result<()> {
    if config.query.principals.is_empty() {
        tracing::warn!("no [[query.principals]] configured: every request will be refused");
    }
    warn_of_an_empty_lake(config);
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
        let state = Arc::new(dashboard_state(config, service.clone())?);
        if config.reports.prepare_interval_ms > 0 {
            tokio::spawn(prepare_reports(
                state.reports.clone(),
                Duration::from_millis(config.reports.prepare_interval_ms),
            ));
        }
        let pages = mxpulse_dashboards::router(state);
        let (bound, server) = http::serve(
            config.query.listen,
            service,
            pages,
            super::shutdown_signal(),
        )
        .await
        .with_context(|| format!("cannot listen on {}", config.query.listen))?;
        tracing::info!(%bound, pgwire = %pg_bound, "query service listening (dashboards at /)");
        server.await??;
        // Like the hooks and the ingest: an operator reading the log sees a clean stop.
        tracing::info!("query service stopped");
        anyhow::Ok(())
    })
}
