//! The integration port ([`Integration`], from `dynamowave-apigw`) and [`InProcess`], the chat's
//! handlers called in this process. The gateway's Lambda mode implements the same trait by
//! hosting the Lambda Runtime API for real `bootstrap` binaries.

use async_trait::async_trait;
use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
pub use dynamowave_apigw::integration::{Integration, IntegrationError};

use crate::handlers::{ChatDeps, handle};

/// The handlers, called in this process.
pub struct InProcess(pub ChatDeps);

#[async_trait]
impl Integration for InProcess {
    async fn invoke(
        &self,
        event: ApiGatewayWebsocketProxyRequest,
    ) -> Result<ApiGatewayProxyResponse, IntegrationError> {
        handle(&self.0, event).await.map_err(|e| IntegrationError::Failed(e.to_string()))
    }
}
