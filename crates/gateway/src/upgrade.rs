//! The upgrade: `GET /{stage}` with a WebSocket handshake. The `Origin` check, the throttles on
//! new connections, the authorizer's REQUEST, then `$connect`, whose answer decides: a 2xx
//! upgrades (with the headers it returned, e.g. `Sec-WebSocket-Protocol`), anything else is
//! the HTTP answer. An upgraded connection's life is `connection`'s.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use aws_lambda_events::apigw::{
    ApiGatewayCustomAuthorizerRequestTypeRequest, ApiGatewayCustomAuthorizerRequestTypeRequestIdentity,
    ApiGatewayProxyResponse,
};
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use dynamowave_apigw::routes::route_key;
use hyper::upgrade::OnUpgrade;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tracing::{Instrument, info, info_span, warn};

use crate::access_log::{AccessRecord, principal_id};
use crate::auth::AuthDecision;
use crate::aws_metrics;
use crate::close_code;
use crate::connection;
use crate::events::{ConnectionContext, aws_id, connect_event, query_parameters};
use crate::http_error::gateway_error;
use crate::identity_source::ConnectRequest;
use crate::invoke::{RouteError, invoke};
use crate::registry::LiveConnection;
use crate::state::GatewayState;

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

/// A WebSocket upgrade request, as the router has taken it apart.
pub(crate) struct UpgradeRequest {
    /// `Sec-WebSocket-Key`.
    pub key: HeaderValue,
    /// The connection, once the `101` is written.
    pub on_upgrade: OnUpgrade,
    pub peer: SocketAddr,
    pub headers: HeaderMap,
    pub uri: Uri,
}

/// `GET /{stage}` with an upgrade: runs the authorizer and `$connect`, then upgrades or refuses.
pub(crate) async fn upgrade(state: Arc<GatewayState>, request: UpgradeRequest) -> Response {
    let Some(log) = &state.access_log else {
        return upgrade_logged(state.clone(), request, &mut AccessRecord::default()).await;
    };
    let (peer, headers) = (request.peer, &request.headers);
    let mut record = AccessRecord::starting("CONNECT");
    record.request_id = Some(aws_id());
    record.route_key = Some(route_key::CONNECT.to_string());
    record.source_ip = Some(peer.ip());
    record.user_agent = headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).map(str::to_string);
    record.domain_name = Some(state.domain_name(headers.get(header::HOST).and_then(|v| v.to_str().ok())));
    let response = upgrade_logged(state.clone(), request, &mut record).await;
    let status = response.status();
    record.status = Some(status.as_u16());
    if status.as_u16() >= 400 && record.integration_status.is_none() && record.error_message.is_none() {
        record.error_message = status.canonical_reason().map(str::to_string);
    }
    log.log(&record);
    response
}

