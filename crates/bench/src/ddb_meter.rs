//! `dynamowave-bench ddb-meter`: a recording proxy between the functions and DynamoDB (Local),
//! counting the read and write request units of every call as DynamoDB reports them, per caller,
//! per operation and per table and index.
//!
//! Each JSON request (its operation named by `X-Amz-Target`) is forwarded with
//! `"ReturnConsumedCapacity":"INDEXES"` (the units of the table and of each index apart), and the
//! `ConsumedCapacity` of the answer is summed; the answer goes back unchanged (its `x-amz-crc32`
//! still matches). Rewriting the body breaks its SigV4 signature: DynamoDB Local checks no
//! signature (it accepts any), so this works against it and never against AWS.
//!
//! The caller of a TCP connection is the process holding its other end (found once per
//! connection through `/proc/net/tcp` and `/proc/PID/fd`, Linux only): its
//! `AWS_LAMBDA_FUNCTION_NAME` when it is a Lambda function under the local host, else its process
//! name, else `unknown`. So the units split by function, i.e. by route.
//!
//! DynamoDB Local reports a transaction's units as for plain writes and reads (one unit per KB per
//! item), while AWS bills a transactional request two: [`Meter`] doubles `TransactWriteItems` and
//! `TransactGetItems`, their index units included, and says so in its report
//! (`transactions_doubled`).
//!
//! `GET /ddb-meter` answers the totals so far as JSON ([`MeterReport`]).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

/// Where the proxy listens and where DynamoDB is.
#[derive(Debug, Clone, clap::Args)]
pub struct MeterArgs {
    /// Address to listen on (port 0: any free port; the chosen one is printed as
    /// `DDB_METER_LISTENING http://ADDR`).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// DynamoDB's endpoint, e.g. DynamoDB Local's `http://127.0.0.1:8000` (plain HTTP).
    #[arg(long)]
    pub upstream: String,
}

/// What a DynamoDB operation is billed as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnitKind {
    Read,
    Write,
    /// Control-plane calls (`CreateTable`, `DescribeTable`, …): no request units.
    None,
}

/// The billing class of an operation (`X-Amz-Target` without the `DynamoDB_20120810.` prefix).
pub fn unit_kind(operation: &str) -> UnitKind {
    match operation {
        "GetItem" | "BatchGetItem" | "Query" | "Scan" | "TransactGetItems" => UnitKind::Read,
        "PutItem" | "UpdateItem" | "DeleteItem" | "BatchWriteItem" | "TransactWriteItems" => UnitKind::Write,
        // PartiQL statements: their units come back like the item calls'; reads and writes mix.
        "ExecuteStatement" | "BatchExecuteStatement" | "ExecuteTransaction" => UnitKind::Write,
        _ => UnitKind::None,
    }
}

/// AWS bills a transactional request twice the units of the same plain request; DynamoDB Local
/// reports the plain figure.
pub fn transaction_factor(operation: &str) -> f64 {
    if matches!(operation, "TransactWriteItems" | "TransactGetItems" | "ExecuteTransaction") { 2.0 } else { 1.0 }
}

/// The operation named by an `X-Amz-Target` value (`DynamoDB_20120810.PutItem` → `PutItem`).
pub fn operation_of(target: &str) -> &str {
    target.rsplit_once('.').map_or(target, |(_, op)| op)
}

/// The request body with `ReturnConsumedCapacity` set to `INDEXES` unless the caller asked for it
/// itself; `None` when the body is not a JSON object (forwarded as it is). A caller that asked for
/// `TOTAL` gets the same total, with the split beside it.
pub fn with_consumed_capacity(body: &[u8]) -> Option<Vec<u8>> {
    let mut value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let object = value.as_object_mut()?;
    if object.get("ReturnConsumedCapacity").and_then(|v| v.as_str()) == Some("INDEXES") {
        return None;
    }
    object.insert("ReturnConsumedCapacity".into(), serde_json::Value::from("INDEXES"));
    serde_json::to_vec(&value).ok()
}

