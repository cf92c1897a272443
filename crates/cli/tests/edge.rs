//! The gateway's edges, attacked as a browser page, a DNS-rebinding page, a reverse proxy or a
//! slow caller would: every request is written by hand on a TCP socket to the real binary, with
//! the headers a browser or a proxy would send (`Origin`, `Sec-Fetch-Site`, `Host`,
//! `X-Forwarded-For`, …), and a real WebSocket client plays the victim.

use std::time::{Duration, Instant};

use dynamowave_testkit::binary::{App, spawn_app};
use dynamowave_testkit::ws::Client;
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What came back for one request: status and the raw head and body.
struct Answer {
    status: u16,
    text: String,
}

/// Writes `head` (and `body`) on a fresh connection and reads the answer until the server
/// closes or `wait` passes.
async fn send_raw(addr: &str, head: &str, body: &[u8], wait: Duration) -> Answer {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(head.as_bytes()).await.expect("write head");
    s.write_all(body).await.expect("write body");
    let mut buf = Vec::new();
    let deadline = tokio::time::Instant::now() + wait;
    let mut chunk = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => {
                buf.extend_from_slice(&chunk[..n]);
                // An upgrade stays open: its head is all there is to read.
                if buf.starts_with(b"HTTP/1.1 101") && buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
        }
    }
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    Answer { status, text }
}

