//! One connection's life after the upgrade, in one task: it takes the socket back from hyper,
//! reads and decodes the client's frames (`wire::FrameReader`), runs the integrations in order
//! (`invoke`), flushes what posts could not write at once, and closes (`close`), then runs
//! `$disconnect`. Posts to the connection write its socket directly (`registry`); the task is
//! woken only when the socket was full.

use std::sync::Arc;
use std::time::Duration;

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tracing::{Instrument, debug, info_span, warn};

use crate::close::{Ending, close_socket};
use crate::close_code;
use crate::invoke::{on_message, run_disconnect};
use crate::registry::LiveConnection;
use crate::state::GatewayState;
use crate::wire::{self, FrameReader, Incoming};

/// After the upgrade: takes the socket back from hyper (its HTTP buffers are freed), serves the
/// connection, and runs `$disconnect`.
pub(crate) async fn run(
    state: Arc<GatewayState>,
    on_upgrade: OnUpgrade,
    live: Arc<LiveConnection>,
    subprotocol: Option<Arc<str>>,
) {
    let ctx = &live.ctx;
    // Boxed, as the closing states below: the task then keeps room for the connection's loop
    // only, not also for the upgrade's state.
    let Some(reader) = Box::pin(take_socket(&state, on_upgrade, &live)).await else { return };
    // The `$connect` handler logs the connection (with its name); this is for tracing the gateway.
    debug!(connection_id = %ctx.connection_id, source_ip = %ctx.source_ip, subprotocol = subprotocol.as_deref(), "upgraded");
    let ending = serve(&state, &live, subprotocol.as_deref(), reader).await;
    let span = info_span!("connection", connection_id = %ctx.connection_id);
    debug!(parent: &span, code = ending.code, reason = %ending.reason, "closing");
    state.registry.remove(&ctx.connection_id);
    // Boxed: the closing and `$disconnect` states (the event alone is ~1 KiB) exist only at
    // the end, instead of enlarging every idle connection's task.
    Box::pin(close_socket(&live, ending.frame.clone(), ending.by_client)).await;
    Box::pin(run_disconnect(&state, ctx, ending.code, &ending.reason)).instrument(span).await;
}

/// Waits for hyper to hand the upgraded socket over and attaches it to the connection; `None` if
/// the upgrade failed (then `$disconnect` has run).
async fn take_socket(state: &Arc<GatewayState>, on_upgrade: OnUpgrade, live: &LiveConnection) -> Option<FrameReader> {
    let ctx = &live.ctx;
    let parts = match on_upgrade.await.map(|u| u.downcast::<TokioIo<TcpStream>>()) {
        Ok(Ok(parts)) => parts,
        failed => {
            let why = match failed {
                Err(e) => e.to_string(),
                _ => "not a TCP connection".to_string(),
            };
            let span = info_span!("connection", connection_id = %ctx.connection_id);
            warn!(parent: &span, error = %why, "upgrade failed after $connect");
            state.registry.remove(&ctx.connection_id);
            run_disconnect(state, ctx, close_code::ABNORMAL, "Upgrade failed").instrument(span).await;
            return None;
        }
    };
    let limits = &state.settings.limits;
    let reader = FrameReader::new(limits.max_frame_bytes, limits.max_message_bytes, &parts.read_buf);
    // `read_buf` is a view of hyper's 8 KiB read buffer: holding it (even empty) would keep
    // that buffer alive for the connection's whole life.
    drop(parts.read_buf);
    live.attach(parts.io.into_inner());
    Some(reader)
}

