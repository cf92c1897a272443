//! The integration port: how a gateway invokes a route's backend, as API Gateway invokes a
//! Lambda proxy integration. The chat's handlers implement it in-process
//! (`dynamowave_core::integration::InProcess`); Lambda mode (`dynamowave serve --handlers
//! lambda`) implements it by hosting the Lambda Runtime API for real `bootstrap` binaries.
//! [`integration_fn`] makes one of an async function, as `lambda_runtime::service_fn` does a
//! handler, and [`proxy_response`] is the answer a proxy integration gives.

use std::future::Future;

use async_trait::async_trait;
use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use aws_lambda_events::encodings::Body;

/// Why an invocation produced no response. API Gateway answers each of these the same way: the
/// client gets `{"message": "Internal server error", ...}` (or `$connect` fails with 500).
#[derive(Debug, thiserror::Error)]
pub enum IntegrationError {
    #[error("the function failed: {0}")]
    Failed(String),
    #[error("the function timed out")]
    Timeout,
    #[error("the function was throttled (reserved concurrency exhausted)")]
    Throttled,
}

/// A route's backend.
#[async_trait]
pub trait Integration: Send + Sync {
    async fn invoke(&self, event: ApiGatewayWebsocketProxyRequest)
    -> Result<ApiGatewayProxyResponse, IntegrationError>;
}

/// A proxy integration's answer: `statusCode` and, when there is one, a text `body`.
pub fn proxy_response(status_code: i64, body: Option<String>) -> ApiGatewayProxyResponse {
    // The event types are non_exhaustive: build from Default and fill in.
    let mut response = ApiGatewayProxyResponse::default();
    response.status_code = status_code;
    response.body = body.map(Body::Text);
    response
}

/// An [`Integration`] that calls `f` with each event: see [`integration_fn`].
#[derive(Debug, Clone, Copy)]
pub struct IntegrationFn<F>(F);

/// An integration from an async function of the event, for a backend with no state of its own
/// beyond what the function captures.
pub fn integration_fn<F, Fut>(f: F) -> IntegrationFn<F>
where
    F: Fn(ApiGatewayWebsocketProxyRequest) -> Fut + Send + Sync,
    Fut: Future<Output = Result<ApiGatewayProxyResponse, IntegrationError>> + Send,
{
    IntegrationFn(f)
}

#[async_trait]
impl<F, Fut> Integration for IntegrationFn<F>
where
    F: Fn(ApiGatewayWebsocketProxyRequest) -> Fut + Send + Sync,
    Fut: Future<Output = Result<ApiGatewayProxyResponse, IntegrationError>> + Send,
{
    async fn invoke(
        &self,
        event: ApiGatewayWebsocketProxyRequest,
    ) -> Result<ApiGatewayProxyResponse, IntegrationError> {
        (self.0)(event).await
    }
}
