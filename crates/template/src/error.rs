//! Errors: each names where in the template it happened.
//!
//! [`Error::Template`] carries a path such as `Resources.SendRoute.Properties.Target` and a
//! [`Problem`]; its text is `path: problem`, the form CloudFormation's own validation uses, so a
//! user can go straight to the line.

use std::path::PathBuf;

/// Why a template could not be read or resolved.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The text is not YAML (or, when it starts with `{`, not JSON).
    #[error("{source_name}: not a {format} template: {message}")]
    Syntax {
        /// The file name, or what the caller called the text.
        source_name: String,
        /// `YAML` or `JSON`.
        format: &'static str,
        /// The parser's message, with line and column.
        message: String,
    },
    /// A `--parameter-overrides` item that is not `KEY=VALUE`.
    #[error("parameter override {0:?} is not of the form KEY=VALUE")]
    BadOverride(String),
    /// Something in the template, at `path`.
    #[error("{path}: {problem}")]
    Template {
        /// Where: `Resources.<LogicalId>.Properties.<Property>…`, `Parameters.<Name>`,
        /// `Conditions.<Name>`, ….
        path: String,
        /// What.
        problem: Problem,
    },
}

impl Error {
    /// A [`Problem`] at `path`.
    pub(crate) fn at(path: impl Into<String>, problem: Problem) -> Self {
        Self::Template { path: path.into(), problem }
    }

    /// The problem, when the error is about the template's content.
    #[must_use]
    pub fn problem(&self) -> Option<&Problem> {
        match self {
            Self::Template { problem, .. } => Some(problem),
            _ => None,
        }
    }
}

/// What is wrong at a place in the template.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Problem {
    /// The top level is not a mapping, or a section is not of its kind.
    #[error("{0}")]
    Shape(String),
    /// `Fn::Foo` (or a short-form `!Foo`) that CloudFormation does not define.
    #[error("{0} is not a CloudFormation intrinsic")]
    UnknownIntrinsic(String),
    /// A CloudFormation intrinsic that has no local meaning.
    #[error("{function} is not supported locally: {why}")]
    Unsupported {
        /// The intrinsic.
        function: &'static str,
        /// Why, and what to do instead.
        why: &'static str,
    },
    /// An intrinsic with arguments of the wrong shape.
    #[error("{function} takes {expected}")]
    BadArgument {
        /// The intrinsic.
        function: &'static str,
        /// The shape it takes.
        expected: &'static str,
    },
    /// `Ref` (or a `${Name}` of `Fn::Sub`) of a name the template does not declare.
    #[error("{function} of {name}: not a parameter, a pseudo parameter or a resource of the template")]
    UnknownName {
        /// `Ref` or `Fn::Sub`.
        function: &'static str,
        /// The name.
        name: String,
    },
    /// `Fn::GetAtt` of a resource the template does not declare.
    #[error("Fn::GetAtt of {name}.{attribute}: {name} is not a resource of the template")]
    UnknownResource {
        /// The logical id.
        name: String,
        /// The attribute asked for.
        attribute: String,
    },
    /// `Ref` or `Fn::GetAtt` of a resource whose `Condition` is false, so it does not exist.
    #[error("{function} of {name}: the resource does not exist, its Condition {condition} is false")]
    AbsentResource {
        /// `Ref`, `Fn::Sub` or `Fn::GetAtt`.
        function: &'static str,
        /// The logical id.
        name: String,
        /// Its condition.
        condition: String,
    },
    /// `Fn::GetAtt` of an attribute the resource type does not have.
    #[error("Fn::GetAtt of {name}.{attribute}: {resource_type} has no attribute {attribute} (it has {known})")]
    UnknownAttribute {
        /// The logical id.
        name: String,
        /// Its type.
        resource_type: String,
        /// The attribute asked for.
        attribute: String,
        /// The attributes it has, comma-separated.
        known: String,
    },
    /// A name whose value depends on itself.
    #[error("circular reference: {0}")]
    Circular(String),
    /// `Fn::If` or `Condition` of a condition not declared in `Conditions`.
    #[error("condition {0} is not declared in Conditions")]
    UnknownCondition(String),
    /// A condition that does not evaluate to true or false.
    #[error("a condition must be Fn::Equals, Fn::And, Fn::Or, Fn::Not, Condition or a boolean, found {0}")]
    NotACondition(String),
    /// A `Fn::FindInMap` whose keys are not in the map.
    #[error("Fn::FindInMap: {0}")]
    NotInMap(String),
    /// `Fn::ImportValue` of an export that was not given.
    #[error("Fn::ImportValue of {0}: no other stack exists locally, give its value as an export")]
    UnknownExport(String),
    /// `Fn::Select` past the end of its list.
    #[error("Fn::Select: index {index} is out of range for a list of {len}")]
    IndexOutOfRange {
        /// The index.
        index: usize,
        /// The list's length.
        len: usize,
    },
    /// A parameter with neither a `Default` nor an override.
    #[error("parameter {0} has no Default: give its value with --parameter-overrides {0}=VALUE")]
    MissingParameter(String),
    /// A parameter read from SSM Parameter Store, which does not exist locally.
    #[error(
        "parameter {name} has type {parameter_type}, read from SSM Parameter Store on AWS{}: give its value with --parameter-overrides {name}=VALUE",
        .ssm_name.as_deref().map(|n| format!(" (parameter {n})")).unwrap_or_default()
    )]
    SsmParameter {
        /// The parameter.
        name: String,
        /// Its type.
        parameter_type: String,
        /// Its `Default`: for these types, the name of the SSM parameter, not a value.
        ssm_name: Option<String>,
    },
    /// An override for a parameter the template does not declare.
    #[error("--parameter-overrides {0}=…: the template declares no parameter {0}")]
    UndeclaredParameter(String),
    /// A parameter value that its constraints refuse.
    #[error("{value:?} is not allowed: {rule}")]
    NotAllowed {
        /// The value.
        value: String,
        /// The constraint, e.g. `not one of its AllowedValues: arm64, x86_64`.
        rule: String,
    },
    /// A parameter `Type` CloudFormation does not define.
    #[error("unknown parameter Type {0}")]
    UnknownParameterType(String),
    /// A required property that is absent.
    #[error("is required")]
    Required,
    /// A value of the wrong type.
    #[error("expected {expected}, found {found}")]
    Expected {
        /// What the property takes.
        expected: &'static str,
        /// What the template gave, after evaluation.
        found: String,
    },
    /// Function code that is not on this machine.
    #[error("{0}")]
    NotLocal(String),
    /// A reference between API resources that leads nowhere.
    #[error("{0}")]
    Dangling(String),
}
