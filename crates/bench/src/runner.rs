//! The run itself: connection tasks, the controller that paces and watches them, and the three
//! modes (load, idle, churn).
//!
//! Each connection is one task that owns its socket and keeps its counters locally; the controller
//! sees progress through a padded block of atomics per connection and gets the final counters back
//! from the task's `JoinHandle` after a per-task oneshot stop (a oneshot is polled with one atomic
//! load, where a shared watch or Notify would take a lock on every received frame).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use futures_util::StreamExt;
use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::accounting::{LatencyShards, LatencySummary, Seen, SeqTracker, Tally, expected_deliveries, new_histogram};
use crate::args::{BenchArgs, Mode, Protocol};
use crate::client::{ConnectError, Target};
use crate::event::{self, Event};
use crate::lean::{Drained, LeanWs};
use crate::procfs::{self, ProcSample};
use crate::report::{ConnectStats, GeneratorStats, IdleStats, LoadStats, Report, RunConfig, ServerStats};

/// Utilisation of its cores above which the generator is called saturated.
const SATURATION: f64 = 0.9;

/// The run's timeline in nanoseconds on `RunState::anchor`'s clock, fixed before any sender starts
/// so that senders and receivers classify a message by the same timestamp.
#[derive(Debug, Clone, Copy)]
struct Plan {
    start_ns: u64,
    window_start_ns: u64,
    window_end_ns: u64,
}

impl Plan {
    fn in_window(&self, ts_ns: u64) -> bool {
        ts_ns >= self.window_start_ns && ts_ns < self.window_end_ns
    }
}

// State 0 (the default) is "connecting".
const STATE_JOINED: u8 = 1;
const STATE_FAILED: u8 = 2;
const STATE_CLOSED: u8 = 3;

/// What the controller can see of one connection while it runs; padded to a cache line so two
/// connections on different threads do not contend.
#[derive(Debug, Default)]
#[repr(align(64))]
struct Live {
    delivered: AtomicU64,
    sent: AtomicU64,
    acked: AtomicU64,
    state: AtomicU8,
}

/// What every connection task of a run shares: the clock, the plan, latency and live counts.
struct RunState {
    anchor: Instant,
    plan: OnceLock<Plan>,
    latency: LatencyShards,
    live: Vec<Live>,
}

