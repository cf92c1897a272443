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

use crate::events::{ConnectionContext, disconnect_event, message_event, select_route};
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
            return Err(RouteError::Throttled("reserved concurrency exhausted"));
        }
    };
    let started = Instant::now();
    let result = integration.invoke(event).await;
    drop(permit);
    metrics::histogram!("dynamowave_handler_seconds", "route" => route_key.to_string())
        .record(started.elapsed().as_secs_f64());
    if let Err(IntegrationError::Throttled) = &result {
        return Err(RouteError::Throttled("function throttled"));
    }
    Ok(result?)
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
    let selected = select_route(&state.settings.route_selection_expression, body);
    let route_key = match selected {
        Some(k) if state.routes.contains(&k) => k,
        _ => route_key::DEFAULT.to_string(),
    };
    let event = message_event(ctx, &state.settings.stage, &state.settings.api_id, &route_key, body.to_string());
    let request_id = event.request_context.request_id.clone().unwrap_or_default();
    let span =
        info_span!("message", connection_id = %ctx.connection_id, route_key = %route_key, request_id = %request_id);
    let send_error = |kind: ErrorKind, message: &str| {
        let frame = ErrorFrame { kind, message, connection_id: &ctx.connection_id, request_id: &request_id };
        let _ = live.send_text(&state.error_frames.format(&frame, subprotocol));
    };
    async {
        let throttled = admit_connection(per_connection).and_then(|()| state.throttles.admit_message(&route_key));
        if let Err(t) = throttled {
            metrics::counter!("dynamowave_throttled_total", "kind" => t.label(), "route" => route_key.clone())
                .increment(1);
            let message = match t {
                Throttled::Connection => "Too Many Requests: this connection's message rate is exceeded",
                _ => "Too Many Requests",
            };
            send_error(ErrorKind::Throttled, message);
            return;
        }
        match invoke(state, &route_key, event).await {
            Ok(_) => {}
            Err(RouteError::Throttled(why)) => {
                debug!(why, "throttled");
                send_error(ErrorKind::Throttled, "Too Many Requests");
            }
            Err(e) => {
                warn!(error = %e, "integration failed");
                metrics::counter!("dynamowave_handler_errors_total", "route" => route_key.clone()).increment(1);
                send_error(ErrorKind::InternalError, "Internal server error");
            }
        }
    }
    .instrument(span)
    .await
}

/// `$disconnect`, best-effort as on API Gateway, but always attempted: it waits for a slot of
/// its own reserved concurrency rather than being throttled.
pub(crate) async fn run_disconnect(state: &GatewayState, ctx: &ConnectionContext, code: u16, reason: &str) {
    let event = disconnect_event(ctx, &state.settings.stage, &state.settings.api_id, code, reason);
    let Some(integration) = state.integration_for(route_key::DISCONNECT) else { return };
    let semaphore = state.semaphore_for(route_key::DISCONNECT);
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
