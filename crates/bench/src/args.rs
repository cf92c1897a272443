//! Command-line and environment arguments of the load generator.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::Duration;

/// What one benchmark run does. Every flag can also come from `DYNAMOWAVE_BENCH_<FLAG>`.
///
/// The mode is a load run (senders and receivers) unless `--idle`, `--churn`, `--send-floor` or
/// `--storm` is given.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// WebSocket URL of the server under test (unused with `--send-floor`).
    #[arg(long, env = "DYNAMOWAVE_BENCH_URL", default_value = "ws://127.0.0.1:8080/production")]
    pub url: String,

    /// Connections to open (in churn mode: how many connect/disconnect loops run at once; with
    /// `--send-floor`: loopback TCP connections written to).
    #[arg(long, short = 'c', env = "DYNAMOWAVE_BENCH_CONNECTIONS", default_value_t = 100)]
    pub connections: usize,

    /// Local addresses to bind client sockets to, round-robin (each 127.0.0.x brings its own
    /// ephemeral port range).
    #[arg(long, env = "DYNAMOWAVE_BENCH_SOURCE_ADDRS", value_delimiter = ',', default_value = "127.0.0.1")]
    pub source_addrs: Vec<IpAddr>,

    /// Rooms `bench-0 .. bench-{R-1}`; connection `i` joins room `i % R`.
    #[arg(long, env = "DYNAMOWAVE_BENCH_ROOMS", default_value_t = 1)]
    pub rooms: usize,

    /// Connections that also send (the first S, so they spread evenly over the rooms).
    #[arg(long, env = "DYNAMOWAVE_BENCH_SENDERS", default_value_t = 1)]
    pub senders: usize,

    /// Offered load in messages per second, all senders together; 0 = flat out, each sender keeping
    /// `--window` messages in flight. With `--send-floor`: rounds per second, each writing one frame
    /// to every connection.
    #[arg(long, env = "DYNAMOWAVE_BENCH_RATE", default_value_t = 100.0)]
    pub rate: f64,

    /// In-flight messages per sender (sent, not yet acknowledged) when `--rate 0`.
    #[arg(long, env = "DYNAMOWAVE_BENCH_WINDOW", default_value_t = 16)]
    pub window: u64,

    /// Bytes of message text (the timestamp and counter included; with `--send-floor`: the frame's
    /// payload).
    #[arg(long, env = "DYNAMOWAVE_BENCH_SIZE", default_value_t = 100)]
    pub size: usize,

    /// Length of the measured window (e.g. `10s`, `500ms`, `1m`).
    #[arg(long, env = "DYNAMOWAVE_BENCH_DURATION", value_parser = parse_duration, default_value = "10s")]
    pub duration: Duration,

    /// Load before the measured window, not counted.
    #[arg(long, env = "DYNAMOWAVE_BENCH_WARMUP", value_parser = parse_duration, default_value = "2s")]
    pub warmup: Duration,

    /// Longest wait after the window for acknowledgements and deliveries still in flight.
    #[arg(long, env = "DYNAMOWAVE_BENCH_DRAIN", value_parser = parse_duration, default_value = "5s")]
    pub drain: Duration,

    /// Connect, join and hold the connections for the window; report the server's memory.
    #[arg(long, env = "DYNAMOWAVE_BENCH_IDLE", conflicts_with = "churn")]
    pub idle: bool,

    /// Connect and disconnect as fast as possible; report connects per second.
    #[arg(long, env = "DYNAMOWAVE_BENCH_CHURN")]
    pub churn: bool,

    /// No server: measure the least CPU one `send()` of a small WebSocket frame to its own loopback
    /// connection costs (a writer thread on core 0, a drainer on core 1); reports CPU seconds per
    /// million such writes.
    #[arg(long, env = "DYNAMOWAVE_BENCH_SEND_FLOOR", conflicts_with_all = ["idle", "churn"])]
    pub send_floor: bool,

    /// A reconnect storm: `--connections` clients join `--rooms`, `--senders` other connections
    /// publish `--rate` msgs/s into the rooms, every client's TCP connection is aborted at once
    /// after `--warmup`, and all reconnect with `join … since` (at most `--connect-concurrency` at
    /// a time); publishing goes on for `--duration` after the last is back. Reports the
    /// connect-and-join rate, recovery and loss.
    #[arg(long, env = "DYNAMOWAVE_BENCH_STORM", conflicts_with_all = ["idle", "churn", "send_floor"])]
    pub storm: bool,

    /// With `--storm`: how long the clients stay away after the drop before reconnecting.
    #[arg(long, env = "DYNAMOWAVE_BENCH_STORM_OUTAGE", value_parser = parse_duration, default_value = "0s")]
    pub storm_outage: Duration,

    /// New connections per second while connecting (a ramp); 0 = as fast as `--connect-concurrency`
    /// allows.
    #[arg(long, env = "DYNAMOWAVE_BENCH_CONNECT_RATE", default_value_t = 0.0)]
    pub connect_rate: f64,

    /// Handshakes in progress at once while connecting.
    #[arg(long, env = "DYNAMOWAVE_BENCH_CONNECT_CONCURRENCY", default_value_t = 256)]
    pub connect_concurrency: usize,

    /// Longest wait for one connection (TCP, upgrade and `joined`).
    #[arg(long, env = "DYNAMOWAVE_BENCH_CONNECT_TIMEOUT", value_parser = parse_duration, default_value = "10s")]
    pub connect_timeout: Duration,

    /// Server process to watch through /proc: CPU seconds and RSS over the measured window.
    #[arg(long, env = "DYNAMOWAVE_BENCH_SERVER_PID")]
    pub server_pid: Option<u32>,

    /// Also write the report as JSON to this file.
    #[arg(long, env = "DYNAMOWAVE_BENCH_JSON")]
    pub json: Option<PathBuf>,

    /// A name for the server under test, copied into the report.
    #[arg(long, env = "DYNAMOWAVE_BENCH_LABEL")]
    pub label: Option<String>,

    /// No progress line on stderr.
    #[arg(long, env = "DYNAMOWAVE_BENCH_QUIET")]
    pub quiet: bool,

    /// What the server speaks: `dynamowave-v1` (protocol v1's JSON framing, `join`, acknowledged
    /// sends) or `apigw-sample` (an app written like AWS's WebSocket chat sample: the room is the
    /// `room` query parameter of the connect URL, a send is `{"action":"sendmessage","data":…}`
    /// and every member of the room, the sender included, receives `data` as a raw frame).
    #[arg(long, env = "DYNAMOWAVE_BENCH_PROTOCOL", value_enum, default_value_t = Protocol::DynamowaveV1)]
    pub protocol: Protocol,
}

