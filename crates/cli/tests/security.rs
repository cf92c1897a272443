//! Hostile input against the real server (docs/security.md lists each row and its test): every
//! case gets a clear answer, the server keeps serving others, nothing is lost.

use std::time::Duration;

use base64::Engine;
use dynamowave_testkit::binary::{App, mint_token, spawn_app};
use dynamowave_testkit::ws::{Client, upgrade_status};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends raw bytes on a fresh TCP connection and returns what came back before the server
/// closed (or `wait` passed).
async fn raw_http(addr: &str, request: &[u8], wait: Duration) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(wait, s.read_to_end(&mut buf)).await;
    String::from_utf8_lossy(&buf).into_owned()
}

async fn still_serving(app: &App) {
    let mut c = app.connect(true).await;
    c.send(json!({"action": "ping"})).await;
    c.recv_event("pong").await;
}

#[tokio::test]
async fn path_traversal_on_static_files_and_stage_paths() {
    let app = spawn_app(&[]);
    for path in [
        "/../../etc/passwd",
        "/app.js/../../../etc/passwd",
        "/%2e%2e/%2e%2e/etc/passwd",
        "/production/../../etc/passwd",
        "/production/@connections/../../x",
    ] {
        let resp = raw_http(
            &app.addr,
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
            Duration::from_secs(2),
        )
        .await;
        let status = resp.split_whitespace().nth(1).unwrap_or("");
        assert!(status == "403" || status == "404" || status == "400", "{path}: {resp}");
        assert!(!resp.contains("root:"), "{path} leaked a file");
    }
    still_serving(&app).await;
}

