//! `dynamowave-bench cost`: what a measured run would cost on AWS, at list prices.
//!
//! The input ([`Measurements`], JSON, written by `scripts/cost`) holds what a local run of the real
//! functions counted: API Gateway messages, Lambda invocations and billed milliseconds per function
//! (their `REPORT` lines, with each function's min, median, mean and p90), DynamoDB read and write
//! units per calling function, operation, table and index (`ddb-meter`). Each load run comes with a
//! baseline run of the same connections without messages. A message costs what the functions it
//! invokes spend (those the load run invoked more often than the baseline), and the API Gateway
//! messages the load run added, divided by the messages sent. The output is docs/cost.md's tables.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use serde::Deserialize;

use crate::ddb_meter::OperationTotals;

/// `dynamowave-bench cost --input FILE`: prints the Markdown tables.
#[derive(Debug, Clone, clap::Args)]
pub struct CostArgs {
    /// The measurements (JSON, as `scripts/cost` writes them).
    #[arg(long)]
    pub input: PathBuf,
}

/// us-east-1 list prices, in dollars.
#[derive(Debug, Clone, PartialEq)]
pub struct Prices {
    /// API Gateway WebSocket, per million messages (first billion; 32 KB increments).
    pub api_messages_per_million: f64,
    /// API Gateway WebSocket, per million connection minutes.
    pub connection_minutes_per_million: f64,
    pub lambda_requests_per_million: f64,
    pub lambda_gb_second_x86_64: f64,
    pub lambda_gb_second_arm64: f64,
    /// DynamoDB on demand, per million write request units.
    pub write_units_per_million: f64,
    /// DynamoDB on demand, per million read request units.
    pub read_units_per_million: f64,
}

/// The prices as known on [`PRICES_AS_OF`]; check them against [`PRICE_SOURCES`].
pub const PRICES: Prices = Prices {
    api_messages_per_million: 1.00,
    connection_minutes_per_million: 0.25,
    lambda_requests_per_million: 0.20,
    lambda_gb_second_x86_64: 0.000_016_666_7,
    lambda_gb_second_arm64: 0.000_013_333_4,
    write_units_per_million: 0.625,
    read_units_per_million: 0.125,
};
/// The last change known: DynamoDB's on-demand price cut of 1 November 2024.
pub const PRICES_AS_OF: &str = "2024-11-01";
/// When [`PRICES`] were last compared with published figures, and with which.
pub const PRICES_CHECKED: &str =
    "2026-12-02, against stored copies of 2025 summaries of the three pricing pages (this machine reaches no AWS page)";
pub const PRICE_SOURCES: [&str; 3] = [
    "https://aws.amazon.com/api-gateway/pricing/",
    "https://aws.amazon.com/lambda/pricing/",
    "https://aws.amazon.com/dynamodb/pricing/on-demand/",
];
/// API Gateway meters WebSocket messages in 32 KB increments.
pub const MESSAGE_INCREMENT_BYTES: u64 = 32 * 1024;

/// What was counted over one run.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct Counted {
    /// Messages in and out (each up to 32 KB; the runs' are ~200 bytes).
    pub api_messages: f64,
    /// Per function: invocations and billed milliseconds.
    #[serde(default)]
    pub lambda: BTreeMap<String, LambdaCount>,
    pub read_units: f64,
    pub write_units: f64,
    /// Per calling function (or process), per operation: the meter's split.
    #[serde(default)]
    pub ddb: BTreeMap<String, BTreeMap<String, OperationTotals>>,
}

/// One function's invocations in a run; the statistics are of the billed ms per invocation.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct LambdaCount {
    pub requests: f64,
    pub billed_ms: f64,
    #[serde(default)]
    pub min_ms: Option<f64>,
    #[serde(default)]
    pub p50_ms: Option<f64>,
    #[serde(default)]
    pub mean_ms: Option<f64>,
    #[serde(default)]
    pub p90_ms: Option<f64>,
}

/// Which measured duration prices an invocation. On a busy shared machine every invocation is
/// slowed by whatever else runs; the low statistics are the nearer to an unloaded host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DurationStat {
    Min,
    Median,
    Mean,
    P90,
}

/// The figures' statistic.
pub const FIGURE_STAT: DurationStat = DurationStat::Median;

impl DurationStat {
    pub const ALL: [DurationStat; 4] = [DurationStat::Min, DurationStat::Median, DurationStat::Mean, DurationStat::P90];

