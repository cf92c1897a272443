//! Evaluation: the intrinsic functions, `Conditions`, and which resources exist.
//!
//! Evaluation is lazy: the model asks for the properties it reads, and a `Ref` or `Fn::GetAtt`
//! evaluates only the property that names its resource (`FunctionName`, `TableName`, …). So a
//! property this crate does not read (an IAM policy, an alarm's metrics) is never evaluated, and
//! `Fn::If` evaluates only the branch its condition picks, as CloudFormation does. Names being
//! resolved are kept on a stack, so that a name that depends on itself is an error, not an
//! endless loop.

use std::cell::RefCell;
use std::collections::BTreeMap;

use base64::Engine as _;
use serde_json::{Map, Value};

use crate::error::{Error, Problem};
use crate::names;
use crate::parameters::{ParameterValue, PseudoParameters, scalar_text};
use crate::parse::join;
use crate::template::{Resource, Template};

/// What evaluation reads: the template, the parameters' values, the pseudo parameters and the
/// other stacks' exports; and what it remembers: the conditions' values.
pub(crate) struct Context<'t> {
    pub(crate) template: &'t Template,
    pub(crate) pseudo: &'t PseudoParameters,
    pub(crate) parameters: BTreeMap<String, ParameterValue>,
    exports: &'t BTreeMap<String, String>,
    conditions: RefCell<BTreeMap<String, bool>>,
    /// `Conditions.<Name>` and `Resources.<LogicalId>` being resolved, outermost first.
    resolving: RefCell<Vec<String>>,
}

/// `Fn::Select`'s, `Fn::Join`'s … text for a wrong argument.
fn bad(function: &'static str, expected: &'static str, path: &str) -> Error {
    Error::at(path, Problem::BadArgument { function, expected })
}

impl<'t> Context<'t> {
    pub(crate) fn new(
        template: &'t Template,
        pseudo: &'t PseudoParameters,
        parameters: BTreeMap<String, ParameterValue>,
        exports: &'t BTreeMap<String, String>,
    ) -> Self {
        Self {
            template,
            pseudo,
            parameters,
            exports,
            conditions: RefCell::new(BTreeMap::new()),
            resolving: RefCell::new(Vec::new()),
        }
    }

    /// `value` with every intrinsic evaluated; `None` for `AWS::NoValue`. Mapping keys and list
    /// items whose value is `AWS::NoValue` are left out, as CloudFormation leaves them out.
    pub(crate) fn eval(&self, value: &Value, path: &str) -> Result<Option<Value>, Error> {
        self.walk(value, path, true)
    }

