//! The WebSocket side: the upgrade (`$connect` decides it), then one connection's life — limits,
//! throttling, route selection, invocations in order, the idle and lifetime timers, the close
//! codes — and `$disconnect` at the end.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use aws_lambda_events::apigw::{ApiGatewayCustomAuthorizerRequestTypeRequest, ApiGatewayProxyResponse};
use axum::body::Body;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use dynamowave_core::integration::IntegrationError;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::auth::AuthDecision;
use crate::events::{ConnectionContext, aws_id, connect_event, disconnect_event, message_event, select_route};
use crate::registry::{LiveConnection, Outbound, close};
use crate::throttle::{Throttled, admit_connection};
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

/// `GET /{stage}` with an upgrade: runs the authorizer and `$connect`, then upgrades or refuses.
pub(crate) async fn upgrade(
    shared: Arc<Shared>,
    ws: WebSocketUpgrade,
    peer: SocketAddr,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    if !shared.throttles.admit_connect() {
        metrics::counter!("dynamowave_rejected_total", "reason" => "connect_rate").increment(1);
        return gateway_error(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests");
    }
    let max_per_ip = shared.settings.limits.max_connections_per_ip;
    if max_per_ip > 0 && shared.registry.count_from(&peer.ip().to_string()) >= max_per_ip {
        metrics::counter!("dynamowave_rejected_total", "reason" => "per_ip_limit").increment(1);
        return gateway_error(StatusCode::TOO_MANY_REQUESTS, "Too many connections from this address");
    }
    let connection_id = aws_id();
    let span = info_span!("connection", connection_id = %connection_id);
    async move {
        let ctx = ConnectionContext {
            connection_id: connection_id.clone(),
            connected_at: chrono::Utc::now().timestamp_millis(),
            source_ip: peer.ip().to_string(),
            user_agent: headers.get(http::header::USER_AGENT).and_then(|v| v.to_str().ok()).map(str::to_string),
            domain_name: headers
                .get(http::header::HOST)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
                .unwrap_or_else(|| shared.local_addr.to_string()),
            authorizer: HashMap::new(),
        };
        let query = parse_query(&uri);
        let ctx = match authorize(&shared, ctx, &headers, &query).await {
            Ok(ctx) => ctx,
            Err(response) => return response,
        };

        // The connection exists (and queues what is posted to it) from before `$connect`
        // runs, so that a broadcast racing the upgrade cannot find it gone and delete its entry.
        let (live, rx) = LiveConnection::new(
            ctx.connection_id.clone(),
            ctx.connected_at,
            ctx.source_ip.clone(),
            ctx.user_agent.clone(),
            shared.settings.limits.send_queue_frames,
        );
        shared.registry.insert(live.clone());

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
        let limits = &shared.settings.limits;
        let ws = ws
            .max_frame_size(limits.max_frame_bytes)
            .max_message_size(limits.max_message_bytes)
            .read_buffer_size(limits.read_buffer_bytes)
            .write_buffer_size(limits.write_buffer_bytes);
        let failed_shared = shared.clone();
        let failed_ctx = ctx.clone();
        let run_shared = shared.clone();
        let tracker = shared.tracker.clone();
        let span = tracing::Span::current();
        let mut upgraded = ws
            .on_failed_upgrade(move |e| {
                warn!(connection_id = %failed_ctx.connection_id, error = %e, "upgrade failed after $connect");
                failed_shared.registry.remove(&failed_ctx.connection_id);
                let shared = failed_shared.clone();
                failed_shared.tracker.spawn(async move {
                    run_disconnect(&shared, &failed_ctx, close::ABNORMAL, "Upgrade failed").await;
                });
            })
            .on_upgrade(move |socket| {
                tracker.track_future(run(run_shared, socket, live, rx, ctx, json_framing).instrument(span))
            });
        // Headers the `$connect` integration returned go into the handshake
        // (e.g. `Sec-WebSocket-Protocol`), as on API Gateway.
        for (name, value) in response.headers.iter() {
            upgraded.headers_mut().insert(name.clone(), value.clone());
        }
        metrics::counter!("dynamowave_connects_total").increment(1);
        upgraded
    }
    .instrument(span)
    .await
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
    identity.source_ip = Some(ctx.source_ip.clone());
    req.request_context.identity = Some(identity);
    match authorizer.authorize(req).await {
        AuthDecision::Allow { context } => {
            ctx.authorizer = context;
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
fn error_frame(json: bool, code: &str, message: &str, connection_id: &str, request_id: &str) -> Outbound {
    let v = if json {
        serde_json::json!({"type": "error", "code": code, "message": message, "connectionId": connection_id, "requestId": request_id})
    } else {
        serde_json::json!({"message": message, "connectionId": connection_id, "requestId": request_id})
    };
    Outbound::Text(v.to_string().into())
}

/// Why the reading side stopped: the close code and reason for the client and `$disconnect`.
struct Ending {
    code: u16,
    reason: String,
    /// Whether the server must send a close frame (not when the client closed first or the
    /// socket is dead).
    send_close: bool,
}

async fn run(
    shared: Arc<Shared>,
    socket: WebSocket,
    live: Arc<LiveConnection>,
    rx: mpsc::Receiver<Outbound>,
    ctx: ConnectionContext,
    json: bool,
) {
    info!(source_ip = %ctx.source_ip, json, "connected");
    let (sink, mut stream) = socket.split();
    let (ending_tx, ending_rx) = tokio::sync::oneshot::channel::<Ending>();
    let writer = tokio::spawn(write_loop(sink, rx, ending_rx, live.clone()).in_current_span());

    let limits = shared.settings.limits.clone();
    let lifetime = tokio::time::sleep(limits.max_connection_duration);
    tokio::pin!(lifetime);
    let idle = tokio::time::sleep(limits.idle_timeout);
    tokio::pin!(idle);
    let mut per_connection = shared.throttles.per_connection();

    let ending = loop {
        tokio::select! {
            biased;
            _ = shared.shutdown.cancelled() => break Ending { code: close::GOING_AWAY, reason: "Going away".into(), send_close: true },
            _ = live.closing.cancelled() => {
                let (code, reason) = live.close_request().unwrap_or((close::NORMAL, String::new()));
                break Ending { code, reason, send_close: true };
            }
            _ = &mut lifetime => break Ending { code: close::GOING_AWAY, reason: "Going away: connection duration limit".into(), send_close: true },
            _ = &mut idle => break Ending { code: close::GOING_AWAY, reason: "Going away: idle timeout".into(), send_close: true },
            frame = stream.next() => {
                let Some(frame) = frame else {
                    break Ending { code: close::ABNORMAL, reason: "Connection closed abnormally".into(), send_close: false };
                };
                idle.as_mut().reset(tokio::time::Instant::now() + limits.idle_timeout);
                live.touch();
                match frame {
                    Ok(Message::Text(text)) => {
                        metrics::counter!("dynamowave_messages_in_total").increment(1);
                        on_text(&shared, &live, &ctx, json, &mut per_connection, text.as_str()).await;
                    }
                    Ok(Message::Binary(_)) => {
                        metrics::counter!("dynamowave_rejected_total", "reason" => "binary").increment(1);
                        break Ending { code: close::UNSUPPORTED_DATA, reason: "Binary frames are not supported".into(), send_close: true };
                    }
                    Ok(Message::Ping(_)) | Ok(Message::Pong(_)) => {}
                    Ok(Message::Close(frame)) => {
                        let (code, reason) = match frame {
                            Some(f) => (f.code, f.reason.to_string()),
                            None => (close::NO_STATUS, "Client-side close frame status not set".into()),
                        };
                        break Ending { code, reason, send_close: false };
                    }
                    Err(e) => break ending_for_error(e),
                }
            }
        }
    };
    debug!(code = ending.code, reason = %ending.reason, "closing");
    shared.registry.remove(&ctx.connection_id);
    let (code, reason) = (ending.code, ending.reason.clone());
    let _ = ending_tx.send(ending);
    // The writer sends the close frame (or flushes the close reply) and ends.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), writer).await;
    drop(stream);
    run_disconnect(&shared, &ctx, code, &reason).await;
}

/// Maps a read error to the close code RFC 6455 and API Gateway use.
fn ending_for_error(e: axum::Error) -> Ending {
    use tokio_tungstenite::tungstenite::Error as WsError;
    let inner = e.into_inner();
    let (code, reason, send_close) = match inner.downcast_ref::<WsError>() {
        Some(WsError::Capacity(_)) => (close::MESSAGE_TOO_BIG, "Message too big".to_string(), true),
        Some(WsError::Utf8(_)) => (close::INVALID_PAYLOAD, "Invalid UTF-8 in text frame".to_string(), true),
        Some(WsError::Protocol(p)) => (close::PROTOCOL_ERROR, format!("Protocol error: {p}"), true),
        Some(WsError::ConnectionClosed) | Some(WsError::AlreadyClosed) => {
            (close::ABNORMAL, "Connection closed abnormally".to_string(), false)
        }
        _ => (close::ABNORMAL, format!("Connection closed abnormally: {inner}"), false),
    };
    if code == close::MESSAGE_TOO_BIG {
        metrics::counter!("dynamowave_rejected_total", "reason" => "too_big").increment(1);
    }
    Ending { code, reason, send_close }
}

/// Writes queued frames, several per flush; on the ending, sends the close frame.
async fn write_loop(
    mut sink: futures_util::stream::SplitSink<WebSocket, Message>,
    mut rx: mpsc::Receiver<Outbound>,
    mut ending: tokio::sync::oneshot::Receiver<Ending>,
    live: Arc<LiveConnection>,
) {
    const BATCH: usize = 64;
    let to_message = |o: Outbound| match o {
        Outbound::Text(t) => Message::Text(t),
        Outbound::Binary(b) => Message::Binary(b),
    };
    loop {
        tokio::select! {
            biased;
            end = &mut ending => {
                if let Ok(end) = end && end.send_close {
                    // Frames already queued go first, then the close frame.
                    while let Ok(o) = rx.try_recv() {
                        if sink.feed(to_message(o)).await.is_err() { break; }
                    }
                    let reason = truncate_reason(&end.reason);
                    let _ = sink.send(Message::Close(Some(CloseFrame { code: end.code, reason: reason.into() }))).await;
                }
                let _ = sink.close().await;
                return;
            }
            out = rx.recv() => {
                let Some(first) = out else { let _ = sink.close().await; return; };
                if sink.feed(to_message(first)).await.is_err() { live.close(close::ABNORMAL, "write failed"); return; }
                for _ in 1..BATCH {
                    match rx.try_recv() {
                        Ok(o) => if sink.feed(to_message(o)).await.is_err() { live.close(close::ABNORMAL, "write failed"); return; },
                        Err(_) => break,
                    }
                }
                if sink.flush().await.is_err() { live.close(close::ABNORMAL, "write failed"); return; }
            }
        }
    }
}

/// A close reason is at most 123 bytes (RFC 6455 §5.5: control payload ≤ 125 with the code).
fn truncate_reason(reason: &str) -> String {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    reason[..end].to_string()
}

async fn on_text(
    shared: &Arc<Shared>,
    live: &Arc<LiveConnection>,
    ctx: &ConnectionContext,
    json: bool,
    per_connection: &mut Option<crate::throttle::Limiter>,
    body: &str,
) {
    let selected = select_route(&shared.settings.route_selection_expression, body);
    let route_key = match selected {
        Some(k) if shared.has_route(&k) => k,
        _ => "$default".to_string(),
    };
    let event = message_event(ctx, &shared.settings.stage, &shared.settings.api_id, &route_key, body.to_string());
    let request_id = event.request_context.request_id.clone().unwrap_or_default();
    let span = info_span!("message", route_key = %route_key, request_id = %request_id);
    async {
        let throttled = admit_connection(per_connection).and_then(|()| shared.throttles.admit_message(&route_key));
        if let Err(t) = throttled {
            metrics::counter!("dynamowave_throttled_total", "kind" => t.label(), "route" => route_key.clone())
                .increment(1);
            let message = match t {
                Throttled::Connection => "Too Many Requests: this connection's message rate is exceeded",
                _ => "Too Many Requests",
            };
            let _ = live.offer(error_frame(json, "throttled", message, &ctx.connection_id, &request_id));
            return;
        }
        match invoke(shared, &route_key, event).await {
            Ok(_) => {}
            Err(InvokeError::Throttled(why)) => {
                debug!(why, "throttled");
                let _ =
                    live.offer(error_frame(json, "throttled", "Too Many Requests", &ctx.connection_id, &request_id));
            }
            Err(e) => {
                warn!(error = %e, "integration failed");
                metrics::counter!("dynamowave_handler_errors_total", "route" => route_key.clone()).increment(1);
                let _ = live.offer(error_frame(
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
    info!(code, reason, "disconnected");
}
