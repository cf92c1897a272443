//! The result of a run: serialisable for `--json`, printable as a table.

use std::collections::BTreeMap;

use crate::accounting::{LatencySummary, Tally};
use crate::args::Mode;

/// Everything one run measured. Rates are per second of the measured window; latencies are in
/// microseconds; memory in KiB unless the name says bytes.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    /// `--label`, to tell servers apart in combined outputs.
    pub label: Option<String>,
    /// Load, idle, churn or send floor.
    pub mode: Mode,
    /// The server's URL (send floor: the loopback listener's address).
    pub url: String,
    /// Seconds since the Unix epoch when the run started.
    pub started_at_unix: u64,
    /// The flags that shaped the run.
    pub config: RunConfig,
    /// Length of the measured window, seconds.
    pub window_seconds: f64,
    /// The connect phase (or, in churn mode, the connect/disconnect loops).
    pub connect: ConnectStats,
    /// Load mode only.
    pub load: Option<LoadStats>,
    /// Idle mode only.
    pub idle: Option<IdleStats>,
    /// Send-floor mode only.
    pub send_floor: Option<SendFloorStats>,
    /// Storm mode only.
    pub storm: Option<crate::storm::StormStats>,
    /// With `--server-pid`.
    pub server: Option<ServerStats>,
    /// The generator's own CPU use, to show it was not the bottleneck.
    pub generator: GeneratorStats,
    /// Warnings a reader needs to interpret the figures.
    pub notes: Vec<String>,
}

/// The flags of the run, as used.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunConfig {
    /// `--connections`.
    pub connections: usize,
    /// `--rooms`.
    pub rooms: usize,
    /// `--senders`.
    pub senders: usize,
    /// `--rate` (0 = flat out).
    pub rate: f64,
    /// `--window` (flat out only).
    pub window: u64,
    /// `--size`, bytes of message text.
    pub size: usize,
    /// `--warmup`, seconds.
    pub warmup_seconds: f64,
    /// `--duration`, seconds.
    pub duration_seconds: f64,
    /// `--connect-rate` (0 = unpaced).
    pub connect_rate: f64,
    /// How many source addresses were used.
    pub source_addrs: usize,
}

/// Connecting.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ConnectStats {
    /// Connections tried (churn: connect attempts in the window).
    pub attempted: u64,
    /// Connections that reached `joined` (churn: upgrades completed in the window).
    pub established: u64,
    /// Attempts that failed.
    pub failed: u64,
    /// Failures by kind (`http_429`, `timeout`, `tcp_connectionrefused`, ...).
    pub failures: BTreeMap<String, u64>,
    /// Wall time of the connect phase (churn: the window), seconds.
    pub seconds: f64,
    /// Established connections per second over `seconds`.
    pub per_second: f64,
    /// Time from TCP connect to `joined` (churn: to the completed upgrade).
    pub latency: LatencySummary,
}

/// Messages and deliveries in the measured window. A message belongs to the window when the send
/// timestamp in its text does, whenever it is delivered.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct LoadStats {
    /// Messages sent in the window.
    pub sent: u64,
    /// Acknowledgements received (whole run).
    pub acked: u64,
    /// Messages sent (whole run, warm-up included).
    pub sent_total: u64,
    /// Sent per second: the offered load actually achieved.
    pub offered_per_second: f64,
    /// Deliveries the window should produce: sent x room size.
    pub expected: u64,
    /// Distinct deliveries received.
    pub delivered: u64,
    /// Delivered per second.
    pub delivered_per_second: f64,
    /// Expected minus delivered.
    pub lost: u64,
    /// Deliveries of an already seen `seq`.
    pub duplicated: u64,
    /// Deliveries after a higher `seq`.
    pub out_of_order: u64,
    /// Frames that were not ours (not JSON, or a text we did not write).
    pub foreign_frames: u64,
    /// Send-to-receive latency over all deliveries in the window.
    pub latency: LatencySummary,
    /// Largest delay of a paced send behind its schedule, ms (large: the server pushed back).
    pub send_lag_max_ms: f64,
    /// `error` events by code.
    pub errors: BTreeMap<String, u64>,
    /// Connections the server closed (or that failed) during the run.
    pub unexpected_closes: u64,
    /// Whether every acknowledgement and delivery arrived before `--drain` ran out.
    pub drained: bool,
}

