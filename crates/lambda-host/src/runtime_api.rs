//! The Lambda Runtime API (`2018-06-01`), served to one execution environment.
//!
//! <https://docs.aws.amazon.com/lambda/latest/dg/runtimes-api.html>: the process long-polls
//! `GET /runtime/invocation/next`, then posts the result to `.../{id}/response` or
//! `.../{id}/error`; a process that cannot start posts `/runtime/init/error`.
//!
//! Only the environment's own process is answered (see `peer`): any other local process gets
//! 403 on every route, so it can neither take an event nor answer one, nor fail the init.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::connect_info::{ConnectInfo, Connected};
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::IncomingStream;
use parking_lot::Mutex;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};

/// How long a request waits for the host to learn the process id it was just spawned with.
const PID_WAIT: Duration = Duration::from_secs(2);

/// An event on its way to a process.
pub(crate) struct Invocation {
    pub(crate) request_id: String,
    pub(crate) payload: Bytes,
    pub(crate) timeout: Duration,
    /// Fired when the process takes the event: from then on the function timeout runs.
    pub(crate) picked: oneshot::Sender<()>,
    pub(crate) reply: oneshot::Sender<InvocationResult>,
}

/// What the process answered.
#[derive(Debug)]
pub(crate) enum InvocationResult {
    Response(Bytes),
    Error { error_type: String, message: String },
}

/// State shared between one environment's Runtime API server and the host.
pub(crate) struct ApiState {
    pub(crate) function: Arc<str>,
    pub(crate) function_arn: String,
    pub(crate) spawned_at: Instant,
    /// Process start to first `/next`: the cold start.
    pub(crate) init_duration: OnceLock<Duration>,
    pub(crate) on_init: Box<dyn Fn(Duration) + Send + Sync>,
    pub(crate) init_error: Mutex<Option<String>>,
    /// Asks the host to stop this process (after an init error).
    pub(crate) stop: Box<dyn Fn() + Send + Sync>,
    // A tokio mutex: `/next` holds it while it waits for an event.
    pub(crate) queue: tokio::sync::Mutex<mpsc::Receiver<Invocation>>,
    pub(crate) in_flight: Mutex<HashMap<String, oneshot::Sender<InvocationResult>>>,
    /// The listener's own address: the remote end of the process's sockets.
    pub(crate) listen: SocketAddr,
    /// The process's id, once spawned: the only process (with its descendants) answered.
    pub(crate) pid: watch::Receiver<Option<u32>>,
}

/// One connection's peer, with the verdict on it computed at its first request and shared by
/// the connection's later ones (`lambda_runtime` keeps its connection open).
#[derive(Clone)]
pub(crate) struct Peer {
    addr: SocketAddr,
    verdict: Arc<tokio::sync::OnceCell<bool>>,
}

impl Connected<IncomingStream<'_, TcpListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, TcpListener>) -> Self {
        Peer { addr: *stream.remote_addr(), verdict: Arc::default() }
    }
}

async fn only_the_environment(
    State(state): State<Arc<ApiState>>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    request: Request,
    next: Next,
) -> Response {
    let allowed = *peer
        .verdict
        .get_or_init(|| async {
            let mut pid = state.pid.clone();
            let pid = match tokio::time::timeout(PID_WAIT, pid.wait_for(Option::is_some)).await {
                Ok(Ok(pid)) => *pid,
                _ => None,
            };
            let Some(pid) = pid else { return false };
            let (addr, listen) = (peer.addr, state.listen);
            let verdict = tokio::task::spawn_blocking(move || crate::peer::belongs_to(pid, addr, listen)).await;
            match verdict {
                Ok(Ok(yes)) => yes,
                Ok(Err(e)) => {
                    tracing::warn!(function = %state.function, error = %e, "cannot tell who is calling the Runtime API");
                    false
                }
                Err(e) => {
                    tracing::warn!(function = %state.function, error = %e, "peer check failed");
                    false
                }
            }
        })
        .await;
    if !allowed {
        tracing::warn!(function = %state.function, peer = %peer.addr, path = %request.uri().path(),
            "Runtime API request from a process other than the environment's: refused");
        return error_body(
            StatusCode::FORBIDDEN,
            "AccessDeniedException",
            "this Runtime API serves only its execution environment's process",
        );
    }
    next.run(request).await
}

pub(crate) fn router(state: Arc<ApiState>, max_payload_bytes: usize) -> Router {
    Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route("/2018-06-01/runtime/invocation/{id}/response", post(response))
        .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
        .route("/2018-06-01/runtime/init/error", post(init_error))
        .layer(DefaultBodyLimit::max(max_payload_bytes))
        .layer(middleware::from_fn_with_state(state.clone(), only_the_environment))
        .with_state(state)
}

