//! Text to a JSON value: YAML with CloudFormation's short-form tags, or JSON.
//!
//! Short forms become the long forms that JSON templates use, so that evaluation sees one
//! shape: `!Ref X` is `{"Ref": "X"}`, `!GetAtt A.B` is `{"Fn::GetAtt": ["A", "B"]}`,
//! `!Condition C` is `{"Condition": "C"}` and every other `!Name v` is `{"Fn::Name": v}` (so an
//! unknown `!Foo` is reported by evaluation as `Fn::Foo`, with the path where it stands).
//! Anchors and aliases are expanded by the YAML loader (with its expansion budget).

use saphyr::{LoadableYamlNode, Scalar, Yaml};
use serde_json::{Map, Number, Value};

use crate::error::{Error, Problem};

/// Parses `text`: JSON when its first non-blank character is `{`, YAML otherwise.
pub(crate) fn parse(text: &str, source_name: &str) -> Result<Value, Error> {
    if text.trim_start().starts_with('{') {
        return serde_json::from_str(text).map_err(|e| Error::Syntax {
            source_name: source_name.to_owned(),
            format: "JSON",
            message: e.to_string(),
        });
    }
    let syntax = |message: String| Error::Syntax { source_name: source_name.to_owned(), format: "YAML", message };
    let documents = Yaml::load_from_str(text).map_err(|e| syntax(e.to_string()))?;
    let mut documents = documents.into_iter();
    let Some(document) = documents.next() else {
        return Err(syntax("the file holds no document".to_owned()));
    };
    if documents.next().is_some() {
        return Err(syntax("a template is one YAML document, this file holds several".to_owned()));
    }
    convert(document, "").map_err(|(path, message)| {
        if path.is_empty() { syntax(message) } else { Error::at(path, Problem::Shape(message)) }
    })
}

/// A YAML node to JSON; on error, the path of the node and the message.
fn convert(node: Yaml<'_>, path: &str) -> Result<Value, (String, String)> {
    Ok(match node {
        Yaml::Value(scalar) => scalar_value(scalar),
        // Only produced when early parsing is off; read as written.
        Yaml::Representation(text, _, _) => Value::String(text.into_owned()),
        Yaml::Sequence(items) => Value::Array(
            items
                .into_iter()
                .enumerate()
                .map(|(i, item)| convert(item, &format!("{path}[{i}]")))
                .collect::<Result<_, _>>()?,
        ),
        Yaml::Mapping(entries) => {
            let mut map = Map::new();
            for (key, value) in entries {
                let key =
                    key_string(key).ok_or_else(|| (path.to_owned(), "a mapping key must be a scalar".to_owned()))?;
                let child = join(path, &key);
                if map.contains_key(&key) {
                    return Err((child, "the key appears twice in its mapping".to_owned()));
                }
                let value = convert(value, &child)?;
                map.insert(key, value);
            }
            Value::Object(map)
        }
        Yaml::Tagged(tag, inner) => {
            let inner = convert(*inner, path)?;
            if tag.handle != "!" {
                // `!!binary` and other global tags: the value as written.
                return Ok(inner);
            }
            long_form(&tag.suffix, inner)
        }
        Yaml::Alias(_) | Yaml::BadValue => {
            return Err((path.to_owned(), "a value YAML cannot read (bad scalar or unknown alias)".to_owned()));
        }
    })
}

/// `!Name value` as CloudFormation's long form.
fn long_form(name: &str, value: Value) -> Value {
    let (key, value) = match name {
        "Ref" => ("Ref".to_owned(), value),
        "Condition" => ("Condition".to_owned(), value),
        "GetAtt" => {
            let value = match value {
                // `!GetAtt Resource.Attribute.With.Dots`: the resource is before the first dot.
                Value::String(s) => match s.split_once('.') {
                    Some((resource, attribute)) => Value::Array(vec![resource.into(), attribute.into()]),
                    None => Value::String(s),
                },
                other => other,
            };
            ("Fn::GetAtt".to_owned(), value)
        }
        other => (format!("Fn::{other}"), value),
    };
    let mut map = Map::new();
    map.insert(key, value);
    Value::Object(map)
}

fn scalar_value(scalar: Scalar<'_>) -> Value {
    match scalar {
        Scalar::Null => Value::Null,
        Scalar::Boolean(b) => Value::Bool(b),
        Scalar::Integer(i) => Value::Number(i.into()),
        Scalar::FloatingPoint(f) => {
            Number::from_f64(f.into_inner()).map_or_else(|| Value::String(f.to_string()), Value::Number)
        }
        Scalar::String(s) => Value::String(s.into_owned()),
    }
}

fn key_string(key: Yaml<'_>) -> Option<String> {
    match key {
        Yaml::Value(scalar) => Some(match scalar_value(scalar) {
            Value::String(s) => s,
            Value::Null => "null".to_owned(),
            other => other.to_string(),
        }),
        Yaml::Representation(text, _, _) => Some(text.into_owned()),
        Yaml::Tagged(_, inner) => key_string(*inner),
        _ => None,
    }
}

/// `path.key`, or `key` at the top.
pub(crate) fn join(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_owned() } else { format!("{path}.{key}") }
}
