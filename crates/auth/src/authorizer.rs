//! The `$connect` REQUEST authorizer: from API Gateway's event to an IAM policy.

use std::collections::HashMap;

use aws_lambda_events::apigw::{
    ApiGatewayCustomAuthorizerPolicy, ApiGatewayCustomAuthorizerRequestTypeRequest, ApiGatewayCustomAuthorizerResponse,
};
use aws_lambda_events::iam::{IamPolicyEffect, IamPolicyStatement};

use crate::error::AuthError;
use crate::settings::AuthSettings;
use crate::verify::{Claims, token_from, verify_token};

/// The principal when only the origin is checked (no keys configured).
pub const ANONYMOUS_PRINCIPAL: &str = "anonymous";

/// The principal of a [`deny`] policy.
pub const DENIED_PRINCIPAL: &str = "denied";

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
    crate::jwks::with_refetch(settings, || authorize(settings, req)).await
}

/// An explicit Deny policy for `method_arn`, principal [`DENIED_PRINCIPAL`], no context: what
/// an authorizer answers when it refuses a request outright (API Gateway then answers 403).
pub fn deny(method_arn: &str) -> ApiGatewayCustomAuthorizerResponse {
    policy(IamPolicyEffect::Deny, DENIED_PRINCIPAL, method_arn)
}

fn allow(claims: &Claims, method_arn: &str) -> ApiGatewayCustomAuthorizerResponse {
    // Context values must be strings, numbers or booleans: leave `name` out rather than null.
    let mut context = serde_json::Map::new();
    context.insert("principalId".into(), claims.principal_id.clone().into());
    if let Some(name) = &claims.name {
        context.insert("name".into(), name.clone().into());
    }
    let mut response = policy(IamPolicyEffect::Allow, &claims.principal_id, method_arn);
    response.context = serde_json::Value::Object(context);
    response
}

/// A one-statement policy: `effect` on `execute-api:Invoke` of `method_arn`, for `principal_id`.
fn policy(effect: IamPolicyEffect, principal_id: &str, method_arn: &str) -> ApiGatewayCustomAuthorizerResponse {
    // The event types are non_exhaustive: build from Default and fill in.
    let mut statement = IamPolicyStatement::default();
    statement.action = vec!["execute-api:Invoke".to_owned()];
    statement.effect = effect;
    statement.resource = vec![method_arn.to_owned()];
    let mut policy = ApiGatewayCustomAuthorizerPolicy::default();
    policy.version = Some("2012-10-17".to_owned());
    policy.statement = vec![statement];
    let mut response = ApiGatewayCustomAuthorizerResponse::default();
    response.principal_id = Some(principal_id.to_owned());
    response.policy_document = policy;
    response
}