/// The units in an answer's `ConsumedCapacity` (one object, or one per table for batch and
/// transaction calls), per part: the table (`TABLE`) and each index (`TABLE/INDEX`). A table
/// whose answer has no split counts whole under its name.
pub fn consumed_parts(body: &[u8]) -> Option<Vec<(String, f64)>> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let consumed = value.get("ConsumedCapacity")?;
    let units = |c: &serde_json::Value| {
        c.get("CapacityUnits").and_then(|u| u.as_f64()).unwrap_or_else(|| {
            ["ReadCapacityUnits", "WriteCapacityUnits"].iter().filter_map(|k| c.get(*k).and_then(|u| u.as_f64())).sum()
        })
    };
    let mut parts = Vec::new();
    let mut table_parts = |c: &serde_json::Value| {
        let table = c.get("TableName").and_then(|t| t.as_str()).unwrap_or("?");
        let mut rest = units(c);
        let indexes = ["GlobalSecondaryIndexes", "LocalSecondaryIndexes"]
            .iter()
            .filter_map(|k| c.get(*k).and_then(|i| i.as_object()))
            .flatten();
        for (index, u) in indexes {
            let u = units(u);
            rest -= u;
            parts.push((format!("{table}/{index}"), u));
        }
        // What is left is the table's own (`Table`, when given, says the same).
        parts.push((table.to_owned(), c.get("Table").map_or(rest, units)));
    };
    match consumed {
        serde_json::Value::Array(items) => items.iter().for_each(&mut table_parts),
        object => table_parts(object),
    }
    Some(parts)
}

/// The total units in an answer's `ConsumedCapacity`.
pub fn consumed_units(body: &[u8]) -> Option<f64> {
    consumed_parts(body).map(|parts| parts.iter().map(|(_, u)| u).sum())
}

/// One operation's totals.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct OperationTotals {
    pub requests: u64,
    /// Answers with a status other than 200.
    pub errors: u64,
    /// Units as DynamoDB Local reported them.
    pub reported_units: f64,
    /// Billed read request units (transactions doubled).
    pub read_units: f64,
    /// Billed write request units (transactions doubled).
    pub write_units: f64,
    /// Billed units per table (`TABLE`) and index (`TABLE/INDEX`).
    pub parts: BTreeMap<String, f64>,
}

impl OperationTotals {
    fn add(&mut self, o: &OperationTotals) {
        self.requests += o.requests;
        self.errors += o.errors;
        self.reported_units += o.reported_units;
        self.read_units += o.read_units;
        self.write_units += o.write_units;
        for (part, units) in &o.parts {
            *self.parts.entry(part.clone()).or_default() += units;
        }
    }
}

/// Everything counted so far.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct MeterReport {
    /// Per operation, every caller's together.
    pub operations: BTreeMap<String, OperationTotals>,
    /// Per caller (a Lambda function's name, or a process name), per operation.
    pub callers: BTreeMap<String, BTreeMap<String, OperationTotals>>,
    pub read_units: f64,
    pub write_units: f64,
    /// Always true: transactional units are doubled here, DynamoDB Local does not.
    pub transactions_doubled: bool,
}

/// The running totals.
#[derive(Default)]
pub struct Meter {
    /// Per (caller, operation).
    totals: Mutex<BTreeMap<(String, String), OperationTotals>>,
}

impl Meter {
    /// Counts one call of `caller`: `status` and `body` are DynamoDB's answer.
    pub fn record(&self, caller: &str, operation: &str, status: u16, body: &[u8]) {
        let parts = if status == 200 { consumed_parts(body).unwrap_or_default() } else { Vec::new() };
        let factor = transaction_factor(operation);
        let mut totals = self.totals.lock();
        let t = totals.entry((caller.to_owned(), operation.to_owned())).or_default();
        t.requests += 1;
        if status != 200 {
            t.errors += 1;
        }
        for (part, units) in parts {
            let billed = units * factor;
            t.reported_units += units;
            match unit_kind(operation) {
                UnitKind::Read => t.read_units += billed,
                UnitKind::Write => t.write_units += billed,
                UnitKind::None => continue,
            }
            *t.parts.entry(part).or_default() += billed;
        }
    }

    pub fn report(&self) -> MeterReport {
        let mut report = MeterReport { transactions_doubled: true, ..MeterReport::default() };
        for ((caller, operation), t) in self.totals.lock().iter() {
            report.operations.entry(operation.clone()).or_default().add(t);
            report.callers.entry(caller.clone()).or_default().insert(operation.clone(), t.clone());
            report.read_units += t.read_units;
            report.write_units += t.write_units;
        }
        report
    }
}

/// The process holding the socket at the other end of a loopback connection from `peer` to our
/// `local` address, by its Lambda function name or its process name; `unknown` when `/proc` does
/// not tell (another platform, or the process is gone).
#[cfg(target_os = "linux")]
pub fn caller_of(peer: SocketAddr, local: SocketAddr) -> String {
    use ::procfs::process::{FDTarget, all_processes};

    let tables = [::procfs::net::tcp(), ::procfs::net::tcp6()];
    let Some(inode) = tables
        .into_iter()
        .flatten()
        .flatten()
        .find(|e| e.local_address == peer && e.remote_address == local && e.inode != 0)
        .map(|e| e.inode)
    else {
        return "unknown".into();
    };
    let Ok(processes) = all_processes() else { return "unknown".into() };
    for process in processes.flatten() {
        let holds = process
            .fd()
            .map(|fds| fds.flatten().any(|fd| matches!(fd.target, FDTarget::Socket(i) if i == inode)))
            .unwrap_or(false);
        if !holds {
            continue;
        }
        let function = process.environ().ok().and_then(|env| {
            env.get(std::ffi::OsStr::new("AWS_LAMBDA_FUNCTION_NAME")).map(|n| n.to_string_lossy().into_owned())
        });
        return function.or_else(|| process.stat().ok().map(|s| s.comm)).unwrap_or_else(|| "unknown".into());
    }
    "unknown".into()
}

