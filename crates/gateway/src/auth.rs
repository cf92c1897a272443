//! The `$connect` authorizer port: a REQUEST authorizer decides before the upgrade, and its
//! context is repeated in `requestContext.authorizer` of every later event.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_lambda_events::apigw::ApiGatewayCustomAuthorizerRequestTypeRequest;

/// An authorizer's decision.
#[derive(Debug, Clone)]
pub enum AuthDecision {
    /// Allowed, with the context to pass to the handlers (`principalId`, `name`, …).
    Allow { context: HashMap<String, serde_json::Value> },
    /// 401: no credentials, or the authorizer answered "Unauthorized".
    Unauthorized(String),
    /// 403: the policy denies the connection.
    Forbidden(String),
    /// 500: the authorizer itself failed.
    Failed(String),
}

/// A REQUEST authorizer for `$connect`.
#[async_trait]
pub trait ConnectAuthorizer: Send + Sync {
    async fn authorize(&self, request: ApiGatewayCustomAuthorizerRequestTypeRequest) -> AuthDecision;
}

/// Reads an authorizer's JSON answer (API Gateway's shape: `principalId`, `policyDocument`,
/// `context`) into a decision; used for authorizers that run as Lambda binaries.
pub fn decision_from_response(value: &serde_json::Value) -> AuthDecision {
    let effect_allows = value.pointer("/policyDocument/Statement").and_then(|s| s.as_array()).is_some_and(|stmts| {
        !stmts.is_empty() && stmts.iter().all(|s| s.get("Effect").and_then(|e| e.as_str()) == Some("Allow"))
    });
    if !effect_allows {
        return AuthDecision::Forbidden("the authorizer's policy does not allow this connection".into());
    }
    let mut context: HashMap<String, serde_json::Value> = value
        .get("context")
        .and_then(|c| c.as_object())
        .map(|o| {
            // API Gateway stringifies every context value.
            o.iter()
                .map(|(k, v)| {
                    let s = match v {
                        serde_json::Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    (k.clone(), serde_json::Value::String(s))
                })
                .collect()
        })
        .unwrap_or_default();
    if let Some(p) = value.get("principalId").and_then(|p| p.as_str()) {
        context.insert("principalId".into(), serde_json::Value::String(p.to_string()));
    }
    AuthDecision::Allow { context }
}
