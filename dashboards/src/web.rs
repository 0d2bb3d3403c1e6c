//! The dashboards' pages, served by the query service beside its API: `/` (the first
//! dashboard), `/d/{slug}` (a dashboard; its whole state in the query string, so a view is a
//! URL to send), `/d/{slug}/{panel}.csv` and `.png` (a panel's table and chart), `/login` and
//! `/logout`. Server-rendered HTML with the charts inline as SVG: no script, nothing loaded from
//! outside the service.
//!
//! Who sees what: the principal of the session cookie (`session.rs`); a ministry's principal
//! sees its server only, in every panel, table and file (the figures are asked with its
//! scope); SQL panels are shown to analysts only. A POST from another site is refused.

use std::sync::Arc;

use askama::Template;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use mxpulse_query::QueryError;
use mxpulse_query::access::Principal;
use mxpulse_query::answers::AnswerCache;
use mxpulse_query::figures::planner::SourceChoice;
use mxpulse_query::figures::{Dim, FigureRequest, Filters, Granularity};
use mxpulse_query::service::{QueryService, Surface};
use serde::Deserialize;

use crate::annotations::{self, Annotation};
use crate::chart::{self, Shape};
use crate::definition::{ChartKind, Dashboard, Grain, Panel};
use crate::i18n::Lang;
use crate::panel::{self, Cells, PanelContent, Table, Value};
use crate::session::{self, SessionKeys};

/// What the pages need.
pub struct DashboardState {
    pub service: Arc<QueryService>,
    pub dashboards: Vec<Dashboard>,
    pub annotations: Vec<Annotation>,
    pub keys: SessionKeys,
    pub reports: Arc<crate::report::desk::ReportDesk>,
    /// The pages already rendered for the lake's current version.
    pub pages: RenderedPages,
}

/// A dashboard page as its viewer asked for it: the same principal, dashboard and URL give the
/// same page while the lake stays at one version (and the day, which sets the default period
/// of a lake without data).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PageRequest {
    day: chrono::NaiveDate,
    principal: String,
    slug: String,
    query: PageQuery,
}

/// The dashboards' pages already rendered, by request, for the lake's current version
/// (`mxpulse_query::answers`): a hundred viewers of one dashboard cost one rendering per
/// version of the lake. ~100 KB each: 512 of them (`query.kept_answers`) are ~50 MB.
pub struct RenderedPages(AnswerCache<PageRequest, Bytes>);

impl RenderedPages {
    pub fn new(capacity: usize) -> Self {
        Self(AnswerCache::new(capacity))
    }
}

pub fn router(state: Arc<DashboardState>) -> Router {
    Router::new()
        .route("/", get(home))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/d/{slug}", get(dashboard_page))
        .route("/d/{slug}/{file}", get(panel_file))
        .merge(crate::report::web::routes())
        .with_state(state)
}

pub(crate) const STYLE: &str = include_str!("../templates/style.css");

/// The interface's words in one language, for the templates.
struct Words {
    skip: &'static str,
    dashboards: &'static str,
    language: &'static str,
    logout: &'static str,
    login: &'static str,
    login_help: &'static str,
    token: &'static str,
    from: &'static str,
    to: &'static str,
    server: &'static str,
    domain: &'static str,
    platform: &'static str,
    family: &'static str,
    all: &'static str,
    apply: &'static str,
    what_changed: &'static str,
    mom: &'static str,
    yoy: &'static str,
    table: &'static str,
    source: &'static str,
    source_text: &'static str,
    data_of: &'static str,
    download_csv: &'static str,
    download_png: &'static str,
    annotations: &'static str,
}

