//! The application service endpoint Synapse pushes transactions to (Matrix application
//! service API, v1), plus the hooks' `/metrics` and `/health`.
//!
//! One listener serves several homeservers: the `hs_token` a request carries says which one
//! sent it (each registration has its own token). A transaction is answered 200 only after
//! Kafka acknowledged every record it produced; otherwise 503, and Synapse retries the same
//! txnId with backoff until it gets its 200.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use mxpulse_schemas::EventRecord;
use mxpulse_schemas::vocabulary::Source;
use serde_json::{Value, json};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::Anonymizer;
use crate::event_mapping::{Mapped, SkipReason};
use crate::metrics::HooksMetrics;
use crate::producer::RecordProducer;

/// Transaction IDs remembered per homeserver, to answer a repeated delivery without
/// publishing again (a repeat after a restart is published again and dropped by the ingest).
const REMEMBERED_TRANSACTIONS: usize = 10_000;

/// One homeserver this process serves.
pub struct Homeserver {
    pub anonymizer: Anonymizer,
    hs_token: Zeroizing<String>,
    completed: Mutex<TransactionLog>,
}

impl Homeserver {
    pub fn new(anonymizer: Anonymizer, hs_token: Zeroizing<String>) -> Self {
        Self {
            anonymizer,
            hs_token,
            completed: Mutex::new(TransactionLog::default()),
        }
    }
}

#[derive(Default)]
struct TransactionLog {
    ids: HashSet<String>,
    order: VecDeque<String>,
}

impl TransactionLog {
    fn contains(&self, txn_id: &str) -> bool {
        self.ids.contains(txn_id)
    }

    fn insert(&mut self, txn_id: &str) {
        if self.ids.insert(txn_id.to_owned()) {
            self.order.push_back(txn_id.to_owned());
            while self.order.len() > REMEMBERED_TRANSACTIONS {
                if let Some(old) = self.order.pop_front() {
                    self.ids.remove(&old);
                }
            }
        }
    }
}

/// Everything a request handler needs.
pub struct AppserviceState {
    pub homeservers: Vec<Homeserver>,
    pub producer: RecordProducer,
    pub metrics: Arc<HooksMetrics>,
    /// A homeserver whose transactions all failed or were refused for this long is reported
    /// stalled by `/health`.
    pub stall_after: std::time::Duration,
    /// A homeserver whose transactions brought only other servers' users' events for this long
    /// (and at least `REMOTE_ONLY_EVENTS` of them) is reported: its `server_name` is suspect.
    pub remote_only_after: std::time::Duration,
    /// A transaction body over this size is refused (413).
    pub max_body_bytes: usize,
    /// A body must arrive within this time (408).
    pub read_timeout: std::time::Duration,
}

/// Events of other servers' users, none of its own, before a homeserver is reported.
pub const REMOTE_ONLY_EVENTS: u64 = 100;

/// The records of one transaction and what was left out of it.
#[derive(Debug, Default, PartialEq)]
pub struct MappedTransaction {
    pub records: Vec<EventRecord>,
    pub skipped: Vec<SkipReason>,
    pub remote: usize,
    /// Ephemeral data by kind: typing, receipt, presence, to_device, other.
    pub ephemeral: BTreeMap<&'static str, usize>,
}

/// Why a request was refused, as a Matrix error body.
#[derive(Debug)]
pub struct MatrixError {
    status: StatusCode,
    errcode: &'static str,
    error: String,
}

impl MatrixError {
    fn new(status: StatusCode, errcode: &'static str, error: impl Into<String>) -> Self {
        Self {
            status,
            errcode,
            error: error.into(),
        }
    }
}

impl IntoResponse for MatrixError {
    fn into_response(self) -> Response {
        (
            self.status,
            axum::Json(json!({"errcode": self.errcode, "error": self.error})),
        )
            .into_response()
    }
}

/// A transaction's body, each event and ephemeral item kept as its raw JSON: one that
/// cannot be read (nested deeper than serde_json reads, say) is skipped on its own instead of
/// refusing the transaction, which Synapse would retry forever, stalling the homeserver's feed.
#[derive(Debug, serde::Deserialize)]
pub struct RawTransaction {
    events: Vec<Box<serde_json::value::RawValue>>,
    #[serde(default)]
    ephemeral: Option<Vec<Box<serde_json::value::RawValue>>>,
    #[serde(default, rename = "de.sorunome.msc2409.ephemeral")]
    msc2409_ephemeral: Option<Vec<Box<serde_json::value::RawValue>>>,
    #[serde(default, rename = "de.sorunome.msc2409.to_device")]
    msc2409_to_device: Option<Vec<Box<serde_json::value::RawValue>>>,
}

