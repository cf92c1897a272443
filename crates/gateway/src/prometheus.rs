//! Prometheus metrics: the process-wide recorder, and `/metrics`, which the same callers as
//! `@connections` may read (counters tell who is connected and how much goes on; a cross-site
//! page or a stranger behind a proxy has no business reading them).

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing::info;

use crate::http_error::gateway_error;
use crate::management::{self, Access};
use crate::state::GatewayState;

/// The process-wide Prometheus recorder, installed on first use (a process has one global
/// recorder; several gateways in one test process share it).
pub(crate) fn recorder() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets(&[0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0])
            .map(|b| b.build_recorder())
            .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
        let handle = recorder.handle();
        // Fails only if another recorder was installed first; then ours just stays empty.
        let _ = metrics::set_global_recorder(recorder);
        // Histogram samples wait in per-metric buffers until upkeep folds them into the
        // buckets; without it they pile up between scrapes (memory grows with every request
        // when nobody scrapes /metrics).
        let upkeep = handle.clone();
        let _ = std::thread::Builder::new().name("metrics-upkeep".into()).spawn(move || {
            loop {
                std::thread::sleep(std::time::Duration::from_secs(5));
                upkeep.run_upkeep();
            }
        });
        handle
    })
}

/// `GET /metrics`, for the callers `@connections` lets in.
pub(crate) async fn metrics_endpoint(
    State(state): State<Arc<GatewayState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let allowed = management::access(&state, peer, &headers).and_then(|access| match access {
        Access::Local => Ok(()),
        Access::Signed(signed) => signed.verify(&method, uri.path(), uri.query(), &headers, b""),
    });
    if let Err(why) = allowed {
        info!(%peer, why, "/metrics refused");
        metrics::counter!("dynamowave_rejected_total", "reason" => "metrics_forbidden").increment(1);
        return gateway_error(StatusCode::FORBIDDEN, "Forbidden");
    }
    metrics::gauge!("dynamowave_live_connections").set(state.registry.len() as f64);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], recorder().render()).into_response()
}
