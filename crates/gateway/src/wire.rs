//! WebSocket framing (RFC 6455 §5) for the gateway's own connection loop.
//!
//! Why not `tungstenite::WebSocket`: it owns the socket and a read buffer and a write buffer per
//! connection, and every frame to send goes through the owning task. A chat fan-out sends the
//! *same* bytes to every member of a room, and a server frame is unmasked, so the frame can be
//! encoded once per broadcast and written straight to each socket by the broadcasting task; and an
//! idle connection should hold no buffer at all. So the connection loop reads into a buffer that
//! exists only while bytes are pending, and uses tungstenite for what it does well here: parsing a
//! frame header ([`FrameHeader::parse`]), the opcode table and the close-code rules
//! ([`CloseCode::is_allowed`]). The rules this module enforces are listed on [`Violation`];
//! `tests/conformance.rs` checks each one against raw frames.

use std::io::Cursor;

use bytes::{BufMut, Bytes, BytesMut};

use crate::close_code;
use tokio_tungstenite::tungstenite::protocol::frame::FrameHeader;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Control, Data, OpCode};

/// Opcodes of the frames the server sends.
pub(crate) mod opcode {
    pub const TEXT: u8 = 0x1;
    pub const BINARY: u8 = 0x2;
    pub const CLOSE: u8 = 0x8;
    pub const PONG: u8 = 0xA;
}

/// One complete, unmasked server frame carrying `payload`: encoded once, then shared by every
/// recipient (cloning [`Bytes`] is a reference-count increment).
pub(crate) fn encode(opcode: u8, payload: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(payload.len() + 10);
    out.put_u8(0x80 | opcode);
    match payload.len() {
        n if n < 126 => out.put_u8(n as u8),
        n if n <= usize::from(u16::MAX) => {
            out.put_u8(126);
            out.put_u16(n as u16);
        }
        n => {
            out.put_u8(127);
            out.put_u64(n as u64);
        }
    }
    out.extend_from_slice(payload);
    out.freeze()
}

/// A text frame if `payload` is UTF-8 (every chat event is), else a binary one.
pub(crate) fn encode_data(payload: &[u8]) -> Bytes {
    let op = if std::str::from_utf8(payload).is_ok() { opcode::TEXT } else { opcode::BINARY };
    encode(op, payload)
}

/// A close frame; the reason is cut to 123 bytes (a control payload is at most 125, §5.5).
pub(crate) fn close_frame(code: u16, reason: &str) -> Bytes {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut payload = Vec::with_capacity(2 + end);
    payload.extend_from_slice(&code.to_be_bytes());
    payload.extend_from_slice(&reason.as_bytes()[..end]);
    encode(opcode::CLOSE, &payload)
}

/// What a client sent, once a frame or a fragmented message is complete.
#[derive(Debug, PartialEq)]
pub(crate) enum Incoming {
    Text(String),
    Ping(Vec<u8>),
    Pong,
    /// The code and reason, if the close frame had any.
    Close(Option<(u16, String)>),
}

/// A frame that breaks the protocol or a limit: the connection is closed with [`Violation::code`].
#[derive(Debug, PartialEq)]
pub(crate) enum Violation {
    /// 1002: unmasked client frame, reserved bits or opcodes, fragmented or oversized control
    /// frame, a continuation with no message, a new message inside a fragmented one, a malformed
    /// close payload or a close code a client may not send.
    Protocol(&'static str),
    /// 1009: a frame over the frame limit or a message over the message limit.
    TooBig,
    /// 1007: a text message or close reason that is not UTF-8.
    InvalidUtf8,
    /// 1003: binary messages (API Gateway's chat routes take text).
    Binary,
}

impl Violation {
    pub fn code(&self) -> u16 {
        match self {
            Violation::Protocol(_) => close_code::PROTOCOL_ERROR,
            Violation::TooBig => close_code::MESSAGE_TOO_BIG,
            Violation::InvalidUtf8 => close_code::INVALID_PAYLOAD,
            Violation::Binary => close_code::UNSUPPORTED_DATA,
        }
    }

