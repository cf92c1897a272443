//! `Parameters` with their defaults, the caller's overrides and their constraints; the pseudo
//! parameters with local values.

use std::collections::BTreeMap;

use regex::Regex;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::{Error, Problem};

/// The local values of CloudFormation's pseudo parameters (`AWS::Region`, …).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PseudoParameters {
    /// `AWS::Region`; `us-east-1` by default.
    pub region: String,
    /// `AWS::AccountId`; `000000000000` by default, the account local emulators use.
    pub account_id: String,
    /// `AWS::StackName`; `dynamowave` by default, so that our own template's tables are the
    /// `dynamowave-…` tables that `dynamowave serve` uses.
    pub stack_name: String,
    /// `AWS::Partition`; follows the region (`aws`, `aws-cn`, `aws-us-gov`).
    pub partition: String,
    /// `AWS::URLSuffix`; follows the region (`amazonaws.com`, `amazonaws.com.cn`).
    pub url_suffix: String,
}

impl Default for PseudoParameters {
    fn default() -> Self {
        Self::for_region("us-east-1")
    }
}

impl PseudoParameters {
    /// The defaults, in `region`, with the partition and URL suffix of that region.
    #[must_use]
    pub fn for_region(region: &str) -> Self {
        let (partition, url_suffix) = if region.starts_with("cn-") {
            ("aws-cn", "amazonaws.com.cn")
        } else if region.starts_with("us-gov-") {
            ("aws-us-gov", "amazonaws.com")
        } else {
            ("aws", "amazonaws.com")
        };
        Self {
            region: region.to_owned(),
            account_id: "000000000000".to_owned(),
            stack_name: "dynamowave".to_owned(),
            partition: partition.to_owned(),
            url_suffix: url_suffix.to_owned(),
        }
    }

    /// The value of the pseudo parameter `name` (`AWS::Region`, …); `None` for `AWS::NoValue`
    /// and names that are not pseudo parameters.
    pub(crate) fn get(&self, name: &str) -> Option<Value> {
        Some(match name {
            "AWS::Region" => self.region.clone().into(),
            "AWS::AccountId" => self.account_id.clone().into(),
            "AWS::StackName" => self.stack_name.clone().into(),
            "AWS::Partition" => self.partition.clone().into(),
            "AWS::URLSuffix" => self.url_suffix.clone().into(),
            "AWS::StackId" => format!(
                "arn:{}:cloudformation:{}:{}:stack/{}/00000000-0000-0000-0000-000000000000",
                self.partition, self.region, self.account_id, self.stack_name
            )
            .into(),
            "AWS::NotificationARNs" => Value::Array(Vec::new()),
            _ => return None,
        })
    }
}

/// A parameter's value: a string, or a list for the list types (`CommaDelimitedList`,
/// `List<…>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum ParameterValue {
    /// `String`, `Number` (CloudFormation passes numbers as strings) and `AWS::…` types.
    String(String),
    /// `CommaDelimitedList` and `List<…>`.
    List(Vec<String>),
}

impl ParameterValue {
    pub(crate) fn to_value(&self) -> Value {
        match self {
            Self::String(s) => Value::String(s.clone()),
            Self::List(items) => Value::Array(items.iter().cloned().map(Value::String).collect()),
        }
    }
}

