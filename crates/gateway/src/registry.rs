//! The live connections of this gateway, and [`LocalConnectionsApi`], the `@connections` API
//! over them (what the in-process handlers post through, and what the HTTP management API
//! serves to Lambda binaries and other callers).
//!
//! A post never blocks and never wakes another task on the way: the frame is encoded once per
//! broadcast, and each recipient's socket is written directly (`try_write`) by the posting task.
//! Only what the socket cannot take right now is queued, and the connection's own task flushes
//! it when the socket becomes writable. A connection whose queue is full (in frames or in bytes)
//! is a slow consumer: it is closed with 1008 and the post answers 429 LimitExceeded, so one slow
//! reader never slows a broadcast down.
//!
//! Answers to a connection's own requests (replies, replays) are paced instead
//! ([`ConnectionsApi::post_to_connection_paced`]): such a post waits, up to a bound, until the
//! queue is below half its limits, so a replay goes out as fast as the client reads and never
//! piles up in memory. Broadcasts never wait.

use std::collections::{HashMap, HashSet, VecDeque};
use std::io;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::Context;

use async_trait::async_trait;
use bytes::{Buf, Bytes};
use dynamowave_apigw::{ConnectionInfo, ConnectionsApi, ConnectionsApiError};
use futures_util::task::AtomicWaker;
use parking_lot::{Mutex, RwLock};
use tokio::net::TcpStream;

use crate::close_code;
use crate::events::ConnectionContext;
use crate::wire;

/// Frames written to a socket in one `writev` when a queue is flushed.
const FLUSH_BATCH: usize = 64;

/// What is waiting to be written to one connection.
#[derive(Default)]
struct Outbox {
    /// Encoded frames; the first may be partly written already (it is sliced as it goes).
    queue: VecDeque<Bytes>,
    /// The bytes of `queue` still to be written. A broadcast's frame is one allocation shared by
    /// every recipient, but it is counted in full in each queue: what bounds one connection is
    /// how much it alone can keep alive.
    queued_bytes: usize,
    /// No more frames are taken: the close frame is queued, or the socket failed.
    sealed: bool,
    /// The code and reason the server asked to close with (the first request wins).
    close_with: Option<(u16, String)>,
    /// When the socket was last written (µs on [`clock_us`]; 0: never), for coalescing.
    last_write_us: u64,
    /// When the last frame was offered (µs on [`clock_us`]; 0: never).
    last_offer_us: u64,
    /// How many frames in a row came within the coalescing window of the one before: from
    /// [`FLOOD_STREAK`] on, the connection is flooded and its frames are batched.
    streak: u32,
}

/// Frames in a row, each within the coalescing window of the one before, that make a flood (the
/// count starts at the second frame). A few close frames are common at a chat's pace: an ack and
/// the sender's own message, two people answering at once, a client sending a small backlog after
/// a stall. They go out at once. A fifth in a row is rare unless the room is flooded, so chat
/// latency does not pay for the batching. Measured in the chat scenario (10,000 connections, 300
/// messages/s): with 2, about 100 connections per run were held (a whole room, for up to a window,
/// after a sender's catch-up burst); with 4, about 2.
const FLOOD_STREAK: u32 = 4;

/// Microseconds since the first call: a cheap monotonic stamp for the coalescing window.
fn clock_us() -> u64 {
    static EPOCH: std::sync::LazyLock<std::time::Instant> = std::sync::LazyLock::new(std::time::Instant::now);
    u64::try_from(EPOCH.elapsed().as_micros()).unwrap_or(u64::MAX).saturating_add(1)
}

/// How a flush ended.
pub(crate) enum Flushed {
    /// Everything queued is on the socket.
    Done,
    /// The socket is full; wait until it is writable and flush again.
    Blocked,
}

