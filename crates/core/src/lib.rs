//! # dynamowave-core: the chat domain
//!
//! The chat handlers of the seed (ConnectHandler, DisconnectHandler, SendMessageHandler,
//! DefaultHandler) and the chat actions added on top of them (join, leave, setname, history,
//! who, sendprivate, ping, rooms), written as functions of
//! `(dependencies, aws_lambda_events WebSocket event) -> response`. The same code runs
//! in-process behind the local gateway (`dynamowave-gateway`) and inside the Lambda binaries
//! (`dynamowave-lambda`); neither sockets nor the AWS SDK are known here.
//!
//! # Layout
//!
//! - [`app`]: the chat as an app behind a gateway: its routes, defined once ([`app::Route`],
//!   [`app::Function`], [`app::route_table`]), and what a gateway serves with them
//!   ([`app::chat`]: the chat's error frames and its web client, `web/`); [`app::in_process`] for
//!   the handlers in this process.
//! - [`store`]: the storage ports, named by role: [`store::ConnectionStore`] (the seed's
//!   ConnectionsTable) and [`store::MessageLog`] (durable per-room history).
//! - [`connections_api`]: the delivery port, [`connections_api::ConnectionsApi`], mirroring API
//!   Gateway's `@connections` API (PostToConnection, GetConnection, DeleteConnection) and its
//!   errors (Gone, PayloadTooLarge, LimitExceeded, Forbidden); defined in `dynamowave-apigw`.
//! - [`model`]: the records the ports carry.
//! - [`protocol`]: the wire contract (`docs/protocol.md`): client actions in, server events out,
//!   in both framings (plain, as in AWS's tutorial, and JSON events under `dynamowave.v1`).
//! - [`names`]: display-name and room-name validation, the key under which a name is held
//!   (confusable skeleton), and the invisible characters message text may not carry.
//! - [`event`]: reading what the handlers need out of an API Gateway WebSocket event.
//! - [`handlers`]: the handlers, [`ChatDeps`] (built by [`ChatDeps::new`]) and [`handle`], the
//!   router that picks a handler by `routeKey`.
//! - [`integration`]: how a gateway invokes a route (`dynamowave-apigw`'s `Integration`);
//!   [`integration::InProcess`], the handlers in this process.
//! - [`error`]: the domain's errors ([`StoreError`], [`HandlerError`]).
//! - `testing` (feature `testing`): an in-memory store and a recording `ConnectionsApi` for unit
//!   tests of pure logic, and [`contract`], the suite every storage adapter must pass.
//!
//! # Repeated on purpose
//!
//! The ports' method signatures in [`store`] (`members`, `read_before`, `claim_room`, …) stand
//! again in each adapter (`testing`, `dynamowave-store-redb`, `dynamowave-aws`) and in the
//! tests' spies: Rust has each `impl` restate them. What the adapters decide alike has one
//! place ([`store::RoomClaim::claim_in`], the per-connection room rule of the in-memory ones).

pub mod app;
pub mod connections_api;
pub mod error;
pub mod event;
pub mod handlers;
pub mod integration;
pub mod model;
pub mod names;
pub mod protocol;
pub mod store;

#[cfg(feature = "testing")]
pub mod contract;
#[cfg(feature = "testing")]
pub mod testing;

pub use aws_lambda_events::apigw::{
    ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest, ApiGatewayWebsocketProxyRequestContext,
};
pub use connections_api::{ConnectionInfo, ConnectionsApi, ConnectionsApiError};
pub use error::{HandlerError, StoreError, StoreResult};
pub use handlers::{ChatDeps, ChatSettings, HandlerResult, Placement, handle, is_warmup_event};
pub use model::{ConnectionRecord, Framing};
pub use store::{ConnectionStore, MessageLog};

/// The WebSocket subprotocol that selects JSON event framing (the one definition: clients
/// import it from here).
pub const SUBPROTOCOL: &str = "dynamowave.v1";
