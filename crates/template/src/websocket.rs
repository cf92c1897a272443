//! WebSocket APIs: `AWS::ApiGatewayV2::Api` with `ProtocolType: WEBSOCKET` and the
//! `AWS::ApiGatewayV2` resources attached to it by `ApiId`, and SAM's
//! `AWS::Serverless::WebSocketApi`, read as the resources SAM generates from it (its
//! logical ids its translator gives: `<Api><Key>Route`, `<Api><Key>Integration`,
//! `<Api>ConnectAuthorizer`, `<Api><StageName>Stage`).

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::Value;

use crate::error::{Error, Problem};
use crate::eval::Context;
use crate::functions::Function;
use crate::names;
use crate::props::{Fields, Props, as_object, as_string_map};
use crate::template::Resource;

/// API Gateway's integration timeout (and its maximum), in milliseconds.
const DEFAULT_TIMEOUT_IN_MILLIS: u64 = 29_000;

/// A WebSocket API to serve.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WebSocketApi {
    /// The logical id.
    pub logical_id: String,
    /// `AWS::ApiGatewayV2::Api` or `AWS::Serverless::WebSocketApi`.
    pub resource_type: String,
    /// The local API id (what `Ref` returns).
    pub api_id: String,
    /// `Name`.
    pub name: String,
    /// `Description`.
    pub description: Option<String>,
    /// `RouteSelectionExpression`, e.g. `$request.body.action`.
    pub route_selection_expression: String,
    /// `ApiKeySelectionExpression`.
    pub api_key_selection_expression: Option<String>,
    /// `Fn::GetAtt Api.ApiEndpoint`: `wss://<apiId>.execute-api.<region>.<suffix>`.
    pub api_endpoint: String,
    /// The routes, by route key.
    pub routes: Vec<Route>,
    /// The integrations, by logical id.
    pub integrations: Vec<Integration>,
    /// The route responses (two-way routes), by logical id.
    pub route_responses: Vec<RouteResponse>,
    /// The integration responses, by logical id.
    pub integration_responses: Vec<IntegrationResponse>,
    /// The authorizers, by logical id.
    pub authorizers: Vec<Authorizer>,
    /// The stages, by logical id.
    pub stages: Vec<Stage>,
    /// The `AWS::ApiGatewayV2::Deployment`s' logical ids: listed, not needed locally (a stage
    /// serves the template's routes as they are).
    pub deployments: Vec<String>,
}

/// A route.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Route {
    /// The logical id.
    pub logical_id: String,
    /// `RouteKey`: `$connect`, `$disconnect`, `$default` or a custom key.
    pub route_key: String,
    /// The logical id of the integration `Target` (`integrations/<id>`) names.
    pub integration: Option<String>,
    /// `AuthorizationType`: `NONE` (the default), `AWS_IAM` or `CUSTOM`.
    pub authorization_type: String,
    /// The logical id of the authorizer `AuthorizerId` names.
    pub authorizer: Option<String>,
    /// `RouteResponseSelectionExpression` (`$default` makes the route two-way).
    pub route_response_selection_expression: Option<String>,
    /// `ApiKeyRequired`.
    pub api_key_required: bool,
    /// `OperationName`.
    pub operation_name: Option<String>,
}

/// An integration.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Integration {
    /// The logical id (also the local integration id).
    pub logical_id: String,
    /// `IntegrationType`: `AWS_PROXY`, `AWS`, `MOCK`, `HTTP` or `HTTP_PROXY`.
    pub integration_type: String,
    /// `IntegrationUri`, evaluated.
    pub integration_uri: Option<String>,
    /// The logical id of the function the URI invokes, when it is one of the template's.
    pub function: Option<String>,
    /// `IntegrationMethod`.
    pub integration_method: Option<String>,
    /// `TemplateSelectionExpression`.
    pub template_selection_expression: Option<String>,
    /// `RequestTemplates`: template key → mapping template.
    pub request_templates: BTreeMap<String, String>,
    /// `PassthroughBehavior`.
    pub passthrough_behavior: Option<String>,
    /// `ContentHandlingStrategy`.
    pub content_handling_strategy: Option<String>,
    /// `TimeoutInMillis` (API Gateway's default and maximum, 29,000).
    pub timeout_in_millis: u64,
}

