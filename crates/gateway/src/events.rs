//! Building the API Gateway WebSocket events the integrations receive, with the real
//! `requestContext` fields (`routeKey`, `eventType`, `connectionId`, `connectedAt`,
//! `requestTimeEpoch`, `messageId` on MESSAGE, `identity.sourceIp`, `domainName`, `stage`,
//! `apiId`, `disconnectStatusCode`/`disconnectReason`).

use std::collections::HashMap;

use aws_lambda_events::apigw::{ApiGatewayWebsocketProxyRequest, ApiGatewayWebsocketProxyRequestContext};
use aws_lambda_events::query_map::QueryMap;
use base64::Engine;
use http::HeaderMap;
use rand::RngCore;

/// An id in API Gateway's shape: 11 random bytes, URL-safe base64 with padding
/// (`Mg_ugfpqPHcCIVA=`). Used for connection, request and message ids.
pub fn aws_id() -> String {
    let mut bytes = [0u8; 11];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE.encode(bytes)
}

/// What the gateway knows of a connection that every event repeats.
#[derive(Clone, Debug)]
pub struct ConnectionContext {
    pub connection_id: String,
    pub connected_at: i64,
    /// An address, not its text: no string per connection (events carry the text).
    pub source_ip: std::net::IpAddr,
    pub user_agent: Option<String>,
    /// The `Host` the client connected to: shared by the connections that used the same one.
    pub domain_name: std::sync::Arc<str>,
    /// The authorizer's context, repeated on every event after `$connect` as API Gateway does.
    /// Boxed, and `None` without an authorizer: 8 bytes in every connection instead of a map's 48.
    pub authorizer: Option<Box<HashMap<String, serde_json::Value>>>,
}

/// API Gateway's `requestTime` format: `27/Nov/2026:20:19:34 +0000`.
fn request_time(now: chrono::DateTime<chrono::Utc>) -> String {
    now.format("%d/%b/%Y:%H:%M:%S %z").to_string()
}

fn context(
    conn: &ConnectionContext,
    stage: &str,
    api_id: &str,
    route_key: &str,
    event_type: &str,
) -> ApiGatewayWebsocketProxyRequestContext {
    let now = chrono::Utc::now();
    let request_id = aws_id();
    let mut c = ApiGatewayWebsocketProxyRequestContext::default();
    c.route_key = Some(route_key.to_string());
    c.event_type = Some(event_type.to_string());
    c.extended_request_id = Some(request_id.clone());
    c.request_id = Some(request_id);
    c.request_time = Some(request_time(now));
    c.request_time_epoch = now.timestamp_millis();
    c.message_direction = Some("IN".into());
    c.stage = Some(stage.to_string());
    c.connected_at = conn.connected_at;
    c.identity.source_ip = Some(conn.source_ip.to_string());
    c.identity.user_agent = conn.user_agent.clone();
    c.domain_name = Some(conn.domain_name.to_string());
    c.connection_id = Some(conn.connection_id.clone());
    c.apiid = Some(api_id.to_string());
    if let Some(fields) = &conn.authorizer {
        c.authorizer.fields = (**fields).clone();
    }
    c
}

/// The `$connect` event: headers and query string of the upgrade request.
pub fn connect_event(
    conn: &ConnectionContext,
    stage: &str,
    api_id: &str,
    headers: &HeaderMap,
    query: &HashMap<String, Vec<String>>,
) -> ApiGatewayWebsocketProxyRequest {
    let mut e = ApiGatewayWebsocketProxyRequest::default();
    e.request_context = context(conn, stage, api_id, "$connect", "CONNECT");
    e.headers = headers.clone();
    e.multi_value_headers = headers.clone();
    (e.query_string_parameters, e.multi_value_query_string_parameters) = query_parameters(query);
    e.is_base64_encoded = false;
    e
}

/// The query string as API Gateway passes it: `queryStringParameters` (each name's last value)
/// and `multiValueQueryStringParameters`.
pub(crate) fn query_parameters(query: &HashMap<String, Vec<String>>) -> (QueryMap, QueryMap) {
    let single: HashMap<String, String> =
        query.iter().filter_map(|(k, v)| v.last().map(|last| (k.clone(), last.clone()))).collect();
    (single.into(), query.clone().into())
}

/// A MESSAGE event for `route_key`, with a fresh `messageId`.
pub fn message_event(
    conn: &ConnectionContext,
    stage: &str,
    api_id: &str,
    route_key: &str,
    body: String,
) -> ApiGatewayWebsocketProxyRequest {
    let mut e = ApiGatewayWebsocketProxyRequest::default();
    e.request_context = context(conn, stage, api_id, route_key, "MESSAGE");
    e.request_context.message_id = Some(aws_id());
    e.body = Some(body);
    e.is_base64_encoded = false;
    e
}

/// The `$disconnect` event, with the close status the gateway saw.
pub fn disconnect_event(
    conn: &ConnectionContext,
    stage: &str,
    api_id: &str,
    status_code: u16,
    reason: &str,
) -> ApiGatewayWebsocketProxyRequest {
    let mut e = ApiGatewayWebsocketProxyRequest::default();
    e.request_context = context(conn, stage, api_id, "$disconnect", "DISCONNECT");
    e.request_context.disconnect_status_code = Some(i64::from(status_code));
    e.request_context.disconnect_reason = Some(reason.to_string());
    if let Ok(host) = http::HeaderValue::from_str(&conn.domain_name) {
        e.headers.insert(http::header::HOST, host);
    }
    e.is_base64_encoded = false;
    e
}

/// Evaluates a route selection expression `$request.body.a.b` against a frame: the value at
/// that path, stringified when it is not a string; `None` (→ `$default`) when the frame is not
/// JSON or the path is absent.
pub fn select_route(expression: &str, body: &str) -> Option<String> {
    let path = expression.strip_prefix("$request.body.")?;
    let value: serde_json::Value = serde_json::from_str(body).ok()?;
    let mut v = &value;
    for key in path.split('.') {
        v = v.as_object()?.get(key)?;
    }
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Null | serde_json::Value::Object(_) | serde_json::Value::Array(_) => None,
        other => Some(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_api_gateways_shape() {
        let id = aws_id();
        assert_eq!(id.len(), 16);
        assert!(id.ends_with('='));
    }

    #[test]
    fn route_selection() {
        let e = "$request.body.action";
        assert_eq!(select_route(e, r#"{"action":"sendmessage"}"#).as_deref(), Some("sendmessage"));
        assert_eq!(select_route(e, r#"{"action":7}"#).as_deref(), Some("7"));
        assert_eq!(select_route(e, "test"), None);
        assert_eq!(select_route(e, r#"{"x":1}"#), None);
        assert_eq!(select_route("$request.body.a.b", r#"{"a":{"b":"join"}}"#).as_deref(), Some("join"));
    }
}