/// Reads a transaction body: JSON, an object, with an `events` array (its items are read one
/// by one later). Skipping over nested values has no depth limit.
pub fn parse_transaction(body: &[u8]) -> Result<RawTransaction, MatrixError> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        // Either not JSON at all, or JSON but not an object.
        let is_json = serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok();
        return Err(if is_json {
            MatrixError::new(
                StatusCode::BAD_REQUEST,
                "M_BAD_JSON",
                "the body is not a JSON object",
            )
        } else {
            MatrixError::new(
                StatusCode::BAD_REQUEST,
                "M_NOT_JSON",
                "the body is not JSON",
            )
        });
    }
    serde_json::from_slice::<RawTransaction>(body).map_err(|e| {
        use serde_json::error::Category;
        match e.classify() {
            Category::Data if e.to_string().contains("missing field `events`") => MatrixError::new(
                StatusCode::BAD_REQUEST,
                "M_BAD_JSON",
                "the transaction has no `events`",
            ),
            Category::Data => MatrixError::new(
                StatusCode::BAD_REQUEST,
                "M_BAD_JSON",
                "`events`, `ephemeral` and to-device are arrays",
            ),
            // Syntax, truncated body: the position only, never the content.
            _ => MatrixError::new(
                StatusCode::BAD_REQUEST,
                "M_NOT_JSON",
                format!(
                    "the body is not JSON (line {}, column {})",
                    e.line(),
                    e.column()
                ),
            ),
        }
    })
}

/// The `type` of an ephemeral item, whatever else it holds.
#[derive(serde::Deserialize)]
struct EphemeralType {
    #[serde(rename = "type")]
    kind: Option<String>,
}

/// Maps a parsed transaction of `anonymizer`'s homeserver.
pub fn map_transaction(anonymizer: &Anonymizer, body: &RawTransaction) -> MappedTransaction {
    let mut mapped = MappedTransaction::default();
    for raw in &body.events {
        let mapping = serde_json::from_str::<Value>(raw.get())
            .map_err(|e| {
                SkipReason::Unreadable(format!("{:?} at column {}", e.classify(), e.column()))
            })
            .and_then(|event| anonymizer.event(&event, Source::Appservice));
        match mapping {
            Ok(Mapped::Record(record)) => mapped.records.push(*record),
            Ok(Mapped::Remote) => mapped.remote += 1,
            Err(reason) => {
                // The kind of problem only: the event's content never goes to the log.
                tracing::warn!(
                    reason = reason.label(),
                    bytes = raw.get().len(),
                    "event skipped"
                );
                mapped.skipped.push(reason);
            }
        }
    }
    // Synapse sends ephemeral data under both the stable and the MSC2409 name: count one.
    let ephemeral = body
        .ephemeral
        .as_deref()
        .or(body.msc2409_ephemeral.as_deref())
        .unwrap_or_default();
    for item in ephemeral {
        let kind = match serde_json::from_str::<EphemeralType>(item.get())
            .ok()
            .and_then(|t| t.kind)
            .as_deref()
        {
            Some("m.typing") => "typing",
            Some("m.receipt") => "receipt",
            Some("m.presence") => "presence",
            _ => "other",
        };
        *mapped.ephemeral.entry(kind).or_default() += 1;
    }
    let to_device = body.msc2409_to_device.as_deref().map_or(0, <[_]>::len);
    if to_device > 0 {
        *mapped.ephemeral.entry("to_device").or_default() += to_device;
    }
    mapped
}

/// The router: the appservice API under `/_matrix/app/v1` and the legacy unprefixed paths,
/// `/metrics` and `/health`. A transaction's body is read only once its token is checked, and
/// refused with 413 over `max_body_bytes`.
pub fn router(state: Arc<AppserviceState>) -> Router {
    let max_body_bytes = state.max_body_bytes;
    Router::new()
        .route("/_matrix/app/v1/transactions/{txn_id}", put(transaction))
        .route("/transactions/{txn_id}", put(transaction))
        .route("/_matrix/app/v1/users/{user_id}", get(unknown_user))
        .route("/users/{user_id}", get(unknown_user))
        .route("/_matrix/app/v1/rooms/{alias}", get(unknown_room))
        .route("/rooms/{alias}", get(unknown_room))
        .route("/_matrix/app/v1/ping", post(ping))
        .route("/metrics", get(metrics_text))
        .route("/health", get(health))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(state)
}

