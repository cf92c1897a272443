//! The reconnect storm (`--storm`): clients in rooms, every connection dropped at once, all back
//! with `join … since`.
//!
//! Timeline: the `--senders` publishers connect first. They join no room and post into the rooms
//! by name (`sendmessage` with `room`), so they are nobody's presence, do not count towards a
//! room's size, and are never dropped. Then the `--connections` clients connect and join
//! `bench-<i % R>` (presence is on for every JSON-framing member), each keeping the room's `epoch`
//! and `lastSeq` from `joined`. Publishing starts at `--rate` msgs/s in total; after `--warmup`
//! every client resets its TCP connection at once (no close frame: to the server the network went
//! away), waits `--storm-outage` and reconnects with `join bench-<r>` `since` the last seq it
//! holds and the `epoch` it saw, at most `--connect-concurrency` at a time. Publishing goes on
//! throughout and for `--duration` after the last client is back; then the publishers collect
//! their acknowledgements and the clients their deliveries (each bounded by `--drain`).
//!
//! Loss is counted per client against the room's log as the publishers' acknowledgements describe
//! it (seqs are per room and gapless): every seq after the client's first `joined` up to the room's
//! last acknowledged one must reach it, live or replayed. A client told `recovered: false` was told
//! to reload with `history`, and a server whose `joined` never says `recovered` (the peer) has no
//! recovery: their gaps are counted apart, as `lost_unrecovered`.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinHandle;

use crate::accounting::{LatencySummary, new_histogram};
use crate::args::{ArgsError, BenchArgs};
use crate::client::{ConnectError, Target};
use crate::event::{self, Event};
use crate::lean::{Drained, LeanWs};
use crate::procfs::{self, ProcSample};
use crate::report::{ConnectStats, Report, ServerStats};
use crate::runner::Sources;

/// The storm's own checks of the flags it reads.
pub(crate) fn validate(args: &BenchArgs) -> Result<(), ArgsError> {
    if args.rooms == 0 || args.rooms > args.connections {
        return Err(ArgsError::Invalid("--rooms must be between 1 and --connections"));
    }
    if args.senders == 0 || args.senders > args.rooms {
        return Err(ArgsError::Invalid(
            "--senders must be between 1 and --rooms with --storm (each publisher posts into its share of the rooms)",
        ));
    }
    if !(args.rate > 0.0 && args.rate.is_finite()) {
        return Err(ArgsError::Invalid("--rate must be a finite number > 0 with --storm"));
    }
    Ok(())
}

// ---- accounting (pure) ----------------------------------------------------------------------

/// One client's deliveries against its room's log.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ClientTally {
    /// Seqs the client should hold: `baseline + 1 ..= last`.
    pub expected: u64,
    /// Distinct seqs of that range received.
    pub received: u64,
    /// Expected minus received.
    pub lost: u64,
    /// Deliveries of a seq already received.
    pub duplicated: u64,
    /// Deliveries after a higher seq (a client that discards those, as the protocol allows while
    /// a replay and live messages cross, would lose them).
    pub out_of_order: u64,
    /// Deliveries outside the range (at or before the first `joined`'s `lastSeq`, or after the last
    /// acknowledged seq): another writer, or a replay from too far back.
    pub outside: u64,
}

/// Tallies the seqs one client received (`received`, in arrival order) against the range it should
/// hold: everything after `baseline` (its first `joined`'s `lastSeq`) up to `last` (the room's last
/// acknowledged seq).
pub fn tally_client(baseline: u64, last: u64, received: &[u64]) -> ClientTally {
    let mut tally = ClientTally { expected: last.saturating_sub(baseline), ..ClientTally::default() };
    let mut seen = HashSet::with_capacity(received.len());
    let mut highest = 0u64;
    for &seq in received {
        if !seen.insert(seq) {
            tally.duplicated += 1;
            continue;
        }
        if seq < highest {
            tally.out_of_order += 1;
        }
        highest = highest.max(seq);
        if seq > baseline && seq <= last {
            tally.received += 1;
        } else {
            tally.outside += 1;
        }
    }
    tally.lost = tally.expected.saturating_sub(tally.received);
    tally
}

/// What a client's second `joined` said about recovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recovered {
    /// `recovered: true`: everything after `since` was replayed.
    Yes,
    /// `recovered: false` with this `reason`.
    No(String),
    /// No `recovered` field: the server does not recover.
    Unanswered,
    /// The client did not get back (the failure's kind).
    NotBack(String),
}

/// Deliveries at the clients, added up by how each came back.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Deliveries {
    /// Seqs the recovered clients should hold: from their first `joined` to their room's last
    /// acknowledged seq.
    pub expected: u64,
    /// Distinct seqs of those received (live or replayed).
    pub delivered: u64,
    /// Expected minus delivered, at recovered clients.
    pub lost: u64,
    /// Seqs missing at clients that were not recovered (told `recovered: false`, never told, or not
    /// back): what they would reload with `history`.
    pub lost_unrecovered: u64,
    /// Deliveries of a seq the client already had (every client).
    pub duplicated: u64,
    /// Deliveries after a higher seq (every client).
    pub out_of_order: u64,
    /// Deliveries outside the range the client should hold (every client).
    pub outside: u64,
}