/// The connection's loop: frames in, queued frames out, until something ends it. The idle and
/// lifetime limits are the gateway's sweeper's (`sweeper`): it closes the connection
/// through `LiveConnection::close` like any other close request.
async fn serve(
    state: &Arc<GatewayState>,
    live: &Arc<LiveConnection>,
    subprotocol: Option<&str>,
    mut reader: FrameReader,
) -> Ending {
    let Some(stream) = live.stream() else { return Ending::abnormal(": no socket") };
    let limits = &state.settings.limits;
    let mut per_connection = state.throttles.per_connection();
    let mut want_write = false;
    // Bytes hyper read past the handshake are frames already.
    let mut pending_frames = true;
    loop {
        if pending_frames {
            pending_frames = false;
            loop {
                let incoming = match reader.next() {
                    Ok(Some(incoming)) => incoming,
                    Ok(None) => break,
                    Err(violation) => {
                        if violation.code() == close_code::MESSAGE_TOO_BIG {
                            metrics::counter!("dynamowave_rejected_total", "reason" => "too_big").increment(1);
                        }
                        if violation == wire::Violation::Binary {
                            metrics::counter!("dynamowave_rejected_total", "reason" => "binary").increment(1);
                        }
                        return Ending::server(violation.code(), violation.reason());
                    }
                };
                live.touch();
                match incoming {
                    Incoming::Text(text) => {
                        metrics::counter!("dynamowave_messages_in_total").increment(1);
                        // Boxed: the handler's state exists only while it runs, not in every
                        // idle connection's task.
                        let handling = Box::pin(on_message(state, live, subprotocol, &mut per_connection, &text));
                        if let Err(e) = flush_while(live, stream, &mut want_write, handling).await {
                            return Ending::abnormal(format!(": {e}"));
                        }
                    }
                    Incoming::Ping(payload) => {
                        let _ = live.offer(wire::encode(wire::opcode::PONG, &payload), Duration::ZERO);
                    }
                    Incoming::Pong => {}
                    Incoming::Close(frame) => return Ending::client(frame),
                }
            }
            reader.release_if_idle();
        }
        match std::future::poll_fn(|cx| poll_io(cx, stream, live, &mut want_write, Watch::All)).await {
            Io::Close => {
                let (code, reason) = live.close_request().unwrap_or((close_code::NORMAL, String::new()));
                return Ending::server(code, reason);
            }
            Io::Write => {
                // Let the tasks that are ready run first (other broadcasts, under load): what they
                // queue for this connection goes out in the same `writev`. Idle, this returns at once.
                tokio::task::yield_now().await;
                // A flooded connection (frames closer than the coalescing window) is written at
                // most once per window, unless a full batch is waiting: many frames per `writev`.
                // Boxed: the timer exists only while holding.
                if let Some(hold) = live.hold_for(limits.coalesce, 16) {
                    Box::pin(tokio::time::sleep(hold)).await;
                }
                if let Err(e) = live.flush() {
                    return Ending::abnormal(format!(": {e}"));
                }
                want_write = live.has_queued();
            }
            Io::Read => match stream.try_read_buf(reader.buffer(limits.read_buffer_bytes)) {
                Ok(0) => return Ending::abnormal(""),
                Ok(_) => pending_frames = true,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => reader.release_if_idle(),
                Err(e) => return Ending::abnormal(format!(": {e}")),
            },
        }
    }
}

/// What woke a connection's task.
enum Io {
    /// The server asked it to close.
    Close,
    /// Queued frames can be written.
    Write,
    /// The client sent something.
    Read,
}

/// What `poll_io` reports.
#[derive(Clone, Copy, PartialEq)]
enum Watch {
    /// Close requests, writes and reads (the connection's loop).
    All,
    /// Writes only (while a handler runs: its message is handled to the end first).
    Writes,
}

/// Polls a connection's flags and socket directly, not through futures: an idle connection's
/// task then stores no waiter of its own, only its registration in the reactor and the
/// connection's one waker. A readiness error counts as ready: the read or write that follows
/// reports it.
fn poll_io(
    cx: &mut std::task::Context<'_>,
    stream: &TcpStream,
    live: &LiveConnection,
    want_write: &mut bool,
    watch: Watch,
) -> std::task::Poll<Io> {
    live.register(cx);
    if watch == Watch::All && live.is_closing() {
        return std::task::Poll::Ready(Io::Close);
    }
    if live.take_flush_request() {
        *want_write = true;
    }
    if *want_write && stream.poll_write_ready(cx).is_ready() {
        return std::task::Poll::Ready(Io::Write);
    }
    if watch == Watch::All && stream.poll_read_ready(cx).is_ready() {
        return std::task::Poll::Ready(Io::Read);
    }
    std::task::Poll::Pending
}

/// Runs `work` (a handler) while still flushing what posts queue for this connection, so a slow
/// integration never holds its client's frames back.
/// (A poll function rather than `select!`, which would keep a slot for each branch's future in
/// every connection's task.)
async fn flush_while(
    live: &LiveConnection,
    stream: &TcpStream,
    want_write: &mut bool,
    mut work: std::pin::Pin<Box<impl std::future::Future<Output = ()>>>,
) -> std::io::Result<()> {
    std::future::poll_fn(|cx| {
        loop {
            if work.as_mut().poll(cx).is_ready() {
                return std::task::Poll::Ready(Ok(()));
            }
            if poll_io(cx, stream, live, want_write, Watch::Writes).is_pending() {
                return std::task::Poll::Pending;
            }
            if let Err(e) = live.flush() {
                return std::task::Poll::Ready(Err(e));
            }
            *want_write = live.has_queued();
        }
    })
    .await
}