/// One live connection, shared by its task and everyone who posts to it.
///
/// Memory matters here (one per connection, 15,000 idle ones in the benchmark): the connection's
/// task waits on this struct's flags and one waker instead of futures of its own, and the
/// gateway's sweeper, not a timer per connection, enforces the idle and lifetime limits.
pub struct LiveConnection {
    /// What API Gateway knows of the connection; every event for it is built from this.
    pub ctx: ConnectionContext,
    /// Milliseconds since the epoch of the client's last frame (`lastActiveAt`; the idle timer).
    pub last_active_at: AtomicI64,
    /// The socket, once upgraded. Frames posted before (a broadcast racing the upgrade) wait in
    /// the outbox and are flushed when it is attached.
    stream: OnceLock<TcpStream>,
    /// Held for one non-blocking write, never across an await. Contended only when
    /// two tasks post to the same connection at the same instant.
    outbox: Mutex<Outbox>,
    /// A post queued what it could not write: the task should flush.
    flush_requested: AtomicBool,
    /// The server wants the connection closed (DeleteConnection, slow consumer, idle or
    /// lifetime limit, shutdown); the code and reason are in `close_with`.
    closing: AtomicBool,
    /// Wakes the connection's task when either flag is set.
    waker: AtomicWaker,
    /// Wakes paced posts when the queue shrinks or the connection closes.
    drained: tokio::sync::Notify,
    max_queued: u32,
    max_queued_bytes: usize,
}

/// Whether a paced post may go now.
enum Room {
    Yes,
    No,
    /// The connection takes no more frames.
    Sealed,
}

impl Room {
    #[cfg(test)]
    fn is_yes(&self) -> bool {
        matches!(self, Room::Yes)
    }
}

impl LiveConnection {
    /// A connection that takes up to `queue_frames` frames, and `queue_bytes` bytes, that its
    /// socket cannot accept yet (one frame is always taken when nothing waits, whatever its size).
    pub fn new(ctx: ConnectionContext, queue_frames: usize, queue_bytes: usize) -> Arc<Self> {
        Arc::new(Self {
            last_active_at: AtomicI64::new(ctx.connected_at),
            ctx,
            stream: OnceLock::new(),
            outbox: Mutex::new(Outbox::default()),
            flush_requested: AtomicBool::new(false),
            closing: AtomicBool::new(false),
            waker: AtomicWaker::new(),
            drained: tokio::sync::Notify::new(),
            max_queued: u32::try_from(queue_frames.max(1)).unwrap_or(u32::MAX),
            max_queued_bytes: queue_bytes.max(1),
        })
    }

    pub fn connection_id(&self) -> &str {
        &self.ctx.connection_id
    }

    /// Attaches the upgraded socket; frames queued before are flushed by the caller's task.
    pub fn attach(&self, stream: TcpStream) {
        let _ = self.stream.set(stream);
        self.request_flush();
    }

    pub(crate) fn stream(&self) -> Option<&TcpStream> {
        self.stream.get()
    }

    /// Asks the connection to close with `code` (the first request wins).
    pub fn close(&self, code: u16, reason: &str) {
        let mut out = self.outbox.lock();
        if out.close_with.is_none() {
            out.close_with = Some((code, reason.to_string()));
        }
        drop(out);
        self.closing.store(true, Ordering::Release);
        self.waker.wake();
        self.drained.notify_waiters();
    }

