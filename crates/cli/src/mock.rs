//! A route's integration that is not a function: API Gateway's `MOCK`, answered here as API
//! Gateway answers it, and the integration of a route that cannot be served locally, which
//! fails every invocation as a broken integration does on AWS (the client gets "Internal
//! server error", `$connect` a 500).

use async_trait::async_trait;
use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use dynamowave_apigw::proxy_response;
use dynamowave_core::integration::{Integration, IntegrationError};
use dynamowave_template::{Integration as TemplateIntegration, IntegrationResponse};

/// A `MOCK` integration: the status code is the `statusCode` of its request template (200
/// without one), the body the response template of the integration response whose key
/// matches that status, verbatim (the VTL in it is not evaluated).
#[derive(Debug, Clone)]
pub struct MockIntegration {
    status: u16,
    body: Option<String>,
}

impl MockIntegration {
    /// The mock `integration` with its `responses` (the integration responses of the API that
    /// name it).
    pub fn new(integration: &TemplateIntegration, responses: &[&IntegrationResponse]) -> MockIntegration {
        let template =
            select_template(&integration.request_templates, integration.template_selection_expression.as_deref());
        let status = template.and_then(status_code).unwrap_or(200);
        let response = responses
            .iter()
            .find(|r| r.integration_response_key != "$default" && key_matches(&r.integration_response_key, status))
            .or_else(|| responses.iter().find(|r| r.integration_response_key == "$default"));
        let body = response.and_then(|r| {
            select_template(&r.response_templates, r.template_selection_expression.as_deref()).map(str::to_string)
        });
        MockIntegration { status, body }
    }

    /// A mock answering `status` and `body`, as planned.
    pub fn answering(status: u16, body: Option<String>) -> MockIntegration {
        MockIntegration { status, body }
    }

    pub fn status(&self) -> u16 {
        self.status
    }

    pub fn body(&self) -> Option<&str> {
        self.body.as_deref()
    }
}

/// The template under the selection expression's key when it is a literal one, else the
/// `$default` one, else the only one.
fn select_template<'a>(
    templates: &'a std::collections::BTreeMap<String, String>,
    selection: Option<&str>,
) -> Option<&'a str> {
    selection
        .and_then(|key| templates.get(key))
        .or_else(|| templates.get("$default"))
        .or_else(|| if templates.len() == 1 { templates.values().next() } else { None })
        .map(String::as_str)
}

/// `{"statusCode": 200}` (JSON, or the field found in a template with VTL around it).
fn status_code(template: &str) -> Option<u16> {
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(template) {
        return v
            .get("statusCode")
            .and_then(|s| s.as_u64().or_else(|| s.as_str()?.parse().ok()))
            .and_then(|n| u16::try_from(n).ok());
    }
    let re = regex::Regex::new(r#""statusCode"\s*:\s*"?(\d{3})"#).ok()?;
    re.captures(template)?.get(1)?.as_str().parse().ok()
}

/// An integration response key: `/REGEX/` over the status code, as API Gateway reads it.
fn key_matches(key: &str, status: u16) -> bool {
    let Some(pattern) = key.strip_prefix('/').and_then(|k| k.strip_suffix('/')) else {
        return key == status.to_string();
    };
    regex::Regex::new(&format!("^(?:{pattern})$")).is_ok_and(|re| re.is_match(&status.to_string()))
}

#[async_trait]
impl Integration for MockIntegration {
    async fn invoke(
        &self,
        _event: ApiGatewayWebsocketProxyRequest,
    ) -> Result<ApiGatewayProxyResponse, IntegrationError> {
        Ok(proxy_response(i64::from(self.status), self.body.clone()))
    }
}

/// The integration of a route that cannot be served locally: why is logged at start, and
/// every invocation fails as a broken integration does on AWS.
pub struct Unavailable {
    pub why: String,
}

#[async_trait]
impl Integration for Unavailable {
    async fn invoke(
        &self,
        _event: ApiGatewayWebsocketProxyRequest,
    ) -> Result<ApiGatewayProxyResponse, IntegrationError> {
        Err(IntegrationError::Failed(self.why.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_comes_from_the_request_template_and_selects_the_response() {
        assert_eq!(status_code(r#"{"statusCode": 200}"#), Some(200));
        assert_eq!(status_code("#set($x = 1)\n{\"statusCode\": 403}"), Some(403));
        assert_eq!(status_code("nothing"), None);
        assert!(key_matches("/2\\d{2}/", 204));
        assert!(!key_matches("/2\\d{2}/", 404));
        assert!(key_matches("/404/", 404));
    }
}
