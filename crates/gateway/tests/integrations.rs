//! The gateway in front of custom integrations: how it treats what a route's backend answers,
//! and the seed's reserved concurrency.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use dynamowave_apigw::{App, Asset, ErrorFrame, ErrorFrames, Integration, IntegrationError, proxy_response};
use dynamowave_gateway::GatewaySettings;
use dynamowave_gateway::settings::{Bucket, Concurrency};
use dynamowave_testkit::in_process::{RunningGateway, app_gateway, routes_gateway};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// Answers with a fixed status (and header), or fails, or sleeps: whatever the test needs.
struct Scripted {
    status: i64,
    header: Option<(&'static str, &'static str)>,
    fail: bool,
    sleep: Duration,
    calls: AtomicUsize,
    events: std::sync::Mutex<Vec<ApiGatewayWebsocketProxyRequest>>,
}

impl Scripted {
    fn ok() -> Arc<Self> {
        Arc::new(Self {
            status: 200,
            header: None,
            fail: false,
            sleep: Duration::ZERO,
            calls: AtomicUsize::new(0),
            events: Default::default(),
        })
    }
}

#[async_trait]
impl Integration for Scripted {
    async fn invoke(
        &self,
        event: ApiGatewayWebsocketProxyRequest,
    ) -> Result<ApiGatewayProxyResponse, IntegrationError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.events.lock().unwrap().push(event);
        if !self.sleep.is_zero() {
            tokio::time::sleep(self.sleep).await;
        }
        if self.fail {
            return Err(IntegrationError::Failed("boom".into()));
        }
        let mut r = proxy_response(self.status, None);
        if let Some((k, v)) = self.header {
            r.headers.insert(k, v.parse().unwrap());
        }
        Ok(r)
    }
}

/// A gateway with `routes`; its URL, and the gateway (stopped when dropped).
async fn start(routes: Vec<(&str, Arc<dyn Integration>)>, settings: GatewaySettings) -> (String, RunningGateway) {
    let gateway = routes_gateway(settings, routes).await;
    (gateway.url(), gateway)
}

/// A gateway serving `app`; its URL, and the gateway (stopped when dropped).
async fn start_app(app: App, settings: GatewaySettings) -> (String, RunningGateway) {
    let gateway = app_gateway(settings, app).await;
    (gateway.url(), gateway)
}

#[tokio::test]
async fn connect_status_decides_the_upgrade_and_headers_reach_the_handshake() {
    let refuse = Arc::new(Scripted { status: 400, ..Arc::into_inner(Scripted::ok()).unwrap() });
    let (url, _stop) = start(vec![("$connect", refuse.clone())], GatewaySettings::default()).await;
    match tokio_tungstenite::connect_async(&url).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status().as_u16(), 400),
        other => panic!("expected 400, got {:?}", other.map(|_| ())),
    }
    assert_eq!(refuse.calls.load(Ordering::SeqCst), 1);

    let accept = Arc::new(Scripted {
        header: Some(("sec-websocket-protocol", "myprotocol")),
        ..Arc::into_inner(Scripted::ok()).unwrap()
    });
    let (url, _stop) = start(vec![("$connect", accept.clone())], GatewaySettings::default()).await;
    let mut req = url.into_client_request().unwrap();
    req.headers_mut().insert("Sec-WebSocket-Protocol", "myprotocol".parse().unwrap());
    let (_ws, resp) = tokio_tungstenite::connect_async(req).await.unwrap();
    assert_eq!(resp.headers()["sec-websocket-protocol"], "myprotocol");
    let event = accept.events.lock().unwrap()[0].clone();
    let ctx = &event.request_context;
    assert_eq!(ctx.route_key.as_deref(), Some("$connect"));
    assert_eq!(ctx.event_type.as_deref(), Some("CONNECT"));
    assert_eq!(ctx.stage.as_deref(), Some("production"));
    assert_eq!(ctx.identity.source_ip.as_deref(), Some("127.0.0.1"));
    assert!(ctx.connected_at > 0 && ctx.request_time_epoch >= ctx.connected_at);
    assert_eq!(ctx.connection_id.as_deref().map(str::len), Some(16));
    assert!(ctx.message_id.is_none(), "messageId is only on MESSAGE events");
}

/// Writes what the gateway gives it, so a test sees the kind and the subprotocol.
struct TaggedErrors;

impl ErrorFrames for TaggedErrors {
    fn format(&self, frame: &ErrorFrame<'_>, subprotocol: Option<&str>) -> String {
        format!("{}|{}|{}", frame.kind.code(), frame.message, subprotocol.unwrap_or("-"))
    }
}