/// Which homeserver sent the request, from its `hs_token` (Authorization header, or the
/// legacy `access_token` query parameter). Every token is compared, in constant time.
fn authenticate(
    state: &AppserviceState,
    headers: &HeaderMap,
    uri: &Uri,
) -> Result<usize, MatrixError> {
    let from_header = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    let from_query = uri.query().and_then(|query| {
        query
            .split('&')
            .find_map(|pair| pair.strip_prefix("access_token="))
    });
    let Some(token) = from_header.or(from_query) else {
        state.metrics.transactions.add("rejected", 1);
        return Err(MatrixError::new(
            StatusCode::UNAUTHORIZED,
            "M_UNAUTHORIZED",
            "missing hs_token",
        ));
    };
    let mut found = None;
    for (index, homeserver) in state.homeservers.iter().enumerate() {
        if bool::from(token.as_bytes().ct_eq(homeserver.hs_token.as_bytes())) {
            found = Some(index);
        }
    }
    found.ok_or_else(|| {
        state.metrics.transactions.add("rejected", 1);
        MatrixError::new(StatusCode::FORBIDDEN, "M_FORBIDDEN", "invalid hs_token")
    })
}

/// A transaction's body, read only after its token was checked: within the size limit (an
/// announced length over it is refused before reading anything) and the read timeout.
async fn read_body(
    state: &AppserviceState,
    headers: &HeaderMap,
    body: Body,
) -> Result<Bytes, (StatusCode, &'static str, String)> {
    let too_large = || {
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            "M_TOO_LARGE",
            "the transaction is over the size limit".to_owned(),
        )
    };
    let announced = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > state.max_body_bytes as u64) {
        return Err(too_large());
    }
    match tokio::time::timeout(
        state.read_timeout,
        axum::body::to_bytes(body, state.max_body_bytes),
    )
    .await
    {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(error)) => {
            let over_limit =
                std::iter::successors(Some(&error as &(dyn std::error::Error + 'static)), |e| {
                    e.source()
                })
                .any(|e| e.is::<http_body_util::LengthLimitError>());
            if over_limit {
                Err(too_large())
            } else {
                Err((StatusCode::BAD_REQUEST, "M_UNKNOWN", error.to_string()))
            }
        }
        Err(_) => Err((
            StatusCode::REQUEST_TIMEOUT,
            "M_UNKNOWN",
            "the body did not arrive in time".to_owned(),
        )),
    }
}

async fn transaction(
    State(state): State<Arc<AppserviceState>>,
    Path(txn_id): Path<String>,
    headers: HeaderMap,
    uri: Uri,
    body: Body,
) -> Result<axum::Json<Value>, MatrixError> {
    let index = authenticate(&state, &headers, &uri)?;
    let homeserver = &state.homeservers[index];
    let server = homeserver.anonymizer.server();
    let body = read_body(&state, &headers, body)
        .await
        .map_err(|(status, errcode, error)| {
            state.metrics.transactions.add("rejected", 1);
            state
                .metrics
                .feed_failed(server, &format!("{} body refused", status.as_u16()));
            MatrixError::new(status, errcode, error)
        })?;
    let already = homeserver
        .completed
        .lock()
        .map(|log| log.contains(&txn_id))
        .unwrap_or(false);
    if already {
        state.metrics.transactions.add("repeated", 1);
        tracing::debug!(server, txn_id, "transaction already acknowledged");
        return Ok(axum::Json(json!({})));
    }
    let body = parse_transaction(&body).inspect_err(|error| {
        state.metrics.transactions.add("rejected", 1);
        state.metrics.feed_failed(
            server,
            &format!("{} {}", error.status.as_u16(), error.errcode),
        );
        tracing::warn!(server, txn_id, error = %error.error, "transaction refused");
    })?;
    let mapped = map_transaction(&homeserver.anonymizer, &body);
    for reason in &mapped.skipped {
        state.metrics.skipped.add(reason.label(), 1);
    }
    for (kind, n) in &mapped.ephemeral {
        state.metrics.ephemeral.add(kind, *n as u64);
    }
    state
        .metrics
        .remote_events
        .fetch_add(mapped.remote as u64, std::sync::atomic::Ordering::Relaxed);
    if state.metrics.feed_senders(
        server,
        mapped.records.len(),
        mapped.remote,
        state.remote_only_after,
        REMOTE_ONLY_EVENTS,
    ) {
        tracing::warn!(
            server,
            remote_events = REMOTE_ONLY_EVENTS,
            "this homeserver's transactions bring only other servers' users' events: is its server_name Synapse's? None of its users' activity is counted"
        );
    }

    if let Err(error) = state.producer.publish(&mapped.records).await {
        state.metrics.transactions.add("failed", 1);
        state
            .metrics
            .feed_failed(server, "503 records not acknowledged by Kafka");
        tracing::warn!(server, txn_id, %error, "transaction not acknowledged by Kafka; Synapse will retry");
        return Err(MatrixError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "M_UNKNOWN",
            format!("records not stored, retry later: {error}"),
        ));
    }
    if let Ok(mut log) = homeserver.completed.lock() {
        log.insert(&txn_id);
    }
    state.metrics.transactions.add("accepted", 1);
    state.metrics.feed_accepted(server);
    tracing::debug!(
        server,
        txn_id,
        records = mapped.records.len(),
        skipped = mapped.skipped.len(),
        "transaction acknowledged"
    );
    Ok(axum::Json(json!({})))
}