    pub fn name(self) -> &'static str {
        match self {
            DurationStat::Min => "min",
            DurationStat::Median => "median",
            DurationStat::Mean => "mean",
            DurationStat::P90 => "p90",
        }
    }
}

impl LambdaCount {
    /// Billed ms of one invocation at `stat`; the mean of the sum when the statistics are missing.
    pub fn ms_per_invocation(&self, stat: DurationStat) -> f64 {
        let given = match stat {
            DurationStat::Min => self.min_ms,
            DurationStat::Median => self.p50_ms,
            DurationStat::Mean => self.mean_ms,
            DurationStat::P90 => self.p90_ms,
        };
        given.unwrap_or(if self.requests > 0.0 { self.billed_ms / self.requests } else { 0.0 })
    }
}

/// A load run and its baseline (the same connections and windows, no messages).
#[derive(Debug, Clone, Deserialize)]
pub struct Scenario {
    pub room_size: u64,
    pub connections: u64,
    /// Messages sent (acknowledged) in the load run.
    pub messages: f64,
    /// The 1-minute load average when the load run started and ended.
    #[serde(default)]
    pub load_average: Vec<f64>,
    pub load: Counted,
    pub baseline: Counted,
}

/// Connections held without messages.
#[derive(Debug, Clone, Deserialize)]
pub struct AtRest {
    pub connections: u64,
    /// Each connection's life in the run (connect, join, hold, disconnect).
    pub counted: Counted,
    /// API Gateway closes a connection after this long (2 hours): each lives at most that.
    #[serde(default = "two_hours")]
    pub max_connection_minutes: f64,
    /// API Gateway closes an idle connection after 10 minutes: a client pings more often.
    #[serde(default = "nine_minutes")]
    pub heartbeat_minutes: f64,
}

fn two_hours() -> f64 {
    120.0
}
fn nine_minutes() -> f64 {
    9.0
}

/// The seed's design on the same connections: one Scan of the whole table per message, then one
/// PostToConnection per connection, one after another, in one invocation.
#[derive(Debug, Clone, Deserialize)]
pub struct Seed {
    pub connections: u64,
    /// Read units of one Scan of a table of `connections` items (measured).
    pub scan_read_units: f64,
    /// Milliseconds of that Scan (measured).
    pub scan_ms: f64,
    /// Milliseconds per post, one at a time (derived; see docs/cost.md).
    pub post_ms: f64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Measurements {
    pub architecture: String,
    pub memory_mb: f64,
    pub scenarios: Vec<Scenario>,
    pub at_rest: Option<AtRest>,
    #[serde(default)]
    pub seed: Vec<Seed>,
    /// Free text: the command, the machine, the date.
    #[serde(default)]
    pub notes: Vec<String>,
}

/// Billed quantities.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Usage {
    pub api_messages: f64,
    pub connection_minutes: f64,
    pub lambda_requests: f64,
    pub lambda_gb_seconds: f64,
    pub read_units: f64,
    pub write_units: f64,
}

impl Usage {
    /// Everything `c` counted, each invocation priced at `stat`.
    pub fn from_counted(c: &Counted, memory_mb: f64, stat: DurationStat) -> Usage {
        let requests = c.lambda.values().map(|l| l.requests).sum();
        let billed_ms: f64 = c.lambda.values().map(|l| l.requests * l.ms_per_invocation(stat)).sum();
        Usage {
            api_messages: c.api_messages,
            connection_minutes: 0.0,
            lambda_requests: requests,
            lambda_gb_seconds: gb_seconds(billed_ms, memory_mb),
            read_units: c.read_units,
            write_units: c.write_units,
        }
    }

    pub fn plus(&self, o: &Usage) -> Usage {
        Usage {
            api_messages: self.api_messages + o.api_messages,
            connection_minutes: self.connection_minutes + o.connection_minutes,
            lambda_requests: self.lambda_requests + o.lambda_requests,
            lambda_gb_seconds: self.lambda_gb_seconds + o.lambda_gb_seconds,
            read_units: self.read_units + o.read_units,
            write_units: self.write_units + o.write_units,
        }
    }

    pub fn scaled(&self, k: f64) -> Usage {
        Usage {
            api_messages: self.api_messages * k,
            connection_minutes: self.connection_minutes * k,
            lambda_requests: self.lambda_requests * k,
            lambda_gb_seconds: self.lambda_gb_seconds * k,
            read_units: self.read_units * k,
            write_units: self.write_units * k,
        }
    }
}

