//! Functions: `AWS::Serverless::Function` (with `Globals.Function` merged) and
//! `AWS::Lambda::Function`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;
use serde_json::Value;

use crate::error::{Error, Problem};
use crate::eval::Context;
use crate::names;
use crate::props::{Fields, Props, as_object, as_string};
use crate::template::Resource;

/// Lambda's default timeout, in seconds.
const DEFAULT_TIMEOUT: u64 = 3;
/// Lambda's default memory, in MB.
const DEFAULT_MEMORY_SIZE: u64 = 128;

/// A Lambda function of the template.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Function {
    /// The logical id.
    pub logical_id: String,
    /// `AWS::Serverless::Function` or `AWS::Lambda::Function`.
    pub resource_type: String,
    /// `FunctionName`, or `<stack>-<LogicalId>`.
    pub function_name: String,
    /// `arn:…:lambda:<region>:<account>:function:<name>`.
    pub arn: String,
    /// `Runtime` (`provided.al2023`, `python3.12`, `nodejs20.x`, …); none for an image.
    pub runtime: Option<String>,
    /// `Handler`.
    pub handler: Option<String>,
    /// Where the code is.
    pub code: Code,
    /// `Environment.Variables`, evaluated (a variable whose value is `AWS::NoValue` is absent).
    pub environment: BTreeMap<String, String>,
    /// `Timeout` in seconds (Lambda's default 3).
    pub timeout: u64,
    /// `MemorySize` in MB (Lambda's default 128).
    pub memory_size: u64,
    /// `Architectures` (Lambda's default `x86_64`).
    pub architectures: Vec<String>,
    /// `ReservedConcurrentExecutions`: the most environments that run at once; none for the
    /// unreserved pool.
    pub reserved_concurrent_executions: Option<u64>,
    /// SAM's `AutoPublishAlias`.
    pub auto_publish_alias: Option<String>,
    /// `Metadata.BuildMethod` (`rust-cargolambda`, `esbuild`, `makefile`, …).
    pub build_method: Option<String>,
    /// `Metadata.BuildProperties`, as written (evaluated).
    pub build_properties: Option<Value>,
    /// `Layers`: listed, not emulated.
    pub layers: Vec<String>,
    /// SAM `Events` (name → type): listed, not emulated.
    pub events: BTreeMap<String, String>,
}

/// Where a function's code is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum Code {
    /// A directory (or archive) on this machine.
    #[serde(rename_all = "camelCase")]
    Local {
        /// As written in `CodeUri` (or `Code`).
        uri: String,
        /// Relative to the template's directory.
        path: PathBuf,
    },
    /// Source in the template (`InlineCode`, `Code.ZipFile`).
    Inline {
        /// The source.
        source: String,
    },
    /// A container image (`PackageType: Image`).
    #[serde(rename_all = "camelCase")]
    Image {
        /// `ImageUri`, if given.
        image_uri: Option<String>,
    },
}

/// The functions among `present` (resources that exist), by logical id.
pub(crate) fn build(ctx: &Context<'_>, present: &[(&str, &Resource)]) -> Result<BTreeMap<String, Function>, Error> {
    let mut functions = BTreeMap::new();
    for (logical_id, resource) in present {
        if names::FUNCTION_TYPES.contains(&resource.resource_type.as_str()) {
            functions.insert((*logical_id).to_owned(), function(ctx, logical_id, resource)?);
        }
    }
    Ok(functions)
}

