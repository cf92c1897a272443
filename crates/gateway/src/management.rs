//! The `@connections` management API on the gateway's own listener:
//! `POST|GET|DELETE /{stage}/@connections/{connectionId}`, with API Gateway's status codes and
//! `x-amzn-errortype` header (what the AWS SDKs read to name the error), so the real
//! `aws-sdk-apigatewaymanagement` client works against it unmodified.

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use chrono::{SecondsFormat, TimeZone, Utc};
use dynamowave_core::{ConnectionsApi, ConnectionsApiError};
use tracing::{debug, info};

use crate::Shared;
use crate::events::aws_id;

fn iso(ms: i64) -> String {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default().to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// An API Gateway error: status, `x-amzn-errortype`, and `{"message": …}`.
fn api_error(status: StatusCode, error_type: &str, message: &str, request_id: &str) -> Response {
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

/// Whether this caller may manage connections: loopback callers (unless disabled), or a valid
/// SigV4 signature by the configured credentials.
fn allowed(
    shared: &Shared,
    peer: SocketAddr,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), String> {
    let access = &shared.settings.management;
    if let Some(creds) = &access.credentials
        && headers.contains_key(http::header::AUTHORIZATION)
    {
        return crate::sigv4::verify(creds, method, uri.path(), uri.query(), headers, body);
    }
    if access.allow_loopback && peer.ip().is_loopback() {
        return Ok(());
    }
    Err(if access.credentials.is_some() {
        "a SigV4 signature by the configured credentials is required".into()
    } else {
        "only loopback callers may manage connections (configure credentials to allow others)".into()
    })
}

/// Handles one `@connections` call for `connection_id` (already percent-decoded).
pub(crate) async fn handle(
    shared: &Shared,
    peer: SocketAddr,
    method: Method,
    uri: &Uri,
    headers: &HeaderMap,
    connection_id: &str,
    body: Bytes,
) -> Response {
    let request_id = aws_id();
    if let Err(why) = allowed(shared, peer, &method, uri, headers, &body) {
        info!(%peer, why, "@connections call refused");
        metrics::counter!("dynamowave_rejected_total", "reason" => "management_forbidden").increment(1);
        return api_error(StatusCode::FORBIDDEN, "ForbiddenException", "Forbidden", &request_id);
    }
    if shared.throttles.admit_message("@connections").is_err() {
        metrics::counter!("dynamowave_throttled_total", "kind" => "management", "route" => "@connections").increment(1);
        return api_error(StatusCode::TOO_MANY_REQUESTS, "LimitExceededException", "Rate exceeded", &request_id);
    }
    let api = &shared.api;
    debug!(connection_id, %method, request_id, "@connections");
    let result = match method {
        Method::POST => api.post_to_connection(connection_id, body).await.map(|()| StatusCode::OK.into_response()),
        Method::GET => api.get_connection(connection_id).await.map(|info| {
            axum::Json(serde_json::json!({
                "connectedAt": iso(info.connected_at),
                "identity": { "sourceIp": info.source_ip, "userAgent": info.user_agent },
                "lastActiveAt": iso(info.last_active_at),
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