/// Lambda's GB-seconds: billed milliseconds (each invocation already rounded up to 1 ms) times
/// the memory in GB (MB / 1024).
pub fn gb_seconds(billed_ms: f64, memory_mb: f64) -> f64 {
    billed_ms / 1000.0 * memory_mb / 1024.0
}

/// Messages API Gateway bills for one frame of `bytes`.
pub fn billed_messages(bytes: u64) -> u64 {
    bytes.div_ceil(MESSAGE_INCREMENT_BYTES).max(1)
}

/// One line of a bill.
#[derive(Debug, Clone, PartialEq)]
pub struct LineItem {
    pub name: &'static str,
    pub units: f64,
    pub unit: &'static str,
    pub dollars: f64,
}

/// The line items of `usage` at `prices` (`arm64` or `x86_64` for the GB-second price).
pub fn bill(usage: &Usage, prices: &Prices, architecture: &str) -> Vec<LineItem> {
    let gb_s = if architecture == "arm64" { prices.lambda_gb_second_arm64 } else { prices.lambda_gb_second_x86_64 };
    let per_million = |units: f64, price: f64| units / 1e6 * price;
    vec![
        LineItem {
            name: "API Gateway messages",
            units: usage.api_messages,
            unit: "messages",
            dollars: per_million(usage.api_messages, prices.api_messages_per_million),
        },
        LineItem {
            name: "API Gateway connection minutes",
            units: usage.connection_minutes,
            unit: "minutes",
            dollars: per_million(usage.connection_minutes, prices.connection_minutes_per_million),
        },
        LineItem {
            name: "Lambda requests",
            units: usage.lambda_requests,
            unit: "requests",
            dollars: per_million(usage.lambda_requests, prices.lambda_requests_per_million),
        },
        LineItem {
            name: "Lambda duration",
            units: usage.lambda_gb_seconds,
            unit: "GB-s",
            dollars: usage.lambda_gb_seconds * gb_s,
        },
        LineItem {
            name: "DynamoDB writes",
            units: usage.write_units,
            unit: "WRU",
            dollars: per_million(usage.write_units, prices.write_units_per_million),
        },
        LineItem {
            name: "DynamoDB reads",
            units: usage.read_units,
            unit: "RRU",
            dollars: per_million(usage.read_units, prices.read_units_per_million),
        },
    ]
}

pub fn total(items: &[LineItem]) -> f64 {
    items.iter().map(|i| i.dollars).sum()
}

/// The functions a scenario's messages invoke: those the load run invoked more often than its
/// baseline (the lifecycle functions run as often in both).
pub fn message_functions(s: &Scenario) -> Vec<&str> {
    s.load
        .lambda
        .iter()
        .filter(|(name, l)| l.requests > s.baseline.lambda.get(*name).map_or(0.0, |b| b.requests))
        .map(|(name, _)| name.as_str())
        .collect()
}

/// What `function` did in the load run beyond the baseline, per operation.
fn extra_operations<'a>(s: &'a Scenario, function: &str) -> Vec<(&'a str, OperationTotals)> {
    let none = BTreeMap::new();
    let base = s.baseline.ddb.get(function).unwrap_or(&none);
    let Some(load) = s.load.ddb.get(function) else { return Vec::new() };
    load.iter()
        .map(|(op, l)| {
            let b = base.get(op).cloned().unwrap_or_default();
            let mut d = OperationTotals {
                requests: l.requests.saturating_sub(b.requests),
                errors: l.errors.saturating_sub(b.errors),
                reported_units: l.reported_units - b.reported_units,
                read_units: l.read_units - b.read_units,
                write_units: l.write_units - b.write_units,
                parts: BTreeMap::new(),
            };
            for (part, units) in &l.parts {
                d.parts.insert(part.clone(), units - b.parts.get(part).copied().unwrap_or(0.0));
            }
            (op.as_str(), d)
        })
        .collect()
}

