//! The WebSocket side: the upgrade (`$connect` decides it), then one connection's life — limits,
//! throttling, route selection, invocations in order, the idle and lifetime timers, the close
//! codes — and `$disconnect` at the end.
//!
//! One task per connection, started at the upgrade: it reads and decodes the client's frames
//! (`wire::FrameReader`), runs the integrations in order, flushes what posts could not write at
//! once, and closes. Posts to the connection write its socket directly (`registry`); the task is
//! woken only when the socket was full.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lambda_events::apigw::{ApiGatewayCustomAuthorizerRequestTypeRequest, ApiGatewayProxyResponse};
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use dynamowave_apigw::IntegrationError;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::auth::AuthDecision;
use crate::events::{ConnectionContext, aws_id, connect_event, disconnect_event, message_event, select_route};
use crate::registry::{Flushed, LiveConnection, close};
use crate::throttle::{Throttled, admit_connection};
use crate::wire::{self, FrameReader, Incoming};
use crate::{Shared, gateway_error};

/// Query parameters, multi-valued as API Gateway passes them.
fn parse_query(uri: &Uri) -> HashMap<String, Vec<String>> {
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    if let Some(q) = uri.query() {
        for pair in q.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let decode =
                |s: &str| percent_encoding::percent_decode_str(&s.replace('+', " ")).decode_utf8_lossy().into_owned();
            out.entry(decode(k)).or_default().push(decode(v));
        }
    }
    out
}

/// The client's `Sec-WebSocket-Key` if the request is a valid WebSocket upgrade (RFC 6455 §4.2.1):
/// `GET`, `Connection: upgrade`, `Upgrade: websocket`, version 13.
pub(crate) fn websocket_key(method: &Method, headers: &HeaderMap) -> Option<HeaderValue> {
    let has_token = |name: header::HeaderName, token: &str| {
        headers
            .get_all(name)
            .iter()
            .any(|v| v.to_str().is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token))))
    };
    let version_13 = headers.get(header::SEC_WEBSOCKET_VERSION).is_some_and(|v| v.as_bytes() == b"13");
    if method != Method::GET || !has_token(header::CONNECTION, "upgrade") || !has_token(header::UPGRADE, "websocket") {
        return None;
    }
    if !version_13 {
        return None;
    }
    headers.get(header::SEC_WEBSOCKET_KEY).cloned()
}

