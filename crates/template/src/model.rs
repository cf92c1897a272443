//! The resolved model: what `serve --template` serves, and what it does not emulate.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde::Serialize;

use crate::error::Error;
use crate::eval::Context;
use crate::functions::{self, Function};
use crate::parameters::{self, ParameterValue, PseudoParameters};
use crate::tables::{self, Table};
use crate::template::{Resource, Template};
use crate::websocket::{self, WebSocketApi};

/// What the caller gives besides the template.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The pseudo parameters' local values.
    pub pseudo: PseudoParameters,
    /// `--parameter-overrides`: parameter name → value (see
    /// [`parse_overrides`](crate::parse_overrides)).
    pub parameter_overrides: BTreeMap<String, String>,
    /// Other stacks' exports, for `Fn::ImportValue`: export name → value.
    pub exports: BTreeMap<String, String>,
}

/// The template, resolved: every WebSocket API, function and table, with their settings as
/// the template's parameters and conditions make them. Serializes to the JSON that
/// `--print-config` prints.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Model {
    /// The template's file name (or what the caller called its text).
    pub source: String,
    /// The directory relative `CodeUri`s are relative to.
    pub base_dir: Option<PathBuf>,
    /// The pseudo parameters' values.
    pub pseudo_parameters: PseudoParameters,
    /// Every parameter's value.
    pub parameters: BTreeMap<String, ParameterValue>,
    /// Every condition's value.
    pub conditions: BTreeMap<String, bool>,
    /// The WebSocket APIs, by logical id.
    pub websocket_apis: Vec<WebSocketApi>,
    /// The functions, by logical id.
    pub functions: BTreeMap<String, Function>,
    /// The tables, by logical id.
    pub tables: BTreeMap<String, Table>,
    /// The resources that exist but are not emulated (IAM, alarms, log groups, permissions,
    /// …), by logical id. The caller prints them once; none is an error.
    pub ignored: Vec<Skipped>,
    /// The resources whose `Condition` is false, so that they do not exist.
    pub absent: Vec<Skipped>,
    /// Findings that do not stop the template from being served, such as an integration whose
    /// URI names no function of the template.
    pub warnings: Vec<String>,
}

/// A resource the model leaves out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Skipped {
    /// The logical id.
    pub logical_id: String,
    /// Its type.
    pub resource_type: String,
    /// Its `Condition`, for an absent resource.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
}

impl Model {
    /// The model as the JSON document `--print-config` prints (stable: maps are sorted,
    /// lists are in a fixed order).
    #[must_use]
    pub fn to_json(&self) -> serde_json::Value {
        // A struct of strings, numbers and maps with string keys always serializes.
        serde_json::to_value(self).unwrap_or_default()
    }

    /// [`Self::to_json`], indented.
    #[must_use]
    pub fn to_json_pretty(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// The WebSocket API `logical_id`.
    #[must_use]
    pub fn api(&self, logical_id: &str) -> Option<&WebSocketApi> {
        self.websocket_apis.iter().find(|api| api.logical_id == logical_id)
    }
}

pub(crate) fn build(template: &Template, options: &Options) -> Result<Model, Error> {
    let parameters = parameters::resolve(&template.parameters, &options.parameter_overrides)?;
    let ctx = Context::new(template, &options.pseudo, parameters, &options.exports);
    let conditions = ctx.all_conditions()?;
    let mut present: Vec<(&str, &Resource)> = Vec::new();
    let mut absent = Vec::new();
    for (logical_id, resource) in &template.resources {
        if ctx.exists(logical_id, resource)? {
            present.push((logical_id, resource));
        } else {
            absent.push(Skipped {
                logical_id: logical_id.clone(),
                resource_type: resource.resource_type.clone(),
                condition: resource.condition.clone(),
            });
        }
    }
    let functions = functions::build(&ctx, &present)?;
    let tables = tables::build(&ctx, &present)?;
    let apis = websocket::build(&ctx, &present, &functions)?;
    let modelled: BTreeSet<&str> = functions
        .keys()
        .chain(tables.keys())
        .map(String::as_str)
        .chain(apis.consumed.iter().map(String::as_str))
        .collect();
    let ignored = present
        .iter()
        .filter(|(logical_id, _)| !modelled.contains(logical_id))
        .map(|(logical_id, resource)| Skipped {
            logical_id: (*logical_id).to_owned(),
            resource_type: resource.resource_type.clone(),
            condition: None,
        })
        .collect();
    Ok(Model {
        source: template.source_name.clone(),
        base_dir: template.base_dir.clone(),
        pseudo_parameters: options.pseudo.clone(),
        parameters: ctx.parameters.clone(),
        conditions,
        websocket_apis: apis.apis,
        functions,
        tables,
        ignored,
        absent,
        warnings: apis.warnings,
    })
}