/// Holding idle connections.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct IdleStats {
    /// Connections held through the window.
    pub held: u64,
    /// Connections the server closed during the window.
    pub unexpected_closes: u64,
}

/// The send floor: one thread writing one WebSocket frame to each of many loopback connections per
/// round, as a server delivering one message to each of its clients with one `send()` apiece would,
/// and nothing else. Its CPU per write is the least a server can spend per delivery here.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SendFloorStats {
    /// Loopback connections written to.
    pub connections: usize,
    /// Rounds per second asked (`--rate`); each round writes one frame to every connection.
    pub rounds_per_second: f64,
    /// Payload bytes of each frame (`--size`).
    pub payload_bytes: usize,
    /// Bytes of each frame: the server text-frame header (2, 4 or 10 bytes) plus the payload.
    pub frame_bytes: usize,
    /// Rounds in the measured window.
    pub rounds: u64,
    /// Writes in the window that took the whole frame.
    pub writes: u64,
    /// Full writes per second of the window.
    pub writes_per_second: f64,
    /// Writes in the window that did not take the whole frame (short or refused).
    pub failed_writes: u64,
    /// The failed writes by kind (`short_write`, `wouldblock`, ...).
    pub write_errors: BTreeMap<String, u64>,
    /// The writer thread's user plus system CPU seconds in the window, from its `stat` ticks.
    pub writer_cpu_seconds: f64,
    /// The same in clock ticks (each tick is `1 / clock_ticks_per_second` s: few ticks, coarse figure).
    pub writer_cpu_ticks: u64,
    /// Clock ticks per second (`getconf CLK_TCK`).
    pub clock_ticks_per_second: f64,
    /// Writer CPU seconds per wall second of the window.
    pub writer_cpu_utilisation: f64,
    /// The headline: writer CPU seconds per 1,000,000 full writes (one send per delivery), the unit
    /// of the server's "CPU seconds per million deliveries".
    pub cpu_seconds_per_million: Option<f64>,
    /// The same as CPU microseconds per write (numerically equal).
    pub cpu_us_per_write: Option<f64>,
    /// The writer's CPU seconds in the window from `schedstat` (nanosecond resolution), a cross-check.
    pub writer_sched_cpu_seconds: Option<f64>,
    /// `writer_sched_cpu_seconds` per 1,000,000 full writes.
    pub sched_cpu_seconds_per_million: Option<f64>,
    /// Largest delay of a round's start behind its schedule in the window, ms.
    pub round_lag_max_ms: f64,
    /// Whether both threads were pinned (writer to core 0, drainer to core 1).
    pub pinned: bool,
    /// The core the writer last ran on at the end of the window.
    pub writer_core: Option<u32>,
    /// The core the drainer last ran on at the end of the window.
    pub drainer_core: Option<u32>,
    /// The drainer thread's CPU seconds in the window.
    pub drainer_cpu_seconds: Option<f64>,
    /// Bytes written over the whole run (warm-up included).
    pub bytes_written: u64,
    /// Bytes the drainer read over the whole run (equal to `bytes_written` when it kept up).
    pub bytes_drained: u64,
}

impl LoadStats {
    /// The window's delivery totals and rates from its tally (`sent` already counted).
    pub(crate) fn set_totals(&mut self, tally: &Tally, window_seconds: f64) {
        self.expected = tally.expected;
        self.delivered = tally.received;
        self.lost = tally.lost();
        self.duplicated = tally.duplicated;
        self.out_of_order = tally.out_of_order;
        self.offered_per_second = self.sent as f64 / window_seconds.max(1e-9);
        self.delivered_per_second = self.delivered as f64 / window_seconds.max(1e-9);
    }
}

impl Report {
    /// The watched server's CPU seconds per million of the window's `delivered` deliveries.
    pub(crate) fn set_cpu_per_delivery(&mut self, delivered: u64) {
        if let Some(s) = self.server.as_mut()
            && delivered > 0
        {
            s.cpu_seconds_per_million_deliveries = Some(s.cpu_seconds / (delivered as f64 / 1e6));
        }
    }
}