/// An HTTP/1.1 request head; `Host` and every other header as given (`Connection: close` so
/// the answer ends with the connection).
fn head(method: &str, path: &str, headers: &[(&str, &str)], content_length: Option<usize>) -> String {
    let mut h = format!("{method} {path} HTTP/1.1\r\n");
    for (k, v) in headers {
        h.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(n) = content_length {
        h.push_str(&format!("Content-Length: {n}\r\n"));
    }
    h.push_str("\r\n");
    h
}

/// A WebSocket upgrade of `/production` with these headers (`Host` among them).
async fn upgrade(app: &App, headers: &[(&str, &str)]) -> u16 {
    let mut all = vec![
        ("Connection", "Upgrade"),
        ("Upgrade", "websocket"),
        ("Sec-WebSocket-Version", "13"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];
    all.extend_from_slice(headers);
    send_raw(&app.addr, &head("GET", "/production", &all, None), b"", Duration::from_secs(3)).await.status
}

/// A `@connections` call with `headers` (which must include `Host`) and `body`.
async fn manage(app: &App, method: &str, id: &str, headers: &[(&str, &str)], body: &str) -> Answer {
    let mut all = headers.to_vec();
    all.push(("Connection", "close"));
    let path = format!("/production/@connections/{id}");
    let len = (method == "POST").then_some(body.len());
    send_raw(&app.addr, &head(method, &path, &all, len), body.as_bytes(), Duration::from_secs(3)).await
}

async fn metrics(app: &App, headers: &[(&str, &str)]) -> u16 {
    let mut all = headers.to_vec();
    all.push(("Connection", "close"));
    send_raw(&app.addr, &head("GET", "/metrics", &all, None), b"", Duration::from_secs(3)).await.status
}

/// A victim: a connected client and its connection id.
async fn victim(app: &App) -> (Client, String) {
    let mut c = app.connect(true).await;
    let (id, _) = c.whoami().await;
    (c, id)
}

const FORGED: &str =
    r#"{"type":"message","room":"lobby","from":"admin","text":"forged: your session expired, log in at evil.example"}"#;

fn port(app: &App) -> &str {
    app.addr.rsplit(':').next().unwrap_or_default()
}

#[tokio::test]
async fn a_page_on_another_site_cannot_open_the_websocket() {
    let app = spawn_app(&[]);
    let host = app.addr.clone();
    let own = format!("http://{host}");
    // A cross-site page (the browser sends its Origin; it cannot leave it out).
    assert_eq!(upgrade(&app, &[("Host", &host), ("Origin", "https://evil.example")]).await, 403);
    assert_eq!(upgrade(&app, &[("Host", &host), ("Origin", "null")]).await, 403, "a sandboxed page");
    let other_port = format!("http://127.0.0.1:{}", port(&app).parse::<u16>().unwrap_or(1) ^ 1);
    assert_eq!(upgrade(&app, &[("Host", &host), ("Origin", &other_port)]).await, 403, "another local port");
    // The gateway's own page (the web client at /), and clients that are not browsers.
    assert_eq!(upgrade(&app, &[("Host", &host), ("Origin", &own)]).await, 101);
    let localhost = format!("localhost:{}", port(&app));
    let own_localhost = format!("http://{localhost}");
    assert_eq!(upgrade(&app, &[("Host", &localhost), ("Origin", &own_localhost)]).await, 101);
    assert_eq!(upgrade(&app, &[("Host", &host)]).await, 101);
    // The real client still connects.
    let (_c, _id) = victim(&app).await;
}

#[tokio::test]
async fn dns_rebinding_is_refused_on_the_upgrade_the_management_api_and_metrics() {
    let app = spawn_app(&[]);
    let (mut client, id) = victim(&app).await;
    // evil.example resolves to 127.0.0.1 now: the page is "same-origin" with the gateway.
    let evil_host = format!("evil.example:{}", port(&app));
    let evil_origin = format!("http://{evil_host}");
    assert_eq!(upgrade(&app, &[("Host", &evil_host), ("Origin", &evil_origin)]).await, 403);
    // Same-origin GET and DELETE carry no Origin: the Host is what gives them away.
    let forged = manage(&app, "POST", &id, &[("Host", &evil_host), ("Origin", &evil_origin)], FORGED).await;
    assert_eq!(forged.status, 403, "{}", forged.text);
    assert!(forged.text.contains("ForbiddenException"), "{}", forged.text);
    let site = [("Host", evil_host.as_str()), ("Sec-Fetch-Site", "same-origin")];
    assert_eq!(manage(&app, "GET", &id, &site, "").await.status, 403);
    assert_eq!(manage(&app, "DELETE", &id, &[("Host", &evil_host)], "").await.status, 403);
    assert_eq!(metrics(&app, &[("Host", &evil_host)]).await, 403);
    assert_eq!(metrics(&app, &[("Host", &evil_host), ("Sec-Fetch-Site", "same-origin")]).await, 403);
    client.expect_nothing_containing("forged", Duration::from_millis(300)).await;
    // The victim is still connected, and a local caller still manages it.
    let ok = manage(&app, "POST", &id, &[("Host", &app.addr)], "hello from this machine").await;
    assert_eq!(ok.status, 200, "{}", ok.text);
    assert_eq!(client.recv_pushed().await, "hello from this machine");
    assert_eq!(metrics(&app, &[("Host", &app.addr)]).await, 200);
    assert_eq!(metrics(&app, &[("Host", "localhost")]).await, 200);
}

#[tokio::test]
async fn configured_domain_names_are_the_gateways_own() {
    let app = spawn_app(&["--domain-name", "chat.example.com"]);
    let (mut client, id) = victim(&app).await;
    assert_eq!(upgrade(&app, &[("Host", "chat.example.com"), ("Origin", "https://chat.example.com")]).await, 101);
    assert_eq!(metrics(&app, &[("Host", "chat.example.com")]).await, 200);
    let ok = manage(&app, "POST", &id, &[("Host", "chat.example.com")], "via the configured name").await;
    assert_eq!(ok.status, 200, "{}", ok.text);
    assert_eq!(client.recv_pushed().await, "via the configured name");
    // Another name still is not.
    assert_eq!(upgrade(&app, &[("Host", "evil.example"), ("Origin", "https://evil.example")]).await, 403);
    assert_eq!(metrics(&app, &[("Host", "evil.example")]).await, 403);
}

#[tokio::test]
async fn allowed_origins_let_listed_pages_in_and_a_wildcard_any() {
    let app = spawn_app(&["--allowed-origins", "https://app.example.com,http://localhost:3000"]);
    let host = app.addr.clone();
    assert_eq!(upgrade(&app, &[("Host", &host), ("Origin", "https://app.example.com")]).await, 101);
    assert_eq!(upgrade(&app, &[("Host", &host), ("Origin", "http://localhost:3000")]).await, 101);
    assert_eq!(upgrade(&app, &[("Host", &host), ("Origin", "https://evil.example")]).await, 403);
    assert_eq!(upgrade(&app, &[("Host", &host), ("Origin", "http://app.example.com")]).await, 403);
    drop(app);

    let app = spawn_app(&["--allowed-origins", "*"]);
    let host = app.addr.clone();
    assert_eq!(upgrade(&app, &[("Host", &host), ("Origin", "https://anyone.example")]).await, 101);
    assert_eq!(upgrade(&app, &[("Host", &host), ("Origin", "null")]).await, 101);
}

#[tokio::test]
async fn a_no_cors_post_from_a_page_is_forbidden_and_the_victim_receives_nothing() {
    let app = spawn_app(&[]);
    let (mut client, id) = victim(&app).await;
    // fetch(url, {method: "POST", mode: "no-cors", body}) from https://evil.example: a "simple"
    // request, sent without a preflight, with the page's Origin.
    let forged = manage(
        &app,
        "POST",
        &id,
        &[
            ("Host", &app.addr),
            ("Origin", "https://evil.example"),
            ("Sec-Fetch-Site", "cross-site"),
            ("Sec-Fetch-Mode", "no-cors"),
            ("Content-Type", "text/plain;charset=UTF-8"),
        ],
        FORGED,
    )
    .await;
    assert_eq!(forged.status, 403, "{}", forged.text);
    assert!(forged.text.to_ascii_lowercase().contains("x-amzn-errortype: forbiddenexception"), "{}", forged.text);
    // Origin alone is enough, so is Sec-Fetch-Site alone (cross-site or same-site).
    for headers in [
        vec![("Host", app.addr.as_str()), ("Origin", "https://evil.example")],
        vec![("Host", app.addr.as_str()), ("Sec-Fetch-Site", "cross-site")],
        vec![("Host", app.addr.as_str()), ("Sec-Fetch-Site", "same-site")],
    ] {
        let r = manage(&app, "POST", &id, &headers, FORGED).await;
        assert_eq!(r.status, 403, "{headers:?}: {}", r.text);
    }
    client.expect_nothing_containing("forged", Duration::from_millis(300)).await;
    // A user typing the URL (Sec-Fetch-Site: none) reads metrics; scripts without it manage.
    assert_eq!(metrics(&app, &[("Host", &app.addr), ("Sec-Fetch-Site", "none")]).await, 200);
    assert_eq!(metrics(&app, &[("Host", &app.addr), ("Sec-Fetch-Site", "cross-site")]).await, 403);
    assert_eq!(metrics(&app, &[("Host", &app.addr), ("Origin", "https://evil.example")]).await, 403);
    let ok = manage(&app, "POST", &id, &[("Host", &app.addr)], "local").await;
    assert_eq!(ok.status, 200, "{}", ok.text);
    assert_eq!(client.recv_pushed().await, "local");
}

#[tokio::test]
async fn calls_relayed_by_a_proxy_are_not_loopback() {
    let app = spawn_app(&[]);
    let (mut client, id) = victim(&app).await;
    for (name, value) in [
        ("Forwarded", "for=203.0.113.7;proto=https"),
        ("X-Forwarded-For", "203.0.113.7"),
        ("X-Forwarded-Host", "chat.example.com"),
        ("X-Forwarded-Proto", "https"),
        ("X-Real-IP", "203.0.113.7"),
        ("Via", "1.1 caddy"),
    ] {
        let r = manage(&app, "POST", &id, &[("Host", &app.addr), (name, value)], FORGED).await;
        assert_eq!(r.status, 403, "{name}: {}", r.text);
        assert_eq!(manage(&app, "DELETE", &id, &[("Host", &app.addr), (name, value)], "").await.status, 403, "{name}");
        assert_eq!(metrics(&app, &[("Host", &app.addr), (name, value)]).await, 403, "{name}");
    }
    client.expect_nothing_containing("forged", Duration::from_millis(300)).await;
    assert_eq!(manage(&app, "GET", &id, &[("Host", &app.addr)], "").await.status, 200);
}

type HmacSha256 = Hmac<Sha256>;

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = HmacSha256::new_from_slice(key).expect("any key length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn uri_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A SigV4 `Authorization` for a request with no query, signing the headers listed (lower
/// case, sorted) with `scope` = (region, service).
fn sign(
    method: &str,
    raw_path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    (key, secret): (&str, &str),
    (region, service): (&str, &str),
    amz_date: &str,
) -> String {
    let date = &amz_date[..8];
    let canonical_uri = raw_path.split('/').map(uri_encode).collect::<Vec<_>>().join("/");
    let mut canonical_headers = String::new();
    let mut names = Vec::new();
    for (k, v) in headers {
        canonical_headers.push_str(&format!("{k}:{v}\n"));
        names.push(*k);
    }
    let signed = names.join(";");
    let request = format!("{method}\n{canonical_uri}\n\n{canonical_headers}\n{signed}\n{}", hex(&Sha256::digest(body)));
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{date}/{region}/{service}/aws4_request\n{}",
        hex(&Sha256::digest(request.as_bytes()))
    );
    let k = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k = hmac(&k, region.as_bytes());
    let k = hmac(&k, service.as_bytes());
    let k = hmac(&k, b"aws4_request");
    format!(
        "AWS4-HMAC-SHA256 Credential={key}/{date}/{region}/{service}/aws4_request, SignedHeaders={signed}, Signature={}",
        hex(&hmac(&k, to_sign.as_bytes()))
    )
}

#[tokio::test]
async fn with_keys_configured_every_caller_signs_and_the_scope_must_be_ours() {
    const KEYS: (&str, &str) = ("AKIDEDGETEST", "edge/secret");
    // Loopback stays on (the default): keys alone must close the unsigned path.
    let app = spawn_app(&[
        "--management-access-key-id",
        KEYS.0,
        "--management-secret-access-key",
        KEYS.1,
        "--region",
        "eu-west-1",
    ]);
    let (mut client, id) = victim(&app).await;
    let path = format!("/production/@connections/{id}");
    let host = app.addr.clone();
    let now = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();

    let unsigned = manage(&app, "POST", &id, &[("Host", &host)], FORGED).await;
    assert_eq!(unsigned.status, 403, "an unsigned loopback call: {}", unsigned.text);
    assert_eq!(metrics(&app, &[("Host", &host)]).await, 403);

    let post = |auth: String, body: &'static str| {
        let (host, now, id) = (host.clone(), now.clone(), id.clone());
        let app = &app;
        async move {
            manage(app, "POST", &id, &[("Host", &host), ("X-Amz-Date", &now), ("Authorization", &auth)], body).await
        }
    };
    let signed_headers = [("host", host.as_str()), ("x-amz-date", now.as_str())];
    let good = sign("POST", &path, &signed_headers, b"signed", KEYS, ("eu-west-1", "execute-api"), &now);
    let r = post(good, "signed").await;
    assert_eq!(r.status, 200, "a valid signature: {}", r.text);
    assert_eq!(client.recv_pushed().await, "signed");

    // Valid signatures over the wrong things.
    let cases = [
        (
            "host not signed",
            sign("POST", &path, &[("x-amz-date", &now)], FORGED.as_bytes(), KEYS, ("eu-west-1", "execute-api"), &now),
        ),
        (
            "x-amz-date not signed",
            sign("POST", &path, &[("host", &host)], FORGED.as_bytes(), KEYS, ("eu-west-1", "execute-api"), &now),
        ),
        (
            "another region",
            sign("POST", &path, &signed_headers, FORGED.as_bytes(), KEYS, ("us-east-1", "execute-api"), &now),
        ),
        ("another service", sign("POST", &path, &signed_headers, FORGED.as_bytes(), KEYS, ("eu-west-1", "s3"), &now)),
        (
            "another body",
            sign("POST", &path, &signed_headers, b"something else", KEYS, ("eu-west-1", "execute-api"), &now),
        ),
    ];
    for (what, auth) in cases {
        let r = post(auth, FORGED).await;
        assert_eq!(r.status, 403, "{what}: {}", r.text);
    }
    let metrics_auth = sign("GET", "/metrics", &signed_headers, b"", KEYS, ("eu-west-1", "execute-api"), &now);
    let signed_metrics =
        metrics(&app, &[("Host", &host), ("X-Amz-Date", &now), ("Authorization", &metrics_auth)]).await;
    assert_eq!(signed_metrics, 200);
    client.expect_nothing_containing("forged", Duration::from_millis(300)).await;
}

#[tokio::test]
async fn a_body_that_never_comes_is_cut_off_and_others_are_served() {
    let app = spawn_app(&["--management-body-timeout-secs", "1"]);
    let (mut client, id) = victim(&app).await;
    let started = Instant::now();
    let path = format!("/production/@connections/{id}");
    let stalled = head("POST", &path, &[("Host", &app.addr)], Some(100));
    // Several at once: none of them holds up anyone else.
    let mut stalls = Vec::new();
    for _ in 0..4 {
        let (addr, stalled) = (app.addr.clone(), stalled.clone());
        stalls.push(tokio::spawn(async move { send_raw(&addr, &stalled, b"only part", Duration::from_secs(8)).await }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let ok = manage(&app, "POST", &id, &[("Host", &app.addr)], "meanwhile").await;
    assert_eq!(ok.status, 200, "{}", ok.text);
    assert_eq!(client.recv_pushed().await, "meanwhile");
    for stall in stalls {
        let answer = stall.await.expect("task");
        assert_eq!(answer.status, 408, "{}", answer.text);
    }
    assert!(started.elapsed() < Duration::from_secs(5), "answered after {:?}", started.elapsed());
    client.send(json!({"action": "ping"})).await;
    client.recv_event("pong").await;
}

#[tokio::test]
async fn an_over_cap_content_length_is_refused_before_the_body_is_sent() {
    let app = spawn_app(&[]);
    let (mut client, id) = victim(&app).await;
    let path = format!("/production/@connections/{id}");
    // One byte over PostToConnection's 128 KiB; no body follows the head.
    let over = head("POST", &path, &[("Host", &app.addr)], Some(128 * 1024 + 1));
    let started = Instant::now();
    let answer = send_raw(&app.addr, &over, b"", Duration::from_secs(3)).await;
    assert_eq!(answer.status, 413, "{}", answer.text);
    assert!(answer.text.contains("PayloadTooLargeException"), "{}", answer.text);
    assert!(started.elapsed() < Duration::from_secs(2), "answered after {:?}", started.elapsed());
    // Exactly 128 KiB still goes through.
    let full = "x".repeat(128 * 1024);
    let ok = manage(&app, "POST", &id, &[("Host", &app.addr)], &full).await;
    assert_eq!(ok.status, 200);
    assert_eq!(client.recv_pushed().await.len(), full.len());
}