fn function(ctx: &Context<'_>, logical_id: &str, resource: &Resource) -> Result<Function, Error> {
    let props = Props::new(ctx, logical_id, resource);
    let sam = resource.resource_type == "AWS::Serverless::Function";
    let function_name = names::physical_id(ctx, logical_id, "Ref", &props.path("FunctionName"))?;
    let environment = match props.get("Environment")? {
        None => BTreeMap::new(),
        Some(environment) => {
            let fields = Fields::of(&environment, &props.path("Environment"))?;
            match fields.get("Variables") {
                None => BTreeMap::new(),
                Some(variables) => crate::props::as_string_map(variables, &fields.path("Variables"))?,
            }
        }
    };
    let architectures = props.strings("Architectures")?;
    let code = code(ctx, &props, sam)?;
    let metadata_path = format!("Resources.{logical_id}.Metadata");
    let build_method = match resource.metadata.get("BuildMethod") {
        None => None,
        Some(value) => ctx
            .eval(value, &format!("{metadata_path}.BuildMethod"))?
            .map(|v| as_string(&v, &format!("{metadata_path}.BuildMethod")))
            .transpose()?,
    };
    let build_properties = match resource.metadata.get("BuildProperties") {
        None => None,
        Some(value) => ctx.eval(value, &format!("{metadata_path}.BuildProperties"))?,
    };
    let mut events = BTreeMap::new();
    if sam && let Some(raw) = resource.properties.get("Events") {
        let path = props.path("Events");
        let Value::Object(raw) = raw else {
            return Err(Error::at(
                path,
                Problem::Expected { expected: "a mapping of events", found: crate::eval::kind(Some(raw)) },
            ));
        };
        for (name, event) in raw {
            // Only the type is read: events are listed, not run.
            let event_type = event.get("Type").and_then(Value::as_str).unwrap_or("").to_owned();
            events.insert(name.clone(), event_type);
        }
    }
    Ok(Function {
        logical_id: logical_id.to_owned(),
        resource_type: resource.resource_type.clone(),
        arn: names::function_arn(ctx, &function_name),
        function_name,
        runtime: props.string("Runtime")?,
        handler: props.string("Handler")?,
        code,
        environment,
        timeout: props.integer("Timeout")?.unwrap_or(DEFAULT_TIMEOUT),
        memory_size: props.integer("MemorySize")?.unwrap_or(DEFAULT_MEMORY_SIZE),
        architectures: if architectures.is_empty() { vec!["x86_64".to_owned()] } else { architectures },
        reserved_concurrent_executions: props.integer("ReservedConcurrentExecutions")?,
        auto_publish_alias: if sam { props.string("AutoPublishAlias")? } else { None },
        build_method,
        build_properties,
        layers: props.strings("Layers")?,
        events,
    })
}

fn code(ctx: &Context<'_>, props: &Props<'_, '_>, sam: bool) -> Result<Code, Error> {
    if props.string("PackageType")?.as_deref() == Some("Image") {
        let image_uri = if sam {
            props.string("ImageUri")?
        } else {
            match props.get("Code")? {
                Some(code) => Fields::of(&code, &props.path("Code"))?.string("ImageUri")?,
                None => None,
            }
        };
        return Ok(Code::Image { image_uri });
    }
    let local = |uri: String, key: &str| -> Result<Code, Error> {
        if uri.starts_with("s3://") {
            return Err(Error::at(
                props.path(key),
                Problem::NotLocal(format!(
                    "{uri} is in S3, not on this machine: give a local path (what `sam build` reads)"
                )),
            ));
        }
        let path = ctx.template.base_dir.as_ref().map_or_else(|| PathBuf::from(&uri), |dir| dir.join(&uri));
        Ok(Code::Local { uri, path })
    };
    let s3 = |key: &str, location: &serde_json::Map<String, Value>, bucket: &str, object: &str| {
        let at = |k: &str| location.get(k).and_then(crate::parameters::scalar_text).unwrap_or_default();
        Error::at(
            props.path(key),
            Problem::NotLocal(format!(
                "the code is the S3 object s3://{}/{}, not on this machine: give a local path (what `sam build` reads)",
                at(bucket),
                at(object)
            )),
        )
    };
    if sam {
        if let Some(source) = props.string("InlineCode")? {
            return Ok(Code::Inline { source });
        }
        return match props.get("CodeUri")? {
            None => Err(Error::at(
                props.path("CodeUri"),
                Problem::NotLocal(
                    "the function has no CodeUri (nor InlineCode, nor Globals.Function.CodeUri)".to_owned(),
                ),
            )),
            Some(Value::Object(location)) => Err(s3("CodeUri", &location, "Bucket", "Key")),
            Some(uri) => local(as_string(&uri, &props.path("CodeUri"))?, "CodeUri"),
        };
    }
    match props.get("Code")? {
        None => Err(Error::at(props.path("Code"), Problem::Required)),
        // `sam build` and `sam local` accept a local path in `Code` too.
        Some(Value::String(uri)) => local(uri, "Code"),
        Some(code) => {
            let location = as_object(&code, &props.path("Code"))?;
            if let Some(source) = location.get("ZipFile") {
                return Ok(Code::Inline { source: as_string(source, &props.path("Code.ZipFile"))? });
            }
            Err(s3("Code", location, "S3Bucket", "S3Key"))
        }
    }
}
