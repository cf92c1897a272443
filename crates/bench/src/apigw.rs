//! The load mode for apps written like AWS's WebSocket chat sample (`--protocol apigw-sample`).
//!
//! Such an app has no protocol of its own: a connection joins the room named by the `room` query
//! parameter of its connect URL, sends `{"action":"sendmessage","data":"…"}`, and every member of
//! the room (the sender included) receives `data` as one raw text frame, with no room sequence and
//! no acknowledgement. So the generator numbers the messages itself: `data` is
//! `dwb <sender> <seq> <send-ns> <padding>`, and each receiver tracks every sender's `seq` for
//! duplicates and reordering. A sender's own copy stands for the acknowledgement (`acked`), and
//! `--rate 0` keeps `--window` messages per sender between sending and seeing its own copy.
//!
//! The apps these are (Lambda functions behind a local gateway or serverless-offline) deliver a few
//! thousand messages a second at most: one tokio-tungstenite connection per task is plenty here,
//! where the v1 load mode needs its lean client.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::sync::{Semaphore, watch};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::accounting::{LatencyShards, LatencySummary, Seen, SeqTracker, expected_deliveries, new_histogram};
use crate::args::BenchArgs;
use crate::client::{ConnectError, Target};
use crate::procfs;
use crate::report::{ConnectStats, Report, ServerStats};
use crate::runner::{ConnReport, Sources};

/// The first word of every message the generator sends, to tell its frames from anything else.
const TAG: &str = "dwb";

/// `url` with `room=<room>` added to its query (and the root path when it has none: a request
/// target cannot start with `?`).
pub fn room_url(url: &str, room: &str) -> String {
    let (base, fragment) = url.split_once('#').map_or((url, None), |(b, f)| (b, Some(f)));
    let sep = if base.contains('?') { '&' } else { '?' };
    let authority_end = base.find("://").map_or(0, |i| i + 3);
    let slash = if base[authority_end..].contains('/') { "" } else { "/" };
    let mut out = format!("{base}{slash}{sep}room={room}");
    if let Some(f) = fragment {
        out.push('#');
        out.push_str(f);
    }
    out
}

/// The `data` of one message, padded with `x` to `size` bytes when that is longer.
pub fn message_data(sender: usize, seq: u64, sent_ns: u64, size: usize) -> String {
    let mut data = format!("{TAG} {sender} {seq} {sent_ns} ");
    while data.len() < size {
        data.push('x');
    }
    data
}

/// The frame sent for `data`: the sample's route key and its `data` field.
pub fn send_frame(data: &str) -> String {
    serde_json::json!({ "action": "sendmessage", "data": data }).to_string()
}

/// A delivered frame the generator wrote: sender, seq and send time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    /// Index of the sending connection.
    pub sender: usize,
    /// The sender's message counter.
    pub seq: u64,
    /// Send time, nanoseconds on the run's clock.
    pub sent_ns: u64,
}

/// Reads a delivered frame; `None` for anything the generator did not write.
pub fn parse_delivery(frame: &str) -> Option<Delivery> {
    let mut words = frame.split(' ');
    if words.next()? != TAG {
        return None;
    }
    let sender = words.next()?.parse().ok()?;
    let seq = words.next()?.parse().ok()?;
    let sent_ns = words.next()?.parse().ok()?;
    Some(Delivery { sender, seq, sent_ns })
}

/// One connection's counters, handed back when it stops.
#[derive(Debug, Default)]
struct ConnResult {
    counts: ConnReport,
    connect_error: Option<String>,
    connect_ns: u64,
}

/// What the tasks share.
struct Shared {
    anchor: Instant,
    window_start_ns: AtomicU64,
    window_end_ns: AtomicU64,
    latency: LatencyShards,
    /// Per room: messages sent in the window.
    sent_in_window: Vec<AtomicU64>,
    /// Per room: connections that connected.
    members: Vec<AtomicU64>,
    /// Distinct in-window deliveries, all connections together.
    received_in_window: AtomicU64,
}

