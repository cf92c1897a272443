//! TLS and plain on one listener, with a certificate from the local CA: real rustls clients
//! that trust only that CA (`https://`, `wss://`), plain clients on the same port, Node's
//! `https.get` with `NODE_EXTRA_CA_CERTS`, and a client that never finishes its handshake.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;
use dynamowave_apigw::{App, Integration, integration_fn, proxy_response};
use dynamowave_gateway::settings::Limits;
use dynamowave_gateway::{Gateway, GatewaySettings, ShutdownHandle};
use dynamowave_local_ca::LocalCa;
use futures_util::{SinkExt, StreamExt};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

/// Answers `$connect` with 200, and every message with its own body, after the domain and the
/// connection id it came by (a two-way route).
fn echo() -> Arc<dyn Integration> {
    Arc::new(integration_fn(|event: ApiGatewayWebsocketProxyRequest| async move {
        let c = event.request_context;
        let (domain, id) = (c.domain_name.unwrap_or_default(), c.connection_id.unwrap_or_default());
        Ok(proxy_response(200, event.body.map(|b| format!("{domain}|{id}|{b}"))))
    }))
}

struct Running {
    port: u16,
    ca: LocalCa,
    stop: ShutdownHandle,
    _dir: TempDir,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.shutdown();
    }
}

struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn start(name: &str, limits: Limits) -> Running {
    let dir = std::env::temp_dir().join(format!("dw-gateway-tls-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let ca = LocalCa::load_or_create(&dir).expect("local CA");
    let names = ["localhost", "127.0.0.1", "*.execute-api.us-east-1.amazonaws.com"].map(str::to_string);
    let tls = Arc::new(ca.server_config(&names).expect("server config"));
    let settings = GatewaySettings {
        listen: "127.0.0.1:0".parse().expect("addr"),
        handle_signals: false,
        tls: Some(tls),
        two_way_routes: ["$default".to_string()].into_iter().collect(),
        limits,
        ..GatewaySettings::default()
    };
    let gw = Gateway::bind(settings).await.expect("bind");
    let port = gw.local_addr().port();
    let stop = gw.shutdown_handle();
    let app = App::new([("$connect", echo()), ("$default", echo())].into_iter().collect());
    tokio::spawn(gw.serve(app, None));
    Running { port, ca, stop, _dir: TempDir(dir) }
}

/// A TLS client that trusts the local CA and nothing else.
fn connector(ca: &LocalCa) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.ca_certificate()).expect("root");
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

async fn get_healthz<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(mut stream: S, host: &str) -> String {
    let request = format!("GET /healthz HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = String::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut response))
        .await
        .expect("a response in time")
        .ok();
    response
}

#[tokio::test]
async fn https_and_http_on_one_port_with_a_certificate_from_the_local_ca() {
    let gw = start("https", Limits::default()).await;
    let tcp = TcpStream::connect(("127.0.0.1", gw.port)).await.expect("connect");
    let name = ServerName::try_from("localhost").expect("name");
    let tls = connector(&gw.ca).connect(name, tcp).await.expect("TLS with a name in the leaf");
    let response = get_healthz(tls, &format!("localhost:{}", gw.port)).await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.ends_with("ok"), "{response}");

    // An IP address in the leaf, and a wildcard name.
    for name in ["127.0.0.1", "abc123.execute-api.us-east-1.amazonaws.com"] {
        let tcp = TcpStream::connect(("127.0.0.1", gw.port)).await.expect("connect");
        let server_name = ServerName::try_from(name.to_string()).expect("name");
        let tls = connector(&gw.ca).connect(server_name, tcp).await.unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(get_healthz(tls, name).await.starts_with("HTTP/1.1 200"), "{name}");
    }

    // A name the leaf does not have is refused by the client.
    let tcp = TcpStream::connect(("127.0.0.1", gw.port)).await.expect("connect");
    let other = ServerName::try_from("example.com").expect("name");
    assert!(connector(&gw.ca).connect(other, tcp).await.is_err(), "a name outside the leaf verified");

    // Plain HTTP on the same port.
    let plain = TcpStream::connect(("127.0.0.1", gw.port)).await.expect("connect");
    let response = get_healthz(plain, &format!("127.0.0.1:{}", gw.port)).await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
}

#[tokio::test]
async fn wss_and_ws_exchange_messages_on_one_port() {
    let gw = start("wss", Limits::default()).await;
    let tcp = TcpStream::connect(("127.0.0.1", gw.port)).await.expect("connect");
    let tls = connector(&gw.ca).connect(ServerName::try_from("localhost").expect("name"), tcp).await.expect("TLS");
    let url = format!("wss://localhost:{}/production", gw.port);
    let (mut ws, _) = tokio_tungstenite::client_async(url, tls).await.expect("wss upgrade");
    let mut connection_id = String::new();
    for text in ["hello", "again"] {
        ws.send(Message::text(text)).await.expect("send");
        let reply = tokio::time::timeout(Duration::from_secs(5), ws.next()).await.expect("a reply in time");
        let Some(Ok(Message::Text(t))) = reply else { panic!("expected a text frame, got {reply:?}") };
        let parts: Vec<&str> = t.as_str().splitn(3, '|').collect();
        assert_eq!(parts[0], format!("localhost:{}", gw.port), "domainName is the Host reached over TLS");
        assert_eq!(parts[2], text);
        connection_id = parts[1].to_string();
    }

    // What a function does with `https://{domainName}/{stage}`: PostToConnection over TLS.
    let tcp = TcpStream::connect(("127.0.0.1", gw.port)).await.expect("connect");
    let mut tls = connector(&gw.ca).connect(ServerName::try_from("localhost").expect("name"), tcp).await.expect("TLS");
    let body = "posted over https";
    let request = format!(
        "POST /production/@connections/{connection_id} HTTP/1.1\r\nHost: localhost:{}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        gw.port,
        body.len()
    );
    tls.write_all(request.as_bytes()).await.expect("write");
    let mut response = String::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tls.read_to_string(&mut response)).await.expect("in time");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let posted = tokio::time::timeout(Duration::from_secs(5), ws.next()).await.expect("the post in time");
    let Some(Ok(Message::Text(t))) = posted else { panic!("expected the post, got {posted:?}") };
    assert_eq!(t.as_str(), body);
    ws.close(None).await.expect("close");

    let (mut plain, _) =
        tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{}/production", gw.port)).await.expect("ws upgrade");
    plain.send(Message::text("plain")).await.expect("send");
    let Some(Ok(Message::Text(t))) = plain.next().await else { panic!("no reply") };
    assert!(t.as_str().ends_with("|plain"));
}

