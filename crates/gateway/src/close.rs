//! The close handshake: why a connection ends ([`Ending`]: the code and reason for
//! `$disconnect`, and the close frame to send), and [`close_socket`], which sends it and closes
//! TCP as RFC 6455 §7.1.1 asks.

use bytes::Bytes;

use crate::close_code;
use crate::registry::{Flushed, LiveConnection};
use crate::wire;

/// Why the connection ends: the close code and reason for `$disconnect`, and the close frame
/// to send (none when the socket is dead).
pub(crate) struct Ending {
    pub code: u16,
    pub reason: String,
    pub frame: Option<Bytes>,
    /// The client sent its close frame first: once the echo is written, it has nothing more to
    /// send, so the socket is closed without waiting for its FIN.
    pub by_client: bool,
}

impl Ending {
    /// The server closes: its close frame carries the code and reason.
    pub fn server(code: u16, reason: impl Into<String>) -> Self {
        let reason = reason.into();
        Self { code, frame: Some(wire::close_frame(code, &reason)), reason, by_client: false }
    }

    /// The socket failed or closed without a close frame: nothing can be sent.
    pub fn abnormal(detail: impl std::fmt::Display) -> Self {
        Self {
            code: close_code::ABNORMAL,
            reason: format!("Connection closed abnormally{detail}"),
            frame: None,
            by_client: false,
        }
    }

    /// The client closed: the reply echoes its code (RFC 6455 §5.5.1).
    pub fn client(frame: Option<(u16, String)>) -> Self {
        match frame {
            Some((code, reason)) => Self {
                code,
                reason,
                frame: Some(wire::encode(wire::opcode::CLOSE, &code.to_be_bytes())),
                by_client: true,
            },
            None => Self {
                code: close_code::NO_STATUS,
                reason: "Client-side close frame status not set".into(),
                frame: Some(wire::encode(wire::opcode::CLOSE, &[])),
                by_client: true,
            },
        }
    }
}

/// Sends what is queued and the close frame (up to 5 s), then closes TCP from the server's side
/// first (RFC 6455 §7.1.1). When the server started the close, it then reads until the client
/// closes too (up to 2 s), so that bytes the client still sends do not turn the close into a
/// reset that could destroy the close frame.
pub(crate) async fn close_socket(live: &LiveConnection, last: Option<Bytes>, by_client: bool) {
    let alive = last.is_some();
    live.seal(last);
    let Some(stream) = live.stream() else { return };
    if !alive {
        return;
    }
    let flushed = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        loop {
            match live.flush() {
                Ok(Flushed::Done) => return true,
                Ok(Flushed::Blocked) => {
                    if stream.writable().await.is_err() {
                        return false;
                    }
                }
                Err(_) => return false,
            }
        }
    })
    .await;
    if !matches!(flushed, Ok(true)) {
        return;
    }
    if by_client {
        // After a client's close frame nothing more is due from it, so its FIN need not be
        // awaited: the socket closes when the connection is dropped (the server closes the TCP
        // connection first, RFC 6455 §7.1.1), which spares a wake-up and two system calls per
        // connection under churn. Bytes it sent after its close frame are discarded first (one
        // non-blocking read, past tokio's cached readiness): closing with unread bytes would
        // send a reset, which can destroy the close reply before the client reads it.
        let mut scratch = [std::mem::MaybeUninit::<u8>::uninit(); 512];
        let socket = socket2::SockRef::from(stream);
        while matches!(socket.recv(&mut scratch), Ok(n) if n > 0) {}
        return;
    }
    let _ = socket2::SockRef::from(stream).shutdown(std::net::Shutdown::Write);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), async {
        let mut scratch = vec![0u8; 512];
        loop {
            if stream.readable().await.is_err() {
                return;
            }
            match stream.try_read(&mut scratch) {
                Ok(0) => return,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => return,
            }
        }
    })
    .await;
}
