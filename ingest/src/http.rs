//! The ingest's own HTTP surface: `/metrics` (Prometheus) and `/health`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;

use crate::error::IngestError;
use crate::metrics::IngestMetrics;

/// Commits failing this many times in a row make `/health` answer 503.
const UNHEALTHY_AFTER_FAILURES: u64 = 3;

pub fn router(metrics: Arc<IngestMetrics>) -> Router {
    Router::new()
        .route("/metrics", get(metrics_text))
        .route("/health", get(health))
        .with_state(metrics)
}

async fn metrics_text(
    State(metrics): State<Arc<IngestMetrics>>,
) -> ([(axum::http::HeaderName, &'static str); 1], String) {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        metrics.render(),
    )
}

/// 503 when commits keep failing or a partition is stopped (messages missing, offsets going
/// backwards), naming it and why.
async fn health(State(metrics): State<Arc<IngestMetrics>>) -> (StatusCode, String) {
    let failures = metrics.consecutive_failures.load(Ordering::Relaxed);
    let stopped: Vec<serde_json::Value> = metrics
        .stopped
        .lock()
        .map(|stopped| {
            stopped
                .iter()
                .map(|((topic, partition), why)| {
                    serde_json::json!({"topic": topic, "partition": partition, "why": why})
                })
                .collect()
        })
        .unwrap_or_default();
    let failing = failures >= UNHEALTHY_AFTER_FAILURES || !stopped.is_empty();
    let body = serde_json::json!({
        "status": if failing { "failing" } else { "ok" },
        "consecutive_commit_failures": failures,
        "stopped_partitions": stopped,
    });
    let status = if failing {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (status, format!("{body}\n"))
}

/// Binds the listener now (so a bad address fails at start) and serves in the background.
pub async fn serve(
    address: SocketAddr,
    metrics: Arc<IngestMetrics>,
) -> Result<SocketAddr, IngestError> {
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|source| IngestError::Listen { address, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| IngestError::Listen { address, source })?;
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, router(metrics)).await {
            tracing::error!(%error, "ingest HTTP listener stopped");
        }
    });
    Ok(bound)
}
