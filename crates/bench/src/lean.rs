//! The load connections' WebSocket client: the opening handshake and RFC 6455 framing over a
//! plain `TcpStream`, reading straight into one reusable buffer.
//!
//! Why not tokio-tungstenite here: the generator has one core to read up to ~1.6 million
//! deliveries/s, and in the highest-rate scenario it was the bottleneck (85–97 % of its core).
//! A profile showed a fifth of that in the stream adapter around each frame (waker registration
//! and wake-ups, zero-filling the read buffer before every read, one `Message` per frame). Here a
//! read takes whatever the socket holds (often a dozen frames), and every complete frame in it
//! is handed over as a `&str` slice of the buffer, with nothing allocated per frame.
//!
//! What a client must do is all here: frames it sends are masked (§5.3), a ping is answered with
//! a pong (§5.5.2), fragmented messages are reassembled (§5.4), and a frame the server must not
//! send (masked, reserved bits, unknown opcode, invalid UTF-8) is an error. Churn mode keeps
//! tokio-tungstenite: there the handshake and the close are what is measured.

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::handshake::client::generate_key;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

/// Largest HTTP response head accepted in the handshake.
const MAX_HEAD: usize = 16 * 1024;
/// Largest message accepted (both servers' frames here are a few hundred bytes).
const MAX_MESSAGE: usize = 16 * 1024 * 1024;
/// Free space made in the read buffer before each read.
const READ_CHUNK: usize = 16 * 1024;

/// A frame or message the server sent that a client must reject.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("the server masked a frame")]
    Masked,
    #[error("reserved bits set")]
    Reserved,
    #[error("unknown opcode {0}")]
    Opcode(u8),
    #[error("a control frame is fragmented or longer than 125 bytes")]
    Control,
    #[error("continuation without a message to continue, or a new message inside one")]
    Fragments,
    #[error("message of {0} bytes is over the limit")]
    TooBig(u64),
    #[error("text that is not UTF-8")]
    Utf8,
}

/// What a read brought.
#[derive(Debug, PartialEq, Eq)]
pub enum Drained {
    /// Every complete frame was handed over; the connection stays open.
    Open,
    /// The server sent a close frame.
    Closed,
}

/// One client connection after the opening handshake.
pub struct LeanWs {
    stream: TcpStream,
    /// Bytes read and not yet parsed (a frame's head may be in it without its payload).
    inbox: BytesMut,
    /// A fragmented message being reassembled.
    partial: Option<Partial>,
    /// Pong frames owed to the server, written after the current read is handled.
    pongs: Vec<u8>,
    /// Masks for the frames we send (xorshift: the mask has to vary, not to be secret, RFC 6455
    /// §10.3 is about browsers running untrusted scripts).
    mask_state: u32,
}

/// A message that arrived in fragments, so far.
struct Partial {
    text: bool,
    bytes: Vec<u8>,
}

/// The upgrade request for `path` on `host` with `key`, asking for `subprotocol`.
fn request(host: &str, path: &str, key: &str, subprotocol: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: {subprotocol}\r\n\r\n"
    )
}

/// Why the handshake failed.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// The server answered with another status (429 when it sheds connections).
    #[error("HTTP {0}")]
    Status(u16),
    #[error("bad response: {0}")]
    Bad(String),
    #[error("the server did not accept subprotocol {0}")]
    Subprotocol(String),
}

impl LeanWs {
    /// Upgrades `stream` (already connected) to a WebSocket with `subprotocol`.
    pub async fn handshake(
        mut stream: TcpStream,
        host: &str,
        path: &str,
        subprotocol: &str,
    ) -> Result<Self, HandshakeError> {
        let key = generate_key();
        stream.write_all(request(host, path, &key, subprotocol).as_bytes()).await?;
        let mut inbox = BytesMut::with_capacity(4096);
        let head_len = loop {
            if stream.read_buf(&mut inbox).await? == 0 {
                return Err(HandshakeError::Bad("closed during the handshake".into()));
            }
            if let Some(end) = inbox.windows(4).position(|w| w == b"\r\n\r\n") {
                break end + 4;
            }
            if inbox.len() > MAX_HEAD {
                return Err(HandshakeError::Bad("response head too long".into()));
            }
        };
        check_response(&inbox[..head_len], &key, subprotocol)?;
        // Whatever followed the head is frames already.
        inbox.advance(head_len);
        let mask_state = u32::from_le_bytes(key.as_bytes()[..4].try_into().unwrap_or([1; 4])) | 1;
        Ok(Self { stream, inbox, partial: None, pongs: Vec::new(), mask_state })
    }

