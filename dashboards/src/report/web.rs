//! The reports over HTTP, beside the dashboards:
//!
//! - `/reports`: the months with figures, each report's state and its links;
//! - `/reports/2024-07.pdf`, `.xlsx`, `.csv.zip` (`?sep=semicolon`: `;` and decimal commas),
//!   `.html`; `?lang=en` for English;
//! - `/reports/2024-07/messages.png`: one chart.
//!
//! For the principal of a bearer token (scripts, the command line) or of the session cookie
//! (a click on the dashboards), with its scope; anyone else gets 401. A frozen report carries
//! its revision (`X-Mxpulse-Revision`) and an `ETag`: a client that has it gets 304.

use std::sync::Arc;

use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use mxpulse_query::access::Principal;
use serde::Deserialize;

use super::ReportError;
use super::desk::Served;
use super::files;
use crate::i18n::Lang;
use crate::web::DashboardState;

pub fn routes() -> Router<Arc<DashboardState>> {
    Router::new()
        .route("/reports", get(index))
        .route("/reports/{file}", get(report_file))
        .route("/reports/{month}/{chart}", get(chart_file))
}

#[derive(Debug, Default, Deserialize)]
pub struct ReportQuery {
    lang: Option<String>,
    /// `semicolon`: the CSV files with `;` and decimal commas.
    sep: Option<String>,
}

/// The principal of a bearer token, else of the session cookie.
fn principal(state: &DashboardState, headers: &HeaderMap) -> Option<Principal> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match bearer {
        Some(token) => state.service.access.by_token(token),
        None => crate::web::who(state, headers),
    }
}

fn unauthorized(lang: Lang, next: &str) -> Response {
    let body = format!(
        "<!doctype html><html lang=\"{}\"><meta charset=\"utf-8\"><title>401</title><p><a href=\"/login?next={}\">{}</a></p></html>",
        lang.code(),
        crate::web::url_encode(next),
        lang.t("login"),
    );
    (
        StatusCode::UNAUTHORIZED,
        [
            (header::WWW_AUTHENTICATE, "Bearer"),
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
        ],
        body,
    )
        .into_response()
}

fn failure(error: &ReportError) -> Response {
    let status = StatusCode::from_u16(error.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if status.is_server_error() && status != StatusCode::SERVICE_UNAVAILABLE {
        tracing::error!(%error, "report failed");
    }
    let mut response = (status, error.to_string()).into_response();
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    }
    response
}

/// One of a report's files as an answer, with what it is.
fn file_response(served: &Served, name: &str, download: &str, headers: &HeaderMap) -> Response {
    let Some(bytes) = served.rendered.get(name) else {
        return (StatusCode::NOT_FOUND, "no such file in this report").into_response();
    };
    let etag = format!(
        "\"{}-{}\"",
        served.digest,
        served
            .revision
            .map_or_else(|| "p".to_owned(), |r| r.to_string())
    );
    let state = if served.provisional {
        "provisional"
    } else if served.revision.is_some() {
        "frozen"
    } else {
        "closed-not-frozen"
    };
    let mut response = if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == etag)
    {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let disposition = if name == files::HTML {
            format!("inline; filename=\"{download}\"")
        } else {
            format!("attachment; filename=\"{download}\"")
        };
        (
            [
                (header::CONTENT_TYPE, files::content_type(name).to_owned()),
                (header::CONTENT_DISPOSITION, disposition),
            ],
            bytes.to_vec(),
        )
            .into_response()
    };
    let h = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, value);
    }
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-cache"),
    );
    h.insert("x-mxpulse-report", HeaderValue::from_static(state));
    // The offline HTML has inline style and SVG only.
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; img-src data:"),
    );
    if let Some(revision) = served.revision
        && let Ok(value) = HeaderValue::from_str(&revision.to_string())
    {
        h.insert("x-mxpulse-revision", value);
    }
    response
}

/// `2024-07.pdf` → (`2024-07`, the stored file, the extension of the download).
fn parse_file(file: &str, semicolon: bool) -> Option<(&str, &'static str, &'static str)> {
    let (month, extension) = file.split_once('.')?;
    let (name, download) = match extension {
        "pdf" => (files::PDF, "pdf"),
        "xlsx" => (files::XLSX, "xlsx"),
        "csv.zip" | "zip" if semicolon => (files::CSV_SEMICOLON, "csv.zip"),
        "csv.zip" | "zip" => (files::CSV, "csv.zip"),
        "html" => (files::HTML, "html"),
        _ => return None,
    };
    Some((month, name, download))
}