/// A route response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteResponse {
    /// The logical id.
    pub logical_id: String,
    /// The logical id of the route (`RouteId`).
    pub route: String,
    /// `RouteResponseKey` (`$default`).
    pub route_response_key: String,
    /// `ModelSelectionExpression`.
    pub model_selection_expression: Option<String>,
}

/// An integration response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IntegrationResponse {
    /// The logical id.
    pub logical_id: String,
    /// The logical id of the integration (`IntegrationId`).
    pub integration: String,
    /// `IntegrationResponseKey` (`$default`, `/2\d\d/`, …).
    pub integration_response_key: String,
    /// `TemplateSelectionExpression`.
    pub template_selection_expression: Option<String>,
    /// `ResponseTemplates`.
    pub response_templates: BTreeMap<String, String>,
    /// `ContentHandlingStrategy`.
    pub content_handling_strategy: Option<String>,
}

/// A Lambda authorizer (`$connect` only, for WebSocket APIs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Authorizer {
    /// The logical id (also the local authorizer id).
    pub logical_id: String,
    /// `Name`.
    pub name: String,
    /// `AuthorizerType`: `REQUEST` for WebSocket APIs.
    pub authorizer_type: String,
    /// `AuthorizerUri`, evaluated.
    pub authorizer_uri: Option<String>,
    /// The logical id of the function the URI invokes, when it is one of the template's.
    pub function: Option<String>,
    /// `IdentitySource`: `route.request.header.X`, `route.request.querystring.x`, … A request
    /// without them is refused with 401 before the authorizer runs.
    pub identity_source: Vec<String>,
}

/// A stage.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Stage {
    /// The logical id.
    pub logical_id: String,
    /// `StageName`.
    pub stage_name: String,
    /// `Description`.
    pub description: Option<String>,
    /// `DefaultRouteSettings`: every route's settings unless `RouteSettings` has its key.
    pub default_route_settings: RouteSettings,
    /// `RouteSettings`: route key → settings.
    pub route_settings: BTreeMap<String, RouteSettings>,
    /// `StageVariables`.
    pub stage_variables: BTreeMap<String, String>,
    /// `AccessLogSettings`.
    pub access_log_settings: Option<AccessLogSettings>,
}

/// A stage's route settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteSettings {
    /// `ThrottlingBurstLimit`: the token bucket's size.
    pub throttling_burst_limit: Option<u64>,
    /// `ThrottlingRateLimit`: requests per second.
    pub throttling_rate_limit: Option<f64>,
    /// `DetailedMetricsEnabled`.
    pub detailed_metrics_enabled: Option<bool>,
    /// `LoggingLevel`: `OFF`, `ERROR` or `INFO`.
    pub logging_level: Option<String>,
    /// `DataTraceEnabled`.
    pub data_trace_enabled: Option<bool>,
}

/// A stage's access log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AccessLogSettings {
    /// `DestinationArn` (a log group on AWS; locally a file or the terminal).
    pub destination_arn: Option<String>,
    /// `Format`, with `$context.…` variables.
    pub format: Option<String>,
}

impl WebSocketApi {
    /// The route with `route_key`.
    #[must_use]
    pub fn route(&self, route_key: &str) -> Option<&Route> {
        self.routes.iter().find(|r| r.route_key == route_key)
    }

    /// The integration `logical_id` (what a route's `integration` names).
    #[must_use]
    pub fn integration(&self, logical_id: &str) -> Option<&Integration> {
        self.integrations.iter().find(|i| i.logical_id == logical_id)
    }