    /// Sends one text message as a single masked frame.
    pub async fn send_text(&mut self, text: &str) -> std::io::Result<()> {
        let frame = encode_masked(0x1, text.as_bytes(), next_mask(&mut self.mask_state));
        self.stream.write_all(&frame).await
    }

    /// Reads what the socket holds; `false` at end of stream. Cancel-safe: nothing read is lost
    /// if the future is dropped.
    pub async fn fill(&mut self) -> std::io::Result<bool> {
        self.inbox.reserve(READ_CHUNK);
        Ok(self.stream.read_buf(&mut self.inbox).await? > 0)
    }

    /// Hands every complete text message in the buffer to `on_text`, and queues a pong for
    /// each ping. `on_text` answers whether to go on: the rest stays buffered for the next
    /// `drain` when it says no. Call [`LeanWs::flush_pongs`] after.
    pub fn drain(&mut self, mut on_text: impl FnMut(&str) -> bool) -> Result<Drained, FrameError> {
        let mut more = true;
        while more {
            let Some(head) = parse_head(&self.inbox)? else { return Ok(Drained::Open) };
            let end = head.len + head.payload;
            let body = &self.inbox[head.len..end];
            match head.opcode {
                0x1 | 0x2 if self.partial.is_some() => return Err(FrameError::Fragments),
                0x1 if head.fin => more = on_text(std::str::from_utf8(body).map_err(|_| FrameError::Utf8)?),
                0x1 | 0x2 if !head.fin => {
                    self.partial = Some(Partial { text: head.opcode == 0x1, bytes: body.to_vec() })
                }
                0x0 => {
                    let Some(partial) = self.partial.as_mut() else { return Err(FrameError::Fragments) };
                    let size = partial.bytes.len() + body.len();
                    if size > MAX_MESSAGE {
                        return Err(FrameError::TooBig(size as u64));
                    }
                    partial.bytes.extend_from_slice(body);
                    if head.fin
                        && let Some(whole) = self.partial.take()
                        && whole.text
                    {
                        more = on_text(std::str::from_utf8(&whole.bytes).map_err(|_| FrameError::Utf8)?);
                    }
                }
                0x8 => return Ok(Drained::Closed),
                0x9 => self.pongs.extend_from_slice(&encode_masked(0xA, body, next_mask(&mut self.mask_state))),
                // A pong, or a whole binary message: neither server sends one, nothing to count.
                _ => {}
            }
            self.inbox.advance(end);
        }
        Ok(Drained::Open)
    }

    /// Drops the connection without a close frame, resetting TCP (`SO_LINGER` 0): to the server
    /// it looks like the network went away, not like a client leaving.
    pub fn abort(self) {
        // Without the zero linger a plain close would do: the server still sees no close frame.
        let _ = self.stream.set_zero_linger();
    }

    /// Writes the pongs that [`LeanWs::drain`] queued.
    pub async fn flush_pongs(&mut self) -> std::io::Result<()> {
        if self.pongs.is_empty() {
            return Ok(());
        }
        let pongs = std::mem::take(&mut self.pongs);
        self.stream.write_all(&pongs).await
    }
}

/// The next frame mask (xorshift32; `state` must not be 0).
fn next_mask(state: &mut u32) -> [u8; 4] {
    let mut x = *state;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    *state = x;
    x.to_le_bytes()
}

/// Checks the 101 response: status, `Sec-WebSocket-Accept` for `key`, and the subprotocol.
fn check_response(head: &[u8], key: &str, subprotocol: &str) -> Result<(), HandshakeError> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    match response.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err(HandshakeError::Bad("incomplete head".into())),
        Err(e) => return Err(HandshakeError::Bad(e.to_string())),
    }
    let status = response.code.unwrap_or(0);
    if status != 101 {
        return Err(HandshakeError::Status(status));
    }
    let header = |name: &str| {
        response.headers.iter().find(|h| h.name.eq_ignore_ascii_case(name)).map(|h| String::from_utf8_lossy(h.value))
    };
    if header("Sec-WebSocket-Accept").as_deref() != Some(derive_accept_key(key.as_bytes()).as_str()) {
        return Err(HandshakeError::Bad("wrong Sec-WebSocket-Accept".into()));
    }
    if header("Sec-WebSocket-Protocol").as_deref() != Some(subprotocol) {
        return Err(HandshakeError::Subprotocol(subprotocol.to_owned()));
    }
    Ok(())
}