    /// [`Self::eval`]; the path grows with the keys and indexes of plain mappings and lists
    /// (`extend`), but not inside an intrinsic's arguments, where the property's own path is the
    /// one a reader can find.
    fn walk(&self, value: &Value, path: &str, extend: bool) -> Result<Option<Value>, Error> {
        match value {
            Value::Object(map) if map.len() == 1 => {
                let Some((key, argument)) = map.iter().next() else {
                    return Ok(Some(Value::Object(Map::new())));
                };
                if key == "Ref" {
                    self.reference(argument, path)
                } else if key.starts_with("Fn::") {
                    self.intrinsic(key, argument, path)
                } else {
                    self.walk_map(map, path, extend).map(Some)
                }
            }
            Value::Object(map) => self.walk_map(map, path, extend).map(Some),
            Value::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    let item_path = if extend { format!("{path}[{i}]") } else { path.to_owned() };
                    if let Some(item) = self.walk(item, &item_path, extend)? {
                        out.push(item);
                    }
                }
                Ok(Some(Value::Array(out)))
            }
            scalar => Ok(Some(scalar.clone())),
        }
    }

    fn walk_map(&self, map: &Map<String, Value>, path: &str, extend: bool) -> Result<Value, Error> {
        let mut out = Map::new();
        for (key, value) in map {
            let key_path = if extend { join(path, key) } else { path.to_owned() };
            if let Some(value) = self.walk(value, &key_path, extend)? {
                out.insert(key.clone(), value);
            }
        }
        Ok(Value::Object(out))
    }

    /// An intrinsic's argument, evaluated at the intrinsic's path.
    fn inner(&self, value: &Value, path: &str) -> Result<Option<Value>, Error> {
        self.walk(value, path, false)
    }

    /// An intrinsic's argument that must have a value (`AWS::NoValue` reads as null, which the
    /// caller's shape check then refuses).
    fn argument(&self, value: &Value, path: &str) -> Result<Value, Error> {
        Ok(self.inner(value, path)?.unwrap_or(Value::Null))
    }

    fn text(&self, value: &Value, function: &'static str, expected: &'static str, path: &str) -> Result<String, Error> {
        scalar_text(&self.argument(value, path)?).ok_or_else(|| bad(function, expected, path))
    }

    fn intrinsic(&self, name: &str, argument: &Value, path: &str) -> Result<Option<Value>, Error> {
        let value = match name {
            "Fn::Sub" => Value::String(self.sub(argument, path)?),
            "Fn::GetAtt" => self.get_att(argument, path)?,
            "Fn::Join" => self.join(argument, path)?,
            "Fn::If" => return self.fn_if(argument, path),
            "Fn::Equals" | "Fn::And" | "Fn::Or" | "Fn::Not" => {
                let mut call = Map::new();
                call.insert(name.to_owned(), argument.clone());
                Value::Bool(self.test(&Value::Object(call), path)?)
            }
            "Fn::Select" => self.select(argument, path)?,
            "Fn::Split" => self.split(argument, path)?,
            "Fn::GetAZs" => {
                let region =
                    self.text(argument, "Fn::GetAZs", "a region name (or \"\" for the stack's region)", path)?;
                let region = if region.is_empty() { self.pseudo.region.clone() } else { region };
                Value::Array(["a", "b", "c"].iter().map(|zone| Value::String(format!("{region}{zone}"))).collect())
            }
            "Fn::ImportValue" => {
                let export = self.text(argument, "Fn::ImportValue", "the name of an export", path)?;
                match self.exports.get(&export) {
                    Some(value) => Value::String(value.clone()),
                    None => return Err(Error::at(path, Problem::UnknownExport(export))),
                }
            }
            "Fn::FindInMap" => self.find_in_map(argument, path)?,
            "Fn::Base64" => {
                let text = self.text(argument, "Fn::Base64", "a string", path)?;
                Value::String(base64::engine::general_purpose::STANDARD.encode(text))
            }
            "Fn::Length" => match self.argument(argument, path)? {
                Value::Array(items) => Value::from(items.len()),
                _ => return Err(bad("Fn::Length", "a list", path)),
            },
            "Fn::ToJsonString" => {
                let value = self.argument(argument, path)?;
                Value::String(value.to_string())
            }
            "Fn::Cidr" => {
                return Err(Error::at(
                    path,
                    Problem::Unsupported {
                        function: "Fn::Cidr",
                        why: "there is no VPC locally; give the blocks as parameters",
                    },
                ));
            }
            "Fn::Transform" => {
                return Err(Error::at(
                    path,
                    Problem::Unsupported {
                        function: "Fn::Transform",
                        why: "macros run in CloudFormation; deploy once and use the processed template",
                    },
                ));
            }
            "Fn::ForEach" => {
                return Err(Error::at(
                    path,
                    Problem::Unsupported {
                        function: "Fn::ForEach",
                        why: "the AWS::LanguageExtensions transform is not applied locally",
                    },
                ));
            }
            other => return Err(Error::at(path, Problem::UnknownIntrinsic(other.to_owned()))),
        };
        Ok(Some(value))
    }

    // ------------------------------------------------------------------ Ref and names

    fn reference(&self, argument: &Value, path: &str) -> Result<Option<Value>, Error> {
        let Value::String(name) = argument else {
            return Err(bad("Ref", "the name of a parameter, a pseudo parameter or a resource", path));
        };
        self.name("Ref", name, path)
    }

    /// The value of `name` as `Ref` (and `Fn::Sub`'s `${name}`) see it: a pseudo parameter, a
    /// parameter, a resource's local physical id, or SAM's `Function.Alias`-style names.
    fn name(&self, function: &'static str, name: &str, path: &str) -> Result<Option<Value>, Error> {
        if name == "AWS::NoValue" {
            return Ok(None);
        }
        if let Some(value) = self.pseudo.get(name) {
            return Ok(Some(value));
        }
        if let Some(value) = self.parameters.get(name) {
            return Ok(Some(value.to_value()));
        }
        if self.template.resources.contains_key(name) {
            return names::physical_id(self, name, function, path).map(|id| Some(Value::String(id)));
        }
        if let Some((resource, property)) = name.split_once('.')
            && self.template.resources.contains_key(resource)
            && names::SAM_REFERENCES.contains(&property)
        {
            return names::sam_reference(self, resource, property, function, path).map(|id| Some(Value::String(id)));
        }
        Err(Error::at(path, Problem::UnknownName { function, name: name.to_owned() }))
    }

    /// The resource `logical_id` if it exists: declared, and its `Condition` (if any) true.
    pub(crate) fn existing(&self, logical_id: &str, function: &'static str, path: &str) -> Result<&'t Resource, Error> {
        let Some(resource) = self.template.resources.get(logical_id) else {
            return Err(Error::at(path, Problem::UnknownName { function, name: logical_id.to_owned() }));
        };
        if let Some(condition) = &resource.condition
            && !self.condition(condition, &format!("Resources.{logical_id}.Condition"))?
        {
            return Err(Error::at(
                path,
                Problem::AbsentResource { function, name: logical_id.to_owned(), condition: condition.clone() },
            ));
        }
        Ok(resource)
    }

    /// Whether the resource exists (its `Condition`, if any, is true).
    pub(crate) fn exists(&self, logical_id: &str, resource: &Resource) -> Result<bool, Error> {
        match &resource.condition {
            None => Ok(true),
            Some(condition) => self.condition(condition, &format!("Resources.{logical_id}.Condition")),
        }
    }

    /// The evaluated property `key` of resource `logical_id`.
    pub(crate) fn property(&self, logical_id: &str, resource: &Resource, key: &str) -> Result<Option<Value>, Error> {
        match resource.properties.get(key) {
            None => Ok(None),
            Some(value) => self.eval(value, &format!("Resources.{logical_id}.Properties.{key}")),
        }
    }

    /// Runs `resolve` with `key` on the stack of names being resolved; an error if `key` is
    /// already there (a cycle).
    pub(crate) fn guarded<T>(
        &self,
        key: String,
        path: &str,
        resolve: impl FnOnce() -> Result<T, Error>,
    ) -> Result<T, Error> {
        let cycle = {
            let stack = self.resolving.borrow();
            stack.iter().position(|k| *k == key).map(|start| {
                let mut chain: Vec<&str> = stack[start..].iter().map(|k| short_name(k)).collect();
                chain.push(short_name(&key));
                chain.join(" -> ")
            })
        };
        if let Some(chain) = cycle {
            return Err(Error::at(path, Problem::Circular(chain)));
        }
        self.resolving.borrow_mut().push(key);
        let result = resolve();
        self.resolving.borrow_mut().pop();
        result
    }

    // ------------------------------------------------------------------ Fn::Sub

    fn sub(&self, argument: &Value, path: &str) -> Result<String, Error> {
        const EXPECTED: &str = "a string, or a list of a string and a mapping of variables";
        let (text, variables) = match argument {
            Value::String(text) => (text, None),
            Value::Array(items) => match items.as_slice() {
                [Value::String(text)] => (text, None),
                [Value::String(text), Value::Object(variables)] => (text, Some(variables)),
                _ => return Err(bad("Fn::Sub", EXPECTED, path)),
            },
            _ => return Err(bad("Fn::Sub", EXPECTED, path)),
        };
        let mut out = String::with_capacity(text.len());
        let mut rest = text.as_str();
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            // `${!Literal}` is the text `${Literal}`.
            if let Some(literal) = after.strip_prefix('!') {
                out.push_str("${");
                rest = literal;
                continue;
            }
            let Some(end) = after.find('}') else {
                return Err(bad("Fn::Sub", "a string whose every ${ is closed by }", path));
            };
            out.push_str(&self.sub_variable(&after[..end], variables, path)?);
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }

    fn sub_variable(&self, name: &str, variables: Option<&Map<String, Value>>, path: &str) -> Result<String, Error> {
        let value = if let Some(value) = variables.and_then(|v| v.get(name)) {
            self.inner(value, path)?
        } else if self.pseudo.get(name).is_some()
            || name == "AWS::NoValue"
            || self.parameters.contains_key(name)
            || self.template.resources.contains_key(name)
        {
            self.name("Fn::Sub", name, path)?
        } else if let Some((resource, attribute)) = name.split_once('.') {
            if self.template.resources.contains_key(resource) && names::SAM_REFERENCES.contains(&attribute) {
                self.name("Fn::Sub", name, path)?
            } else {
                Some(names::attribute(self, resource, attribute, path)?)
            }
        } else {
            return Err(Error::at(path, Problem::UnknownName { function: "Fn::Sub", name: name.to_owned() }));
        };
        value.as_ref().and_then(scalar_text).ok_or_else(|| {
            Error::at(
                path,
                Problem::Expected {
                    expected: "a string",
                    found: format!("{} for ${{{name}}} in Fn::Sub", kind(value.as_ref())),
                },
            )
        })
    }

    // ------------------------------------------------------------------ the other functions

    fn get_att(&self, argument: &Value, path: &str) -> Result<Value, Error> {
        const EXPECTED: &str = "a list of a logical id and an attribute name, or \"LogicalId.Attribute\"";
        let (resource, attribute) = match argument {
            Value::String(both) => both
                .split_once('.')
                .map(|(r, a)| (r.to_owned(), a.to_owned()))
                .ok_or_else(|| bad("Fn::GetAtt", EXPECTED, path))?,
            Value::Array(items) => match items.as_slice() {
                [Value::String(resource), attribute] => {
                    (resource.clone(), self.text(attribute, "Fn::GetAtt", EXPECTED, path)?)
                }
                _ => return Err(bad("Fn::GetAtt", EXPECTED, path)),
            },
            _ => return Err(bad("Fn::GetAtt", EXPECTED, path)),
        };
        names::attribute(self, &resource, &attribute, path)
    }

    fn join(&self, argument: &Value, path: &str) -> Result<Value, Error> {
        const EXPECTED: &str = "a list of a delimiter and a list of strings";
        let Value::Array(items) = argument else {
            return Err(bad("Fn::Join", EXPECTED, path));
        };
        let [Value::String(delimiter), list] = items.as_slice() else {
            return Err(bad("Fn::Join", EXPECTED, path));
        };
        let Value::Array(parts) = self.argument(list, path)? else {
            return Err(bad("Fn::Join", EXPECTED, path));
        };
        let parts = parts
            .iter()
            .map(|part| scalar_text(part).ok_or_else(|| bad("Fn::Join", EXPECTED, path)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Value::String(parts.join(delimiter)))
    }

    fn fn_if(&self, argument: &Value, path: &str) -> Result<Option<Value>, Error> {
        let Value::Array(items) = argument else {
            return Err(bad("Fn::If", "a list of a condition name, the value if true and the value if false", path));
        };
        let [Value::String(condition), if_true, if_false] = items.as_slice() else {
            return Err(bad("Fn::If", "a list of a condition name, the value if true and the value if false", path));
        };
        if self.condition(condition, path)? { self.inner(if_true, path) } else { self.inner(if_false, path) }
    }

    fn select(&self, argument: &Value, path: &str) -> Result<Value, Error> {
        const EXPECTED: &str = "a list of an index and a list";
        let Value::Array(items) = argument else {
            return Err(bad("Fn::Select", EXPECTED, path));
        };
        let [index, list] = items.as_slice() else {
            return Err(bad("Fn::Select", EXPECTED, path));
        };
        let index = self
            .text(index, "Fn::Select", EXPECTED, path)?
            .trim()
            .parse::<usize>()
            .map_err(|_| bad("Fn::Select", "an index that is a whole number from 0", path))?;
        let Value::Array(list) = self.argument(list, path)? else {
            return Err(bad("Fn::Select", EXPECTED, path));
        };
        let len = list.len();
        list.into_iter().nth(index).ok_or_else(|| Error::at(path, Problem::IndexOutOfRange { index, len }))
    }

    fn split(&self, argument: &Value, path: &str) -> Result<Value, Error> {
        const EXPECTED: &str = "a list of a delimiter and a string";
        let Value::Array(items) = argument else {
            return Err(bad("Fn::Split", EXPECTED, path));
        };
        let [Value::String(delimiter), source] = items.as_slice() else {
            return Err(bad("Fn::Split", EXPECTED, path));
        };
        if delimiter.is_empty() {
            return Err(bad("Fn::Split", "a delimiter that is not empty", path));
        }
        let source = self.text(source, "Fn::Split", EXPECTED, path)?;
        Ok(Value::Array(source.split(delimiter.as_str()).map(|s| Value::String(s.to_owned())).collect()))
    }

    fn find_in_map(&self, argument: &Value, path: &str) -> Result<Value, Error> {
        const EXPECTED: &str =
            "a list of a map name, a top-level key and a second-level key (and, optionally, {DefaultValue: …})";
        let Value::Array(items) = argument else {
            return Err(bad("Fn::FindInMap", EXPECTED, path));
        };
        let (keys, default) = match items.as_slice() {
            [a, b, c] => ([a, b, c], None),
            [a, b, c, Value::Object(options)] => ([a, b, c], options.get("DefaultValue")),
            _ => return Err(bad("Fn::FindInMap", EXPECTED, path)),
        };
        let [map, top, second] = [
            self.text(keys[0], "Fn::FindInMap", EXPECTED, path)?,
            self.text(keys[1], "Fn::FindInMap", EXPECTED, path)?,
            self.text(keys[2], "Fn::FindInMap", EXPECTED, path)?,
        ];
        let found = match self.template.mappings.get(&map) {
            None => Err(format!("no mapping {map} in Mappings")),
            Some(mapping) => match mapping.get(&top) {
                None => Err(format!("mapping {map} has no key {top}")),
                Some(level) => match level.get(&second) {
                    None => Err(format!("mapping {map}.{top} has no key {second}")),
                    Some(value) => Ok(value.clone()),
                },
            },
        };
        match (found, default) {
            (Ok(value), _) => Ok(value),
            (Err(_), Some(default)) => self.argument(default, path),
            (Err(why), None) => Err(Error::at(path, Problem::NotInMap(why))),
        }
    }

    // ------------------------------------------------------------------ conditions

    /// The value of the declared condition `name`; `path` is where it is asked for.
    pub(crate) fn condition(&self, name: &str, path: &str) -> Result<bool, Error> {
        if let Some(value) = self.conditions.borrow().get(name) {
            return Ok(*value);
        }
        let Some(definition) = self.template.conditions.get(name) else {
            return Err(Error::at(path, Problem::UnknownCondition(name.to_owned())));
        };
        let own_path = format!("Conditions.{name}");
        let value = self.guarded(own_path.clone(), path, || self.test(definition, &own_path))?;
        self.conditions.borrow_mut().insert(name.to_owned(), value);
        Ok(value)
    }

    /// Every declared condition's value.
    pub(crate) fn all_conditions(&self) -> Result<BTreeMap<String, bool>, Error> {
        let mut all = BTreeMap::new();
        for name in self.template.conditions.keys() {
            all.insert(name.clone(), self.condition(name, &format!("Conditions.{name}"))?);
        }
        Ok(all)
    }

    /// A condition expression: `Fn::Equals`, `Fn::And`, `Fn::Or`, `Fn::Not`, `Condition`, or
    /// anything that evaluates to a boolean.
    fn test(&self, value: &Value, path: &str) -> Result<bool, Error> {
        if let Value::Object(map) = value
            && map.len() == 1
            && let Some((key, argument)) = map.iter().next()
        {
            match key.as_str() {
                "Condition" => {
                    let Value::String(name) = argument else {
                        return Err(bad("Condition", "the name of a condition", path));
                    };
                    return self.condition(name, path);
                }
                "Fn::Equals" => {
                    let Value::Array(items) = argument else {
                        return Err(bad("Fn::Equals", "a list of two values", path));
                    };
                    let [a, b] = items.as_slice() else {
                        return Err(bad("Fn::Equals", "a list of two values", path));
                    };
                    let (a, b) = (self.argument(a, path)?, self.argument(b, path)?);
                    // CloudFormation compares the values as text: `!Equals [!Ref Count, 0]`.
                    return Ok(match (scalar_text(&a), scalar_text(&b)) {
                        (Some(a), Some(b)) => a == b,
                        _ => a == b,
                    });
                }
                "Fn::And" | "Fn::Or" => {
                    let function = if key == "Fn::And" { "Fn::And" } else { "Fn::Or" };
                    let Value::Array(items) = argument else {
                        return Err(bad(function, "a list of 2 to 10 conditions", path));
                    };
                    if !(2..=10).contains(&items.len()) {
                        return Err(bad(function, "a list of 2 to 10 conditions", path));
                    }
                    for item in items {
                        let value = self.test(item, path)?;
                        if value != (function == "Fn::And") {
                            return Ok(value);
                        }
                    }
                    return Ok(function == "Fn::And");
                }
                "Fn::Not" => {
                    let Value::Array(items) = argument else {
                        return Err(bad("Fn::Not", "a list of one condition", path));
                    };
                    let [item] = items.as_slice() else {
                        return Err(bad("Fn::Not", "a list of one condition", path));
                    };
                    return Ok(!self.test(item, path)?);
                }
                _ => {}
            }
        }
        match self.inner(value, path)? {
            Some(Value::Bool(b)) => Ok(b),
            Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(true),
            Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Ok(false),
            other => Err(Error::at(path, Problem::NotACondition(kind(other.as_ref())))),
        }
    }
}

/// `Conditions.A` → `A`, for cycle chains.
fn short_name(key: &str) -> &str {
    key.split_once('.').map_or(key, |(_, name)| name)
}

/// What a value is, for messages: `a list`, `a mapping`, `the string "x"`, ….
pub(crate) fn kind(value: Option<&Value>) -> String {
    match value {
        None => "AWS::NoValue".to_owned(),
        Some(Value::Null) => "null".to_owned(),
        Some(Value::Bool(b)) => format!("the boolean {b}"),
        Some(Value::Number(n)) => format!("the number {n}"),
        Some(Value::String(s)) => format!("the string {s:?}"),
        Some(Value::Array(_)) => "a list".to_owned(),
        Some(Value::Object(_)) => "a mapping".to_owned(),
    }
}
