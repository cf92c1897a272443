//! A lean load generator for DynamoWave Chat and any server speaking protocol v1's JSON framing
//! (subprotocol `dynamowave.v1`), such as the Node.js peer it is compared with.
//!
//! Five modes:
//! - **load** (default): `--connections` spread over `--rooms` (`join bench-<i>`), the first
//!   `--senders` of them sending `sendmessage` at a fixed total `--rate` (or flat out with a window
//!   of unacknowledged messages). Every text carries its send timestamp; receivers measure latency
//!   into an HDR histogram and track each room's `seq` for duplicates and reordering; loss is the
//!   expected deliveries (sent x room size) minus the distinct ones received.
//! - **idle** (`--idle`): connect, join, hold; reports the server's RSS per connection.
//! - **churn** (`--churn`): connect/disconnect loops; reports connects per second.
//! - **send floor** (`--send-floor`): no server; one pinned thread writes a small WebSocket frame to
//!   each of many loopback sockets per round and reports its CPU seconds per 1,000,000 writes.
//! - **storm** (`--storm`): clients in rooms, every TCP connection reset at once, all back with
//!   `join … since`; reports the connect-and-join rate, recovery, loss and presence events.
//!
//! With `--protocol apigw-sample` the load mode speaks to apps written like AWS's WebSocket chat
//! sample instead (`?room=R` on connect, `sendmessage` with a `data` field, raw broadcast frames):
//! the generator numbers its messages itself and counts loss, duplicates and order per sender.
//!
//! With `--server-pid` the server's CPU seconds and RSS over the measured window come from `/proc`;
//! the generator reports its own CPU use too, and says when it saturated its cores.
//!
//! `dynamowave-bench plot --input DIR` draws a directory of `--json` reports (latency by
//! percentile per scenario, CPU per delivery by room size) as SVG files.
//!
//! # Layout
//! - [`apigw`]: the load mode for sample-style apps (`--protocol apigw-sample`): message format,
//!   connection tasks and accounting.
//! - [`args`]: [`BenchArgs`] (clap derive, `DYNAMOWAVE_BENCH_*` environment), duration parsing.
//! - [`event`]: the frames written and read; a zero-allocation fast path for `message` and `ack`.
//! - [`accounting`]: sequence tracking, loss arithmetic, latency histograms (pure, unit-tested).
//! - [`procfs`]: `/proc/PID/stat` and `/proc/PID/status` parsing.
//! - `client`: TCP from a chosen source address, the upgrade, `join`.
//! - `lean`: the load connections' WebSocket client (handshake and framing over one read buffer:
//!   the generator must out-read the server it measures).
//! - `runner`: connection tasks and the controller for the load, idle and churn modes.
//! - `floor`: the send floor's writer and drainer threads, pinned with `taskset`.
//! - [`storm`]: the reconnect storm: its run, its report section and its loss accounting.
//! - [`plot`]: [`plot::PlotArgs`] and the SVG pictures of a directory of reports (`plotters`, SVG
//!   backend only).
//! - [`report`]: [`Report`], serialisable and printable.
//! - [`ddb_meter`]: `dynamowave-bench ddb-meter`, a proxy before DynamoDB Local that counts the
//!   read and write units (`ReturnConsumedCapacity`) per calling function, operation, table and
//!   index.
//! - [`cost`]: `dynamowave-bench cost`, the AWS bill of a measured run at list prices
//!   (docs/cost.md's tables).
//! - `main.rs`: the `dynamowave-bench` binary ([`BenchArgs`] from the command line, then [`run_blocking`]).
//!
//! # Repeated on purpose
//!
//! - `lean`'s masked-frame encoder is RFC 6455's client framing, as the gateway's frame-parser
//!   tests also write it: the generator must not depend on the server it measures.
//! - The report's structs (one per mode) and the runner's mode functions share their shapes
//!   (documented fields; `(args, target, sources, report)`), not their logic.
//!
//! # Use
//! Call [`run`] from a multi-thread tokio runtime (or [`run_blocking`] outside any runtime):
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! let args = dynamowave_bench::BenchArgs {
//!     url: "ws://127.0.0.1:8090/".into(),
//!     connections: 1000,
//!     rate: 25.0,
//!     ..Default::default()
//! };
//! dynamowave_bench::run(args).await?.print_table();
//! # Ok(()) }
//! ```

pub mod accounting;
pub mod apigw;
pub mod args;
mod client;
pub mod cost;
pub mod ddb_meter;
pub mod event;
mod floor;
mod lean;
pub mod plot;
pub mod procfs;
pub mod report;
mod runner;
pub mod storm;

pub use args::{BenchArgs, Mode, Protocol};
pub use report::Report;

/// Runs one benchmark and returns its report (also written to `--json` when given). Progress goes
/// to stderr once a second unless `--quiet`.
///
/// Needs a multi-thread tokio runtime with the timer and I/O drivers enabled: on a current-thread
/// runtime the generator would share one thread with its caller and more easily become the
/// bottleneck.
pub async fn run(args: BenchArgs) -> anyhow::Result<Report> {
    runner::run(args).await
}

/// [`run`] on a fresh multi-thread runtime with one worker per core this process may use.
pub fn run_blocking(args: BenchArgs) -> anyhow::Result<Report> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("building the tokio runtime: {e}"))?;
    runtime.block_on(run(args))
}