impl Words {
    fn of(lang: Lang) -> Words {
        Words {
            skip: lang.t("skip"),
            dashboards: lang.t("dashboards"),
            language: lang.t("language"),
            logout: lang.t("logout"),
            login: lang.t("login"),
            login_help: lang.t("login_help"),
            token: lang.t("token"),
            from: lang.t("from"),
            to: lang.t("to"),
            server: lang.t("server"),
            domain: lang.t("domain"),
            platform: lang.t("platform"),
            family: lang.t("family"),
            all: lang.t("all"),
            apply: lang.t("apply"),
            what_changed: lang.t("what_changed"),
            mom: lang.t("mom"),
            yoy: lang.t("yoy"),
            table: lang.t("table"),
            source: lang.t("source"),
            source_text: lang.t("source_text"),
            data_of: lang.t("data_of"),
            download_csv: lang.t("download_csv"),
            download_png: lang.t("download_png"),
            annotations: lang.t("annotations"),
        }
    }
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    lang: &'static str,
    words: Words,
    style: &'static str,
    next: String,
    error: Option<&'static str>,
}

struct NavItem {
    href: String,
    label: String,
    current: bool,
}

struct SelectOption {
    value: String,
    label: String,
    selected: bool,
}

struct BigView {
    value: String,
    period: String,
    mom: Option<String>,
    yoy: Option<String>,
}

/// A panel as the page shows it.
struct CardView {
    id: String,
    title: String,
    definition: String,
    note: Option<String>,
    big: Option<BigView>,
    svg: Option<String>,
    legend: Vec<(&'static str, String)>,
    headers: Vec<String>,
    /// Each row's label, and its cells (text, withheld).
    rows: Vec<crate::panel::ShownRow>,
    /// A table panel shows its table at once.
    table_open: bool,
    has_secret: bool,
    csv_href: String,
    png_href: String,
}

#[derive(Template)]
#[template(path = "dashboard.html")]
struct DashboardPage {
    lang: &'static str,
    other_lang: &'static str,
    words: Words,
    style: &'static str,
    title: String,
    intro: Option<String>,
    nav: Vec<NavItem>,
    path: String,
    language_href: String,
    principal: String,
    period_input: &'static str,
    from: String,
    to: String,
    domain: String,
    servers: Vec<SelectOption>,
    platforms: Vec<SelectOption>,
    families: Vec<SelectOption>,
    error: Option<String>,
    changes: Vec<String>,
    changes_month: String,
    cards: Vec<CardView>,
    events: Vec<String>,
    as_of: String,
    secret_legend: String,
}

/// A page's state, all in its URL.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq, Hash)]
pub struct PageQuery {
    from: Option<String>,
    to: Option<String>,
    server: Option<String>,
    domain: Option<String>,
    platform: Option<String>,
    family: Option<String>,
    lang: Option<String>,
    /// `semicolon` for a CSV a French spreadsheet opens as is.
    sep: Option<String>,
}

/// The client families of the filter: the shipped ones and `unknown` (visits of schema
/// version 1), and an operator's own family when the page asks for it.
fn family_options(selected: Option<&str>) -> Vec<SelectOption> {
    let mut names: Vec<&str> = mxpulse_schemas::ClientFamily::SHIPPED.to_vec();
    names.push(mxpulse_query::figures::definitions::UNKNOWN_FAMILY);
    if let Some(own) = selected
        .filter(|s| !names.contains(s) && s.parse::<mxpulse_schemas::ClientFamily>().is_ok())
    {
        names.push(own);
    }
    names
        .into_iter()
        .map(|name| SelectOption {
            value: name.to_owned(),
            label: name.to_owned(),
            selected: selected == Some(name),
        })
        .collect()
}

fn nonempty(value: &Option<String>) -> Option<String> {
    value
        .as_deref()
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

impl PageQuery {
    /// The query string of this state (for links), with `lang`.
    fn encoded(&self, from: &str, to: &str, lang: Lang) -> String {
        let mut pairs = vec![("from", from.to_owned()), ("to", to.to_owned())];
        for (name, value) in [
            ("server", &self.server),
            ("domain", &self.domain),
            ("platform", &self.platform),
            ("family", &self.family),
        ] {
            if let Some(value) = nonempty(value) {
                pairs.push((name, value));
            }
        }
        if lang == Lang::En {
            pairs.push(("lang", "en".into()));
        }
        pairs
            .iter()
            .map(|(k, v)| format!("{k}={}", url_encode(v)))
            .collect::<Vec<_>>()
            .join("&")
    }
}

pub(crate) fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Why a page cannot be shown.
enum PageError {
    /// No session: to the login page, then back here.
    Login(String),
    NotFound,
    Query(QueryError),
    Render(String),
}

impl From<QueryError> for PageError {
    fn from(error: QueryError) -> Self {
        PageError::Query(error)
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        match self {
            PageError::Login(next) => {
                Redirect::to(&format!("/login?next={}", url_encode(&next))).into_response()
            }
            PageError::NotFound => {
                (StatusCode::NOT_FOUND, "no such dashboard or panel").into_response()
            }
            PageError::Query(error) => {
                let status = match error {
                    QueryError::Invalid(_) => StatusCode::BAD_REQUEST,
                    QueryError::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
                    QueryError::Busy(_) | QueryError::Lake(_) => StatusCode::SERVICE_UNAVAILABLE,
                    _ => StatusCode::INTERNAL_SERVER_ERROR,
                };
                let mut response = (status, error.to_string()).into_response();
                if matches!(error, QueryError::Busy(_)) {
                    response
                        .headers_mut()
                        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                }
                response
            }
            PageError::Render(error) => (StatusCode::INTERNAL_SERVER_ERROR, error).into_response(),
        }
    }
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// The principal of the request's session, if any.
pub(crate) fn who(state: &DashboardState, headers: &HeaderMap) -> Option<Principal> {
    let cookies = headers.get(header::COOKIE)?.to_str().ok()?;
    let value = session::from_header(cookies)?;
    let access = &state.service.access;
    let name = state.keys.verify(value, now(), |name| {
        access.named(name).map(|(secret, _)| secret)
    })?;
    access.named(&name).map(|(_, principal)| principal.clone())
}

/// A POST is accepted from the service's own pages only (login CSRF, logout CSRF).
fn same_origin(headers: &HeaderMap) -> bool {
    let value = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    match (value(header::ORIGIN), value(header::HOST)) {
        (Some(origin), Some(host)) => origin.split_once("://").is_some_and(|(_, o)| o == host),
        (Some(_), None) => false,
        // No Origin: not a browser's cross-site form (browsers send it on every POST).
        (None, _) => value(header::HeaderName::from_static("sec-fetch-site"))
            .is_none_or(|site| site == "same-origin" || site == "none"),
    }
}

async fn home(
    State(state): State<Arc<DashboardState>>,
    Query(query): Query<PageQuery>,
) -> Redirect {
    let slug = state
        .dashboards
        .first()
        .map_or("overview", |d| d.slug.as_str());
    let lang = if Lang::parse(query.lang.as_deref()) == Lang::En {
        "?lang=en"
    } else {
        ""
    };
    Redirect::to(&format!("/d/{slug}{lang}"))
}

#[derive(Deserialize)]
struct LoginQuery {
    next: Option<String>,
    lang: Option<String>,
}

/// Only a path of this service: never a redirect elsewhere.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(path) if path.starts_with('/') && !path.starts_with("//") && !path.contains('\\') => {
            path.to_owned()
        }
        _ => "/".to_owned(),
    }
}

