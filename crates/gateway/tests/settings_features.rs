//! The gateway's features that settings turn on: route selection expressions, two-way routes,
//! the authorizer's identity sources, stage variables — each through a real WebSocket client.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use aws_lambda_events::apigw::{
    ApiGatewayCustomAuthorizerRequestTypeRequest, ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest,
};
use dynamowave_apigw::{App, Integration, IntegrationError, integration_fn, proxy_response};
use dynamowave_gateway::{AuthDecision, ConnectAuthorizer, Gateway, GatewayError, GatewaySettings, ShutdownHandle};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

/// Answers every event with `body` (when set) and records the events.
#[derive(Default)]
struct Recorder {
    body: Option<String>,
    fail: bool,
    events: std::sync::Mutex<Vec<ApiGatewayWebsocketProxyRequest>>,
}

impl Recorder {
    fn answering(body: Option<&str>) -> Arc<Self> {
        Arc::new(Self { body: body.map(str::to_string), ..Default::default() })
    }

    fn events(&self) -> Vec<ApiGatewayWebsocketProxyRequest> {
        self.events.lock().expect("events").clone()
    }
}

#[async_trait]
impl Integration for Recorder {
    async fn invoke(
        &self,
        event: ApiGatewayWebsocketProxyRequest,
    ) -> Result<ApiGatewayProxyResponse, IntegrationError> {
        self.events.lock().expect("events").push(event);
        if self.fail {
            return Err(IntegrationError::Failed("boom".into()));
        }
        Ok(proxy_response(200, self.body.clone()))
    }
}

/// Counts its calls; allows a request whose `Auth` header is `letmein`.
#[derive(Default)]
struct CountingAuthorizer {
    calls: AtomicUsize,
    requests: std::sync::Mutex<Vec<ApiGatewayCustomAuthorizerRequestTypeRequest>>,
}

#[async_trait]
impl ConnectAuthorizer for CountingAuthorizer {
    async fn authorize(&self, request: ApiGatewayCustomAuthorizerRequestTypeRequest) -> AuthDecision {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let allowed = request.headers.get("auth").is_some_and(|v| v.as_bytes() == b"letmein");
        self.requests.lock().expect("requests").push(request);
        if allowed {
            AuthDecision::Allow { context: HashMap::new() }
        } else {
            AuthDecision::Unauthorized("wrong token".into())
        }
    }
}

struct Running {
    url: String,
    stop: ShutdownHandle,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.shutdown();
    }
}

fn routes(routes: Vec<(&str, Arc<dyn Integration>)>) -> App {
    App::new(routes.into_iter().collect())
}

async fn start(app: App, settings: GatewaySettings, authorizer: Option<Arc<dyn ConnectAuthorizer>>) -> Running {
    let settings = GatewaySettings { listen: "127.0.0.1:0".parse().expect("addr"), handle_signals: false, ..settings };
    let gw = Gateway::bind(settings).await.expect("bind");
    let url = format!("ws://{}/production", gw.local_addr());
    let stop = gw.shutdown_handle();
    tokio::spawn(gw.serve(app, authorizer));
    Running { url, stop }
}

async fn next_text(
    ws: &mut (impl StreamExt<Item = tokio_tungstenite::tungstenite::Result<Message>> + Unpin),
) -> String {
    match tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
        Ok(Some(Ok(Message::Text(t)))) => t.as_str().to_string(),
        other => panic!("expected a text frame, got {other:?}"),
    }
}

/// Nothing arrives within a short while.
async fn silent(ws: &mut (impl StreamExt<Item = tokio_tungstenite::tungstenite::Result<Message>> + Unpin)) {
    if let Ok(frame) = tokio::time::timeout(Duration::from_millis(300), ws.next()).await {
        panic!("expected silence, got {frame:?}");
    }
}