/// Adds clients' tallies up by how they came back.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct StormTally {
    /// Clients told `recovered: true`.
    pub recovered: u64,
    /// Clients told `recovered: false`, by reason.
    pub not_recovered: BTreeMap<String, u64>,
    /// Clients whose `joined` said nothing about recovery.
    pub unanswered: u64,
    /// Clients that did not get back, by failure kind.
    pub not_back: BTreeMap<String, u64>,
    /// What the clients received.
    pub deliveries: Deliveries,
}

impl StormTally {
    /// Adds one client.
    pub fn add(&mut self, how: &Recovered, t: &ClientTally) {
        let d = &mut self.deliveries;
        d.duplicated += t.duplicated;
        d.out_of_order += t.out_of_order;
        d.outside += t.outside;
        match how {
            Recovered::Yes => {
                self.recovered += 1;
                d.expected += t.expected;
                d.delivered += t.received;
                d.lost += t.lost;
                return;
            }
            Recovered::No(reason) => *self.not_recovered.entry(reason.clone()).or_default() += 1,
            Recovered::Unanswered => self.unanswered += 1,
            Recovered::NotBack(kind) => *self.not_back.entry(kind.clone()).or_default() += 1,
        }
        d.lost_unrecovered += t.lost;
    }
}

// ---- the report's section -------------------------------------------------------------------

/// Recovery after the drop.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RecoveryStats {
    /// Whether the server's `joined` answers `since` with `recovered` at all (the peer's does not).
    pub supported: bool,
    /// Clients told `recovered: true`.
    pub recovered: u64,
    /// Clients told `recovered: false`.
    pub not_recovered: u64,
    /// Their reasons (`epoch_changed`, `gap_too_large`, ...).
    pub reasons: BTreeMap<String, u64>,
    /// Clients whose `joined` had no `recovered`.
    pub unanswered: u64,
    /// Messages replayed, by the servers' `replayed` counts.
    pub replayed: u64,
}

/// Messages published through the storm and their deliveries to the clients.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct StormMessages {
    /// Messages the publishers sent.
    pub published: u64,
    /// Of those, acknowledged (with their room's seq).
    pub acked: u64,
    /// What the clients received (flattened: the report's fields stand beside `acked`).
    #[serde(flatten)]
    pub deliveries: Deliveries,
    /// Publishers' `error` events by code.
    pub errors: BTreeMap<String, u64>,
    /// Whether every acknowledgement arrived within `--drain`.
    pub drained: bool,
}

/// Presence events the clients received.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct PresenceStats {
    /// All of them, whole run.
    pub total: u64,
    /// From the drop on.
    pub after_drop: u64,
    /// Per client, whole run.
    pub per_client_mean: f64,
    /// The most one client received.
    pub per_client_max: u64,
}

/// The watched server's CPU in the two join phases.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct StormServer {
    /// CPU seconds of the first connect phase.
    pub initial_cpu_seconds: f64,
    /// CPU seconds from the drop to the last `joined`.
    pub storm_cpu_seconds: f64,
    /// Storm CPU seconds per wall second (1.0 = one core busy).
    pub storm_cpu_utilisation: f64,
    /// Storm CPU milliseconds per client back.
    pub storm_cpu_ms_per_join: Option<f64>,
}

/// The storm's figures (`--storm`).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct StormStats {
    /// Clients (`--connections`).
    pub clients: u64,
    /// Rooms (`--rooms`).
    pub rooms: usize,
    /// Publisher connections (`--senders`), never dropped.
    pub publishers: usize,
    /// `--storm-outage`, seconds.
    pub outage_seconds: f64,
    /// The first connect and join: `seconds` is the phase's wall time, `latency` from TCP connect
    /// to `joined`.
    pub initial: ConnectStats,
    /// Connections reset at the drop.
    pub dropped: u64,
    /// The reconnect: its `per_second` is the storm's connect-and-join rate, `seconds` from the
    /// reconnect's start (the drop plus the outage) to the last `joined`, `latency` from the drop
    /// to `joined` (waiting for a connect slot included). Failures by kind (`timeout`,
    /// `http_429`, `join_<code>`, ...).
    pub reconnect: ConnectStats,
    /// Seconds from the drop until the last client was back and joined.
    pub seconds_to_all_back: f64,
    /// Every client that joined at first joined again.
    pub all_back: bool,
    /// What the reconnecting `joined`s said.
    pub recovery: RecoveryStats,
    /// Loss, duplicates and order.
    pub messages: StormMessages,
    /// Presence events received.
    pub presence: PresenceStats,
    /// With `--server-pid`.
    pub server: Option<StormServer>,
}