/// `GET /{stage}` with an upgrade: runs the authorizer and `$connect`, then upgrades or refuses.
pub(crate) async fn upgrade(
    shared: Arc<Shared>,
    key: HeaderValue,
    on_upgrade: OnUpgrade,
    peer: SocketAddr,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    if let Some(refused) = refuse_foreign_origin(&shared, &headers) {
        return refused;
    }
    if !shared.throttles.admit_connect() {
        metrics::counter!("dynamowave_rejected_total", "reason" => "connect_rate").increment(1);
        return gateway_error(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests");
    }
    let max_per_ip = shared.settings.limits.max_connections_per_ip;
    if max_per_ip > 0 && shared.registry.count_from(peer.ip()) >= max_per_ip {
        metrics::counter!("dynamowave_rejected_total", "reason" => "per_ip_limit").increment(1);
        return gateway_error(StatusCode::TOO_MANY_REQUESTS, "Too many connections from this address");
    }
    let connection_id = aws_id();
    let span = info_span!("connection", connection_id = %connection_id);
    async move {
        let ctx = ConnectionContext {
            connection_id: connection_id.clone(),
            connected_at: chrono::Utc::now().timestamp_millis(),
            source_ip: peer.ip(),
            user_agent: headers.get(http::header::USER_AGENT).and_then(|v| v.to_str().ok()).map(str::to_string),
            domain_name: shared.domain_name(headers.get(http::header::HOST).and_then(|v| v.to_str().ok())),
            authorizer: None,
        };
        let query = parse_query(&uri);
        let ctx = match authorize(&shared, ctx, &headers, &query).await {
            Ok(ctx) => ctx,
            Err(response) => return response,
        };

        // The connection exists (and queues what is posted to it) from before `$connect`
        // runs, so that a broadcast racing the upgrade cannot find it gone and delete its entry.
        let limits = &shared.settings.limits;
        let live = LiveConnection::new(ctx.clone(), limits.send_queue_frames, limits.send_queue_bytes);
        shared.registry.insert(live.clone());
        if shared.shutdown.is_cancelled() {
            // Registered after the shutdown sweep: close it like the others.
            live.close(close::GOING_AWAY, "Going away");
        }

        let event = connect_event(&ctx, &shared.settings.stage, &shared.settings.api_id, &headers, &query);
        let answer = invoke(&shared, "$connect", event).await;
        let response = match answer {
            Ok(r) if (200..300).contains(&r.status_code) => r,
            Ok(r) => {
                shared.registry.remove(&ctx.connection_id);
                metrics::counter!("dynamowave_rejected_total", "reason" => "connect_route").increment(1);
                info!(status = r.status_code, "$connect refused the connection");
                return refused(r);
            }
            Err(e) => {
                shared.registry.remove(&ctx.connection_id);
                warn!(error = %e, "$connect failed");
                let status = if matches!(e, InvokeError::Throttled(_)) {
                    StatusCode::TOO_MANY_REQUESTS
                } else {
                    StatusCode::INTERNAL_SERVER_ERROR
                };
                return gateway_error(
                    status,
                    if status == StatusCode::TOO_MANY_REQUESTS { "Too Many Requests" } else { "Internal server error" },
                );
            }
        };
        let json_framing = response
            .headers
            .get(http::header::SEC_WEBSOCKET_PROTOCOL)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|p| p == dynamowave_core::SUBPROTOCOL);
        // No span for the connection's whole life: a live span costs memory in the subscriber
        // for as long as it lives (~300 bytes per idle connection). Each phase that logs opens
        // its own span with the connection id instead.
        shared.tracker.spawn(run(shared.clone(), on_upgrade, live, json_framing));
        let mut upgraded = Response::new(Body::empty());
        *upgraded.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let h = upgraded.headers_mut();
        h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        if let Ok(accept) = HeaderValue::from_str(&derive_accept_key(key.as_bytes())) {
            h.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
        }
        // Headers the `$connect` integration returned go into the handshake
        // (e.g. `Sec-WebSocket-Protocol`), as on API Gateway.
        for (name, value) in response.headers.iter() {
            h.insert(name.clone(), value.clone());
        }
        metrics::counter!("dynamowave_connects_total").increment(1);
        upgraded
    }
    .instrument(span)
    .await
}

/// A page on another site must not open a WebSocket here with the user's browser (it could then
/// read rooms, history and presence): a request with an `Origin` is let through only from the
/// gateway's own pages (`http(s)://HOST` with a `Host` that is ours: a DNS-rebinding page has
/// its own name in both) or a listed origin. Requests without `Origin` are not from a browser.
fn refuse_foreign_origin(shared: &Shared, headers: &HeaderMap) -> Option<Response> {
    let origins = &shared.settings.origins;
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).filter(|h| origins.domain_names.is_ours(h));
    // An `Origin` that is not text cannot be anyone's own or listed one (only `*` lets it in).
    let origin = headers.get(header::ORIGIN).map(|v| v.to_str().unwrap_or(""));
    match dynamowave_auth::check_origin(origin, host, &origins.allowed_origins) {
        Ok(_) => None,
        Err(origin) => {
            metrics::counter!("dynamowave_rejected_total", "reason" => "origin").increment(1);
            info!(
                origin,
                host = headers.get(header::HOST).and_then(|v| v.to_str().ok()),
                "upgrade from a foreign origin refused"
            );
            Some(gateway_error(StatusCode::FORBIDDEN, "Forbidden"))
        }
    }
}