#[cfg(not(target_os = "linux"))]
pub fn caller_of(_peer: SocketAddr, _local: SocketAddr) -> String {
    "unknown".into()
}

type Upstream = Client<HttpConnector, Full<Bytes>>;

fn plain(status: StatusCode, text: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(text)));
    *response.status_mut() = status;
    response
}

async fn handle(
    request: Request<Incoming>,
    meter: Arc<Meter>,
    client: Upstream,
    upstream: Arc<str>,
    caller: Arc<str>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if request.method() == hyper::Method::GET && request.uri().path() == "/ddb-meter" {
        let body = serde_json::to_string(&meter.report()).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
        return Ok(plain(StatusCode::OK, body));
    }
    match forward(request, &meter, &client, &upstream, &caller).await {
        Ok(response) => Ok(response),
        Err(e) => Ok(plain(StatusCode::BAD_GATEWAY, format!("ddb-meter: cannot reach DynamoDB at {upstream}: {e:#}"))),
    }
}

async fn forward(
    request: Request<Incoming>,
    meter: &Meter,
    client: &Upstream,
    upstream: &str,
    caller: &str,
) -> anyhow::Result<Response<Full<Bytes>>> {
    let (mut parts, body) = request.into_parts();
    let body = body.collect().await.context("reading the request")?.to_bytes();
    let operation = parts.headers.get("x-amz-target").and_then(|v| v.to_str().ok()).map(|t| operation_of(t).to_owned());
    let metered = operation.as_deref().is_some_and(|op| unit_kind(op) != UnitKind::None);
    let body = match metered.then(|| with_consumed_capacity(&body)).flatten() {
        Some(rewritten) => Bytes::from(rewritten),
        None => body,
    };
    parts.headers.remove(hyper::header::CONTENT_LENGTH);
    parts.headers.remove(hyper::header::TRANSFER_ENCODING);
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    parts.uri = format!("{upstream}{path}").parse().context("the upstream URL")?;
    let response = client.request(Request::from_parts(parts, Full::new(body))).await?;
    let (mut parts, body) = response.into_parts();
    // The body goes back whole, with its own length.
    parts.headers.remove(hyper::header::TRANSFER_ENCODING);
    let body = body.collect().await.context("reading DynamoDB's answer")?.to_bytes();
    if let Some(operation) = operation {
        meter.record(caller, &operation, parts.status.as_u16(), &body);
    }
    Ok(Response::from_parts(parts, Full::new(body)))
}