impl StormStats {
    /// The storm's rows of the printed table.
    pub fn rows(&self) -> Vec<(String, String)> {
        let map = |m: &BTreeMap<String, u64>| {
            if m.is_empty() {
                "none".to_owned()
            } else {
                m.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", ")
            }
        };
        let ms = |us: f64| format!("{:.1} ms", us / 1_000.0);
        let (i, r, c, d, p) =
            (&self.initial, &self.reconnect, &self.recovery, &self.messages.deliveries, &self.presence);
        let mut rows = vec![
            (
                "storm".to_owned(),
                format!(
                    "{} clients in {} rooms, {} publishers, outage {:.1} s",
                    self.clients, self.rooms, self.publishers, self.outage_seconds
                ),
            ),
            (
                "first join".to_owned(),
                format!(
                    "{} of {} in {:.2} s ({:.0}/s), {} failed ({})",
                    i.established,
                    i.attempted,
                    i.seconds,
                    i.per_second,
                    i.failed,
                    map(&i.failures)
                ),
            ),
            (
                "reconnect".to_owned(),
                format!(
                    "{} dropped, {} of {} back in {:.2} s after the drop: {:.0} joins/s, {} failed ({})",
                    self.dropped,
                    r.established,
                    r.attempted,
                    self.seconds_to_all_back,
                    r.per_second,
                    r.failed,
                    map(&r.failures)
                ),
            ),
            (
                "drop to joined".to_owned(),
                format!("p50 {} / p99 {} / max {}", ms(r.latency.p50_us), ms(r.latency.p99_us), ms(r.latency.max_us)),
            ),
        ];
        rows.push((
            "recovery".to_owned(),
            if c.supported {
                format!(
                    "{} recovered, {} not ({}), {} unanswered; {} replayed",
                    c.recovered,
                    c.not_recovered,
                    map(&c.reasons),
                    c.unanswered,
                    c.replayed
                )
            } else {
                "not supported (the server's `joined` says nothing about `since`)".to_owned()
            },
        ));
        rows.push((
            "storm messages".to_owned(),
            format!(
                "{} published ({} acked); recovered clients: {} of {} expected, lost {}; not recovered: {} missing",
                self.messages.published, self.messages.acked, d.delivered, d.expected, d.lost, d.lost_unrecovered
            ),
        ));
        rows.push((
            "storm dup / late / outside".to_owned(),
            format!("{} / {} / {}", d.duplicated, d.out_of_order, d.outside),
        ));
        rows.push((
            "presence events".to_owned(),
            format!(
                "{} ({} after the drop), {:.1} per client, at most {}",
                p.total, p.after_drop, p.per_client_mean, p.per_client_max
            ),
        ));
        if let Some(s) = &self.server {
            rows.push((
                "server cpu, joins".to_owned(),
                format!(
                    "first join {:.2} s; storm {:.2} s ({:.0}% of a core), {} ms per join",
                    s.initial_cpu_seconds,
                    s.storm_cpu_seconds,
                    s.storm_cpu_utilisation * 100.0,
                    s.storm_cpu_ms_per_join.map_or_else(|| "-".to_owned(), |v| format!("{v:.3}"))
                ),
            ));
        }
        rows
    }
}

// ---- the run --------------------------------------------------------------------------------

/// Where the clients are; ordered, as they only move forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    Run,
    Drop,
    Stop,
}

/// Where the publishers are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Publishing {
    Wait,
    Publish,
    Drain,
    Stop,
}

struct Cfg {
    target: Target,
    sources: Sources,
    rooms: usize,
    publishers: usize,
    /// Between two sends of one publisher.
    interval: Duration,
    size: usize,
    outage: Duration,
    connect_timeout: Duration,
    initial_slots: Semaphore,
    reconnect_slots: Semaphore,
}

#[derive(Default)]
struct Shared {
    drop_at: OnceLock<Instant>,
    delivered: AtomicU64,
    published: AtomicU64,
    acked: AtomicU64,
}

/// What a `joined` said.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct JoinInfo {
    epoch: Option<String>,
    last_seq: Option<u64>,
    recovered: Option<bool>,
    reason: Option<String>,
    replayed: Option<u64>,
}

/// The answer to a `join`.
enum Answer {
    Joined(JoinInfo),
    Refused(String),
}

/// One client's frames.
#[derive(Default)]
struct Acc {
    seqs: Vec<u64>,
    presence: u64,
    presence_after_drop: u64,
    after_drop: bool,
    errors: BTreeMap<String, u64>,
}

impl Acc {
    fn on_frame(&mut self, frame: &str, shared: &Shared) -> Option<Answer> {
        match event::parse_event(frame) {
            Ok(Event::Message { seq, .. }) => {
                self.seqs.push(seq);
                shared.delivered.fetch_add(1, Ordering::Relaxed);
                None
            }
            // `joined` is rare (twice per client): serde for its fields is fine.
            Ok(Event::Joined) => Some(Answer::Joined(serde_json::from_str(frame).unwrap_or_default())),
            Ok(Event::Error { code }) => Some(Answer::Refused(code)),
            Ok(Event::Other) if frame.starts_with(r#"{"type":"presence""#) => {
                self.presence += 1;
                self.presence_after_drop += u64::from(self.after_drop);
                None
            }
            Ok(Event::Ack { .. } | Event::Other) | Err(_) => None,
        }
    }

    /// Every buffered frame; false when the server closed.
    fn drain(&mut self, ws: &mut LeanWs, shared: &Shared) -> bool {
        let drained = ws.drain(|text| {
            if let Some(Answer::Refused(code)) = self.on_frame(text, shared) {
                *self.errors.entry(code).or_default() += 1;
            }
            true
        });
        matches!(drained, Ok(Drained::Open))
    }
}

/// A client's part of the report.
#[derive(Default)]
struct ClientReport {
    room: usize,
    first: Option<Result<JoinInfo, String>>,
    again: Option<Result<JoinInfo, String>>,
    acc: Acc,
}