/// The hooks create no users or rooms: every authenticated query answers "not here".
fn not_provided(
    state: &AppserviceState,
    headers: &HeaderMap,
    uri: &Uri,
    what: &str,
) -> Result<Response, MatrixError> {
    authenticate(state, headers, uri)?;
    Err(MatrixError::new(
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
        format!("this application service provides no {what}"),
    ))
}

async fn unknown_user(
    State(state): State<Arc<AppserviceState>>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, MatrixError> {
    not_provided(&state, &headers, &uri, "users")
}

async fn unknown_room(
    State(state): State<Arc<AppserviceState>>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, MatrixError> {
    not_provided(&state, &headers, &uri, "rooms")
}

async fn ping(
    State(state): State<Arc<AppserviceState>>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<axum::Json<Value>, MatrixError> {
    authenticate(&state, &headers, &uri)?;
    Ok(axum::Json(json!({})))
}

async fn metrics_text(State(state): State<Arc<AppserviceState>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}

/// 200 when the broker is reachable (a publish or a probe reached it), every database tap
/// reads, no homeserver's feed is stalled (all its transactions failed or refused for
/// `stall_after`) and none brings only other servers' events (a `server_name` that is not
/// Synapse's); 503 otherwise, with why.
async fn health(State(state): State<Arc<AppserviceState>>) -> impl IntoResponse {
    let broker = state.metrics.broker_state();
    let broker_up = broker == crate::metrics::BrokerState::Up;
    let taps = state.metrics.taps();
    let taps_up = taps.values().all(|tap| tap.reachable);
    let now_ms = chrono::Utc::now().timestamp_millis();
    let stall_ms = i64::try_from(state.stall_after.as_millis()).unwrap_or(i64::MAX);
    let feeds = state.metrics.feeds();
    let stalled: Vec<&String> = feeds
        .iter()
        .filter(|(_, feed)| {
            feed.failing_since_ms
                .is_some_and(|since| now_ms - since >= stall_ms)
        })
        .map(|(server, _)| server)
        .collect();
    let remote_ms = i64::try_from(state.remote_only_after.as_millis()).unwrap_or(i64::MAX);
    let suspect: Vec<&String> = feeds
        .iter()
        .filter(|(_, feed)| {
            feed.remote_only_events >= REMOTE_ONLY_EVENTS
                && feed
                    .remote_only_since_ms
                    .is_some_and(|since| now_ms - since >= remote_ms)
        })
        .map(|(server, _)| server)
        .collect();
    let status = if broker_up && taps_up && stalled.is_empty() && suspect.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let synapse_db: serde_json::Map<String, Value> = taps
        .into_iter()
        .map(|(server, tap)| {
            (
                server,
                json!({
                    "reachable": tap.reachable,
                    "consecutive_errors": tap.consecutive_errors,
                    "last_error": tap.last_error,
                }),
            )
        })
        .collect();
    let transactions: serde_json::Map<String, Value> = feeds
        .iter()
        .map(|(server, feed)| {
            (
                server.clone(),
                json!({
                    "stalled": stalled.contains(&server),
                    "failing_for_s": feed.failing_since_ms.map(|since| (now_ms - since) / 1000),
                    "last_problem": feed.last_problem,
                    "only_remote_senders_for_s": feed.remote_only_since_ms.map(|since| (now_ms - since) / 1000),
                    "server_name_suspect": suspect.contains(&server),
                }),
            )
        })
        .collect();
    (
        status,
        axum::Json(json!({
            "status": if status == StatusCode::OK { "ok" } else { "failing" },
            "broker": broker.label(),
            "synapse_db": synapse_db,
            "transactions": transactions,
        })),
    )
}

/// Binds now (a bad address fails at start) and serves until `shutdown` resolves, within
/// `limits` (`listener.rs`).
pub async fn serve(
    address: SocketAddr,
    state: Arc<AppserviceState>,
    limits: crate::listener::ListenerLimits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<std::io::Result<()>>)> {
    let listener = tokio::net::TcpListener::bind(address).await?;
    let bound = listener.local_addr()?;
    let app = router(state);
    let task = tokio::spawn(crate::listener::serve(listener, app, limits, shutdown));
    Ok((bound, task))
}