    /// The authorizer `logical_id` (what a route's `authorizer` names).
    #[must_use]
    pub fn authorizer(&self, logical_id: &str) -> Option<&Authorizer> {
        self.authorizers.iter().find(|a| a.logical_id == logical_id)
    }

    /// The stage named `stage_name`.
    #[must_use]
    pub fn stage(&self, stage_name: &str) -> Option<&Stage> {
        self.stages.iter().find(|s| s.stage_name == stage_name)
    }
}

impl Stage {
    /// The settings that apply to `route_key`: its `RouteSettings` entry, each setting it
    /// leaves out taken from `DefaultRouteSettings`.
    #[must_use]
    pub fn settings_for(&self, route_key: &str) -> RouteSettings {
        let default = &self.default_route_settings;
        let Some(route) = self.route_settings.get(route_key) else {
            return default.clone();
        };
        RouteSettings {
            throttling_burst_limit: route.throttling_burst_limit.or(default.throttling_burst_limit),
            throttling_rate_limit: route.throttling_rate_limit.or(default.throttling_rate_limit),
            detailed_metrics_enabled: route.detailed_metrics_enabled.or(default.detailed_metrics_enabled),
            logging_level: route.logging_level.clone().or_else(|| default.logging_level.clone()),
            data_trace_enabled: route.data_trace_enabled.or(default.data_trace_enabled),
        }
    }
}

/// The APIs, the logical ids of the resources they consumed, and what is worth a warning.
pub(crate) struct Built {
    pub(crate) apis: Vec<WebSocketApi>,
    pub(crate) consumed: BTreeSet<String>,
    pub(crate) warnings: Vec<String>,
}

const V2_API: &str = "AWS::ApiGatewayV2::Api";
const SAM_API: &str = "AWS::Serverless::WebSocketApi";

pub(crate) fn build(
    ctx: &Context<'_>,
    present: &[(&str, &Resource)],
    functions: &BTreeMap<String, Function>,
) -> Result<Built, Error> {
    let mut built = Built { apis: Vec::new(), consumed: BTreeSet::new(), warnings: Vec::new() };
    let mut other_api_ids = BTreeSet::new();
    for (logical_id, resource) in present {
        let props = Props::new(ctx, logical_id, resource);
        match resource.resource_type.as_str() {
            V2_API => {
                if props.string("ProtocolType")?.as_deref() != Some("WEBSOCKET") {
                    // An HTTP API: not served; it and its routes go to the ignored list.
                    other_api_ids.insert(names::api_id(logical_id));
                    continue;
                }
                built.apis.push(v2_api(ctx, &props)?);
            }
            SAM_API => built.apis.push(sam_api(ctx, &props, functions, &mut built.warnings)?),
            _ => continue,
        }
        built.consumed.insert((*logical_id).to_owned());
    }
    for (logical_id, resource) in present {
        let t = resource.resource_type.as_str();
        let Some(kind) = t.strip_prefix("AWS::ApiGatewayV2::") else { continue };
        if !["Route", "Integration", "RouteResponse", "IntegrationResponse", "Authorizer", "Stage", "Deployment"]
            .contains(&kind)
        {
            continue;
        }
        let props = Props::new(ctx, logical_id, resource);
        let api_id = props.required_string("ApiId")?;
        let Some(api) = built.apis.iter_mut().find(|api| api.api_id == api_id) else {
            if other_api_ids.contains(&api_id) {
                continue;
            }
            return Err(Error::at(
                props.path("ApiId"),
                Problem::Dangling(format!("{api_id} is the id of no API of the template")),
            ));
        };
        match kind {
            "Route" => api.routes.push(route(&props)?),
            "Integration" => api.integrations.push(integration(&props, functions, &mut built.warnings)?),
            "RouteResponse" => api.route_responses.push(RouteResponse {
                logical_id: (*logical_id).to_owned(),
                route: props.required_string("RouteId")?,
                route_response_key: props.required_string("RouteResponseKey")?,
                model_selection_expression: props.string("ModelSelectionExpression")?,
            }),
            "IntegrationResponse" => api.integration_responses.push(IntegrationResponse {
                logical_id: (*logical_id).to_owned(),
                integration: props.required_string("IntegrationId")?,
                integration_response_key: props.required_string("IntegrationResponseKey")?,
                template_selection_expression: props.string("TemplateSelectionExpression")?,
                response_templates: props.string_map("ResponseTemplates")?,
                content_handling_strategy: props.string("ContentHandlingStrategy")?,
            }),
            "Authorizer" => api.authorizers.push(authorizer(&props, functions, &mut built.warnings)?),
            "Stage" => api.stages.push(stage(&props)?),
            _ => api.deployments.push((*logical_id).to_owned()),
        }
        built.consumed.insert((*logical_id).to_owned());
    }
    for api in &mut built.apis {
        link(api)?;
    }
    built.apis.sort_by(|a, b| a.logical_id.cmp(&b.logical_id));
    Ok(built)
}

