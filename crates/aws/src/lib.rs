//! # dynamowave-aws: the AWS adapters
//!
//! The production side of the core's ports: [`DynamoDbStore`] implements
//! [`dynamowave_core::ConnectionStore`] and [`dynamowave_core::MessageLog`] on three DynamoDB
//! tables through `aws-sdk-dynamodb`, and [`ApiGatewayConnectionsApi`] implements
//! [`dynamowave_core::ConnectionsApi`] on API Gateway's `@connections` management API through
//! `aws-sdk-apigatewaymanagement`. Only this crate and the Lambda binaries link the AWS SDK.
//! The table design, access patterns and retry policy are in `docs/aws-adapters.md`.
//!
//! # Layout
//!
//! - [`config`]: table names ([`Tables`], from `CONNECTIONS_TABLE`, `MESSAGES_TABLE`,
//!   `ROOMS_TABLE`), the adapter's limits ([`DynamoDbSettings`]), and loading the SDK config
//!   (endpoints follow the SDK's own convention, e.g. `AWS_ENDPOINT_URL_DYNAMODB`).
//! - [`schema`]: the table contract as code: [`schema::create_tables`] creates the three tables
//!   with their GSIs and TTL (tests against moto, and the local gateway in Lambda mode).
//! - `store`: [`DynamoDbStore`], item encoding and SDK error mapping.
//! - `connections`: the [`dynamowave_core::ConnectionStore`] implementation (ConnectionsTable,
//!   and the display-name claims it keeps in the RoomsTable).
//! - `messages`: the [`dynamowave_core::MessageLog`] implementation (MessagesTable and
//!   RoomsTable: the gap-free seq allocation transaction and idempotency).
//! - [`connections_api`]: [`ApiGatewayConnectionsApi`] and [`ConnectionsApiPool`], which picks
//!   the `@connections` endpoint for an event and caches one client per endpoint.

pub mod config;
pub mod connections_api;
pub mod schema;

mod connections;
mod messages;
mod store;

pub use config::{ConfigError, DynamoDbSettings, Tables, load_sdk_config};
pub use connections_api::{ApiGatewayConnectionsApi, CONNECTIONS_ENDPOINT_ENV, ConnectionsApiPool, endpoint_for_event};
pub use store::DynamoDbStore;
