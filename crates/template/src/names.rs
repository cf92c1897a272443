//! Local physical ids (what `Ref` of a resource returns) and attributes (`Fn::GetAtt`).
//!
//! CloudFormation names a resource without a name property `<stack>-<LogicalId>-<RANDOM>`;
//! locally the random suffix is left out, so names are stable from run to run. An API's id is
//! its logical id in lower case (API Gateway's ids are ten lower-case letters and digits), so
//! that `{apiId}.execute-api.{region}.amazonaws.com` is a host name a reader recognises.

use serde_json::Value;

use crate::error::{Error, Problem};
use crate::eval::Context;
use crate::template::Resource;

/// The names SAM adds after a dot: `MyFunction.Alias`, `MyFunction.Version`, `MyApi.Stage`.
pub(crate) const SAM_REFERENCES: [&str; 3] = ["Alias", "Version", "Stage"];

pub(crate) const FUNCTION_TYPES: [&str; 2] = ["AWS::Serverless::Function", "AWS::Lambda::Function"];
pub(crate) const TABLE_TYPES: [&str; 3] =
    ["AWS::DynamoDB::Table", "AWS::DynamoDB::GlobalTable", "AWS::Serverless::SimpleTable"];
pub(crate) const API_TYPES: [&str; 2] = ["AWS::ApiGatewayV2::Api", "AWS::Serverless::WebSocketApi"];

/// The stage name SAM gives a `WebSocketApi` without `StageName`.
pub(crate) const SAM_DEFAULT_STAGE: &str = "default";

/// What `Ref` of resource `logical_id` returns locally.
pub(crate) fn physical_id(
    ctx: &Context<'_>,
    logical_id: &str,
    function: &'static str,
    path: &str,
) -> Result<String, Error> {
    let resource = ctx.existing(logical_id, function, path)?;
    ctx.guarded(format!("Resources.{logical_id}"), path, || compute(ctx, logical_id, resource))
}

fn compute(ctx: &Context<'_>, logical_id: &str, resource: &Resource) -> Result<String, Error> {
    let p = ctx.pseudo;
    let named = |property: &str| -> Result<String, Error> {
        Ok(match name_property(ctx, logical_id, resource, property)? {
            Some(name) => name,
            None => format!("{}-{logical_id}", p.stack_name),
        })
    };
    let t = resource.resource_type.as_str();
    Ok(match t {
        _ if FUNCTION_TYPES.contains(&t) => named("FunctionName")?,
        _ if TABLE_TYPES.contains(&t) => named("TableName")?,
        _ if API_TYPES.contains(&t) => api_id(logical_id),
        "AWS::ApiGatewayV2::Stage" => match name_property(ctx, logical_id, resource, "StageName")? {
            Some(name) => name,
            None => return Err(Error::at(format!("Resources.{logical_id}.Properties.StageName"), Problem::Required)),
        },
        "AWS::Logs::LogGroup" => named("LogGroupName")?,
        "AWS::IAM::Role" => named("RoleName")?,
        "AWS::S3::Bucket" => named("BucketName")?.to_lowercase(),
        "AWS::SecretsManager::Secret" => {
            format!("arn:{}:secretsmanager:{}:{}:secret:{}", p.partition, p.region, p.account_id, named("Name")?)
        }
        "AWS::SNS::Topic" => format!("arn:{}:sns:{}:{}:{}", p.partition, p.region, p.account_id, named("TopicName")?),
        "AWS::SQS::Queue" => {
            format!("https://sqs.{}.{}/{}/{}", p.region, p.url_suffix, p.account_id, named("QueueName")?)
        }
        "AWS::Lambda::Alias" => {
            let function = name_property(ctx, logical_id, resource, "FunctionName")?.unwrap_or_default();
            let alias = name_property(ctx, logical_id, resource, "Name")?.unwrap_or_default();
            format!("{}:{alias}", function_arn(ctx, &function))
        }
        "AWS::Lambda::Version" => {
            let function = name_property(ctx, logical_id, resource, "FunctionName")?.unwrap_or_default();
            format!("{}:1", function_arn(ctx, &function))
        }
        "AWS::Lambda::LayerVersion" | "AWS::Serverless::LayerVersion" => {
            format!("arn:{}:lambda:{}:{}:layer:{}:1", p.partition, p.region, p.account_id, named("LayerName")?)
        }
        _ => logical_id.to_owned(),
    })
}

/// A name property, evaluated, as text; `None` when absent.
fn name_property(
    ctx: &Context<'_>,
    logical_id: &str,
    resource: &Resource,
    property: &str,
) -> Result<Option<String>, Error> {
    match ctx.property(logical_id, resource, property)? {
        None => Ok(None),
        Some(value) => {
            crate::props::as_string(&value, &format!("Resources.{logical_id}.Properties.{property}")).map(Some)
        }
    }
}

/// The local id of an API: its logical id, lower case, letters and digits only.
pub(crate) fn api_id(logical_id: &str) -> String {
    logical_id.chars().filter(char::is_ascii_alphanumeric).map(|c| c.to_ascii_lowercase()).collect()
}

/// The ARN of the function named `name` (or `name` itself when it is an ARN already).
pub(crate) fn function_arn(ctx: &Context<'_>, name: &str) -> String {
    if name.starts_with("arn:") {
        return name.to_owned();
    }
    let p = ctx.pseudo;
    format!("arn:{}:lambda:{}:{}:function:{name}", p.partition, p.region, p.account_id)
}

