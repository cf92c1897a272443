//! The `$connect` REQUEST authorizer: from API Gateway's event to an IAM policy.

use std::collections::HashMap;

use aws_lambda_events::apigw::{
    ApiGatewayCustomAuthorizerPolicy, ApiGatewayCustomAuthorizerRequestTypeRequest, ApiGatewayCustomAuthorizerResponse,
};
use aws_lambda_events::iam::{IamPolicyEffect, IamPolicyStatement};

use crate::error::AuthError;
use crate::error::TokenRejection;
use crate::settings::AuthSettings;
use crate::verify::{Claims, token_from, verify_token};

/// The principal when only the origin is checked (no keys configured).
pub const ANONYMOUS_PRINCIPAL: &str = "anonymous";

/// Authorizes a `$connect`. `Ok` is an Allow policy for the request's `methodArn`, with
/// `principalId` and (when known) `name` in the context; `Err` says why not, and
/// [`AuthError::status_code`] what the client should see.
pub fn authorize(
    settings: &AuthSettings,
    req: &ApiGatewayCustomAuthorizerRequestTypeRequest,
) -> Result<ApiGatewayCustomAuthorizerResponse, AuthError> {
    let method_arn = req
        .method_arn
        .as_deref()
        .filter(|a| !a.is_empty())
        .ok_or_else(|| AuthError::BadRequest("the request has no methodArn".into()))?;

    if let Some(origin) = &settings.origin_secret {
        let presented = req.headers.get("x-origin-verify").and_then(|v| v.to_str().ok());
        if !presented.is_some_and(|p| origin.matches(p)) {
            tracing::info!(method_arn, "connection refused: origin header missing or wrong");
            return Err(AuthError::OriginMismatch);
        }
    }

    let claims = if settings.verifies_tokens() {
        // The authorizer event carries the query as a multi-map; only `token` matters here.
        let query: HashMap<String, String> = req
            .query_string_parameters
            .first("token")
            .map(|t| HashMap::from([("token".to_owned(), t.to_owned())]))
            .unwrap_or_default();
        let token = token_from(&req.headers, &query).ok_or(AuthError::MissingToken)?;
        verify_token(settings, &token).inspect_err(|e| tracing::info!(method_arn, error = %e, "token refused"))?
    } else if settings.origin_secret.is_some() {
        Claims { principal_id: ANONYMOUS_PRINCIPAL.to_owned(), name: None }
    } else {
        return Err(AuthError::NotConfigured);
    };
    // `?`: the principal comes from the token; Debug quotes it and escapes control characters.
    tracing::debug!(principal_id = ?claims.principal_id, name = ?claims.name, "connection authorized");
    Ok(allow(&claims, method_arn))
}

/// [`authorize`], refetching the JWKS URL (rate-limited) when the token names an unknown `kid`,
/// so that a provider's rotated key is accepted without a restart.
pub async fn authorize_refreshing(
    settings: &AuthSettings,
    req: &ApiGatewayCustomAuthorizerRequestTypeRequest,
) -> Result<ApiGatewayCustomAuthorizerResponse, AuthError> {
    match authorize(settings, req) {
        Err(AuthError::InvalidToken(TokenRejection::UnknownKey(_))) if settings.remote_jwks.is_some() => {
            if let Some(remote) = &settings.remote_jwks {
                remote.refetch(settings.jwks_refetch_interval).await;
            }
            authorize(settings, req)
        }
        other => other,
    }
}

fn allow(claims: &Claims, method_arn: &str) -> ApiGatewayCustomAuthorizerResponse {
    // The event types are non_exhaustive: build from Default and fill in.
    let mut statement = IamPolicyStatement::default();
    statement.action = vec!["execute-api:Invoke".to_owned()];
    statement.effect = IamPolicyEffect::Allow;
    statement.resource = vec![method_arn.to_owned()];
    let mut policy = ApiGatewayCustomAuthorizerPolicy::default();
    policy.version = Some("2012-10-17".to_owned());
    policy.statement = vec![statement];

    // Context values must be strings, numbers or booleans: leave `name` out rather than null.
    let mut context = serde_json::Map::new();
    context.insert("principalId".into(), claims.principal_id.clone().into());
    if let Some(name) = &claims.name {
        context.insert("name".into(), name.clone().into());
    }
    let mut response = ApiGatewayCustomAuthorizerResponse::default();
    response.principal_id = Some(claims.principal_id.clone());
    response.policy_document = policy;
    response.context = serde_json::Value::Object(context);
    response
}
