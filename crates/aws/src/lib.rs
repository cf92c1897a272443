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
//!   `ROOMS_TABLE`), the adapter's limits ([`DynamoDbSettings`]), and the Lambda functions' SDK
//!   config ([`load_sdk_config`]: region, credentials and endpoints from the environment, e.g.
//!   `AWS_ENDPOINT_URL_DYNAMODB`, and an HTTPS client on rustls with ring).
//! - [`http`]: [`http::Http1Client`], the SDK clients' HTTP/1.1 client (rustls on ring), which
//!   [`load_sdk_config`] gives every client.
//! - [`schema`]: the table contract as code: [`schema::create_tables`] creates the three tables
//!   with their GSIs and TTL (tests against moto, and the local gateway in Lambda mode).
//! - `store`: [`DynamoDbStore`], item encoding and SDK error mapping.
//! - `connections`: the [`dynamowave_core::ConnectionStore`] implementation (ConnectionsTable,
//!   and the display-name claims it keeps in the RoomsTable).
//! - `messages`: the [`dynamowave_core::MessageLog`] implementation (MessagesTable and
//!   RoomsTable: the gap-free seq allocation transaction and idempotency).
//! - [`connections_api`]: [`ApiGatewayConnectionsApi`] and [`ConnectionsApiPool`], which picks
//!   the `@connections` endpoint for an event and caches one client per endpoint.
//!
//! # Repeated on purpose
//!
//! - The port methods' signatures (`members`, `read_before`, `claim_room`, `post_to_many`, …)
//!   stand again in each adapter of the port (`dynamowave-store-redb`, core's `testing`): each
//!   implements the one trait in its own storage's terms.
//! - The SDK request chains (`update_item()…`, `query()…`, `delete_item()…`) share their opening
//!   lines: each request states its own table, key, expressions and condition. The parts that
//!   were truly the same have one place each: [`DynamoDbStore`]'s consistent GetItem, the name
//!   claim's UpdateItem (joining and taking over), and the on-demand CreateTable of `schema`.

pub mod config;
pub mod connections_api;
pub mod http;
pub mod schema;

mod connections;
mod messages;
mod store;

pub use config::{ConfigError, DynamoDbSettings, Tables, load_sdk_config};
pub use connections_api::{ApiGatewayConnectionsApi, CONNECTIONS_ENDPOINT_ENV, ConnectionsApiPool, endpoint_for_event};
pub use store::DynamoDbStore;