#[tokio::test]
async fn the_app_shapes_the_error_frames_by_subprotocol_and_serves_its_assets() {
    let page = Asset { path: "/", content_type: "text/html; charset=utf-8", body: "<p>{{STAGE}}</p>" };
    let app = |connect: Arc<Scripted>| {
        let failing = Arc::new(Scripted { fail: true, ..Arc::into_inner(Scripted::ok()).unwrap() });
        let routes = [("$connect", connect as Arc<dyn Integration>), ("$default", failing as Arc<dyn Integration>)];
        App::new(routes.into_iter().collect()).with_error_frames(Arc::new(TaggedErrors)).with_assets(vec![page])
    };
    let selects = Arc::new(Scripted {
        header: Some(("sec-websocket-protocol", "tagged.v1")),
        ..Arc::into_inner(Scripted::ok()).unwrap()
    });
    let (url, _stop) = start_app(app(selects), GatewaySettings::default()).await;
    let mut req = url.clone().into_client_request().unwrap();
    req.headers_mut().insert("Sec-WebSocket-Protocol", "tagged.v1".parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    ws.send(Message::text("hello")).await.unwrap();
    let Some(Ok(Message::Text(t))) = ws.next().await else { panic!("no frame") };
    assert_eq!(t.as_str(), "internal_error|Internal server error|tagged.v1");

    let (plain_url, _plain_stop) = start_app(app(Scripted::ok()), GatewaySettings::default()).await;
    let (mut plain, _) = tokio_tungstenite::connect_async(&plain_url).await.unwrap();
    plain.send(Message::text("hello")).await.unwrap();
    let Some(Ok(Message::Text(t))) = plain.next().await else { panic!("no frame") };
    assert_eq!(t.as_str(), "internal_error|Internal server error|-", "no subprotocol selected");

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = url.trim_start_matches("ws://").trim_end_matches("/production").to_string();
    let mut http = tokio::net::TcpStream::connect(&addr).await.unwrap();
    http.write_all(format!("GET / HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes()).await.unwrap();
    let mut answer = String::new();
    http.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("content-security-policy: default-src 'self'"), "{answer}");
    assert!(answer.ends_with("<p>production</p>"), "the stage is written in: {answer}");
}

#[tokio::test]
async fn handler_failure_sends_internal_server_error_and_the_connection_stays() {
    let failing = Arc::new(Scripted { fail: true, ..Arc::into_inner(Scripted::ok()).unwrap() });
    let default = Scripted::ok();
    let (url, _stop) = start(
        vec![("$connect", Scripted::ok()), ("sendmessage", failing.clone()), ("$default", default.clone())],
        GatewaySettings::default(),
    )
    .await;
    let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    ws.send(Message::text(r#"{"action":"sendmessage","message":"x"}"#)).await.unwrap();
    let Some(Ok(Message::Text(t))) = ws.next().await else { panic!("no frame") };
    let v: serde_json::Value = serde_json::from_str(&t).unwrap();
    assert_eq!(v["message"], "Internal server error");
    assert!(v["connectionId"].as_str().is_some() && v["requestId"].as_str().is_some());
    // Still connected: the next message is routed (to $default: unknown action).
    ws.send(Message::text(r#"{"action":"other"}"#)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let e = default.events.lock().unwrap().last().cloned().unwrap();
    assert_eq!(e.request_context.route_key.as_deref(), Some("$default"));
    assert_eq!(e.request_context.event_type.as_deref(), Some("MESSAGE"));
    assert!(e.request_context.message_id.is_some());
    assert_eq!(e.body.as_deref(), Some(r#"{"action":"other"}"#));
}

/// The seed's reserved concurrency: a flood of slow `sendmessage`s fills that route's slots, yet
/// `$connect` and `$disconnect`, which have their own, are not starved.
#[tokio::test]
async fn a_sendmessage_flood_cannot_starve_connect_and_disconnect() {
    let slow_send =
        Arc::new(Scripted { sleep: Duration::from_millis(400), ..Arc::into_inner(Scripted::ok()).unwrap() });
    let connect = Scripted::ok();
    let disconnect = Scripted::ok();
    let settings = GatewaySettings {
        concurrency: Concurrency {
            default_route: 4,
            per_route: [("sendmessage".to_string(), 4), ("$connect".to_string(), 4), ("$disconnect".to_string(), 4)]
                .into(),
            queue_timeout: Duration::from_millis(50),
        },
        throttling: dynamowave_gateway::settings::Throttling {
            per_connection: Bucket { rate: 0.0, burst: 0 },
            ..Default::default()
        },
        ..GatewaySettings::default()
    };
    let (url, _stop) = start(
        vec![("$connect", connect.clone()), ("$disconnect", disconnect.clone()), ("sendmessage", slow_send.clone())],
        settings,
    )
    .await;

    // 20 flooders, each firing sendmessage: only 4 can run at once, the rest are throttled.
    let mut flooders = Vec::new();
    for _ in 0..20 {
        let (ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
        flooders.push(ws);
    }
    for ws in flooders.iter_mut() {
        for _ in 0..5 {
            ws.send(Message::text(r#"{"action":"sendmessage","message":"x"}"#)).await.unwrap();
        }
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    // While sendmessage is saturated, connects and disconnects go through promptly.
    let started = Instant::now();
    for _ in 0..10 {
        let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.expect("connect while flooded");
        ws.close(None).await.unwrap();
    }
    assert!(started.elapsed() < Duration::from_millis(1500), "connects took {:?}", started.elapsed());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(connect.calls.load(Ordering::SeqCst), 30);
    assert!(disconnect.calls.load(Ordering::SeqCst) >= 10);
    // And the flood was in fact bounded: some sendmessages were refused with a throttled frame.
    let mut throttled = 0;
    for ws in flooders.iter_mut() {
        while let Ok(Some(Ok(Message::Text(t)))) = tokio::time::timeout(Duration::from_millis(100), ws.next()).await {
            if t.contains("Too Many Requests") {
                throttled += 1;
            }
        }
    }
    assert!(throttled > 0, "the sendmessage route's concurrency limit engaged");
    assert!(slow_send.calls.load(Ordering::SeqCst) < 100);
}