fn endpoint(ctx: &Context<'_>, api_id: &str) -> String {
    format!("wss://{api_id}.execute-api.{}.{}", ctx.pseudo.region, ctx.pseudo.url_suffix)
}

fn empty_api(
    ctx: &Context<'_>,
    props: &Props<'_, '_>,
    resource_type: &str,
    name: String,
) -> Result<WebSocketApi, Error> {
    let api_id = names::api_id(props.logical_id);
    Ok(WebSocketApi {
        logical_id: props.logical_id.to_owned(),
        resource_type: resource_type.to_owned(),
        api_endpoint: endpoint(ctx, &api_id),
        api_id,
        name,
        description: props.string("Description")?,
        route_selection_expression: props.required_string("RouteSelectionExpression")?,
        api_key_selection_expression: props.string("ApiKeySelectionExpression")?,
        routes: Vec::new(),
        integrations: Vec::new(),
        route_responses: Vec::new(),
        integration_responses: Vec::new(),
        authorizers: Vec::new(),
        stages: Vec::new(),
        deployments: Vec::new(),
    })
}

fn v2_api(ctx: &Context<'_>, props: &Props<'_, '_>) -> Result<WebSocketApi, Error> {
    let name = props.string("Name")?.unwrap_or_else(|| props.logical_id.to_owned());
    empty_api(ctx, props, V2_API, name)
}

fn route(props: &Props<'_, '_>) -> Result<Route, Error> {
    let integration = match props.string("Target")? {
        None => None,
        Some(target) => match target.strip_prefix("integrations/") {
            Some(id) => Some(id.to_owned()),
            None => {
                return Err(Error::at(
                    props.path("Target"),
                    Problem::Expected { expected: "integrations/<IntegrationId>", found: format!("{target:?}") },
                ));
            }
        },
    };
    Ok(Route {
        logical_id: props.logical_id.to_owned(),
        route_key: props.required_string("RouteKey")?,
        integration,
        authorization_type: props.string("AuthorizationType")?.unwrap_or_else(|| "NONE".to_owned()),
        authorizer: props.string("AuthorizerId")?,
        route_response_selection_expression: props.string("RouteResponseSelectionExpression")?,
        api_key_required: props.boolean("ApiKeyRequired")?.unwrap_or(false),
        operation_name: props.string("OperationName")?,
    })
}

fn integration(
    props: &Props<'_, '_>,
    functions: &BTreeMap<String, Function>,
    warnings: &mut Vec<String>,
) -> Result<Integration, Error> {
    let integration_uri = props.string("IntegrationUri")?;
    let function = integration_uri
        .as_deref()
        .and_then(|uri| function_for(uri, functions, &props.path("IntegrationUri"), warnings));
    Ok(Integration {
        logical_id: props.logical_id.to_owned(),
        integration_type: props.required_string("IntegrationType")?,
        integration_uri,
        function,
        integration_method: props.string("IntegrationMethod")?,
        template_selection_expression: props.string("TemplateSelectionExpression")?,
        request_templates: props.string_map("RequestTemplates")?,
        passthrough_behavior: props.string("PassthroughBehavior")?,
        content_handling_strategy: props.string("ContentHandlingStrategy")?,
        timeout_in_millis: props.integer("TimeoutInMillis")?.unwrap_or(DEFAULT_TIMEOUT_IN_MILLIS),
    })
}