/// The file `name` of `month`'s report for the request's principal, downloaded as the
/// report's stem and `suffix`.
async fn report_part(
    state: &DashboardState,
    request: (&ReportQuery, &HeaderMap, &axum::http::Uri),
    month: &str,
    name: &str,
    suffix: &str,
) -> Response {
    let (query, headers, uri) = request;
    let lang = Lang::parse(query.lang.as_deref());
    let Some(who) = principal(state, headers) else {
        return unauthorized(lang, &uri.to_string());
    };
    match state.reports.report(&who, month, lang).await {
        Ok(served) => {
            let download = format!("{}{suffix}", served.file_stem);
            file_response(&served, name, &download, headers)
        }
        Err(error) => failure(&error),
    }
}

async fn report_file(
    State(state): State<Arc<DashboardState>>,
    Path(file): Path<String>,
    Query(query): Query<ReportQuery>,
    headers: HeaderMap,
    uri: axum::http::Uri,
) -> Response {
    let semicolon = query.sep.as_deref() == Some("semicolon");
    let Some((month, name, extension)) = parse_file(&file, semicolon) else {
        return (
            StatusCode::NOT_FOUND,
            "a report is YYYY-MM.pdf, .xlsx, .csv.zip or .html",
        )
            .into_response();
    };
    let suffix = format!(".{extension}");
    report_part(&state, (&query, &headers, &uri), month, name, &suffix).await
}

async fn chart_file(
    State(state): State<Arc<DashboardState>>,
    Path((month, chart)): Path<(String, String)>,
    Query(query): Query<ReportQuery>,
    headers: HeaderMap,
    uri: axum::http::Uri,
) -> Response {
    let Some(name) = chart.strip_suffix(".png") else {
        return (StatusCode::NOT_FOUND, "a chart is {name}.png").into_response();
    };
    let (file, suffix) = (
        format!("{}{name}.png", files::CHARTS),
        format!("-{name}.png"),
    );
    report_part(&state, (&query, &headers, &uri), &month, &file, &suffix).await
}

struct MonthRow {
    label: String,
    state: String,
    links: Vec<(String, &'static str)>,
}

#[derive(Template)]
#[template(path = "reports.html")]
struct ReportsPage {
    lang: &'static str,
    style: &'static str,
    title: &'static str,
    back: String,
    back_label: &'static str,
    principal: String,
    months: Vec<MonthRow>,
    note: String,
}

/// The months with figures, newest first, and their reports.
async fn index(
    State(state): State<Arc<DashboardState>>,
    Query(query): Query<ReportQuery>,
    headers: HeaderMap,
    uri: axum::http::Uri,
) -> Response {
    let lang = Lang::parse(query.lang.as_deref());
    let Some(who) = principal(&state, &headers) else {
        return unauthorized(lang, &uri.to_string());
    };
    let desk = &state.reports;
    let months = match state.service.months_with_data().await {
        Ok(months) => months,
        Err(error) => return failure(&error.into()),
    };
    let q = if lang == Lang::En { "?lang=en" } else { "" };
    let mut rows = Vec::new();
    for month in months.iter().rev().take(36) {
        let closed = desk.is_closed(month).unwrap_or(false);
        let key = super::store::SeriesKey {
            scope: who.server.clone(),
            month: month.clone(),
            lang,
        };
        let frozen = desk
            .store()
            .and_then(|s| s.latest(&key).ok().flatten())
            .map(|f| f.manifest.revision);
        let state = match (closed, frozen) {
            (false, _) => lang.t("in_progress").to_owned(),
            (true, Some(r)) => format!("{} {r}", lang.t("revision")),
            (true, None) => "—".to_owned(),
        };
        rows.push(MonthRow {
            label: lang.period(month),
            state,
            links: vec![
                (format!("/reports/{month}.pdf{q}"), "PDF"),
                (format!("/reports/{month}.xlsx{q}"), "XLSX"),
                (format!("/reports/{month}.csv.zip{q}"), "CSV"),
                (
                    format!(
                        "/reports/{month}.csv.zip?sep=semicolon{}",
                        if lang == Lang::En { "&lang=en" } else { "" }
                    ),
                    "CSV (;)",
                ),
                (format!("/reports/{month}.html{q}"), "HTML"),
            ],
        });
    }
    crate::web::html(ReportsPage {
        lang: lang.code(),
        style: crate::web::STYLE,
        title: lang.t("reports"),
        back: format!("/{q}"),
        back_label: lang.t("dashboards"),
        principal: who.name.clone(),
        months: rows,
        note: lang.t("frozen").to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_urls_name_a_month_and_a_format() {
        assert_eq!(
            parse_file("2024-07.pdf", false),
            Some(("2024-07", files::PDF, "pdf"))
        );
        assert_eq!(
            parse_file("2024-07.csv.zip", true),
            Some(("2024-07", files::CSV_SEMICOLON, "csv.zip"))
        );
        assert_eq!(parse_file("2024-07.exe", false), None);
        assert_eq!(parse_file("2024-07", false), None);
    }
}
