//! API Gateway's events, as JSON built by hand: what a function receives when the tests call
//! it without a gateway in front.

use serde_json::{Value, json};

/// A WebSocket proxy event for `route_key` on `connection_id`, as API Gateway sends it to a
/// route's integration (stage `production`, a loopback caller); `eventType` follows the route.
pub fn websocket(route_key: &str, connection_id: &str, body: Option<&str>) -> Value {
    let event_type = match route_key {
        "$connect" => "CONNECT",
        "$disconnect" => "DISCONNECT",
        _ => "MESSAGE",
    };
    json!({
        "requestContext": {
            "routeKey": route_key,
            "eventType": event_type,
            "connectionId": connection_id,
            "requestId": format!("req-{route_key}-{connection_id}"),
            "domainName": "localhost",
            "stage": "production",
            "apiId": "local",
            "connectedAt": 1_700_000_000_000_i64,
            "requestTimeEpoch": 1_700_000_000_000_i64,
            "messageDirection": "IN",
            "identity": { "sourceIp": "127.0.0.1", "userAgent": "test" }
        },
        "headers": { "Host": "localhost" },
        "isBase64Encoded": false,
        "body": body,
    })
}
