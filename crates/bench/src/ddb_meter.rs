//! `dynamowave-bench ddb-meter`: a recording proxy between the functions and DynamoDB (Local),
//! counting the read and write request units of every call as DynamoDB reports them.
//!
//! Each JSON request (its operation named by `X-Amz-Target`) is forwarded with
//! `"ReturnConsumedCapacity":"TOTAL"` added when the caller asked for none, and the
//! `ConsumedCapacity` of the answer is summed per operation; the answer goes back unchanged (its
//! `x-amz-crc32` still matches). Rewriting the body breaks its SigV4 signature: DynamoDB Local
//! checks no signature (it accepts any), so this works against it and never against AWS.
//!
//! DynamoDB Local reports a transaction's units as for plain writes and reads (one unit per KB per
//! item), while AWS bills a transactional request two: [`Meter`] doubles `TransactWriteItems` and
//! `TransactGetItems` and says so in its report (`transactions_doubled`).
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
use serde::Serialize;

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

/// The request body with `ReturnConsumedCapacity` set to `TOTAL` unless the caller asked for
/// `TOTAL` or `INDEXES` itself; `None` when the body is not a JSON object (forwarded as it is).
pub fn with_consumed_capacity(body: &[u8]) -> Option<Vec<u8>> {
    let mut value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let object = value.as_object_mut()?;
    let asked = object.get("ReturnConsumedCapacity").and_then(|v| v.as_str());
    if matches!(asked, Some("TOTAL" | "INDEXES")) {
        return None;
    }
    object.insert("ReturnConsumedCapacity".into(), serde_json::Value::from("TOTAL"));
    serde_json::to_vec(&value).ok()
}

/// The units in an answer's `ConsumedCapacity` (one object, or one per table for batch and
/// transaction calls): `CapacityUnits`, else `ReadCapacityUnits + WriteCapacityUnits`.
pub fn consumed_units(body: &[u8]) -> Option<f64> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let consumed = value.get("ConsumedCapacity")?;
    let units = |c: &serde_json::Value| {
        c.get("CapacityUnits").and_then(|u| u.as_f64()).unwrap_or_else(|| {
            ["ReadCapacityUnits", "WriteCapacityUnits"].iter().filter_map(|k| c.get(*k).and_then(|u| u.as_f64())).sum()
        })
    };
    match consumed {
        serde_json::Value::Array(items) => Some(items.iter().map(units).sum()),
        object => Some(units(object)),
    }
}

/// One operation's totals.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
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
}

/// Everything counted so far.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct MeterReport {
    pub operations: BTreeMap<String, OperationTotals>,
    pub read_units: f64,
    pub write_units: f64,
    /// Always true: transactional units are doubled here, DynamoDB Local does not.
    pub transactions_doubled: bool,
}

/// The running totals.
#[derive(Default)]
pub struct Meter {
    operations: Mutex<BTreeMap<String, OperationTotals>>,
}

impl Meter {
    /// Counts one call: `status` and `body` are DynamoDB's answer.
    pub fn record(&self, operation: &str, status: u16, body: &[u8]) {
        let units = if status == 200 { consumed_units(body).unwrap_or(0.0) } else { 0.0 };
        let billed = units * transaction_factor(operation);
        let mut operations = self.operations.lock();
        let totals = operations.entry(operation.to_owned()).or_default();
        totals.requests += 1;
        if status != 200 {
            totals.errors += 1;
        }
        totals.reported_units += units;
        match unit_kind(operation) {
            UnitKind::Read => totals.read_units += billed,
            UnitKind::Write => totals.write_units += billed,
            UnitKind::None => {}
        }
    }

    pub fn report(&self) -> MeterReport {
        let operations = self.operations.lock().clone();
        let read_units = operations.values().map(|o| o.read_units).sum();
        let write_units = operations.values().map(|o| o.write_units).sum();
        MeterReport { operations, read_units, write_units, transactions_doubled: true }
    }
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
) -> Result<Response<Full<Bytes>>, Infallible> {
    if request.method() == hyper::Method::GET && request.uri().path() == "/ddb-meter" {
        let body = serde_json::to_string(&meter.report()).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
        return Ok(plain(StatusCode::OK, body));
    }
    match forward(request, &meter, &client, &upstream).await {
        Ok(response) => Ok(response),
        Err(e) => Ok(plain(StatusCode::BAD_GATEWAY, format!("ddb-meter: cannot reach DynamoDB at {upstream}: {e:#}"))),
    }
}

