//! # dynamowave-testkit: what the tests of every crate share
//!
//! A dev-dependency only (`publish = false`): the real-socket clients, the spawners of the real
//! server (as a process, or in this process), and the AWS test rig. A test file says what it
//! checks; how to start a server or wait for a frame is written here, once.
//!
//! # Layout
//!
//! - [`ws`]: the one WebSocket client ([`ws::Client`]): connect with or without the JSON
//!   subprotocol (or over a resetting or small-buffer socket), send JSON, text, frames and
//!   fragmented messages, wait for text, events, silence and close codes; [`ws::wait_gone`]
//!   polls GetConnection until the gateway has closed a connection.
//! - [`binary`]: the `dynamowave` binary: [`binary::Serve`] (`serve` on port 0, waits for
//!   `DYNAMOWAVE_LISTENING`, kills on drop, keeps its stderr), [`binary::spawn_app`] (on a
//!   temporary data dir), one-shot runs of its other commands, and where the built binaries are.
//! - [`in_process`]: the only module that builds a gateway (feature `app-gateway`: any app or
//!   route table; feature `gateway`: the chat on a temporary redb store), and so the only one
//!   to change when it is built differently.
//! - [`raw`]: a raw WebSocket client that writes frames byte by byte (conformance tests).
//! - [`events`]: API Gateway's WebSocket event as JSON, for calling functions directly.
//! - [`temp`]: a temporary path that does not exist yet; the tests' tool cache
//!   ([`temp::tools_dir`], `DW_TOOLS_DIR`).
//! - `moto` (feature `aws`): moto started or reused (`DW_MOTO_URL`), the SDK config for it,
//!   fresh tables.
//! - `fault_proxy` (feature `aws`): a fault-injecting HTTP proxy between the SDK and moto.
//!
//! The features keep what a test crate builds to what it uses: `chat` (default) the chat's
//! crate, for [`ws`] and [`raw`] (its subprotocol); `app-gateway` the gateway alone (the
//! gateway's own tests take it with `default-features = false`, so they build no chat);
//! `gateway` the chat behind it on the embedded store; `aws` the AWS SDK (only
//! `dynamowave-aws` and `dynamowave-lambda` ask for it).
//!
//! Every wait has one bound, [`TIMEOUT`], unless a test passes its own.
//!
//! # Repeated on purpose
//!
//! The places in the tests that still share six or more lines of the same shape (as
//! `duplicates` lists them), and why each stays:
//!
//! - The AWS tutorial session (two plain clients, `sendmessage` with `message` and with `data`)
//!   in `crates/cli/tests/gateway.rs` and `crates/aws/tests/lambda_mode.rs`: the same documented
//!   session against the in-process handlers and against the Lambda binaries; each file reads
//!   as the tutorial does, and what each then checks differs (the `$default` answer, the item in
//!   the ConnectionsTable).
//! - A test's opening (start a server, connect two or three clients, send a first message) in
//!   `crates/cli/tests/gateway.rs`: each test states its own set-up, so it reads on its own.
//! - Scripted sessions that differ only in their data: the terminal session of
//!   `crates/client/tests/chat.rs` (type a line, expect a line), the cases of
//!   `crates/lambda-host/tests/host.rs` (start a function, break it one way, read its stats)
//!   and of `crates/cli/tests/conformance.rs` (frames in, close code out): one case per test,
//!   so a failure names its case.
//! - `PageSpy` in `crates/core/tests/handlers.rs`, a spy on a `MessageLog`: it forwards each
//!   method with the trait's signature, as every adapter of the port does.
//! - The lambda-host tests' function builders (`echo` in `runtime_api_access.rs`, `function`
//!   in `runtimes.rs`): each sets its own timeout for what its functions do.
//! - The opcodes of [`raw`] beside the gateway's close codes: constants of the same shape; the
//!   client must not take the server's word for the protocol's numbers.

use std::time::Duration;

pub mod binary;
pub mod events;
pub mod in_process;
#[cfg(feature = "chat")]
pub mod raw;
pub mod temp;
#[cfg(feature = "chat")]
pub mod ws;

#[cfg(feature = "aws")]
pub mod fault_proxy;
#[cfg(feature = "aws")]
pub mod moto;

/// How long a test waits for any one frame, handshake or answer. Lambda mode goes through a
/// process and moto per request, and the machine is shared, so this is generous.
pub const TIMEOUT: Duration = Duration::from_secs(20);
