//! The query service's HTTP surface (axum): the figures API for viewers and up, read-only SQL
//! for analysts (JSON, CSV or Arrow IPC by `Accept`), `/api/openapi.json` (generated from the
//! handlers and types with utoipa), `/metrics` and `/health`.
//!
//! Every request names its principal with a bearer token; every SQL query is logged with it.
//! Errors are JSON `{"error": {"kind", "message"}}`: refused or invalid 400, unknown token 401,
//! role 403, over the memory limit 422, over the time limit 408, no query slot free in time
//! 503 with `Retry-After`, lake unreadable 503.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;

use crate::access::Principal;
use crate::error::QueryError;
use crate::figures::planner::SourceChoice;
use crate::figures::{self, Dim, FigureRequest, Filters, Granularity};
use crate::service::{QueryService, Surface};
use crate::session::QueryOutput;

struct ApiError(StatusCode, &'static str, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (
            self.0,
            axum::Json(json!({"error": {"kind": self.1, "message": self.2}})),
        )
            .into_response();
        if self.1 == "busy" {
            // A slot frees when a running query ends: retry soon.
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        }
        response
    }
}

impl From<QueryError> for ApiError {
    fn from(error: QueryError) -> Self {
        let (status, kind) = match &error {
            QueryError::Refused(_) => (StatusCode::BAD_REQUEST, "refused"),
            QueryError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            QueryError::Invalid(_) => (StatusCode::BAD_REQUEST, "invalid"),
            QueryError::Timeout(_) => (StatusCode::REQUEST_TIMEOUT, "timeout"),
            QueryError::Memory(_) => (StatusCode::UNPROCESSABLE_ENTITY, "memory"),
            QueryError::Busy(_) => (StatusCode::SERVICE_UNAVAILABLE, "busy"),
            QueryError::Lake(_) => (StatusCode::SERVICE_UNAVAILABLE, "lake"),
            QueryError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        ApiError(status, kind, error.to_string())
    }
}

pub fn router(service: Arc<QueryService>) -> Router {
    Router::new()
        .route("/api/v1/figures/monthly", get(monthly))
        .route("/api/v1/figures/daily", get(daily))
        .route("/api/v1/figures/forums", get(forums))
        .route("/api/v1/indicators/monthly", get(indicators))
        .route("/api/v1/sql", post(sql))
        .route("/api/openapi.json", get(openapi))
        .route("/metrics", get(metrics_text))
        .route("/health", get(health))
        .with_state(service)
}

fn principal(service: &QueryService, headers: &HeaderMap) -> Result<Principal, ApiError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let found = token.and_then(|token| service.access.by_token(token));
    found.ok_or_else(|| {
        service.metrics.unauthorized.fetch_add(1, Ordering::Relaxed);
        ApiError(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid bearer token is required".into(),
        )
    })
}

/// The OpenAPI document, generated from the handlers' annotations and the answer types.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "mxpulse query service", description = "Figures of a Matrix federation and read-only SQL over its lake."),
    paths(monthly, daily, forums, indicators, sql),
    components(schemas(figures::FiguresReport, figures::FigureCell, figures::FigureSource, figures::Filters, figures::Granularity, figures::ForumRank, crate::indicators::MonthlyIndicators, crate::indicators::Indicator, SqlRequest)),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{
            HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
        };
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        openapi.security = Some(vec![SecurityRequirement::new(
            "bearer",
            Vec::<String>::new(),
        )]);
    }
}

