//! A real WebSocket client for the tests (tokio-tungstenite), with helpers to wait for frames,
//! events and close frames. `json` picks the JSON framing (`Sec-WebSocket-Protocol: dynamowave.v1`).

#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderValue, Request};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long a test waits for any one frame. Lambda mode goes through a process and moto per
/// request, and the machine is shared, so this is generous.
pub const TIMEOUT: Duration = Duration::from_secs(20);

pub struct Client {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

fn request(url: &str, json: bool) -> Result<Request<()>, tokio_tungstenite::tungstenite::Error> {
    let mut req = url.into_client_request()?;
    if json {
        req.headers_mut().insert("Sec-WebSocket-Protocol", HeaderValue::from_static("dynamowave.v1"));
    }
    Ok(req)
}

impl Client {
    pub async fn connect(url: &str, json: bool) -> Result<Client, tokio_tungstenite::tungstenite::Error> {
        let (ws, _resp) = tokio::time::timeout(TIMEOUT, tokio_tungstenite::connect_async(request(url, json)?))
            .await
            .unwrap_or_else(|_| panic!("connecting to {url} timed out"))?;
        Ok(Client { ws })
    }

    /// Connects over a socket with `SO_LINGER` 0, so that dropping the client resets the TCP
    /// connection: no close frame, no FIN, as when a client's machine dies.
    pub async fn connect_abortable(url: &str, json: bool) -> Client {
        let req = request(url, json).expect("request");
        let authority = req.uri().authority().expect("authority").to_string();
        let tcp = TcpStream::connect(&authority).await.expect("tcp connect");
        tcp.set_zero_linger().expect("SO_LINGER 0");
        let (ws, _resp) =
            tokio::time::timeout(TIMEOUT, tokio_tungstenite::client_async(req, MaybeTlsStream::Plain(tcp)))
                .await
                .expect("handshake timed out")
                .expect("handshake");
        Client { ws }
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

    /// The next text frame that is not a presence event (those arrive whenever someone joins
    /// or leaves the room).
    pub async fn recv_pushed(&mut self) -> String {
        loop {
            let t = self.recv_text().await;
            let presence = serde_json::from_str::<Value>(&t).is_ok_and(|v| v["type"] == "presence");
            if !presence {
                return t;
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

    /// The next text frame equal to `text`, skipping others; panics on timeout.
    pub async fn recv_exact(&mut self, text: &str) {
        loop {
            if self.recv_text().await == text {
                return;
            }
        }
    }

    /// Waits for the server's close frame and returns its code (`None`: the stream ended
    /// without one).
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

    /// This connection's id and name (JSON framing: `whoami` → `identity`).
    pub async fn whoami(&mut self) -> (String, String) {
        self.send(serde_json::json!({"action": "whoami"})).await;
        let v = self.recv_event("identity").await;
        (v["connectionId"].as_str().expect("connectionId").to_string(), v["name"].as_str().expect("name").to_string())
    }
}
