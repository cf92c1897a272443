//! [`ConnectionsApi`] on API Gateway's `@connections` management API
//! (`aws-sdk-apigatewaymanagement`), and [`ConnectionsApiPool`], which picks the endpoint an
//! event came through and keeps one client per endpoint for the life of the Lambda container.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;
use aws_sdk_apigatewaymanagement::Client;
use aws_sdk_apigatewaymanagement::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_apigatewaymanagement::primitives::{Blob, DateTime};
use bytes::Bytes;
use dynamowave_core::{ConnectionInfo, ConnectionsApi, ConnectionsApiError, HandlerError};
use futures_util::StreamExt;
use parking_lot::Mutex;

/// Overrides the `@connections` endpoint for every event: e.g. the local gateway's
/// `http://127.0.0.1:PORT/{stage}` (`{stage}` is replaced by the event's stage).
pub const CONNECTIONS_ENDPOINT_ENV: &str = "DYNAMOWAVE_CONNECTIONS_ENDPOINT";

/// API Gateway's `@connections` API at one endpoint (`https://{domainName}/{stage}`).
#[derive(Clone, Debug)]
pub struct ApiGatewayConnectionsApi {
    client: Client,
    endpoint: String,
}

impl ApiGatewayConnectionsApi {
    /// A client for `endpoint_url`, signing with `sdk_config`'s credentials and region.
    pub fn new(sdk_config: &SdkConfig, endpoint_url: impl Into<String>) -> Self {
        let endpoint = endpoint_url.into();
        let config = aws_sdk_apigatewaymanagement::config::Builder::from(sdk_config).endpoint_url(&endpoint).build();
        Self { client: Client::from_conf(config), endpoint }
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }
}

/// Maps an SDK error by its error code (`x-amzn-errortype`), or by HTTP status when a
/// gateway sent none, to the port's error.
fn map_error<E, R>(err: SdkError<E, R>) -> ConnectionsApiError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + HasStatus,
{
    let code = err.as_service_error().and_then(ProvideErrorMetadata::code).map(str::to_string);
    let message = err.as_service_error().and_then(ProvideErrorMetadata::message).unwrap_or_default().to_string();
    let status = err.raw_response().map(HasStatus::status_code);
    match (code.as_deref(), status) {
        (Some("GoneException"), _) | (None, Some(410)) => ConnectionsApiError::Gone,
        (Some("PayloadTooLargeException"), _) | (None, Some(413)) => ConnectionsApiError::PayloadTooLarge(message),
        (Some("LimitExceededException"), _) | (None, Some(429)) => ConnectionsApiError::LimitExceeded(message),
        (Some("ForbiddenException"), _) | (None, Some(403)) => ConnectionsApiError::Forbidden(message),
        _ => ConnectionsApiError::Other(DisplayErrorContext(&err).to_string()),
    }
}

/// The HTTP status of a raw response (a trait so `map_error` stays generic over the SDK's
/// response type).
trait HasStatus {
    fn status_code(&self) -> u16;
}

impl HasStatus for aws_sdk_apigatewaymanagement::config::http::HttpResponse {
    fn status_code(&self) -> u16 {
        self.status().as_u16()
    }
}

fn millis(t: Option<&DateTime>, field: &str) -> Result<i64, ConnectionsApiError> {
    let t = t.ok_or_else(|| ConnectionsApiError::Other(format!("GetConnection answer has no {field}")))?;
    t.to_millis().map_err(|e| ConnectionsApiError::Other(format!("GetConnection {field} out of range: {e}")))
}

#[async_trait]
impl ConnectionsApi for ApiGatewayConnectionsApi {
    async fn post_to_connection(&self, connection_id: &str, data: Bytes) -> Result<(), ConnectionsApiError> {
        // The SDK's Blob owns a Vec, so each request copies the frame once; the frame itself
        // is still built once per broadcast.
        self.client
            .post_to_connection()
            .connection_id(connection_id)
            .data(Blob::new(data.to_vec()))
            .send()
            .await
            .map_err(map_error)?;
        Ok(())
    }

    async fn get_connection(&self, connection_id: &str) -> Result<ConnectionInfo, ConnectionsApiError> {
        let out = self.client.get_connection().connection_id(connection_id).send().await.map_err(map_error)?;
        let identity = out.identity();
        Ok(ConnectionInfo {
            connected_at: millis(out.connected_at(), "connectedAt")?,
            source_ip: identity.and_then(|i| i.source_ip()).unwrap_or_default().to_string(),
            user_agent: identity.and_then(|i| i.user_agent()).map(str::to_string),
            last_active_at: millis(out.last_active_at(), "lastActiveAt")?,
        })
    }

    async fn delete_connection(&self, connection_id: &str) -> Result<(), ConnectionsApiError> {
        self.client.delete_connection().connection_id(connection_id).send().await.map_err(map_error)?;
        Ok(())
    }