async fn openapi() -> axum::Json<utoipa::openapi::OpenApi> {
    use utoipa::OpenApi as _;
    axum::Json(ApiDoc::openapi())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct FigureQuery {
    /// First period: `YYYY-MM` (monthly) or `YYYY-MM-DD` (daily).
    from: String,
    /// Last period, included (at most `query.max_months` months or `query.max_days` days).
    to: String,
    /// Only this server's activity.
    server: Option<String>,
    /// Only this e-mail domain's users.
    domain: Option<String>,
    /// Only this platform (web, android, ios, desktop): the figures of visits only.
    platform: Option<String>,
    /// Only this client family (`tchap_x_android`, `tchap_ios`, `web`, ...): the figures of
    /// visits only.
    family: Option<String>,
    /// Only these figures, comma-separated (e.g. `active_users,messages`); all by default.
    figures: Option<String>,
    /// The breakdowns besides the total, comma-separated (`server,domain,platform,family`,
    /// the default), or `none` for totals only.
    breakdowns: Option<String>,
    /// `auto` (the rollups when they can answer, the default), `rollups` or `raw`.
    source: Option<String>,
}

fn comma_list(list: Option<&str>) -> Vec<String> {
    list.map(|list| {
        list.split(',')
            .map(str::trim)
            .filter(|name| !name.is_empty())
            .map(str::to_owned)
            .collect()
    })
    .unwrap_or_default()
}

impl FigureQuery {
    fn request(
        self,
        granularity: Granularity,
    ) -> Result<(FigureRequest, SourceChoice), QueryError> {
        let breakdowns = match self.breakdowns.as_deref() {
            None => Dim::ALL.to_vec(),
            Some("none") => Vec::new(),
            Some(list) => comma_list(Some(list))
                .iter()
                .map(|name| {
                    Dim::parse(name).ok_or_else(|| {
                        QueryError::Invalid(format!(
                            "breakdown {name:?}: server, domain, platform, family or none"
                        ))
                    })
                })
                .collect::<Result<_, _>>()?,
        };
        let source = SourceChoice::parse(self.source.as_deref().unwrap_or("auto"))?;
        let request = FigureRequest {
            granularity,
            only: comma_list(self.figures.as_deref()),
            filters: Filters {
                server: self.server,
                domain: self.domain,
                platform: self.platform,
                family: self.family,
            },
            breakdowns,
            from: self.from,
            to: self.to,
        };
        Ok((request, source))
    }
}

async fn figures_of(
    service: Arc<QueryService>,
    headers: HeaderMap,
    query: FigureQuery,
    granularity: Granularity,
) -> Result<axum::Json<figures::FiguresReport>, ApiError> {
    let who = principal(&service, &headers)?;
    let (request, choice) = query.request(granularity)?;
    Ok(axum::Json(service.figures(&who, request, choice).await?))
}

/// Figures by calendar month (in the configured time zone), with MoM, YoY and peak day.
#[utoipa::path(get, path = "/api/v1/figures/monthly", params(FigureQuery),
    responses((status = 200, body = figures::FiguresReport), (status = 400, description = "from/to are not months, or too far apart"), (status = 401, description = "no valid token"),
        (status = 503, description = "busy (Retry-After) or the lake cannot be read")))]
async fn monthly(
    State(service): State<Arc<QueryService>>,
    headers: HeaderMap,
    Query(query): Query<FigureQuery>,
) -> Result<axum::Json<figures::FiguresReport>, ApiError> {
    figures_of(service, headers, query, Granularity::Month).await
}

/// Figures by day.
#[utoipa::path(get, path = "/api/v1/figures/daily", params(FigureQuery),
    responses((status = 200, body = figures::FiguresReport), (status = 400, description = "from/to are not days, or too far apart"), (status = 401, description = "no valid token"),
        (status = 503, description = "busy (Retry-After) or the lake cannot be read")))]
async fn daily(
    State(service): State<Arc<QueryService>>,
    headers: HeaderMap,
    Query(query): Query<FigureQuery>,
) -> Result<axum::Json<figures::FiguresReport>, ApiError> {
    figures_of(service, headers, query, Granularity::Day).await
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct ForumQuery {
    /// How many forums (default 10, at most 1000).
    limit: Option<usize>,
    /// `auto` (the default), `rollups` or `raw`.
    source: Option<String>,
}

/// The largest forums by members (the public directory's order), no identifiers.
#[utoipa::path(get, path = "/api/v1/figures/forums", params(ForumQuery),
    responses((status = 200, body = Vec<figures::ForumRank>), (status = 401, description = "no valid token"),
        (status = 503, description = "busy (Retry-After) or the lake cannot be read")))]
async fn forums(
    State(service): State<Arc<QueryService>>,
    headers: HeaderMap,
    Query(query): Query<ForumQuery>,
) -> Result<axum::Json<Vec<figures::ForumRank>>, ApiError> {
    let who = principal(&service, &headers)?;
    let choice = SourceChoice::parse(query.source.as_deref().unwrap_or("auto"))?;
    let limit = query.limit.unwrap_or(10).min(1000);
    Ok(axum::Json(service.forums(&who, limit, choice).await?))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct IndicatorQuery {
    /// The month, `YYYY-MM`.
    month: String,
    /// `json` (the default) or `csv`; `Accept: text/csv` also asks for CSV.
    format: Option<String>,
}

/// A month's indicators for other systems: each figure's total as an integer (`null` when
/// withheld), in a schema stable under `v1`; JSON or CSV.
#[utoipa::path(get, path = "/api/v1/indicators/monthly", params(IndicatorQuery),
    responses((status = 200, body = crate::indicators::MonthlyIndicators, description = "JSON, or CSV `month,name,value,suppressed`"),
        (status = 400, description = "not a month"), (status = 401, description = "no valid token"),
        (status = 503, description = "busy (Retry-After) or the lake cannot be read")))]
