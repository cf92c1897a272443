//! A raw WebSocket client for conformance tests: it does the HTTP upgrade itself and writes
//! frames byte by byte, so a test controls FIN, RSV, opcode, mask and the length encoding — and
//! can therefore send what no well-behaved client library would. Frames from the server are
//! parsed just as strictly (a server frame must never be masked).

use std::net::SocketAddr;

use base64::Engine;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::TIMEOUT;
use crate::in_process::SUBPROTOCOL;

pub const CONTINUATION: u8 = 0x0;
pub const TEXT: u8 = 0x1;
pub const BINARY: u8 = 0x2;
pub const CLOSE: u8 = 0x8;
pub const PING: u8 = 0x9;
pub const PONG: u8 = 0xA;

/// How the payload length is written (RFC 6455 §5.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Length {
    /// The shortest form, as the RFC requires: 7 bits, else 16, else 64.
    Minimal,
    Bits16,
    Bits64,
}

/// One frame exactly as it goes on the wire.
#[derive(Clone, Debug)]
pub struct FrameSpec {
    pub fin: bool,
    /// RSV1..RSV3 as the three low bits.
    pub rsv: u8,
    pub opcode: u8,
    /// Clients must mask (§5.3); `None` sends an unmasked frame.
    pub mask: Option<[u8; 4]>,
    pub length: Length,
    pub payload: Vec<u8>,
}

impl FrameSpec {
    /// A final, masked frame with a minimal length.
    pub fn new(opcode: u8, payload: impl Into<Vec<u8>>) -> Self {
        FrameSpec {
            fin: true,
            rsv: 0,
            opcode,
            mask: Some(rand::random()),
            length: Length::Minimal,
            payload: payload.into(),
        }
    }

    pub fn fin(mut self, fin: bool) -> Self {
        self.fin = fin;
        self
    }

    pub fn rsv(mut self, rsv: u8) -> Self {
        self.rsv = rsv;
        self
    }

    pub fn unmasked(mut self) -> Self {
        self.mask = None;
        self
    }

    pub fn length(mut self, length: Length) -> Self {
        self.length = length;
        self
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.payload.len() + 14);
        out.push(u8::from(self.fin) << 7 | (self.rsv & 0x7) << 4 | (self.opcode & 0xF));
        let mask_bit = if self.mask.is_some() { 0x80 } else { 0 };
        let len = self.payload.len();
        let length = match self.length {
            Length::Minimal if len < 126 => Length::Minimal,
            Length::Minimal if len <= 0xFFFF => Length::Bits16,
            Length::Minimal => Length::Bits64,
            other => other,
        };
        match length {
            Length::Minimal => out.push(mask_bit | len as u8),
            Length::Bits16 => {
                out.push(mask_bit | 126);
                out.extend_from_slice(&(len as u16).to_be_bytes());
            }
            Length::Bits64 => {
                out.push(mask_bit | 127);
                out.extend_from_slice(&(len as u64).to_be_bytes());
            }
        }
        match self.mask {
            Some(key) => {
                out.extend_from_slice(&key);
                out.extend(self.payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
            }
            None => out.extend_from_slice(&self.payload),
        }
        out
    }
}

/// A frame the server sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    pub fin: bool,
    pub rsv: u8,
    pub opcode: u8,
    pub payload: Vec<u8>,
}

impl Frame {
    /// The close code and reason of a close frame (`None` for an empty one).
    pub fn close(&self) -> Option<(u16, String)> {
        (self.payload.len() >= 2).then(|| {
            (u16::from_be_bytes([self.payload[0], self.payload[1]]), String::from_utf8_lossy(&self.payload[2..]).into())
        })
    }
}

pub struct RawClient {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl RawClient {
    /// Connects to `/production` with the JSON framing (`dynamowave.v1`), so every answer is a
    /// JSON event the test can recognise.
    pub async fn connect(addr: SocketAddr) -> RawClient {
        Self::connect_to(addr, "/production", Some(SUBPROTOCOL)).await
    }

