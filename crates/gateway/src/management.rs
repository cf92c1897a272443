//! The `@connections` management API on the gateway's own listener:
//! `POST|GET|DELETE /{stage}/@connections/{connectionId}`, with API Gateway's status codes and
//! `x-amzn-errortype` header (what the AWS SDKs read to name the error), so the real
//! `aws-sdk-apigatewaymanagement` client works against it unmodified.

use std::net::SocketAddr;

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use dynamowave_apigw::connections_api::iso_time;
use dynamowave_apigw::{ConnectionsApi, ConnectionsApiError};
use tracing::{debug, info};

use crate::events::aws_id;
use crate::sigv4::Signed;
use crate::state::GatewayState;

/// An API Gateway error: status, `x-amzn-errortype`, and `{"message": …}`.
pub(crate) fn api_error(status: StatusCode, error_type: &str, message: &str, request_id: &str) -> Response {
    let mut r = (status, axum::Json(serde_json::json!({ "message": message }))).into_response();
    if let Ok(v) = HeaderValue::from_str(error_type) {
        r.headers_mut().insert("x-amzn-errortype", v);
    }
    if let Ok(v) = HeaderValue::from_str(request_id) {
        r.headers_mut().insert("x-amzn-requestid", v);
    }
    r
}

fn from_api_error(e: ConnectionsApiError, request_id: &str) -> Response {
    match e {
        ConnectionsApiError::Gone => api_error(StatusCode::GONE, "GoneException", "", request_id),
        ConnectionsApiError::PayloadTooLarge(m) => {
            api_error(StatusCode::PAYLOAD_TOO_LARGE, "PayloadTooLargeException", &m, request_id)
        }
        ConnectionsApiError::LimitExceeded(m) => {
            api_error(StatusCode::TOO_MANY_REQUESTS, "LimitExceededException", &m, request_id)
        }
        ConnectionsApiError::Forbidden(m) => api_error(StatusCode::FORBIDDEN, "ForbiddenException", &m, request_id),
        ConnectionsApiError::Other(m) => {
            api_error(StatusCode::INTERNAL_SERVER_ERROR, "InternalServerErrorException", &m, request_id)
        }
    }
}

/// Headers a forwarder adds: their presence means the loopback peer is relaying someone else.
/// (A plain TCP tunnel adds none; behind one, configure credentials: see `docs/gateway.md`.)
const FORWARDING_HEADERS: [&str; 6] =
    ["forwarded", "via", "x-real-ip", "true-client-ip", "cf-connecting-ip", "fastly-client-ip"];

/// Why an unsigned caller is not trusted as local, or `None` when it is: a loopback peer whose
/// request does not come from a browser page (no `Origin`, no `Sec-Fetch-Site` but `none`, a
/// `Host` that is ours: DNS rebinding makes the attacker's page same-origin, without `Origin`)
/// nor through a proxy (no forwarding header).
fn not_local(state: &GatewayState, peer: SocketAddr, headers: &HeaderMap) -> Option<&'static str> {
    let loopback = match peer.ip() {
        std::net::IpAddr::V4(v4) => v4.is_loopback(),
        std::net::IpAddr::V6(v6) => v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
    };
    if !loopback {
        return Some("the caller is not on this machine");
    }
    let host = headers.get(http::header::HOST).and_then(|v| v.to_str().ok());
    if !host.is_some_and(|h| state.settings.origins.domain_names.is_ours(h)) {
        return Some("the Host is neither a loopback name nor a configured domain name (DNS rebinding?)");
    }
    if headers.contains_key(http::header::ORIGIN) {
        return Some("the request comes from a web page (Origin)");
    }
    if let Some(site) = headers.get("sec-fetch-site")
        && site.as_bytes() != b"none"
    {
        return Some("the request comes from a web page (Sec-Fetch-Site)");
    }
    let forwarded = headers.keys().any(|name| {
        let name = name.as_str();
        name.starts_with("x-forwarded-") || FORWARDING_HEADERS.contains(&name)
    });
    if forwarded {
        return Some("the request was forwarded by a proxy");
    }
    None
}

/// How a caller was let in, before its body is read.
pub(crate) enum Access<'a> {
    /// A local caller, trusted without a signature.
    Local,
    /// A signature whose scope, key and headers passed; it must still verify over the body.
    Signed(Signed<'a>),
}