async fn indicators(
    State(service): State<Arc<QueryService>>,
    headers: HeaderMap,
    Query(query): Query<IndicatorQuery>,
) -> Result<Response, ApiError> {
    let who = principal(&service, &headers)?;
    let month = query.month.trim();
    let end = figures::periods::month_end(month)?;
    let request = FigureRequest {
        breakdowns: Vec::new(),
        ..FigureRequest::new(Granularity::Month, month, month)
    };
    let answer = service.figures(&who, request, SourceChoice::Auto).await?;
    let month_over = figures::periods::today_in(&service.timezone) > end;
    let found = crate::indicators::from_figures(month, &answer, who.server.clone(), month_over);
    let csv = query.format.as_deref() == Some("csv")
        || headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("text/csv"));
    Ok(if csv {
        (
            [(header::CONTENT_TYPE, "text/csv; charset=utf-8")],
            found.csv(),
        )
            .into_response()
    } else {
        axum::Json(found).into_response()
    })
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct SqlRequest {
    /// One read-only statement.
    sql: String,
}

/// One read-only query (SELECT, WITH, EXPLAIN, SHOW); JSON, CSV or Arrow IPC by `Accept`.
#[utoipa::path(post, path = "/api/v1/sql", request_body = SqlRequest,
    responses((status = 200, description = "the rows: JSON {columns, rows, row_count, truncated}, text/csv or application/vnd.apache.arrow.stream"),
        (status = 400, description = "refused (not a query) or invalid"), (status = 401, description = "no valid token"),
        (status = 403, description = "the role may read figures only"), (status = 408, description = "over the time limit"),
        (status = 422, description = "over the memory limit")))]
async fn sql(
    State(service): State<Arc<QueryService>>,
    headers: HeaderMap,
    body: Result<axum::Json<SqlRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let who = principal(&service, &headers)?;
    let axum::Json(request) =
        body.map_err(|e| ApiError(StatusCode::BAD_REQUEST, "invalid", e.body_text()))?;
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .to_owned();
    // Encoded while the query's slot is held.
    Ok(service
        .answer_sql_then(&who, request.sql, None, Surface::Http, |output| {
            encode(&output, &accept)
        })
        .await?)
}

/// The rows in the format the client accepts.
fn encode(output: &QueryOutput, accept: &str) -> Result<Response, QueryError> {
    use datafusion::arrow;
    let truncated = [(
        "x-mxpulse-truncated",
        if output.truncated { "true" } else { "false" },
    )];
    if accept.contains("text/csv") {
        let mut writer = arrow::csv::WriterBuilder::new()
            .with_header(true)
            .build(Vec::new());
        for batch in &output.batches {
            writer.write(batch)?;
        }
        let body = writer.into_inner();
        return Ok(([(header::CONTENT_TYPE, "text/csv")], truncated, body).into_response());
    }
    if accept.contains("application/vnd.apache.arrow.stream") {
        let mut writer = arrow::ipc::writer::StreamWriter::try_new(Vec::new(), &output.schema)?;
        for batch in &output.batches {
            writer.write(batch)?;
        }
        writer.finish()?;
        let body = writer.into_inner()?;
        return Ok((
            [(header::CONTENT_TYPE, "application/vnd.apache.arrow.stream")],
            truncated,
            body,
        )
            .into_response());
    }
    let mut writer = arrow::json::ArrayWriter::new(Vec::new());
    for batch in &output.batches {
        writer.write(batch)?;
    }
    writer.finish()?;
    let rows = writer.into_inner();
    let rows: serde_json::Value = if rows.is_empty() {
        json!([])
    } else {
        serde_json::from_slice(&rows).map_err(|e| QueryError::Internal(e.to_string()))?
    };
    let columns: Vec<_> = output
        .schema
        .fields()
        .iter()
        .map(|f| json!({"name": f.name(), "type": f.data_type().to_string()}))
        .collect();
    Ok(axum::Json(json!({
        "columns": columns,
        "rows": rows,
        "row_count": output.rows,
        "truncated": output.truncated,
    }))
    .into_response())
}