impl Shared {
    fn now_ns(&self) -> u64 {
        u64::try_from(self.anchor.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn in_window(&self, ns: u64) -> bool {
        ns >= self.window_start_ns.load(Ordering::Relaxed) && ns < self.window_end_ns.load(Ordering::Relaxed)
    }
}

/// The run's phases, broadcast to the connection tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    Connecting,
    Sending,
    Draining,
    Stop,
}

/// Runs the load mode against a sample-style app and fills `report`.
pub(crate) async fn run(args: &BenchArgs, target: Target, report: &mut Report) -> anyhow::Result<()> {
    let n = args.connections;
    let rooms = args.rooms.max(1);
    // Rooms of this run only: rows a previous run left in the app's table are not its members.
    let run_id = format!("{:x}", report.started_at_unix % 0x100_0000);
    let shared = Arc::new(Shared {
        anchor: Instant::now(),
        window_start_ns: AtomicU64::new(u64::MAX),
        window_end_ns: AtomicU64::new(u64::MAX),
        latency: LatencyShards::new(16),
        sent_in_window: (0..rooms).map(|_| AtomicU64::new(0)).collect(),
        members: (0..rooms).map(|_| AtomicU64::new(0)).collect(),
        received_in_window: AtomicU64::new(0),
    });
    let (phase_tx, phase_rx) = watch::channel(Phase::Connecting);
    let connected = Arc::new(AtomicU64::new(0));
    let gate = Arc::new(Semaphore::new(args.connect_concurrency));
    let interval = (args.rate > 0.0).then(|| Duration::from_secs_f64(args.senders as f64 / args.rate));
    let before_connect = args.server_pid.and_then(|p| procfs::sample(Some(p)).ok());

    let sources = Sources::from_args(&args.source_addrs);
    let connect_began = Instant::now();
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let room = i % rooms;
        let conn = Conn {
            index: i,
            room,
            url: room_url(&args.url, &format!("bench-{run_id}-{room}")),
            sender: i < args.senders,
            target: target.clone(),
            source: sources.of(i),
            shared: Arc::clone(&shared),
            phase: phase_rx.clone(),
            gate: Arc::clone(&gate),
            connected: Arc::clone(&connected),
            timeout: args.connect_timeout,
            interval,
            window: args.window.max(1),
            size: args.size,
            phase_offset: Duration::from_secs_f64(
                interval.map_or(0.0, |iv| iv.as_secs_f64() * i as f64 / args.senders.max(1) as f64),
            ),
        };
        tasks.push(tokio::spawn(conn.run()));
        if args.connect_rate > 0.0 {
            tokio::time::sleep(Duration::from_secs_f64(1.0 / args.connect_rate)).await;
        }
    }
    // Every task either connects or gives up within the connect timeout (plus its wait for a slot).
    let connect_deadline = Instant::now() + args.connect_timeout * (n / args.connect_concurrency + 2) as u32;
    while connected.load(Ordering::Relaxed) < n as u64 && Instant::now() < connect_deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if tasks.iter().all(|t| t.is_finished()) {
            break;
        }
    }
    let connect_seconds = connect_began.elapsed().as_secs_f64();
    progress(args, &format!("connected {} of {n} in {connect_seconds:.1} s", connected.load(Ordering::Relaxed)));

    let now = shared.now_ns();
    let warmup_ns = u64::try_from(args.warmup.as_nanos()).unwrap_or(u64::MAX / 4);
    let window_ns = u64::try_from(args.duration.as_nanos()).unwrap_or(u64::MAX / 4);
    shared.window_start_ns.store(now + warmup_ns, Ordering::Relaxed);
    shared.window_end_ns.store(now + warmup_ns + window_ns, Ordering::Relaxed);
    let _ = phase_tx.send(Phase::Sending);
    tokio::time::sleep(args.warmup).await;
    let window_start = (procfs::sample(None).ok(), args.server_pid.and_then(|p| procfs::sample(Some(p)).ok()));
    let window_began = Instant::now();
    let mut last = 0;
    while window_began.elapsed() < args.duration {
        tokio::time::sleep(Duration::from_secs(1).min(args.duration.saturating_sub(window_began.elapsed()))).await;
        let got = shared.received_in_window.load(Ordering::Relaxed);
        progress(args, &format!("measure {:.0} s: {} deliveries/s", window_began.elapsed().as_secs_f64(), got - last));
        last = got;
    }
    let window_end = (procfs::sample(None).ok(), args.server_pid.and_then(|p| procfs::sample(Some(p)).ok()));
    let window_seconds = window_began.elapsed().as_secs_f64();
    let _ = phase_tx.send(Phase::Draining);

    // Drain: until every expected delivery arrived, or --drain passed. Members are the connected.
    let members: Vec<u64> = shared.members.iter().map(|a| a.load(Ordering::Relaxed)).collect();
    let drain_began = Instant::now();
    let drained = loop {
        let sent: Vec<u64> = shared.sent_in_window.iter().map(|a| a.load(Ordering::Relaxed)).collect();
        let expected = expected_deliveries(&sent, &members);
        if shared.received_in_window.load(Ordering::Relaxed) >= expected {
            break true;
        }
        if drain_began.elapsed() >= args.drain {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let _ = phase_tx.send(Phase::Stop);
    let mut results = Vec::with_capacity(n);
    for task in tasks {
        match task.await {
            Ok(r) => results.push(r),
            Err(e) => anyhow::bail!("a connection task failed: {e}"),
        }
    }

    fill_connect(report, &results, connect_seconds);
    report.window_seconds = window_seconds;
    crate::runner::fill_generator(report, window_start.0, window_end.0, window_seconds);
    if let (Some(pid), Some(before), Some(start), Some(end)) =
        (args.server_pid, before_connect, window_start.1, window_end.1)
    {
        report.server = Some(ServerStats {
            pid,
            cpu_seconds: start.cpu_seconds_until(&end),
            cpu_utilisation: start.cpu_seconds_until(&end) / window_seconds.max(1e-9),
            rss_before_connect_kib: before.rss_kib,
            rss_start_kib: start.rss_kib,
            rss_end_kib: end.rss_kib,
            peak_rss_kib: end.hwm_kib,
            ..ServerStats::default()
        });
    }
    fill_load(args, report, results, window_seconds, drained, &shared);
    Ok(())
}

fn progress(args: &BenchArgs, line: &str) {
    if !args.quiet {
        eprintln!("[apigw-sample] {line}");
    }
}

fn fill_connect(report: &mut Report, results: &[ConnResult], seconds: f64) {
    let mut stats = ConnectStats { attempted: results.len() as u64, seconds, ..ConnectStats::default() };
    let mut histogram = new_histogram();
    for r in results {
        if r.counts.joined {
            stats.established += 1;
            let _ = histogram.record(r.connect_ns.clamp(1_000, 60_000_000_000));
        } else {
            stats.failed += 1;
            *stats.failures.entry(r.connect_error.clone().unwrap_or_else(|| "unknown".to_owned())).or_default() += 1;
        }
    }
    stats.per_second = stats.established as f64 / seconds.max(1e-9);
    stats.latency = LatencySummary::from_histogram(&histogram);
    report.connect = stats;
}

/// The runner's load section over this sample's counters, with its latency.
fn fill_load(
    args: &BenchArgs,
    report: &mut Report,
    results: Vec<ConnResult>,
    window_seconds: f64,
    drained: bool,
    shared: &Shared,
) {
    let counts: Vec<ConnReport> = results.into_iter().map(|r| r.counts).collect();
    crate::runner::fill_load(args, report, &counts, window_seconds, drained);
    if let Some(load) = report.load.as_mut() {
        load.latency = LatencySummary::from_histogram(&shared.latency.merged());
    }
    report.notes.push(
        "protocol apigw-sample: `acked` counts the senders' own copies (the app acknowledges nothing); order is per sender"
            .to_owned(),
    );
}

/// One connection's task.
struct Conn {
    index: usize,
    room: usize,
    url: String,
    sender: bool,
    target: Target,
    source: Option<IpAddr>,
    shared: Arc<Shared>,
    phase: watch::Receiver<Phase>,
    gate: Arc<Semaphore>,
    connected: Arc<AtomicU64>,
    timeout: Duration,
    interval: Option<Duration>,
    window: u64,
    size: usize,
    phase_offset: Duration,
}

impl Conn {
    async fn run(mut self) -> ConnResult {
        let mut result = ConnResult::default();
        result.counts.room = self.room;
        let began = Instant::now();
        let ws = {
            let _slot = self.gate.acquire().await;
            tokio::time::timeout(self.timeout, self.connect()).await.unwrap_or(Err(ConnectError::Timeout))
        };
        let mut ws = match ws {
            Ok(ws) => ws,
            Err(e) => {
                result.connect_error = Some(e.kind());
                return result;
            }
        };
        result.counts.joined = true;
        result.connect_ns = u64::try_from(began.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.connected.fetch_add(1, Ordering::Relaxed);
        self.shared.members[self.room].fetch_add(1, Ordering::Relaxed);

        let mut trackers: HashMap<usize, SeqTracker> = HashMap::new();
        let mut seq = 0u64;
        let mut next_send: Option<tokio::time::Instant> = None;
        loop {
            let phase = *self.phase.borrow();
            if phase == Phase::Stop {
                break;
            }
            if phase == Phase::Sending && self.sender && next_send.is_none() {
                next_send = Some(tokio::time::Instant::now() + self.phase_offset);
            }
            let window_open = self.interval.is_none() && seq.saturating_sub(result.counts.acked) < self.window;
            let may_send = phase == Phase::Sending && self.sender;
            let send_at = match (may_send, self.interval, next_send) {
                (true, Some(_), Some(at)) => Some(at),
                (true, None, _) if window_open => Some(tokio::time::Instant::now()),
                _ => None,
            };
            tokio::select! {
                changed = self.phase.changed() => {
                    if changed.is_err() {
                        break;
                    }
                }
                () = sleep_until(send_at) => {
                    let now_ns = self.shared.now_ns();
                    if let (Some(iv), Some(at)) = (self.interval, next_send) {
                        let lag = tokio::time::Instant::now().saturating_duration_since(at);
                        result.counts.max_lag_ns = result.counts.max_lag_ns.max(u64::try_from(lag.as_nanos()).unwrap_or(u64::MAX));
                        next_send = Some(at + iv);
                    }
                    // Past the window's end nothing more is sent: the drain only waits.
                    if now_ns >= self.shared.window_end_ns.load(Ordering::Relaxed) {
                        self.sender = false;
                        continue;
                    }
                    let data = message_data(self.index, seq, now_ns, self.size);
                    if ws.send(Message::text(send_frame(&data))).await.is_err() {
                        result.counts.closed_early = true;
                        break;
                    }
                    seq += 1;
                    result.counts.sent_total += 1;
                    if self.shared.in_window(now_ns) {
                        result.counts.sent_in_window += 1;
                        self.shared.sent_in_window[self.room].fetch_add(1, Ordering::Relaxed);
                    }
                }
                frame = ws.next() => {
                    match frame {
                        Some(Ok(Message::Text(text))) => self.on_text(&text, &mut trackers, &mut result),
                        Some(Ok(Message::Binary(bytes))) => match std::str::from_utf8(&bytes) {
                            Ok(text) => self.on_text(text, &mut trackers, &mut result),
                            Err(_) => result.counts.foreign += 1,
                        },
                        Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                            result.counts.closed_early = *self.phase.borrow() != Phase::Stop;
                            break;
                        }
                        Some(Ok(_)) => {}
                    }
                }
            }
        }
        // A close frame, so the app's $disconnect runs and its table forgets this connection.
        let _ = tokio::time::timeout(Duration::from_secs(2), ws.close(None)).await;
        result
    }

    async fn connect(&self) -> Result<tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>, ConnectError> {
        let request = self.url.as_str().into_client_request().map_err(|e| ConnectError::Target(e.to_string()))?;
        let stream = self.target.tcp(self.source).await?;
        let config = WebSocketConfig::default().read_buffer_size(8 * 1024);
        let (ws, _) = tokio_tungstenite::client_async_with_config(request, stream, Some(config)).await?;
        Ok(ws)
    }

    fn on_text(&self, text: &str, trackers: &mut HashMap<usize, SeqTracker>, result: &mut ConnResult) {
        let Some(d) = parse_delivery(text) else {
            // API Gateway's (and serverless-offline's) answer when the integration failed.
            if text.contains("Internal server error") {
                *result.counts.errors.entry("internal_server_error".to_owned()).or_default() += 1;
            } else {
                result.counts.foreign += 1;
            }
            return;
        };
        if d.sender == self.index {
            result.counts.acked += 1;
        }
        let seen = trackers.entry(d.sender).or_default().observe(d.seq);
        if !self.shared.in_window(d.sent_ns) {
            return;
        }
        match seen {
            Seen::Duplicate => result.counts.duplicated += 1,
            Seen::OutOfOrder | Seen::InOrder => {
                if seen == Seen::OutOfOrder {
                    result.counts.out_of_order += 1;
                }
                result.counts.received_in_window += 1;
                self.shared.received_in_window.fetch_add(1, Ordering::Relaxed);
                let latency = self.shared.now_ns().saturating_sub(d.sent_ns);
                self.shared.latency.record(self.index, latency);
            }
        }
    }
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_room_goes_into_the_query() {
        assert_eq!(room_url("ws://127.0.0.1:3001", "bench-1"), "ws://127.0.0.1:3001/?room=bench-1");
        assert_eq!(room_url("ws://127.0.0.1:3001/", "r"), "ws://127.0.0.1:3001/?room=r");
        assert_eq!(room_url("ws://h:1/Prod", "r"), "ws://h:1/Prod?room=r");
        assert_eq!(room_url("ws://h:1/Prod?x=1", "r"), "ws://h:1/Prod?x=1&room=r");
    }

    #[test]
    fn a_message_reads_back_and_others_do_not() {
        let data = message_data(7, 42, 123_456_789, 100);
        assert_eq!(data.len(), 100);
        assert_eq!(parse_delivery(&data), Some(Delivery { sender: 7, seq: 42, sent_ns: 123_456_789 }));
        assert!(message_data(1, 2, 3, 0).starts_with("dwb 1 2 3"));
        assert_eq!(parse_delivery("hello"), None);
        assert_eq!(parse_delivery("dwb x 1 2"), None);
        assert_eq!(parse_delivery(r#"{"message":"Internal server error"}"#), None);
        let frame: serde_json::Value = match serde_json::from_str(&send_frame(&data)) {
            Ok(v) => v,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(frame["action"], "sendmessage");
        assert_eq!(frame["data"], data.as_str());
    }
}