impl RunState {
    fn now_ns(&self) -> u64 {
        u64::try_from(self.anchor.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn instant_at(&self, ns: u64) -> Instant {
        self.anchor + Duration::from_nanos(ns)
    }

    fn totals(&self) -> LiveTotals {
        let mut t = LiveTotals::default();
        for l in &self.live {
            t.delivered += l.delivered.load(Ordering::Relaxed);
            t.sent += l.sent.load(Ordering::Relaxed);
            t.acked += l.acked.load(Ordering::Relaxed);
            match l.state.load(Ordering::Relaxed) {
                STATE_JOINED => t.joined += 1,
                STATE_FAILED => t.failed += 1,
                STATE_CLOSED => t.closed += 1,
                _ => {}
            }
        }
        t
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct LiveTotals {
    delivered: u64,
    sent: u64,
    acked: u64,
    joined: u64,
    failed: u64,
    closed: u64,
}

/// Settings every connection task reads.
struct TaskConfig {
    target: Target,
    sources: Sources,
    rooms: usize,
    senders: usize,
    /// Per-sender interval between sends; None = flat out.
    interval: Option<Duration>,
    window: u64,
    size: usize,
    connect_timeout: Duration,
}

/// The local addresses connections are made from, in turn; `None`: the kernel picks.
#[derive(Clone, Debug)]
pub(crate) struct Sources(Option<Arc<[IpAddr]>>);

impl Sources {
    /// With only the default address, the kernel picks the source (as any client would); binding
    /// explicitly only matters to spread ports over several addresses.
    pub(crate) fn from_args(addrs: &[IpAddr]) -> Self {
        let default_only = addrs.len() == 1 && addrs[0] == IpAddr::from([127, 0, 0, 1]);
        Sources((!default_only).then(|| addrs.into()))
    }

    /// The source of connection `idx`.
    pub(crate) fn of(&self, idx: usize) -> Option<IpAddr> {
        self.0.as_ref().map(|s| s[idx % s.len()])
    }
}

/// What a connection task hands back (the API Gateway sample's too: there `joined` is "connected",
/// the room being the whole API, and `acked` the sender's own copies).
#[derive(Debug, Default, Clone)]
pub(crate) struct ConnReport {
    pub(crate) room: usize,
    pub(crate) joined: bool,
    pub(crate) closed_early: bool,
    pub(crate) sent_total: u64,
    pub(crate) sent_in_window: u64,
    pub(crate) acked: u64,
    pub(crate) max_lag_ns: u64,
    pub(crate) received_in_window: u64,
    pub(crate) duplicated: u64,
    pub(crate) out_of_order: u64,
    pub(crate) foreign: u64,
    pub(crate) errors: BTreeMap<String, u64>,
}

/// A connection's outcome of the connect phase.
type ConnectResult = Result<Duration, String>;

/// One load connection's receiving side: its sequence tracker and its counts.
struct ConnState<'a> {
    shared: &'a RunState,
    idx: usize,
    tracker: SeqTracker,
    report: ConnReport,
}

impl ConnState<'_> {
    fn on_text(&mut self, frame: &str) {
        let live = &self.shared.live[self.idx];
        match event::parse_event(frame) {
            Ok(Event::Message { seq, text }) => {
                let Some((ts_ns, _)) = event::parse_payload(&text) else {
                    self.report.foreign += 1;
                    return;
                };
                let seen = self.tracker.observe(seq);
                if seen != Seen::Duplicate {
                    live.delivered.fetch_add(1, Ordering::Relaxed);
                }
                let Some(plan) = self.shared.plan.get() else { return };
                if !plan.in_window(ts_ns) {
                    return;
                }
                match seen {
                    Seen::Duplicate => {
                        self.report.duplicated += 1;
                        return;
                    }
                    Seen::OutOfOrder => self.report.out_of_order += 1,
                    Seen::InOrder => {}
                }
                self.report.received_in_window += 1;
                self.shared.latency.record(self.idx, self.shared.now_ns().saturating_sub(ts_ns));
            }
            Ok(Event::Ack { .. }) => {
                self.report.acked += 1;
                live.acked.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Event::Error { code }) => *self.report.errors.entry(code).or_default() += 1,
            Ok(Event::Joined | Event::Other) => {}
            Err(_) => self.report.foreign += 1,
        }
    }
}

async fn connection_task(
    shared: Arc<RunState>,
    cfg: Arc<TaskConfig>,
    idx: usize,
    permit: tokio::sync::OwnedSemaphorePermit,
    outcomes: mpsc::UnboundedSender<ConnectResult>,
    mut start: watch::Receiver<bool>,
    mut stop: oneshot::Receiver<()>,
) -> ConnReport {
    let room = idx % cfg.rooms;
    let live = &shared.live[idx];
    let began = Instant::now();
    let connected = cfg.target.connect_and_join(cfg.sources.of(idx), room, cfg.connect_timeout).await;
    drop(permit);
    let mut ws: LeanWs = match connected {
        Ok(ws) => ws,
        Err(e) => {
            live.state.store(STATE_FAILED, Ordering::Relaxed);
            let _ = outcomes.send(Err(e.kind()));
            return ConnReport { room, ..ConnReport::default() };
        }
    };
    live.state.store(STATE_JOINED, Ordering::Relaxed);
    // The controller stops listening only when it gives up on the run; nothing to do then.
    let _ = outcomes.send(Ok(began.elapsed()));
    drop(outcomes);

    let mut conn = ConnState {
        shared: &shared,
        idx,
        tracker: SeqTracker::default(),
        report: ConnReport { room, joined: true, ..ConnReport::default() },
    };
    // Frames that came in the same read as `joined` are already buffered: count them now, not
    // after the next read.
    let leftovers = ws.drain(|text| {
        conn.on_text(text);
        true
    });
    if !matches!(leftovers, Ok(Drained::Open)) {
        conn.report.closed_early = true;
        live.state.store(STATE_CLOSED, Ordering::Relaxed);
        return conn.report;
    }
    let is_sender = idx < cfg.senders;
    let mut waiting_for_start = is_sender;
    let mut sending = false;
    let mut seq = 0u64;
    let mut scheduled_ns = 0u64;
    let mut window_end_ns = 0u64;
    let mut payload = String::with_capacity(cfg.size + 32);
    let sleep = tokio::time::sleep(Duration::from_secs(86_400 * 365));
    tokio::pin!(sleep);

    loop {
        let in_flight = conn.report.sent_total.saturating_sub(conn.report.acked);
        let may_send_now = sending && cfg.interval.is_none() && in_flight < cfg.window;
        tokio::select! {
            biased;
            _ = &mut stop => break,
            changed = start.changed(), if waiting_for_start => {
                waiting_for_start = false;
                if changed.is_err() {
                    continue;
                }
                let Some(plan) = shared.plan.get().copied() else { continue };
                sending = true;
                window_end_ns = plan.window_end_ns;
                if let Some(interval) = cfg.interval {
                    // Stagger senders across one interval so the offered load is smooth, not a
                    // burst of every sender at the same instant.
                    let offset = interval.as_nanos() as u64 * idx as u64 / cfg.senders as u64;
                    scheduled_ns = plan.start_ns + offset;
                    sleep.as_mut().reset(shared.instant_at(scheduled_ns).into());
                }
            }
            read = ws.fill() => {
                // Every frame of the read at once (often a dozen under a flood), not one per
                // turn of this loop.
                let drained = match read {
                    Ok(true) => ws.drain(|text| {
                        conn.on_text(text);
                        true
                    }),
                    Ok(false) | Err(_) => Ok(Drained::Closed),
                };
                if !matches!(drained, Ok(Drained::Open)) || ws.flush_pongs().await.is_err() {
                    conn.report.closed_early = true;
                    break;
                }
            },
            () = &mut sleep, if sending && cfg.interval.is_some() => {
                if !send_one(&shared, &cfg, idx, &mut ws, &mut conn.report, &mut payload, &mut seq, window_end_ns, scheduled_ns, &mut sending).await {
                    conn.report.closed_early = true;
                    break;
                }
                let interval = cfg.interval.map_or(0, |i| i.as_nanos() as u64);
                scheduled_ns += interval;
                sleep.as_mut().reset(shared.instant_at(scheduled_ns).into());
            }
            () = std::future::ready(()), if may_send_now => {
                let now = shared.now_ns();
                if !send_one(&shared, &cfg, idx, &mut ws, &mut conn.report, &mut payload, &mut seq, window_end_ns, now, &mut sending).await {
                    conn.report.closed_early = true;
                    break;
                }
            }
        }
    }
    live.state.store(STATE_CLOSED, Ordering::Relaxed);
    conn.report
}

/// Sends one message unless the window is over; false when the connection is gone.
#[allow(clippy::too_many_arguments)]
async fn send_one(
    shared: &RunState,
    cfg: &TaskConfig,
    idx: usize,
    ws: &mut LeanWs,
    report: &mut ConnReport,
    payload: &mut String,
    seq: &mut u64,
    window_end_ns: u64,
    scheduled_ns: u64,
    sending: &mut bool,
) -> bool {
    let now = shared.now_ns();
    if now >= window_end_ns {
        *sending = false;
        return true;
    }
    report.max_lag_ns = report.max_lag_ns.max(now.saturating_sub(scheduled_ns));
    *seq += 1;
    event::write_payload(payload, now, *seq, cfg.size);
    let mut frame = String::with_capacity(payload.len() + 80);
    event::write_sendmessage(&mut frame, payload, idx, *seq);
    if ws.send_text(&frame).await.is_err() {
        return false;
    }
    report.sent_total += 1;
    shared.live[idx].sent.fetch_add(1, Ordering::Relaxed);
    if shared.plan.get().is_some_and(|p| p.in_window(now)) {
        report.sent_in_window += 1;
    }
    true
}

/// Reads the server (when watched) and this process.
#[derive(Debug, Clone, Copy)]
struct Probe {
    server: Option<ProcSample>,
    generator: Option<ProcSample>,
}

fn probe(pid: Option<u32>) -> Probe {
    Probe { server: pid.and_then(|p| procfs::sample(Some(p)).ok()), generator: procfs::sample(None).ok() }
}

/// Prints one progress line a second on stderr.
struct Progress {
    quiet: bool,
    began: Instant,
    last: Instant,
    last_totals: LiveTotals,
}

impl Progress {
    fn new(quiet: bool) -> Self {
        let now = Instant::now();
        Self { quiet, began: now, last: now, last_totals: LiveTotals::default() }
    }

    fn line(&mut self, phase: &str, t: LiveTotals, requested: usize) {
        let now = Instant::now();
        let dt = now.duration_since(self.last).as_secs_f64().max(1e-6);
        if !self.quiet {
            let rate = |a: u64, b: u64| a.saturating_sub(b) as f64 / dt;
            eprintln!(
                "[bench {:>6.1}s] {phase:<8} conns {}/{} (failed {}, closed {})  sent {:.0}/s  acked {:.0}/s  delivered {:.0}/s",
                now.duration_since(self.began).as_secs_f64(),
                t.joined,
                requested,
                t.failed,
                t.closed,
                rate(t.sent, self.last_totals.sent),
                rate(t.acked, self.last_totals.acked),
                rate(t.delivered, self.last_totals.delivered),
            );
        }
        self.last = now;
        self.last_totals = t;
    }
}

/// Runs the benchmark described by `args`.
pub(crate) async fn run(args: BenchArgs) -> anyhow::Result<Report> {
    args.validate()?;
    let nofile_limit = raise_nofile_limit();
    let sources = Sources::from_args(&args.source_addrs);
    let mut report = Report {
        label: args.label.clone(),
        mode: args.mode(),
        url: args.url.clone(),
        started_at_unix: SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
        config: RunConfig {
            connections: args.connections,
            rooms: args.rooms,
            senders: args.senders,
            rate: args.rate,
            window: args.window,
            size: args.size,
            warmup_seconds: args.warmup.as_secs_f64(),
            duration_seconds: args.duration.as_secs_f64(),
            connect_rate: args.connect_rate,
            source_addrs: args.source_addrs.len(),
        },
        window_seconds: args.duration.as_secs_f64(),
        connect: ConnectStats::default(),
        load: None,
        idle: None,
        send_floor: None,
        storm: None,
        server: None,
        generator: GeneratorStats { nofile_limit, ..GeneratorStats::default() },
        notes: Vec::new(),
    };
    if let Some(load) = procfs::loadavg_1min()
        && load > 1.0
    {
        report.notes.push(format!(
            "the machine was busy before the run (1-minute load average {load:.2}): other processes competed for the CPUs"
        ));
    }
    // The send floor holds both ends of each of its connections.
    let ends = if args.mode() == Mode::SendFloor { 2 } else { 1 };
    let needed_files = args.connections as u64 * ends + 64;
    if args.mode() != Mode::Churn && nofile_limit < needed_files {
        report.notes.push(format!("RLIMIT_NOFILE is {nofile_limit}, below the {needed_files} files this run needs"));
    }
    let resolve = || async { Target::resolve(&args.url).await.with_context(|| format!("resolving {}", args.url)) };
    match args.mode() {
        Mode::Churn => run_churn(&args, resolve().await?, sources, &mut report).await?,
        Mode::Load if args.protocol == Protocol::ApigwSample => {
            crate::apigw::run(&args, resolve().await?, &mut report).await?;
        }
        Mode::Load | Mode::Idle => run_connected(&args, resolve().await?, sources, &mut report).await?,
        Mode::SendFloor => crate::floor::run(&args, &mut report).await?,
        Mode::Storm => crate::storm::run(&args, resolve().await?, sources, &mut report).await?,
    }
    if let Some(path) = &args.json {
        let json = serde_json::to_vec_pretty(&report).context("serialising the report")?;
        std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(report)
}

fn raise_nofile_limit() -> u64 {
    // Each connection is a file; the default soft limit (1024) would end the run early.
    rlimit::increase_nofile_limit(u64::MAX).unwrap_or(0)
}

/// Load and idle: connect every connection, then run senders or hold.
async fn run_connected(args: &BenchArgs, target: Target, sources: Sources, report: &mut Report) -> anyhow::Result<()> {
    let n = args.connections;
    let mode = args.mode();
    let shared = Arc::new(RunState {
        anchor: Instant::now(),
        plan: OnceLock::new(),
        latency: LatencyShards::new(32),
        live: (0..n).map(|_| Live::default()).collect(),
    });
    let cfg = Arc::new(TaskConfig {
        target,
        sources,
        rooms: args.rooms.max(1),
        senders: if mode == Mode::Load { args.senders } else { 0 },
        interval: (args.rate > 0.0).then(|| Duration::from_secs_f64(args.senders as f64 / args.rate)),
        window: args.window,
        size: args.size,
        connect_timeout: args.connect_timeout,
    });
    let before_connect = probe(args.server_pid);
    if args.server_pid.is_some() && before_connect.server.is_none() {
        anyhow::bail!("cannot read /proc/{} (is --server-pid right?)", args.server_pid.unwrap_or(0));
    }

    // Connect phase: a spawner task paces attempts while this task collects outcomes.
    let (outcome_tx, mut outcome_rx) = mpsc::unbounded_channel::<ConnectResult>();
    let (start_tx, start_rx) = watch::channel(false);
    let semaphore = Arc::new(Semaphore::new(args.connect_concurrency));
    let connect_rate = args.connect_rate;
    let spawner = {
        let shared = Arc::clone(&shared);
        let cfg = Arc::clone(&cfg);
        tokio::spawn(async move {
            let began = Instant::now();
            let mut tasks: Vec<(JoinHandle<ConnReport>, oneshot::Sender<()>)> = Vec::with_capacity(n);
            for idx in 0..n {
                if connect_rate > 0.0 {
                    tokio::time::sleep_until((began + Duration::from_secs_f64(idx as f64 / connect_rate)).into()).await;
                }
                let Ok(permit) = Arc::clone(&semaphore).acquire_owned().await else { break };
                let (stop_tx, stop_rx) = oneshot::channel();
                let handle = tokio::spawn(connection_task(
                    Arc::clone(&shared),
                    Arc::clone(&cfg),
                    idx,
                    permit,
                    outcome_tx.clone(),
                    start_rx.clone(),
                    stop_rx,
                ));
                tasks.push((handle, stop_tx));
            }
            tasks
        })
    };

    let connect_began = Instant::now();
    let mut progress = Progress::new(args.quiet);
    let mut connect_latency = new_histogram();
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    ticker.tick().await;
    let mut outcomes = 0usize;
    while outcomes < n {
        tokio::select! {
            outcome = outcome_rx.recv() => match outcome {
                Some(Ok(latency)) => {
                    outcomes += 1;
                    report.connect.established += 1;
                    connect_latency.saturating_record(u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX));
                }
                Some(Err(kind)) => {
                    outcomes += 1;
                    report.connect.failed += 1;
                    *report.connect.failures.entry(kind).or_default() += 1;
                }
                None => break,
            },
            _ = ticker.tick() => progress.line("connect", shared.totals(), n),
        }
    }
    let tasks = spawner.await.context("the connection spawner panicked")?;
    report.connect.attempted = n as u64;
    report.connect.seconds = connect_began.elapsed().as_secs_f64();
    report.connect.per_second = report.connect.established as f64 / report.connect.seconds.max(1e-9);
    report.connect.latency = LatencySummary::from_histogram(&connect_latency);
    if report.connect.failed > 0 {
        report.notes.push(format!(
            "{} of {} connections failed ({}): rooms are smaller, and loss is counted against the members that joined",
            report.connect.failed,
            n,
            report.connect.failures.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", ")
        ));
    }
    if report.connect.established == 0 {
        stop_all(tasks).await;
        anyhow::bail!("no connection reached `joined`: {:?}", report.connect.failures);
    }

    // Timeline: warm-up from now, then the measured window.
    let start_ns = shared.now_ns();
    let plan = Plan {
        start_ns,
        window_start_ns: start_ns + u64::try_from(args.warmup.as_nanos()).unwrap_or(u64::MAX / 4),
        window_end_ns: start_ns + u64::try_from((args.warmup + args.duration).as_nanos()).unwrap_or(u64::MAX / 2),
    };
    let _ = shared.plan.set(plan);
    let _ = start_tx.send(true);
    let phase = if mode == Mode::Load { "warmup" } else { "settle" };
    tick_until(&shared, &mut ticker, &mut progress, phase, n, shared.instant_at(plan.window_start_ns)).await;

    let peak_is_window = args.server_pid.is_some_and(procfs::reset_peak_rss);
    let window_start = probe(args.server_pid);
    let window_began = Instant::now();
    let phase = if mode == Mode::Load { "measure" } else { "hold" };
    tick_until(&shared, &mut ticker, &mut progress, phase, n, shared.instant_at(plan.window_end_ns)).await;
    let window_end = probe(args.server_pid);
    let window_seconds = window_began.elapsed().as_secs_f64();
    report.window_seconds = window_seconds;

    // Drain: wait for acknowledgements and deliveries still in flight, bounded by --drain.
    let mut drained = true;
    if mode == Mode::Load {
        drained = drain(&shared, args.drain, &mut progress, n).await;
    }
    let closed_during_run = shared.totals().closed;
    let results = stop_all(tasks).await;

    fill_generator(report, window_start.generator, window_end.generator, window_seconds);
    let server = args.server_pid.zip(before_connect.server).zip(window_start.server.zip(window_end.server)).map(
        |((pid, before), (start, end))| ServerStats {
            pid,
            cpu_seconds: start.cpu_seconds_until(&end),
            cpu_utilisation: start.cpu_seconds_until(&end) / window_seconds.max(1e-9),
            cpu_seconds_per_million_deliveries: None,
            rss_before_connect_kib: before.rss_kib,
            rss_start_kib: start.rss_kib,
            rss_end_kib: end.rss_kib,
            peak_rss_kib: end.hwm_kib,
            peak_is_window,
            rss_per_connection_bytes: None,
        },
    );
    if args.server_pid.is_some() && server.is_none() {
        report.notes.push("the server process could not be read at the end of the window (did it exit?)".to_owned());
    }
    report.server = server;
    if let Some(s) = &report.server
        && !s.peak_is_window
    {
        report.notes.push("peak RSS is since the server started (/proc/PID/clear_refs not writable)".to_owned());
    }

    match mode {
        Mode::Load => fill_load(args, report, &results, window_seconds, drained),
        Mode::Idle => {
            let held = results.iter().filter(|r| r.joined && !r.closed_early).count() as u64;
            report.idle = Some(IdleStats { held, unexpected_closes: closed_during_run });
            if let Some(s) = report.server.as_mut()
                && held > 0
            {
                s.rss_per_connection_bytes =
                    Some(s.rss_end_kib.saturating_sub(s.rss_before_connect_kib) as f64 * 1024.0 / held as f64);
            }
        }
        Mode::Churn | Mode::SendFloor | Mode::Storm => {}
    }
    if let Some(load) = report.load.as_mut() {
        load.latency = LatencySummary::from_histogram(&shared.latency.merged());
    }
    Ok(())
}

async fn tick_until(
    shared: &RunState,
    ticker: &mut tokio::time::Interval,
    progress: &mut Progress,
    phase: &str,
    n: usize,
    deadline: Instant,
) {
    let until = tokio::time::sleep_until(deadline.into());
    tokio::pin!(until);
    loop {
        tokio::select! {
            () = &mut until => return,
            _ = ticker.tick() => progress.line(phase, shared.totals(), n),
        }
    }
}

/// Waits until every sent message is acknowledged and deliveries have stopped for a moment.
async fn drain(shared: &RunState, limit: Duration, progress: &mut Progress, n: usize) -> bool {
    let deadline = Instant::now() + limit;
    let quiet_for = Duration::from_millis(300);
    let mut last = shared.totals();
    let mut last_change = Instant::now();
    let mut last_line = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let t = shared.totals();
        if t.delivered != last.delivered || t.acked != last.acked {
            last_change = Instant::now();
        }
        last = t;
        if t.acked >= t.sent && last_change.elapsed() >= quiet_for {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        if last_line.elapsed() >= Duration::from_secs(1) {
            progress.line("drain", t, n);
            last_line = Instant::now();
        }
    }
}

async fn stop_all(tasks: Vec<(JoinHandle<ConnReport>, oneshot::Sender<()>)>) -> Vec<ConnReport> {
    let mut handles = Vec::with_capacity(tasks.len());
    for (handle, stop) in tasks {
        // A task that already ended has dropped its receiver; nothing to stop then.
        let _ = stop.send(());
        handles.push(handle);
    }
    let mut results = Vec::with_capacity(handles.len());
    for handle in handles {
        // A panicked task's counters are lost; its deliveries then show up as loss, never as success.
        results.push(handle.await.unwrap_or_default());
    }
    results
}

pub(crate) fn fill_generator(
    report: &mut Report,
    start: Option<ProcSample>,
    end: Option<ProcSample>,
    window_seconds: f64,
) {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let cpu_seconds = start.zip(end).map_or(0.0, |(s, e)| s.cpu_seconds_until(&e));
    let utilisation = cpu_seconds / (window_seconds.max(1e-9) * cores as f64);
    let saturated = utilisation >= SATURATION;
    report.generator.cpu_seconds = cpu_seconds;
    report.generator.cores = cores;
    report.generator.utilisation = utilisation;
    report.generator.saturated = saturated;
    if saturated {
        report.notes.push(format!(
            "the generator used {:.0}% of its {cores} core(s): figures may show the generator's limit, not the server's",
            utilisation * 100.0
        ));
    }
}

pub(crate) fn fill_load(
    args: &BenchArgs,
    report: &mut Report,
    results: &[ConnReport],
    window_seconds: f64,
    drained: bool,
) {
    let rooms = args.rooms.max(1);
    let mut sent_per_room = vec![0u64; rooms];
    let mut members = vec![0u64; rooms];
    let mut load = LoadStats { drained, ..LoadStats::default() };
    let mut tally = Tally::default();
    let mut max_lag_ns = 0u64;
    for r in results {
        if r.joined {
            members[r.room] += 1;
        }
        if r.closed_early {
            load.unexpected_closes += 1;
        }
        sent_per_room[r.room] += r.sent_in_window;
        load.sent += r.sent_in_window;
        load.sent_total += r.sent_total;
        load.acked += r.acked;
        max_lag_ns = max_lag_ns.max(r.max_lag_ns);
        tally.received += r.received_in_window;
        tally.duplicated += r.duplicated;
        tally.out_of_order += r.out_of_order;
        load.foreign_frames += r.foreign;
        for (code, count) in &r.errors {
            *load.errors.entry(code.clone()).or_default() += count;
        }
    }
    tally.expected = expected_deliveries(&sent_per_room, &members);
    load.set_totals(&tally, window_seconds);
    load.send_lag_max_ms = max_lag_ns as f64 / 1e6;
    report.set_cpu_per_delivery(load.delivered);
    if !drained {
        report
            .notes
            .push(format!("not drained after {:?}: some acknowledgements or deliveries never arrived", args.drain));
    }
    if args.rate > 0.0 && load.offered_per_second < args.rate * 0.95 {
        report.notes.push(format!(
            "offered {:.0} msgs/s of the {} asked: the senders fell behind (send lag up to {:.0} ms)",
            load.offered_per_second, args.rate, load.send_lag_max_ms
        ));
    }
    if load.lost > 0 || load.duplicated > 0 || load.out_of_order > 0 {
        report.notes.push(format!(
            "{} deliveries lost, {} duplicated, {} out of order",
            load.lost, load.duplicated, load.out_of_order
        ));
    }
    // Latency comes from the shared histograms; `run_connected` adds it.
    report.load = Some(load);
}

/// Churn: `--connections` loops connect (upgrade only) and disconnect until the window ends.
async fn run_churn(args: &BenchArgs, target: Target, sources: Sources, report: &mut Report) -> anyhow::Result<()> {
    let target = Arc::new(target);
    let began = Instant::now();
    let window_start_at = began + args.warmup;
    let window_end_at = window_start_at + args.duration;
    let latency = Arc::new(LatencyShards::new(8));
    let completed = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let timeout = args.connect_timeout;
    let mut workers = Vec::with_capacity(args.connections);
    for w in 0..args.connections {
        let (target, sources, latency, completed, failed) =
            (Arc::clone(&target), sources.clone(), Arc::clone(&latency), Arc::clone(&completed), Arc::clone(&failed));
        workers.push(tokio::spawn(async move {
            let mut in_window = 0u64;
            let mut attempts_in_window = 0u64;
            let mut failures: BTreeMap<String, u64> = BTreeMap::new();
            let mut i = w;
            while Instant::now() < window_end_at {
                let source = sources.of(i);
                i += 1;
                let t0 = Instant::now();
                let counted = t0 >= window_start_at;
                attempts_in_window += u64::from(counted);
                let result =
                    tokio::time::timeout(timeout, target.connect(source)).await.unwrap_or(Err(ConnectError::Timeout));
                match result {
                    Ok(mut ws) => {
                        let done = Instant::now();
                        completed.fetch_add(1, Ordering::Relaxed);
                        if counted && done < window_end_at {
                            in_window += 1;
                            latency.record(w, u64::try_from((done - t0).as_nanos()).unwrap_or(u64::MAX));
                        }
                        // Close politely and let the server close TCP first, so the TIME_WAIT state
                        // lands on its side and our ephemeral ports stay free.
                        let _ = tokio::time::timeout(Duration::from_secs(2), async {
                            let _ = ws.close(None).await;
                            while let Some(Ok(_)) = ws.next().await {}
                        })
                        .await;
                    }
                    Err(e) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        if counted {
                            *failures.entry(e.kind()).or_default() += 1;
                        }
                        // Back off a little so a refusing server is not spun against.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
            (in_window, attempts_in_window, failures)
        }));
    }
    let mut last = (Instant::now(), 0u64);
    let mut window_probe = None;
    let mut peak_is_window = false;
    let mut ticker = tokio::time::interval(Duration::from_millis(100));
    while Instant::now() < window_end_at {
        ticker.tick().await;
        if window_probe.is_none() && Instant::now() >= window_start_at {
            peak_is_window = args.server_pid.is_some_and(procfs::reset_peak_rss);
            window_probe = Some((Instant::now(), probe(args.server_pid)));
        }
        if last.0.elapsed() >= Duration::from_secs(1) {
            let c = completed.load(Ordering::Relaxed);
            if !args.quiet {
                eprintln!(
                    "[bench {:>6.1}s] churn    connects {:.0}/s  failed {}",
                    began.elapsed().as_secs_f64(),
                    (c - last.1) as f64 / last.0.elapsed().as_secs_f64(),
                    failed.load(Ordering::Relaxed)
                );
            }
            last = (Instant::now(), c);
        }
    }
    let end_probe = probe(args.server_pid);
    let (window_began, start_probe) = window_probe.unwrap_or((window_start_at, end_probe));
    let window_seconds = window_began.elapsed().as_secs_f64().max(1e-9);
    for worker in workers {
        let (in_window, attempts, failures) = worker.await.unwrap_or_default();
        report.connect.established += in_window;
        report.connect.attempted += attempts;
        for (k, v) in failures {
            report.connect.failed += v;
            *report.connect.failures.entry(k).or_default() += v;
        }
    }
    report.window_seconds = window_seconds;
    report.connect.seconds = window_seconds;
    report.connect.per_second = report.connect.established as f64 / window_seconds;
    report.connect.latency = LatencySummary::from_histogram(&latency.merged());
    fill_generator(report, start_probe.generator, end_probe.generator, window_seconds);
    report.server =
        args.server_pid.zip(start_probe.server.zip(end_probe.server)).map(|(pid, (start, end))| ServerStats {
            pid,
            cpu_seconds: start.cpu_seconds_until(&end),
            cpu_utilisation: start.cpu_seconds_until(&end) / window_seconds,
            rss_before_connect_kib: start.rss_kib,
            rss_start_kib: start.rss_kib,
            rss_end_kib: end.rss_kib,
            peak_rss_kib: end.hwm_kib,
            peak_is_window,
            ..ServerStats::default()
        });
    if report.connect.failed > 0 {
        report.notes.push(format!("{} connect attempts failed in the window", report.connect.failed));
    }
    Ok(())
}
