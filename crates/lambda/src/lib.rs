//! # dynamowave-lambda: the Lambda binaries
//!
//! Thin wrappers that put the core's handlers behind the Lambda Runtime API. Each binary
//! builds its SDK clients once in `main` and then serves invocations; the per-invocation
//! functions live here, in the library, so tests call them directly against moto.
//!
//! The same binaries run in AWS and, built for the host, as `bootstrap`s under the local
//! gateway's Runtime API (`AWS_LAMBDA_RUNTIME_API`), with `AWS_ENDPOINT_URL_DYNAMODB` pointing at
//! moto and `DYNAMOWAVE_CONNECTIONS_ENDPOINT` at the gateway's `@connections` API.
//!
//! # Layout
//!
//! - [`chat`]: [`ChatRuntime`] (store and `@connections` clients, built once) and
//!   [`ChatRuntime::invoke`], the per-invocation function of `connect`, `disconnect`,
//!   `sendmessage` and `default`: a warm-up event is answered at once, anything else goes to
//!   `dynamowave_core::handle`.
//! - [`authorizer`]: the `$connect` REQUEST authorizer around `dynamowave_auth::authorize`,
//!   with secrets from Secrets Manager and keys from `JWKS_URL`.
//! - [`warmer`]: invokes the functions in `WARM_FUNCTIONS` with `{"warmup": true}`.
//! - [`telemetry`]: JSON logs through `tracing`.
//! - `src/bin/*`: one `main` per function: `connect`, `disconnect`, `sendmessage`, `default`,
//!   `authorizer`, `warmer`.
//!
//! # Repeated on purpose
//!
//! - `authorizer::authorize_event_from` and `authorize_event_refreshing` open alike (parse the
//!   event, answer a warm-up, deny a foreign origin): one verifies with the keys it has, the
//!   other `await`s a refetch of the JWKS document; the shared steps are one helper each.

pub mod authorizer;
pub mod chat;
pub mod telemetry;
pub mod warmer;

pub use chat::{ChatRuntime, FunctionError, run_chat_function};