/// A frame head: its length, the payload's length, and what the payload is.
#[derive(Debug, PartialEq, Eq)]
struct Head {
    fin: bool,
    opcode: u8,
    len: usize,
    payload: usize,
}

/// The head of the first frame in `buf` if the whole frame is there; `None` if more bytes are
/// needed.
fn parse_head(buf: &[u8]) -> Result<Option<Head>, FrameError> {
    let [b0, b1, ..] = *buf else { return Ok(None) };
    let fin = b0 & 0x80 != 0;
    if b0 & 0x70 != 0 {
        return Err(FrameError::Reserved);
    }
    let opcode = b0 & 0x0F;
    if !matches!(opcode, 0x0..=0x2 | 0x8..=0xA) {
        return Err(FrameError::Opcode(opcode));
    }
    if b1 & 0x80 != 0 {
        return Err(FrameError::Masked);
    }
    let (len, payload) = match b1 & 0x7F {
        126 => match buf.get(2..4) {
            Some(b) => (4, u64::from(u16::from_be_bytes([b[0], b[1]]))),
            None => return Ok(None),
        },
        127 => match buf.get(2..10) {
            Some(b) => (10, u64::from_be_bytes(b.try_into().map_err(|_| FrameError::TooBig(u64::MAX))?)),
            None => return Ok(None),
        },
        n => (2, u64::from(n)),
    };
    if opcode >= 0x8 && (!fin || payload > 125) {
        return Err(FrameError::Control);
    }
    if payload > MAX_MESSAGE as u64 {
        return Err(FrameError::TooBig(payload));
    }
    let payload = payload as usize;
    if buf.len() < len + payload {
        return Ok(None);
    }
    Ok(Some(Head { fin, opcode, len, payload }))
}

