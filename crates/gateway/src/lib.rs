//! # dynamowave-gateway: a local API Gateway WebSocket API
//!
//! Behaves as API Gateway does in front of an app's integrations (where it knowingly differs:
//! `docs/gateway.md`): `$connect` decides the upgrade, routes are selected by the
//! route selection expression (`$request.body.action`), frames and messages are limited (32 KiB / 128 KiB, close 1009), binary
//! frames close 1003, invalid UTF-8 1007, TLS and plain on one port (when given a certificate), idle and lifetime timers, token-bucket throttling per
//! account, route, new connection and connection, per-route reserved concurrency, `@connections`
//! on the same listener, and graceful shutdown (close 1001 and `$disconnect` for each
//! connection).
//!
//! It knows no app: it serves a [`dynamowave_apigw::App`] — a route table of integrations, how
//! the error frames it sends look, and static assets — and gives the app its `@connections` API
//! ([`registry::LocalConnectionsApi`]). The chat is one such app (`dynamowave_core::app`).
//!
//! # Layout
//!
//! - This file: [`Gateway`] (`bind` → `local_addr`, `connections_api` → `serve`),
//!   [`ShutdownHandle`], [`GatewayError`].
//! - [`settings`]: every limit, with AWS's default.
//! - `state`: `GatewayState`, what every request and connection shares.
//! - `server`: the accept loop (HTTP/1, header-read timeout); `tls`: TLS and plain on the one
//!   listener (the first byte decides), and the bridge an upgraded TLS connection writes through; `router`: the HTTP routes, the
//!   dispatch by path, `/healthz`; `assets`: the app's static files, with security headers;
//!   `prometheus`: the Prometheus recorder and `/metrics`; `aws_metrics`: API Gateway's
//!   CloudWatch metrics under their names; `http_error`: the HTTP error body.
//! - `upgrade`: the handshake, the `Origin` check, the authorizer's request, `$connect`;
//!   `identity_source`: the authorizer's identity sources, checked before it is invoked.
//! - `connection`: one connection's loop (one task each); `close`: the close handshake;
//!   `invoke`: route invocation, reserved concurrency, the error frames;
//!   [`route_selection`]: the route selection expression, parsed once.
//! - [`registry`]: the live connections, and [`registry::LocalConnectionsApi`], the `@connections`
//!   API over them (a post writes the socket directly; floods are coalesced); `wire`: WebSocket
//!   frames; [`close_code`]: the close codes.
//! - `management`: the HTTP `@connections` API and who may call it (and `/metrics`); `sigv4`:
//!   signature checks for it.
//! - `sweeper`: the idle and lifetime limits, and the close at shutdown; `signals`: SIGINT and
//!   SIGTERM.
//! - [`events`]: the API Gateway events the integrations receive; `access_log`: the stage's
//!   access log (`AccessLogSettings`), one line per connect, message and disconnect.
//! - [`throttle`]: token buckets. [`auth`]: the `$connect` authorizer port.
//!
//! The modules depend on each other in one direction only: each uses only modules listed
//! below it (besides `events`, `auth`, `http_error` and `route_selection`, which use none, and
//! `settings`, which uses only `route_selection`, `identity_source` and `access_log`).
//!
//! ```text
//! lib         → router, server, sweeper, signals, state, registry, prometheus, aws_metrics,
//!               access_log
//! router      → upgrade, management, prometheus, assets, state, http_error
//! upgrade     → connection, invoke, state, registry, identity_source, events, auth, aws_metrics,
//!               access_log, http_error, close_code
//! prometheus  → management, state, aws_metrics, http_error
//! connection  → close, invoke, state, registry, wire, tls, close_code
//! management  → state, events, sigv4
//! invoke      → state, registry, events, throttle, aws_metrics, access_log
//! sweeper     → state, close_code
//! close       → registry, wire, close_code
//! state       → registry, throttle, auth, settings, route_selection, identity_source, access_log
//! access_log  → settings, events
//! identity_source → events
//! registry    → wire, events, close_code
//! wire        → close_code
//! server      → tls, settings
//! sigv4, throttle, aws_metrics → settings
//! ```
//!
//! How a connection is built for memory and CPU: `docs/gateway.md`, "One connection".
//!
//! # Repeated on purpose
//!
//! - The settings structs (`settings`) and the access log's record (`access_log`) share their
//!   shape with the template model's structs: one documented field per API Gateway setting or
//!   `$context` variable, named as AWS names it.
//! - `registry`'s `post_to_many` restates `dynamowave_apigw::ConnectionsApi`'s signature.

mod access_log;
mod assets;
pub mod auth;
mod aws_metrics;
mod close;
pub mod close_code;
mod connection;
pub mod events;
mod http_error;
mod identity_source;
mod invoke;
mod management;
mod prometheus;
pub mod registry;
pub mod route_selection;
mod router;
mod server;
pub mod settings;
mod signals;
mod sigv4;
mod state;
mod sweeper;
pub mod throttle;
mod tls;
mod upgrade;
mod wire;

