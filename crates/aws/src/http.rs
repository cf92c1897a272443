//! The SDK clients' HTTP client: HTTP/1.1 over hyper-util's pooled client, TLS by rustls on ring
//! with the machine's roots (`SSL_CERT_FILE` replaces them).
//!
//! Not `aws-smithy-http-client`'s client: that one always builds hyper with HTTP/2 (its
//! `default-client` feature turns on `http2`, and `h2` is not optional), about 0.4 MiB of every
//! Lambda package that DynamoDB's and `@connections`' endpoints never use (both speak HTTP/1.1).
//! What this client keeps of it: one pool per distinct pair of timeouts the SDK asks for, the
//! connect timeout on the TCP connect, the read timeout up to the response's head, and its
//! classification of failures (I/O and timeouts are transient, so the SDK's retry policy
//! retries them).

use std::collections::HashMap;
use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::retry::ErrorKind;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector as TcpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use parking_lot::Mutex;

type Pool = Client<HttpsConnector<TcpConnector>, SdkBody>;

/// The SDK's HTTP client (see the module doc). Cheap to clone: the pools are shared.
#[derive(Clone, Debug, Default)]
pub struct Http1Client {
    pools: Arc<Mutex<HashMap<Timeouts, SharedHttpConnector>>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Timeouts {
    connect: Option<Duration>,
    read: Option<Duration>,
}

impl Http1Client {
    pub fn new() -> Self {
        Self::default()
    }
}

impl HttpClient for Http1Client {
    fn http_connector(&self, settings: &HttpConnectorSettings, _: &RuntimeComponents) -> SharedHttpConnector {
        let timeouts = Timeouts { connect: settings.connect_timeout(), read: settings.read_timeout() };
        self.pools.lock().entry(timeouts).or_insert_with(|| SharedHttpConnector::new(Connector::new(timeouts))).clone()
    }
}

/// One pool of connections, with its timeouts.
struct Connector {
    /// An error when the machine has no usable CA roots: every request then fails with it (a
    /// user error, not retried) rather than the process at start.
    pool: Result<Pool, String>,
    read_timeout: Option<Duration>,
}

impl fmt::Debug for Connector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connector").field("read_timeout", &self.read_timeout).finish_non_exhaustive()
    }
}

impl Connector {
    fn new(timeouts: Timeouts) -> Self {
        let mut tcp = TcpConnector::new();
        tcp.enforce_http(false);
        tcp.set_nodelay(true);
        tcp.set_connect_timeout(timeouts.connect);
        let pool = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(rustls::crypto::ring::default_provider())
            .map(|builder| {
                let https = builder.https_or_http().enable_http1().wrap_connector(tcp);
                Client::builder(TokioExecutor::new()).pool_timer(TokioTimer::new()).build(https)
            })
            .map_err(|e| format!("no usable CA roots for HTTPS: {e}"));
        Self { pool, read_timeout: timeouts.read }
    }
}

impl HttpConnector for Connector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let pool = match &self.pool {
            Ok(pool) => pool.clone(),
            Err(e) => return HttpConnectorFuture::ready(Err(ConnectorError::user(e.clone().into()))),
        };
        let request = match request.try_into_http1x() {
            Ok(request) => request,
            Err(e) => return HttpConnectorFuture::ready(Err(ConnectorError::user(e.into()))),
        };
        let read_timeout = self.read_timeout;
        HttpConnectorFuture::new(async move {
            let response = pool.request(request);
            let response = match read_timeout {
                Some(limit) => tokio::time::timeout(limit, response).await.map_err(|_| {
                    ConnectorError::timeout(format!("no response within the read timeout of {limit:?}").into())
                })?,
                None => response.await,
            };
            match response {
                Ok(response) => HttpResponse::try_from(response.map(SdkBody::from_body_1_x))
                    .map_err(|e| ConnectorError::other(e.into(), None)),
                Err(e) => Err(classify(e)),
            }
        })
    }
}

/// What kind of failure a request's error is, for the SDK's retry policy (as
/// `aws-smithy-http-client` classifies hyper's errors).
fn classify(error: hyper_util::client::legacy::Error) -> ConnectorError {
    let io = error.is_connect() || source::<std::io::Error>(&error).is_some();
    let hyper = source::<hyper::Error>(&error)
        .map(|h| (h.is_timeout(), h.is_user(), h.is_closed() || h.is_canceled(), h.is_incomplete_message()));
    match hyper {
        Some((true, _, _, _)) => ConnectorError::timeout(error.into()),
        Some((_, true, _, _)) => ConnectorError::user(error.into()),
        Some((_, _, true, _)) => ConnectorError::io(error.into()),
        _ if io => ConnectorError::io(error.into()),
        Some((_, _, _, true)) => ConnectorError::other(error.into(), Some(ErrorKind::TransientError)),
        _ => ConnectorError::other(error.into(), None),
    }
}

/// The first error of type `E` in `error`'s chain of sources.
fn source<'a, E: StdError + 'static>(error: &'a (dyn StdError + 'static)) -> Option<&'a E> {
    std::iter::successors(Some(error), |&e| e.source()).find_map(|e| e.downcast_ref::<E>())
}