    pub async fn connect_to(addr: SocketAddr, path: &str, subprotocol: Option<&str>) -> RawClient {
        let mut stream = TcpStream::connect(addr).await.expect("tcp connect");
        let key = base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 16]>());
        let protocol = subprotocol.map(|p| format!("Sec-WebSocket-Protocol: {p}\r\n")).unwrap_or_default();
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{protocol}\r\n"
        );
        stream.write_all(request.as_bytes()).await.expect("write upgrade");
        let mut buf = Vec::new();
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 1024];
            let n =
                tokio::time::timeout(TIMEOUT, stream.read(&mut chunk)).await.expect("upgrade answer").expect("read");
            assert!(n > 0, "connection closed during the upgrade");
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
        assert!(head.starts_with("http/1.1 101"), "upgrade refused: {head}");
        let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes()).to_ascii_lowercase();
        assert!(head.contains(&format!("sec-websocket-accept: {accept}")), "bad Sec-WebSocket-Accept: {head}");
        if let Some(p) = subprotocol {
            assert!(head.contains(&format!("sec-websocket-protocol: {p}")), "subprotocol not agreed: {head}");
        }
        buf.drain(..head_end);
        RawClient { stream, buf }
    }

    /// Writes a frame; errors are ignored (the server may already have closed: what it sent
    /// before is what the test checks).
    pub async fn send(&mut self, frame: FrameSpec) {
        let _ = self.stream.write_all(&frame.encode()).await;
    }

    pub async fn send_text(&mut self, text: &str) {
        self.send(FrameSpec::new(TEXT, text.as_bytes())).await;
    }

    /// Raw bytes, for what [`FrameSpec`] cannot express.
    pub async fn send_bytes(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes).await;
    }

    /// The next frame, or `None` at the end of the stream (or a reset).
    pub async fn read_frame(&mut self) -> Option<Frame> {
        loop {
            if let Some((frame, used)) = parse_frame(&self.buf) {
                self.buf.drain(..used);
                return Some(frame);
            }
            let mut chunk = vec![0u8; 64 * 1024];
            let n = match tokio::time::timeout(TIMEOUT, self.stream.read(&mut chunk)).await {
                Ok(Ok(n)) => n,
                Ok(Err(_)) => 0,
                Err(_) => panic!("timed out waiting for a frame from the server"),
            };
            if n == 0 {
                assert!(self.buf.is_empty(), "the stream ended inside a frame: {:?}", self.buf);
                return None;
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Waits for the server's close frame (skipping data, pings, pongs) and returns it. Panics
    /// if the connection ends without one.
    pub async fn expect_close(&mut self) -> Option<(u16, String)> {
        loop {
            match self.read_frame().await {
                Some(f) if f.opcode == CLOSE => return f.close(),
                Some(_) => continue,
                None => panic!("the connection ended without a close frame"),
            }
        }
    }

    /// The close code the server fails the connection with.
    pub async fn expect_close_code(&mut self) -> u16 {
        self.expect_close().await.map(|(code, _)| code).unwrap_or_else(|| panic!("empty close frame"))
    }

    /// The next text frame as JSON (pings and pongs skipped).
    pub async fn expect_json(&mut self) -> serde_json::Value {
        loop {
            let frame = self.read_frame().await.expect("a frame, not the end of the stream");
            match frame.opcode {
                TEXT => {
                    assert!(frame.fin, "the gateway sends whole messages");
                    return serde_json::from_slice(&frame.payload).expect("a JSON event");
                }
                PING | PONG => continue,
                CLOSE => panic!("closed: {:?}", frame.close()),
                other => panic!("unexpected opcode {other}"),
            }
        }
    }

    /// The next event of type `kind`, skipping others (presence and the like).
    pub async fn expect_event(&mut self, kind: &str) -> serde_json::Value {
        loop {
            let v = self.expect_json().await;
            if v["type"] == kind {
                return v;
            }
        }
    }

    /// After the server's close frame: the TCP connection ends (RFC 6455 §7.1.1: the server
    /// closes the TCP connection first).
    pub async fn expect_end(&mut self) {
        loop {
            match self.read_frame().await {
                None => return,
                Some(f) => assert_ne!(f.opcode, TEXT, "data after close: {f:?}"),
            }
        }
    }
}

/// One server frame from the front of `buf`, and how many bytes it used.
fn parse_frame(buf: &[u8]) -> Option<(Frame, usize)> {
    if buf.len() < 2 {
        return None;
    }
    assert_eq!(buf[1] & 0x80, 0, "a server must not mask its frames (RFC 6455 §5.1)");
    let (len, mut at) = match buf[1] & 0x7F {
        126 => (u16::from_be_bytes(buf.get(2..4)?.try_into().ok()?) as usize, 4),
        127 => (u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?) as usize, 10),
        n => (n as usize, 2),
    };
    let payload = buf.get(at..at + len)?.to_vec();
    at += len;
    Some((Frame { fin: buf[0] & 0x80 != 0, rsv: (buf[0] >> 4) & 0x7, opcode: buf[0] & 0xF, payload }, at))
}

/// The server still works for a new client: a `ping` action gets its `pong` event, and a
/// message goes out and comes back.
pub async fn assert_still_serving(addr: SocketAddr) {
    let mut c = RawClient::connect(addr).await;
    c.send_text(r#"{"action":"ping"}"#).await;
    c.expect_event("pong").await;
    c.send_text(r#"{"action":"sendmessage","message":"still serving"}"#).await;
    assert_eq!(c.expect_event("message").await["text"], "still serving");
    c.send(FrameSpec::new(CLOSE, 1000u16.to_be_bytes())).await;
    assert_eq!(c.expect_close_code().await, 1000);
}