/// A single masked frame (FIN set) with `opcode` and `payload`.
fn encode_masked(opcode: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(payload.len() + 14);
    frame.push(0x80 | opcode);
    match payload.len() {
        n @ 0..=125 => frame.push(0x80 | n as u8),
        n @ 126..=0xFFFF => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

#[cfg(test)]
mod tests {
    use super::*;
    use dynamowave_core::SUBPROTOCOL;

    fn server_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![if fin { 0x80 } else { 0 } | opcode];
        match payload.len() {
            n @ 0..=125 => f.push(n as u8),
            n @ 126..=0xFFFF => {
                f.push(126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                f.push(127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn heads_of_every_length_form_and_partial_frames() {
        for n in [0usize, 125, 126, 65_535, 65_536] {
            let f = server_frame(true, 0x1, &vec![b'a'; n]);
            let head = parse_head(&f).expect("valid").expect("complete");
            assert_eq!((head.payload, head.len + head.payload), (n, f.len()));
            // One byte short is "need more", not an error.
            assert_eq!(parse_head(&f[..f.len() - 1]), Ok(None));
        }
        assert_eq!(parse_head(&[0x81]), Ok(None));
    }

    #[test]
    fn frames_a_server_must_not_send_are_errors() {
        assert_eq!(parse_head(&[0x81, 0x80, 0, 0, 0, 0]), Err(FrameError::Masked));
        assert_eq!(parse_head(&[0xC1, 0x00]), Err(FrameError::Reserved));
        assert_eq!(parse_head(&[0x83, 0x00]), Err(FrameError::Opcode(3)));
        assert_eq!(parse_head(&[0x09, 0x00]), Err(FrameError::Control));
        assert_eq!(parse_head(&[0x89, 126, 0, 126]), Err(FrameError::Control));
    }

    #[test]
    fn masked_frames_decode_to_the_payload() {
        let payload = b"{\"action\":\"sendmessage\"}";
        let f = encode_masked(0x1, payload, [1, 2, 3, 4]);
        assert_eq!(f[0], 0x81);
        assert_eq!(f[1], 0x80 | payload.len() as u8);
        let unmasked: Vec<u8> = f[6..].iter().enumerate().map(|(i, b)| b ^ [1, 2, 3, 4][i % 4]).collect();
        assert_eq!(unmasked, payload);
        let long = encode_masked(0x1, &[0u8; 300], [9, 9, 9, 9]);
        assert_eq!((long[1], u16::from_be_bytes([long[2], long[3]])), (0x80 | 126, 300));
    }

    #[test]
    fn accepts_the_101_and_refuses_the_rest() {
        let key = "dGhlIHNhbXBsZSBub25jZQ==";
        let accept = derive_accept_key(key.as_bytes());
        let ok = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {accept}\r\nsec-websocket-protocol: dynamowave.v1\r\n\r\n"
        );
        assert!(check_response(ok.as_bytes(), key, SUBPROTOCOL).is_ok());
        assert!(matches!(check_response(ok.as_bytes(), key, "other"), Err(HandshakeError::Subprotocol(_))));
        assert!(matches!(
            check_response(ok.as_bytes(), "AAAAAAAAAAAAAAAAAAAAAA==", SUBPROTOCOL),
            Err(HandshakeError::Bad(_))
        ));
        let refused = b"HTTP/1.1 429 Too Many Requests\r\ncontent-length: 0\r\n\r\n";
        assert!(matches!(check_response(refused, key, SUBPROTOCOL), Err(HandshakeError::Status(429))));
    }

    /// A real loopback socket: the server side writes frames in awkward pieces.
    #[tokio::test]
    async fn reads_split_fragmented_and_control_frames_from_a_socket() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.expect("accept");
            let mut req = vec![0u8; 4096];
            let n = s.read(&mut req).await.expect("read request");
            let req = String::from_utf8_lossy(&req[..n]).to_string();
            let key = req.lines().find_map(|l| l.strip_prefix("Sec-WebSocket-Key: ")).expect("key").trim().to_owned();
            let accept = derive_accept_key(key.as_bytes());
            let mut out = format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Accept: {accept}\r\nSec-WebSocket-Protocol: dynamowave.v1\r\n\r\n"
            )
            .into_bytes();
            // A frame right behind the head, in the same write.
            out.extend(server_frame(true, 0x1, b"first"));
            s.write_all(&out).await.expect("head");
            let mut rest = server_frame(true, 0x1, &vec![b'x'; 70_000]);
            rest.extend(server_frame(false, 0x1, b"hel"));
            rest.extend(server_frame(true, 0x9, b"ping!"));
            rest.extend(server_frame(true, 0x0, b"lo"));
            rest.extend(server_frame(true, 0x8, &1000u16.to_be_bytes()));
            for piece in rest.chunks(777) {
                s.write_all(piece).await.expect("frames");
                s.flush().await.expect("flush");
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
            // The client's pong, unmasked, carries the ping's payload.
            let mut pong = [0u8; 11];
            s.read_exact(&mut pong).await.expect("pong");
            assert_eq!(pong[0], 0x8A);
            let mask = [pong[2], pong[3], pong[4], pong[5]];
            let body: Vec<u8> = pong[6..].iter().enumerate().map(|(i, b)| b ^ mask[i % 4]).collect();
            assert_eq!(body, b"ping!");
        });
        let stream = TcpStream::connect(addr).await.expect("connect");
        let mut ws = LeanWs::handshake(stream, "127.0.0.1", "/", SUBPROTOCOL).await.expect("handshake");
        let mut got: Vec<String> = Vec::new();
        let mut keep = |t: &str| {
            got.push(t.to_owned());
            true
        };
        let mut state = ws.drain(&mut keep).expect("drain");
        while state == Drained::Open {
            assert!(ws.fill().await.expect("read"), "closed before the close frame");
            state = ws.drain(&mut keep).expect("drain");
            ws.flush_pongs().await.expect("pong");
        }
        ws.flush_pongs().await.expect("pong");
        assert_eq!(got.len(), 3, "{:?}", got.iter().map(String::len).collect::<Vec<_>>());
        assert_eq!(got[0], "first");
        assert_eq!(got[1].len(), 70_000);
        assert_eq!(got[2], "hello");
        server.await.expect("server");
    }
}