#[tokio::test]
async fn header_floods_and_oversize_headers_are_refused() {
    let app = spawn_app(&[]);
    let mut many = String::from("GET /production HTTP/1.1\r\nHost: x\r\n");
    for i in 0..500 {
        many.push_str(&format!("X-H{i}: v\r\n"));
    }
    many.push_str("\r\n");
    let resp = raw_http(&app.addr, many.as_bytes(), Duration::from_secs(2)).await;
    assert!(resp.is_empty() || resp.starts_with("HTTP/1.1 431"), "{resp}");
    let big = format!("GET /production HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "a".repeat(64 * 1024));
    let resp = raw_http(&app.addr, big.as_bytes(), Duration::from_secs(2)).await;
    assert!(resp.is_empty() || resp.starts_with("HTTP/1.1 431"), "{}", &resp[..resp.len().min(200)]);
    still_serving(&app).await;
}

#[tokio::test]
async fn slowloris_upgrades_are_cut_off() {
    let app = spawn_app(&["--header-read-timeout-secs", "1"]);
    let mut s = TcpStream::connect(&app.addr).await.unwrap();
    s.write_all(b"GET /production HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let started = std::time::Instant::now();
    let mut buf = Vec::new();
    // Keep dribbling a header byte now and then; the server must still close within ~1 s.
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if s.write_all(b"X").await.is_err() {
                return;
            }
            match tokio::time::timeout(Duration::from_millis(200), s.read_buf(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return,
                _ => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the slow client was never cut off");
    assert!(started.elapsed() < Duration::from_secs(3), "cut off after {:?}", started.elapsed());
    still_serving(&app).await;
}

#[tokio::test]
async fn too_many_connections_from_one_address() {
    let app = spawn_app(&["--max-connections-per-ip", "2"]);
    let a = app.connect(true).await;
    let _b = app.connect(true).await;
    assert_eq!(upgrade_status(Client::connect(&app.url, true).await), 429);
    drop(a);
    // Once one leaves, a new one may come.
    let mut ok = None;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if let Ok(c) = Client::connect(&app.url, true).await {
            ok = Some(c);
            break;
        }
    }
    assert!(ok.is_some(), "a slot freed up after a disconnect");
}

#[tokio::test]
async fn huge_numbers_and_strings() {
    let app = spawn_app(&[]);
    let mut c = app.connect(true).await;
    c.send_text(r#"{"action":"join","room":"a","since":1e400}"#).await;
    let e = c.recv_event("error").await;
    assert!(e["code"] == "invalid_json" || e["code"] == "invalid_field", "{e}");
    c.send(json!({"action": "join", "room": "a", "since": 18446744073709551615u64})).await;
    let j = c.recv_event("joined").await;
    assert_eq!((j["recovered"].as_bool(), j["reason"].as_str()), (Some(false), Some("position_ahead_of_log")));
    c.send(json!({"action": "sendmessage", "message": "x", "id": "i".repeat(200)})).await;
    assert_eq!(c.recv_event("error").await["code"], "invalid_field");
    c.send(json!({"action": "setname", "name": "n".repeat(10_000)})).await;
    assert_eq!(c.recv_event("error").await["code"], "invalid_name");
    still_serving(&app).await;
}

fn token(claims: serde_json::Value, alg: &str, secret: &str) -> String {
    let b64 = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
    let header = b64(json!({"alg": alg, "typ": "JWT"}).to_string().as_bytes());
    let payload = b64(claims.to_string().as_bytes());
    if alg == "none" {
        return format!("{header}.{payload}.");
    }
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{header}.{payload}").as_bytes());
    format!("{header}.{payload}.{}", b64(&mac.finalize().into_bytes()))
}

#[tokio::test]
async fn tokens_unauthenticated_expired_wrong_audience_and_alg_none() {
    let secret = "a-test-secret-of-reasonable-length";
    let app = spawn_app(&["--jwt-secret", secret, "--jwt-audience", "chat"]);
    let url = |t: &str| format!("{}?token={t}", app.url);
    // No token at all: 401.
    assert_eq!(upgrade_status(Client::connect(&app.url, true).await), 401);
    // alg: none: refused.
    let now = chrono::Utc::now().timestamp();
    let none = token(json!({"sub": "mallory", "aud": "chat", "exp": now + 600}), "none", secret);
    assert!(matches!(upgrade_status(Client::connect(&url(&none), true).await), 401 | 403));
    // A correctly signed token is accepted (so the refusals below are about their one flaw).
    let fine = token(json!({"sub": "bob", "aud": "chat", "exp": now + 600}), "HS256", secret);
    assert_eq!(upgrade_status(Client::connect(&url(&fine), true).await), 101);
    // A forged signature: refused.
    let forged = token(json!({"sub": "mallory", "aud": "chat", "exp": now + 600}), "HS256", "not-the-secret");
    assert!(matches!(upgrade_status(Client::connect(&url(&forged), true).await), 401 | 403));
    // Wrong audience: refused.
    let wrong_aud = mint_token(secret, "eve", &["--aud", "other"]);
    assert!(matches!(upgrade_status(Client::connect(&url(&wrong_aud), true).await), 401 | 403));
    // Signed with another secret: refused.
    let other = mint_token("another-secret-entirely-different", "eve", &["--aud", "chat"]);
    assert!(matches!(upgrade_status(Client::connect(&url(&other), true).await), 401 | 403));
    // Expired (well past the 30 s leeway): refused.
    let expired = token(json!({"sub": "old", "aud": "chat", "exp": now - 3600}), "HS256", secret);
    assert!(matches!(upgrade_status(Client::connect(&url(&expired), true).await), 401 | 403));
    // Not yet valid: refused.
    let early = token(json!({"sub": "early", "aud": "chat", "exp": now + 7200, "nbf": now + 3600}), "HS256", secret);
    assert!(matches!(upgrade_status(Client::connect(&url(&early), true).await), 401 | 403));
    // A valid one gets in, with its name, and `setname` is then refused.
    let good = mint_token(secret, "alice", &["--aud", "chat", "--name", "Alice"]);
    let mut alice = Client::connect(&url(&good), true).await.expect("a valid token connects");
    let (_, name) = alice.whoami().await;
    assert_eq!(name, "Alice");
    alice.send(json!({"action": "setname", "name": "Mallory"})).await;
    assert_eq!(alice.recv_event("error").await["code"], "name_fixed");
}

#[tokio::test]
async fn forged_management_calls_are_forbidden() {
    // Loopback callers are trusted by default; turn that off and configure credentials: an
    // unsigned or badly signed call is then 403 ForbiddenException.
    let app = spawn_app(&[
        "--management-loopback",
        "false",
        "--management-access-key-id",
        "AKIDTEST",
        "--management-secret-access-key",
        "secret",
    ]);
    let http = reqwest::Client::new();
    let r = http.post(app.http("/production/@connections/AAAAAAAAAAAAAAA=")).body("x").send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(r.headers()["x-amzn-errortype"], "ForbiddenException");
    let forged = "AWS4-HMAC-SHA256 Credential=AKIDTEST/20261127/us-east-1/execute-api/aws4_request, SignedHeaders=host;x-amz-date, Signature=0000000000000000000000000000000000000000000000000000000000000000";
    let date = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
    let r = http
        .post(app.http("/production/@connections/AAAAAAAAAAAAAAA="))
        .header("authorization", forged)
        .header("x-amz-date", date)
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    still_serving(&app).await;
}
