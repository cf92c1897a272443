//! # dynamowave-gateway: a local API Gateway WebSocket API
//!
//! Behaves as API Gateway does in front of the chat handlers (facts and sources:
//! `shared/reference/aws-websocket-facts.md`; where it knowingly differs: `docs/gateway.md`):
//! `$connect` decides the upgrade, routes are selected by `$request.body.action`, frames and
//! messages are limited (32 KiB / 128 KiB, close 1009), binary frames close 1003, invalid UTF-8
//! 1007, idle and lifetime timers, token-bucket throttling per account, route, new connection and
//! connection, per-route reserved concurrency, `@connections` on the same listener, and graceful
//! shutdown (close 1001 and `$disconnect` for each connection).
//!
//! # Layout
//!
//! - [`settings`]: every limit, with AWS's default.
//! - `ws`: the upgrade and one connection's life (one task each); `wire`: WebSocket frames.
//! - [`registry`]: the live connections, and [`registry::LocalConnectionsApi`], the `@connections`
//!   API over them (a post writes the socket directly; floods are coalesced).
//! - `management`: the HTTP `@connections` API and who may call it (and `/metrics`); `sigv4`:
//!   signature checks for it.
//! - [`events`]: the API Gateway events the integrations receive.
//! - [`throttle`]: token buckets. [`auth`]: the `$connect` authorizer port.
//! - This file: [`Gateway`] (`build` → `local_addr` → `run_until_stopped`), [`Backend`], the
//!   router, the sweeper (idle and lifetime limits, shutdown), the web client's assets and
//!   `/metrics`.
//!
//! How a connection is built for memory and CPU: `docs/gateway.md`, "One connection".
//!
//! The integrations behind the routes are `dynamowave_core::integration::Integration`s: the
//! handlers in-process ([`Backend::in_process`]), or real Lambda binaries ([`Backend::routes`]).

pub mod auth;
pub mod events;
mod management;
pub mod registry;
mod server;
pub mod settings;
mod sigv4;
pub mod throttle;
mod wire;
mod ws;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};

use axum::Router;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use dynamowave_core::integration::{InProcess, Integration};
use dynamowave_core::{ChatDeps, ChatSettings, ConnectionStore, MessageLog};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::info;

pub use auth::{AuthDecision, ConnectAuthorizer};
pub use settings::GatewaySettings;

use registry::{LocalConnectionsApi, Registry};

/// What answers the routes.
pub enum Backend {
    /// The chat handlers in this process, on these stores.
    InProcess { connections: Arc<dyn ConnectionStore>, messages: Arc<dyn MessageLog>, chat: ChatSettings },
    /// An integration per route key (e.g. Lambda binaries); routes not listed go to `$default`.
    Routes(HashMap<String, Arc<dyn Integration>>),
}

impl Backend {
    pub fn in_process(
        connections: Arc<dyn ConnectionStore>,
        messages: Arc<dyn MessageLog>,
        chat: ChatSettings,
    ) -> Self {
        Backend::InProcess { connections, messages, chat }
    }

    pub fn routes(routes: HashMap<String, Arc<dyn Integration>>) -> Self {
        Backend::Routes(routes)
    }
}

/// Errors building the gateway.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("server error: {0}")]
    Serve(#[from] std::io::Error),
}

/// State shared by every request and connection.
pub(crate) struct Shared {
    pub settings: GatewaySettings,
    pub local_addr: SocketAddr,
    pub registry: Arc<Registry>,
    pub api: Arc<LocalConnectionsApi>,
    routes: HashMap<String, Arc<dyn Integration>>,
    semaphores: Mutex<HashMap<String, Arc<Semaphore>>>,
    last_domain_name: Mutex<Arc<str>>,
    pub authorizer: Option<Arc<dyn ConnectAuthorizer>>,
    pub throttles: throttle::Throttles,
    pub shutdown: CancellationToken,
    pub tracker: TaskTracker,
    metrics: PrometheusHandle,
}

impl Shared {
    pub fn has_route(&self, route_key: &str) -> bool {
        self.routes.contains_key(route_key)
    }

