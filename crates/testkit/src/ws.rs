//! The one WebSocket client of the tests (tokio-tungstenite), with helpers to wait for frames,
//! events and close frames. `json` picks the JSON framing (`Sec-WebSocket-Protocol:
//! dynamowave.v1`); without it the connection speaks the plain framing of AWS's tutorial.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderValue, Request};
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::{Frame, FrameHeader};
use tokio_tungstenite::tungstenite::{Error, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::TIMEOUT;
use crate::in_process::SUBPROTOCOL;

/// AWS's tutorial answer on `$default`, before the connection's info (JSON).
const DEFAULT_ROUTE_ANSWER: &str = "Use the sendmessage route to send a message. Your info: ";

pub struct Client {
    /// The socket itself, for frames the helpers do not send (binary, raw, fragmented).
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

fn request(url: &str, json: bool) -> Result<Request<()>, Error> {
    let mut req = url.into_client_request()?;
    if json {
        req.headers_mut().insert("Sec-WebSocket-Protocol", HeaderValue::from_static(SUBPROTOCOL));
    }
    Ok(req)
}

/// The HTTP status an upgrade got: 101 when it connected, else the refusal's status. Panics on
/// any other error.
pub fn upgrade_status(r: Result<Client, Error>) -> u16 {
    match r {
        Err(Error::Http(resp)) => resp.status().as_u16(),
        Err(e) => panic!("expected an HTTP refusal, got {e}"),
        Ok(_) => 101,
    }
}

impl Client {
    pub async fn connect(url: &str, json: bool) -> Result<Client, Error> {
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
        Self::handshake(req, tcp).await
    }

    /// Connects over a socket whose receive buffer holds only `bytes`: when the client does not
    /// read, the server's queue for it fills at once instead of the kernel's buffers.
    pub async fn connect_with_recv_buffer(url: &str, json: bool, bytes: u32) -> Client {
        let req = request(url, json).expect("request");
        let authority = req.uri().authority().expect("authority").to_string();
        let socket = TcpSocket::new_v4().expect("socket");
        socket.set_recv_buffer_size(bytes).expect("SO_RCVBUF");
        let tcp = socket.connect(authority.parse().expect("a socket address")).await.expect("tcp connect");
        Self::handshake(req, tcp).await
    }

    async fn handshake(req: Request<()>, tcp: TcpStream) -> Client {
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

    /// One frame as given, for what a well-behaved client would not send (invalid UTF-8, …).
    pub async fn send_frame(&mut self, opcode: OpCode, is_final: bool, payload: Vec<u8>) {
        let frame = Frame::from_payload(FrameHeader { is_final, opcode, ..FrameHeader::default() }, payload.into());
        self.ws.send(Message::Frame(frame)).await.expect("send frame");
    }

    /// `body` as one text message in frames of at most `frame_bytes`.
    pub async fn send_fragmented(&mut self, body: &[u8], frame_bytes: usize) {
        let parts: Vec<&[u8]> = body.chunks(frame_bytes).collect();
        for (i, part) in parts.iter().enumerate() {
            let opcode = if i == 0 { OpCode::Data(Data::Text) } else { OpCode::Data(Data::Continue) };
            self.send_frame(opcode, i == parts.len() - 1, part.to_vec()).await;
        }
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
        self.recv_any(&[kind]).await
    }

    /// The next event of one of `kinds` (an answer or its `error`, say), skipping others.
    pub async fn recv_any(&mut self, kinds: &[&str]) -> Value {
        loop {
            let v = self.recv_json().await;
            if kinds.iter().any(|k| v["type"] == *k) {
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
    /// without one). Each frame is waited for [`TIMEOUT`] at most.
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

    /// Reads until the server's close frame, `within` in all (whatever was queued before it is
    /// skipped, however much that is).
    pub async fn close_code(&mut self, within: Duration) -> Option<u16> {
        tokio::time::timeout(within, async {
            loop {
                match self.ws.next().await {
                    Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
                    Some(Ok(_)) => continue,
                    Some(Err(_)) | None => return None,
                }
            }
        })
        .await
        .expect("the server never closed the connection")
    }

    /// Nothing arrives within `d` (other than control frames).
    pub async fn expect_silence(&mut self, d: Duration) {
        if let Ok(Some(Ok(Message::Text(t)))) = tokio::time::timeout(d, self.ws.next()).await {
            panic!("expected silence, got {t}");
        }
    }

    /// No event of `kind` arrives within `d` (others are skipped).
    pub async fn expect_no_event(&mut self, kind: &str, d: Duration) {
        let deadline = tokio::time::Instant::now() + d;
        while let Ok(Some(Ok(msg))) = tokio::time::timeout_at(deadline, self.ws.next()).await {
            if let Message::Text(t) = msg {
                let v: Value = serde_json::from_str(&t).unwrap_or(Value::Null);
                assert_ne!(v["type"], kind, "expected no {kind} event, got {t}");
            }
        }
    }

    /// No `message` event arrives within `d` (presence and other events are ignored).
    pub async fn expect_no_message(&mut self, d: Duration) {
        self.expect_no_event("message", d).await;
    }

    /// Nothing with `marker` in it arrives within `d`.
    pub async fn expect_nothing_containing(&mut self, marker: &str, d: Duration) {
        let deadline = tokio::time::Instant::now() + d;
        while let Ok(Some(Ok(msg))) = tokio::time::timeout_at(deadline, self.ws.next()).await {
            if let Message::Text(t) = msg {
                assert!(!t.contains(marker), "received a frame with {marker:?} in it: {t}");
            }
        }
    }

    /// This connection's id and name (JSON framing: `whoami` → `identity`).
    pub async fn whoami(&mut self) -> (String, String) {
        self.send(serde_json::json!({"action": "whoami"})).await;
        let v = self.recv_event("identity").await;
        (v["connectionId"].as_str().expect("connectionId").to_string(), v["name"].as_str().expect("name").to_string())
    }

    /// The connection's info from `$default` in the plain framing (AWS's tutorial: any text
    /// that is no action gets "Use the sendmessage route…" and the info as JSON).
    pub async fn default_route_info(&mut self) -> Value {
        self.send_text("test").await;
        let answer = self.recv_text().await;
        let info =
            answer.strip_prefix(DEFAULT_ROUTE_ANSWER).unwrap_or_else(|| panic!("unexpected $default answer: {answer}"));
        serde_json::from_str(info).expect("info is JSON")
    }
}

/// Waits until the gateway at `addr` (`host:port`) no longer has connection `id` (GetConnection
/// answers 410): the server closed it. Its close frame is then being flushed, for a few seconds,
/// to a client that reads.
pub async fn wait_gone(addr: &str, id: &str, within: Duration) {
    let http = reqwest::Client::new();
    let url = format!("http://{addr}/production/@connections/{id}");
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