pub(crate) fn html(page: impl Template) -> Response {
    match page.render() {
        Ok(body) => html_body(body.into()),
        Err(error) => (StatusCode::INTERNAL_SERVER_ERROR, error.to_string()).into_response(),
    }
}

/// A rendered page, with the headers every page has.
fn html_body(body: Bytes) -> Response {
    (
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                // Nothing but this service: no script, no outside resource, no framing.
                (
                    header::CONTENT_SECURITY_POLICY,
                    "default-src 'none'; style-src 'unsafe-inline'; img-src data: 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
                ),
                (header::REFERRER_POLICY, "same-origin"),
            ],
            body,
        )
            .into_response()
}

async fn login_page(Query(query): Query<LoginQuery>) -> Response {
    let lang = Lang::parse(query.lang.as_deref());
    html(LoginPage {
        lang: lang.code(),
        words: Words::of(lang),
        style: STYLE,
        next: safe_next(query.next.as_deref()),
        error: None,
    })
}

#[derive(Deserialize)]
struct LoginForm {
    token: String,
    next: Option<String>,
    lang: Option<String>,
}

async fn login(
    State(state): State<Arc<DashboardState>>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    if !same_origin(&headers) {
        return (
            StatusCode::FORBIDDEN,
            "a login comes from this service's own page",
        )
            .into_response();
    }
    let lang = Lang::parse(form.lang.as_deref());
    let next = safe_next(form.next.as_deref());
    let Some(principal) = state.service.access.by_token(form.token.trim()) else {
        state
            .service
            .metrics
            .unauthorized
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let page = LoginPage {
            lang: lang.code(),
            words: Words::of(lang),
            style: STYLE,
            next,
            error: Some(lang.t("bad_token")),
        };
        let mut response = html(page);
        *response.status_mut() = StatusCode::UNAUTHORIZED;
        return response;
    };
    tracing::info!(user = %principal.name, "dashboard login");
    let cookie = state.keys.issue(&principal.name, form.token.trim(), now());
    let mut response = Redirect::to(&next).into_response();
    if let Ok(value) = HeaderValue::from_str(&state.keys.set_cookie(&cookie)) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

async fn logout(State(state): State<Arc<DashboardState>>, headers: HeaderMap) -> Response {
    if !same_origin(&headers) {
        return (
            StatusCode::FORBIDDEN,
            "a logout comes from this service's own page",
        )
            .into_response();
    }
    let mut response = Redirect::to("/login").into_response();
    if let Ok(value) = HeaderValue::from_str(&state.keys.clear_cookie()) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

/// A dashboard's data for one request, panel by panel.
struct Built {
    from: String,
    to: String,
    periods: Vec<String>,
    as_of: String,
    /// Each panel shown, its title and content.
    panels: Vec<(Panel, String, PanelContent)>,
    changes: Vec<String>,
    changes_month: String,
    servers: Vec<String>,
    events: Vec<String>,
}

/// The months (or days) from `from` to `to`.
fn periods(grain: Grain, from: &str, to: &str) -> Result<Vec<String>, QueryError> {
    use mxpulse_query::figures::periods as p;
    match grain {
        Grain::Month => p::months(from, to),
        Grain::Day => {
            let (mut day, last) = (p::parse_day(from)?, p::parse_day(to)?);
            let mut out = Vec::new();
            while day <= last && out.len() <= 1000 {
                out.push(day.to_string());
                day = day
                    .succ_opt()
                    .ok_or_else(|| QueryError::Invalid("day out of range".into()))?;
            }
            Ok(out)
        }
    }
}

/// The period shown when the URL gives none: `span` months (or days) up to the newest data.
fn default_period(dashboard: &Dashboard, newest: chrono::NaiveDate) -> (String, String) {
    let span = dashboard.default_span.max(1);
    match dashboard.grain {
        Grain::Month => {
            let to = newest.format("%Y-%m").to_string();
            let from = newest
                .checked_sub_months(chrono::Months::new(span - 1))
                .unwrap_or(newest)
                .format("%Y-%m")
                .to_string();
            (from, to)
        }
        Grain::Day => {
            let from = newest - chrono::Days::new(u64::from(span - 1));
            (from.to_string(), newest.to_string())
        }
    }
}

async fn build(
    state: &DashboardState,
    who: &Principal,
    dashboard: &Dashboard,
    query: &PageQuery,
    lang: Lang,
) -> Result<Built, QueryError> {
    let service = &state.service;
    let newest = service.data_as_of().await?;
    let as_of = newest.map_or("—".to_owned(), |t| {
        t.with_timezone(&chrono::Utc)
            .format("%Y-%m-%d %H:%M UTC")
            .to_string()
    });
    let newest_day = service
        .newest_data()
        .await?
        .unwrap_or_else(|| chrono::Utc::now().date_naive());
    let (default_from, default_to) = default_period(dashboard, newest_day);
    let from = nonempty(&query.from).unwrap_or(default_from);
    let to = nonempty(&query.to).unwrap_or(default_to);
    let periods = periods(dashboard.grain, &from, &to)?;
    let filters = Filters {
        server: nonempty(&query.server),
        domain: nonempty(&query.domain),
        platform: nonempty(&query.platform),
        family: nonempty(&query.family),
    };
    let figures: Vec<String> = dashboard.figures().into_iter().collect();
    let mut breakdowns: Vec<Dim> = dashboard
        .panels
        .iter()
        .filter_map(|p| Dim::parse(&p.breakdown))
        .collect();
    if dashboard.what_changed {
        breakdowns = Dim::ALL.to_vec();
    }
    // The server list of the filter: every server of the federation the principal may see.
    if !breakdowns.contains(&Dim::Server) {
        breakdowns.push(Dim::Server);
    }
    breakdowns.sort();
    breakdowns.dedup();
    let report = if figures.is_empty() {
        None
    } else {
        let request = FigureRequest {
            granularity: match dashboard.grain {
                Grain::Month => Granularity::Month,
                Grain::Day => Granularity::Day,
            },
            from: from.clone(),
            to: to.clone(),
            filters,
            only: figures,
            breakdowns,
        };
        Some(service.figures(who, request, SourceChoice::Auto).await?)
    };
    let empty = mxpulse_query::figures::FiguresReport {
        granularity: Granularity::Month,
        from: from.clone(),
        to: to.clone(),
        timezone: String::new(),
        min_users: 0,
        noise: 0,
        filters: Filters::default(),
        source: mxpulse_query::figures::FigureSource::Raw,
        as_of: None,
        cells: Vec::new(),
    };
    let report_ref = report.as_ref().unwrap_or(&empty);
    let cells = Cells::new(report_ref);
    let mut servers: Vec<String> = report_ref
        .cells
        .iter()
        .filter(|c| c.breakdown == "server")
        .filter_map(|c| c.key.clone())
        .collect();
    servers.sort();
    servers.dedup();
    let bands = annotations::bands(&state.annotations, &periods, lang);
    let mut panels = Vec::new();
    for panel in &dashboard.panels {
        let title = panel.title.as_ref().map_or_else(
            || {
                panel
                    .figures
                    .first()
                    .map(|f| lang.figure(f.get_ref()))
                    .unwrap_or_default()
            },
            |t| t.get(lang).to_owned(),
        );
        let content = if panel.kind == ChartKind::Forums {
            let forums = service
                .forums(who, panel.top.unwrap_or(20), SourceChoice::Auto)
                .await?;
            panel::forums_panel(&forums, lang, &title)
        } else if let Some(sql) = &panel.sql {
            if !who.role.may_query_sql() {
                // Viewers get no SQL panel.
                continue;
            }
            sql_panel(service, who, panel, sql.get_ref(), &periods, &title).await?
        } else {
            panel::figures_panel(panel, &cells, &periods, bands.clone(), lang, &title)
        };
        panels.push((panel.clone(), title, content));
    }
    // The last closed month: `to`, unless it is the month of the newest data (still filling).
    let (mut changes, mut changes_month) = (Vec::new(), String::new());
    if dashboard.what_changed && dashboard.grain == Grain::Month && periods.len() >= 2 {
        let newest_month = Some(newest_day.format("%Y-%m").to_string());
        let closed = if newest_month.as_deref() == Some(to.as_str()) {
            periods.len() - 2
        } else {
            periods.len() - 1
        };
        if closed >= 1 {
            let headline: Vec<&str> = dashboard
                .panels
                .iter()
                .filter(|p| p.kind == ChartKind::BigNumber)
                .filter_map(|p| p.figures.first().map(|f| f.get_ref().as_str()))
                .collect();
            changes = crate::changes::what_changed(
                &cells,
                &headline,
                &periods[closed],
                &periods[closed - 1],
                lang,
            )
            .into_iter()
            .map(|c| c.sentence)
            .collect();
            changes_month = lang.period(&periods[closed]);
        }
    }
    let events = state
        .annotations
        .iter()
        .filter(|a| {
            periods
                .first()
                .is_some_and(|p| a.to.to_string().as_str() >= p.as_str())
                && periods
                    .last()
                    .is_some_and(|p| a.from.to_string().as_str() <= format!("{p}-31").as_str())
        })
        .map(|a| format!("{} : {} – {}", a.label.get(lang), a.from, a.to))
        .collect();
    Ok(Built {
        from,
        to,
        periods,
        as_of,
        panels,
        changes,
        changes_month,
        servers,
        events,
    })
}

/// An analyst's SQL panel: the rows of its query over the period (`:from`, `:to` bound as the
/// period's first and last days), as a table (and bars when it has a label and a number).
async fn sql_panel(
    service: &Arc<QueryService>,
    who: &Principal,
    panel: &Panel,
    sql: &str,
    periods: &[String],
    title: &str,
) -> Result<PanelContent, QueryError> {
    use datafusion::arrow::array::Array;
    use datafusion::common::{ParamValues, ScalarValue};
    let first = periods.first().cloned().unwrap_or_default();
    let last = periods.last().cloned().unwrap_or_default();
    let first_day = if first.len() == 7 {
        format!("{first}-01")
    } else {
        first
    };
    let last_day = if last.len() == 7 {
        mxpulse_query::figures::periods::month_end(&last)?.to_string()
    } else {
        last
    };
    let bound = sql
        .replace(":from", "CAST($1 AS DATE)")
        .replace(":to", "CAST($2 AS DATE)");
    let params = (bound != sql).then(|| {
        ParamValues::List(vec![
            ScalarValue::Utf8(Some(first_day)).into(),
            ScalarValue::Utf8(Some(last_day)).into(),
        ])
    });
    let output = service
        .answer_sql(who, bound, params, Surface::Http)
        .await?;
    let headers: Vec<String> = output
        .schema
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let mut rows = Vec::new();
    for batch in &output.batches {
        let columns: Vec<_> = batch
            .columns()
            .iter()
            .map(|c| {
                datafusion::arrow::compute::cast(c, &datafusion::arrow::datatypes::DataType::Utf8)
            })
            .collect::<Result<_, _>>()?;
        for row in 0..batch.num_rows() {
            let text = |i: usize| {
                let column = columns[i]
                    .as_any()
                    .downcast_ref::<datafusion::arrow::array::StringArray>();
                column
                    .filter(|c| !c.is_null(row))
                    .map(|c| c.value(row).to_owned())
            };
            let label = text(0).unwrap_or_default();
            let cells = (1..columns.len())
                .map(|i| match text(i) {
                    Some(t) => t.parse::<f64>().map_or(Value::Text(t), Value::Number),
                    None => Value::Empty,
                })
                .collect();
            rows.push((label, cells));
        }
    }
    let table = Table { headers, rows };
    let chart = (panel.kind == ChartKind::Bar && table.headers.len() == 2).then(|| {
        (
            chart::ChartData {
                categories: table.rows.iter().map(|(l, _)| l.clone()).collect(),
                series: vec![chart::Series {
                    name: table.headers[1].clone(),
                    color: chart::PALETTE[0],
                    values: table
                        .rows
                        .iter()
                        .map(|(_, c)| c.first().and_then(Value::number))
                        .collect(),
                }],
                bands: Vec::new(),
                title: title.to_owned(),
            },
            Shape::Ranking,
        )
    });
    Ok(PanelContent {
        chart,
        table,
        headline: None,
    })
}

fn find<'a>(state: &'a DashboardState, slug: &str) -> Option<&'a Dashboard> {
    state.dashboards.iter().find(|d| d.slug == slug)
}

