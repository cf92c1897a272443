//! The send floor (`--send-floor`): the least CPU one `send()` of a small WebSocket frame to its own
//! loopback TCP connection costs on this machine, with no server involved.
//!
//! A writer thread, pinned to core 0 with `taskset` (where the server under test runs), writes one
//! server text frame to each of `--connections` accepted sockets per round, `--rate` rounds a second
//! on an absolute schedule, and reads its own CPU time from `/proc/thread-self` at the edges of the
//! measured window. A drainer thread on core 1 (with the clients) reads every client end through a
//! current-thread tokio runtime (epoll) and discards the bytes, so that no send buffer fills.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::io::AsyncReadExt as _;

use crate::args::BenchArgs;
use crate::procfs::{self, ThreadSample};
use crate::report::{Report, SendFloorStats};

/// The core the writer is pinned to (the server's, in scripts/bench-compare).
const WRITER_CORE: u32 = 0;
/// The core the drainer is pinned to (the clients').
const DRAINER_CORE: u32 = 1;
/// Fewer clock ticks of writer CPU than this make the figure coarse (one tick is 1% of 100).
const FEW_TICKS: u64 = 100;
/// How long to wait for the drainer to read the last bytes and see every end closed.
const DRAINER_GRACE: Duration = Duration::from_secs(10);

/// The header of an unmasked server-to-client text frame (FIN set) with `len` payload bytes: 2 bytes
/// below 126, 4 below 65536, else 10.
pub(crate) fn text_frame_header(len: usize) -> Vec<u8> {
    let mut header = vec![0x81];
    if let Ok(short @ 0..=125) = u8::try_from(len) {
        header.push(short);
    } else if let Ok(medium) = u16::try_from(len) {
        header.push(126);
        header.extend_from_slice(&medium.to_be_bytes());
    } else {
        header.push(127);
        header.extend_from_slice(&(len as u64).to_be_bytes());
    }
    header
}

/// A whole server text frame with `len` bytes of ASCII payload.
pub(crate) fn text_frame(len: usize) -> Vec<u8> {
    let mut frame = text_frame_header(len);
    frame.extend(std::iter::repeat_n(b'x', len));
    frame
}

/// The writer's counters, read by the controller for the progress line (updated once a round).
#[derive(Debug, Default)]
#[repr(align(64))]
struct WriterLive {
    writes: AtomicU64,
    failed: AtomicU64,
    bytes: AtomicU64,
}

/// The drainer's byte count, on its own cache line so the two threads do not share one.
#[derive(Debug, Default)]
#[repr(align(64))]
struct DrainerLive {
    bytes: AtomicU64,
}

/// Both ends of the loopback connections.
struct Pairs {
    addr: SocketAddr,
    servers: Vec<TcpStream>,
    clients: Vec<TcpStream>,
}

/// Opens `n` loopback connections: the server ends with TCP_NODELAY, both ends non-blocking.
fn open_pairs(n: usize) -> anyhow::Result<Pairs> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("binding a loopback listener")?;
    let addr = listener.local_addr().context("the listener's address")?;
    let mut pairs = Pairs { addr, servers: Vec::with_capacity(n), clients: Vec::with_capacity(n) };
    for i in 0..n {
        // One connect, one accept: the listen backlog never fills however many connections there are.
        let client = TcpStream::connect(addr).with_context(|| format!("connection {} of {n} to {addr}", i + 1))?;
        let (server, _) = listener.accept().with_context(|| format!("accepting connection {} of {n}", i + 1))?;
        server.set_nodelay(true).context("TCP_NODELAY")?;
        server.set_nonblocking(true).context("a non-blocking server end")?;
        client.set_nonblocking(true).context("a non-blocking client end")?;
        pairs.servers.push(server);
        pairs.clients.push(client);
    }
    Ok(pairs)
}

/// What the writer thread measured.
#[derive(Debug, Default)]
struct WriterOutcome {
    rounds: u64,
    writes: u64,
    failed: u64,
    errors: BTreeMap<String, u64>,
    start: Option<ThreadSample>,
    end: Option<ThreadSample>,
    sample_error: Option<String>,
    window_seconds: f64,
    lag_max: Duration,
}