/// Who may manage connections (and read `/metrics`): with credentials configured, only a
/// SigV4 signature by them; without, an unsigned local caller (see [`not_local`]) unless
/// `allow_loopback` is off. Decided from the headers alone.
pub(crate) fn access<'a>(
    state: &'a GatewayState,
    peer: SocketAddr,
    headers: &'a HeaderMap,
) -> Result<Access<'a>, String> {
    let management = &state.settings.management;
    if let Some(creds) = &management.credentials {
        if !headers.contains_key(http::header::AUTHORIZATION) {
            return Err("a SigV4 signature by the configured credentials is required".into());
        }
        return Signed::check_headers(creds, &management.region, headers).map(Access::Signed);
    }
    if !management.allow_loopback {
        return Err("unsigned calls are not allowed and no credentials are configured".into());
    }
    match not_local(state, peer, headers) {
        None => Ok(Access::Local),
        Some(why) => Err(why.into()),
    }
}

/// The request body, bounded: over `max` bytes (by `Content-Length`, or while reading) is 413
/// without reading the rest; a body that does not arrive within `timeout` is 408, and the
/// connection is closed (hyper does not reuse a connection whose body was not read).
async fn read_body(
    body: Body,
    headers: &HeaderMap,
    max: usize,
    timeout: Duration,
    request_id: &str,
) -> Result<Bytes, Response> {
    let too_large = || {
        api_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PayloadTooLargeException",
            &format!("Request body exceeds {max} bytes"),
            request_id,
        )
    };
    let declared =
        headers.get(http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(with_close(too_large()));
    }
    let read = async {
        use futures_util::StreamExt;
        let mut stream = body.into_data_stream();
        let mut buf = bytes::BytesMut::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|_| "broken")?;
            if buf.len() + chunk.len() > max {
                return Err("too large");
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(buf.freeze())
    };
    match tokio::time::timeout(timeout, read).await {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err("too large")) => Err(with_close(too_large())),
        Ok(Err(_)) => Err(with_close(api_error(
            StatusCode::BAD_REQUEST,
            "BadRequestException",
            "Could not read the request body",
            request_id,
        ))),
        Err(_) => Err(with_close(api_error(
            StatusCode::REQUEST_TIMEOUT,
            "RequestTimeoutException",
            "The request body did not arrive in time",
            request_id,
        ))),
    }
}

fn with_close(mut response: Response) -> Response {
    response.headers_mut().insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    response
}

fn forbidden(peer: SocketAddr, why: &str, request_id: &str) -> Response {
    info!(%peer, why, "@connections call refused");
    metrics::counter!("dynamowave_rejected_total", "reason" => "management_forbidden").increment(1);
    api_error(StatusCode::FORBIDDEN, "ForbiddenException", "Forbidden", request_id)
}

/// Handles one `@connections` call for `connection_id` (already percent-decoded): who may
/// call is decided from the headers, then the body is read (bounded in size and time), then a
/// signature is verified over it.
pub(crate) async fn handle(
    state: &GatewayState,
    peer: SocketAddr,
    method: Method,
    uri: &Uri,
    headers: &HeaderMap,
    connection_id: &str,
    body: Body,
) -> Response {
    let request_id = aws_id();
    let access = match access(state, peer, headers) {
        Ok(access) => access,
        Err(why) => return with_close(forbidden(peer, &why, &request_id)),
    };
    if state.throttles.admit_message("@connections").is_err() {
        metrics::counter!("dynamowave_throttled_total", "kind" => "management", "route" => "@connections").increment(1);
        return api_error(StatusCode::TOO_MANY_REQUESTS, "LimitExceededException", "Rate exceeded", &request_id);
    }
    let limit = state.settings.limits.max_message_bytes;
    let body = match read_body(body, headers, limit, state.settings.management.body_read_timeout, &request_id).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    if let Access::Signed(signed) = &access
        && let Err(why) = signed.verify(&method, uri.path(), uri.query(), headers, &body)
    {
        return forbidden(peer, &why, &request_id);
    }
    let api = &state.api;
    debug!(connection_id, %method, request_id, "@connections");
    let result = match method {
        Method::POST => api.post_to_connection(connection_id, body).await.map(|()| StatusCode::OK.into_response()),
        Method::GET => api.get_connection(connection_id).await.map(|info| {
            axum::Json(serde_json::json!({
                "connectedAt": iso_time(info.connected_at),
                "identity": { "sourceIp": info.source_ip, "userAgent": info.user_agent },
                "lastActiveAt": iso_time(info.last_active_at),
            }))
            .into_response()
        }),
        Method::DELETE => api.delete_connection(connection_id).await.map(|()| StatusCode::NO_CONTENT.into_response()),
        _ => return api_error(StatusCode::FORBIDDEN, "ForbiddenException", "Forbidden", &request_id),
    };
    let mut response = result.unwrap_or_else(|e| from_api_error(e, &request_id));
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-amzn-requestid", v);
    }
    response
}