async fn dashboard_page(
    State(state): State<Arc<DashboardState>>,
    Path(slug): Path<String>,
    Query(query): Query<PageQuery>,
    headers: HeaderMap,
    uri: axum::http::Uri,
) -> Result<Response, PageError> {
    let Some(who) = who(&state, &headers) else {
        return Err(PageError::Login(uri.to_string()));
    };
    let dashboard = find(&state, &slug).ok_or(PageError::NotFound)?;
    let version = state.service.lake_version().await?;
    let request = PageRequest {
        day: chrono::Utc::now().date_naive(),
        principal: who.name.clone(),
        slug: slug.clone(),
        query: query.clone(),
    };
    if let Some(body) = state.pages.0.get(&version, &request) {
        return Ok(html_body(body));
    }
    let lang = Lang::parse(query.lang.as_deref());
    let started = std::time::Instant::now();
    let (built, error) = match build(&state, &who, dashboard, &query, lang).await {
        Ok(built) => (built, None),
        Err(QueryError::Invalid(message)) => {
            // A bad period in the URL: the default one, and why.
            let reset = PageQuery {
                from: None,
                to: None,
                ..query.clone()
            };
            (
                build(&state, &who, dashboard, &reset, lang).await?,
                Some(message),
            )
        }
        Err(error) => return Err(error.into()),
    };
    let qs = query.encoded(&built.from, &built.to, lang);
    let secret_legend =
        crate::i18n::privacy_legend(lang, state.service.min_users, state.service.noise);
    let cards = built
        .panels
        .iter()
        .map(|(panel, title, content)| card(&slug, panel, title, content, &qs, lang))
        .collect();
    let page = DashboardPage {
        lang: lang.code(),
        other_lang: if lang == Lang::Fr { "en" } else { "fr" },
        words: Words::of(lang),
        style: STYLE,
        title: dashboard.title.get(lang).to_owned(),
        intro: dashboard.intro.as_ref().map(|t| t.get(lang).to_owned()),
        nav: state
            .dashboards
            .iter()
            .map(|d| NavItem {
                href: format!("/d/{}?{qs}", d.slug),
                label: d.title.get(lang).to_owned(),
                current: d.slug == slug,
            })
            .chain(std::iter::once(NavItem {
                href: format!("/reports?lang={}", lang.code()),
                label: lang.t("reports").to_owned(),
                current: false,
            }))
            .collect(),
        path: format!("/d/{slug}"),
        language_href: format!(
            "/d/{slug}?{}",
            query.encoded(
                &built.from,
                &built.to,
                if lang == Lang::Fr { Lang::En } else { Lang::Fr }
            )
        ),
        principal: who.name.clone(),
        period_input: match dashboard.grain {
            Grain::Month => "month",
            Grain::Day => "date",
        },
        from: built.from.clone(),
        to: built.to.clone(),
        domain: nonempty(&query.domain).unwrap_or_default(),
        servers: built
            .servers
            .iter()
            .map(|s| SelectOption {
                value: s.clone(),
                label: s.clone(),
                selected: query.server.as_deref() == Some(s.as_str()),
            })
            .collect(),
        platforms: ["web", "android", "ios", "desktop"]
            .iter()
            .map(|p| SelectOption {
                value: (*p).to_owned(),
                label: (*p).to_owned(),
                selected: query.platform.as_deref() == Some(*p),
            })
            .collect(),
        families: family_options(query.family.as_deref()),
        error,
        changes: built.changes,
        changes_month: built.changes_month,
        cards,
        events: built.events,
        as_of: built.as_of,
        secret_legend,
    };
    let body = Bytes::from(
        page.render()
            .map_err(|e| PageError::Render(e.to_string()))?,
    );
    state.pages.0.put(&version, request, body.clone());
    tracing::debug!(dashboard = %slug, user = %who.name, periods = built.periods.len(), elapsed = ?started.elapsed(), "dashboard page");
    Ok(html_body(body))
}