#[tokio::test]
async fn a_bad_route_selection_expression_stops_the_bind_naming_it() {
    let settings = GatewaySettings {
        listen: "127.0.0.1:0".parse().expect("addr"),
        route_selection_expression: "$request.header.action".into(),
        ..GatewaySettings::default()
    };
    match Gateway::bind(settings).await {
        Err(GatewayError::Settings(why)) => assert!(why.contains("$request.header.action"), "{why}"),
        Err(other) => panic!("expected a settings error, got {other}"),
        Ok(_) => panic!("a bad expression was accepted"),
    }
}

#[tokio::test]
async fn composite_route_selection_picks_the_route_and_a_missing_part_goes_to_default() {
    let join = Recorder::answering(None);
    let default = Recorder::answering(None);
    let app = routes(vec![
        ("$connect", Recorder::answering(None)),
        ("chat/join", join.clone()),
        ("$default", default.clone()),
    ]);
    let settings = GatewaySettings {
        route_selection_expression: "${request.body.service}/${request.body.action}".into(),
        ..GatewaySettings::default()
    };
    let gw = start(app, settings, None).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(&gw.url).await.expect("connect");
    ws.send(Message::text(r#"{"service":"chat","action":"join"}"#)).await.expect("send");
    ws.send(Message::text(r#"{"service":"chat"}"#)).await.expect("send");
    ws.send(Message::text(r#"{"service":"chat","action":"leave"}"#)).await.expect("send");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while default.events().len() < 2 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let keys = |r: &Recorder| r.events().iter().map(|e| e.request_context.route_key.clone()).collect::<Vec<_>>();
    assert_eq!(keys(&join), [Some("chat/join".to_string())]);
    assert_eq!(keys(&default), [Some("$default".to_string()), Some("$default".to_string())]);
}

#[tokio::test]
async fn a_two_way_route_sends_its_body_back_and_one_way_routes_send_nothing() {
    let echo = Recorder::answering(Some(r#"{"echo":"hi"}"#));
    let quiet = Recorder::answering(Some("never sent"));
    let no_body = Recorder::answering(None);
    let connect = Recorder::answering(Some("not a frame"));
    let app = routes(vec![
        ("$connect", connect.clone()),
        ("echo", echo.clone()),
        ("quiet", quiet.clone()),
        ("nobody", no_body.clone()),
    ]);
    let settings = GatewaySettings {
        two_way_routes: ["echo", "nobody", "$connect"].into_iter().map(str::to_string).collect(),
        ..GatewaySettings::default()
    };
    let gw = start(app, settings, None).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(&gw.url).await.expect("connect");
    silent(&mut ws).await; // `$connect`'s body is never a frame, even when listed.
    ws.send(Message::text(r#"{"action":"quiet"}"#)).await.expect("send");
    silent(&mut ws).await;
    ws.send(Message::text(r#"{"action":"nobody"}"#)).await.expect("send");
    silent(&mut ws).await;
    ws.send(Message::text(r#"{"action":"echo"}"#)).await.expect("send");
    assert_eq!(next_text(&mut ws).await, r#"{"echo":"hi"}"#);
    assert_eq!(quiet.events().len(), 1, "the one-way route ran");
    assert_eq!(no_body.events().len(), 1);
}

fn with_auth_header(url: &str, value: Option<&str>) -> tokio_tungstenite::tungstenite::handshake::client::Request {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = url.into_client_request().expect("request");
    if let Some(value) = value {
        req.headers_mut().insert("AUTH", value.parse().expect("header"));
    }
    req
}

async fn status_of(req: tokio_tungstenite::tungstenite::handshake::client::Request) -> u16 {
    match tokio_tungstenite::connect_async(req).await {
        Ok((_, resp)) => resp.status().as_u16(),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => resp.status().as_u16(),
        Err(e) => panic!("handshake failed: {e}"),
    }
}

#[tokio::test]
async fn a_missing_identity_source_is_unauthorized_without_invoking_the_authorizer() {
    let authorizer = Arc::new(CountingAuthorizer::default());
    let connect = Recorder::answering(None);
    let settings = GatewaySettings {
        authorizer_identity_source: vec!["route.request.header.Auth".into(), "route.request.querystring.room".into()],
        ..GatewaySettings::default()
    };
    let gw = start(routes(vec![("$connect", connect.clone())]), settings, Some(authorizer.clone())).await;
    let with_room = format!("{}?room=lobby", gw.url);
    let empty_room = format!("{}?room=", gw.url);
    assert_eq!(status_of(with_auth_header(&with_room, None)).await, 401, "no header");
    assert_eq!(status_of(with_auth_header(&with_room, Some(""))).await, 401, "an empty header");
    assert_eq!(status_of(with_auth_header(&gw.url, Some("letmein"))).await, 401, "no query parameter");
    assert_eq!(status_of(with_auth_header(&empty_room, Some("letmein"))).await, 401, "an empty query parameter");
    assert_eq!(authorizer.calls.load(Ordering::SeqCst), 0, "the authorizer was never invoked");
    assert!(connect.events().is_empty());

    // Present (the header's name in another case): the authorizer decides.
    assert_eq!(status_of(with_auth_header(&with_room, Some("wrong"))).await, 401);
    assert_eq!(authorizer.calls.load(Ordering::SeqCst), 1, "the request reached the authorizer");
    assert_eq!(status_of(with_auth_header(&with_room, Some("letmein"))).await, 101);
    assert_eq!(authorizer.calls.load(Ordering::SeqCst), 2);
    assert_eq!(connect.events().len(), 1);
}

#[tokio::test]
async fn a_stage_variable_identity_source_and_an_unknown_source() {
    let authorizer = Arc::new(CountingAuthorizer::default());
    let settings = GatewaySettings {
        authorizer_identity_source: vec!["stageVariables.authKey".into()],
        ..GatewaySettings::default()
    };
    let app = || routes(vec![("$connect", Recorder::answering(None) as Arc<dyn Integration>)]);
    let gw = start(app(), settings.clone(), Some(authorizer.clone())).await;
    assert_eq!(status_of(with_auth_header(&gw.url, Some("letmein"))).await, 401, "the stage has no such variable");
    assert_eq!(authorizer.calls.load(Ordering::SeqCst), 0);
    let with_variable = GatewaySettings {
        stage_variables: [("authKey".to_string(), "k".to_string())].into_iter().collect(),
        ..settings.clone()
    };
    let gw = start(app(), with_variable, Some(authorizer.clone())).await;
    assert_eq!(status_of(with_auth_header(&gw.url, Some("letmein"))).await, 101);
    assert_eq!(authorizer.calls.load(Ordering::SeqCst), 1);

    let unknown = GatewaySettings { authorizer_identity_source: vec!["method.request.header.Auth".into()], ..settings };
    match Gateway::bind(GatewaySettings { listen: "127.0.0.1:0".parse().expect("addr"), ..unknown }).await {
        Err(GatewayError::Settings(why)) => assert!(why.contains("method.request.header.Auth"), "{why}"),
        _ => panic!("an unknown identity source was accepted"),
    }
}

#[tokio::test]
async fn stage_variables_reach_every_event_and_the_authorizer() {
    let authorizer = Arc::new(CountingAuthorizer::default());
    let recorder = Recorder::answering(None);
    let variables: HashMap<String, String> =
        [("tableName", "chat-local"), ("mode", "test")].into_iter().map(|(k, v)| (k.into(), v.into())).collect();
    let settings = GatewaySettings { stage_variables: variables.clone(), ..GatewaySettings::default() };
    let app =
        routes(vec![("$connect", recorder.clone()), ("$default", recorder.clone()), ("$disconnect", recorder.clone())]);
    let gw = start(app, settings, Some(authorizer.clone())).await;
    let (mut ws, _) =
        tokio_tungstenite::connect_async(with_auth_header(&gw.url, Some("letmein"))).await.expect("connect");
    ws.send(Message::text("hello")).await.expect("send");
    ws.close(None).await.expect("close");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while recorder.events().len() < 3 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let events = recorder.events();
    let types: Vec<_> = events.iter().map(|e| e.request_context.event_type.clone().unwrap_or_default()).collect();
    assert_eq!(types, ["CONNECT", "MESSAGE", "DISCONNECT"]);
    for e in &events {
        assert_eq!(e.stage_variables, variables, "{:?}", e.request_context.event_type);
    }
    let requests = authorizer.requests.lock().expect("requests").clone();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].stage_variables, variables);
}

/// `GET /metrics` from loopback (which may read them), the body.
async fn scrape(ws_url: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = ws_url.trim_start_matches("ws://").split('/').next().expect("address").to_string();
    let mut tcp = tokio::net::TcpStream::connect(&addr).await.expect("connect");
    let request = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    tcp.write_all(request.as_bytes()).await.expect("write");
    let mut response = String::new();
    tcp.read_to_string(&mut response).await.expect("read");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    response
}

/// The value of the sample `name{labels}` (labels in the exporter's order), if present.
fn sample(metrics: &str, name: &str, labels: &str) -> Option<f64> {
    let prefix = format!("{name}{{{labels}}} ");
    metrics.lines().find_map(|l| l.strip_prefix(&prefix)).and_then(|v| v.trim().parse().ok())
}

#[tokio::test]
async fn api_gateways_metric_names_are_exposed_beside_ours() {
    let failing = Arc::new(Recorder { fail: true, ..Default::default() });
    let app = routes(vec![
        ("$connect", Recorder::answering(None)),
        ("ok", Recorder::answering(None)),
        ("boom", failing.clone()),
        ("refuse", Arc::new(integration_fn(|_| async { Ok(proxy_response(502, None)) }))),
    ]);
    let settings = GatewaySettings {
        api_id: "metricsapi".into(),
        stage: "production".into(),
        authorizer_identity_source: vec!["route.request.header.Auth".into()],
        ..GatewaySettings::default()
    };
    let gw = start(app, settings, Some(Arc::new(CountingAuthorizer::default()))).await;
    let (mut ws, _) =
        tokio_tungstenite::connect_async(with_auth_header(&gw.url, Some("letmein"))).await.expect("connect");
    ws.send(Message::text(r#"{"action":"ok"}"#)).await.expect("send");
    ws.send(Message::text(r#"{"action":"boom"}"#)).await.expect("send");
    let error_frame = next_text(&mut ws).await;
    assert!(error_frame.contains("Internal server error"), "{error_frame}");
    ws.send(Message::text(r#"{"action":"refuse"}"#)).await.expect("send");
    // A client error: no identity source.
    assert_eq!(status_of(with_auth_header(&gw.url, None)).await, 401);
    // Wait for the last message's invocation to be counted.
    let mut metrics = String::new();
    let labels = |route: &str| format!("ApiId=\"metricsapi\",Stage=\"production\",Route=\"{route}\"");
    for _ in 0..100 {
        metrics = scrape(&gw.url).await;
        if sample(&metrics, "apigateway_IntegrationError", &labels("refuse")).is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(sample(&metrics, "apigateway_ConnectCount", &labels("$connect")), Some(1.0), "{metrics}");
    assert_eq!(sample(&metrics, "apigateway_MessageCount", &labels("ok")), Some(1.0));
    assert_eq!(sample(&metrics, "apigateway_MessageCount", &labels("boom")), Some(1.0));
    assert_eq!(
        sample(&metrics, "apigateway_MessageCount", "ApiId=\"metricsapi\",Stage=\"production\""),
        Some(1.0),
        "the error frame sent to the client"
    );
    assert_eq!(sample(&metrics, "apigateway_ExecutionError", &labels("boom")), Some(1.0));
    assert_eq!(sample(&metrics, "apigateway_IntegrationError", &labels("refuse")), Some(1.0));
    assert_eq!(sample(&metrics, "apigateway_IntegrationError", &labels("ok")), None);
    assert_eq!(sample(&metrics, "apigateway_ClientError", &labels("$connect")), Some(1.0));
    assert_eq!(sample(&metrics, "apigateway_IntegrationLatency_count", &labels("ok")), Some(1.0));
    assert!(
        metrics.contains(&format!("apigateway_IntegrationLatency_bucket{{{},le=\"10000\"}}", labels("ok"))),
        "the latency is in milliseconds: {metrics}"
    );
    // Ours are still there.
    assert!(metrics.contains("dynamowave_connects_total"));
    assert!(metrics.contains("dynamowave_handler_seconds_bucket"));
    assert_eq!(failing.events().len(), 1);
}

/// AWS's CLF example for WebSocket APIs.
const CLF: &str = "$context.identity.sourceIp $context.identity.caller $context.identity.user [$context.requestTime] \
                   \"$context.eventType $context.routeKey $context.connectionId\" $context.status $context.requestId";
/// AWS's JSON example for WebSocket APIs, with a few more variables.
const JSON: &str = r#"{ "requestId":"$context.requestId", "ip": "$context.identity.sourceIp", "caller":"$context.identity.caller", "user":"$context.identity.user", "requestTime":"$context.requestTime", "eventType":"$context.eventType", "routeKey":"$context.routeKey", "status":"$context.status", "connectionId":"$context.connectionId", "messageId":"$context.messageId", "latency":"$context.integrationLatency", "error":"$context.error.message", "integrationError":"$context.integrationErrorMessage", "stage":"$context.stage", "apiId":"$context.apiId", "domainName":"$context.domainName", "epoch":"$context.requestTimeEpoch", "ua":"$context.identity.userAgent" }"#;

/// The access log's lines once there are `n` of them.
async fn lines(path: &std::path::Path, n: usize) -> Vec<String> {
    let mut lines = Vec::new();
    for _ in 0..250 {
        lines = std::fs::read_to_string(path).unwrap_or_default().lines().map(str::to_string).collect();
        if lines.len() >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    lines
}

fn log_path(name: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("dw-access-log-{name}-{}.log", std::process::id()));
    let _ = std::fs::remove_file(&path);
    path
}

#[tokio::test]
async fn the_access_log_writes_a_json_line_per_connect_message_and_disconnect() {
    use dynamowave_gateway::settings::{AccessLog, AccessLogDestination};
    let path = log_path("json");
    let failing = Arc::new(Recorder { fail: true, ..Default::default() });
    let app = routes(vec![
        ("$connect", Recorder::answering(None)),
        ("$default", failing.clone()),
        ("$disconnect", Recorder::answering(None)),
    ]);
    let settings = GatewaySettings {
        api_id: "logapi".into(),
        access_log: Some(AccessLog { format: JSON.into(), destination: AccessLogDestination::File(path.clone()) }),
        ..GatewaySettings::default()
    };
    let gw = start(app, settings, None).await;
    let mut req = with_auth_header(&gw.url, None);
    req.headers_mut().insert("User-Agent", "tester \"quoted\"".parse().expect("header"));
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.expect("connect");
    ws.send(Message::text("hello")).await.expect("send");
    let _ = next_text(&mut ws).await;
    ws.close(None).await.expect("close");
    let lines = lines(&path, 3).await;
    assert_eq!(lines.len(), 3, "{lines:?}");
    let parsed: Vec<serde_json::Value> =
        lines.iter().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}"))).collect();
    let field = |i: usize, k: &str| parsed[i][k].as_str().unwrap_or_default().to_string();
    assert_eq!(
        [field(0, "eventType"), field(1, "eventType"), field(2, "eventType")],
        ["CONNECT", "MESSAGE", "DISCONNECT"]
    );
    assert_eq!(
        [field(0, "routeKey"), field(1, "routeKey"), field(2, "routeKey")],
        ["$connect", "$default", "$disconnect"]
    );
    let connection_id = field(0, "connectionId");
    assert_eq!(connection_id.len(), 16);
    assert!(parsed.iter().all(|p| p["connectionId"] == connection_id.as_str()));
    assert_eq!(field(0, "status"), "101");
    assert_eq!(field(1, "status"), "500");
    assert_eq!(field(1, "error"), "Internal server error");
    assert!(field(1, "integrationError").contains("boom"), "{}", lines[1]);
    assert_eq!(field(1, "messageId").len(), 16);
    assert_eq!(field(0, "messageId"), "-", "no messageId on CONNECT");
    assert_eq!(field(0, "caller"), "-", "unknown variables render as -");
    assert_eq!(field(0, "ip"), "127.0.0.1");
    assert_eq!(field(0, "stage"), "production");
    assert_eq!(field(0, "apiId"), "logapi");
    assert_eq!(field(0, "ua"), "tester \"quoted\"");
    assert!(field(0, "domainName").starts_with("127.0.0.1:"));
    assert!(field(1, "latency").parse::<u64>().is_ok(), "{}", lines[1]);
    assert!(field(0, "epoch").parse::<i64>().is_ok_and(|ms| ms > 1_600_000_000_000));
    // The message's requestId is the one its integration received.
    let event_request_id = failing.events()[0].request_context.request_id.clone();
    assert_eq!(Some(field(1, "requestId")), event_request_id);
    let _ = std::fs::remove_file(&path);
}

#[tokio::test]
async fn the_access_log_in_clf_records_refused_connects_and_bad_formats_stop_the_bind() {
    use dynamowave_gateway::settings::{AccessLog, AccessLogDestination};
    let path = log_path("clf");
    let settings = GatewaySettings {
        authorizer_identity_source: vec!["route.request.header.Auth".into()],
        access_log: Some(AccessLog { format: CLF.into(), destination: AccessLogDestination::File(path.clone()) }),
        ..GatewaySettings::default()
    };
    let app = routes(vec![("$connect", Recorder::answering(None) as Arc<dyn Integration>)]);
    let gw = start(app, settings.clone(), Some(Arc::new(CountingAuthorizer::default()))).await;
    assert_eq!(status_of(with_auth_header(&gw.url, None)).await, 401);
    let lines = lines(&path, 1).await;
    assert_eq!(lines.len(), 1, "{lines:?}");
    let line = &lines[0];
    // 127.0.0.1 - - [02/Dec/2026:01:02:03 +0000] "CONNECT $connect Mg_ugfpqPHcCIVA=" 401 reqid=
    assert!(line.starts_with("127.0.0.1 - - ["), "{line}");
    assert!(line.contains(" +0000] \"CONNECT $connect "), "{line}");
    let tail: Vec<&str> = line.rsplitn(3, ' ').collect();
    assert_eq!(tail[1], "401", "{line}");
    assert_eq!(tail[0].len(), 16, "the request id: {line}");
    let _ = std::fs::remove_file(&path);

    for (format, destination, named) in [
        ("$context.connectionId", AccessLogDestination::Stderr, "requestId"),
        (CLF, AccessLogDestination::File("/nonexistent-dir/x.log".into()), "/nonexistent-dir/x.log"),
    ] {
        let bad = GatewaySettings {
            listen: "127.0.0.1:0".parse().expect("addr"),
            access_log: Some(AccessLog { format: format.into(), destination }),
            ..settings.clone()
        };
        match Gateway::bind(bad).await {
            Err(GatewayError::Settings(why)) => assert!(why.contains(named), "{why}"),
            Err(other) => panic!("expected a settings error, got {other}"),
            Ok(_) => panic!("a bad access log was accepted"),
        }
    }
}
