//! A JWKS document fetched from a URL, and refetched when a token names a key it lacks.
//!
//! Identity providers rotate keys: a token signed with the new key names a `kid` the cached
//! set does not have. Rather than refuse every such token until a restart, the set is fetched
//! again, but at most once per refetch interval, so that tokens with made-up kids cannot turn
//! the authorizer into a flood of requests to the provider. A failed fetch keeps the keys held.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use parking_lot::RwLock;

use crate::error::{AuthError, TokenRejection};
use crate::settings::{AuthSettings, JwksKey, parse_jwks};

/// How long one fetch of the JWKS document may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// The largest JWKS document read (a provider's is a few KB): a larger one is refused rather
/// than held in memory.
pub const MAX_JWKS_BYTES: usize = 1 << 20;

#[cfg(feature = "https")]
type Connector = hyper_rustls::HttpsConnector<HttpConnector>;
#[cfg(not(feature = "https"))]
type Connector = HttpConnector;
type HttpClient = Client<Connector, Empty<Bytes>>;

/// The client for the JWKS URL: `http://` always, `https://` with the `https` feature (rustls on
/// ring with the machine's roots, as the AWS SDK's client in the same Lambda package).
fn http_client() -> Result<HttpClient, AuthError> {
    #[cfg(feature = "https")]
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_native_roots(rustls::crypto::ring::default_provider())
        .map_err(|e| AuthError::Config(format!("JWKS client: no usable CA roots: {e}")))?
        .https_or_http()
        .enable_http1()
        .build();
    #[cfg(not(feature = "https"))]
    let connector = HttpConnector::new();
    Ok(Client::builder(TokioExecutor::new()).build(connector))
}

pub(crate) struct RemoteJwks {
    url: String,
    client: HttpClient,
    keys: RwLock<Arc<Vec<JwksKey>>>,
    /// When the last refetch was tried (successful or not); `None` until the first. The async
    /// lock also makes concurrent refetches wait for one fetch instead of each doing their own.
    last_refetch: tokio::sync::Mutex<Option<Instant>>,
}

impl RemoteJwks {
    /// Fetches the document once; an error if it cannot be fetched or holds no usable key.
    pub(crate) async fn load(url: &str) -> Result<RemoteJwks, AuthError> {
        let client = http_client()?;
        let keys = fetch(&client, url).await?;
        tracing::info!(url, keys = keys.len(), "JWKS loaded");
        Ok(RemoteJwks {
            url: url.to_owned(),
            client,
            keys: RwLock::new(Arc::new(keys)),
            last_refetch: tokio::sync::Mutex::new(None),
        })
    }

    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    pub(crate) fn keys(&self) -> Arc<Vec<JwksKey>> {
        self.keys.read().clone()
    }

    /// Fetches the document again unless that was tried less than `interval` ago. The new set
    /// replaces the old one (a key the provider dropped is no longer accepted).
    pub(crate) async fn refetch(&self, interval: Duration) {
        let mut last = self.last_refetch.lock().await;
        if last.is_some_and(|at| at.elapsed() < interval) {
            tracing::debug!(url = %self.url, "JWKS refetch skipped: the last one was too recent");
            return;
        }
        *last = Some(Instant::now());
        match fetch(&self.client, &self.url).await {
            Ok(keys) => {
                let kids: Vec<_> = keys.iter().map(|k| k.kid.clone().unwrap_or_default()).collect();
                tracing::info!(url = %self.url, ?kids, "JWKS refetched for an unknown kid");
                *self.keys.write() = Arc::new(keys);
            }
            Err(e) => tracing::warn!(url = %self.url, error = %e, "JWKS refetch failed; keeping the keys held"),
        }
    }
}

/// Runs `attempt` (a verification against `settings`' keys); when it fails because the token
/// names an unknown `kid` and a JWKS URL is configured, refetches the JWKS (rate-limited, see
/// [`RemoteJwks::refetch`]) and runs it once more.
pub(crate) async fn with_refetch<T>(
    settings: &AuthSettings,
    attempt: impl Fn() -> Result<T, AuthError>,
) -> Result<T, AuthError> {
    match (attempt(), &settings.remote_jwks) {
        (Err(AuthError::InvalidToken(TokenRejection::UnknownKey(_))), Some(remote)) => {
            remote.refetch(settings.jwks_refetch_interval).await;
            attempt()
        }
        (other, _) => other,
    }
}

async fn fetch(client: &HttpClient, url: &str) -> Result<Vec<JwksKey>, AuthError> {
    let fail = |e: &dyn std::fmt::Display| AuthError::Config(format!("fetching the JWKS from {url}: {e}"));
    let uri: hyper::Uri = url.parse().map_err(|e| fail(&e))?;
    let get = async {
        let response = client.get(uri).await.map_err(|e| fail(&e))?;
        if !response.status().is_success() {
            return Err(fail(&format!("HTTP status {}", response.status())));
        }
        let body = http_body_util::Limited::new(response.into_body(), MAX_JWKS_BYTES);
        let bytes =
            body.collect().await.map_err(|e| fail(&format!("{e} (at most {MAX_JWKS_BYTES} bytes are read)")))?;
        Ok(bytes.to_bytes())
    };
    let body = tokio::time::timeout(FETCH_TIMEOUT, get)
        .await
        .map_err(|_| fail(&format!("no complete answer within {FETCH_TIMEOUT:?}")))??;
    let text = std::str::from_utf8(&body).map_err(|e| fail(&e))?;
    parse_jwks(text).map_err(|e| AuthError::Config(format!("the JWKS at {url}: {e}")))
}