fn card(
    slug: &str,
    panel: &Panel,
    title: &str,
    content: &PanelContent,
    qs: &str,
    lang: Lang,
) -> CardView {
    // Every figure of the card defined (a card of room kinds showed the first kind's only).
    let definition = match panel.figures.as_slice() {
        [one] => lang.definition(one.get_ref()),
        several => several
            .iter()
            .map(|f| {
                format!(
                    "{} : {}",
                    lang.figure(f.get_ref()),
                    lang.definition(f.get_ref())
                )
            })
            .collect::<Vec<_>>()
            .join(" "),
    };
    let svg = content
        .chart
        .as_ref()
        .map(|(data, shape)| chart::svg(data, *shape, lang, &format!("c-{}", panel.id)));
    let legend = content
        .chart
        .as_ref()
        .filter(|(data, shape)| *shape != Shape::Ranking && data.series.len() > 1)
        .map(|(data, _)| {
            data.series
                .iter()
                .map(|s| (s.color, s.name.clone()))
                .collect()
        })
        .unwrap_or_default();
    CardView {
        id: format!("panel-{}", panel.id),
        title: title.to_owned(),
        definition,
        note: panel.note.as_ref().map(|n| n.get(lang).to_owned()),
        big: content.headline.as_ref().map(|h| BigView {
            value: h.value.display(lang),
            period: lang.period(&h.period),
            mom: h.mom.map(|c| lang.change(c)),
            yoy: h.yoy.map(|c| lang.change(c)),
        }),
        svg,
        legend,
        // Server names as the charts write them: a column per server of the federation
        // fits a card (the CSV keeps the full names).
        headers: content
            .table
            .headers
            .iter()
            .map(|h| crate::chart::short_name(h).to_owned())
            .collect(),
        rows: content
            .table
            .shown_rows(lang)
            .into_iter()
            .map(|(label, cells)| (crate::chart::short_name(&label).to_owned(), cells))
            .collect(),
        table_open: panel.kind == ChartKind::Table,
        has_secret: content.table.has_secret(),
        csv_href: format!("/d/{slug}/{}.csv?{qs}", panel.id),
        png_href: format!("/d/{slug}/{}.png?{qs}", panel.id),
    }
}