/// The authorizer, if one is configured: `Err` is the HTTP answer that refuses the upgrade.
async fn authorize(
    shared: &Arc<Shared>,
    mut ctx: ConnectionContext,
    headers: &HeaderMap,
    query: &HashMap<String, Vec<String>>,
) -> Result<ConnectionContext, Response> {
    let Some(authorizer) = &shared.authorizer else { return Ok(ctx) };
    let mut req = ApiGatewayCustomAuthorizerRequestTypeRequest::default();
    req.type_ = Some("REQUEST".into());
    req.method_arn = Some(format!(
        "arn:aws:execute-api:local:000000000000:{}/{}/$connect",
        shared.settings.api_id, shared.settings.stage
    ));
    req.headers = headers.clone();
    req.multi_value_headers = headers.clone();
    let single: HashMap<String, String> =
        query.iter().filter_map(|(k, v)| v.last().map(|l| (k.clone(), l.clone()))).collect();
    req.query_string_parameters = single.into();
    req.multi_value_query_string_parameters = query.clone().into();
    req.request_context.stage = Some(shared.settings.stage.clone());
    req.request_context.apiid = Some(shared.settings.api_id.clone());
    req.request_context.request_id = Some(aws_id());
    let mut identity = aws_lambda_events::apigw::ApiGatewayCustomAuthorizerRequestTypeRequestIdentity::default();
    identity.source_ip = Some(ctx.source_ip.to_string());
    req.request_context.identity = Some(identity);
    match authorizer.authorize(req).await {
        AuthDecision::Allow { context } => {
            ctx.authorizer = (!context.is_empty()).then(|| Box::new(context));
            Ok(ctx)
        }
        AuthDecision::Unauthorized(why) => {
            metrics::counter!("dynamowave_rejected_total", "reason" => "unauthorized").increment(1);
            info!(why, "authorizer: unauthorized");
            Err(gateway_error(StatusCode::UNAUTHORIZED, "Unauthorized"))
        }
        AuthDecision::Forbidden(why) => {
            metrics::counter!("dynamowave_rejected_total", "reason" => "forbidden").increment(1);
            info!(why, "authorizer: forbidden");
            Err(gateway_error(StatusCode::FORBIDDEN, "Forbidden"))
        }
        AuthDecision::Failed(why) => {
            warn!(why, "authorizer failed");
            Err(gateway_error(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error"))
        }
    }
}

/// A non-2xx `$connect` answer becomes the HTTP response to the upgrade request.
fn refused(r: ApiGatewayProxyResponse) -> Response {
    let status = u16::try_from(r.status_code).ok().and_then(|s| StatusCode::from_u16(s).ok());
    let status = status.unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = match r.body {
        Some(aws_lambda_events::encodings::Body::Text(t)) => Body::from(t),
        Some(aws_lambda_events::encodings::Body::Binary(b)) => Body::from(b),
        _ => Body::empty(),
    };
    let mut resp = (status, body).into_response();
    for (k, v) in r.headers.iter() {
        resp.headers_mut().insert(k.clone(), v.clone());
    }
    resp
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum InvokeError {
    #[error("no integration for route {0}")]
    NoRoute(String),
    #[error("throttled: {0}")]
    Throttled(&'static str),
    #[error(transparent)]
    Integration(#[from] IntegrationError),
}

/// Invokes the route's integration within the route's reserved concurrency.
pub(crate) async fn invoke(
    shared: &Shared,
    route_key: &str,
    event: aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest,
) -> Result<ApiGatewayProxyResponse, InvokeError> {
    let integration = shared.integration_for(route_key).ok_or_else(|| InvokeError::NoRoute(route_key.to_string()))?;
    let semaphore = shared.semaphore_for(route_key);
    let permit = match tokio::time::timeout(shared.settings.concurrency.queue_timeout, semaphore.acquire_owned()).await
    {
        Ok(Ok(p)) => p,
        _ => {
            metrics::counter!("dynamowave_throttled_total", "kind" => "concurrency", "route" => route_key.to_string())
                .increment(1);
            return Err(InvokeError::Throttled("reserved concurrency exhausted"));
        }
    };
    let started = Instant::now();
    let result = integration.invoke(event).await;
    drop(permit);
    metrics::histogram!("dynamowave_handler_seconds", "route" => route_key.to_string())
        .record(started.elapsed().as_secs_f64());
    if let Err(IntegrationError::Throttled) = &result {
        return Err(InvokeError::Throttled("function throttled"));
    }
    Ok(result?)
}

/// The frame API Gateway sends when something went wrong on a message: exactly AWS's shape
/// under plain framing; under JSON framing the same fields plus `type` and `code`.
fn error_frame(json: bool, code: &str, message: &str, connection_id: &str, request_id: &str) -> String {
    let v = if json {
        serde_json::json!({"type": "error", "code": code, "message": message, "connectionId": connection_id, "requestId": request_id})
    } else {
        serde_json::json!({"message": message, "connectionId": connection_id, "requestId": request_id})
    };
    v.to_string()
}

/// Why the connection ends: the close code and reason for `$disconnect`, and the close frame
/// to send (none when the socket is dead).
struct Ending {
    code: u16,
    reason: String,
    frame: Option<Bytes>,
    /// The client sent its close frame first: once the echo is written, it has nothing more to
    /// send, so the socket is closed without waiting for its FIN.
    by_client: bool,
}

impl Ending {
    /// The server closes: its close frame carries the code and reason.
    fn server(code: u16, reason: impl Into<String>) -> Self {
        let reason = reason.into();
        Self { code, frame: Some(wire::close_frame(code, &reason)), reason, by_client: false }
    }

    /// The socket failed or closed without a close frame: nothing can be sent.
    fn abnormal(detail: impl std::fmt::Display) -> Self {
        Self {
            code: close::ABNORMAL,
            reason: format!("Connection closed abnormally{detail}"),
            frame: None,
            by_client: false,
        }
    }

    /// The client closed: the reply echoes its code (RFC 6455 §5.5.1).
    fn client(frame: Option<(u16, String)>) -> Self {
        match frame {
            Some((code, reason)) => Self {
                code,
                reason,
                frame: Some(wire::encode(wire::opcode::CLOSE, &code.to_be_bytes())),
                by_client: true,
            },
            None => Self {
                code: close::NO_STATUS,
                reason: "Client-side close frame status not set".into(),
                frame: Some(wire::encode(wire::opcode::CLOSE, &[])),
                by_client: true,
            },
        }
    }
}

/// After the upgrade: takes the socket back from hyper (its HTTP buffers are freed), serves the
/// connection, and runs `$disconnect`.
async fn run(shared: Arc<Shared>, on_upgrade: OnUpgrade, live: Arc<LiveConnection>, json: bool) {
    let ctx = &live.ctx;
    // Boxed, as the closing states below: the task then keeps room for the connection's loop
    // only, not also for the upgrade's state.
    let Some(reader) = Box::pin(take_socket(&shared, on_upgrade, &live)).await else { return };
    // The `$connect` handler logs the connection (with its name); this is for tracing the gateway.
    debug!(connection_id = %ctx.connection_id, source_ip = %ctx.source_ip, json, "upgraded");
    let ending = serve(&shared, &live, json, reader).await;
    let span = info_span!("connection", connection_id = %ctx.connection_id);
    debug!(parent: &span, code = ending.code, reason = %ending.reason, "closing");
    shared.registry.remove(&ctx.connection_id);
    // Boxed: the closing and `$disconnect` states (the event alone is ~1 KiB) exist only at
    // the end, instead of enlarging every idle connection's task.
    Box::pin(close_socket(&live, ending.frame.clone(), ending.by_client)).await;
    Box::pin(run_disconnect(&shared, ctx, ending.code, &ending.reason)).instrument(span).await;
}

/// Waits for hyper to hand the upgraded socket over and attaches it to the connection; `None` if
/// the upgrade failed (then `$disconnect` has run).
async fn take_socket(shared: &Arc<Shared>, on_upgrade: OnUpgrade, live: &LiveConnection) -> Option<FrameReader> {
    let ctx = &live.ctx;
    let parts = match on_upgrade.await.map(|u| u.downcast::<TokioIo<TcpStream>>()) {
        Ok(Ok(parts)) => parts,
        failed => {
            let why = match failed {
                Err(e) => e.to_string(),
                _ => "not a TCP connection".to_string(),
            };
            let span = info_span!("connection", connection_id = %ctx.connection_id);
            warn!(parent: &span, error = %why, "upgrade failed after $connect");
            shared.registry.remove(&ctx.connection_id);
            run_disconnect(shared, ctx, close::ABNORMAL, "Upgrade failed").instrument(span).await;
            return None;
        }
    };
    let limits = &shared.settings.limits;
    let reader = FrameReader::new(limits.max_frame_bytes, limits.max_message_bytes, &parts.read_buf);
    // `read_buf` is a view of hyper's 8 KiB read buffer: holding it (even empty) would keep
    // that buffer alive for the connection's whole life.
    drop(parts.read_buf);
    live.attach(parts.io.into_inner());
    Some(reader)
}

/// The connection's loop: frames in, queued frames out, until something ends it. The idle and
/// lifetime limits are the gateway's sweeper's (`crate::sweep`): it closes the connection
/// through `LiveConnection::close` like any other close request.
async fn serve(shared: &Arc<Shared>, live: &Arc<LiveConnection>, json: bool, mut reader: FrameReader) -> Ending {
    let Some(stream) = live.stream() else { return Ending::abnormal(": no socket") };
    let limits = &shared.settings.limits;
    let mut per_connection = shared.throttles.per_connection();
    let mut want_write = false;
    // Bytes hyper read past the handshake are frames already.
    let mut pending_frames = true;
    loop {
        if pending_frames {
            pending_frames = false;
            loop {
                let incoming = match reader.next() {
                    Ok(Some(incoming)) => incoming,
                    Ok(None) => break,
                    Err(violation) => {
                        if violation.code() == close::MESSAGE_TOO_BIG {
                            metrics::counter!("dynamowave_rejected_total", "reason" => "too_big").increment(1);
                        }
                        if violation == wire::Violation::Binary {
                            metrics::counter!("dynamowave_rejected_total", "reason" => "binary").increment(1);
                        }
                        return Ending::server(violation.code(), violation.reason());
                    }
                };
                live.touch();
                match incoming {
                    Incoming::Text(text) => {
                        metrics::counter!("dynamowave_messages_in_total").increment(1);
                        // Boxed: the handler's state exists only while it runs, not in every
                        // idle connection's task.
                        let handling = Box::pin(on_text(shared, live, json, &mut per_connection, &text));
                        if let Err(e) = flush_while(live, stream, &mut want_write, handling).await {
                            return Ending::abnormal(format!(": {e}"));
                        }
                    }
                    Incoming::Ping(payload) => {
                        let _ = live.offer(wire::encode(wire::opcode::PONG, &payload), Duration::ZERO);
                    }
                    Incoming::Pong => {}
                    Incoming::Close(frame) => return Ending::client(frame),
                }
            }
            reader.release_if_idle();
        }
        match std::future::poll_fn(|cx| poll_io(cx, stream, live, &mut want_write, Watch::All)).await {
            Io::Close => {
                let (code, reason) = live.close_request().unwrap_or((close::NORMAL, String::new()));
                return Ending::server(code, reason);
            }
            Io::Write => {
                // Let the tasks that are ready run first (other broadcasts, under load): what they
                // queue for this connection goes out in the same `writev`. Idle, this returns at once.
                tokio::task::yield_now().await;
                // A flooded connection (frames closer than the coalescing window) is written at
                // most once per window, unless a full batch is waiting: many frames per `writev`.
                // Boxed: the timer exists only while holding.
                if let Some(hold) = live.hold_for(limits.coalesce, 16) {
                    Box::pin(tokio::time::sleep(hold)).await;
                }
                if let Err(e) = live.flush() {
                    return Ending::abnormal(format!(": {e}"));
                }
                want_write = live.has_queued();
            }
            Io::Read => match stream.try_read_buf(reader.buffer(limits.read_buffer_bytes)) {
                Ok(0) => return Ending::abnormal(""),
                Ok(_) => pending_frames = true,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => reader.release_if_idle(),
                Err(e) => return Ending::abnormal(format!(": {e}")),
            },
        }
    }
}

/// What woke a connection's task.
enum Io {
    /// The server asked it to close.
    Close,
    /// Queued frames can be written.
    Write,
    /// The client sent something.
    Read,
}

/// What `poll_io` reports.
#[derive(Clone, Copy, PartialEq)]
enum Watch {
    /// Close requests, writes and reads (the connection's loop).
    All,
    /// Writes only (while a handler runs: its message is handled to the end first).
    Writes,
}

/// Polls a connection's flags and socket directly, not through futures: an idle connection's
/// task then stores no waiter of its own, only its registration in the reactor and the
/// connection's one waker. A readiness error counts as ready: the read or write that follows
/// reports it.
fn poll_io(
    cx: &mut std::task::Context<'_>,
    stream: &TcpStream,
    live: &LiveConnection,
    want_write: &mut bool,
    watch: Watch,
) -> std::task::Poll<Io> {
    live.register(cx);
    if watch == Watch::All && live.is_closing() {
        return std::task::Poll::Ready(Io::Close);
    }
    if live.take_flush_request() {
        *want_write = true;
    }
    if *want_write && stream.poll_write_ready(cx).is_ready() {
        return std::task::Poll::Ready(Io::Write);
    }
    if watch == Watch::All && stream.poll_read_ready(cx).is_ready() {
        return std::task::Poll::Ready(Io::Read);
    }
    std::task::Poll::Pending
}

/// Runs `work` (a handler) while still flushing what posts queue for this connection, so a slow
/// integration never holds its client's frames back.
/// (A poll function rather than `select!`, which would keep a slot for each branch's future in
/// every connection's task.)
async fn flush_while(
    live: &LiveConnection,
    stream: &TcpStream,
    want_write: &mut bool,
    mut work: std::pin::Pin<Box<impl std::future::Future<Output = ()>>>,
) -> std::io::Result<()> {
    std::future::poll_fn(|cx| {
        loop {
            if work.as_mut().poll(cx).is_ready() {
                return std::task::Poll::Ready(Ok(()));
            }
            if poll_io(cx, stream, live, want_write, Watch::Writes).is_pending() {
                return std::task::Poll::Pending;
            }
            if let Err(e) = live.flush() {
                return std::task::Poll::Ready(Err(e));
            }
            *want_write = live.has_queued();
        }
    })
    .await
}

/// Sends what is queued and the close frame (up to 5 s), then closes TCP from the server's side
/// first (RFC 6455 §7.1.1). When the server started the close, it then reads until the client
/// closes too (up to 2 s), so that bytes the client still sends do not turn the close into a
/// reset that could destroy the close frame.
async fn close_socket(live: &LiveConnection, last: Option<Bytes>, by_client: bool) {
    let alive = last.is_some();
    live.seal(last);
    let Some(stream) = live.stream() else { return };
    if !alive {
        return;
    }
    let flushed = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        loop {
            match live.flush() {
                Ok(Flushed::Done) => return true,
                Ok(Flushed::Blocked) => {
                    if stream.writable().await.is_err() {
                        return false;
                    }
                }
                Err(_) => return false,
            }
        }
    })
    .await;
    if !matches!(flushed, Ok(true)) {
        return;
    }
    if by_client {
        // After a client's close frame nothing more is due from it, so its FIN need not be
        // awaited: the socket closes when the connection is dropped (the server closes the TCP
        // connection first, RFC 6455 §7.1.1), which spares a wake-up and two system calls per
        // connection under churn. Bytes it sent after its close frame are discarded first (one
        // non-blocking read, past tokio's cached readiness): closing with unread bytes would
        // send a reset, which can destroy the close reply before the client reads it.
        let mut scratch = [std::mem::MaybeUninit::<u8>::uninit(); 512];
        let socket = socket2::SockRef::from(stream);
        while matches!(socket.recv(&mut scratch), Ok(n) if n > 0) {}
        return;
    }
    let _ = socket2::SockRef::from(stream).shutdown(std::net::Shutdown::Write);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), async {
        let mut scratch = vec![0u8; 512];
        loop {
            if stream.readable().await.is_err() {
                return;
            }
            match stream.try_read(&mut scratch) {
                Ok(0) => return,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => return,
            }
        }
    })
    .await;
}

async fn on_text(
    shared: &Arc<Shared>,
    live: &Arc<LiveConnection>,
    json: bool,
    per_connection: &mut Option<crate::throttle::Limiter>,
    body: &str,
) {
    let ctx = &live.ctx;
    let selected = select_route(&shared.settings.route_selection_expression, body);
    let route_key = match selected {
        Some(k) if shared.has_route(&k) => k,
        _ => "$default".to_string(),
    };
    let event = message_event(ctx, &shared.settings.stage, &shared.settings.api_id, &route_key, body.to_string());
    let request_id = event.request_context.request_id.clone().unwrap_or_default();
    let span =
        info_span!("message", connection_id = %ctx.connection_id, route_key = %route_key, request_id = %request_id);
    async {
        let throttled = admit_connection(per_connection).and_then(|()| shared.throttles.admit_message(&route_key));
        if let Err(t) = throttled {
            metrics::counter!("dynamowave_throttled_total", "kind" => t.label(), "route" => route_key.clone())
                .increment(1);
            let message = match t {
                Throttled::Connection => "Too Many Requests: this connection's message rate is exceeded",
                _ => "Too Many Requests",
            };
            let _ = live.send_text(&error_frame(json, "throttled", message, &ctx.connection_id, &request_id));
            return;
        }
        match invoke(shared, &route_key, event).await {
            Ok(_) => {}
            Err(InvokeError::Throttled(why)) => {
                debug!(why, "throttled");
                let _ = live.send_text(&error_frame(
                    json,
                    "throttled",
                    "Too Many Requests",
                    &ctx.connection_id,
                    &request_id,
                ));
            }
            Err(e) => {
                warn!(error = %e, "integration failed");
                metrics::counter!("dynamowave_handler_errors_total", "route" => route_key.clone()).increment(1);
                let _ = live.send_text(&error_frame(
                    json,
                    "internal_error",
                    "Internal server error",
                    &ctx.connection_id,
                    &request_id,
                ));
            }
        }
    }
    .instrument(span)
    .await
}

/// `$disconnect`, best-effort as on API Gateway, but always attempted: it waits for a slot of
/// its own reserved concurrency rather than being throttled.
pub(crate) async fn run_disconnect(shared: &Shared, ctx: &ConnectionContext, code: u16, reason: &str) {
    let event = disconnect_event(ctx, &shared.settings.stage, &shared.settings.api_id, code, reason);
    let Some(integration) = shared.integration_for("$disconnect") else { return };
    let semaphore = shared.semaphore_for("$disconnect");
    let _permit = semaphore.acquire_owned().await;
    let started = Instant::now();
    if let Err(e) = integration.invoke(event).await {
        warn!(error = %e, "$disconnect failed");
    }
    metrics::histogram!("dynamowave_handler_seconds", "route" => "$disconnect").record(started.elapsed().as_secs_f64());
    metrics::counter!("dynamowave_disconnects_total").increment(1);
    // debug: the `$disconnect` handler logs the disconnection (with its status) at info.
    debug!(code, reason, "disconnected");
}
