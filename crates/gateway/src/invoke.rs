//! Route invocation: a message's route selected by the route selection expression, its
//! throttles, the route's integration run within its reserved concurrency, and the error frame
//! (in the app's shape: `ErrorFrames`) when that fails; `$connect`'s and `$disconnect`'s
//! invocations.

use std::sync::Arc;
use std::time::Instant;

use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use dynamowave_apigw::routes::route_key;
use dynamowave_apigw::{ErrorFrame, ErrorKind, IntegrationError};
use tracing::{Instrument, debug, info_span, warn};

use crate::access_log;
use crate::aws_metrics;
use crate::events::{ConnectionContext, disconnect_event, message_event};
use crate::registry::LiveConnection;
use crate::state::GatewayState;
use crate::throttle::{Limiter, Throttled, admit_connection};

/// Why a route gave no answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RouteError {
    #[error("no integration for route {0}")]
    NoRoute(String),
    #[error("throttled: {0}")]
    Throttled(&'static str),
    #[error(transparent)]
    Integration(#[from] IntegrationError),
}

/// Invokes the route's integration within the route's reserved concurrency.
pub(crate) async fn invoke(
    state: &GatewayState,
    route_key: &str,
    event: ApiGatewayWebsocketProxyRequest,
) -> Result<ApiGatewayProxyResponse, RouteError> {
    let integration = state.integration_for(route_key).ok_or_else(|| RouteError::NoRoute(route_key.to_string()))?;
    let semaphore = state.semaphore_for(route_key);
    let permit = match tokio::time::timeout(state.settings.concurrency.queue_timeout, semaphore.acquire_owned()).await {
        Ok(Ok(p)) => p,
        _ => {
            metrics::counter!("dynamowave_throttled_total", "kind" => "concurrency", "route" => route_key.to_string())
                .increment(1);
            aws_metrics::client_error(&state.settings, route_key);
            return Err(RouteError::Throttled("reserved concurrency exhausted"));
        }
    };
    let started = Instant::now();
    let result = integration.invoke(event).await;
    drop(permit);
    metrics::histogram!("dynamowave_handler_seconds", "route" => route_key.to_string())
        .record(started.elapsed().as_secs_f64());
    count_outcome(&state.settings, route_key, started.elapsed(), &result);
    if let Err(IntegrationError::Throttled) = &result {
        return Err(RouteError::Throttled("function throttled"));
    }
    Ok(result?)
}

/// API Gateway's metrics of one invocation: its latency, and whether it failed
/// (`ExecutionError`) or answered 4XX/5XX (`IntegrationError`).
fn count_outcome(
    settings: &crate::settings::GatewaySettings,
    route_key: &str,
    elapsed: std::time::Duration,
    result: &Result<ApiGatewayProxyResponse, IntegrationError>,
) {
    aws_metrics::integration_latency(settings, route_key, elapsed);
    match result {
        Err(_) => aws_metrics::execution_error(settings, route_key),
        Ok(r) if r.status_code >= 400 => aws_metrics::integration_error(settings, route_key),
        Ok(_) => {}
    }
}

/// One text message from the client: selects its route (`$default` when the selected key has
/// no route), applies the throttles and invokes the route. A message that gets no answer is
/// answered with an error frame, as API Gateway does.
pub(crate) async fn on_message(
    state: &Arc<GatewayState>,
    live: &Arc<LiveConnection>,
    subprotocol: Option<&str>,
    per_connection: &mut Option<Limiter>,
    body: &str,
) {
    let ctx = &live.ctx;
    let selected = state.route_selection.select(body);
    let route_key = match selected {
        Some(k) if state.routes.contains(&k) => k,
        _ => route_key::DEFAULT.to_string(),
    };
    aws_metrics::message_in(&state.settings, &route_key);
    let mut event = message_event(ctx, &state.settings.stage, &state.settings.api_id, &route_key, body.to_string());
    event.stage_variables = state.settings.stage_variables.clone();
    let request_id = event.request_context.request_id.clone().unwrap_or_default();
    let mut record = state.access_log.as_ref().map(|_| access_log::for_event(&event, ctx, "MESSAGE"));
    let span =
        info_span!("message", connection_id = %ctx.connection_id, route_key = %route_key, request_id = %request_id);
    let send_error = |kind: ErrorKind, message: &str| {
        let frame = ErrorFrame { kind, message, connection_id: &ctx.connection_id, request_id: &request_id };
        if live.send_text(&state.error_frames.format(&frame, subprotocol)).is_ok() {
            state.api.message_count.increment(1);
        }
    };
    let outcome = async {
        let throttled = admit_connection(per_connection).and_then(|()| state.throttles.admit_message(&route_key));
        if let Err(t) = throttled {
            metrics::counter!("dynamowave_throttled_total", "kind" => t.label(), "route" => route_key.clone())
                .increment(1);
            let message = match t {
                Throttled::Connection => "Too Many Requests: this connection's message rate is exceeded",
                _ => "Too Many Requests",
            };
            aws_metrics::client_error(&state.settings, &route_key);
            send_error(ErrorKind::Throttled, message);
            return Outcome { status: 429, error: Some("Too Many Requests"), ..Outcome::default() };
        }
        let started = Instant::now();
        let answer = invoke(state, &route_key, event).await;
        let latency = Some(started.elapsed());
        match answer {
            Ok(response) => {
                let integration_status = Some(response.status_code);
                send_route_response(state, live, &route_key, response);
                Outcome { status: 200, integration_status, latency, ..Outcome::default() }
            }
            Err(RouteError::Throttled(why)) => {
                debug!(why, "throttled");
                send_error(ErrorKind::Throttled, "Too Many Requests");
                Outcome { status: 429, error: Some("Too Many Requests"), latency, ..Outcome::default() }
            }
            Err(e) => {
                warn!(error = %e, "integration failed");
                metrics::counter!("dynamowave_handler_errors_total", "route" => route_key.clone()).increment(1);
                send_error(ErrorKind::InternalError, "Internal server error");
                let failure = Some(e.to_string());
                Outcome { status: 500, error: Some("Internal server error"), failure, latency, ..Outcome::default() }
            }
        }
    }
    .instrument(span)
    .await;
    if let (Some(log), Some(record)) = (&state.access_log, record.as_mut()) {
        record.status = Some(outcome.status);
        record.integration_status = outcome.integration_status;
        record.integration_latency = outcome.latency;
        record.error_message = outcome.error.map(str::to_string);
        record.integration_error_message = outcome.failure;
        log.log(record);
    }
}

/// How a message ended, for the access log.
#[derive(Default)]
struct Outcome {
    status: u16,
    integration_status: Option<i64>,
    latency: Option<std::time::Duration>,
    error: Option<&'static str>,
    failure: Option<String>,
}

/// A two-way route's answer: the integration's `body` goes back to the client as one text
/// frame, as API Gateway does for a route with a `$default` route response. No body: nothing.
/// One-way routes (the default) send nothing, and `$connect` never does (its answer is the
/// handshake).
fn send_route_response(
    state: &GatewayState,
    live: &LiveConnection,
    route_key: &str,
    response: ApiGatewayProxyResponse,
) {
    if route_key == route_key::CONNECT || !state.settings.two_way_routes.contains(route_key) {
        return;
    }
    let text = match response.body {
        Some(aws_lambda_events::encodings::Body::Text(text)) => text,
        Some(aws_lambda_events::encodings::Body::Binary(bytes)) => match String::from_utf8(bytes) {
            Ok(text) => text,
            Err(_) => {
                warn!(route_key, "a route response that is not UTF-8 text is not sent");
                return;
            }
        },
        _ => return,
    };
    match live.send_text(&text) {
        Ok(()) => state.api.message_count.increment(1),
        Err(e) => debug!(error = %e, "route response not delivered"),
    }
}

/// `$disconnect`, best-effort as on API Gateway, but always attempted: it waits for a slot of
/// its own reserved concurrency rather than being throttled.
pub(crate) async fn run_disconnect(state: &GatewayState, ctx: &ConnectionContext, code: u16, reason: &str) {
    let mut event = disconnect_event(ctx, &state.settings.stage, &state.settings.api_id, code, reason);
    event.stage_variables = state.settings.stage_variables.clone();
    let mut record = state.access_log.as_ref().map(|_| access_log::for_event(&event, ctx, "DISCONNECT"));
    if let Some(record) = record.as_mut() {
        record.disconnect_status_code = Some(code);
        record.disconnect_reason = Some(reason.to_string());
    }
    let Some(integration) = state.integration_for(route_key::DISCONNECT) else {
        // No route: nothing is invoked, but the disconnect happened.
        if let (Some(log), Some(record)) = (&state.access_log, record.as_ref()) {
            log.log(record);
        }
        return;
    };
    let semaphore = state.semaphore_for(route_key::DISCONNECT);
    let _permit = semaphore.acquire_owned().await;
    let started = Instant::now();
    let result = integration.invoke(event).await;
    count_outcome(&state.settings, route_key::DISCONNECT, started.elapsed(), &result);
    if let (Some(log), Some(record)) = (&state.access_log, record.as_mut()) {
        record.integration_latency = Some(started.elapsed());
        match &result {
            Ok(r) => (record.status, record.integration_status) = (Some(200), Some(r.status_code)),
            Err(e) => {
                record.status = Some(500);
                record.error_message = Some("Internal server error".into());
                record.integration_error_message = Some(e.to_string());
            }
        }
        log.log(record);
    }
    if let Err(e) = result {
        warn!(error = %e, "$disconnect failed");
    }
    metrics::histogram!("dynamowave_handler_seconds", "route" => "$disconnect").record(started.elapsed().as_secs_f64());
    metrics::counter!("dynamowave_disconnects_total").increment(1);
    // debug: the `$disconnect` handler logs the disconnection (with its status) at info.
    debug!(code, reason, "disconnected");
}
