//! The integration port: how a gateway invokes a route's backend, as API Gateway invokes a
//! Lambda proxy integration. The chat's handlers implement it in-process
//! (`dynamowave_core::integration::InProcess`); Lambda mode (`dynamowave serve --handlers
//! lambda`) implements it by hosting the Lambda Runtime API for real `bootstrap` binaries.

use async_trait::async_trait;
use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};

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