/// Usage per one million messages of a scenario, each invocation priced at `stat`: the message
/// functions' invocations and DynamoDB units, the API Gateway messages the load run added.
pub fn per_million_messages(s: &Scenario, memory_mb: f64, stat: DurationStat) -> Usage {
    if s.messages <= 0.0 {
        return Usage::default();
    }
    let functions = message_functions(s);
    let (mut requests, mut billed_ms, mut read_units, mut write_units) = (0.0, 0.0, 0.0, 0.0);
    for name in &functions {
        let l = &s.load.lambda[*name];
        let extra = l.requests - s.baseline.lambda.get(*name).map_or(0.0, |b| b.requests);
        requests += extra;
        billed_ms += extra * l.ms_per_invocation(stat);
        for (_, op) in extra_operations(s, name) {
            read_units += op.read_units;
            write_units += op.write_units;
        }
    }
    if s.load.ddb.is_empty() {
        // Measurements without the meter's split: the difference of the totals.
        read_units = (s.load.read_units - s.baseline.read_units).max(0.0);
        write_units = (s.load.write_units - s.baseline.write_units).max(0.0);
    }
    Usage {
        api_messages: (s.load.api_messages - s.baseline.api_messages).max(0.0),
        connection_minutes: 0.0,
        lambda_requests: requests,
        lambda_gb_seconds: gb_seconds(billed_ms, memory_mb),
        read_units,
        write_units,
    }
    .scaled(1e6 / s.messages)
}

/// Usage per 1,000 connection-hours at rest: the minutes themselves, a connect-join-disconnect
/// every `max_connection_minutes`, and a `ping` (in, `pong` out, one `default` invocation) every
/// `heartbeat_minutes`, the ping priced at the `$default` function's invocation (its name holds
/// `default`; it answers `ping`) at `stat`.
pub fn at_rest_per_thousand_hours(a: &AtRest, memory_mb: f64, stat: DurationStat) -> Usage {
    let minutes = 1000.0 * 60.0;
    let per_connection = Usage::from_counted(&a.counted, memory_mb, stat).scaled(1.0 / a.connections.max(1) as f64);
    let lives = minutes / a.max_connection_minutes;
    let pings = minutes / a.heartbeat_minutes;
    let ping_ms = a
        .counted
        .lambda
        .iter()
        .find(|(name, d)| name.to_ascii_lowercase().contains("default") && d.requests > 0.0)
        .map_or(0.0, |(_, d)| d.ms_per_invocation(stat));
    let heartbeat = Usage {
        api_messages: 2.0 * pings,
        lambda_requests: pings,
        lambda_gb_seconds: gb_seconds(ping_ms * pings, memory_mb),
        ..Usage::default()
    };
    Usage { connection_minutes: minutes, ..Usage::default() }.plus(&per_connection.scaled(lives)).plus(&heartbeat)
}

/// Usage per one million messages in the seed's design with `s.connections` connections: the
/// message in, a post to every connection (its own too), one invocation of scan + posts in turn.
pub fn seed_per_million(s: &Seed, memory_mb: f64) -> Usage {
    let n = s.connections as f64;
    let ms = (s.scan_ms + n * s.post_ms).ceil().max(1.0);
    Usage {
        api_messages: 1e6 * (1.0 + n),
        connection_minutes: 0.0,
        lambda_requests: 1e6,
        lambda_gb_seconds: gb_seconds(ms * 1e6, memory_mb),
        read_units: 1e6 * s.scan_read_units,
        write_units: 0.0,
    }
}

fn units(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.4}")
    }
}

/// A heading, a line under it, and the bill's table.
fn bill_section(out: &mut String, heading: &str, line: &str, items: &[LineItem]) {
    let _ = writeln!(out, "### {heading}\n\n{line}\n");
    out.push_str("| line item | units | $ |\n|---|---:|---:|\n");
    for i in items {
        let _ = writeln!(out, "| {} | {} {} | {:.4} |", i.name, units(i.units), i.unit, i.dollars);
    }
    let _ = writeln!(out, "| **total** | | **{:.4}** |\n", total(items));
}

/// `TABLE: units, TABLE/INDEX: units` of one operation's parts, each divided by `per`.
fn parts_line(parts: &BTreeMap<String, f64>, per: f64) -> String {
    let shown: Vec<String> =
        parts.iter().filter(|(_, u)| **u != 0.0).map(|(part, u)| format!("{part} {}", units(u / per))).collect();
    if shown.is_empty() { "–".into() } else { shown.join(", ") }
}

