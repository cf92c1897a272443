//! Typed reading of evaluated values, with CloudFormation's leniency: an integer property
//! takes `10` or `"10"` (a `Number` parameter's `Ref` is a string), a boolean takes `true` or
//! `"true"`.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::error::{Error, Problem};
use crate::eval::{Context, kind};
use crate::template::Resource;

/// One resource's properties, read one at a time (each evaluated when read).
pub(crate) struct Props<'c, 't> {
    ctx: &'c Context<'t>,
    pub(crate) logical_id: &'c str,
    resource: &'c Resource,
}

impl<'c, 't> Props<'c, 't> {
    pub(crate) fn new(ctx: &'c Context<'t>, logical_id: &'c str, resource: &'c Resource) -> Self {
        Self { ctx, logical_id, resource }
    }

    /// `Resources.<LogicalId>.Properties.<key>`.
    pub(crate) fn path(&self, key: &str) -> String {
        format!("Resources.{}.Properties.{key}", self.logical_id)
    }

    /// Whether `key` is written as a plain string (no intrinsic function): SAM names some
    /// generated resources after such a value only.
    pub(crate) fn is_literal_string(&self, key: &str) -> bool {
        matches!(self.resource.properties.get(key), Some(Value::String(_)))
    }

    pub(crate) fn get(&self, key: &str) -> Result<Option<Value>, Error> {
        self.ctx.property(self.logical_id, self.resource, key)
    }

    pub(crate) fn string(&self, key: &str) -> Result<Option<String>, Error> {
        self.get(key)?.map(|v| as_string(&v, &self.path(key))).transpose()
    }

    pub(crate) fn required_string(&self, key: &str) -> Result<String, Error> {
        self.string(key)?.ok_or_else(|| Error::at(self.path(key), Problem::Required))
    }

    pub(crate) fn integer(&self, key: &str) -> Result<Option<u64>, Error> {
        self.get(key)?.map(|v| as_integer(&v, &self.path(key))).transpose()
    }

    pub(crate) fn boolean(&self, key: &str) -> Result<Option<bool>, Error> {
        self.get(key)?.map(|v| as_bool(&v, &self.path(key))).transpose()
    }

    pub(crate) fn strings(&self, key: &str) -> Result<Vec<String>, Error> {
        Ok(self.get(key)?.map(|v| as_strings(&v, &self.path(key))).transpose()?.unwrap_or_default())
    }

    pub(crate) fn string_map(&self, key: &str) -> Result<BTreeMap<String, String>, Error> {
        Ok(self.get(key)?.map(|v| as_string_map(&v, &self.path(key))).transpose()?.unwrap_or_default())
    }
}

fn expected(expected: &'static str, value: &Value, path: &str) -> Error {
    Error::at(path, Problem::Expected { expected, found: kind(Some(value)) })
}

pub(crate) fn as_string(value: &Value, path: &str) -> Result<String, Error> {
    crate::parameters::scalar_text(value).ok_or_else(|| expected("a string", value, path))
}

pub(crate) fn as_integer(value: &Value, path: &str) -> Result<u64, Error> {
    match value {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
    .ok_or_else(|| expected("a whole number from 0", value, path))
}

pub(crate) fn as_float(value: &Value, path: &str) -> Result<f64, Error> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
    .ok_or_else(|| expected("a number", value, path))
}

pub(crate) fn as_bool(value: &Value, path: &str) -> Result<bool, Error> {
    match value {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Some(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
    .ok_or_else(|| expected("true or false", value, path))
}

pub(crate) fn as_strings(value: &Value, path: &str) -> Result<Vec<String>, Error> {
    match value {
        Value::Array(items) => {
            items.iter().enumerate().map(|(i, item)| as_string(item, &format!("{path}[{i}]"))).collect()
        }
        _ => Err(expected("a list of strings", value, path)),
    }
}

pub(crate) fn as_string_map(value: &Value, path: &str) -> Result<BTreeMap<String, String>, Error> {
    as_object(value, path)?.iter().map(|(k, v)| Ok((k.clone(), as_string(v, &format!("{path}.{k}"))?))).collect()
}

pub(crate) fn as_object<'v>(value: &'v Value, path: &str) -> Result<&'v Map<String, Value>, Error> {
    value.as_object().ok_or_else(|| expected("a mapping", value, path))
}

/// Field readers for an evaluated mapping at `path`.
pub(crate) struct Fields<'v> {
    map: &'v Map<String, Value>,
    path: String,
}

impl<'v> Fields<'v> {
    pub(crate) fn of(value: &'v Value, path: &str) -> Result<Self, Error> {
        Ok(Self { map: as_object(value, path)?, path: path.to_owned() })
    }

    pub(crate) fn path(&self, key: &str) -> String {
        format!("{}.{key}", self.path)
    }

    pub(crate) fn get(&self, key: &str) -> Option<&'v Value> {
        self.map.get(key)
    }

    pub(crate) fn string(&self, key: &str) -> Result<Option<String>, Error> {
        self.get(key).map(|v| as_string(v, &self.path(key))).transpose()
    }

    pub(crate) fn required_string(&self, key: &str) -> Result<String, Error> {
        self.string(key)?.ok_or_else(|| Error::at(self.path(key), Problem::Required))
    }

    pub(crate) fn integer(&self, key: &str) -> Result<Option<u64>, Error> {
        self.get(key).map(|v| as_integer(v, &self.path(key))).transpose()
    }

    pub(crate) fn float(&self, key: &str) -> Result<Option<f64>, Error> {
        self.get(key).map(|v| as_float(v, &self.path(key))).transpose()
    }

    pub(crate) fn boolean(&self, key: &str) -> Result<Option<bool>, Error> {
        self.get(key).map(|v| as_bool(v, &self.path(key))).transpose()
    }

    pub(crate) fn strings(&self, key: &str) -> Result<Vec<String>, Error> {
        Ok(self.get(key).map(|v| as_strings(v, &self.path(key))).transpose()?.unwrap_or_default())
    }
}