/// What a client tells the controller as it goes.
enum Outcome {
    First(Result<Duration, String>),
    Again(Result<Duration, String>),
}

/// `join bench-<room>`, with `since` and `epoch` when given.
fn join_frame(room: usize, since: Option<(u64, Option<&str>)>) -> String {
    match since {
        None => event::join_frame(room),
        Some((since, epoch)) => {
            let epoch = epoch.map(|e| format!(r#","epoch":{}"#, serde_json::Value::from(e))).unwrap_or_default();
            format!(r#"{{"action":"join","room":"bench-{room}","since":{since}{epoch}}}"#)
        }
    }
}

/// Connects, upgrades and joins; frames before `joined` (a replay, presence) are the client's.
async fn connect(
    cfg: &Cfg,
    idx: usize,
    frame: &str,
    acc: &mut Acc,
    shared: &Shared,
) -> Result<(LeanWs, JoinInfo), String> {
    let attempt = async {
        let mut ws = cfg.target.upgrade(cfg.sources.of(idx)).await.map_err(|e| e.kind())?;
        ws.send_text(frame).await.map_err(|e| ConnectError::Tcp(e).kind())?;
        loop {
            let mut answer = None;
            let drained = ws.drain(|text| {
                answer = acc.on_frame(text, shared);
                answer.is_none()
            });
            let drained = drained.map_err(|_| "websocket".to_owned())?;
            ws.flush_pongs().await.map_err(|e| ConnectError::Tcp(e).kind())?;
            match answer {
                Some(Answer::Joined(info)) => return Ok((ws, info)),
                Some(Answer::Refused(code)) => return Err(format!("join_{code}")),
                None if drained == Drained::Closed => return Err("join_closed".to_owned()),
                None => {}
            }
            if !ws.fill().await.map_err(|e| ConnectError::Tcp(e).kind())? {
                return Err("join_closed".to_owned());
            }
        }
    };
    tokio::time::timeout(cfg.connect_timeout, attempt).await.unwrap_or_else(|_| Err("timeout".to_owned()))
}

/// Reads until the phase reaches `until` (true) or the server closes (false).
async fn read_until(
    ws: &mut LeanWs,
    acc: &mut Acc,
    shared: &Shared,
    phase: &mut watch::Receiver<Phase>,
    until: Phase,
) -> bool {
    // Frames that came with `joined` are buffered already.
    if !acc.drain(ws, shared) {
        return false;
    }
    loop {
        if *phase.borrow_and_update() >= until {
            return true;
        }
        tokio::select! {
            biased;
            changed = phase.changed() => if changed.is_err() { return true },
            read = ws.fill() => {
                if !matches!(read, Ok(true)) || !acc.drain(ws, shared) || ws.flush_pongs().await.is_err() {
                    return false;
                }
            }
        }
    }
}

async fn client_task(
    cfg: Arc<Cfg>,
    shared: Arc<Shared>,
    idx: usize,
    outcomes: mpsc::UnboundedSender<Outcome>,
    mut phase: watch::Receiver<Phase>,
) -> ClientReport {
    let room = idx % cfg.rooms;
    let mut report = ClientReport { room, ..ClientReport::default() };
    let first = {
        // Closed only if the controller gave up; then nothing is measured anyway.
        let Ok(_slot) = cfg.initial_slots.acquire().await else { return report };
        let began = Instant::now();
        let first = connect(&cfg, idx, &join_frame(room, None), &mut report.acc, &shared).await;
        let _ = outcomes.send(Outcome::First(first.as_ref().map(|_| began.elapsed()).map_err(Clone::clone)));
        first
    };
    let (mut ws, info) = match first {
        Ok(joined) => joined,
        Err(kind) => {
            report.first = Some(Err(kind));
            return report;
        }
    };
    report.first = Some(Ok(info.clone()));
    // A connection the server closed before the drop reconnects with the others.
    let _open = read_until(&mut ws, &mut report.acc, &shared, &mut phase, Phase::Drop).await;
    ws.abort();
    report.acc.after_drop = true;
    let drop_at = *shared.drop_at.get_or_init(Instant::now);
    tokio::time::sleep_until((drop_at + cfg.outage).into()).await;
    let since = report.acc.seqs.iter().copied().max().or(info.last_seq).unwrap_or(0);
    let frame = join_frame(room, Some((since, info.epoch.as_deref())));
    let again = {
        let Ok(_slot) = cfg.reconnect_slots.acquire().await else { return report };
        connect(&cfg, idx, &frame, &mut report.acc, &shared).await
    };
    let _ = outcomes.send(Outcome::Again(again.as_ref().map(|_| drop_at.elapsed()).map_err(Clone::clone)));
    drop(outcomes);
    match again {
        Ok((mut ws, info)) => {
            report.again = Some(Ok(info));
            read_until(&mut ws, &mut report.acc, &shared, &mut phase, Phase::Stop).await;
        }
        Err(kind) => report.again = Some(Err(kind)),
    }
    report
}

/// A publisher's part of the report.
#[derive(Default)]
struct PublisherReport {
    sent: u64,
    /// Room -> (lowest, highest) acknowledged seq.
    seqs: BTreeMap<usize, (u64, u64)>,
    errors: BTreeMap<String, u64>,
    closed_early: bool,
}

#[derive(serde::Deserialize)]
struct AckFrame<'a> {
    #[serde(rename = "type", borrow)]
    kind: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    id: Option<std::borrow::Cow<'a, str>>,
    seq: Option<u64>,
    #[serde(borrow)]
    code: Option<std::borrow::Cow<'a, str>>,
}

impl PublisherReport {
    fn on_frame(&mut self, frame: &str, shared: &Shared) {
        let Ok(f) = serde_json::from_str::<AckFrame<'_>>(frame) else { return };
        match (&*f.kind, f.id, f.seq) {
            ("ack", Some(id), Some(seq)) => {
                // The id is `r<room>-p<publisher>-<n>`.
                let room = id.strip_prefix('r').and_then(|r| r.split('-').next()).and_then(|r| r.parse().ok());
                if let Some(room) = room {
                    let e = self.seqs.entry(room).or_insert((seq, seq));
                    *e = (e.0.min(seq), e.1.max(seq));
                    shared.acked.fetch_add(1, Ordering::Relaxed);
                }
            }
            ("error", _, _) => {
                *self.errors.entry(f.code.map_or_else(|| "unknown".to_owned(), |c| c.into_owned())).or_default() += 1
            }
            _ => {}
        }
    }
}

async fn publisher_task(
    cfg: Arc<Cfg>,
    shared: Arc<Shared>,
    k: usize,
    mut ws: LeanWs,
    mut phase: watch::Receiver<Publishing>,
) -> PublisherReport {
    let mut report = PublisherReport::default();
    let rooms: Vec<usize> = (k..cfg.rooms).step_by(cfg.publishers).collect();
    let anchor = Instant::now();
    let mut next_at: Option<Instant> = None;
    let sleep = tokio::time::sleep(Duration::from_secs(86_400));
    tokio::pin!(sleep);
    let (mut payload, mut frame) = (String::new(), String::new());
    loop {
        let now_phase = *phase.borrow_and_update();
        if now_phase >= Publishing::Stop {
            break;
        }
        if now_phase == Publishing::Publish && next_at.is_none() {
            // Staggered over one interval, so the rooms get a steady flow rather than bursts.
            let at = Instant::now() + cfg.interval.mul_f64(k as f64 / cfg.publishers as f64);
            next_at = Some(at);
            sleep.as_mut().reset(at.into());
        }
        let sending = now_phase == Publishing::Publish;
        tokio::select! {
            biased;
            changed = phase.changed() => if changed.is_err() { break },
            read = ws.fill() => {
                let open = matches!(read, Ok(true)) && matches!(ws.drain(|t| { report.on_frame(t, &shared); true }), Ok(Drained::Open));
                if !open || ws.flush_pongs().await.is_err() {
                    report.closed_early = true;
                    break;
                }
            }
            () = &mut sleep, if sending => {
                let n = report.sent + 1;
                let room = rooms[(report.sent as usize) % rooms.len()];
                let ts = u64::try_from(anchor.elapsed().as_nanos()).unwrap_or(u64::MAX);
                event::write_payload(&mut payload, ts, n, cfg.size);
                frame.clear();
                frame.push_str(&format!(
                    r#"{{"action":"sendmessage","room":"bench-{room}","message":"{payload}","id":"r{room}-p{k}-{n}"}}"#
                ));
                if ws.send_text(&frame).await.is_err() {
                    report.closed_early = true;
                    break;
                }
                report.sent = n;
                shared.published.fetch_add(1, Ordering::Relaxed);
                let at = next_at.map_or_else(Instant::now, |t| t + cfg.interval);
                next_at = Some(at);
                sleep.as_mut().reset(at.into());
            }
        }
    }
    report
}

fn sample(pid: Option<u32>) -> Option<ProcSample> {
    pid.and_then(|p| procfs::sample(Some(p)).ok())
}

/// Runs the storm and fills `report.storm`, plus `connect` (the first join), `server` (the storm:
/// the drop to the last `joined`) and `generator`.
pub(crate) async fn run(args: &BenchArgs, target: Target, sources: Sources, report: &mut Report) -> anyhow::Result<()> {
    let n = args.connections;
    let cfg = Arc::new(Cfg {
        target,
        sources,
        rooms: args.rooms,
        publishers: args.senders,
        interval: Duration::from_secs_f64(args.senders as f64 / args.rate),
        size: args.size,
        outage: args.storm_outage,
        connect_timeout: args.connect_timeout,
        initial_slots: Semaphore::new(args.connect_concurrency),
        reconnect_slots: Semaphore::new(args.connect_concurrency),
    });
    let shared = Arc::new(Shared::default());
    let before = sample(args.server_pid);
    if args.server_pid.is_some() && before.is_none() {
        anyhow::bail!("cannot read /proc/{} (is --server-pid right?)", args.server_pid.unwrap_or(0));
    }
    let say = |line: String| {
        if !args.quiet {
            eprintln!("[bench storm] {line}");
        }
    };

    // Publishers first: they join nothing.
    let (pub_tx, pub_rx) = watch::channel(Publishing::Wait);
    let mut publishers: Vec<JoinHandle<PublisherReport>> = Vec::with_capacity(args.senders);
    for k in 0..args.senders {
        let ws = tokio::time::timeout(args.connect_timeout, cfg.target.upgrade(cfg.sources.of(n + k)))
            .await
            .map_err(|_| ConnectError::Timeout)
            .and_then(|r| r)
            .with_context(|| format!("connecting publisher {k}"))?;
        publishers.push(tokio::spawn(publisher_task(Arc::clone(&cfg), Arc::clone(&shared), k, ws, pub_rx.clone())));
    }

    // The first connect and join.
    let (phase_tx, phase_rx) = watch::channel(Phase::Run);
    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<Outcome>();
    let began = Instant::now();
    let clients: Vec<JoinHandle<ClientReport>> = (0..n)
        .map(|idx| {
            tokio::spawn(client_task(Arc::clone(&cfg), Arc::clone(&shared), idx, out_tx.clone(), phase_rx.clone()))
        })
        .collect();
    drop(out_tx);
    let mut stats = StormStats {
        clients: n as u64,
        rooms: args.rooms,
        publishers: args.senders,
        outage_seconds: args.storm_outage.as_secs_f64(),
        ..StormStats::default()
    };
    let mut first_latency = new_histogram();
    let mut last_line = Instant::now();
    while stats.initial.established + stats.initial.failed < n as u64 {
        let Some(outcome) = out_rx.recv().await else { break };
        if let Outcome::First(r) = outcome {
            match r {
                Ok(d) => {
                    stats.initial.established += 1;
                    first_latency.saturating_record(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
                }
                Err(kind) => {
                    stats.initial.failed += 1;
                    *stats.initial.failures.entry(kind).or_default() += 1;
                }
            }
        }
        if last_line.elapsed() >= Duration::from_secs(1) {
            say(format!("first join {}/{n} (failed {})", stats.initial.established, stats.initial.failed));
            last_line = Instant::now();
        }
    }
    stats.initial.attempted = n as u64;
    stats.initial.seconds = began.elapsed().as_secs_f64();
    stats.initial.per_second = stats.initial.established as f64 / stats.initial.seconds.max(1e-9);
    stats.initial.latency = LatencySummary::from_histogram(&first_latency);
    let after_first = sample(args.server_pid);
    say(format!("{} clients joined in {:.2} s; publishing", stats.initial.established, stats.initial.seconds));
    if stats.initial.established == 0 {
        let _ = phase_tx.send(Phase::Stop);
        let _ = pub_tx.send(Publishing::Stop);
        anyhow::bail!("no client reached `joined`: {:?}", stats.initial.failures);
    }

    let _ = pub_tx.send(Publishing::Publish);
    tokio::time::sleep(args.warmup).await;

    // The drop: every client resets its connection at once.
    let storm_start = (sample(args.server_pid), procfs::sample(None).ok());
    let drop_at = *shared.drop_at.get_or_init(Instant::now);
    let _ = phase_tx.send(Phase::Drop);
    stats.dropped = stats.initial.established;
    say(format!("dropped {} connections; reconnecting", stats.dropped));
    let mut again_latency = new_histogram();
    let mut last_back = drop_at;
    let mut failed_again = 0u64;
    while stats.reconnect.established + failed_again < stats.initial.established {
        let Some(outcome) = out_rx.recv().await else { break };
        if let Outcome::Again(r) = outcome {
            match r {
                Ok(d) => {
                    stats.reconnect.established += 1;
                    last_back = Instant::now();
                    again_latency.saturating_record(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
                }
                Err(kind) => {
                    failed_again += 1;
                    *stats.reconnect.failures.entry(kind).or_default() += 1;
                }
            }
        }
        if last_line.elapsed() >= Duration::from_secs(1) {
            say(format!("back {}/{} (failed {failed_again})", stats.reconnect.established, stats.initial.established));
            last_line = Instant::now();
        }
    }
    let storm_end = (sample(args.server_pid), procfs::sample(None).ok());
    stats.reconnect.attempted = stats.initial.established;
    stats.reconnect.failed = failed_again;
    stats.seconds_to_all_back = last_back.duration_since(drop_at).as_secs_f64();
    stats.reconnect.seconds = last_back.saturating_duration_since(drop_at + args.storm_outage).as_secs_f64();
    stats.reconnect.per_second = stats.reconnect.established as f64 / stats.reconnect.seconds.max(1e-9);
    stats.reconnect.latency = LatencySummary::from_histogram(&again_latency);
    stats.all_back = stats.reconnect.established == stats.initial.established;
    say(format!(
        "{} back in {:.2} s ({:.0} joins/s); publishing for {:?} more",
        stats.reconnect.established, stats.seconds_to_all_back, stats.reconnect.per_second, args.duration
    ));

    // Publishing goes on, then the acknowledgements and deliveries are collected.
    tokio::time::sleep(args.duration).await;
    let _ = pub_tx.send(Publishing::Drain);
    let drain_until = Instant::now() + args.drain;
    let mut drained = false;
    while Instant::now() < drain_until {
        if shared.acked.load(Ordering::Relaxed) >= shared.published.load(Ordering::Relaxed) {
            drained = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = pub_tx.send(Publishing::Stop);
    let mut seen = shared.delivered.load(Ordering::Relaxed);
    let mut quiet_since = Instant::now();
    let deliveries_until = Instant::now() + args.drain;
    while Instant::now() < deliveries_until && quiet_since.elapsed() < Duration::from_millis(300) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = shared.delivered.load(Ordering::Relaxed);
        if now != seen {
            seen = now;
            quiet_since = Instant::now();
        }
    }
    let _ = phase_tx.send(Phase::Stop);

    let mut room_seqs: BTreeMap<usize, (u64, u64)> = BTreeMap::new();
    let m = &mut stats.messages;
    m.drained = drained;
    let mut publishers_closed = 0;
    for handle in publishers {
        // A panicked publisher's acknowledgements are lost: its messages then show as loss.
        let p = handle.await.unwrap_or_default();
        m.published += p.sent;
        publishers_closed += u64::from(p.closed_early);
        for (code, count) in p.errors {
            *m.errors.entry(code).or_default() += count;
        }
        for (room, (lo, hi)) in p.seqs {
            let e = room_seqs.entry(room).or_insert((lo, hi));
            *e = (e.0.min(lo), e.1.max(hi));
        }
    }
    m.acked = shared.acked.load(Ordering::Relaxed);

    let mut tally = StormTally::default();
    let mut presence_max = 0u64;
    for handle in clients {
        let c = handle.await.unwrap_or_default();
        let Some(Ok(first)) = &c.first else { continue };
        stats.presence.total += c.acc.presence;
        stats.presence.after_drop += c.acc.presence_after_drop;
        presence_max = presence_max.max(c.acc.presence);
        let how = match &c.again {
            Some(Ok(info)) => {
                stats.recovery.replayed += info.replayed.unwrap_or(0);
                match info.recovered {
                    Some(true) => Recovered::Yes,
                    Some(false) => Recovered::No(info.reason.clone().unwrap_or_else(|| "unknown".to_owned())),
                    None => Recovered::Unanswered,
                }
            }
            Some(Err(kind)) => Recovered::NotBack(kind.clone()),
            None => Recovered::NotBack("not_tried".to_owned()),
        };
        let (lo, hi) = room_seqs.get(&c.room).copied().unwrap_or((1, 0));
        // The peer's `joined` has no `lastSeq`: its clients joined before the first publish.
        let baseline = first.last_seq.unwrap_or(lo.saturating_sub(1));
        tally.add(&how, &tally_client(baseline, hi.max(baseline), &c.acc.seqs));
    }
    stats.presence.per_client_mean = stats.presence.total as f64 / stats.initial.established.max(1) as f64;
    stats.presence.per_client_max = presence_max;
    stats.recovery.supported = tally.recovered > 0 || !tally.not_recovered.is_empty();
    stats.recovery.recovered = tally.recovered;
    stats.recovery.not_recovered = tally.not_recovered.values().sum();
    stats.recovery.reasons = tally.not_recovered.clone();
    stats.recovery.unanswered = tally.unanswered;
    let m = &mut stats.messages;
    m.deliveries = tally.deliveries.clone();

    // The report's shared sections: `connect` is the first join, `server` and `generator` the storm.
    let window = stats.seconds_to_all_back.max(1e-9);
    report.window_seconds = stats.seconds_to_all_back;
    report.connect = stats.initial.clone();
    crate::runner::fill_generator(report, storm_start.1, storm_end.1, window);
    if let (Some(pid), Some(before), Some(first_end), Some(start), Some(end)) =
        (args.server_pid, before, after_first, storm_start.0, storm_end.0)
    {
        let cpu = start.cpu_seconds_until(&end);
        stats.server = Some(StormServer {
            initial_cpu_seconds: before.cpu_seconds_until(&first_end),
            storm_cpu_seconds: cpu,
            storm_cpu_utilisation: cpu / window,
            storm_cpu_ms_per_join: (stats.reconnect.established > 0)
                .then(|| cpu * 1e3 / stats.reconnect.established as f64),
        });
        report.server = Some(ServerStats {
            pid,
            cpu_seconds: cpu,
            cpu_utilisation: cpu / window,
            rss_before_connect_kib: before.rss_kib,
            rss_start_kib: start.rss_kib,
            rss_end_kib: end.rss_kib,
            peak_rss_kib: end.hwm_kib,
            ..ServerStats::default()
        });
    } else if args.server_pid.is_some() {
        report.notes.push("the server process could not be read during the storm (did it exit?)".to_owned());
    }
    let notes = &mut report.notes;
    if !stats.all_back {
        notes.push(format!(
            "{} of {} clients did not get back ({:?})",
            stats.reconnect.failed, stats.reconnect.attempted, stats.reconnect.failures
        ));
    }
    if !stats.recovery.supported {
        notes.push("the server does not answer `join … since` with `recovered`: recovery not supported".to_owned());
    }
    if stats.messages.deliveries.lost > 0 {
        notes.push(format!("recovered clients lost {} deliveries", stats.messages.deliveries.lost));
    }
    if stats.messages.deliveries.duplicated > 0 || stats.messages.deliveries.out_of_order > 0 {
        notes.push(format!(
            "{} deliveries repeated and {} came after a higher seq: live messages reach a rejoining client while its \
             replay is sent; a client that drops every seq not above its last would lose the late ones",
            stats.messages.deliveries.duplicated, stats.messages.deliveries.out_of_order
        ));
    }
    if !drained {
        notes.push(format!("not drained after {:?}: some acknowledgements never arrived", args.drain));
    }
    if publishers_closed > 0 {
        notes.push(format!("{publishers_closed} publishers were closed by the server during the run"));
    }
    if !stats.messages.errors.is_empty() {
        notes.push(format!("publishers got errors: {:?}", stats.messages.errors));
    }
    report.storm = Some(stats);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_that_got_everything_live_and_replayed_lost_nothing() {
        // Joined at lastSeq 10; 11-13 live, dropped, 14-16 replayed, 17 live.
        let t = tally_client(10, 17, &[11, 12, 13, 14, 15, 16, 17]);
        assert_eq!(t, ClientTally { expected: 7, received: 7, ..ClientTally::default() });
    }

    #[test]
    fn a_gap_is_loss_and_a_repeat_is_a_duplicate() {
        // 13 never came (dropped in flight, not replayed), 15 came twice.
        let t = tally_client(10, 16, &[11, 12, 14, 15, 15, 16]);
        assert_eq!(t.expected, 6);
        assert_eq!(t.received, 5);
        assert_eq!(t.lost, 1);
        assert_eq!(t.duplicated, 1);
        assert_eq!(t.out_of_order, 0);
    }

    #[test]
    fn a_replay_crossing_live_messages_is_late_not_lost() {
        // Live 16 overtook the replay of 14 and 15.
        let t = tally_client(10, 16, &[11, 12, 13, 16, 14, 15]);
        assert_eq!((t.lost, t.out_of_order, t.duplicated), (0, 2, 0));
        // A replay from before the first join is outside the range, not a delivery.
        let t = tally_client(10, 12, &[9, 10, 11, 12]);
        assert_eq!((t.received, t.outside, t.lost), (2, 2, 0));
        // Nothing published: nothing expected.
        assert_eq!(tally_client(5, 5, &[]), ClientTally::default());
    }

    #[test]
    fn only_recovered_clients_count_as_loss() {
        let mut all = StormTally::default();
        all.add(&Recovered::Yes, &tally_client(0, 10, &(1..=10).collect::<Vec<_>>()));
        all.add(&Recovered::Yes, &tally_client(0, 10, &[1, 2, 3, 4, 5, 6, 7, 8, 10, 10]));
        all.add(&Recovered::No("gap_too_large".into()), &tally_client(0, 10, &[1, 2]));
        all.add(&Recovered::Unanswered, &tally_client(0, 10, &[1, 2, 3, 9, 10]));
        all.add(&Recovered::NotBack("timeout".into()), &tally_client(0, 10, &[1]));
        assert_eq!(all.recovered, 2);
        assert_eq!((all.deliveries.expected, all.deliveries.delivered, all.deliveries.lost), (20, 19, 1));
        assert_eq!(all.deliveries.lost_unrecovered, 8 + 5 + 9);
        assert_eq!(all.deliveries.duplicated, 1);
        assert_eq!(all.not_recovered.get("gap_too_large"), Some(&1));
        assert_eq!(all.unanswered, 1);
        assert_eq!(all.not_back.get("timeout"), Some(&1));
    }

    #[test]
    fn the_join_frame_carries_since_and_epoch_as_json() {
        assert_eq!(join_frame(3, None), r#"{"action":"join","room":"bench-3"}"#);
        let frame = join_frame(3, Some((42, Some("k3\"v9"))));
        let v: serde_json::Value = match serde_json::from_str(&frame) {
            Ok(v) => v,
            Err(e) => panic!("{e}: {frame}"),
        };
        assert_eq!(v["since"], 42);
        assert_eq!(v["epoch"], "k3\"v9");
        assert_eq!(join_frame(0, Some((0, None))), r#"{"action":"join","room":"bench-0","since":0}"#);
    }

    #[test]
    fn the_joined_fields_are_read_and_presence_is_counted() {
        let shared = Shared::default();
        let mut acc = Acc::default();
        let joined = r#"{"type":"joined","room":"bench-1","epoch":"e1","lastSeq":12,"replayed":2,"recovered":true}"#;
        match acc.on_frame(joined, &shared) {
            Some(Answer::Joined(info)) => {
                assert_eq!(info.epoch.as_deref(), Some("e1"));
                assert_eq!((info.last_seq, info.replayed, info.recovered), (Some(12), Some(2), Some(true)));
            }
            _ => panic!("joined not recognised"),
        }
        let presence = r#"{"type":"presence","room":"bench-1","event":"join","name":"anon-x","connectionId":"x"}"#;
        assert!(acc.on_frame(presence, &shared).is_none());
        acc.after_drop = true;
        assert!(acc.on_frame(presence, &shared).is_none());
        let message = r#"{"type":"message","room":"bench-1","seq":13,"id":"r1-p0-1","from":"a","text":"1:1:x","ts":1}"#;
        assert!(acc.on_frame(message, &shared).is_none());
        assert_eq!((acc.presence, acc.presence_after_drop, acc.seqs.as_slice()), (2, 1, &[13u64][..]));
        assert!(
            matches!(acc.on_frame(r#"{"type":"error","code":"too_many_rooms"}"#, &shared), Some(Answer::Refused(c)) if c == "too_many_rooms")
        );
    }
}
