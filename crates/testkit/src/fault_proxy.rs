//! A fault-injecting HTTP proxy for the DynamoDB path: the SDK's `endpoint_url` points at it, it
//! forwards to moto, and per request (matched by the `X-Amz-Target` operation) it can instead
//! answer with DynamoDB's throttling or server errors, delay, lose the response of a write that
//! did land, or process only part of a `BatchWriteItem`. Rules are consumed in order; each fires
//! a number of times (or forever), then the next matching rule applies; no rule: pass through.
//! Every request is logged with the fault it got, so tests can count the SDK's attempts.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;

/// What the proxy does with one request.
#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    /// Forward to moto and relay its answer.
    Pass,
    /// HTTP 400 `ProvisionedThroughputExceededException`, nothing forwarded.
    ProvisionedThroughputExceeded,
    /// HTTP 400 `ThrottlingException`, nothing forwarded.
    Throttling,
    /// HTTP 500 `InternalServerError`, nothing forwarded.
    InternalServerError,
    /// Wait, then forward (the write lands late, after the client may have given up).
    DelayThenForward(Duration),
    /// Forward at once (the write lands), then wait before answering: the response is "lost"
    /// when the wait exceeds the client's attempt timeout.
    ForwardThenDelay(Duration),
    /// `BatchWriteItem`: forward only the first `keep` write requests of each table and answer
    /// the rest as `UnprocessedItems` (what DynamoDB does when a partition is over capacity).
    Unprocessed { keep: usize },
}

struct Rule {
    operation: String,
    fault: Fault,
    /// `None`: forever.
    remaining: Option<usize>,
}

/// One request as the proxy saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub operation: String,
    pub fault: Fault,
}

#[derive(Default)]
struct State {
    rules: Vec<Rule>,
    seen: Vec<Seen>,
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The proxy, listening on 127.0.0.1 until dropped.
pub struct FaultProxy {
    pub url: String,
    state: Arc<Mutex<State>>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FaultProxy {
    /// Starts a proxy in front of `upstream` (e.g. moto's `http://127.0.0.1:PORT`).
    pub async fn start(upstream: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the fault proxy");
        let addr: SocketAddr = listener.local_addr().expect("proxy address");
        let state = Arc::new(Mutex::new(State::default()));
        let client = reqwest::Client::builder().no_proxy().build().expect("proxy's client");
        let upstream = Arc::new(upstream.trim_end_matches('/').to_string());
        let st = Arc::clone(&state);
        let server = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let (st, client, upstream) = (Arc::clone(&st), client.clone(), Arc::clone(&upstream));
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let (st, client, upstream) = (Arc::clone(&st), client.clone(), Arc::clone(&upstream));
                        async move {
                            // Handled in its own task, so that a request whose client gave up
                            // (attempt timeout: the SDK drops the connection) still reaches moto
                            // when the fault says it does: a late write really lands.
                            let handled = tokio::spawn(handle(st, client, upstream, req));
                            Ok::<_, Infallible>(handled.await.unwrap_or_else(|e| {
                                plain(StatusCode::BAD_GATEWAY, format!("fault proxy task failed: {e}"))
                            }))
                        }
                    });
                    let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
                });
            }
        });
        Self { url: format!("http://{addr}"), state, server }
    }

    /// Adds a rule: the next `times` requests for `operation` (e.g. `"PutItem"`) get `fault`.
    pub fn inject(&self, operation: &str, fault: Fault, times: usize) {
        lock(&self.state).rules.push(Rule { operation: operation.into(), fault, remaining: Some(times) });
    }

    /// Adds a rule that never runs out.
    pub fn inject_always(&self, operation: &str, fault: Fault) {
        lock(&self.state).rules.push(Rule { operation: operation.into(), fault, remaining: None });
    }

    /// Removes every rule: all requests pass from now on.
    pub fn clear(&self) {
        lock(&self.state).rules.clear();
    }

    /// Forgets the request log.
    pub fn reset_log(&self) {
        lock(&self.state).seen.clear();
    }

    /// Every request so far, in arrival order.
    pub fn seen(&self) -> Vec<Seen> {
        lock(&self.state).seen.clone()
    }

    /// How many requests for `operation` arrived.
    pub fn count(&self, operation: &str) -> usize {
        lock(&self.state).seen.iter().filter(|s| s.operation == operation).count()
    }

    /// How many requests for `operation` got `fault`.
    pub fn count_fault(&self, operation: &str, fault: &Fault) -> usize {
        lock(&self.state).seen.iter().filter(|s| s.operation == operation && s.fault == *fault).count()
    }
}

