//! The accept loop. axum's `serve` sets no header-read timeout, so a client could hold a
//! connection open forever by sending an upgrade request one byte at a time (slowloris); this
//! loop serves each TCP connection with hyper's HTTP/1 builder, a timer and a header-read
//! timeout, with the peer address attached for `ConnectInfo`.
//!
//! HTTP/1 only (WebSocket upgrades and the `@connections` API are HTTP/1.1), and served on the
//! plain `TokioIo<TcpStream>`, so that after an upgrade `connection` gets the `TcpStream` itself back
//! (`Upgraded::downcast`) and hyper's connection buffers are freed.

use std::pin::pin;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use tracing::{debug, warn};

use crate::settings::Limits;

/// Accepts until `shutdown`, serving every connection (upgrades included) with `app`, under
/// `limits`' header-read timeout and request-head size.
pub(crate) fn serve(
    listener: TcpListener,
    app: Router,
    limits: &Limits,
    shutdown: CancellationToken,
) -> impl Future<Output = ()> + Send + 'static {
    let (header_read_timeout, max_header_bytes) = (limits.header_read_timeout, limits.max_header_bytes);
    accept(listener, app, header_read_timeout, max_header_bytes, shutdown)
}

async fn accept(
    listener: TcpListener,
    app: Router,
    header_read_timeout: Duration,
    max_header_bytes: usize,
    shutdown: CancellationToken,
) {
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let service = app.map_request(move |mut req: hyper::Request<Incoming>| {
                req.extensions_mut().insert(ConnectInfo(peer));
                req.map(axum::body::Body::new)
            });
            let service = TowerToHyperService::new(service);
            let mut builder = http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(header_read_timeout)
                .max_buf_size(max_header_bytes.max(8192));
            let mut conn = pin!(builder.serve_connection(TokioIo::new(stream), service).with_upgrades());
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(e) = result {
                        debug!(%peer, error = %e, "HTTP connection ended with an error");
                    }
                }
                _ = shutdown.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(Duration::from_secs(5), conn).await;
                }
            }
        });
    }
}
