//! API Gateway's CloudWatch metrics for WebSocket APIs, in Prometheus form beside the gateway's
//! own (`dynamowave_*`), under AWS's names with an `apigateway_` prefix and AWS's dimensions as
//! labels: `ApiId` and `Stage` on every one, `Route` where a route is known.
//!
//! - `apigateway_ConnectCount`: invocations of the `$connect` route's integration.
//! - `apigateway_MessageCount`: messages from the client (labelled with their route) and to it
//!   (posts, route responses, error frames; no `Route`).
//! - `apigateway_IntegrationError`: integration answers with a 4XX/5XX status.
//! - `apigateway_ClientError`: 4XX answers the gateway gives before any integration runs
//!   (foreign origin, throttling, a missing identity source, the authorizer's 401/403).
//! - `apigateway_ExecutionError`: invocations that failed (error, timeout, throttled function).
//! - `apigateway_IntegrationLatency`: milliseconds from invoking an integration to its answer
//!   (a histogram: `_bucket`, `_sum`, `_count`).

use std::time::Duration;

use crate::settings::GatewaySettings;

/// The latency histogram's name (its buckets are in milliseconds: `prometheus`).
pub(crate) const INTEGRATION_LATENCY: &str = "apigateway_IntegrationLatency";
/// Milliseconds.
pub(crate) const LATENCY_BUCKETS_MS: [f64; 12] =
    [1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 10000.0];

pub(crate) fn connect_count(s: &GatewaySettings) {
    metrics::counter!("apigateway_ConnectCount", "ApiId" => s.api_id.clone(), "Stage" => s.stage.clone(), "Route" => "$connect")
        .increment(1);
}

/// A message from the client, to `route`.
pub(crate) fn message_in(s: &GatewaySettings, route: &str) {
    metrics::counter!("apigateway_MessageCount", "ApiId" => s.api_id.clone(), "Stage" => s.stage.clone(), "Route" => route.to_string())
        .increment(1);
}

/// The counter of messages to clients (no route: a post names a connection, not a route).
pub(crate) fn messages_out(api_id: &str, stage: &str) -> metrics::Counter {
    metrics::counter!("apigateway_MessageCount", "ApiId" => api_id.to_string(), "Stage" => stage.to_string())
}

pub(crate) fn client_error(s: &GatewaySettings, route: &str) {
    metrics::counter!("apigateway_ClientError", "ApiId" => s.api_id.clone(), "Stage" => s.stage.clone(), "Route" => route.to_string())
        .increment(1);
}

pub(crate) fn integration_error(s: &GatewaySettings, route: &str) {
    metrics::counter!("apigateway_IntegrationError", "ApiId" => s.api_id.clone(), "Stage" => s.stage.clone(), "Route" => route.to_string())
        .increment(1);
}

pub(crate) fn execution_error(s: &GatewaySettings, route: &str) {
    metrics::counter!("apigateway_ExecutionError", "ApiId" => s.api_id.clone(), "Stage" => s.stage.clone(), "Route" => route.to_string())
        .increment(1);
}

pub(crate) fn integration_latency(s: &GatewaySettings, route: &str, elapsed: Duration) {
    metrics::histogram!(INTEGRATION_LATENCY, "ApiId" => s.api_id.clone(), "Stage" => s.stage.clone(), "Route" => route.to_string())
        .record(elapsed.as_secs_f64() * 1000.0);
}