/// The writer's schedule and frame.
struct WriterPlan {
    rate: f64,
    warmup: Duration,
    duration: Duration,
    frame: Vec<u8>,
}

fn sleep_until(deadline: Instant) {
    let left = deadline.saturating_duration_since(Instant::now());
    if !left.is_zero() {
        std::thread::sleep(left);
    }
}

fn sample_self(error: &mut Option<String>) -> Option<ThreadSample> {
    procfs::thread_sample(None).map_err(|e| *error = Some(e.to_string())).ok()
}

/// The writer thread: reports its id, waits for the start instant, then writes rounds until the
/// window ends. Its sockets close when it returns, which ends the drainer.
fn write_rounds(
    plan: WriterPlan,
    servers: Vec<TcpStream>,
    live: Arc<WriterLive>,
    tid_tx: mpsc::Sender<Option<u32>>,
    start_rx: mpsc::Receiver<Instant>,
) -> WriterOutcome {
    let _ = tid_tx.send(procfs::current_tid());
    drop(tid_tx);
    let mut out = WriterOutcome::default();
    let Ok(start) = start_rx.recv() else { return out };
    let window_start = start + plan.warmup;
    let window_end = window_start + plan.duration;
    let frame = plan.frame.as_slice();
    let mut window_began: Option<Instant> = None;
    for k in 0u64.. {
        let due = start + Duration::from_secs_f64(k as f64 / plan.rate);
        if due >= window_end {
            break;
        }
        sleep_until(due);
        let in_window = due >= window_start;
        if in_window {
            if window_began.is_none() {
                out.start = sample_self(&mut out.sample_error);
                window_began = Some(Instant::now());
            }
            out.lag_max = out.lag_max.max(Instant::now().saturating_duration_since(due));
        }
        let (mut full, mut failed, mut bytes) = (0u64, 0u64, 0u64);
        for mut stream in &servers {
            match stream.write(frame) {
                Ok(n) if n == frame.len() => {
                    full += 1;
                    bytes += n as u64;
                }
                Ok(n) => {
                    failed += 1;
                    bytes += n as u64;
                    if in_window {
                        *out.errors.entry("short_write".to_owned()).or_default() += 1;
                    }
                }
                Err(e) => {
                    failed += 1;
                    if in_window {
                        *out.errors.entry(format!("{:?}", e.kind()).to_lowercase()).or_default() += 1;
                    }
                }
            }
        }
        live.writes.fetch_add(full, Ordering::Relaxed);
        live.failed.fetch_add(failed, Ordering::Relaxed);
        live.bytes.fetch_add(bytes, Ordering::Relaxed);
        if in_window {
            out.rounds += 1;
            out.writes += full;
            out.failed += failed;
        }
    }
    sleep_until(window_end);
    if window_began.is_some() {
        out.end = sample_self(&mut out.sample_error);
    }
    out.window_seconds = window_began.map_or(0.0, |b| b.elapsed().as_secs_f64());
    out
}

/// The drainer thread: reads every client end until the writer closes it, discarding the bytes.
fn drain(clients: Vec<TcpStream>, live: Arc<DrainerLive>, tid_tx: mpsc::Sender<Option<u32>>) -> anyhow::Result<()> {
    let _ = tid_tx.send(procfs::current_tid());
    drop(tid_tx);
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_io().build().context("building the drainer's runtime")?;
    runtime.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for client in clients {
            let mut stream = tokio::net::TcpStream::from_std(client).context("registering a client end")?;
            let live = Arc::clone(&live);
            tasks.spawn(async move {
                let mut buf = vec![0u8; 4096];
                while let Ok(n @ 1..) = stream.read(&mut buf).await {
                    live.bytes.fetch_add(n as u64, Ordering::Relaxed);
                }
            });
        }
        while tasks.join_next().await.is_some() {}
        Ok(())
    })
}