/// `Ref` of SAM's `Function.Alias` (the `AutoPublishAlias` alias's ARN), `Function.Version`,
/// and `WebSocketApi.Stage` (the stage name).
pub(crate) fn sam_reference(
    ctx: &Context<'_>,
    logical_id: &str,
    property: &str,
    function: &'static str,
    path: &str,
) -> Result<String, Error> {
    let resource = ctx.existing(logical_id, function, path)?;
    let dangling =
        |why: String| Error::at(path, Problem::Dangling(format!("{function} of {logical_id}.{property}: {why}")));
    match (resource.resource_type.as_str(), property) {
        ("AWS::Serverless::Function", "Alias") => {
            let arn = function_arn(ctx, &physical_id(ctx, logical_id, function, path)?);
            match ctx.property(logical_id, resource, "AutoPublishAlias")? {
                Some(alias) => Ok(format!(
                    "{arn}:{}",
                    crate::props::as_string(&alias, &format!("Resources.{logical_id}.Properties.AutoPublishAlias"))?
                )),
                None => Err(dangling("the function has no AutoPublishAlias".to_owned())),
            }
        }
        ("AWS::Serverless::Function", "Version") => {
            Ok(format!("{}:1", function_arn(ctx, &physical_id(ctx, logical_id, function, path)?)))
        }
        ("AWS::Serverless::WebSocketApi", "Stage") => match ctx.property(logical_id, resource, "StageName")? {
            Some(stage) => crate::props::as_string(&stage, &format!("Resources.{logical_id}.Properties.StageName")),
            None => Ok(SAM_DEFAULT_STAGE.to_owned()),
        },
        (t, _) => Err(dangling(format!("SAM adds .{property} to no {t}"))),
    }
}

/// What `Fn::GetAtt` of `logical_id.attribute` returns locally.
///
/// The types this crate models have the attributes their users read (a function's `Arn`, a
/// table's `Arn` and `StreamArn`, an API's `ApiEndpoint` and `ApiId`); asking one of them for
/// another attribute is an error. A type it does not model answers `Arn` with an ARN made of
/// its logical id and any other attribute with `LogicalId.Attribute`, since such values only
/// flow into resources that are not emulated.
pub(crate) fn attribute(ctx: &Context<'_>, logical_id: &str, attribute: &str, path: &str) -> Result<Value, Error> {
    let Some(resource) = ctx.template.resources.get(logical_id) else {
        return Err(Error::at(
            path,
            Problem::UnknownResource { name: logical_id.to_owned(), attribute: attribute.to_owned() },
        ));
    };
    let id = || physical_id(ctx, logical_id, "Fn::GetAtt", path);
    let p = ctx.pseudo;
    let t = resource.resource_type.as_str();
    let known: &[&str] = match t {
        _ if FUNCTION_TYPES.contains(&t) => &["Arn"],
        _ if TABLE_TYPES.contains(&t) => &["Arn", "StreamArn"],
        _ if API_TYPES.contains(&t) => &["ApiEndpoint", "ApiId"],
        "AWS::ApiGatewayV2::Integration" => &["IntegrationId"],
        "AWS::ApiGatewayV2::Route" => &["RouteId"],
        "AWS::ApiGatewayV2::Authorizer" => &["AuthorizerId"],
        "AWS::ApiGatewayV2::RouteResponse" => &["RouteResponseId"],
        "AWS::ApiGatewayV2::IntegrationResponse" => &["IntegrationResponseId"],
        "AWS::ApiGatewayV2::Deployment" => &["DeploymentId"],
        "AWS::IAM::Role" => &["Arn", "RoleId"],
        "AWS::Logs::LogGroup" => &["Arn"],
        _ => {
            // Not modelled: checked for existence, then a stand-in value.
            ctx.existing(logical_id, "Fn::GetAtt", path)?;
            return Ok(Value::String(if attribute == "Arn" {
                let service = t.split("::").nth(1).unwrap_or("aws").to_lowercase();
                format!("arn:{}:{service}:{}:{}:{logical_id}", p.partition, p.region, p.account_id)
            } else {
                format!("{logical_id}.{attribute}")
            }));
        }
    };
    if !known.contains(&attribute) {
        return Err(Error::at(
            path,
            Problem::UnknownAttribute {
                name: logical_id.to_owned(),
                resource_type: t.to_owned(),
                attribute: attribute.to_owned(),
                known: known.join(", "),
            },
        ));
    }
    let table_arn = |name: String| format!("arn:{}:dynamodb:{}:{}:table/{name}", p.partition, p.region, p.account_id);
    Ok(Value::String(match attribute {
        "Arn" if FUNCTION_TYPES.contains(&t) => function_arn(ctx, &id()?),
        "Arn" if TABLE_TYPES.contains(&t) => table_arn(id()?),
        // A fixed label: local tables have one stream each, made with the table.
        "StreamArn" => format!("{}/stream/1970-01-01T00:00:00.000", table_arn(id()?)),
        "ApiEndpoint" => format!("wss://{}.execute-api.{}.{}", id()?, p.region, p.url_suffix),
        "Arn" if t == "AWS::IAM::Role" => format!("arn:{}:iam::{}:role/{}", p.partition, p.account_id, id()?),
        "Arn" => format!("arn:{}:logs:{}:{}:log-group:{}:*", p.partition, p.region, p.account_id, id()?),
        _ => id()?,
    }))
}
