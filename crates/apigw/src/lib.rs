//! # dynamowave-apigw: API Gateway's WebSocket ports
//!
//! The contract between a gateway (the local one in `dynamowave-gateway`, or API Gateway
//! itself) and an app behind it (the chat in `dynamowave-core`). Neither side knows the other:
//! the gateway takes an [`App`] — a [`RouteTable`] of [`Integration`]s, how its error frames look,
//! and its static assets — and gives the app a [`ConnectionsApi`] to answer clients through. The
//! events are `aws_lambda_events`' WebSocket types, as on AWS.
//!
//! # Layout
//!
//! - [`integration`]: [`Integration`], how a route's backend is invoked (a Lambda proxy
//!   integration), and [`IntegrationError`]; [`integration_fn`], one from an async function,
//!   and [`proxy_response`], a proxy integration's answer.
//! - [`connections_api`]: [`ConnectionsApi`], API Gateway's `@connections` API as a trait, its
//!   errors ([`ConnectionsApiError`]) and GetConnection's answer ([`ConnectionInfo`]).
//! - [`routes`]: [`RouteTable`], route key → integration with the `$default` fallback, and the
//!   reserved route keys ([`routes::route_key`]).
//! - [`payload`]: [`lambda_payload`], an event as API Gateway sends it to a Lambda function.
//! - [`app`]: [`App`], everything an app gives the gateway: routes, [`ErrorFrames`], [`Asset`]s.
//!
//! # Repeated on purpose
//!
//! [`ConnectionsApi::post_to_many`]'s signature stands again in the local gateway's and the AWS
//! SDK's implementations, each of which overrides the default for its own transport.

pub mod app;
pub mod connections_api;
pub mod integration;
pub mod payload;
pub mod routes;

pub use app::{ApiGatewayErrorFrames, App, Asset, ErrorFrame, ErrorFrames, ErrorKind};
pub use connections_api::{ConnectionInfo, ConnectionsApi, ConnectionsApiError};
pub use integration::{Integration, IntegrationError, IntegrationFn, integration_fn, proxy_response};
pub use payload::lambda_payload;
pub use routes::RouteTable;