/// [`upgrade`], noting in `record` what the access log says of it.
async fn upgrade_logged(state: Arc<GatewayState>, request: UpgradeRequest, record: &mut AccessRecord) -> Response {
    let UpgradeRequest { key, on_upgrade, peer, headers, uri } = request;
    if let Some(refused) = refuse_foreign_origin(&state, &headers) {
        aws_metrics::client_error(&state.settings, route_key::CONNECT);
        return refused;
    }
    if !state.throttles.admit_connect() {
        aws_metrics::client_error(&state.settings, route_key::CONNECT);
        metrics::counter!("dynamowave_rejected_total", "reason" => "connect_rate").increment(1);
        return gateway_error(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests");
    }
    let max_per_ip = state.settings.limits.max_connections_per_ip;
    if max_per_ip > 0 && state.registry.count_from(peer.ip()) >= max_per_ip {
        metrics::counter!("dynamowave_rejected_total", "reason" => "per_ip_limit").increment(1);
        aws_metrics::client_error(&state.settings, route_key::CONNECT);
        return gateway_error(StatusCode::TOO_MANY_REQUESTS, "Too many connections from this address");
    }
    let connection_id = aws_id();
    record.connection_id = Some(connection_id.clone());
    let span = info_span!("connection", connection_id = %connection_id);
    async move {
        let ctx = ConnectionContext {
            connection_id: connection_id.clone(),
            connected_at: chrono::Utc::now().timestamp_millis(),
            source_ip: peer.ip(),
            user_agent: headers.get(http::header::USER_AGENT).and_then(|v| v.to_str().ok()).map(str::to_string),
            domain_name: state.domain_name(headers.get(http::header::HOST).and_then(|v| v.to_str().ok())),
            authorizer: None,
        };
        let query = parse_query(&uri);
        let ctx = match authorize(&state, ctx, &headers, &query).await {
            Ok(ctx) => ctx,
            Err(response) => return response,
        };
        record.connected_at = Some(ctx.connected_at);
        record.principal_id = principal_id(&ctx);

        // The connection exists (and queues what is posted to it) from before `$connect`
        // runs, so that a broadcast racing the upgrade cannot find it gone and delete its entry.
        let limits = &state.settings.limits;
        let live = LiveConnection::new(ctx.clone(), limits.send_queue_frames, limits.send_queue_bytes);
        state.registry.insert(live.clone());
        if state.shutdown.is_cancelled() {
            // Registered after the shutdown sweep: close it like the others.
            live.close(close_code::GOING_AWAY, "Going away");
        }

        let mut event = connect_event(&ctx, &state.settings.stage, &state.settings.api_id, &headers, &query);
        event.stage_variables = state.settings.stage_variables.clone();
        record.request_id = event.request_context.request_id.clone();
        aws_metrics::connect_count(&state.settings);
        let started = std::time::Instant::now();
        let answer = if state.integration_for(route_key::CONNECT).is_some() {
            invoke(&state, route_key::CONNECT, event).await
        } else {
            // No `$connect` route: API Gateway admits the connection.
            Ok(dynamowave_apigw::proxy_response(200, None))
        };
        record.integration_latency = Some(started.elapsed());
        match &answer {
            Ok(r) => record.integration_status = Some(r.status_code),
            Err(e) => {
                record.integration_error_message = Some(e.to_string());
                record.error_message = Some(
                    if matches!(e, RouteError::Throttled(_)) { "Too Many Requests" } else { "Internal server error" }
                        .into(),
                );
            }
        }
        let response = match answer {
            Ok(r) if (200..300).contains(&r.status_code) => r,
            Ok(r) => {
                state.registry.remove(&ctx.connection_id);
                metrics::counter!("dynamowave_rejected_total", "reason" => "connect_route").increment(1);
                info!(status = r.status_code, "$connect refused the connection");
                return refused(r);
            }
            Err(e) => {
                state.registry.remove(&ctx.connection_id);
                warn!(error = %e, "$connect failed");
                let status = if matches!(e, RouteError::Throttled(_)) {
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
        // Kept for the app's error frames (`ErrorFrames`), which may depend on it.
        let subprotocol = response
            .headers
            .get(http::header::SEC_WEBSOCKET_PROTOCOL)
            .and_then(|v| v.to_str().ok())
            .map(|p| state.subprotocol(p));
        // No span for the connection's whole life: a live span costs memory in the subscriber
        // for as long as it lives (~300 bytes per idle connection). Each phase that logs opens
        // its own span with the connection id instead.
        state.tracker.spawn(connection::run(state.clone(), on_upgrade, live, subprotocol));
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
fn refuse_foreign_origin(state: &GatewayState, headers: &HeaderMap) -> Option<Response> {
    let origins = &state.settings.origins;
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
    state: &Arc<GatewayState>,
    mut ctx: ConnectionContext,
    headers: &HeaderMap,
    query: &HashMap<String, Vec<String>>,
) -> Result<ConnectionContext, Response> {
    let Some(authorizer) = &state.authorizer else { return Ok(ctx) };
    let request = ConnectRequest {
        headers,
        query,
        stage_variables: &state.settings.stage_variables,
        ctx: &ctx,
        stage: &state.settings.stage,
        api_id: &state.settings.api_id,
    };
    // API Gateway's pre-check: a request without every identity source costs no invocation.
    if let Some(missing) = state.identity_sources.iter().find(|source| !source.present(&request)) {
        metrics::counter!("dynamowave_rejected_total", "reason" => "identity_source").increment(1);
        aws_metrics::client_error(&state.settings, route_key::CONNECT);
        info!(?missing, "identity source missing: unauthorized without invoking the authorizer");
        return Err(gateway_error(StatusCode::UNAUTHORIZED, "Unauthorized"));
    }
    let mut req = ApiGatewayCustomAuthorizerRequestTypeRequest::default();
    req.type_ = Some("REQUEST".into());
    req.method_arn = Some(format!(
        "arn:aws:execute-api:local:000000000000:{}/{}/$connect",
        state.settings.api_id, state.settings.stage
    ));
    req.headers = headers.clone();
    req.multi_value_headers = headers.clone();
    (req.query_string_parameters, req.multi_value_query_string_parameters) = query_parameters(query);
    req.stage_variables = state.settings.stage_variables.clone();
    req.request_context.stage = Some(state.settings.stage.clone());
    req.request_context.apiid = Some(state.settings.api_id.clone());
    req.request_context.request_id = Some(aws_id());
    let mut identity = ApiGatewayCustomAuthorizerRequestTypeRequestIdentity::default();
    identity.source_ip = Some(ctx.source_ip.to_string());
    req.request_context.identity = Some(identity);
    match authorizer.authorize(req).await {
        AuthDecision::Allow { context } => {
            ctx.authorizer = (!context.is_empty()).then(|| Box::new(context));
            Ok(ctx)
        }
        AuthDecision::Unauthorized(why) => {
            metrics::counter!("dynamowave_rejected_total", "reason" => "unauthorized").increment(1);
            aws_metrics::client_error(&state.settings, route_key::CONNECT);
            info!(why, "authorizer: unauthorized");
            Err(gateway_error(StatusCode::UNAUTHORIZED, "Unauthorized"))
        }
        AuthDecision::Forbidden(why) => {
            metrics::counter!("dynamowave_rejected_total", "reason" => "forbidden").increment(1);
            aws_metrics::client_error(&state.settings, route_key::CONNECT);
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
