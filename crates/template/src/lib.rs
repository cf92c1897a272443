//! # dynamowave-template: a SAM or CloudFormation template, resolved for local serving
//!
//! `dynamowave serve --template T` runs the WebSocket APIs a template declares. This crate is
//! its first half: it reads the template (YAML with CloudFormation's short-form tags, or
//! JSON), evaluates its parameters, conditions and intrinsic functions with local values for
//! the pseudo parameters, and yields a typed [`Model`]: every WebSocket API with its routes,
//! integrations, route and integration responses, authorizers and stages; the functions they
//! invoke; the DynamoDB tables; and the resources that are not emulated, listed. The model
//! serializes to the stable JSON that `--print-config` prints. Serving it is the gateway's job.
//!
//! ```
//! use dynamowave_template::{Options, Template};
//!
//! let template = Template::parse(
//!     "Resources:\n  Table:\n    Type: AWS::DynamoDB::Table\n    Properties:\n      TableName: !Sub '${AWS::StackName}-items'\n      KeySchema: [{AttributeName: id, KeyType: HASH}]\n",
//!     "template.yaml",
//! )?;
//! let model = template.resolve(&Options::default())?;
//! assert_eq!(model.tables["Table"].table_name, "dynamowave-items");
//! # Ok::<(), dynamowave_template::Error>(())
//! ```
//!
//! # Layout
//!
//! - `parse`: text to a JSON value, short-form tags (`!Ref`, `!Sub`, `!GetAtt`, …) turned
//!   into their long forms.
//! - `template`: [`Template`], the sections as read, with SAM's `Globals` merged into the
//!   resources they apply to.
//! - `parameters`: [`PseudoParameters`], the `Parameters` with defaults, overrides
//!   ([`parse_overrides`]) and constraints; [`ParameterValue`].
//! - `eval`: the intrinsic functions and `Conditions`, evaluated lazily (only what the model
//!   reads), with cycle detection.
//! - `names`: local physical ids (`Ref` of a resource) and attributes (`Fn::GetAtt`).
//! - `props`: typed reading of evaluated values, with the resource and property path.
//! - `websocket`: [`WebSocketApi`] and its [`Route`]s, [`Integration`]s, [`RouteResponse`]s,
//!   [`IntegrationResponse`]s, [`Authorizer`]s and [`Stage`]s (with
//!   [`Stage::settings_for`], the settings a route gets).
//! - `functions`: [`Function`] and its [`Code`].
//! - `tables`: [`Table`].
//! - `model`: [`Model`], [`Options`], [`Skipped`]; the resolution that ties them together.
//! - `error`: [`Error`] and [`Problem`]; a template error names its path
//!   (`Resources.SendRoute.Properties.Target: Fn::Foo is not a CloudFormation intrinsic`).
//!
//! # The YAML parser
//!
//! `saphyr` (the maintained successor of `yaml-rust`/`yaml-rust2`, by the same authors): pure
//! Rust, and it keeps user-defined tags as `Tagged` nodes, which is what CloudFormation's short
//! forms are. `serde_yaml` is archived; `serde_yml` is unmaintained (its last release is a shim
//! onto another crate); `serde_norway`, a fork of `serde_yaml`, keeps tags too but sits on a
//! C-to-Rust translation of libyaml; `serde-saphyr` is a serde front end that deserializes into
//! types, where a template needs the tagged tree itself. saphyr implements YAML 1.2, where
//! CloudFormation reads YAML 1.1: the difference shows only in unquoted `yes`/`no`/`on`/`off`,
//! which stay strings here (quote booleans as CloudFormation's own docs do).
//!
//! # Repeated on purpose
//!
//! - The model's structs (`tables`, `functions`, `websocket`, `model`) share their shape: a
//!   derive, `#[serde(rename_all = "camelCase")]` and one documented field per CloudFormation
//!   property. Each struct is the property list of its resource type, read as AWS documents it;
//!   a macro would hide the fields a reader looks for.
//! - The `match` arms of `eval` (one per intrinsic) and the checks of `parameters` (one per
//!   constraint) open alike: each states its own arguments and its own error.

mod error;
mod eval;
mod functions;
mod model;
mod names;
mod parameters;
mod parse;
mod props;
mod tables;
mod template;
mod websocket;

pub use error::{Error, Problem};
pub use functions::{Code, Function};
pub use model::{Model, Options, Skipped};
pub use parameters::{ParameterValue, PseudoParameters, parse_overrides};
pub use tables::{AttributeDefinition, KeyElement, SecondaryIndex, Table, Throughput};
pub use template::Template;
pub use websocket::{
    AccessLogSettings, Authorizer, Integration, IntegrationResponse, Route, RouteResponse, RouteSettings, Stage,
    WebSocketApi,
};

impl Template {
    /// Evaluates the template with `options` and builds the [`Model`].
    ///
    /// # Errors
    /// [`Error::Template`] naming the place: a missing or refused parameter, an unknown
    /// intrinsic or one with bad arguments, a reference to nothing, a cycle, a property of the
    /// wrong type, function code that is not local, a route whose target is not an
    /// integration of its API.
    pub fn resolve(&self, options: &Options) -> Result<Model, Error> {
        model::build(self, options)
    }
}