    /// Keeps `concurrency` posts in flight at all times (not in lockstep chunks), so one slow
    /// recipient does not hold up the rest.
    async fn post_to_many(
        &self,
        connection_ids: &[&str],
        data: Bytes,
        concurrency: usize,
    ) -> Vec<(String, ConnectionsApiError)> {
        // Indices rather than `&str`s in the closures: a closure over a borrowed id is not
        // general enough for the `Send` future async_trait needs.
        let mut posts = futures_util::stream::iter(0..connection_ids.len())
            .map(|i| {
                let data = data.clone();
                async move { (i, self.post_to_connection(connection_ids[i], data).await) }
            })
            .buffer_unordered(concurrency.max(1));
        let mut failed = Vec::new();
        while let Some((i, result)) = posts.next().await {
            if let Err(e) = result {
                failed.push((connection_ids[i].to_string(), e));
            }
        }
        failed
    }
}

/// The `@connections` endpoint for an event: `override_endpoint` when given (with `{stage}`
/// replaced by the event's stage), else `https://{domainName}/{stage}` as API Gateway's own
/// callback URL. `None` when the event lacks what is needed.
pub fn endpoint_for_event(event: &ApiGatewayWebsocketProxyRequest, override_endpoint: Option<&str>) -> Option<String> {
    let stage = event.request_context.stage.as_deref();
    if let Some(url) = override_endpoint {
        return match (url.contains("{stage}"), stage) {
            (true, Some(stage)) => Some(url.replace("{stage}", stage)),
            (true, None) => None,
            (false, _) => Some(url.trim_end_matches('/').to_string()),
        };
    }
    let domain = event.request_context.domain_name.as_deref().filter(|d| !d.is_empty())?;
    Some(format!("https://{domain}/{}", stage.filter(|s| !s.is_empty())?))
}

/// One [`ApiGatewayConnectionsApi`] per endpoint, built on first use and kept: a Lambda
/// container serves one API and stage, so this is usually one client for its whole life.
pub struct ConnectionsApiPool {
    sdk_config: SdkConfig,
    override_endpoint: Option<String>,
    clients: Mutex<HashMap<String, Arc<ApiGatewayConnectionsApi>>>,
}

impl ConnectionsApiPool {
    pub fn new(sdk_config: SdkConfig, override_endpoint: Option<String>) -> Self {
        Self { sdk_config, override_endpoint, clients: Mutex::new(HashMap::new()) }
    }

    /// With the override from `DYNAMOWAVE_CONNECTIONS_ENDPOINT`, if set.
    pub fn from_env(sdk_config: SdkConfig) -> Self {
        let override_endpoint = std::env::var(CONNECTIONS_ENDPOINT_ENV).ok().filter(|v| !v.trim().is_empty());
        Self::new(sdk_config, override_endpoint)
    }

    /// The client for the endpoint `event` came through.
    pub fn for_event(
        &self,
        event: &ApiGatewayWebsocketProxyRequest,
    ) -> Result<Arc<ApiGatewayConnectionsApi>, HandlerError> {
        let endpoint = endpoint_for_event(event, self.override_endpoint.as_deref())
            .ok_or(HandlerError::BadEvent("requestContext.domainName and requestContext.stage"))?;
        // A blocking mutex: held only for a map lookup, never across an await.
        let mut clients = self.clients.lock();
        let api = clients
            .entry(endpoint.clone())
            .or_insert_with(|| Arc::new(ApiGatewayConnectionsApi::new(&self.sdk_config, endpoint)));
        Ok(Arc::clone(api))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(domain: Option<&str>, stage: Option<&str>) -> ApiGatewayWebsocketProxyRequest {
        let mut e = ApiGatewayWebsocketProxyRequest::default();
        e.request_context.domain_name = domain.map(str::to_string);
        e.request_context.stage = stage.map(str::to_string);
        e
    }

    #[test]
    fn endpoint_is_the_callback_url_of_the_event() {
        let e = event(Some("abc.execute-api.eu-west-1.amazonaws.com"), Some("production"));
        assert_eq!(
            endpoint_for_event(&e, None).as_deref(),
            Some("https://abc.execute-api.eu-west-1.amazonaws.com/production")
        );
        assert_eq!(endpoint_for_event(&event(None, Some("p")), None), None);
        assert_eq!(endpoint_for_event(&event(Some("d"), None), None), None);
    }

    #[test]
    fn override_wins_and_takes_the_stage() {
        let e = event(Some("localhost"), Some("dev"));
        assert_eq!(
            endpoint_for_event(&e, Some("http://127.0.0.1:9/{stage}")).as_deref(),
            Some("http://127.0.0.1:9/dev")
        );
        assert_eq!(
            endpoint_for_event(&e, Some("http://127.0.0.1:9/prod/")).as_deref(),
            Some("http://127.0.0.1:9/prod")
        );
        assert_eq!(endpoint_for_event(&event(None, None), Some("http://h/{stage}")), None);
    }
}
