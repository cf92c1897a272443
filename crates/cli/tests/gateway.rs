//! Black-box tests of `dynamowave serve`: the real binary on port 0, a temporary data dir, real
//! WebSocket clients. Each bad input shows its documented outcome, the server still serving
//! everyone else, and the store intact.

use std::time::{Duration, Instant};

use dynamowave_testkit::binary::{spawn_app, spawn_app_in};
use dynamowave_testkit::ws::Client;
use futures_util::SinkExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

/// AWS's tutorial session, verbatim: two plain clients, `sendmessage` reaches both (sender
/// included) as bare text, and `test` gets the `$default` answer with the connection's info.
#[tokio::test]
async fn aws_tutorial_session() {
    let app = spawn_app(&[]);
    let mut a = app.connect(false).await;
    let mut b = app.connect(false).await;
    a.send_text(r#"{"action": "sendmessage", "message": "hello, everyone!"}"#).await;
    assert_eq!(a.recv_text().await, "hello, everyone!");
    assert_eq!(b.recv_text().await, "hello, everyone!");
    // aws-samples sends `data` instead of `message`.
    b.send_text(r#"{"action": "sendmessage", "data": "hello world"}"#).await;
    assert_eq!(a.recv_text().await, "hello world");
    assert_eq!(b.recv_text().await, "hello world");

    let info = a.default_route_info().await;
    assert_eq!(info["Identity"]["SourceIp"], "127.0.0.1");
    assert!(info["ConnectedAt"].as_str().unwrap().ends_with('Z'));
    assert!(info["LastActiveAt"].as_str().is_some());
    let id = info["connectionID"].as_str().unwrap();
    assert_eq!(id.len(), 16, "API Gateway's id shape: {id}");
    b.expect_silence(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn json_framing_subprotocol_message_ack_and_idempotent_retry() {
    let app = spawn_app(&[]);
    let mut a = app.connect(true).await;
    let mut b = app.connect(true).await;
    let mut plain = app.connect(false).await;
    a.send(json!({"action": "sendmessage", "message": "hi", "id": "m1"})).await;
    let m = b.recv_event("message").await;
    assert_eq!(
        (m["room"].as_str(), m["seq"].as_u64(), m["id"].as_str(), m["text"].as_str()),
        (Some("lobby"), Some(1), Some("m1"), Some("hi"))
    );
    assert!(m["from"].as_str().unwrap().starts_with("anon-"));
    assert!(m["ts"].as_i64().unwrap() > 1_700_000_000_000);
    assert_eq!(plain.recv_text().await, "hi");
    let mine = a.recv_event("message").await;
    assert_eq!(mine["seq"], 1);
    let ack = a.recv_event("ack").await;
    assert_eq!((ack["id"].as_str(), ack["seq"].as_u64()), (Some("m1"), Some(1)));
    // A retry with the same id is not published again and gets the original seq.
    a.send(json!({"action": "sendmessage", "message": "hi", "id": "m1"})).await;
    let ack = a.recv_event("ack").await;
    assert_eq!((ack["seq"].as_u64(), ack["duplicate"].as_bool()), (Some(1), Some(true)));
    b.expect_no_message(Duration::from_millis(300)).await;
    plain.expect_silence(Duration::from_millis(100)).await;
}

#[tokio::test]
async fn rooms_isolate_and_join_since_recovers() {
    let app = spawn_app(&[]);
    let mut a = app.connect(true).await;
    let mut b = app.connect(true).await;
    a.send(json!({"action": "join", "room": "ops"})).await;
    let joined = a.recv_event("joined").await;
    assert_eq!(joined["room"], "ops");
    let epoch = joined["epoch"].as_str().unwrap().to_string();
    for i in 1..=3 {
        a.send(json!({"action": "sendmessage", "message": format!("m{i}")})).await;
        assert_eq!(a.recv_event("message").await["seq"], i);
    }
    b.expect_no_message(Duration::from_millis(200)).await; // b is in the lobby
    b.send(json!({"action": "join", "room": "ops", "since": 1, "epoch": epoch})).await;
    let r1 = b.recv_event("message").await;
    let r2 = b.recv_event("message").await;
    assert_eq!((r1["seq"].as_u64(), r2["seq"].as_u64()), (Some(2), Some(3)));
    let joined = b.recv_event("joined").await;
    assert_eq!((joined["replayed"].as_u64(), joined["recovered"].as_bool()), (Some(2), Some(true)));
    // A position from another epoch cannot be trusted.
    b.send(json!({"action": "join", "room": "ops", "since": 1, "epoch": "not-the-epoch"})).await;
    let joined = b.recv_event("joined").await;
    assert_eq!((joined["recovered"].as_bool(), joined["reason"].as_str()), (Some(false), Some("epoch_changed")));
}

#[tokio::test]
async fn bad_input_gets_clear_errors_and_the_connection_stays() {
    let app = spawn_app(&[]);
    let mut a = app.connect(true).await;
    let mut other = app.connect(true).await;
    // Malformed JSON routes to $default: the JSON framing gets an unknown_action error.
    a.send_text("{not json").await;
    let e = a.recv_event("error").await;
    assert_eq!(e["code"], "unknown_action");
    // Wrong field types.
    a.send(json!({"action": "sendmessage", "message": 42})).await;
    let e = a.recv_event("error").await;
    assert_eq!((e["code"].as_str(), e["action"].as_str()), (Some("invalid_field"), Some("sendmessage")));
    a.send(json!({"action": "join", "room": "../etc"})).await;
    assert_eq!(a.recv_event("error").await["code"], "invalid_room");
    a.send(json!({"action": "setname", "name": "<img src=x onerror=alert(1)>"})).await;
    assert_eq!(a.recv_event("error").await["code"], "invalid_name");
    a.send(json!({"action": "sendmessage", "message": "bell\u{7}"})).await;
    assert_eq!(a.recv_event("error").await["code"], "invalid_text");
    // Deeply nested JSON is refused by the parser, not a crash.
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    a.send_text(&format!(r#"{{"action":"sendmessage","message":{deep}}}"#)).await;
    let e = a.recv_json().await;
    assert_eq!(e["type"], "error", "{e}");
    // Unknown action: $default.
    a.send(json!({"action": "fly"})).await;
    assert_eq!(a.recv_event("error").await["code"], "unknown_action");
    // Still serving: a real message goes through to the other client.
    a.send(json!({"action": "sendmessage", "message": "still here"})).await;
    assert_eq!(other.recv_event("message").await["text"], "still here");
}

#[tokio::test]
async fn limits_close_with_api_gateways_codes() {
    let app = spawn_app(&[]);
    let mut witness = app.connect(true).await;

    // A frame over 32 KiB: 1009.
    let mut big = app.connect(true).await;
    big.send_text(&format!(r#"{{"action":"sendmessage","message":"{}"}}"#, "x".repeat(33 * 1024))).await;
    assert_eq!(big.recv_close().await, Some(1009));

    // Binary: 1003.
    let mut bin = app.connect(true).await;
    bin.ws.send(Message::binary(vec![1, 2, 3])).await.unwrap();
    assert_eq!(bin.recv_close().await, Some(1003));

    // Invalid UTF-8 in a text frame: 1007.
    let mut bad = app.connect(true).await;
    bad.send_frame(OpCode::Data(Data::Text), true, vec![0x7b, 0xff, 0xfe, 0x7d]).await;
    assert_eq!(bad.recv_close().await, Some(1007));

    // A message of 5 frames of 30 KiB (150 KiB > 128 KiB): 1009.
    let mut frag = app.connect(true).await;
    frag.send_fragmented(&[b'a'; 5 * 30 * 1024], 30 * 1024).await;
    assert_eq!(frag.recv_close().await, Some(1009));

    // A 100 KiB message in frames of 25 KiB is within limits and is routed.
    let mut ok = app.connect(true).await;
    let text = "y".repeat(100 * 1024);
    let body = format!(r#"{{"action":"sendmessage","message":"{text}"}}"#).into_bytes();
    ok.send_fragmented(&body, 25 * 1024).await;
    let m = witness.recv_event("message").await;
    assert_eq!(m["text"].as_str().map(str::len), Some(100 * 1024));

    // The witness was served throughout.
    witness.send(json!({"action": "ping"})).await;
    witness.recv_event("pong").await;
}

#[tokio::test]
async fn idle_connections_are_closed_going_away() {
    let app = spawn_app(&["--idle-timeout-secs", "1"]);
    let mut c = app.connect(true).await;
    let started = Instant::now();
    assert_eq!(c.recv_close().await, Some(1001));
    assert!(started.elapsed() >= Duration::from_millis(900));
}

#[tokio::test]
async fn new_connection_rate_limit_answers_429() {
    let app = spawn_app(&["--connect-rate", "1", "--connect-burst", "2"]);
    let _a = app.connect(false).await;
    let _b = app.connect(false).await;
    match Client::connect(&app.url, false).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status().as_u16(), 429),
        Err(e) => panic!("expected HTTP 429, got {e}"),
        Ok(_) => panic!("expected HTTP 429, got a connection"),
    }
}

#[tokio::test]
async fn a_flood_gets_throttled_frames_never_silence() {
    let app = spawn_app(&["--connection-rate", "5", "--connection-burst", "5"]);
    let mut flooder = app.connect(true).await;
    let mut other = app.connect(true).await;
    for i in 0..20 {
        flooder.send(json!({"action": "ping", "n": i})).await;
    }
    let (mut pongs, mut throttled) = (0, 0);
    while pongs + throttled < 20 {
        let v = flooder.recv_json().await;
        match v["type"].as_str() {
            Some("pong") => pongs += 1,
            Some("error") if v["code"] == "throttled" => {
                assert!(v["requestId"].as_str().is_some() && v["connectionId"].as_str().is_some());
                throttled += 1
            }
            _ => {}
        }
    }
    assert_eq!(pongs + throttled, 20, "every message gets an answer");
    assert!(throttled >= 10, "the per-connection rate engaged: {throttled}");
    other.send(json!({"action": "ping"})).await;
    other.recv_event("pong").await;
}

#[tokio::test]
async fn management_api_codes_and_bad_paths() {
    let app = spawn_app(&[]);
    let http = reqwest::Client::new();
    let mut c = app.connect(false).await;
    let mut j = app.connect(true).await;
    let (id, _) = j.whoami().await;

    // POST delivers raw bytes as a frame.
    let r = http.post(app.http(&format!("/production/@connections/{id}"))).body("pushed").send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(j.recv_text().await, "pushed");
    // GET answers connectedAt, identity, lastActiveAt. Percent-encoded paths work as SDKs send them.
    let enc = id.replace('=', "%3D");
    let r = http.get(app.http(&format!("/production/%40connections/{enc}"))).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["identity"]["sourceIp"], "127.0.0.1");
    assert!(v["connectedAt"].as_str().is_some() && v["lastActiveAt"].as_str().is_some());
    // 413 over 128 KiB.
    let r = http
        .post(app.http(&format!("/production/@connections/{id}")))
        .body(vec![b'a'; 129 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(r.headers()["x-amzn-errortype"], "PayloadTooLargeException");
    // Unknown ids: 410 GoneException.
    for method in [reqwest::Method::POST, reqwest::Method::GET, reqwest::Method::DELETE] {
        let r =
            http.request(method.clone(), app.http("/production/@connections/AAAAAAAAAAAAAAA=")).send().await.unwrap();
        assert_eq!(r.status(), 410, "{method}");
        assert_eq!(r.headers()["x-amzn-errortype"], "GoneException");
    }
    // A bad stage path: 403, for the WebSocket and the management API alike.
    let r = http.get(app.http("/staging/@connections/x")).send().await.unwrap();
    assert_eq!(r.status(), 403);
    match Client::connect(&format!("ws://{}/staging", app.addr), false).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status().as_u16(), 403),
        other => panic!("expected 403, got {:?}", other.map(|_| ())),
    }
    let r = http.get(app.http("/../../etc/passwd")).send().await.unwrap();
    assert!(r.status() == 403 || r.status() == 404, "{}", r.status());
    // DELETE closes the connection; it then is gone.
    let r = http.delete(app.http(&format!("/production/@connections/{id}"))).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(j.recv_close().await, Some(1000));
    // The plain client was never disturbed.
    c.send_text(r#"{"action":"sendmessage","message":"ok"}"#).await;
    assert_eq!(c.recv_text().await, "ok");
}

#[tokio::test]
async fn metrics_are_exposed() {
    let app = spawn_app(&[]);
    let mut c = app.connect(true).await;
    c.send(json!({"action": "ping"})).await;
    c.recv_event("pong").await;
    let body = reqwest::get(app.http("/metrics")).await.unwrap().text().await.unwrap();
    for name in [
        "dynamowave_connects_total",
        "dynamowave_messages_in_total",
        "dynamowave_messages_out_total",
        "dynamowave_handler_seconds",
        "dynamowave_live_connections",
    ] {
        assert!(body.contains(name), "{name} missing from /metrics:\n{body}");
    }
}

#[tokio::test]
async fn web_client_is_served_with_a_strict_csp() {
    let app = spawn_app(&["--stage", "dev"]);
    let r = reqwest::get(app.http("/")).await.unwrap();
    assert_eq!(r.status(), 200);
    let csp = r.headers()["content-security-policy"].to_str().unwrap().to_string();
    assert!(csp.contains("script-src 'self'"));
    let html = r.text().await.unwrap();
    assert!(html.contains(r#"content="dev""#), "stage substituted");
    assert_eq!(reqwest::get(app.http("/app.js")).await.unwrap().status(), 200);
    // Plain GET on the WebSocket path: 426 with an explanation.
    assert_eq!(reqwest::get(app.http("/dev")).await.unwrap().status(), 426);
}

/// SIGTERM: every client gets 1001, every connection its `$disconnect`, the store is flushed;
/// after a restart on the same data dir nobody from before is listed.
#[tokio::test]
async fn graceful_shutdown_then_clean_restart() {
    let mut app = spawn_app(&[]);
    let mut a = app.connect(true).await;
    let mut b = app.connect(true).await;
    a.send(json!({"action": "sendmessage", "message": "before", "id": "x"})).await;
    a.recv_event("ack").await;
    let status = app.stop();
    assert!(status.success(), "clean exit: {status:?}");
    assert_eq!(a.recv_close().await, Some(1001));
    assert_eq!(b.recv_close().await, Some(1001));

    let app2 = spawn_app_in(app.take_data_dir(), &[]);
    let mut c = app2.connect(true).await;
    c.send(json!({"action": "who"})).await;
    let members = c.recv_event("members").await;
    assert_eq!(members["members"].as_array().unwrap().len(), 1, "only the new connection: {members}");
    c.send(json!({"action": "history"})).await;
    let h = c.recv_event("history").await;
    assert_eq!(h["messages"][0]["text"], "before", "history survived the restart: {h}");
}