    pub fn reason(&self) -> String {
        match self {
            Violation::Protocol(why) => format!("Protocol error: {why}"),
            Violation::TooBig => "Message too big".into(),
            Violation::InvalidUtf8 => "Invalid UTF-8 in text frame".into(),
            Violation::Binary => "Binary frames are not supported".into(),
        }
    }
}

/// Turns the bytes a client sends into [`Incoming`]s.
///
/// Memory: the buffers exist only while bytes are pending or a fragmented message is being
/// assembled ([`FrameReader::release_if_idle`] drops them); an idle connection's reader is three
/// words and owns no heap memory.
pub(crate) struct FrameReader {
    pending: Option<Box<Pending>>,
    max_frame: usize,
    max_message: usize,
}

impl FrameReader {
    pub fn new(max_frame: usize, max_message: usize, already_read: &[u8]) -> Self {
        let mut reader = Self { pending: None, max_frame, max_message };
        if !already_read.is_empty() {
            reader.buffer(already_read.len()).extend_from_slice(already_read);
        }
        reader
    }

    /// The buffer to read into: consumed bytes are dropped first, and `chunk` bytes reserved.
    pub fn buffer(&mut self, chunk: usize) -> &mut Vec<u8> {
        let (max_frame, max_message) = (self.max_frame, self.max_message);
        self.pending.get_or_insert_with(|| Box::new(Pending::new(max_frame, max_message))).buffer(chunk)
    }

    /// Frees what is no longer needed (called when the socket has no more to read): everything
    /// if no bytes and no fragmented message are pending, else the consumed read buffer.
    pub fn release_if_idle(&mut self) {
        match &mut self.pending {
            Some(p) if p.is_idle() => self.pending = None,
            Some(p) => p.release_if_idle(),
            None => {}
        }
    }

    /// The next complete [`Incoming`], `Ok(None)` if more bytes are needed.
    pub fn next(&mut self) -> Result<Option<Incoming>, Violation> {
        match &mut self.pending {
            Some(p) => p.next(),
            None => Ok(None),
        }
    }
}

/// A reader's state while bytes or a fragmented message are pending.
struct Pending {
    buf: Vec<u8>,
    /// How much of `buf` has been consumed.
    pos: usize,
    message: Vec<u8>,
    fragmented: bool,
    max_frame: usize,
    max_message: usize,
}

impl Pending {
    fn new(max_frame: usize, max_message: usize) -> Self {
        Self { buf: Vec::new(), pos: 0, message: Vec::new(), fragmented: false, max_frame, max_message }
    }

    fn is_idle(&self) -> bool {
        self.pos >= self.buf.len() && !self.fragmented
    }

    /// The buffer to read into: consumed bytes are dropped first, and `chunk` bytes reserved.
    fn buffer(&mut self, chunk: usize) -> &mut Vec<u8> {
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.reserve(chunk);
        &mut self.buf
    }

    /// Frees the read buffer if nothing is pending in it.
    fn release_if_idle(&mut self) {
        if self.pos >= self.buf.len() {
            self.buf = Vec::new();
            self.pos = 0;
        }
    }

    fn next(&mut self) -> Result<Option<Incoming>, Violation> {
        loop {
            let mut cursor = Cursor::new(&self.buf[self.pos..]);
            let (header, length) = match FrameHeader::parse(&mut cursor) {
                Ok(Some(parsed)) => parsed,
                Ok(None) => return Ok(None),
                Err(_) => return Err(Violation::Protocol("reserved opcode")),
            };
            let head = cursor.position() as usize;
            let control = matches!(header.opcode, OpCode::Control(_));
            if control && length > 125 {
                return Err(Violation::Protocol("control frame payload over 125 bytes"));
            }
            if length > self.max_frame as u64 {
                return Err(Violation::TooBig);
            }
            let start = self.pos + head;
            let end = start + length as usize;
            if self.buf.len() < end {
                return Ok(None);
            }
            let Some(mask) = header.mask else { return Err(Violation::Protocol("client frames must be masked")) };
            if header.rsv1 || header.rsv2 || header.rsv3 {
                return Err(Violation::Protocol("reserved bits set without an extension"));
            }
            if control && !header.is_final {
                return Err(Violation::Protocol("fragmented control frame"));
            }
            unmask(&mut self.buf[start..end], mask);
            self.pos = end;
            let payload = &self.buf[start..end];
            match header.opcode {
                OpCode::Data(Data::Text) | OpCode::Data(Data::Binary) if self.fragmented => {
                    return Err(Violation::Protocol("a new message began inside a fragmented one"));
                }
                OpCode::Data(Data::Binary) => return Err(Violation::Binary),
                OpCode::Data(Data::Text) if header.is_final => return text(payload.to_vec()).map(Some),
                OpCode::Data(Data::Text) => {
                    self.fragmented = true;
                    self.append(start, end)?;
                }
                OpCode::Data(Data::Continue) => {
                    if !self.fragmented {
                        return Err(Violation::Protocol("continuation frame with no message to continue"));
                    }
                    self.append(start, end)?;
                    if header.is_final {
                        self.fragmented = false;
                        return text(std::mem::take(&mut self.message)).map(Some);
                    }
                }
                OpCode::Control(Control::Ping) => return Ok(Some(Incoming::Ping(payload.to_vec()))),
                OpCode::Control(Control::Pong) => return Ok(Some(Incoming::Pong)),
                OpCode::Control(Control::Close) => return close_payload(payload).map(Some),
                OpCode::Data(Data::Reserved(_)) | OpCode::Control(Control::Reserved(_)) => {
                    return Err(Violation::Protocol("reserved opcode"));
                }
            }
        }
    }