fn error_body(status: StatusCode, error_type: &str, message: &str) -> Response {
    let body = serde_json::json!({"errorType": error_type, "errorMessage": message}).to_string();
    (status, [("content-type", "application/json")], body).into_response()
}

fn accepted() -> Response {
    (StatusCode::ACCEPTED, [("content-type", "application/json")], r#"{"status":"OK"}"#).into_response()
}

async fn next(State(state): State<Arc<ApiState>>) -> Response {
    if state.init_duration.get().is_none() {
        let took = state.spawned_at.elapsed();
        if state.init_duration.set(took).is_ok() {
            tracing::debug!(function = %state.function, init_ms = took.as_millis() as u64, "environment ready");
            (state.on_init)(took);
        }
    }
    let invocation = {
        let mut queue = state.queue.lock().await;
        queue.recv().await
    };
    let Some(invocation) = invocation else {
        return error_body(StatusCode::INTERNAL_SERVER_ERROR, "ServiceException", "the host is shutting down");
    };
    let deadline_ms = SystemTime::now()
        .checked_add(invocation.timeout)
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis());
    let trace = uuid::Uuid::new_v4().simple().to_string();
    let trace_id = format!(
        "Root=1-{:08x}-{};Parent={};Sampled=0",
        SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
        &trace[..24],
        &trace[16..]
    );
    let mut headers = HeaderMap::new();
    let mut put = |name: &'static str, value: &str| {
        // Every value here is built from ASCII we control; skip rather than fail if not.
        if let Ok(v) = HeaderValue::from_str(value) {
            headers.insert(name, v);
        }
    };
    put("content-type", "application/json");
    put("lambda-runtime-aws-request-id", &invocation.request_id);
    put("lambda-runtime-deadline-ms", &deadline_ms.to_string());
    put("lambda-runtime-invoked-function-arn", &state.function_arn);
    put("lambda-runtime-trace-id", &trace_id);
    state.in_flight.lock().insert(invocation.request_id.clone(), invocation.reply);
    // The invoker may have given up already; the event is delivered anyway, as Lambda would.
    let _ = invocation.picked.send(());
    (StatusCode::OK, headers, invocation.payload).into_response()
}

async fn response(State(state): State<Arc<ApiState>>, Path(id): Path<String>, body: Bytes) -> Response {
    let Some(reply) = state.in_flight.lock().remove(&id) else {
        return error_body(StatusCode::BAD_REQUEST, "InvalidRequestID", "unknown or already answered request id");
    };
    if reply.send(InvocationResult::Response(body)).is_err() {
        tracing::debug!(function = %state.function, request_id = %id, "response arrived after the invoker gave up");
    }
    accepted()
}

#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ErrorRequest {
    #[serde(default)]
    error_message: String,
    #[serde(default)]
    error_type: String,
}

fn read_error(headers: &HeaderMap, body: &[u8]) -> (String, String) {
    let parsed: ErrorRequest = serde_json::from_slice(body).unwrap_or_default();
    let header_type = headers.get("lambda-runtime-function-error-type").and_then(|v| v.to_str().ok());
    let error_type = match (parsed.error_type.is_empty(), header_type) {
        (false, _) => parsed.error_type,
        (true, Some(t)) => t.to_owned(),
        (true, None) => "Unhandled".to_owned(),
    };
    let message =
        if parsed.error_message.is_empty() { String::from_utf8_lossy(body).into_owned() } else { parsed.error_message };
    (error_type, message)
}

async fn error(
    State(state): State<Arc<ApiState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(reply) = state.in_flight.lock().remove(&id) else {
        return error_body(StatusCode::BAD_REQUEST, "InvalidRequestID", "unknown or already answered request id");
    };
    let (error_type, message) = read_error(&headers, &body);
    tracing::warn!(function = %state.function, request_id = %id, %error_type, %message, "function error");
    let _ = reply.send(InvocationResult::Error { error_type, message });
    accepted()
}

async fn init_error(State(state): State<Arc<ApiState>>, headers: HeaderMap, body: Bytes) -> Response {
    let (error_type, message) = read_error(&headers, &body);
    tracing::error!(function = %state.function, %error_type, %message, "init error");
    *state.init_error.lock() = Some(format!("{error_type}: {message}"));
    // Lambda discards an environment whose init failed.
    (state.stop)();
    accepted()
}