/// Every declared parameter's value: the override, else the `Default`, checked against the
/// parameter's `Type` and constraints. Names are visited in order, so the first error is
/// always the same one.
pub(crate) fn resolve(
    declared: &Map<String, Value>,
    overrides: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, ParameterValue>, Error> {
    if let Some(name) = overrides.keys().find(|name| !declared.contains_key(*name)) {
        return Err(Error::at(format!("Parameters.{name}"), Problem::UndeclaredParameter(name.clone())));
    }
    let mut values = BTreeMap::new();
    for (name, declaration) in declared {
        let path = format!("Parameters.{name}");
        let Value::Object(declaration) = declaration else {
            return Err(Error::at(path, Problem::Shape("a parameter is a mapping with a Type".to_owned())));
        };
        let parameter_type = match declaration.get("Type") {
            Some(Value::String(t)) => t.as_str(),
            Some(_) => return Err(Error::at(format!("{path}.Type"), Problem::Shape("must be a string".to_owned()))),
            None => return Err(Error::at(format!("{path}.Type"), Problem::Required)),
        };
        let kind = kind_of(parameter_type).ok_or_else(|| {
            Error::at(format!("{path}.Type"), Problem::UnknownParameterType(parameter_type.to_owned()))
        })?;
        let default = match declaration.get("Default") {
            None | Some(Value::Null) => None,
            Some(default) => Some(scalar_text(default).ok_or_else(|| {
                Error::at(format!("{path}.Default"), Problem::Shape("must be a string or a number".to_owned()))
            })?),
        };
        let given = match (overrides.get(name), kind.ssm) {
            (Some(value), _) => value.clone(),
            // For an SSM type, `Default` names the SSM parameter; its value is on AWS only.
            (None, true) => {
                return Err(Error::at(
                    path,
                    Problem::SsmParameter {
                        name: name.clone(),
                        parameter_type: parameter_type.to_owned(),
                        ssm_name: default,
                    },
                ));
            }
            (None, false) => default.ok_or_else(|| Error::at(&path, Problem::MissingParameter(name.clone())))?,
        };
        let value = if kind.list {
            let items: Vec<String> =
                if given.is_empty() { Vec::new() } else { given.split(',').map(str::to_owned).collect() };
            for item in &items {
                check(declaration, item, kind.number, &path)?;
            }
            ParameterValue::List(items)
        } else {
            check(declaration, &given, kind.number, &path)?;
            ParameterValue::String(given)
        };
        values.insert(name.clone(), value);
    }
    Ok(values)
}

struct Kind {
    list: bool,
    number: bool,
    ssm: bool,
}

/// How a parameter `Type` is read, or `None` for a type CloudFormation does not define.
fn kind_of(parameter_type: &str) -> Option<Kind> {
    let kind = |list, number, ssm| Some(Kind { list, number, ssm });
    if let Some(inner) = parameter_type.strip_prefix("AWS::SSM::Parameter::Value<").and_then(|t| t.strip_suffix('>')) {
        let list = inner == "CommaDelimitedList" || inner.starts_with("List<");
        return kind(list, false, true);
    }
    match parameter_type {
        "String" | "AWS::SSM::Parameter::Name" => kind(false, false, false),
        "Number" => kind(false, true, false),
        "CommaDelimitedList" => kind(true, false, false),
        "List<Number>" => kind(true, true, false),
        t if t.starts_with("List<AWS::") && t.ends_with('>') => kind(true, false, false),
        // AWS-specific types (`AWS::EC2::KeyPair::KeyName`, …) are strings that AWS checks exist.
        t if t.starts_with("AWS::") => kind(false, false, false),
        _ => None,
    }
}

/// The parameter constraints that can be checked without AWS: `AllowedValues`,
/// `AllowedPattern`, `MinLength`/`MaxLength`, `MinValue`/`MaxValue`, and that a `Number` is one.
fn check(declaration: &Map<String, Value>, value: &str, number: bool, path: &str) -> Result<(), Error> {
    let refuse = |rule: String| Err(Error::at(path, Problem::NotAllowed { value: value.to_owned(), rule }));
    if let Some(Value::Array(allowed)) = declaration.get("AllowedValues") {
        let allowed: Vec<String> = allowed.iter().filter_map(scalar_text).collect();
        if !allowed.iter().any(|a| a == value) {
            return refuse(format!("not one of its AllowedValues: {}", allowed.join(", ")));
        }
    }
    if number {
        let Ok(n) = value.trim().parse::<f64>() else {
            return refuse("the parameter's Type is Number".to_owned());
        };
        if let Some(min) = declaration.get("MinValue").and_then(number_of)
            && n < min
        {
            return refuse(format!("below its MinValue {min}"));
        }
        if let Some(max) = declaration.get("MaxValue").and_then(number_of)
            && n > max
        {
            return refuse(format!("above its MaxValue {max}"));
        }
        return Ok(());
    }
    let length = value.chars().count() as f64;
    if let Some(min) = declaration.get("MinLength").and_then(number_of)
        && length < min
    {
        return refuse(format!("shorter than its MinLength {min}"));
    }
    if let Some(max) = declaration.get("MaxLength").and_then(number_of)
        && length > max
    {
        return refuse(format!("longer than its MaxLength {max}"));
    }
    if let Some(Value::String(pattern)) = declaration.get("AllowedPattern") {
        // CloudFormation matches the whole value.
        let whole = Regex::new(&format!("^(?:{pattern})$")).map_err(|e| {
            Error::at(format!("{path}.AllowedPattern"), Problem::Shape(format!("not a regular expression: {e}")))
        })?;
        if !whole.is_match(value) {
            return refuse(format!("does not match its AllowedPattern {pattern}"));
        }
    }
    Ok(())
}

/// A scalar as CloudFormation sees it, as text: `10`, `true`, `arm64`.
pub(crate) fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn number_of(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// `KEY=VALUE` items (what `--parameter-overrides` takes; SAM's
/// `ParameterKey=K,ParameterValue=V` form too) as a map.
///
/// # Errors
/// [`Error::BadOverride`] for an item of neither form.
pub fn parse_overrides<I, S>(items: I) -> Result<BTreeMap<String, String>, Error>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let mut overrides = BTreeMap::new();
    for item in items {
        let item = item.as_ref();
        let pair = item
            .strip_prefix("ParameterKey=")
            .and_then(|rest| rest.split_once(",ParameterValue="))
            .or_else(|| item.split_once('='));
        match pair {
            Some((key, value)) if !key.is_empty() => {
                overrides.insert(key.to_owned(), value.to_owned());
            }
            _ => return Err(Error::BadOverride(item.to_owned())),
        }
    }
    Ok(overrides)
}
