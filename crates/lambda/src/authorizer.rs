//! The `$connect` REQUEST authorizer around `dynamowave_auth::authorize`.
//!
//! Settings come from the environment (`JWT_SECRET`, `JWKS_JSON`, `JWT_AUDIENCE`,
//! `JWT_ISSUER`, `ORIGIN_VERIFY_SECRET`, `ALLOWED_ORIGINS`), and at cold start from where production keeps them:
//! `JWT_SECRET_ARN` and `ORIGIN_VERIFY_SECRET_ARN` (Secrets Manager) and `JWKS_URL`.
//! An invocation answers an Allow policy, a Deny policy (403: a genuine token meant for
//! another audience or issuer), or the error `Unauthorized`, which API Gateway turns into 401.

use aws_config::SdkConfig;
use aws_lambda_events::apigw::{ApiGatewayCustomAuthorizerRequestTypeRequest, ApiGatewayCustomAuthorizerResponse};
use dynamowave_auth::{AllowedOrigins, AuthError, AuthSettings, check_origin, deny};
use dynamowave_core::is_warmup_event;
use lambda_runtime::Diagnostic;
use serde_json::{Value, json};
use tracing::{info, warn};

/// The one answer that makes API Gateway refuse the upgrade with 401: the function's error
/// message must be exactly `Unauthorized`.
#[derive(Debug, thiserror::Error)]
#[error("Unauthorized")]
pub struct Unauthorized;

impl From<Unauthorized> for Diagnostic {
    fn from(_: Unauthorized) -> Self {
        Diagnostic { error_type: "Unauthorized".into(), error_message: "Unauthorized".into() }
    }
}

/// A cold-start failure: the function cannot authorize anyone without its settings.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("authorizer settings: {0}")]
    Auth(#[from] AuthError),
    #[error("reading secret {arn} from Secrets Manager: {detail}")]
    Secret { arn: String, detail: String },
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().map(|v| v.trim().to_string()).filter(|v| !v.is_empty())
}

async fn secret(client: &aws_sdk_secretsmanager::Client, arn: &str) -> Result<String, SetupError> {
    let out = client.get_secret_value().secret_id(arn).send().await.map_err(|e| SetupError::Secret {
        arn: arn.to_string(),
        detail: aws_sdk_secretsmanager::error::DisplayErrorContext(&e).to_string(),
    })?;
    out.secret_string
        .ok_or_else(|| SetupError::Secret { arn: arn.to_string(), detail: "the secret has no SecretString".into() })
}

/// The authorizer's settings: environment first, then the secrets and keys named by
/// `JWT_SECRET_ARN`, `ORIGIN_VERIFY_SECRET_ARN` and `JWKS_URL`, which win where both are set.
pub async fn load_settings(sdk_config: &SdkConfig) -> Result<AuthSettings, SetupError> {
    let mut settings = AuthSettings::from_env()?;
    let secret_arn = env("JWT_SECRET_ARN");
    let origin_arn = env("ORIGIN_VERIFY_SECRET_ARN");
    if secret_arn.is_some() || origin_arn.is_some() {
        let client = aws_sdk_secretsmanager::Client::new(sdk_config);
        if let Some(arn) = secret_arn {
            settings = settings.with_hs256_secret(secret(&client, &arn).await?);
        }
        if let Some(arn) = origin_arn {
            settings = settings.with_origin_secret(secret(&client, &arn).await?);
        }
    }
    if let Some(url) = env("JWKS_URL") {
        // Fetched now, and again (rate-limited) when a token names a kid it lacks: key rotation.
        settings = settings.with_jwks_url(&url).await?;
    }
    Ok(settings)
}

/// One authorizer invocation that lets in no browser page ([`AllowedOrigins::none`]): see
/// [`authorize_event_from`].
pub fn authorize_event(settings: &AuthSettings, event: Value) -> Result<Value, Unauthorized> {
    authorize_event_from(settings, &AllowedOrigins::none(), event)
}

/// One authorizer invocation. A request from a web page whose `Origin` is neither in `origins`
/// (`ALLOWED_ORIGINS`) nor the API's own (`https://{Host}`; behind API Gateway the `Host` is the
/// API's domain) is denied (403) before its token is looked at.
pub fn authorize_event_from(
    settings: &AuthSettings,
    origins: &AllowedOrigins,
    event: Value,
) -> Result<Value, Unauthorized> {
    match gate(origins, event) {
        Gate::Answered(answered) => answered,
        Gate::Token(request) => answer(&request, dynamowave_auth::authorize(settings, &request)),
    }
}

/// [`authorize_event_from`], refetching the `JWKS_URL` document (rate-limited) when the token
/// names a kid it lacks, so that a rotated key is accepted without a new cold start.
pub async fn authorize_event_refreshing(
    settings: &AuthSettings,
    origins: &AllowedOrigins,
    event: Value,
) -> Result<Value, Unauthorized> {
    match gate(origins, event) {
        Gate::Answered(answered) => answered,
        Gate::Token(request) => answer(&request, dynamowave_auth::authorize_refreshing(settings, &request).await),
    }
}