/// `taskset -p -c <core> <tid>`: moves one thread to one core.
fn pin(name: &str, tid: Option<u32>, core: u32) -> Result<(), String> {
    let tid = tid.ok_or_else(|| format!("the {name}'s thread id is unknown (/proc/thread-self unreadable)"))?;
    let (core_arg, tid_arg) = (core.to_string(), tid.to_string());
    let output = std::process::Command::new("taskset")
        .args(["-p", "-c", &core_arg, &tid_arg])
        .output()
        .map_err(|e| format!("taskset for the {name}: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!("taskset -p -c {core} {tid} ({name}): {}", String::from_utf8_lossy(&output.stderr).trim()))
    }
}

/// Prints one progress line a second on stderr.
struct Progress {
    quiet: bool,
    began: Instant,
    last: Instant,
    last_writes: u64,
    last_drained: u64,
}

impl Progress {
    fn line(&mut self, phase: &str, writer: &WriterLive, drainer: &DrainerLive) {
        let now = Instant::now();
        let dt = now.duration_since(self.last).as_secs_f64().max(1e-6);
        let writes = writer.writes.load(Ordering::Relaxed);
        let drained = drainer.bytes.load(Ordering::Relaxed);
        if !self.quiet {
            eprintln!(
                "[bench {:>6.1}s] {phase:<8} writes {:.0}/s  failed {}  drained {:.0} KB/s",
                now.duration_since(self.began).as_secs_f64(),
                writes.saturating_sub(self.last_writes) as f64 / dt,
                writer.failed.load(Ordering::Relaxed),
                drained.saturating_sub(self.last_drained) as f64 / dt / 1e3,
            );
        }
        self.last = now;
        self.last_writes = writes;
        self.last_drained = drained;
    }

    /// Sleeps until `deadline`, printing a line each second.
    async fn until(&mut self, deadline: Instant, phase: &str, writer: &WriterLive, drainer: &DrainerLive) {
        loop {
            let next = self.last + Duration::from_secs(1);
            if deadline <= next {
                tokio::time::sleep_until(deadline.into()).await;
                return;
            }
            tokio::time::sleep_until(next.into()).await;
            self.line(phase, writer, drainer);
        }
    }
}

/// Waits (without blocking the runtime) until the thread ends or `limit` passes; None on timeout.
async fn join_within<T>(handle: JoinHandle<T>, limit: Duration) -> Option<std::thread::Result<T>> {
    let deadline = Instant::now() + limit;
    while !handle.is_finished() {
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Some(handle.join())
}

/// Runs the send floor and fills `report.send_floor`.
pub(crate) async fn run(args: &BenchArgs, report: &mut Report) -> anyhow::Result<()> {
    let n = args.connections;
    let frame = text_frame(args.size);
    let frame_bytes = frame.len();
    let clock_ticks = procfs::clock_ticks_per_sec();
    let connect_began = Instant::now();
    let pairs =
        tokio::task::spawn_blocking(move || open_pairs(n)).await.context("the connecting thread panicked")??;
    report.url = format!("tcp://{}", pairs.addr);
    report.connect.attempted = n as u64;
    report.connect.established = n as u64;
    report.connect.seconds = connect_began.elapsed().as_secs_f64();
    report.connect.per_second = n as f64 / report.connect.seconds.max(1e-9);

    let writer_live = Arc::new(WriterLive::default());
    let drainer_live = Arc::new(DrainerLive::default());
    let (drainer_tid_tx, drainer_tid_rx) = mpsc::channel();
    let drainer = {
        let live = Arc::clone(&drainer_live);
        let clients = pairs.clients;
        std::thread::Builder::new()
            .name("dw-floor-drain".to_owned())
            .spawn(move || drain(clients, live, drainer_tid_tx))
            .context("starting the drainer thread")?
    };
    let (writer_tid_tx, writer_tid_rx) = mpsc::channel();
    let (start_tx, start_rx) = mpsc::channel();
    let writer = {
        let live = Arc::clone(&writer_live);
        let servers = pairs.servers;
        let plan = WriterPlan { rate: args.rate, warmup: args.warmup, duration: args.duration, frame };
        std::thread::Builder::new()
            .name("dw-floor-write".to_owned())
            .spawn(move || write_rounds(plan, servers, live, writer_tid_tx, start_rx))
            .context("starting the writer thread")?
    };
    // Both threads send their id first thing; a thread that died before has dropped its sender.
    let tid_wait = Duration::from_secs(5);
    let writer_tid = writer_tid_rx.recv_timeout(tid_wait).ok().flatten();
    let drainer_tid = drainer_tid_rx.recv_timeout(tid_wait).ok().flatten();
    let pinned = [pin("writer", writer_tid, WRITER_CORE), pin("drainer", drainer_tid, DRAINER_CORE)];
    let not_pinned: Vec<String> = pinned.iter().filter_map(|r| r.as_ref().err().cloned()).collect();
    if !not_pinned.is_empty() {
        report.notes.push(format!("threads not pinned: {}", not_pinned.join("; ")));
    }

    let start = Instant::now() + Duration::from_millis(20);
    let window_start = start + args.warmup;
    let window_end = window_start + args.duration;
    start_tx.send(start).map_err(|_| anyhow::anyhow!("the writer thread ended before the start"))?;
    let began = Instant::now();
    let mut progress = Progress { quiet: args.quiet, began, last: began, last_writes: 0, last_drained: 0 };
    progress.until(window_start, "warmup", &writer_live, &drainer_live).await;
    let drainer_sample = || drainer_tid.and_then(|t| procfs::thread_sample(Some(t)).ok());
    let (process_start, drainer_start) = (procfs::sample(None).ok(), drainer_sample());
    progress.until(window_end, "measure", &writer_live, &drainer_live).await;
    let (process_end, drainer_end) = (procfs::sample(None).ok(), drainer_sample());

    let out = match join_within(writer, Duration::from_secs(10) + args.duration).await {
        Some(Ok(out)) => out,
        Some(Err(_)) => anyhow::bail!("the writer thread panicked"),
        None => anyhow::bail!("the writer thread did not end after the window"),
    };
    match join_within(drainer, DRAINER_GRACE).await {
        Some(Ok(Ok(()))) => {}
        Some(Ok(Err(e))) => report.notes.push(format!("the drainer failed: {e:#}")),
        Some(Err(_)) => report.notes.push("the drainer thread panicked".to_owned()),
        None => report.notes.push(format!("the drainer was still reading {DRAINER_GRACE:?} after the writer ended")),
    }

    let window_seconds = out.window_seconds;
    report.window_seconds = window_seconds;
    let ticks = out.start.zip(out.end).map(|(s, e)| e.cpu_ticks.saturating_sub(s.cpu_ticks));
    let writer_cpu_seconds = ticks.unwrap_or(0) as f64 / clock_ticks;
    let per_write = |cpu: f64| (out.writes > 0).then(|| cpu / out.writes as f64 * 1e6);
    let cpu_seconds_per_million = ticks.and_then(|_| per_write(writer_cpu_seconds));
    let writer_sched_cpu_seconds =
        out.start.zip(out.end).and_then(|(s, e)| Some(e.sched_ns?.saturating_sub(s.sched_ns?) as f64 / 1e9));
    let stats = SendFloorStats {
        connections: n,
        rounds_per_second: args.rate,
        payload_bytes: args.size,
        frame_bytes,
        rounds: out.rounds,
        writes: out.writes,
        writes_per_second: out.writes as f64 / window_seconds.max(1e-9),
        failed_writes: out.failed,
        write_errors: out.errors,
        writer_cpu_seconds,
        writer_cpu_ticks: ticks.unwrap_or(0),
        clock_ticks_per_second: clock_ticks,
        writer_cpu_utilisation: writer_cpu_seconds / window_seconds.max(1e-9),
        cpu_seconds_per_million,
        cpu_us_per_write: cpu_seconds_per_million,
        writer_sched_cpu_seconds,
        sched_cpu_seconds_per_million: writer_sched_cpu_seconds.and_then(per_write),
        round_lag_max_ms: out.lag_max.as_secs_f64() * 1e3,
        pinned: not_pinned.is_empty(),
        writer_core: out.end.and_then(|s| s.processor),
        drainer_core: drainer_end.and_then(|s| s.processor),
        drainer_cpu_seconds: drainer_start
            .zip(drainer_end)
            .map(|(s, e)| e.cpu_ticks.saturating_sub(s.cpu_ticks) as f64 / clock_ticks),
        bytes_written: writer_live.bytes.load(Ordering::Relaxed),
        bytes_drained: drainer_live.bytes.load(Ordering::Relaxed),
    };

    if let Some(e) = &out.sample_error {
        report.notes.push(format!("the writer could not read its CPU time ({e}): no CPU figures"));
    }
    if let Some(t) = ticks
        && t < FEW_TICKS
    {
        report.notes.push(format!(
            "only {t} clock ticks of writer CPU in the window: the figure is coarse (one tick is {:.1}% of it); \
             use a longer --duration, more --connections or a higher --rate",
            100.0 / t.max(1) as f64
        ));
    }
    if stats.failed_writes > 0 {
        report.notes.push(format!(
            "{} writes in the window did not take the whole frame ({}): socket buffers filled, the drainer fell behind",
            stats.failed_writes,
            stats.write_errors.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", ")
        ));
    }
    if stats.bytes_drained != stats.bytes_written {
        report
            .notes
            .push(format!("the drainer read {} of the {} bytes written", stats.bytes_drained, stats.bytes_written));
    }
    let interval_ms = 1e3 / args.rate;
    if stats.round_lag_max_ms > interval_ms {
        report.notes.push(format!(
            "a round started {:.1} ms late (rounds are {interval_ms:.1} ms apart): the writer could not keep the schedule",
            stats.round_lag_max_ms
        ));
    }
    if stats.pinned && stats.writer_core.is_some_and(|c| c != WRITER_CORE) {
        report.notes.push(format!("the writer ran on core {:?}, not {WRITER_CORE}", stats.writer_core));
    }

    // The whole process (writer, drainer and controller), for scale; no saturation verdict, as the
    // threads run on cores of their own whatever the process's affinity said.
    let process_cpu = process_start.zip(process_end).map_or(0.0, |(s, e)| s.cpu_seconds_until(&e));
    let cores = if stats.pinned { 2 } else { std::thread::available_parallelism().map_or(1, std::num::NonZero::get) };
    report.generator.cpu_seconds = process_cpu;
    report.generator.cores = cores;
    report.generator.utilisation = process_cpu / (window_seconds.max(1e-9) * cores as f64);
    report.send_floor = Some(stats);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_headers_grow_at_126_and_65536() {
        assert_eq!(text_frame_header(0), [0x81, 0]);
        assert_eq!(text_frame_header(100), [0x81, 100]);
        assert_eq!(text_frame_header(125), [0x81, 125]);
        assert_eq!(text_frame_header(126), [0x81, 126, 0, 126]);
        assert_eq!(text_frame_header(1000), [0x81, 126, 0x03, 0xe8]);
        assert_eq!(text_frame_header(65_535), [0x81, 126, 0xff, 0xff]);
        assert_eq!(text_frame_header(65_536), [0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0]);
    }

    #[test]
    fn frames_are_header_then_payload() {
        let frame = text_frame(100);
        assert_eq!(frame.len(), 102);
        assert!(frame[2..].iter().all(|&b| b == b'x'));
        assert_eq!(text_frame(200).len(), 204);
        assert_eq!(text_frame(0), [0x81, 0]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_short_floor_run_writes_every_frame_and_drains_it() {
        let args = BenchArgs {
            send_floor: true,
            connections: 20,
            rate: 50.0,
            size: 100,
            warmup: Duration::from_millis(200),
            duration: Duration::from_secs(1),
            quiet: true,
            ..BenchArgs::default()
        };
        let report = match crate::run(args).await {
            Ok(r) => r,
            Err(e) => panic!("run failed: {e:#}"),
        };
        report.print_table();
        let Some(f) = &report.send_floor else { panic!("no send_floor section") };
        assert_eq!(f.frame_bytes, 102);
        assert!((49..=51).contains(&f.rounds), "{} rounds", f.rounds);
        assert_eq!(f.writes, f.rounds * 20);
        assert_eq!(f.failed_writes, 0, "{:?}", f.write_errors);
        assert!(f.bytes_written >= f.writes * 102);
        assert_eq!(f.bytes_drained, f.bytes_written);
        let json = serde_json::to_value(&report).map_err(|e| e.to_string());
        assert!(json.as_ref().is_ok_and(|j| j["mode"] == "send_floor" && j["send_floor"]["writes"] == f.writes));
    }
}
