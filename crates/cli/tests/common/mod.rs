//! Black-box helpers: the real `dynamowave` binary on port 0 with a temporary data dir, driven
//! by a real WebSocket client.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const TIMEOUT: Duration = Duration::from_secs(5);

pub struct App {
    pub addr: String,
    pub url: String,
    pub child: Child,
    pub data_dir: tempfile::TempDir,
    pub args: Vec<String>,
}

/// Starts `dynamowave serve` on port 0 with `args` on top of test-friendly defaults.
pub fn spawn_app(args: &[&str]) -> App {
    let data_dir = tempfile::tempdir().expect("temp dir");
    spawn_app_in(data_dir, args)
}

pub fn spawn_app_in(data_dir: tempfile::TempDir, args: &[&str]) -> App {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dynamowave"));
    cmd.arg("serve").arg("--listen").arg("127.0.0.1:0").arg("--data-dir").arg(data_dir.path());
    cmd.args(args);
    cmd.env("RUST_LOG", std::env::var("TEST_LOG").unwrap_or_else(|_| "warn".into()));
    cmd.stdout(Stdio::piped()).stderr(if std::env::var("TEST_LOG").is_ok() { Stdio::inherit() } else { Stdio::null() });
    let mut child = cmd.spawn().expect("spawn dynamowave");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let url = loop {
        let line = lines.next().expect("server exited before listening").expect("read stdout");
        if let Some(url) = line.strip_prefix("DYNAMOWAVE_LISTENING ") {
            break url.to_string();
        }
    };
    // Keep draining stdout so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines.by_ref() {});
    let addr = url.trim_start_matches("ws://").split('/').next().unwrap_or_default().to_string();
    App { addr, url, child, data_dir, args: args.iter().map(|s| s.to_string()).collect() }
}

impl App {
    pub fn http(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub async fn connect(&self, json: bool) -> Client {
        Client::connect(&self.url, json).await.expect("connect")
    }

    /// SIGTERM, then wait for the process to exit.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        for _ in 0..100 {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        self.child.wait().expect("wait")
    }
}

impl Drop for App {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct Client {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Client {
    pub async fn connect(url: &str, json: bool) -> Result<Client, tokio_tungstenite::tungstenite::Error> {
        let mut req = url.into_client_request()?;
        if json {
            req.headers_mut().insert("Sec-WebSocket-Protocol", HeaderValue::from_static("dynamowave.v1"));
        }
        let (ws, _resp) = tokio_tungstenite::connect_async(req).await?;
        Ok(Client { ws })
    }

    pub async fn send(&mut self, v: Value) {
        self.ws.send(Message::text(v.to_string())).await.expect("send");
    }

    pub async fn send_text(&mut self, s: &str) {
        self.ws.send(Message::text(s.to_string())).await.expect("send");
    }

    /// The next text frame (pings/pongs skipped); panics on timeout or close.
    pub async fn recv_text(&mut self) -> String {
        loop {
            let msg = tokio::time::timeout(TIMEOUT, self.ws.next()).await.expect("timed out waiting for a frame");
            match msg.expect("stream ended").expect("read error") {
                Message::Text(t) => return t.to_string(),
                Message::Ping(_) | Message::Pong(_) => continue,
                other => panic!("expected a text frame, got {other:?}"),
            }
        }
    }

    pub async fn recv_json(&mut self) -> Value {
        let t = self.recv_text().await;
        serde_json::from_str(&t).unwrap_or_else(|e| panic!("not JSON ({e}): {t}"))
    }

    /// The next event of `kind`, skipping others (presence and the like).
    pub async fn recv_event(&mut self, kind: &str) -> Value {
        loop {
            let v = self.recv_json().await;
            if v["type"] == kind {
                return v;
            }
        }
    }

    /// Waits for the server's close frame and returns its code.
    pub async fn recv_close(&mut self) -> Option<u16> {
        loop {
            let msg = tokio::time::timeout(TIMEOUT, self.ws.next()).await.expect("timed out waiting for close");
            match msg {
                Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return None,
            }
        }
    }

    /// Nothing arrives within `d` (other than control frames).
    pub async fn expect_silence(&mut self, d: Duration) {
        if let Ok(Some(Ok(Message::Text(t)))) = tokio::time::timeout(d, self.ws.next()).await {
            panic!("expected silence, got {t}");
        }
    }

    /// No `message` event arrives within `d` (presence and other events are ignored).
    pub async fn expect_no_message(&mut self, d: Duration) {
        let deadline = tokio::time::Instant::now() + d;
        while let Ok(Some(Ok(msg))) = tokio::time::timeout_at(deadline, self.ws.next()).await {
            if let Message::Text(t) = msg {
                let v: Value = serde_json::from_str(&t).unwrap_or(Value::Null);
                assert_ne!(v["type"], "message", "expected no message, got {t}");
            }
        }
    }

    /// This connection's id, learned from `who` (the member list includes ourselves).
    pub async fn whoami(&mut self) -> (String, String) {
        self.send(serde_json::json!({"action": "whoami"})).await;
        let v = self.recv_event("identity").await;
        (v["connectionId"].as_str().unwrap().to_string(), v["name"].as_str().unwrap().to_string())
    }
}

/// Reads until the server's close frame (whatever was queued before it is skipped).
pub async fn close_code(c: &mut Client, within: Duration) -> Option<u16> {
    tokio::time::timeout(within, async {
        loop {
            match c.ws.next().await {
                Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return None,
            }
        }
    })
    .await
    .expect("the server never closed the connection")
}

/// Waits until the gateway no longer has connection `id` (GetConnection answers 410): the server
/// closed it. Its close frame is then being flushed, for a few seconds, to a client that reads.
pub async fn wait_gone(app: &App, id: &str, within: Duration) {
    let http = reqwest::Client::new();
    let url = app.http(&format!("/production/@connections/{id}"));
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let status = http.get(&url).send().await.expect("GetConnection").status().as_u16();
        if status == 410 {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "connection {id} was never closed (GetConnection: {status})");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