/// Reads until the server closes; `Err` if it did not within `within`.
async fn closed_within(mut stream: TcpStream, within: Duration) -> Result<Duration, String> {
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout_at((started + within).into(), stream.read(&mut buf)).await {
            Err(_) => return Err(format!("still open after {within:?}")),
            Ok(Ok(0)) | Ok(Err(_)) => return Ok(started.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test]
async fn the_header_read_timeout_bounds_the_tls_handshake() {
    let limits = Limits { header_read_timeout: Duration::from_millis(400), ..Limits::default() };
    let gw = start("stall", limits).await;
    // A handshake record's first bytes, then nothing.
    let mut stalled = TcpStream::connect(("127.0.0.1", gw.port)).await.expect("connect");
    stalled.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01]).await.expect("write");
    let waited = closed_within(stalled, Duration::from_secs(3)).await.expect("a stalled handshake is dropped");
    assert!(waited >= Duration::from_millis(300), "closed before the timeout: {waited:?}");
    // Not a byte at all.
    let silent = TcpStream::connect(("127.0.0.1", gw.port)).await.expect("connect");
    closed_within(silent, Duration::from_secs(3)).await.expect("a silent socket is dropped");
    // The gateway still serves.
    let tcp = TcpStream::connect(("127.0.0.1", gw.port)).await.expect("connect");
    let tls = connector(&gw.ca).connect(ServerName::try_from("localhost").expect("name"), tcp).await.expect("TLS");
    assert!(get_healthz(tls, "localhost").await.starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn node_trusts_the_local_ca_through_node_extra_ca_certs() {
    let gw = start("node", Limits::default()).await;
    let script = format!(
        "require('https').get('https://localhost:{}/healthz', r => {{ let b = ''; r.on('data', d => b += d); \
         r.on('end', () => {{ console.log(r.statusCode + ' ' + b); }}); }}).on('error', e => {{ console.error(e.message); process.exit(2); }});",
        gw.port
    );
    let ca_pem = gw.ca.ca_pem_path();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new("node").arg("-e").arg(script).env("NODE_EXTRA_CA_CERTS", ca_pem).output()
    })
    .await
    .expect("join");
    let output = match output {
        Ok(output) => output,
        Err(e) => panic!("`node` is needed for this test (scripts/test installs it) and could not be run: {e}"),
    };
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "node failed: {stderr}");
    assert_eq!(stdout.trim(), "200 ok", "{stderr}");

    // Without the CA, Node refuses the certificate.
    let script = format!(
        "require('https').get('https://localhost:{}/healthz', r => process.exit(0)).on('error', e => {{ console.error(e.code); process.exit(3); }});",
        gw.port
    );
    let output = tokio::task::spawn_blocking(move || std::process::Command::new("node").arg("-e").arg(script).output())
        .await
        .expect("join")
        .expect("node");
    assert_eq!(output.status.code(), Some(3), "Node trusted a certificate it had no CA for");
}