/// The server's wire protocol (`--protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Protocol {
    /// Protocol v1's JSON framing (subprotocol `dynamowave.v1`).
    #[default]
    DynamowaveV1,
    /// AWS's WebSocket chat sample with rooms (`?room=R`, `sendmessage`, raw broadcast frames).
    ApigwSample,
}

impl Default for BenchArgs {
    /// The same values as the flags' defaults (a unit test keeps the two in step).
    fn default() -> Self {
        Self {
            url: "ws://127.0.0.1:8080/production".to_owned(),
            connections: 100,
            source_addrs: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
            rooms: 1,
            senders: 1,
            rate: 100.0,
            window: 16,
            size: 100,
            duration: Duration::from_secs(10),
            warmup: Duration::from_secs(2),
            drain: Duration::from_secs(5),
            idle: false,
            churn: false,
            send_floor: false,
            storm: false,
            storm_outage: Duration::ZERO,
            connect_rate: 0.0,
            connect_concurrency: 256,
            connect_timeout: Duration::from_secs(10),
            server_pid: None,
            json: None,
            label: None,
            quiet: false,
            protocol: Protocol::DynamowaveV1,
        }
    }
}

/// What `run` does, derived from the flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Senders and receivers in rooms.
    Load,
    /// Connections held open.
    Idle,
    /// Connect/disconnect loops.
    Churn,
    /// One frame written to each of many loopback connections per round; no server involved.
    SendFloor,
    /// Every connection dropped at once and reconnected with `join … since`.
    Storm,
}

impl BenchArgs {
    /// The run's mode.
    pub fn mode(&self) -> Mode {
        if self.send_floor {
            Mode::SendFloor
        } else if self.storm {
            Mode::Storm
        } else if self.churn {
            Mode::Churn
        } else if self.idle {
            Mode::Idle
        } else {
            Mode::Load
        }
    }