/// The server process over the measured window.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ServerStats {
    /// Its pid.
    pub pid: u32,
    /// User plus system CPU seconds in the window.
    pub cpu_seconds: f64,
    /// CPU seconds per wall second (1.0 = one core busy).
    pub cpu_utilisation: f64,
    /// CPU seconds per million deliveries (load mode).
    pub cpu_seconds_per_million_deliveries: Option<f64>,
    /// RSS before the first connection, KiB.
    pub rss_before_connect_kib: u64,
    /// RSS at the window's start, KiB.
    pub rss_start_kib: u64,
    /// RSS at the window's end, KiB.
    pub rss_end_kib: u64,
    /// VmHWM at the end: the peak over the window when `peak_is_window`, else since start.
    pub peak_rss_kib: u64,
    /// Whether the peak could be reset at the window's start.
    pub peak_is_window: bool,
    /// (RSS at the end - RSS before connecting) / connections held, bytes (idle mode).
    pub rss_per_connection_bytes: Option<f64>,
}

/// The load generator itself.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct GeneratorStats {
    /// CPU seconds in the window.
    pub cpu_seconds: f64,
    /// Cores the generator may run on (its CPU affinity).
    pub cores: usize,
    /// CPU seconds / (window x cores).
    pub utilisation: f64,
    /// Utilisation at or above 90%: figures may show the generator's limit, not the server's.
    pub saturated: bool,
    /// RLIMIT_NOFILE after raising it.
    pub nofile_limit: u64,
}

fn fmt_latency(l: &LatencySummary) -> String {
    if l.count == 0 {
        return "-".to_owned();
    }
    format!(
        "p50 {} / p90 {} / p99 {} / p99.9 {} / max {}",
        fmt_us(l.p50_us),
        fmt_us(l.p90_us),
        fmt_us(l.p99_us),
        fmt_us(l.p999_us),
        fmt_us(l.max_us)
    )
}

fn fmt_us(us: f64) -> String {
    if us >= 1_000.0 { format!("{:.2} ms", us / 1_000.0) } else { format!("{us:.0} µs") }
}

fn fmt_map(m: &BTreeMap<String, u64>) -> String {
    if m.is_empty() {
        return "none".to_owned();
    }
    m.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", ")
}

impl Report {
    /// The report as (name, value) rows, in display order.
    pub fn rows(&self) -> Vec<(String, String)> {
        if let Some(f) = &self.send_floor {
            return self.floor_rows(f);
        }
        let mut rows: Vec<(String, String)> = Vec::new();
        let mut row = |k: &str, v: String| rows.push((k.to_owned(), v));
        row("server", format!("{} ({})", self.label.as_deref().unwrap_or("-"), self.url));
        let c = &self.config;
        row(
            "run",
            format!(
                "{:?}: {} connections, {} rooms, {} senders, rate {}, {} B, warm-up {:.1} s, window {:.1} s",
                self.mode,
                c.connections,
                c.rooms,
                c.senders,
                if c.rate == 0.0 { format!("flat out (window {})", c.window) } else { format!("{}/s", c.rate) },
                c.size,
                c.warmup_seconds,
                self.window_seconds
            ),
        );
        let k = &self.connect;
        row(
            "connections",
            format!(
                "{} of {} in {:.2} s ({:.0}/s), {} failed ({})",
                k.established,
                k.attempted,
                k.seconds,
                k.per_second,
                k.failed,
                fmt_map(&k.failures)
            ),
        );
        row("connect latency", fmt_latency(&k.latency));
        if let Some(l) = &self.load {
            row(
                "offered",
                format!("{:.0} msgs/s ({} sent in window, {} acked in run)", l.offered_per_second, l.sent, l.acked),
            );
            row(
                "delivered",
                format!("{:.0} msgs/s ({} of {} expected)", l.delivered_per_second, l.delivered, l.expected),
            );
            row(
                "lost / dup / out-of-order",
                format!("{} / {} / {}  (foreign frames {})", l.lost, l.duplicated, l.out_of_order, l.foreign_frames),
            );
            row("latency", fmt_latency(&l.latency));
            row("send lag max", format!("{:.1} ms", l.send_lag_max_ms));
            row("server errors", fmt_map(&l.errors));
            row("unexpected closes", l.unexpected_closes.to_string());
        }
        for (k, v) in self.storm.iter().flat_map(crate::storm::StormStats::rows) {
            row(&k, v);
        }
        if let Some(i) = &self.idle {
            row("idle", format!("{} held, {} closed by the server", i.held, i.unexpected_closes));
        }
        if let Some(s) = &self.server {
            row("server cpu", format!("{:.2} s ({:.0}% of a core)", s.cpu_seconds, s.cpu_utilisation * 100.0));
            if let Some(per) = s.cpu_seconds_per_million_deliveries {
                row("server cpu per 1M deliveries", format!("{per:.2} s"));
            }
            row(
                "server rss",
                format!(
                    "before {} KiB, start {} KiB, end {} KiB, peak {} KiB ({})",
                    s.rss_before_connect_kib,
                    s.rss_start_kib,
                    s.rss_end_kib,
                    s.peak_rss_kib,
                    if s.peak_is_window { "window" } else { "since process start" }
                ),
            );
            if let Some(b) = s.rss_per_connection_bytes {
                row("server rss per connection", format!("{:.1} KiB", b / 1024.0));
            }
        }
        let g = &self.generator;
        row(
            "generator cpu",
            format!(
                "{:.2} s, {:.0}% of {} core(s){}",
                g.cpu_seconds,
                g.utilisation * 100.0,
                g.cores,
                if g.saturated { " - SATURATED" } else { "" }
            ),
        );
        for note in &self.notes {
            row("note", note.clone());
        }
        rows
    }