async fn forward(
    request: Request<Incoming>,
    meter: &Meter,
    client: &Upstream,
    upstream: &str,
) -> anyhow::Result<Response<Full<Bytes>>> {
    let (mut parts, body) = request.into_parts();
    let body = body.collect().await.context("reading the request")?.to_bytes();
    let operation = parts.headers.get("x-amz-target").and_then(|v| v.to_str().ok()).map(|t| operation_of(t).to_owned());
    let body = match operation.as_ref().and_then(|_| with_consumed_capacity(&body)) {
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
        meter.record(&operation, parts.status.as_u16(), &body);
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
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors, say: wait rather than spin.
                    eprintln!("ddb-meter: accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            let (meter, client, upstream) = (shared.clone(), client.clone(), upstream.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| {
                    handle(request, meter.clone(), client.clone(), upstream.clone())
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
    fn asks_for_total_capacity_unless_the_caller_did() {
        let out = with_consumed_capacity(br#"{"TableName":"t","Key":{"pk":{"S":"a"}}}"#).expect("rewritten");
        let v: serde_json::Value = serde_json::from_slice(&out).expect("json");
        assert_eq!(v["ReturnConsumedCapacity"], "TOTAL");
        assert_eq!(v["Key"]["pk"]["S"], "a");
        let out = with_consumed_capacity(br#"{"TableName":"t","ReturnConsumedCapacity":"NONE"}"#).expect("rewritten");
        assert!(String::from_utf8_lossy(&out).contains(r#""ReturnConsumedCapacity":"TOTAL""#));
        assert_eq!(with_consumed_capacity(br#"{"ReturnConsumedCapacity":"INDEXES"}"#), None);
        assert_eq!(with_consumed_capacity(b"not json"), None);
        assert_eq!(with_consumed_capacity(b"[1]"), None);
    }

    #[test]
    fn sums_units_from_dynamodb_answers() {
        // As DynamoDB Local answers a PutItem with INDEXES, a batch and a Scan.
        let put = br#"{"ConsumedCapacity":{"TableName":"ttt","CapacityUnits":6.0,"Table":{"CapacityUnits":3.0},"GlobalSecondaryIndexes":{"gix":{"CapacityUnits":3.0}}}}"#;
        assert_eq!(consumed_units(put), Some(6.0));
        let batch = br#"{"UnprocessedItems":{},"ConsumedCapacity":[{"TableName":"a","CapacityUnits":2.0},{"TableName":"b","CapacityUnits":1.0}]}"#;
        assert_eq!(consumed_units(batch), Some(3.0));
        assert_eq!(
            consumed_units(br#"{"ConsumedCapacity":{"ReadCapacityUnits":0.5,"WriteCapacityUnits":1.0}}"#),
            Some(1.5)
        );
        assert_eq!(consumed_units(br#"{"Count":3}"#), None);

        let meter = Meter::default();
        meter.record("PutItem", 200, put);
        meter.record("Scan", 200, br#"{"Count":3,"ConsumedCapacity":{"TableName":"ttt","CapacityUnits":0.5}}"#);
        meter.record("TransactWriteItems", 200, br#"{"ConsumedCapacity":[{"TableName":"ttt","CapacityUnits":2.0}]}"#);
        meter.record("PutItem", 400, br#"{"__type":"ConditionalCheckFailedException"}"#);
        meter.record("DescribeTable", 200, br#"{"Table":{}}"#);
        let report = meter.report();
        assert_eq!(report.write_units, 6.0 + 4.0);
        assert_eq!(report.read_units, 0.5);
        let put = &report.operations["PutItem"];
        assert_eq!((put.requests, put.errors, put.write_units), (2, 1, 6.0));
        let tx = &report.operations["TransactWriteItems"];
        assert_eq!((tx.reported_units, tx.write_units), (2.0, 4.0));
        assert_eq!(report.operations["DescribeTable"].requests, 1);
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