    /// Rejects combinations that cannot produce a meaningful run.
    pub fn validate(&self) -> Result<(), ArgsError> {
        if self.connections == 0 {
            return Err(ArgsError::Invalid("--connections must be at least 1"));
        }
        if self.source_addrs.is_empty() {
            return Err(ArgsError::Invalid("--source-addrs needs at least one address"));
        }
        if self.mode() == Mode::Load {
            if self.rooms == 0 || self.rooms > self.connections {
                return Err(ArgsError::Invalid("--rooms must be between 1 and --connections"));
            }
            if self.senders == 0 || self.senders > self.connections {
                return Err(ArgsError::Invalid("--senders must be between 1 and --connections"));
            }
            if !(self.rate >= 0.0 && self.rate.is_finite()) {
                return Err(ArgsError::Invalid("--rate must be a finite number >= 0"));
            }
            if self.rate == 0.0 && self.window == 0 {
                return Err(ArgsError::Invalid("--window must be at least 1 with --rate 0"));
            }
        }
        if self.mode() == Mode::Storm {
            crate::storm::validate(self)?;
        }
        if self.mode() == Mode::SendFloor && !(self.rate > 0.0 && self.rate.is_finite()) {
            return Err(ArgsError::Invalid("--rate must be a finite number > 0 with --send-floor"));
        }
        if self.duration.is_zero() {
            return Err(ArgsError::Invalid("--duration must be more than 0"));
        }
        if !(self.connect_rate >= 0.0 && self.connect_rate.is_finite()) {
            return Err(ArgsError::Invalid("--connect-rate must be a finite number >= 0"));
        }
        if self.connect_concurrency == 0 {
            return Err(ArgsError::Invalid("--connect-concurrency must be at least 1"));
        }
        if self.protocol == Protocol::ApigwSample && self.mode() != Mode::Load {
            return Err(ArgsError::Invalid("--protocol apigw-sample runs the load mode only"));
        }
        Ok(())
    }
}

/// A bad flag or flag combination.
#[derive(Debug, thiserror::Error)]
pub enum ArgsError {
    /// The combination makes no sense.
    #[error("invalid arguments: {0}")]
    Invalid(&'static str),
    /// A duration that does not parse.
    #[error("invalid duration {0:?}: expected a number with an optional unit ms, s or m (e.g. 500ms, 10s, 1.5m)")]
    Duration(String),
}

/// Parses `10`, `10s`, `500ms`, `1.5m` (a bare number is seconds).
pub fn parse_duration(text: &str) -> Result<Duration, ArgsError> {
    let text = text.trim();
    let (number, scale) = if let Some(n) = text.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix('m') {
        (n, 60.0)
    } else {
        (text, 1.0)
    };
    let value: f64 = number.trim().parse().map_err(|_| ArgsError::Duration(text.to_owned()))?;
    Duration::try_from_secs_f64(value * scale).map_err(|_| ArgsError::Duration(text.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: BenchArgs,
    }

    #[test]
    fn durations_parse_with_and_without_units() {
        assert_eq!(parse_duration("10").ok(), Some(Duration::from_secs(10)));
        assert_eq!(parse_duration("10s").ok(), Some(Duration::from_secs(10)));
        assert_eq!(parse_duration("250ms").ok(), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5m").ok(), Some(Duration::from_secs(90)));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn default_matches_the_flag_defaults() {
        let parsed = Cli::try_parse_from(["bench"]).map(|c| c.args);
        let parsed = match parsed {
            Ok(a) => a,
            Err(e) => panic!("defaults do not parse: {e}"),
        };
        let default = BenchArgs::default();
        assert_eq!(format!("{parsed:?}"), format!("{default:?}"));
    }

    #[test]
    fn source_addresses_are_a_comma_list_and_modes_exclude_each_other() {
        let cli = Cli::try_parse_from(["bench", "--source-addrs", "127.0.0.1,127.0.0.2", "--idle"]);
        let args = match cli {
            Ok(c) => c.args,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(args.source_addrs.len(), 2);
        assert_eq!(args.mode(), Mode::Idle);
        assert!(Cli::try_parse_from(["bench", "--idle", "--churn"]).is_err());
        assert!(Cli::try_parse_from(["bench", "--send-floor", "--idle"]).is_err());
        assert!(Cli::try_parse_from(["bench", "--churn", "--send-floor"]).is_err());
        let floor = match Cli::try_parse_from(["bench", "--send-floor", "--connections", "1000", "--rate", "25"]) {
            Ok(c) => c.args,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(floor.mode(), Mode::SendFloor);
        assert!(floor.validate().is_ok());
        assert!(BenchArgs { rate: 0.0, ..floor }.validate().is_err());
    }

    #[test]
    fn the_sample_protocol_is_a_load_mode_only() {
        let sample = match Cli::try_parse_from(["bench", "--protocol", "apigw-sample", "--rooms", "10"]) {
            Ok(c) => c.args,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(sample.protocol, Protocol::ApigwSample);
        assert!(sample.validate().is_ok());
        assert!(BenchArgs { idle: true, ..sample.clone() }.validate().is_err());
        assert!(BenchArgs { churn: true, ..sample }.validate().is_err());
        assert!(Cli::try_parse_from(["bench", "--protocol", "socket.io"]).is_err());
    }

    #[test]
    fn validation_rejects_more_senders_than_connections() {
        let args = BenchArgs { connections: 2, senders: 3, ..BenchArgs::default() };
        assert!(args.validate().is_err());
        assert!(BenchArgs::default().validate().is_ok());
    }
}