    /// Whether the server asked the connection to close.
    pub fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }

    /// The code and reason the server asked to close with, if it did.
    pub fn close_request(&self) -> Option<(u16, String)> {
        self.outbox.lock().close_with.clone()
    }

    pub fn touch(&self) {
        self.last_active_at.store(chrono::Utc::now().timestamp_millis(), Ordering::Relaxed);
    }

    /// Sends a text message (encodes it as one frame), written at once if the socket takes it.
    pub fn send_text(&self, text: &str) -> Result<(), ConnectionsApiError> {
        self.offer(wire::encode(wire::opcode::TEXT, text.as_bytes()), std::time::Duration::ZERO)
    }

    /// Sends an encoded frame without waiting.
    ///
    /// Written now if the socket takes it, unless the connection is flooded (frames keep coming
    /// closer together than `coalesce`: see [`FLOOD_STREAK`]); else queued for the connection's
    /// task, which writes everything queued in one `writev`. At a few messages per second per
    /// connection every frame goes straight out; in a flooded room frames are batched, so the
    /// cost per delivery falls as the load rises instead of one `send` each.
    pub fn offer(&self, frame: Bytes, coalesce: std::time::Duration) -> Result<(), ConnectionsApiError> {
        self.offer_at(frame, u64::try_from(coalesce.as_micros()).unwrap_or(u64::MAX), clock_us())
    }

    /// [`Self::offer`] with the window in µs and the time already read: a broadcast reads the
    /// clock once for all its recipients.
    fn offer_at(&self, frame: Bytes, window: u64, now: u64) -> Result<(), ConnectionsApiError> {
        let mut out = self.outbox.lock();
        if out.sealed {
            return Err(ConnectionsApiError::Gone);
        }
        let within_window = out.last_offer_us != 0 && now.saturating_sub(out.last_offer_us) < window;
        out.streak = if within_window { out.streak.saturating_add(1) } else { 0 };
        out.last_offer_us = now;
        let flooded = out.streak >= FLOOD_STREAK;
        if out.queue.is_empty()
            && !flooded
            && let Some(stream) = self.stream.get()
        {
            out.last_write_us = now;
            match stream.try_write(&frame) {
                Ok(n) if n == frame.len() => return Ok(()),
                Ok(n) => {
                    out.queued_bytes += frame.len() - n;
                    out.queue.push_back(frame.slice(n..));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    out.queued_bytes += frame.len();
                    out.queue.push_back(frame);
                }
                Err(_) => {
                    // The peer is gone; its task sees the socket fail and runs `$disconnect`.
                    out.sealed = true;
                    drop(out);
                    self.close(close_code::ABNORMAL, "write failed");
                    return Err(ConnectionsApiError::Gone);
                }
            }
            drop(out);
            self.request_flush();
            return Ok(());
        }
        if out.queue.len() >= self.max_queued as usize
            || out.queued_bytes.saturating_add(frame.len()) > self.max_queued_bytes
        {
            drop(out);
            return Err(self.slow_consumer());
        }
        out.queued_bytes += frame.len();
        out.queue.push_back(frame);
        let first = out.queue.len() == 1;
        drop(out);
        if first {
            self.request_flush();
        }
        Ok(())
    }

    /// Closes the connection as a slow consumer (1008); the error its post answers.
    fn slow_consumer(&self) -> ConnectionsApiError {
        self.close(close_code::POLICY_VIOLATION, "slow consumer: send queue full");
        metrics::counter!("dynamowave_slow_consumers_total").increment(1);
        ConnectionsApiError::LimitExceeded("the client's send buffer is full".into())
    }

    /// Whether a paced post of `len` bytes may be queued now: when nothing waits, or when the
    /// queue is below half its limits with it. Half, so that live broadcasts arriving during a
    /// replay still find room and do not make a reader that keeps up a slow consumer.
    fn room_for(&self, len: usize) -> Room {
        let out = self.outbox.lock();
        if out.sealed {
            Room::Sealed
        } else if out.queue.is_empty()
            || (out.queued_bytes.saturating_add(len) <= self.max_queued_bytes / 2
                && out.queue.len() < (self.max_queued as usize / 2).max(1))
        {
            Room::Yes
        } else {
            Room::No
        }
    }

    /// Waits until a frame of `len` bytes may be queued without going over half the queue's
    /// limits (see [`Self::room_for`]). If the client reads nothing for `timeout`, it is closed
    /// as a slow consumer, as a full queue would be.
    pub async fn wait_for_room(&self, len: usize, timeout: std::time::Duration) -> Result<(), ConnectionsApiError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            // Registered before the queue is looked at: a flush in between still wakes us.
            let notified = self.drained.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            match self.room_for(len) {
                Room::Yes => return Ok(()),
                Room::Sealed => return Err(ConnectionsApiError::Gone),
                Room::No if self.is_closing() => {
                    return Err(ConnectionsApiError::LimitExceeded("the connection is closing".into()));
                }
                Room::No => {}
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return match self.room_for(len) {
                    Room::Yes => Ok(()),
                    Room::Sealed => Err(ConnectionsApiError::Gone),
                    Room::No => Err(self.slow_consumer()),
                };
            }
        }
    }

    /// Bytes waiting in the send queue.
    pub fn queued_bytes(&self) -> usize {
        self.outbox.lock().queued_bytes
    }

    /// Queues the last frame (a close frame, or nothing) and takes no more.
    pub(crate) fn seal(&self, last: Option<Bytes>) {
        let mut out = self.outbox.lock();
        if !out.sealed {
            out.sealed = true;
            if let Some(last) = last {
                out.queued_bytes += last.len();
                out.queue.push_back(last);
            }
        }
        drop(out);
        self.drained.notify_waiters();
    }

    /// Writes what is queued, a batch per `writev`, until done or the socket is full. Paced
    /// posts waiting for room are woken when something was written.
    pub(crate) fn flush(&self) -> io::Result<Flushed> {
        let mut wrote = false;
        let result = self.flush_queue(&mut wrote);
        if wrote || result.is_err() {
            self.drained.notify_waiters();
        }
        result
    }

    fn flush_queue(&self, wrote: &mut bool) -> io::Result<Flushed> {
        let Some(stream) = self.stream.get() else { return Ok(Flushed::Done) };
        let mut out = self.outbox.lock();
        while !out.queue.is_empty() {
            let result = {
                let slices: Vec<io::IoSlice<'_>> =
                    out.queue.iter().take(FLUSH_BATCH).map(|b| io::IoSlice::new(b)).collect();
                stream.try_write_vectored(&slices)
            };
            let written = match result {
                Ok(n) => {
                    out.last_write_us = clock_us();
                    n
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Flushed::Blocked),
                Err(e) => {
                    out.sealed = true;
                    out.queue.clear();
                    out.queued_bytes = 0;
                    return Err(e);
                }
            };
            *wrote |= written > 0;
            out.queued_bytes = out.queued_bytes.saturating_sub(written);
            let mut left = written;
            while left > 0 {
                let Some(front) = out.queue.front_mut() else { break };
                if front.len() <= left {
                    left -= front.len();
                    out.queue.pop_front();
                } else {
                    front.advance(left);
                    left = 0;
                }
            }
        }
        // A drained queue gives its memory back (a burst must not stay allocated).
        if out.queue.capacity() > 16 {
            out.queue = VecDeque::new();
        }
        Ok(Flushed::Done)
    }

    fn request_flush(&self) {
        self.flush_requested.store(true, Ordering::Release);
        self.waker.wake();
    }

    /// Registers the connection task's waker. Register first, then read the flags: a flag set
    /// in between still finds the waker.
    pub(crate) fn register(&self, cx: &mut Context<'_>) {
        self.waker.register(cx.waker());
    }

    /// Whether a post asked for a flush since the last call.
    pub(crate) fn take_flush_request(&self) -> bool {
        self.flush_requested.swap(false, Ordering::AcqRel)
    }

    /// How long to hold the queue before the next `writev` so that it carries more frames: the
    /// rest of the coalescing window since the last write, if the connection is flooded and
    /// fewer than `batch` frames wait. (Frames queued only because the socket was full go out
    /// as soon as it drains.)
    pub(crate) fn hold_for(&self, coalesce: std::time::Duration, batch: usize) -> Option<std::time::Duration> {
        let out = self.outbox.lock();
        if out.queue.len() >= batch || out.last_write_us == 0 || out.sealed || out.streak < FLOOD_STREAK {
            return None;
        }
        let window = u64::try_from(coalesce.as_micros()).unwrap_or(u64::MAX);
        let elapsed = clock_us().saturating_sub(out.last_write_us);
        (elapsed < window).then(|| std::time::Duration::from_micros(window - elapsed))
    }

    /// Whether frames are waiting.
    pub(crate) fn has_queued(&self) -> bool {
        !self.outbox.lock().queue.is_empty()
    }
}