    /// The rows of a send-floor run: no server, one writer thread and its drainer.
    fn floor_rows(&self, f: &SendFloorStats) -> Vec<(String, String)> {
        let mut rows: Vec<(String, String)> = Vec::new();
        let mut row = |k: &str, v: String| rows.push((k.to_owned(), v));
        let opt = |v: Option<f64>, digits: usize| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.digits$}"));
        let core = |c: Option<u32>| c.map_or_else(|| "?".to_owned(), |c| c.to_string());
        row("server", format!("none: a writer thread on loopback TCP ({})", self.url));
        row(
            "run",
            format!(
                "{:?}: {} connections, {} rounds/s, {} B payload ({} B frame), warm-up {:.1} s, window {:.1} s",
                self.mode,
                f.connections,
                f.rounds_per_second,
                f.payload_bytes,
                f.frame_bytes,
                self.config.warmup_seconds,
                self.window_seconds
            ),
        );
        let k = &self.connect;
        row("connections", format!("{} of {} in {:.2} s", k.established, k.attempted, k.seconds));
        row(
            "writes",
            format!(
                "{} in {} rounds ({:.0}/s), {} failed ({})",
                f.writes,
                f.rounds,
                f.writes_per_second,
                f.failed_writes,
                fmt_map(&f.write_errors)
            ),
        );
        row(
            "writer cpu",
            format!(
                "{:.2} s ({} ticks at {}/s, {:.1}% of core {}); schedstat {} s",
                f.writer_cpu_seconds,
                f.writer_cpu_ticks,
                f.clock_ticks_per_second,
                f.writer_cpu_utilisation * 100.0,
                core(f.writer_core),
                opt(f.writer_sched_cpu_seconds, 3)
            ),
        );
        row(
            "send floor",
            format!(
                "{} CPU s per 1M deliveries (one send per delivery) = {} CPU µs per write; schedstat {} s per 1M",
                opt(f.cpu_seconds_per_million, 2),
                opt(f.cpu_us_per_write, 2),
                opt(f.sched_cpu_seconds_per_million, 2)
            ),
        );
        row("round lag max", format!("{:.2} ms", f.round_lag_max_ms));
        row(
            "drainer",
            format!(
                "core {}, cpu {} s; {} of {} bytes drained",
                core(f.drainer_core),
                opt(f.drainer_cpu_seconds, 2),
                f.bytes_drained,
                f.bytes_written
            ),
        );
        row("generator cpu", format!("{:.2} s (writer, drainer and controller)", self.generator.cpu_seconds));
        for note in &self.notes {
            row("note", note.clone());
        }
        rows
    }

    /// Prints the report as a two-column table on stdout.
    pub fn print_table(&self) {
        let rows = self.rows();
        let width = rows.iter().map(|(k, _)| k.chars().count()).max().unwrap_or(0);
        for (k, v) in rows {
            println!("{k:<width$}  {v}");
        }
    }
}