fn authorizer(
    props: &Props<'_, '_>,
    functions: &BTreeMap<String, Function>,
    warnings: &mut Vec<String>,
) -> Result<Authorizer, Error> {
    let authorizer_uri = props.string("AuthorizerUri")?;
    let function =
        authorizer_uri.as_deref().and_then(|uri| function_for(uri, functions, &props.path("AuthorizerUri"), warnings));
    Ok(Authorizer {
        logical_id: props.logical_id.to_owned(),
        name: props.string("Name")?.unwrap_or_else(|| props.logical_id.to_owned()),
        authorizer_type: props.required_string("AuthorizerType")?,
        authorizer_uri,
        function,
        identity_source: props.strings("IdentitySource")?,
    })
}

fn stage(props: &Props<'_, '_>) -> Result<Stage, Error> {
    Ok(Stage {
        logical_id: props.logical_id.to_owned(),
        stage_name: props.required_string("StageName")?,
        description: props.string("Description")?,
        default_route_settings: match props.get("DefaultRouteSettings")? {
            None => RouteSettings::default(),
            Some(value) => route_settings(&value, &props.path("DefaultRouteSettings"))?,
        },
        route_settings: route_settings_map(props.get("RouteSettings")?.as_ref(), &props.path("RouteSettings"))?,
        stage_variables: props.string_map("StageVariables")?,
        access_log_settings: access_log_settings(
            props.get("AccessLogSettings")?.as_ref(),
            &props.path("AccessLogSettings"),
        )?,
    })
}

fn route_settings(value: &Value, path: &str) -> Result<RouteSettings, Error> {
    let fields = Fields::of(value, path)?;
    Ok(RouteSettings {
        throttling_burst_limit: fields.integer("ThrottlingBurstLimit")?,
        throttling_rate_limit: fields.float("ThrottlingRateLimit")?,
        detailed_metrics_enabled: fields.boolean("DetailedMetricsEnabled")?,
        logging_level: fields.string("LoggingLevel")?,
        data_trace_enabled: fields.boolean("DataTraceEnabled")?,
    })
}

fn route_settings_map(value: Option<&Value>, path: &str) -> Result<BTreeMap<String, RouteSettings>, Error> {
    let Some(value) = value else { return Ok(BTreeMap::new()) };
    as_object(value, path)?
        .iter()
        .map(|(route_key, settings)| Ok((route_key.clone(), route_settings(settings, &format!("{path}.{route_key}"))?)))
        .collect()
}

fn access_log_settings(value: Option<&Value>, path: &str) -> Result<Option<AccessLogSettings>, Error> {
    let Some(value) = value else { return Ok(None) };
    let fields = Fields::of(value, path)?;
    Ok(Some(AccessLogSettings { destination_arn: fields.string("DestinationArn")?, format: fields.string("Format")? }))
}

/// The logical id of the template's function that an integration or authorizer URI invokes:
/// `arn:…:apigateway:<region>:lambda:path/2015-03-31/functions/<function ARN>/invocations`,
/// or a function ARN or name. A Lambda URI that names no function of the template is a
/// warning (the route cannot be served locally); other URIs (HTTP) are not functions.
fn function_for(
    uri: &str,
    functions: &BTreeMap<String, Function>,
    path: &str,
    warnings: &mut Vec<String>,
) -> Option<String> {
    let target = match uri.split_once("/functions/") {
        Some((_, rest)) => rest.strip_suffix("/invocations").unwrap_or(rest),
        None => uri,
    };
    // arn:<partition>:lambda:<region>:<account>:function:<name>[:<qualifier>]
    let name = match target.strip_prefix("arn:") {
        Some(_) => {
            let parts: Vec<&str> = target.split(':').collect();
            match parts.as_slice() {
                [_, _, "lambda", _, _, "function", name, ..] => *name,
                _ => return None,
            }
        }
        None if uri.contains("://") => return None,
        None => target,
    };
    let found = functions.values().find(|f| f.function_name == name).map(|f| f.logical_id.clone());
    if found.is_none() {
        warnings
            .push(format!("{path}: {uri} invokes no function of the template, so its route cannot be served locally"));
    }
    found
}

