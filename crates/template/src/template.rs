//! The template's sections, as read; SAM's `Globals` merged into the resources they apply to.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::error::{Error, Problem};
use crate::parse;

/// A parsed template: its sections, not yet evaluated. Build it with [`Template::from_file`] or
/// [`Template::parse`], then [`Template::resolve`](crate::Template::resolve) it.
#[derive(Debug, Clone)]
pub struct Template {
    pub(crate) source_name: String,
    /// The directory that relative `CodeUri`s are relative to.
    pub(crate) base_dir: Option<PathBuf>,
    pub(crate) parameters: Map<String, Value>,
    pub(crate) mappings: Map<String, Value>,
    pub(crate) conditions: Map<String, Value>,
    pub(crate) resources: BTreeMap<String, Resource>,
    /// Whether `Transform` names the SAM transform.
    pub(crate) sam: bool,
}

/// One entry of `Resources`.
#[derive(Debug, Clone)]
pub(crate) struct Resource {
    pub(crate) resource_type: String,
    pub(crate) condition: Option<String>,
    /// After the merge of SAM's `Globals` for SAM resource types.
    pub(crate) properties: Map<String, Value>,
    pub(crate) metadata: Map<String, Value>,
}

/// The SAM transform's name in `Transform`.
const SAM_TRANSFORM: &str = "AWS::Serverless-2016-10-31";

/// The `Globals` sections this crate reads, and the resource type each applies to.
const GLOBALS: [(&str, &str); 3] = [
    ("Function", "AWS::Serverless::Function"),
    ("SimpleTable", "AWS::Serverless::SimpleTable"),
    ("WebSocketApi", "AWS::Serverless::WebSocketApi"),
];

impl Template {
    /// Reads and parses the template at `path`; relative `CodeUri`s are then relative to its
    /// directory, as for `sam build`.
    ///
    /// # Errors
    /// [`Error::Read`], [`Error::Syntax`], or [`Error::Template`] when a section has the wrong
    /// shape.
    pub fn from_file(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read { path: path.to_owned(), source })?;
        let mut template = Self::parse(&text, &path.display().to_string())?;
        template.base_dir = Some(path.parent().map_or_else(|| PathBuf::from("."), Path::to_owned));
        Ok(template)
    }

    /// Parses `text`; `source_name` names it in errors.
    ///
    /// # Errors
    /// [`Error::Syntax`], or [`Error::Template`] when a section has the wrong shape.
    pub fn parse(text: &str, source_name: &str) -> Result<Self, Error> {
        let Value::Object(mut top) = parse::parse(text, source_name)? else {
            return Err(Error::Syntax {
                source_name: source_name.to_owned(),
                format: "YAML",
                message: "the top level of a template is a mapping".to_owned(),
            });
        };
        let mut section = |name: &str| -> Result<Map<String, Value>, Error> {
            match top.remove(name) {
                None | Some(Value::Null) => Ok(Map::new()),
                Some(Value::Object(map)) => Ok(map),
                Some(_) => Err(Error::at(name, Problem::Shape("must be a mapping".to_owned()))),
            }
        };
        let parameters = section("Parameters")?;
        let mappings = section("Mappings")?;
        let conditions = section("Conditions")?;
        let globals = section("Globals")?;
        let raw_resources = section("Resources")?;
        let sam = match top.get("Transform") {
            Some(Value::String(t)) => t == SAM_TRANSFORM,
            Some(Value::Array(ts)) => ts.iter().any(|t| t.as_str() == Some(SAM_TRANSFORM)),
            _ => false,
        };
        if raw_resources.is_empty() {
            return Err(Error::at("Resources", Problem::Shape("a template declares at least one resource".to_owned())));
        }
        let mut resources = BTreeMap::new();
        for (logical_id, raw) in raw_resources {
            let path = format!("Resources.{logical_id}");
            let Value::Object(mut raw) = raw else {
                return Err(Error::at(
                    path,
                    Problem::Shape("a resource is a mapping with Type and Properties".to_owned()),
                ));
            };
            let resource_type = match raw.remove("Type") {
                Some(Value::String(t)) => t,
                Some(_) => {
                    return Err(Error::at(format!("{path}.Type"), Problem::Shape("must be a string".to_owned())));
                }
                None => return Err(Error::at(format!("{path}.Type"), Problem::Required)),
            };
            let condition = match raw.remove("Condition") {
                None => None,
                Some(Value::String(c)) => Some(c),
                Some(_) => {
                    return Err(Error::at(
                        format!("{path}.Condition"),
                        Problem::Shape("must be the name of a condition".to_owned()),
                    ));
                }
            };
            let object = |key: &str, value: Option<Value>| -> Result<Map<String, Value>, Error> {
                match value {
                    None | Some(Value::Null) => Ok(Map::new()),
                    Some(Value::Object(map)) => Ok(map),
                    Some(_) => Err(Error::at(format!("{path}.{key}"), Problem::Shape("must be a mapping".to_owned()))),
                }
            };
            let mut properties = object("Properties", raw.remove("Properties"))?;
            let metadata = object("Metadata", raw.remove("Metadata"))?;
            if let Some((section, _)) = GLOBALS.iter().find(|(_, t)| *t == resource_type)
                && let Some(Value::Object(global)) = globals.get(*section)
            {
                properties = merge_globals(global, properties);
            }
            resources.insert(logical_id, Resource { resource_type, condition, properties, metadata });
        }
        Ok(Self {
            source_name: source_name.to_owned(),
            base_dir: None,
            parameters,
            mappings,
            conditions,
            resources,
            sam,
        })
    }

    /// The name errors and the model give the template.
    #[must_use]
    pub fn source_name(&self) -> &str {
        &self.source_name
    }

    /// Whether `Transform` names the SAM transform (`AWS::Serverless-2016-10-31`).
    #[must_use]
    pub fn is_sam(&self) -> bool {
        self.sam
    }
}

/// SAM's rules for `Globals`: a mapping merges key by key (the resource's keys win, and
/// mappings inside merge the same way), a list is the global items then the resource's, any
/// other value (a scalar, an intrinsic) is the resource's. `Architectures` is the exception: a
/// function runs on one architecture, so the resource's list replaces the global one, as SAM's
/// own fix for its list rule does.
fn merge_globals(global: &Map<String, Value>, mut local: Map<String, Value>) -> Map<String, Value> {
    for (key, global_value) in global {
        let merged = match local.remove(key) {
            None => global_value.clone(),
            Some(local_value) if key == "Architectures" => local_value,
            Some(local_value) => merge_value(global_value, local_value),
        };
        local.insert(key.clone(), merged);
    }
    local
}

fn merge_value(global: &Value, local: Value) -> Value {
    match (global, local) {
        (Value::Object(g), Value::Object(l)) if !is_intrinsic(g) && !is_intrinsic(&l) => {
            Value::Object(merge_globals(g, l))
        }
        (Value::Array(g), Value::Array(l)) => Value::Array(g.iter().cloned().chain(l).collect()),
        (_, local) => local,
    }
}

/// Whether a mapping is an intrinsic call (`{"Ref": …}`, `{"Fn::…": …}`).
pub(crate) fn is_intrinsic(map: &Map<String, Value>) -> bool {
    map.len() == 1 && map.keys().all(|k| k == "Ref" || k.starts_with("Fn::"))
}
