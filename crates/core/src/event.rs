//! Reading an API Gateway WebSocket event (`aws_lambda_events`' type, the contract between the
//! gateway and the handlers).

use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;

use crate::error::HandlerError;

/// Authorizer context keys the handlers read (set by the `$connect` authorizer).
pub const AUTH_PRINCIPAL: &str = "principalId";
pub const AUTH_NAME: &str = "name";

/// Accessors for the fields handlers need.
pub trait WebSocketEventExt {
    fn connection_id(&self) -> Result<&str, HandlerError>;
    fn route_key(&self) -> &str;
    fn request_id(&self) -> &str;
    fn source_ip(&self) -> &str;
    fn user_agent(&self) -> Option<&str>;
    fn header(&self, name: &str) -> Option<&str>;
    /// A string from `requestContext.authorizer` (API Gateway stringifies every value).
    fn authorizer_field(&self, key: &str) -> Option<String>;
}

impl WebSocketEventExt for ApiGatewayWebsocketProxyRequest {
    fn connection_id(&self) -> Result<&str, HandlerError> {
        self.request_context.connection_id.as_deref().ok_or(HandlerError::BadEvent("requestContext.connectionId"))
    }

    fn route_key(&self) -> &str {
        self.request_context.route_key.as_deref().unwrap_or("$default")
    }

    fn request_id(&self) -> &str {
        self.request_context.request_id.as_deref().unwrap_or("")
    }

    fn source_ip(&self) -> &str {
        self.request_context.identity.source_ip.as_deref().unwrap_or("")
    }

    fn user_agent(&self) -> Option<&str> {
        self.request_context.identity.user_agent.as_deref().or_else(|| self.header("user-agent"))
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn authorizer_field(&self, key: &str) -> Option<String> {
        match self.request_context.authorizer.fields.get(key)? {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Null => None,
            other => Some(other.to_string()),
        }
    }
}