/// Checks that each reference between an API's resources leads to one of them.
fn link(api: &mut WebSocketApi) -> Result<(), Error> {
    let integrations: BTreeSet<&str> = api.integrations.iter().map(|i| i.logical_id.as_str()).collect();
    let authorizers: BTreeSet<&str> = api.authorizers.iter().map(|a| a.logical_id.as_str()).collect();
    let routes: BTreeSet<&str> = api.routes.iter().map(|r| r.logical_id.as_str()).collect();
    let dangling = |logical_id: &str, property: &str, what: &str, id: &str| {
        Error::at(
            format!("Resources.{logical_id}.Properties.{property}"),
            Problem::Dangling(format!("{id} is the id of no {what} of API {}", api.logical_id)),
        )
    };
    for route in &api.routes {
        if let Some(id) = &route.integration
            && !integrations.contains(id.as_str())
        {
            return Err(dangling(&route.logical_id, "Target", "integration", id));
        }
        if let Some(id) = &route.authorizer
            && !authorizers.contains(id.as_str())
        {
            return Err(dangling(&route.logical_id, "AuthorizerId", "authorizer", id));
        }
    }
    for response in &api.route_responses {
        if !routes.contains(response.route.as_str()) {
            return Err(dangling(&response.logical_id, "RouteId", "route", &response.route));
        }
    }
    for response in &api.integration_responses {
        if !integrations.contains(response.integration.as_str()) {
            return Err(dangling(&response.logical_id, "IntegrationId", "integration", &response.integration));
        }
    }
    api.routes.sort_by(|a, b| a.route_key.cmp(&b.route_key));
    api.integrations.sort_by(|a, b| a.logical_id.cmp(&b.logical_id));
    api.route_responses.sort_by(|a, b| a.logical_id.cmp(&b.logical_id));
    api.integration_responses.sort_by(|a, b| a.logical_id.cmp(&b.logical_id));
    api.authorizers.sort_by(|a, b| a.logical_id.cmp(&b.logical_id));
    api.stages.sort_by(|a, b| a.logical_id.cmp(&b.logical_id));
    api.deployments.sort();
    Ok(())
}