    pub fn integration_for(&self, route_key: &str) -> Option<Arc<dyn Integration>> {
        self.routes.get(route_key).or_else(|| self.routes.get("$default")).cloned()
    }

    /// The connection's `domainName`: its `Host` header (else our address), as one string shared
    /// by the connections that used the same host (nearly all of them) instead of a copy each.
    pub fn domain_name(&self, host: Option<&str>) -> Arc<str> {
        let local;
        let host = match host {
            Some(h) => h,
            None => {
                local = self.local_addr.to_string();
                &local
            }
        };
        // std Mutex: a compare and a clone, never held across an await.
        let mut last = self.last_domain_name.lock().unwrap_or_else(|p| p.into_inner());
        if &**last != host {
            *last = Arc::from(host);
        }
        last.clone()
    }

    pub fn semaphore_for(&self, route_key: &str) -> Arc<Semaphore> {
        // std Mutex: a map lookup, never held across an await.
        let mut map = self.semaphores.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(route_key.to_string())
            .or_insert_with(|| Arc::new(Semaphore::new(self.settings.concurrency.for_route(route_key))))
            .clone()
    }
}

/// API Gateway's error body for HTTP answers: `{"message": …}`.
pub(crate) fn gateway_error(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(serde_json::json!({ "message": message }))).into_response()
}

/// The process-wide Prometheus recorder (a process has one global recorder; several gateways in
/// one test process share it).
fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
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
        .clone()
}

/// A handle that stops a running gateway.
#[derive(Clone)]
pub struct ShutdownHandle(CancellationToken);

impl ShutdownHandle {
    pub fn shutdown(&self) {
        self.0.cancel();
    }
}

/// The gateway: built on a bound listener, then run until stopped.
pub struct Gateway {
    shared: Arc<Shared>,
    listener: tokio::net::TcpListener,
}

impl Gateway {
    /// Binds the listener and wires the routes. For [`Backend::InProcess`] the handlers post
    /// through this gateway's own `@connections` implementation.
    pub async fn build(settings: GatewaySettings, backend: Backend) -> Result<Gateway, GatewayError> {
        Self::build_with_authorizer(settings, backend, None).await
    }

    /// As [`Gateway::build`], with a `$connect` authorizer.
    pub async fn build_with_authorizer(
        settings: GatewaySettings,
        backend: Backend,
        authorizer: Option<Arc<dyn ConnectAuthorizer>>,
    ) -> Result<Gateway, GatewayError> {
        let listener = tokio::net::TcpListener::bind(settings.listen)
            .await
            .map_err(|source| GatewayError::Bind { addr: settings.listen, source })?;
        Self::on_listener(listener, settings, backend, authorizer)
    }

