//! The `$connect` authorizers `serve` can put in front of the chat: JWT verification in this
//! process (`--jwt-secret`, `--jwks-file`), or the real `authorizer` Lambda binary in Lambda mode.

use std::sync::Arc;

use async_trait::async_trait;
use aws_lambda_events::apigw::ApiGatewayCustomAuthorizerRequestTypeRequest;
use dynamowave_auth::AuthSettings;
use dynamowave_core::integration::IntegrationError;
use dynamowave_gateway::auth::decision_from_response;
use dynamowave_gateway::{AuthDecision, ConnectAuthorizer};
use dynamowave_lambda_host::LambdaHost;

/// JWT verification in-process: the same code the `authorizer` Lambda runs.
pub struct JwtAuthorizer(pub AuthSettings);

#[async_trait]
impl ConnectAuthorizer for JwtAuthorizer {
    async fn authorize(&self, request: ApiGatewayCustomAuthorizerRequestTypeRequest) -> AuthDecision {
        match dynamowave_auth::authorize_refreshing(&self.0, &request).await {
            Ok(response) => match serde_json::to_value(&response) {
                Ok(v) => decision_from_response(&v),
                Err(e) => AuthDecision::Failed(e.to_string()),
            },
            Err(e) => match e.status_code() {
                401 => AuthDecision::Unauthorized(e.to_string()),
                403 => AuthDecision::Forbidden(e.to_string()),
                _ => AuthDecision::Failed(e.to_string()),
            },
        }
    }
}

/// The `authorizer` Lambda binary, run by the local Lambda host. As on API Gateway, an error
/// answer "Unauthorized" means 401, a Deny policy 403, anything else 500.
pub struct LambdaAuthorizer {
    pub host: Arc<LambdaHost>,
    pub function: String,
}

#[async_trait]
impl ConnectAuthorizer for LambdaAuthorizer {
    async fn authorize(&self, request: ApiGatewayCustomAuthorizerRequestTypeRequest) -> AuthDecision {
        let event = match serde_json::to_value(&request) {
            Ok(v) => v,
            Err(e) => return AuthDecision::Failed(e.to_string()),
        };
        match self.host.invoke_json(&self.function, event).await {
            Ok(answer) => decision_from_response(&answer),
            Err(IntegrationError::Failed(why)) if why.contains("Unauthorized") => AuthDecision::Unauthorized(why),
            Err(e) => AuthDecision::Failed(e.to_string()),
        }
    }
}