/// What is settled before the token is looked at.
enum Gate {
    /// The warmer's ping, an event that is no REQUEST event, or a page of a foreign origin.
    Answered(Result<Value, Unauthorized>),
    /// A request whose token decides.
    Token(Box<ApiGatewayCustomAuthorizerRequestTypeRequest>),
}

fn gate(origins: &AllowedOrigins, event: Value) -> Gate {
    match parse_event(event) {
        Err(e) => Gate::Answered(Err(e)),
        Ok(None) => Gate::Answered(Ok(json!({ "warm": true }))),
        Ok(Some(request)) => match foreign_origin(&request, origins) {
            Some(denied) => Gate::Answered(denied),
            None => Gate::Token(Box::new(request)),
        },
    }
}

/// The REQUEST event, or `None` for the warmer's ping.
fn parse_event(event: Value) -> Result<Option<ApiGatewayCustomAuthorizerRequestTypeRequest>, Unauthorized> {
    if is_warmup_event(&event) {
        return Ok(None);
    }
    serde_json::from_value(event).map(Some).map_err(|e| {
        warn!(error = %e, "authorizer event is not a REQUEST authorizer event");
        Unauthorized
    })
}

/// A Deny policy for a page of a foreign origin; `None` when the origin may connect.
fn foreign_origin(
    request: &ApiGatewayCustomAuthorizerRequestTypeRequest,
    origins: &AllowedOrigins,
) -> Option<Result<Value, Unauthorized>> {
    let header = |name: &str| request.headers.get(name).map(|v| v.to_str().unwrap_or(""));
    let origin = check_origin(header("origin"), header("host"), origins).err()?;
    let request_id = request.request_context.request_id.as_deref().unwrap_or("");
    info!(request_id, origin, "connection denied (403): foreign origin");
    Some(policy(request_id, deny(request.method_arn.as_deref().unwrap_or("*"))))
}

fn answer(
    request: &ApiGatewayCustomAuthorizerRequestTypeRequest,
    decision: Result<ApiGatewayCustomAuthorizerResponse, AuthError>,
) -> Result<Value, Unauthorized> {
    // The REQUEST context type has no connectionId field; the request id ties the log lines
    // to API Gateway's access log.
    let request_id = request.request_context.request_id.as_deref().unwrap_or("");
    let response = match decision {
        Ok(allow) => {
            info!(request_id, principal_id = ?allow.principal_id, "connection authorized");
            allow
        }
        Err(e) if e.status_code() == 403 => {
            info!(request_id, error = %e, "connection denied (403)");
            deny(request.method_arn.as_deref().unwrap_or("*"))
        }
        Err(e) => {
            info!(request_id, error = %e, "connection unauthorized (401)");
            return Err(Unauthorized);
        }
    };
    policy(request_id, response)
}

fn policy(request_id: &str, response: ApiGatewayCustomAuthorizerResponse) -> Result<Value, Unauthorized> {
    serde_json::to_value(response).map_err(|e| {
        warn!(request_id, error = %e, "could not serialise the policy");
        Unauthorized
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn event(origin: Option<&str>, token: &str) -> Value {
        let mut headers = json!({ "Host": "abc123.execute-api.eu-west-1.amazonaws.com" });
        if let Some(o) = origin {
            headers["Origin"] = json!(o);
        }
        json!({
            "type": "REQUEST",
            "methodArn": "arn:aws:execute-api:eu-west-1:123456789012:abc123/production/$connect",
            "headers": headers,
            "queryStringParameters": { "token": token },
            "requestContext": { "requestId": "r1", "stage": "production", "apiId": "abc123" }
        })
    }

    fn effect(answer: &Value) -> &str {
        answer.pointer("/policyDocument/Statement/0/Effect").and_then(|e| e.as_str()).unwrap_or("")
    }

    #[test]
    fn a_foreign_origin_is_denied_even_with_a_good_token() {
        let secret = "a-secret-long-enough-for-hs256-tokens";
        let settings = AuthSettings::default().with_hs256_secret(secret.into());
        let token =
            dynamowave_auth::mint_hs256(secret, "alice", None, Duration::from_secs(3600), None, None).expect("token");
        let none = AllowedOrigins::none();
        let denied =
            authorize_event_from(&settings, &none, event(Some("https://evil.example"), &token)).expect("answer");
        assert_eq!(effect(&denied), "Deny");
        let allowed = authorize_event_from(&settings, &none, event(None, &token)).expect("answer");
        assert_eq!(effect(&allowed), "Allow", "not a browser: {allowed}");
        let listed = AllowedOrigins::parse("https://chat.example.com").expect("origins");
        let allowed = authorize_event_from(&settings, &listed, event(Some("https://chat.example.com"), &token));
        assert_eq!(effect(&allowed.expect("answer")), "Allow");
        // The origin is checked first: a foreign page learns nothing about tokens.
        let denied = authorize_event_from(&settings, &none, event(Some("https://evil.example"), "garbage"));
        assert_eq!(effect(&denied.expect("a Deny, not Unauthorized")), "Deny");
    }
}