/// One row per (function, operation): calls, read and write units per `per`, by table and index.
fn operations_table<'a>(
    out: &mut String,
    rows: impl IntoIterator<Item = (&'a str, &'a str, OperationTotals)>,
    per: f64,
) {
    out.push_str(
        "| function | operation | calls | RRU | WRU | units by table / index |\n|---|---|---:|---:|---:|---|\n",
    );
    let (mut read, mut write) = (0.0, 0.0);
    for (function, op, t) in rows {
        if t.requests == 0 && t.read_units == 0.0 && t.write_units == 0.0 {
            continue;
        }
        read += t.read_units;
        write += t.write_units;
        let _ = writeln!(
            out,
            "| {function} | {op} | {} | {} | {} | {} |",
            units(t.requests as f64 / per),
            units(t.read_units / per),
            units(t.write_units / per),
            parts_line(&t.parts, per)
        );
    }
    let _ = writeln!(out, "| **all** | | | **{}** | **{}** | |\n", units(read / per), units(write / per));
}

fn short(function: &str) -> &str {
    function.strip_prefix("dynamowave-").unwrap_or(function)
}

fn load_average(s: &Scenario) -> String {
    match s.load_average.as_slice() {
        [a, b] => format!("load average {a:.2} at its start, {b:.2} at its end"),
        _ => "load average not recorded".into(),
    }
}

/// docs/cost.md's tables for `m`.
pub fn render(m: &Measurements) -> String {
    let mut out = String::new();
    let p = &PRICES;
    let (mem, arch) = (m.memory_mb, m.architecture.as_str());
    for s in &m.scenarios {
        bill_section(
            &mut out,
            &format!("Rooms of {}: per 1,000,000 messages", s.room_size),
            &format!(
                "{} connections; {:.0} messages measured ({}); Lambda at the {} billed duration.",
                s.connections,
                s.messages,
                load_average(s),
                FIGURE_STAT.name()
            ),
            &bill(&per_million_messages(s, mem, FIGURE_STAT), p, arch),
        );
    }

    out.push_str("### How much the Lambda durations move the figure\n\nPer 1,000,000 messages: the message functions' billed ms per invocation at each statistic, the Lambda duration line and the total.\n\n| rooms of | statistic | ms per invocation | Lambda duration $ | total $ |\n|---:|---|---:|---:|---:|\n");
    for s in &m.scenarios {
        for stat in DurationStat::ALL {
            let ms: Vec<String> = message_functions(s)
                .iter()
                .map(|f| format!("{:.0}", s.load.lambda[*f].ms_per_invocation(stat)))
                .collect();
            let items = bill(&per_million_messages(s, mem, stat), p, arch);
            let _ = writeln!(
                out,
                "| {} | {} | {} | {:.4} | {:.4} |",
                s.room_size,
                stat.name(),
                ms.join(" + "),
                items[3].dollars,
                total(&items)
            );
        }
    }
    out.push('\n');

    for s in &m.scenarios.iter().filter(|s| !s.load.ddb.is_empty()).collect::<Vec<_>>() {
        let _ = writeln!(
            out,
            "### DynamoDB per message, rooms of {}\n\nThe message functions' calls and billed units per message ({:.0} messages), transactions doubled.\n",
            s.room_size, s.messages
        );
        let functions = message_functions(s);
        let rows: Vec<(&str, &str, OperationTotals)> = functions
            .iter()
            .flat_map(|f| extra_operations(s, f).into_iter().map(move |(op, t)| (short(f), op, t)))
            .collect();
        operations_table(&mut out, rows, s.messages);
        let all_functions = (s.load.write_units - s.baseline.write_units) / s.messages;
        let _ = writeln!(
            out,
            "The load run's write units minus the idle run's, every function's together, over the messages: {} WRU per message (the way of the first `--quick` figure).\n",
            units(all_functions)
        );
    }

    if let Some(a) = &m.at_rest
        && !a.counted.ddb.is_empty()
    {
        let _ = writeln!(
            out,
            "### DynamoDB per connection life\n\nConnect, join, hold, disconnect: the idle run of {} connections, calls and billed units per connection.\n",
            a.connections
        );
        let rows: Vec<(&str, &str, OperationTotals)> = a
            .counted
            .ddb
            .iter()
            .filter(|(f, _)| a.counted.lambda.contains_key(*f))
            .flat_map(|(f, ops)| ops.iter().map(move |(op, t)| (short(f), op.as_str(), t.clone())))
            .collect();
        operations_table(&mut out, rows, a.connections.max(1) as f64);
        out.push_str("Write units per connection life in each run (idle, then load), all functions:\n\n| rooms of | idle run | load run |\n|---:|---:|---:|\n");
        for s in &m.scenarios {
            let life = |c: &Counted| {
                let lifecycle: f64 = c
                    .ddb
                    .iter()
                    .filter(|(f, _)| !message_functions(s).contains(&f.as_str()))
                    .flat_map(|(_, ops)| ops.values())
                    .map(|t| t.write_units)
                    .sum();
                units(lifecycle / s.connections.max(1) as f64)
            };
            let _ = writeln!(out, "| {} | {} | {} |", s.room_size, life(&s.baseline), life(&s.load));
        }
        out.push('\n');
    }

    if let Some(a) = &m.at_rest {
        bill_section(
            &mut out,
            "At rest: per 1,000 connection-hours",
            &format!(
                "Measured on {} connections; a connect, join and disconnect every {:.0} minutes (API Gateway's 2-hour limit), a `ping` every {:.0} minutes (its 10-minute idle timeout); Lambda at the {} billed duration.",
                a.connections,
                a.max_connection_minutes,
                a.heartbeat_minutes,
                FIGURE_STAT.name()
            ),
            &bill(&at_rest_per_thousand_hours(a, mem, FIGURE_STAT), p, arch),
        );
    }
    if !m.seed.is_empty() {
        out.push_str("### The seed's design on the same load: per 1,000,000 messages\n\n");
        out.push_str("| connections | ours (rooms) | ours $ | seed: scan RRU/msg | seed: ms/msg | seed API msgs/msg | seed $ | seed / ours |\n|---:|---|---:|---:|---:|---:|---:|---:|\n");
        for seed in &m.seed {
            let theirs = total(&bill(&seed_per_million(seed, mem), p, arch));
            for s in m.scenarios.iter().filter(|s| s.connections == seed.connections) {
                let ours = total(&bill(&per_million_messages(s, mem, FIGURE_STAT), p, arch));
                let _ = writeln!(
                    out,
                    "| {} | rooms of {} | {:.2} | {} | {:.1} | {} | {:.2} | {:.1}× |",
                    seed.connections,
                    s.room_size,
                    ours,
                    units(seed.scan_read_units),
                    seed.scan_ms + seed.connections as f64 * seed.post_ms,
                    seed.connections + 1,
                    theirs,
                    if ours > 0.0 { theirs / ours } else { 0.0 }
                );
            }
        }
        out.push('\n');
    }
    let _ = writeln!(
        out,
        "### Prices\n\nus-east-1 list prices in effect since {PRICES_AS_OF}, checked {PRICES_CHECKED}; check them against the pricing pages before use: API Gateway WebSocket ${:.2} per million messages (first billion, 32 KB increments) and ${:.2} per million connection minutes; Lambda ${:.2} per million requests and ${} per GB-second ({}; x86_64 ${}, arm64 ${}); DynamoDB on demand ${:.3} per million write request units and ${:.3} per million read request units. Sources: {}. Free tiers are not counted.",
        p.api_messages_per_million,
        p.connection_minutes_per_million,
        p.lambda_requests_per_million,
        if m.architecture == "arm64" { p.lambda_gb_second_arm64 } else { p.lambda_gb_second_x86_64 },
        m.architecture,
        p.lambda_gb_second_x86_64,
        p.lambda_gb_second_arm64,
        p.write_units_per_million,
        p.read_units_per_million,
        PRICE_SOURCES.join(", ")
    );
    for n in &m.notes {
        let _ = writeln!(out, "\n{n}");
    }
    out
}