/// A live connection in the registry's set, found by its id (`Borrow<str>`): the set needs no
/// key string of its own besides the one in the connection's context.
struct ById(Arc<LiveConnection>);

impl std::borrow::Borrow<str> for ById {
    fn borrow(&self) -> &str {
        &self.0.ctx.connection_id
    }
}

impl std::hash::Hash for ById {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.ctx.connection_id.as_str().hash(state);
    }
}

impl PartialEq for ById {
    fn eq(&self, other: &Self) -> bool {
        self.0.ctx.connection_id == other.0.ctx.connection_id
    }
}

impl Eq for ById {}

/// All live connections by id.
#[derive(Default)]
pub struct Registry {
    // Held only for map operations, never across an await; a broadcast takes the
    // read lock once for all its recipients.
    /// foldhash rather than SipHash: a broadcast looks up every member by id, and the ids are the
    /// gateway's own random strings, so a DoS-resistant hash buys nothing here (the seed is
    /// still random per process).
    map: RwLock<HashSet<ById, foldhash::fast::RandomState>>,
    /// Live connections per source address, for the per-address limit.
    per_ip: Mutex<HashMap<std::net::IpAddr, usize>>,
}

impl Registry {
    pub fn insert(&self, live: Arc<LiveConnection>) {
        *self.per_ip.lock().entry(live.ctx.source_ip).or_insert(0) += 1;
        self.map.write().replace(ById(live));
        metrics::gauge!("dynamowave_connections").increment(1.0);
    }

