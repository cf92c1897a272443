//! The HTTP routes of the gateway's listener: the app's assets, `/metrics`, `/healthz`, and
//! everything else by path — `/{stage}` (the WebSocket) and `/{stage}/@connections/{id}`.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::Response;
use axum::routing::get;
use dynamowave_apigw::Asset;

use crate::assets::serve_assets;
use crate::http_error::gateway_error;
use crate::prometheus::metrics_endpoint;
use crate::state::GatewayState;
use crate::{management, upgrade};

/// The router of a gateway serving `assets`.
pub(crate) fn router(state: Arc<GatewayState>, assets: &[Asset]) -> Router {
    let routes = Router::new().route("/metrics", get(metrics_endpoint)).route("/healthz", get(|| async { "ok" }));
    serve_assets(routes, assets, &state.settings.stage)
        .fallback(dispatch)
        .layer(DefaultBodyLimit::max(state.settings.limits.max_message_bytes * 2))
        .with_state(state)
}

/// `/{stage}` (the WebSocket) and `/{stage}/@connections/{id}`, matched on the percent-decoded
/// path (SDKs send `%40connections` and `%3D` in ids).
async fn dispatch(
    State(state): State<Arc<GatewayState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    mut request: Request,
) -> Response {
    if uri.to_string().len() > state.settings.limits.max_url_bytes {
        return gateway_error(StatusCode::URI_TOO_LONG, "Request-URI Too Long");
    }
    let segments: Vec<String> = uri
        .path()
        .split('/')
        .skip(1)
        .map(|s| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned())
        .collect();
    let stage = state.settings.stage.as_str();
    match segments.as_slice() {
        [s] if s == stage => {
            let on_upgrade = request.extensions_mut().remove::<hyper::upgrade::OnUpgrade>();
            match (upgrade::websocket_key(&method, &headers), on_upgrade) {
                (Some(key), Some(on_upgrade)) => {
                    upgrade::upgrade(state.clone(), upgrade::UpgradeRequest { key, on_upgrade, peer, headers, uri })
                        .await
                }
                _ => {
                    let mut response = gateway_error(
                        StatusCode::UPGRADE_REQUIRED,
                        "This is a WebSocket endpoint: connect with a WebSocket client",
                    );
                    response
                        .headers_mut()
                        .insert(header::SEC_WEBSOCKET_VERSION, header::HeaderValue::from_static("13"));
                    response
                }
            }
        }
        [s, at, id] if s == stage && at == "@connections" && !id.is_empty() => {
            management::handle(&state, peer, method, &uri, &headers, id, request.into_body()).await
        }
        _ => {
            metrics::counter!("dynamowave_rejected_total", "reason" => "bad_path").increment(1);
            gateway_error(StatusCode::FORBIDDEN, "Forbidden")
        }
    }
}