    /// As [`Gateway::build_with_authorizer`], on a listener the caller bound (when the address must
    /// be known before the integrations are made: Lambda binaries are told where `@connections`
    /// is).
    pub fn on_listener(
        listener: tokio::net::TcpListener,
        settings: GatewaySettings,
        backend: Backend,
        authorizer: Option<Arc<dyn ConnectAuthorizer>>,
    ) -> Result<Gateway, GatewayError> {
        let local_addr = listener.local_addr()?;
        let registry = Arc::new(Registry::default());
        let api = Arc::new(LocalConnectionsApi {
            registry: registry.clone(),
            max_payload_bytes: settings.limits.max_message_bytes,
            coalesce: settings.limits.coalesce,
            send_queue_wait: settings.limits.send_queue_wait,
        });
        let routes = match backend {
            Backend::InProcess { connections, messages, mut chat } => {
                // The handlers post through this gateway: its PostToConnection limit is theirs.
                chat.max_payload_bytes = settings.limits.max_message_bytes;
                let sequencer = Arc::new(
                    dynamowave_core::handlers::sequencer::RoomSequencer::new(std::time::Duration::from_secs(2))
                        .with_idle(std::time::Duration::from_secs(chat.empty_room_ttl_secs)),
                );
                let deps = ChatDeps {
                    connections,
                    messages,
                    connections_api: api.clone(),
                    presence: Arc::new(dynamowave_core::handlers::PresenceBudget::new(
                        chat.presence_per_room_per_second,
                    )),
                    room_rate: Arc::new(dynamowave_core::handlers::RoomCreationRate::new(
                        chat.room_create_per_minute,
                        chat.room_create_burst,
                    )),
                    settings: chat,
                    sequencer: Some(sequencer),
                };
                let integration: Arc<dyn Integration> = Arc::new(InProcess(deps));
                let mut keys: Vec<&str> = vec!["$connect", "$disconnect", "$default"];
                keys.extend(dynamowave_core::protocol::ACTIONS);
                keys.into_iter().map(|k| (k.to_string(), integration.clone())).collect()
            }
            Backend::Routes(routes) => routes,
        };
        let shared = Arc::new(Shared {
            throttles: throttle::Throttles::new(settings.throttling.clone()),
            settings,
            local_addr,
            registry,
            api,
            routes,
            semaphores: Mutex::new(HashMap::new()),
            last_domain_name: Mutex::new(Arc::from("")),
            authorizer,
            shutdown: CancellationToken::new(),
            tracker: TaskTracker::new(),
            metrics: metrics_handle(),
        });
        Ok(Gateway { shared, listener })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local_addr
    }

    /// The `@connections` API of this gateway, for in-process callers.
    pub fn connections_api(&self) -> Arc<LocalConnectionsApi> {
        self.shared.api.clone()
    }

    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle(self.shared.shutdown.clone())
    }

    /// Serves until the shutdown handle is used (or SIGINT/SIGTERM, if the settings say so).
    /// Then: stops accepting, closes every connection with 1001, runs `$disconnect` for each,
    /// and returns once they are all done. The caller then flushes its store.
    pub async fn run_until_stopped(self) -> Result<(), GatewayError> {
        let shared = self.shared.clone();
        let app = Router::new()
            .route("/", get(index))
            .route("/app.js", get(app_js))
            .route("/app.css", get(app_css))
            .route("/metrics", get(metrics_endpoint))
            .route("/healthz", get(|| async { "ok" }))
            .fallback(dispatch)
            .layer(DefaultBodyLimit::max(shared.settings.limits.max_message_bytes * 2))
            .with_state(shared.clone());
        info!(
            "listening on ws://{}/{} (management API at http://{}/{}/@connections)",
            shared.local_addr, shared.settings.stage, shared.local_addr, shared.settings.stage
        );
        if shared.settings.handle_signals {
            let token = shared.shutdown.clone();
            tokio::spawn(async move {
                wait_for_signal().await;
                info!("signal received: shutting down");
                token.cancel();
            });
        }
        let limits = server::HttpLimits {
            header_read_timeout: shared.settings.limits.header_read_timeout,
            max_header_bytes: shared.settings.limits.max_header_bytes,
        };
        let sweeper = tokio::spawn(sweep(shared.clone()));
        // The accept loop runs as a task, on a runtime worker: left in the caller's future (the
        // CLI's `block_on`, on the main thread), every accepted connection would cost a hand-over
        // between two threads (a futex wake and a context switch on a busy core).
        let _ = tokio::spawn(server::serve(self.listener, app, limits, shared.shutdown.clone())).await;
        let _ = sweeper.await;
        // Connections see the same token and close with 1001; wait for their `$disconnect`s.
        shared.tracker.close();
        shared.tracker.wait().await;
        info!("all connections closed");
        Ok(())
    }
}