async fn metrics_text(State(service): State<Arc<QueryService>>) -> impl IntoResponse {
    let rollups_age = match service.lake.snapshot().await {
        Ok(snapshot) => snapshot
            .rollups
            .as_ref()
            .and_then(|r| r.as_of_ms)
            .map(|at| (chrono::Utc::now().timestamp_millis() - at) as f64 / 1e3),
        Err(_) => None,
    };
    let m = &service.metrics;
    let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
    let body = format!(
        "# HELP mxpulse_query_sql_total SQL queries by outcome.\n# TYPE mxpulse_query_sql_total counter\n\
         mxpulse_query_sql_total{{outcome=\"ok\"}} {}\nmxpulse_query_sql_total{{outcome=\"refused\"}} {}\nmxpulse_query_sql_total{{outcome=\"failed\"}} {}\n\
         # HELP mxpulse_query_figures_total Figures requests answered, by the tables they were counted from.\n# TYPE mxpulse_query_figures_total counter\n\
         mxpulse_query_figures_total{{source=\"rollups\"}} {}\nmxpulse_query_figures_total{{source=\"raw\"}} {}\n\
         # HELP mxpulse_query_figures_cached_total Figures requests answered from the answers kept for the lake's current version.\n# TYPE mxpulse_query_figures_cached_total counter\nmxpulse_query_figures_cached_total {}\n\
         # HELP mxpulse_query_busy_total Requests refused because no query slot freed in time.\n# TYPE mxpulse_query_busy_total counter\nmxpulse_query_busy_total {}\n\
         # HELP mxpulse_query_unauthorized_total Requests without a valid token.\n# TYPE mxpulse_query_unauthorized_total counter\nmxpulse_query_unauthorized_total {}\n\
         # HELP mxpulse_query_sql_seconds_sum Time spent answering SQL.\n# TYPE mxpulse_query_sql_seconds_sum counter\nmxpulse_query_sql_seconds_sum {:.6}\n",
        load(&m.sql_ok),
        load(&m.sql_refused),
        load(&m.sql_failed),
        load(&m.figures_rollups),
        load(&m.figures_raw),
        load(&m.figures_cached),
        load(&m.busy),
        load(&m.unauthorized),
        load(&m.micros) as f64 / 1e6,
    );
    let body = match rollups_age {
        Some(age) => format!(
            "{body}# HELP mxpulse_query_rollups_age_seconds Time since the rollups the figures are read from were written.\n# TYPE mxpulse_query_rollups_age_seconds gauge\nmxpulse_query_rollups_age_seconds {age:.1}\n"
        ),
        None => body,
    };
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body)
}

/// 200 when the lake can be read; says where the figures come from (the rollups and the time
/// of the data they hold, or the raw tables).
async fn health(State(service): State<Arc<QueryService>>) -> impl IntoResponse {
    let snapshot = service.lake.snapshot().await.and_then(|snapshot| {
        // Answers still come from the last snapshot read, but the lake as it is now is not.
        match service.lake.load_failure() {
            Some(failure) => Err(QueryError::Lake(failure)),
            None => Ok(snapshot),
        }
    });
    match snapshot {
        Ok(snapshot) => {
            let rollups = match &snapshot.rollups {
                Some(rollups) => json!({
                    "as_of": rollups.as_of_ms.and_then(chrono::DateTime::from_timestamp_millis)
                        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
                    "timezone": rollups.timezone,
                    "used": rollups.timezone.as_deref() == Some(service.timezone.as_str()),
                }),
                None => json!(null),
            };
            (
                StatusCode::OK,
                axum::Json(json!({"status": "ok", "rollups": rollups})),
            )
        }
        Err(error) => {
            // The error names the lake's paths: logged, not shown to whoever asks.
            tracing::warn!(%error, "health: the lake cannot be read");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(
                    json!({"status": "failing", "lake": "cannot be read (the service's log says why)"}),
                ),
            )
        }
    }
}

/// Binds now and serves the API and `pages` (the dashboards) until `shutdown` resolves.
pub async fn serve(
    address: SocketAddr,
    service: Arc<QueryService>,
    pages: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<std::io::Result<()>>)> {
    let listener = tokio::net::TcpListener::bind(address).await?;
    let bound = listener.local_addr()?;
    let app = router(service).merge(pages);
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
    });
    Ok((bound, task))
}