    pub fn remove(&self, connection_id: &str) -> Option<Arc<LiveConnection>> {
        let removed = self.map.write().take(connection_id).map(|b| b.0);
        if let Some(live) = &removed {
            let mut per_ip = self.per_ip.lock();
            if let Some(n) = per_ip.get_mut(&live.ctx.source_ip) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    per_ip.remove(&live.ctx.source_ip);
                }
            }
        }
        if removed.is_some() {
            metrics::gauge!("dynamowave_connections").decrement(1.0);
        }
        removed
    }

    /// Live connections from `source_ip`.
    pub fn count_from(&self, source_ip: std::net::IpAddr) -> usize {
        self.per_ip.lock().get(&source_ip).copied().unwrap_or(0)
    }

    pub fn get(&self, connection_id: &str) -> Option<Arc<LiveConnection>> {
        self.map.read().get(connection_id).map(|b| b.0.clone())
    }

    /// Calls `f` for every live connection, under the read lock (so `f` must not block).
    pub fn for_each(&self, mut f: impl FnMut(&LiveConnection)) {
        for live in self.map.read().iter() {
            f(&live.0);
        }
    }

    pub fn len(&self) -> usize {
        self.map.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// `@connections` over the live connections of this process.
pub struct LocalConnectionsApi {
    pub registry: Arc<Registry>,
    /// PostToConnection's payload limit (API Gateway: 128 KiB).
    pub max_payload_bytes: usize,
    /// Frames to a connection written within this window of the previous write are batched
    /// ([`LiveConnection::offer`]).
    pub coalesce: std::time::Duration,
    /// How long a paced post waits for room in the connection's queue before the connection is
    /// closed as a slow consumer ([`LiveConnection::wait_for_room`]).
    pub send_queue_wait: std::time::Duration,
}

impl LocalConnectionsApi {
    fn check_payload(&self, data: &Bytes) -> Result<(), ConnectionsApiError> {
        if data.len() > self.max_payload_bytes {
            return Err(ConnectionsApiError::PayloadTooLarge(format!(
                "payload of {} bytes exceeds {} bytes",
                data.len(),
                self.max_payload_bytes
            )));
        }
        Ok(())
    }
}

#[async_trait]
impl ConnectionsApi for LocalConnectionsApi {
    async fn post_to_connection(&self, connection_id: &str, data: Bytes) -> Result<(), ConnectionsApiError> {
        self.check_payload(&data)?;
        let live = self.registry.get(connection_id).ok_or(ConnectionsApiError::Gone)?;
        live.offer(wire::encode_data(&data), self.coalesce)?;
        metrics::counter!("dynamowave_messages_out_total").increment(1);
        Ok(())
    }

    /// Waits for room in the connection's queue (the connection's own task keeps flushing it
    /// meanwhile), then offers the frame: the client's reading paces the sender.
    async fn post_to_connection_paced(&self, connection_id: &str, data: Bytes) -> Result<(), ConnectionsApiError> {
        self.check_payload(&data)?;
        let live = self.registry.get(connection_id).ok_or(ConnectionsApiError::Gone)?;
        let frame = wire::encode_data(&data);
        live.wait_for_room(frame.len(), self.send_queue_wait).await?;
        live.offer(frame, self.coalesce)?;
        metrics::counter!("dynamowave_messages_out_total").increment(1);
        Ok(())
    }

    async fn get_connection(&self, connection_id: &str) -> Result<ConnectionInfo, ConnectionsApiError> {
        let live = self.registry.get(connection_id).ok_or(ConnectionsApiError::Gone)?;
        Ok(ConnectionInfo {
            connected_at: live.ctx.connected_at,
            source_ip: live.ctx.source_ip.to_string(),
            user_agent: live.ctx.user_agent.clone(),
            last_active_at: live.last_active_at.load(Ordering::Relaxed),
        })
    }

    async fn delete_connection(&self, connection_id: &str) -> Result<(), ConnectionsApiError> {
        let live = self.registry.get(connection_id).ok_or(ConnectionsApiError::Gone)?;
        live.close(close_code::NORMAL, "Connection deleted by the @connections API");
        Ok(())
    }

    /// One read lock and one encoded frame for the whole broadcast; each recipient's socket is
    /// written with the same bytes (no copy, no allocation, no task wake-up per recipient unless
    /// its socket is full).
    async fn post_to_many(
        &self,
        connection_ids: &[&str],
        data: Bytes,
        _concurrency: usize,
    ) -> Vec<(String, ConnectionsApiError)> {
        let mut failed = Vec::new();
        if data.len() > self.max_payload_bytes {
            let e = ConnectionsApiError::PayloadTooLarge(format!("payload of {} bytes", data.len()));
            return connection_ids.iter().map(|id| (id.to_string(), e.clone())).collect();
        }
        // Encoded (and checked for UTF-8) once per broadcast, not once per recipient.
        let frame = wire::encode_data(&data);
        let mut sent = 0u64;
        let window = u64::try_from(self.coalesce.as_micros()).unwrap_or(u64::MAX);
        let now = clock_us();
        {
            let map = self.registry.map.read();
            for id in connection_ids {
                let Some(live) = map.get(*id) else {
                    failed.push((id.to_string(), ConnectionsApiError::Gone));
                    continue;
                };
                match live.0.offer_at(frame.clone(), window, now) {
                    Ok(()) => sent += 1,
                    Err(e) => failed.push((id.to_string(), e)),
                }
            }
        }
        metrics::counter!("dynamowave_messages_out_total").increment(sent);
        failed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::time::Duration;

    /// A registered connection over a real loopback socket, and the client's end of it.
    async fn connection() -> (Arc<LiveConnection>, std::net::TcpStream) {
        connection_with(64, 1 << 20).await
    }

    async fn connection_with(frames: usize, bytes: usize) -> (Arc<LiveConnection>, std::net::TcpStream) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let client = std::net::TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (server, _) = listener.accept().expect("accept");
        server.set_nonblocking(true).expect("nonblocking");
        let ctx = ConnectionContext {
            connection_id: "c".into(),
            connected_at: 0,
            source_ip: std::net::Ipv4Addr::LOCALHOST.into(),
            user_agent: None,
            domain_name: "localhost".into(),
            authorizer: None,
        };
        let live = LiveConnection::new(ctx, frames, bytes);
        live.attach(TcpStream::from_std(server).expect("register"));
        // Let the reactor see the socket writable.
        tokio::time::sleep(Duration::from_millis(10)).await;
        (live, client)
    }

    fn received(client: &mut std::net::TcpStream, want: usize) -> usize {
        client.set_read_timeout(Some(Duration::from_secs(2))).expect("timeout");
        let mut got = vec![0u8; want];
        client.read_exact(&mut got).map(|()| want).unwrap_or(0)
    }

    #[tokio::test]
    async fn frames_at_a_chat_pace_are_written_at_once_and_a_flood_is_batched() {
        let (live, mut client) = connection().await;
        let window = Duration::from_millis(200);
        let frame = wire::encode(wire::opcode::TEXT, b"hello");
        // A few frames in quick succession (an ack and a message, a small burst) go straight out.
        for _ in 0..FLOOD_STREAK {
            live.offer(frame.clone(), window).expect("offer");
        }
        assert!(!live.has_queued(), "the first close frames are written at once");
        let burst = FLOOD_STREAK as usize * frame.len();
        assert_eq!(received(&mut client, burst), burst);
        // One more within the window makes a flood: it waits for the connection's batch.
        live.offer(frame.clone(), window).expect("offer");
        live.offer(frame.clone(), window).expect("offer");
        assert!(live.has_queued(), "a flood is queued for one writev");
        assert!(live.hold_for(window, 16).is_some(), "and held for the rest of the window");
        assert!(matches!(live.flush().expect("flush"), Flushed::Done));
        assert_eq!(received(&mut client, 2 * frame.len()), 2 * frame.len());
        // After a pause longer than the window the streak is over: written at once again.
        tokio::time::sleep(window + Duration::from_millis(20)).await;
        live.offer(frame.clone(), window).expect("offer");
        assert!(!live.has_queued(), "after a pause frames go straight out again");
        assert_eq!(received(&mut client, frame.len()), frame.len());
    }

    #[tokio::test]
    async fn a_queue_over_its_byte_limit_is_a_slow_consumer() {
        // A byte limit well under the frame limit.
        let (live, _client) = connection_with(4096, 200_000).await;
        let big = wire::encode(wire::opcode::BINARY, &vec![0u8; 30_000]);
        let mut offered = 0;
        let refused = loop {
            match live.offer(big.clone(), Duration::ZERO) {
                Ok(()) => offered += 1,
                Err(e) => break e,
            }
            assert!(offered < 10_000, "the byte limit must be reached");
        };
        assert!(matches!(refused, ConnectionsApiError::LimitExceeded(_)), "{refused:?}");
        assert!(live.queued_bytes() <= 200_000, "never more than the limit: {}", live.queued_bytes());
        assert_eq!(live.close_request().map(|(code, _)| code), Some(close_code::POLICY_VIOLATION));
    }

    #[tokio::test]
    async fn a_paced_post_waits_until_the_client_reads() {
        let (live, mut client) = connection().await;
        let big = wire::encode(wire::opcode::BINARY, &vec![0u8; 40_000]);
        // Over half the 64-frame limit's worth: a paced post must wait.
        while live.queued_bytes() == 0 || live.room_for(big.len()).is_yes() {
            live.offer(big.clone(), Duration::ZERO).expect("offer");
        }
        // The client reads: the queue drains (flushed here as the connection's task would) and
        // the paced post goes.
        let reader = std::thread::spawn(move || {
            client.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
            let mut sink = vec![0u8; 1 << 16];
            let mut total = 0usize;
            while let Ok(n) = client.read(&mut sink) {
                if n == 0 {
                    break;
                }
                total += n;
            }
            total
        });
        let waiting = {
            let live = live.clone();
            tokio::spawn(async move { live.wait_for_room(40_000, Duration::from_secs(5)).await })
        };
        for _ in 0..500 {
            if waiting.is_finished() {
                break;
            }
            let _ = live.flush();
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(waiting.await.expect("join"), Ok(()), "room was made by the client's reading");
        assert!(live.close_request().is_none());
        live.close(close_code::NORMAL, "done");
        drop(reader);
    }

    #[tokio::test]
    async fn a_paced_post_to_a_reader_that_never_reads_gives_up_with_1008() {
        let (live, _client) = connection().await;
        let big = wire::encode(wire::opcode::BINARY, &vec![0u8; 40_000]);
        while live.queued_bytes() == 0 || live.room_for(big.len()).is_yes() {
            live.offer(big.clone(), Duration::ZERO).expect("offer");
        }
        let started = std::time::Instant::now();
        let waited = live.wait_for_room(big.len(), Duration::from_millis(200)).await;
        assert!(matches!(waited, Err(ConnectionsApiError::LimitExceeded(_))), "{waited:?}");
        assert!(started.elapsed() >= Duration::from_millis(190));
        assert_eq!(live.close_request().map(|(code, _)| code), Some(close_code::POLICY_VIOLATION));
    }

    #[tokio::test]
    async fn frames_queued_behind_a_full_socket_are_not_held() {
        let (live, _client) = connection().await;
        let window = Duration::from_millis(200);
        // Fill the socket: the client never reads.
        let big = wire::encode(wire::opcode::BINARY, &vec![0u8; 60_000]);
        while !live.has_queued() {
            live.offer(big.clone(), Duration::ZERO).expect("offer");
        }
        assert_eq!(live.hold_for(window, 16), None, "no flood: flush as soon as the socket drains");
    }
}
