//! # dynamowave-gateway: a local API Gateway WebSocket API
//!
//! Behaves as API Gateway does in front of an app's integrations (where it knowingly differs:
//! `docs/gateway.md`): `$connect` decides the upgrade, routes are selected by
//! `$request.body.action`, frames and messages are limited (32 KiB / 128 KiB, close 1009), binary
//! frames close 1003, invalid UTF-8 1007, idle and lifetime timers, token-bucket throttling per
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
//! - `server`: the accept loop (HTTP/1, header-read timeout); `router`: the HTTP routes, the
//!   dispatch by path, `/healthz`; `assets`: the app's static files, with security headers;
//!   `prometheus`: the Prometheus recorder and `/metrics`; `http_error`: the HTTP error body.
//! - `upgrade`: the handshake, the `Origin` check, the authorizer's request, `$connect`.
//! - `connection`: one connection's loop (one task each); `close`: the close handshake;
//!   `invoke`: route selection and invocation, reserved concurrency, the error frames.
//! - [`registry`]: the live connections, and [`registry::LocalConnectionsApi`], the `@connections`
//!   API over them (a post writes the socket directly; floods are coalesced); `wire`: WebSocket
//!   frames; [`close_code`]: the close codes.
//! - `management`: the HTTP `@connections` API and who may call it (and `/metrics`); `sigv4`:
//!   signature checks for it.
//! - `sweeper`: the idle and lifetime limits, and the close at shutdown; `signals`: SIGINT and
//!   SIGTERM.
//! - [`events`]: the API Gateway events the integrations receive.
//! - [`throttle`]: token buckets. [`auth`]: the `$connect` authorizer port.
//!
//! The modules depend on each other in one direction only: each uses only modules listed
//! below it (besides `settings`, `events`, `auth` and `http_error`, which use none).
//!
//! ```text
//! lib         → router, server, sweeper, signals, state, registry, prometheus
//! router      → upgrade, management, prometheus, assets, state, http_error
//! upgrade     → connection, invoke, state, registry, events, auth, http_error, close_code
//! prometheus  → management, state, http_error
//! connection  → close, invoke, state, registry, wire, close_code
//! management  → state, events, sigv4
//! invoke      → state, registry, events, throttle
//! sweeper     → state, close_code
//! close       → registry, wire, close_code
//! state       → registry, throttle, auth, settings
//! registry    → wire, events, close_code
//! wire        → close_code
//! server, sigv4, throttle → settings
//! ```
//!
//! How a connection is built for memory and CPU: `docs/gateway.md`, "One connection".

mod assets;
pub mod auth;
mod close;
pub mod close_code;
mod connection;
pub mod events;
mod http_error;
mod invoke;
mod management;
mod prometheus;
pub mod registry;
mod router;
mod server;
pub mod settings;
mod signals;
mod sigv4;
mod state;
mod sweeper;
pub mod throttle;
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
    pub async fn bind(settings: GatewaySettings) -> Result<Gateway, GatewayError> {
        let listener = TcpListener::bind(settings.listen)
            .await
            .map_err(|source| GatewayError::Bind { addr: settings.listen, source })?;
        Self::on_listener(listener, settings)
    }

    /// As [`Gateway::bind`], on a listener the caller bound (`settings.listen` is not used).
    pub fn on_listener(listener: TcpListener, settings: GatewaySettings) -> Result<Gateway, GatewayError> {
        let local_addr = listener.local_addr()?;
        // Installed before anything is counted.
        prometheus::recorder();
        let api = Arc::new(LocalConnectionsApi {
            registry: Arc::new(Registry::default()),
            max_payload_bytes: settings.limits.max_message_bytes,
            coalesce: settings.limits.coalesce,
            send_queue_wait: settings.limits.send_queue_wait,
        });
        let bound = Bound { settings, local_addr, api, shutdown: CancellationToken::new() };
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
        info!(
            "listening on ws://{}/{} (management API at http://{}/{}/@connections)",
            state.local_addr, state.settings.stage, state.local_addr, state.settings.stage
        );
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
        let accepting = server::serve(self.listener, router, &state.settings.limits, state.shutdown.clone());
        let _ = tokio::spawn(accepting).await;
        let _ = sweeper.await;
        // Connections see the same token and close with 1001; wait for their `$disconnect`s.
        state.tracker.close();
        state.tracker.wait().await;
        info!("all connections closed");
        Ok(())
    }
}