    fn append(&mut self, start: usize, end: usize) -> Result<(), Violation> {
        if self.message.len() + (end - start) > self.max_message {
            return Err(Violation::TooBig);
        }
        self.message.extend_from_slice(&self.buf[start..end]);
        Ok(())
    }
}

fn text(bytes: Vec<u8>) -> Result<Incoming, Violation> {
    String::from_utf8(bytes).map(Incoming::Text).map_err(|_| Violation::InvalidUtf8)
}

fn close_payload(payload: &[u8]) -> Result<Incoming, Violation> {
    match payload {
        [] => Ok(Incoming::Close(None)),
        [_] => Err(Violation::Protocol("close frame with a one-byte payload")),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            if !CloseCode::from(code).is_allowed() {
                return Err(Violation::Protocol("close code a client may not send"));
            }
            let reason = std::str::from_utf8(reason).map_err(|_| Violation::InvalidUtf8)?;
            Ok(Incoming::Close(Some((code, reason.to_string()))))
        }
    }
}

/// Client-to-server masking (§5.3): XOR with the 4-byte key, a word at a time.
fn unmask(data: &mut [u8], mask: [u8; 4]) {
    let word = u32::from_ne_bytes(mask);
    let mut chunks = data.chunks_exact_mut(4);
    for chunk in &mut chunks {
        let v = u32::from_ne_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]) ^ word;
        chunk.copy_from_slice(&v.to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= mask[i];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client_frame(first: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [0x12, 0x34, 0x56, 0x78];
        let mut out = vec![first];
        match payload.len() {
            n if n < 126 => out.push(0x80 | n as u8),
            n if n <= 0xFFFF => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    fn reader(bytes: &[u8]) -> FrameReader {
        FrameReader::new(32 * 1024, 128 * 1024, bytes)
    }

    #[test]
    fn a_text_frame_split_anywhere_decodes_once_complete() {
        let frame = client_frame(0x81, "héllo, everyone".as_bytes());
        for split in 0..frame.len() {
            let mut r = reader(&frame[..split]);
            assert_eq!(r.next(), Ok(None), "split at {split}");
            r.buffer(64).extend_from_slice(&frame[split..]);
            assert_eq!(r.next(), Ok(Some(Incoming::Text("héllo, everyone".into()))));
            assert_eq!(r.next(), Ok(None));
        }
    }

    #[test]
    fn fragments_with_a_ping_between_them_make_one_message() {
        let mut bytes = client_frame(0x01, b"hel");
        bytes.extend(client_frame(0x89, b"p"));
        bytes.extend(client_frame(0x00, b"lo "));
        bytes.extend(client_frame(0x80, b"there"));
        let mut r = reader(&bytes);
        assert_eq!(r.next(), Ok(Some(Incoming::Ping(b"p".to_vec()))));
        assert_eq!(r.next(), Ok(Some(Incoming::Text("hello there".into()))));
        assert_eq!(r.next(), Ok(None));
    }

    #[test]
    fn long_lengths_decode() {
        let big = "x".repeat(70_000);
        let mut r = FrameReader::new(128 * 1024, 128 * 1024, &client_frame(0x81, big.as_bytes()));
        assert_eq!(r.next(), Ok(Some(Incoming::Text(big))));
        let mid = "y".repeat(300);
        let mut r = reader(&client_frame(0x81, mid.as_bytes()));
        assert_eq!(r.next(), Ok(Some(Incoming::Text(mid))));
    }

    #[test]
    fn violations_have_their_close_codes() {
        let cases: Vec<(Vec<u8>, u16)> = vec![
            ({ [0x81u8, 0x02, b'h', b'i'].to_vec() }, 1002),        // unmasked
            (client_frame(0xC1, b"hi"), 1002),                      // RSV1
            (client_frame(0x83, b"hi"), 1002),                      // reserved data opcode
            (client_frame(0x8B, b""), 1002),                        // reserved control opcode
            (client_frame(0x09, b"p"), 1002),                       // fragmented ping
            (client_frame(0x89, &[b'p'; 126]), 1002),               // ping over 125
            (client_frame(0x80, b"x"), 1002),                       // continuation with no message
            (client_frame(0x88, &[0x03]), 1002),                    // one-byte close payload
            (client_frame(0x88, &[0x03, 0xED]), 1002),              // close code 1005
            (client_frame(0x88, &[0x03, 0xE8, 0xFF]), 1007),        // close reason not UTF-8
            (client_frame(0x81, &[0xC3, 0x28]), 1007),              // text not UTF-8
            (client_frame(0x82, b"bin"), 1003),                     // binary
            (client_frame(0x81, &vec![b'a'; 32 * 1024 + 1]), 1009), // frame over the limit
        ];
        for (i, (bytes, code)) in cases.into_iter().enumerate() {
            let got = reader(&bytes).next().expect_err(&format!("case {i} must fail"));
            assert_eq!(got.code(), code, "case {i}: {got:?}");
        }
        let mut nested = client_frame(0x01, b"a");
        nested.extend(client_frame(0x81, b"b"));
        let mut r = reader(&nested);
        assert_eq!(r.next().map_err(|v| v.code()), Err(1002));
    }

    #[test]
    fn a_message_over_the_limit_fails_even_in_small_fragments() {
        let mut r = FrameReader::new(1024, 2048, &[]);
        r.buffer(16).extend(client_frame(0x01, &[b'a'; 1000]));
        r.buffer(16).extend(client_frame(0x00, &[b'a'; 1000]));
        r.buffer(16).extend(client_frame(0x80, &[b'a'; 100]));
        assert_eq!(r.next(), Err(Violation::TooBig));
    }

    #[test]
    fn close_frames_decode_with_and_without_a_code() {
        assert_eq!(reader(&client_frame(0x88, b"")).next(), Ok(Some(Incoming::Close(None))));
        let mut payload = 4000u16.to_be_bytes().to_vec();
        payload.extend_from_slice(b"bye");
        assert_eq!(reader(&client_frame(0x88, &payload)).next(), Ok(Some(Incoming::Close(Some((4000, "bye".into()))))));
    }

    #[test]
    fn server_frames_are_unmasked_with_the_shortest_length() {
        assert_eq!(&encode(opcode::TEXT, b"hi")[..], &[0x81, 2, b'h', b'i']);
        let f = encode(opcode::TEXT, &[b'a'; 300]);
        assert_eq!(&f[..4], &[0x81, 126, 1, 44]);
        let f = encode(opcode::TEXT, &vec![b'a'; 70_000]);
        assert_eq!(&f[..2], &[0x81, 127]);
        assert_eq!(f.len(), 70_010);
        let c = close_frame(1001, &"é".repeat(100));
        assert_eq!(c[0], 0x88);
        assert!(c.len() <= 127, "close payload at most 125 bytes");
        assert!(std::str::from_utf8(&c[4..]).is_ok(), "the reason is cut on a character boundary");
        assert_eq!(encode_data(&[0xFF])[0], 0x82);
    }

    #[test]
    fn released_buffers_hold_no_memory_when_idle() {
        let mut r = reader(&client_frame(0x81, b"hi"));
        assert!(r.next().unwrap().is_some());
        r.release_if_idle();
        assert!(r.pending.is_none(), "nothing pending: no buffer");
        let mut r = reader(&client_frame(0x01, b"frag"));
        assert_eq!(r.next(), Ok(None));
        r.release_if_idle();
        assert!(r.pending.is_some(), "a fragmented message is kept");
        r.buffer(16).extend(client_frame(0x80, b"ment"));
        assert_eq!(r.next(), Ok(Some(Incoming::Text("fragment".into()))));
    }
}