/// Closes the connections past API Gateway's idle timeout or maximum duration (1001), one task
/// for all of them rather than two timers in every connection's task; the limits are checked
/// every tenth of the shorter one, at most every second. At shutdown it closes every connection
/// with 1001 (a connection registered later closes itself: see `ws::upgrade`).
async fn sweep(shared: Arc<Shared>) {
    use std::time::Duration;
    let limits = &shared.settings.limits;
    let every = (limits.idle_timeout.min(limits.max_connection_duration) / 10)
        .clamp(Duration::from_millis(10), Duration::from_secs(1));
    let millis = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    let (idle_ms, lifetime_ms) = (millis(limits.idle_timeout), millis(limits.max_connection_duration));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = shared.shutdown.cancelled() => break,
            _ = tick.tick() => {}
        }
        let now = chrono::Utc::now().timestamp_millis();
        shared.registry.for_each(|live| {
            if live.is_closing() {
                return;
            }
            if now.saturating_sub(live.ctx.connected_at) >= lifetime_ms {
                live.close(registry::close::GOING_AWAY, "Going away: connection duration limit");
            } else if now.saturating_sub(live.last_active_at.load(std::sync::atomic::Ordering::Relaxed)) >= idle_ms {
                live.close(registry::close::GOING_AWAY, "Going away: idle timeout");
            }
        });
    }
    shared.registry.for_each(|live| live.close(registry::close::GOING_AWAY, "Going away"));
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) {
            (Ok(mut int), Ok(mut term)) => {
                tokio::select! { _ = int.recv() => {}, _ = term.recv() => {} }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

const INDEX_HTML: &str = include_str!("../assets/index.html");
const APP_JS: &str = include_str!("../assets/app.js");
const APP_CSS: &str = include_str!("../assets/app.css");

/// Security headers for the web client: a strict CSP (no inline script, no remote origins) so
/// an escaping mistake still cannot run injected code.
fn with_asset_headers(content_type: &'static str, body: String) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

async fn index(State(shared): State<Arc<Shared>>) -> Response {
    with_asset_headers("text/html; charset=utf-8", INDEX_HTML.replace("{{STAGE}}", &shared.settings.stage))
}

async fn app_js() -> Response {
    with_asset_headers("text/javascript; charset=utf-8", APP_JS.to_string())
}

async fn app_css() -> Response {
    with_asset_headers("text/css; charset=utf-8", APP_CSS.to_string())
}

/// `/metrics`: the same callers as `@connections` (counters tell who is connected and how much
/// goes on; a cross-site page or a stranger behind a proxy has no business reading them).
async fn metrics_endpoint(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let allowed = management::access(&shared, peer, &headers).and_then(|access| match access {
        management::Access::Local => Ok(()),
        management::Access::Signed(signed) => signed.verify(&method, uri.path(), uri.query(), &headers, b""),
    });
    if let Err(why) = allowed {
        info!(%peer, why, "/metrics refused");
        metrics::counter!("dynamowave_rejected_total", "reason" => "metrics_forbidden").increment(1);
        return gateway_error(StatusCode::FORBIDDEN, "Forbidden");
    }
    metrics::gauge!("dynamowave_live_connections").set(shared.registry.len() as f64);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], shared.metrics.render()).into_response()
}

/// Everything else: `/{stage}` (the WebSocket) and `/{stage}/@connections/{id}`, matched on the
/// percent-decoded path (SDKs send `%40connections` and `%3D` in ids).
async fn dispatch(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    mut request: Request,
) -> Response {
    if uri.to_string().len() > shared.settings.limits.max_url_bytes {
        return gateway_error(StatusCode::URI_TOO_LONG, "Request-URI Too Long");
    }
    let segments: Vec<String> = uri
        .path()
        .split('/')
        .skip(1)
        .map(|s| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned())
        .collect();
    let stage = shared.settings.stage.as_str();
    match segments.as_slice() {
        [s] if s == stage => {
            let on_upgrade = request.extensions_mut().remove::<hyper::upgrade::OnUpgrade>();
            match (ws::websocket_key(&method, &headers), on_upgrade) {
                (Some(key), Some(on_upgrade)) => ws::upgrade(shared.clone(), key, on_upgrade, peer, headers, uri).await,
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
            management::handle(&shared, peer, method, &uri, &headers, id, request.into_body()).await
        }
        _ => {
            metrics::counter!("dynamowave_rejected_total", "reason" => "bad_path").increment(1);
            gateway_error(StatusCode::FORBIDDEN, "Forbidden")
        }
    }
}