fn plain(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r
}

/// DynamoDB's error answer (awsJson1_0): the `__type` names the error, as the real service does.
fn dynamodb_error(status: StatusCode, error_type: &str, message: &str) -> Response<Full<Bytes>> {
    let body = json!({ "__type": format!("com.amazonaws.dynamodb.v20120810#{error_type}"), "message": message });
    let mut r = plain(status, body.to_string());
    r.headers_mut().insert("content-type", "application/x-amz-json-1.0".parse().expect("header value"));
    r.headers_mut().insert("x-amzn-requestid", "fault-proxy".parse().expect("header value"));
    r
}

async fn handle(
    state: Arc<Mutex<State>>,
    client: reqwest::Client,
    upstream: Arc<String>,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return plain(StatusCode::BAD_REQUEST, format!("fault proxy: reading the body: {e}")),
    };
    let operation = parts
        .headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .and_then(|t| t.rsplit('.').next())
        .unwrap_or("")
        .to_string();
    let fault = {
        let mut st = lock(&state);
        let fault =
            st.rules.iter_mut().find(|r| r.operation == operation && r.remaining != Some(0)).map_or(Fault::Pass, |r| {
                if let Some(n) = &mut r.remaining {
                    *n -= 1;
                }
                r.fault.clone()
            });
        st.seen.push(Seen { operation: operation.clone(), fault: fault.clone() });
        fault
    };
    let forward = |body: Bytes| {
        let mut builder = client.request(parts.method.clone(), format!("{upstream}{}", parts.uri));
        for (name, value) in &parts.headers {
            if name != "host" && name != "content-length" {
                builder = builder.header(name, value);
            }
        }
        async move {
            match builder.body(body).send().await {
                Ok(resp) => {
                    let status = resp.status();
                    let headers = resp.headers().clone();
                    let bytes = resp.bytes().await.unwrap_or_default();
                    let mut r = plain(status, String::new());
                    *r.body_mut() = Full::new(bytes);
                    for (name, value) in &headers {
                        if name != "content-length" && name != "transfer-encoding" && name != "connection" {
                            r.headers_mut().insert(name, value.clone());
                        }
                    }
                    r
                }
                Err(e) => plain(StatusCode::BAD_GATEWAY, format!("fault proxy: upstream: {e}")),
            }
        }
    };
    match fault {
        Fault::Pass => forward(body).await,
        Fault::ProvisionedThroughputExceeded => dynamodb_error(
            StatusCode::BAD_REQUEST,
            "ProvisionedThroughputExceededException",
            "The level of configured provisioned throughput for the table was exceeded (injected)",
        ),
        Fault::Throttling => dynamodb_error(
            StatusCode::BAD_REQUEST,
            "ThrottlingException",
            "Rate of requests exceeds the allowed throughput (injected)",
        ),
        Fault::InternalServerError => {
            dynamodb_error(StatusCode::INTERNAL_SERVER_ERROR, "InternalServerError", "Internal server error (injected)")
        }
        Fault::DelayThenForward(d) => {
            tokio::time::sleep(d).await;
            forward(body).await
        }
        Fault::ForwardThenDelay(d) => {
            let r = forward(body).await;
            tokio::time::sleep(d).await;
            r
        }
        Fault::Unprocessed { keep } => {
            let Ok(mut request) = serde_json::from_slice::<Value>(&body) else {
                return plain(StatusCode::BAD_REQUEST, "fault proxy: BatchWriteItem body is not JSON".into());
            };
            let mut unprocessed = serde_json::Map::new();
            if let Some(tables) = request.get_mut("RequestItems").and_then(Value::as_object_mut) {
                for (table, writes) in tables.iter_mut() {
                    if let Some(list) = writes.as_array_mut()
                        && list.len() > keep
                    {
                        let rest = list.split_off(keep);
                        unprocessed.insert(table.clone(), Value::Array(rest));
                    }
                }
                tables.retain(|_, w| w.as_array().is_some_and(|l| !l.is_empty()));
            }
            let nothing_left = request.get("RequestItems").and_then(Value::as_object).is_none_or(|t| t.is_empty());
            if !nothing_left {
                // The part DynamoDB "processed" really goes to moto; its answer must be clean.
                let resp = forward(Bytes::from(request.to_string())).await;
                if resp.status() != StatusCode::OK {
                    return resp;
                }
            }
            let mut r = plain(StatusCode::OK, json!({ "UnprocessedItems": unprocessed }).to_string());
            r.headers_mut().insert("content-type", "application/x-amz-json-1.0".parse().expect("header value"));
            r
        }
    }
}