/// `AWS::Serverless::WebSocketApi`, as the resources SAM generates from it.
fn sam_api(
    ctx: &Context<'_>,
    props: &Props<'_, '_>,
    functions: &BTreeMap<String, Function>,
    warnings: &mut Vec<String>,
) -> Result<WebSocketApi, Error> {
    let p = ctx.pseudo;
    let logical_id = props.logical_id;
    let name = props.string("Name")?.unwrap_or_else(|| format!("{}-{logical_id}", p.stack_name));
    let mut api = empty_api(ctx, props, SAM_API, name)?;
    let invocation = |arn: &str| {
        format!("arn:{}:apigateway:{}:lambda:path/2015-03-31/functions/{arn}/invocations", p.partition, p.region)
    };

    // Auth applies to $connect.
    let mut connect_authorization = ("NONE".to_owned(), None);
    if let Some(auth) = props.get("Auth")? {
        let fields = Fields::of(&auth, &props.path("Auth"))?;
        let auth_type = fields.required_string("AuthType")?;
        if auth_type == "CUSTOM" {
            let authorizer_id = format!("{logical_id}ConnectAuthorizer");
            let arn = fields.required_string("AuthArn")?;
            let uri = invocation(&arn);
            let function = function_for(&uri, functions, &fields.path("AuthArn"), warnings);
            api.authorizers.push(Authorizer {
                logical_id: authorizer_id.clone(),
                name: fields.string("Name")?.unwrap_or_else(|| authorizer_id.clone()),
                authorizer_type: "REQUEST".to_owned(),
                authorizer_uri: Some(uri),
                function,
                identity_source: fields.strings("IdentitySource")?,
            });
            connect_authorization = ("CUSTOM".to_owned(), Some(authorizer_id));
        } else {
            connect_authorization = (auth_type, None);
        }
    }

    let routes = props.get("Routes")?.ok_or_else(|| Error::at(props.path("Routes"), Problem::Required))?;
    for (route_key, config) in as_object(&routes, &props.path("Routes"))? {
        let path = format!("{}.{route_key}", props.path("Routes"));
        let fields = Fields::of(config, &path)?;
        let normalized = sam_route_id(route_key);
        let integration_id = format!("{logical_id}{normalized}Integration");
        let uri = invocation(&fields.required_string("FunctionArn")?);
        let function = function_for(&uri, functions, &fields.path("FunctionArn"), warnings);
        api.integrations.push(Integration {
            logical_id: integration_id.clone(),
            integration_type: "AWS_PROXY".to_owned(),
            integration_uri: Some(uri),
            function,
            integration_method: None,
            template_selection_expression: None,
            request_templates: BTreeMap::new(),
            passthrough_behavior: None,
            content_handling_strategy: None,
            timeout_in_millis: fields.integer("IntegrationTimeout")?.unwrap_or(DEFAULT_TIMEOUT_IN_MILLIS),
        });
        let (authorization_type, authorizer) =
            if route_key == "$connect" { connect_authorization.clone() } else { ("NONE".to_owned(), None) };
        api.routes.push(Route {
            logical_id: format!("{logical_id}{normalized}Route"),
            route_key: route_key.clone(),
            integration: Some(integration_id),
            authorization_type,
            authorizer,
            route_response_selection_expression: fields.string("RouteResponseSelectionExpression")?,
            api_key_required: fields.boolean("ApiKeyRequired")?.unwrap_or(false),
            operation_name: fields.string("OperationName")?,
        });
    }

    let stage_name = props.string("StageName")?.unwrap_or_else(|| names::SAM_DEFAULT_STAGE.to_owned());
    // SAM's stage id: the name in it when written as a string, none when an intrinsic gives it.
    let stage_id = if stage_name == names::SAM_DEFAULT_STAGE {
        format!("{logical_id}DefaultStage")
    } else if props.is_literal_string("StageName") {
        format!("{logical_id}{stage_name}Stage")
    } else {
        format!("{logical_id}Stage")
    };
    api.stages.push(Stage {
        logical_id: stage_id,
        stage_name,
        description: None,
        default_route_settings: match props.get("DefaultRouteSettings")? {
            None => RouteSettings::default(),
            Some(value) => route_settings(&value, &props.path("DefaultRouteSettings"))?,
        },
        route_settings: route_settings_map(props.get("RouteSettings")?.as_ref(), &props.path("RouteSettings"))?,
        stage_variables: match props.get("StageVariables")? {
            None => BTreeMap::new(),
            Some(value) => as_string_map(&value, &props.path("StageVariables"))?,
        },
        access_log_settings: access_log_settings(
            props.get("AccessLogSettings")?.as_ref(),
            &props.path("AccessLogSettings"),
        )?,
    });
    Ok(api)
}

/// The part of SAM's generated ids a route key gives: `$connect` → `Connect`, `sendMessage` →
/// `Sendmessage` (Python's `str.capitalize`, as SAM's WebSocket generator does).
fn sam_route_id(route_key: &str) -> String {
    let key = route_key.strip_prefix('$').unwrap_or(route_key);
    let mut chars = key.chars();
    chars
        .next()
        .map(|first| first.to_uppercase().chain(chars.flat_map(char::to_lowercase)).collect())
        .unwrap_or_default()
}