/// A running proxy.
pub struct MeterServer {
    pub addr: SocketAddr,
    pub meter: Arc<Meter>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for MeterServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Binds `args.listen` and serves until dropped.
pub async fn start(args: &MeterArgs) -> anyhow::Result<MeterServer> {
    let upstream: Arc<str> = args.upstream.trim_end_matches('/').into();
    if !upstream.starts_with("http://") {
        anyhow::bail!("--upstream {upstream}: only plain http:// endpoints (DynamoDB Local) are metered");
    }
    let listener =
        tokio::net::TcpListener::bind(args.listen).await.with_context(|| format!("binding {}", args.listen))?;
    let addr = listener.local_addr()?;
    let meter = Arc::new(Meter::default());
    let client: Upstream = Client::builder(TokioExecutor::new()).build_http();
    let shared = meter.clone();
    let task = tokio::spawn(async move {
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, say: wait rather than spin.
                    eprintln!("ddb-meter: accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            let (meter, client, upstream) = (shared.clone(), client.clone(), upstream.clone());
            tokio::spawn(async move {
                // Once per connection (the SDK keeps its connections): a walk through /proc.
                let local = stream.local_addr().unwrap_or(addr);
                let caller: Arc<str> = match tokio::task::spawn_blocking(move || caller_of(peer, local)).await {
                    Ok(caller) => caller.into(),
                    Err(_) => "unknown".into(),
                };
                let service = hyper::service::service_fn(move |request| {
                    handle(request, meter.clone(), client.clone(), upstream.clone(), caller.clone())
                });
                let _ =
                    hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
    Ok(MeterServer { addr, meter, task })
}

/// The `ddb-meter` subcommand: serves until killed.
pub fn run_blocking(args: &MeterArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(async {
        let server = start(args).await?;
        println!("DDB_METER_LISTENING http://{}", server.addr);
        std::future::pending::<()>().await;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asks_for_the_capacity_per_index_unless_the_caller_did() {
        let out = with_consumed_capacity(br#"{"TableName":"t","Key":{"pk":{"S":"a"}}}"#).expect("rewritten");
        let v: serde_json::Value = serde_json::from_slice(&out).expect("json");
        assert_eq!(v["ReturnConsumedCapacity"], "INDEXES");
        assert_eq!(v["Key"]["pk"]["S"], "a");
        for asked in ["NONE", "TOTAL"] {
            let body = format!(r#"{{"TableName":"t","ReturnConsumedCapacity":"{asked}"}}"#);
            let out = with_consumed_capacity(body.as_bytes()).expect("rewritten");
            assert!(String::from_utf8_lossy(&out).contains(r#""ReturnConsumedCapacity":"INDEXES""#));
        }
        assert_eq!(with_consumed_capacity(br#"{"ReturnConsumedCapacity":"INDEXES"}"#), None);
        assert_eq!(with_consumed_capacity(b"not json"), None);
        assert_eq!(with_consumed_capacity(b"[1]"), None);
    }

    #[test]
    fn splits_units_by_table_and_index() {
        // As DynamoDB answers a PutItem with INDEXES, a transaction over two tables, a Scan.
        let put = br#"{"ConsumedCapacity":{"TableName":"ttt","CapacityUnits":6.0,"Table":{"CapacityUnits":3.0},"GlobalSecondaryIndexes":{"gix":{"CapacityUnits":3.0}}}}"#;
        assert_eq!(consumed_parts(put), Some(vec![("ttt/gix".into(), 3.0), ("ttt".into(), 3.0)]));
        assert_eq!(consumed_units(put), Some(6.0));
        let tx = br#"{"ConsumedCapacity":[{"TableName":"a","CapacityUnits":3.0,"Table":{"CapacityUnits":1.0},"GlobalSecondaryIndexes":{"i":{"CapacityUnits":2.0}}},{"TableName":"b","CapacityUnits":1.0}]}"#;
        assert_eq!(consumed_parts(tx), Some(vec![("a/i".into(), 2.0), ("a".into(), 1.0), ("b".into(), 1.0)]));
        assert_eq!(
            consumed_units(br#"{"ConsumedCapacity":{"ReadCapacityUnits":0.5,"WriteCapacityUnits":1.0}}"#),
            Some(1.5)
        );
        assert_eq!(consumed_units(br#"{"Count":3}"#), None);

        let meter = Meter::default();
        meter.record("f1", "PutItem", 200, put);
        meter.record("f1", "Scan", 200, br#"{"Count":3,"ConsumedCapacity":{"TableName":"ttt","CapacityUnits":0.5}}"#);
        meter.record("f2", "TransactWriteItems", 200, tx);
        meter.record("f2", "PutItem", 400, br#"{"__type":"ConditionalCheckFailedException"}"#);
        meter.record("f2", "DescribeTable", 200, br#"{"Table":{}}"#);
        let report = meter.report();
        assert_eq!(report.write_units, 6.0 + 8.0);
        assert_eq!(report.read_units, 0.5);
        let put = &report.operations["PutItem"];
        assert_eq!((put.requests, put.errors, put.write_units), (2, 1, 6.0));
        // A transaction is billed twice, index writes included.
        let tx = &report.callers["f2"]["TransactWriteItems"];
        assert_eq!((tx.reported_units, tx.write_units), (4.0, 8.0));
        assert_eq!(tx.parts, BTreeMap::from([("a/i".into(), 4.0), ("a".into(), 2.0), ("b".into(), 2.0)]));
        assert_eq!(report.callers["f1"]["PutItem"].parts["ttt/gix"], 3.0);
        assert_eq!(report.callers["f2"]["PutItem"].errors, 1);
        assert_eq!(report.operations["DescribeTable"].requests, 1);
        assert!(report.operations["DescribeTable"].parts.is_empty());
    }

    #[test]
    fn names_and_classes() {
        assert_eq!(operation_of("DynamoDB_20120810.Query"), "Query");
        assert_eq!(unit_kind("Query"), UnitKind::Read);
        assert_eq!(unit_kind("UpdateItem"), UnitKind::Write);
        assert_eq!(unit_kind("CreateTable"), UnitKind::None);
        assert_eq!(transaction_factor("TransactGetItems"), 2.0);
        assert_eq!(transaction_factor("GetItem"), 1.0);
    }
}