pub fn run(args: &CostArgs) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(&args.input)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", args.input.display()))?;
    let m: Measurements = serde_json::from_str(&text)
        .map_err(|e| anyhow::anyhow!("{} is not a cost input: {e}", args.input.display()))?;
    Ok(render(&m))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counted(msgs: f64, fns: &[(&str, f64, f64)], rru: f64, wru: f64) -> Counted {
        Counted {
            api_messages: msgs,
            lambda: fns
                .iter()
                .map(|(n, r, ms)| (n.to_string(), LambdaCount { requests: *r, billed_ms: *ms, ..Default::default() }))
                .collect(),
            read_units: rru,
            write_units: wru,
            ddb: BTreeMap::new(),
        }
    }

    #[test]
    fn gb_seconds_and_message_increments() {
        assert_eq!(gb_seconds(1000.0, 1024.0), 1.0);
        assert_eq!(gb_seconds(4.0, 256.0), 0.001);
        assert_eq!(billed_messages(0), 1);
        assert_eq!(billed_messages(32 * 1024), 1);
        assert_eq!(billed_messages(32 * 1024 + 1), 2);
    }

    #[test]
    fn a_message_costs_the_load_minus_its_baseline() {
        // 1,000 messages into rooms of 10: 11 API messages, one 5 ms invocation, 2 WRU and
        // 1 RRU each, over a baseline of 100 connects.
        let s = Scenario {
            room_size: 10,
            connections: 100,
            messages: 1000.0,
            load_average: vec![],
            load: counted(
                200.0 + 11_000.0,
                &[("connect", 100.0, 300.0), ("sendmessage", 1000.0, 5000.0)],
                1000.0,
                2100.0,
            ),
            baseline: counted(200.0, &[("connect", 100.0, 300.0)], 0.0, 100.0),
        };
        let u = per_million_messages(&s, 256.0, FIGURE_STAT);
        assert_eq!(u.api_messages, 11e6);
        assert_eq!(u.lambda_requests, 1e6);
        assert!((u.lambda_gb_seconds - 1250.0).abs() < 1e-6, "{}", u.lambda_gb_seconds);
        assert_eq!((u.read_units, u.write_units), (1e6, 2e6));
        let items = bill(&u, &PRICES, "arm64");
        let dollars: Vec<f64> = items.iter().map(|i| i.dollars).collect();
        let want = [11.0, 0.0, 0.2, 1250.0 * 0.000_013_333_4, 1.25, 0.125];
        for (got, want) in dollars.iter().zip(want) {
            assert!((got - want).abs() < 1e-9, "{dollars:?}");
        }
        assert!((total(&items) - want.iter().sum::<f64>()).abs() < 1e-9);
        let x86 = bill(&u, &PRICES, "x86_64");
        assert!((x86[3].dollars - 1250.0 * 0.000_016_666_7).abs() < 1e-9);
    }

    /// (operation, requests, RRU, WRU, parts).
    type OpRow<'a> = (&'a str, u64, f64, f64, &'a [(&'a str, f64)]);

    fn ops(rows: &[OpRow]) -> BTreeMap<String, OperationTotals> {
        rows.iter()
            .map(|(op, requests, rru, wru, parts)| {
                let parts = parts.iter().map(|(p, u)| (p.to_string(), *u)).collect();
                let t = OperationTotals {
                    requests: *requests,
                    read_units: *rru,
                    write_units: *wru,
                    parts,
                    ..Default::default()
                };
                (op.to_string(), t)
            })
            .collect()
    }

    #[test]
    fn a_message_costs_what_its_functions_spend_not_the_lifecycle_noise() {
        let mut load = counted(1200.0, &[("connect", 100.0, 900.0), ("send", 100.0, 2000.0)], 50.0, 1050.0);
        load.lambda.get_mut("send").expect("send").p50_ms = Some(12.0);
        load.lambda.get_mut("send").expect("send").min_ms = Some(4.0);
        // The connect function wrote more in the load run than in the idle one: not the messages'.
        load.ddb.insert("connect".into(), ops(&[("PutItem", 100, 0.0, 250.0, &[("c", 250.0)])]));
        load.ddb.insert(
            "send".into(),
            ops(&[
                ("TransactWriteItems", 100, 0.0, 800.0, &[("m", 400.0), ("r", 200.0), ("r/i", 200.0)]),
                ("Query", 100, 50.0, 0.0, &[("c/RoomIndex", 50.0)]),
            ]),
        );
        let mut baseline = counted(200.0, &[("connect", 100.0, 300.0)], 0.0, 200.0);
        baseline.ddb.insert("connect".into(), ops(&[("PutItem", 100, 0.0, 200.0, &[("c", 200.0)])]));
        let s =
            Scenario { room_size: 10, connections: 100, messages: 100.0, load_average: vec![1.5, 2.0], load, baseline };
        assert_eq!(message_functions(&s), vec!["send"]);
        let u = per_million_messages(&s, 1024.0, DurationStat::Median);
        assert_eq!((u.read_units, u.write_units), (0.5e6, 8e6));
        assert_eq!(u.api_messages, 10e6);
        assert_eq!(u.lambda_requests, 1e6);
        // 1e6 invocations of 12 ms at 1 GB; at the minimum, 4 ms; without statistics, the mean.
        assert!((u.lambda_gb_seconds - 12_000.0).abs() < 1e-6, "{}", u.lambda_gb_seconds);
        let min = per_million_messages(&s, 1024.0, DurationStat::Min);
        assert!((min.lambda_gb_seconds - 4_000.0).abs() < 1e-6);
        let p90 = per_million_messages(&s, 1024.0, DurationStat::P90);
        assert!((p90.lambda_gb_seconds - 20_000.0).abs() < 1e-6);

        let m = Measurements {
            architecture: "arm64".into(),
            memory_mb: 1024.0,
            scenarios: vec![s.clone()],
            at_rest: Some(AtRest {
                connections: 100,
                counted: s.baseline.clone(),
                max_connection_minutes: 120.0,
                heartbeat_minutes: 9.0,
            }),
            seed: vec![],
            notes: vec![],
        };
        let md = render(&m);
        for want in [
            "| send | TransactWriteItems | 1.00 | 0.0000 | 8.00 | m 4.00, r 2.00, r/i 2.00 |",
            "| send | Query | 1.00 | 0.5000 | 0.0000 | c/RoomIndex 0.5000 |",
            "| **all** | | | **0.5000** | **8.00** | |",
            // The old way: (1,050 - 200) WRU over 100 messages.
            "every function's together, over the messages: 8.50 WRU per message",
            "| connect | PutItem | 1.00 | 0.0000 | 2.00 | c 2.00 |",
            "| 10 | 2.00 | 2.50 |",
            "| 10 | min | 4 |",
            "load average 1.50 at its start, 2.00 at its end",
        ] {
            assert!(md.contains(want), "{want} missing in:\n{md}");
        }
    }

    #[test]
    fn at_rest_counts_minutes_lives_and_heartbeats() {
        let a = AtRest {
            connections: 10,
            counted: counted(30.0, &[("ConnectFunction", 10.0, 20.0), ("DefaultFunction", 10.0, 40.0)], 0.0, 30.0),
            max_connection_minutes: 120.0,
            heartbeat_minutes: 10.0,
        };
        let u = at_rest_per_thousand_hours(&a, 1024.0, FIGURE_STAT);
        assert_eq!(u.connection_minutes, 60_000.0);
        // 500 lives of 3 messages, 6,000 pings in and 6,000 pongs out.
        assert_eq!(u.api_messages, 500.0 * 3.0 + 12_000.0);
        assert_eq!(u.lambda_requests, 500.0 * 2.0 + 6_000.0);
        assert_eq!(u.write_units, 1500.0);
        // Lives: 500 x 6 ms; pings: 6,000 x the mean default (4 ms); at 1 GB.
        assert!((u.lambda_gb_seconds - (3.0 + 24.0)).abs() < 1e-9, "{}", u.lambda_gb_seconds);
        let items = bill(&u, &PRICES, "arm64");
        assert!((items[1].dollars - 0.015).abs() < 1e-12);
    }

    #[test]
    fn the_seed_scans_and_posts_to_everyone_in_turn() {
        let s = Seed { connections: 100, scan_read_units: 0.5, scan_ms: 3.0, post_ms: 1.5 };
        let u = seed_per_million(&s, 1024.0);
        assert_eq!(u.api_messages, 101e6);
        assert_eq!(u.read_units, 0.5e6);
        assert_eq!(u.lambda_gb_seconds, 153.0 * 1000.0);
    }

    #[test]
    fn renders_every_section() {
        let m: Measurements = serde_json::from_value(serde_json::json!({
            "architecture": "arm64", "memory_mb": 256,
            "scenarios": [{"room_size": 10, "connections": 100, "messages": 10,
              "load": {"api_messages": 110, "lambda": {"sendmessage": {"requests": 10, "billed_ms": 50}}, "read_units": 10, "write_units": 20},
              "baseline": {"api_messages": 0, "read_units": 0, "write_units": 0}}],
            "at_rest": {"connections": 100, "counted": {"api_messages": 300, "read_units": 0, "write_units": 300}},
            "seed": [{"connections": 100, "scan_read_units": 0.5, "scan_ms": 2, "post_ms": 1}],
            "notes": ["Command: scripts/cost"]
        }))
        .expect("input");
        let md = render(&m);
        for want in [
            "### Rooms of 10",
            "At rest",
            "seed's design",
            "| 100 | rooms of 10 |",
            PRICES_AS_OF,
            "Command: scripts/cost",
        ] {
            assert!(md.contains(want), "{want} missing in:\n{md}");
        }
        assert!(md.contains("| API Gateway messages | 11000000 messages | 11.0000 |"), "{md}");
    }
}