use std::net::SocketAddr;
use std::sync::Arc;

use dynamowave_apigw::App;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::info;

pub use auth::{AuthDecision, ConnectAuthorizer};
pub use settings::GatewaySettings;

use registry::{LocalConnectionsApi, Registry};
use state::{Bound, GatewayState};

/// Errors building or running the gateway.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    /// A setting that cannot be used (it is named in the message).
    #[error("invalid gateway settings: {0}")]
    Settings(String),
    #[error("server error: {0}")]
    Serve(#[from] std::io::Error),
}

/// A handle that stops a running gateway.
#[derive(Clone)]
pub struct ShutdownHandle(CancellationToken);

impl ShutdownHandle {
    pub fn shutdown(&self) {
        self.0.cancel();
    }
}

/// The gateway: bound to its listener, then serving an app until stopped. Its `@connections`
/// API exists from the bind on, so that an app's integrations can be built on it before the
/// routes are given.
pub struct Gateway {
    listener: TcpListener,
    bound: Bound,
}

impl Gateway {
    /// Binds `settings.listen` (port 0 picks one: see [`Gateway::local_addr`]).
    /// Settings that cannot be used are refused first ([`GatewaySettings::validate`]).
    pub async fn bind(settings: GatewaySettings) -> Result<Gateway, GatewayError> {
        settings.validate()?;
        let listener = TcpListener::bind(settings.listen)
            .await
            .map_err(|source| GatewayError::Bind { addr: settings.listen, source })?;
        Self::on_listener(listener, settings)
    }

    /// As [`Gateway::bind`], on a listener the caller bound (`settings.listen` is not used).
    pub fn on_listener(listener: TcpListener, settings: GatewaySettings) -> Result<Gateway, GatewayError> {
        let checked = settings.checked()?;
        let local_addr = listener.local_addr()?;
        // Installed before anything is counted.
        prometheus::recorder();
        let api = Arc::new(LocalConnectionsApi {
            registry: Arc::new(Registry::default()),
            max_payload_bytes: settings.limits.max_message_bytes,
            coalesce: settings.limits.coalesce,
            send_queue_wait: settings.limits.send_queue_wait,
            message_count: aws_metrics::messages_out(&settings.api_id, &settings.stage),
        });
        let access_log = match &settings.access_log {
            Some(log) => Some(
                access_log::AccessLogger::open(log, &settings.stage, &settings.api_id)
                    .map_err(GatewayError::Settings)?,
            ),
            None => None,
        };
        let bound = Bound { settings, checked, access_log, local_addr, api, shutdown: CancellationToken::new() };
        Ok(Gateway { listener, bound })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.bound.local_addr
    }

    /// The `@connections` API of this gateway, for in-process integrations.
    pub fn connections_api(&self) -> Arc<LocalConnectionsApi> {
        self.bound.api.clone()
    }

    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle(self.bound.shutdown.clone())
    }

    /// Serves `app` (with `authorizer` on `$connect`, if any) until the shutdown handle is used
    /// (or SIGINT/SIGTERM, if the settings say so). Then: stops accepting, closes every
    /// connection with 1001, runs `$disconnect` for each, and returns once they are all done.
    /// The caller then flushes its store.
    pub async fn serve(self, app: App, authorizer: Option<Arc<dyn ConnectAuthorizer>>) -> Result<(), GatewayError> {
        let App { routes, error_frames, assets } = app;
        let state = Arc::new(GatewayState::new(self.bound, routes, error_frames, authorizer));
        let router = router::router(state.clone(), &assets);
        let (addr, stage) = (state.local_addr, &state.settings.stage);
        if state.settings.tls.is_some() {
            info!(
                "listening on wss://{addr}/{stage} and ws://{addr}/{stage} (management API at https://{addr}/{stage}/@connections, or http://)"
            );
        } else {
            info!("listening on ws://{addr}/{stage} (management API at http://{addr}/{stage}/@connections)");
        }
        if state.settings.handle_signals {
            let token = state.shutdown.clone();
            tokio::spawn(async move {
                signals::wait_for_signal().await;
                info!("signal received: shutting down");
                token.cancel();
            });
        }
        let sweeper = tokio::spawn(sweeper::sweep(state.clone()));
        // The accept loop runs as a task, on a runtime worker: left in the caller's future (the
        // CLI's `block_on`, on the main thread), every accepted connection would cost a hand-over
        // between two threads (a futex wake and a context switch on a busy core).
        let tls = state.settings.tls.clone();
        let accepting = server::serve(self.listener, router, &state.settings.limits, tls, state.shutdown.clone());
        let _ = tokio::spawn(accepting).await;
        let _ = sweeper.await;
        // Connections see the same token and close with 1001; wait for their `$disconnect`s.
        state.tracker.close();
        state.tracker.wait().await;
        info!("all connections closed");
        Ok(())
    }
}