/// A panel's table as CSV, or its chart as PNG.
async fn panel_file(
    State(state): State<Arc<DashboardState>>,
    Path((slug, file)): Path<(String, String)>,
    Query(query): Query<PageQuery>,
    headers: HeaderMap,
    uri: axum::http::Uri,
) -> Result<Response, PageError> {
    let Some(who) = who(&state, &headers) else {
        return Err(PageError::Login(uri.to_string()));
    };
    let dashboard = find(&state, &slug).ok_or(PageError::NotFound)?;
    let (id, extension) = file.rsplit_once('.').ok_or(PageError::NotFound)?;
    let lang = Lang::parse(query.lang.as_deref());
    let built = build(&state, &who, dashboard, &query, lang).await?;
    let (_, _, content) = built
        .panels
        .iter()
        .find(|(p, _, _)| p.id == id)
        .ok_or(PageError::NotFound)?;
    let name = format!("mxpulse-{slug}-{id}-{}-{}", built.from, built.to);
    match extension {
        "csv" => {
            let separator = if query.sep.as_deref() == Some("semicolon") {
                ';'
            } else {
                ','
            };
            Ok((
                [
                    (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
                    (
                        header::CONTENT_DISPOSITION,
                        format!("attachment; filename=\"{name}.csv\""),
                    ),
                ],
                content.table.csv(separator),
            )
                .into_response())
        }
        "png" => {
            let (data, shape) = content.chart.as_ref().ok_or(PageError::NotFound)?;
            let svg = chart::svg(data, *shape, lang, "png");
            let png = crate::png::png(&svg, 2.0).map_err(|e| PageError::Render(e.to_string()))?;
            Ok((
                [
                    (header::CONTENT_TYPE, "image/png".to_owned()),
                    (
                        header::CONTENT_DISPOSITION,
                        format!("attachment; filename=\"{name}.png\""),
                    ),
                ],
                png,
            )
                .into_response())
        }
        _ => Err(PageError::NotFound),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirects_stay_on_the_service_and_posts_come_from_it() {
        assert_eq!(
            safe_next(Some("/d/overview?from=2024-01")),
            "/d/overview?from=2024-01"
        );
        for bad in [
            "https://evil.example/",
            "//evil.example",
            "/\\evil",
            "javascript:x",
        ] {
            assert_eq!(safe_next(Some(bad)), "/", "{bad}");
        }
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8080"));
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://127.0.0.1:8080"),
        );
        assert!(same_origin(&headers));
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://evil.example"),
        );
        assert!(!same_origin(&headers));
        headers.remove(header::ORIGIN);
        headers.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert!(!same_origin(&headers));
        assert_eq!(url_encode("a b/é"), "a%20b%2F%C3%A9");
    }
}
