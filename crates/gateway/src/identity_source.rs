//! The `$connect` authorizer's identity sources, as API Gateway writes them for WebSocket APIs
//! (`route.request.header.Auth`, `route.request.querystring.token`, `stageVariables.name`,
//! `context.identity.sourceIp`). API Gateway answers 401 without invoking the authorizer when any
//! of them is missing or empty in the upgrade request: a client without credentials costs no
//! invocation. Parsed once at start.

use std::collections::HashMap;

use http::HeaderMap;

use crate::events::ConnectionContext;

/// One identity source.
#[derive(Clone, Debug, PartialEq)]
pub enum IdentitySource {
    /// `route.request.header.NAME` (case-insensitive, as HTTP header names are).
    Header(String),
    /// `route.request.querystring.NAME`.
    QueryString(String),
    /// `stageVariables.NAME`.
    StageVariable(String),
    /// `context.NAME`: a `requestContext` value known at `$connect`.
    Context(ContextValue),
}

/// The `requestContext` values a `context.` identity source may name.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ContextValue {
    ConnectionId,
    DomainName,
    Stage,
    ApiId,
    RouteKey,
    EventType,
    SourceIp,
    UserAgent,
}

impl ContextValue {
    const ALL: [(&'static str, ContextValue); 8] = [
        ("connectionId", ContextValue::ConnectionId),
        ("domainName", ContextValue::DomainName),
        ("stage", ContextValue::Stage),
        ("apiId", ContextValue::ApiId),
        ("routeKey", ContextValue::RouteKey),
        ("eventType", ContextValue::EventType),
        ("identity.sourceIp", ContextValue::SourceIp),
        ("identity.userAgent", ContextValue::UserAgent),
    ];
}

/// What an identity source is checked against: the upgrade request and the stage.
pub(crate) struct ConnectRequest<'a> {
    pub headers: &'a HeaderMap,
    pub query: &'a HashMap<String, Vec<String>>,
    pub stage_variables: &'a HashMap<String, String>,
    pub ctx: &'a ConnectionContext,
    pub stage: &'a str,
    pub api_id: &'a str,
}

impl IdentitySource {
    /// Parses one source; the error names it and lists the forms that exist.
    pub fn parse(source: &str) -> Result<Self, String> {
        let named = |prefix: &str| source.strip_prefix(prefix).filter(|name| !name.is_empty()).map(str::to_string);
        if let Some(name) = named("route.request.header.") {
            return http::HeaderName::from_bytes(name.as_bytes())
                .map(|_| IdentitySource::Header(name.clone()))
                .map_err(|_| format!("identity source {source:?}: `{name}` is not a header name"));
        }
        if let Some(name) = named("route.request.querystring.") {
            return Ok(IdentitySource::QueryString(name));
        }
        if let Some(name) = named("stageVariables.") {
            return Ok(IdentitySource::StageVariable(name));
        }
        if let Some(name) = named("context.") {
            return ContextValue::ALL
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| IdentitySource::Context(*v))
                .ok_or_else(|| {
                    let known: Vec<&str> = ContextValue::ALL.iter().map(|(n, _)| *n).collect();
                    format!("identity source {source:?}: `context.{name}` is not known at $connect (known: {known:?})")
                });
        }
        Err(format!(
            "identity source {source:?}: expected route.request.header.NAME, route.request.querystring.NAME, \
             stageVariables.NAME or context.NAME"
        ))
    }

    /// Whether the request carries this source, not empty.
    pub(crate) fn present(&self, request: &ConnectRequest<'_>) -> bool {
        let non_empty = |s: Option<&str>| s.is_some_and(|s| !s.is_empty());
        match self {
            IdentitySource::Header(name) => request.headers.get_all(name.as_str()).iter().any(|v| !v.is_empty()),
            IdentitySource::QueryString(name) => {
                request.query.get(name).is_some_and(|values| values.iter().any(|v| !v.is_empty()))
            }
            IdentitySource::StageVariable(name) => non_empty(request.stage_variables.get(name).map(String::as_str)),
            IdentitySource::Context(value) => match value {
                ContextValue::ConnectionId => non_empty(Some(&request.ctx.connection_id)),
                ContextValue::DomainName => non_empty(Some(&request.ctx.domain_name)),
                ContextValue::Stage => non_empty(Some(request.stage)),
                ContextValue::ApiId => non_empty(Some(request.api_id)),
                ContextValue::RouteKey | ContextValue::EventType | ContextValue::SourceIp => true,
                ContextValue::UserAgent => non_empty(request.ctx.user_agent.as_deref()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_gateways_forms_parse_and_others_are_refused() {
        assert_eq!(IdentitySource::parse("route.request.header.Auth"), Ok(IdentitySource::Header("Auth".into())));
        assert_eq!(
            IdentitySource::parse("route.request.querystring.token"),
            Ok(IdentitySource::QueryString("token".into()))
        );
        assert_eq!(IdentitySource::parse("stageVariables.key"), Ok(IdentitySource::StageVariable("key".into())));
        assert_eq!(
            IdentitySource::parse("context.identity.sourceIp"),
            Ok(IdentitySource::Context(ContextValue::SourceIp))
        );
        for bad in [
            "",
            "$request.header.Auth",
            "route.request.header.",
            "route.request.header.a b",
            "method.request.header.Auth",
            "context.nope",
        ] {
            let why = IdentitySource::parse(bad).expect_err(bad);
            assert!(why.contains(&format!("{bad:?}")), "{why}");
        }
    }
}
