//! Delivery accounting without I/O: per-connection sequence tracking, loss arithmetic and the
//! latency histograms.

use hdrhistogram::Histogram;
use parking_lot::Mutex;

/// What a received room `seq` tells about one connection's stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// Higher than anything seen so far (a gap before it may be loss or reordering).
    InOrder,
    /// Lower than the highest seen, and not seen before.
    OutOfOrder,
    /// Seen before.
    Duplicate,
}

/// Tracks one connection's room `seq`s: the highest seen plus a 64-wide bitmap below it, enough to
/// tell duplicates from late arrivals without keeping every `seq`.
#[derive(Debug, Default, Clone)]
pub struct SeqTracker {
    highest: u64,
    /// Bit `i` set: `highest - i` was seen.
    recent: u64,
    started: bool,
}

impl SeqTracker {
    /// Classifies `seq` and remembers it.
    pub fn observe(&mut self, seq: u64) -> Seen {
        if !self.started {
            // The first delivery after `join` starts wherever the room's counter is.
            self.started = true;
            self.highest = seq;
            self.recent = 1;
            return Seen::InOrder;
        }
        if seq > self.highest {
            let shift = seq - self.highest;
            self.recent = if shift >= 64 { 0 } else { self.recent << shift };
            self.recent |= 1;
            self.highest = seq;
            return Seen::InOrder;
        }
        let back = self.highest - seq;
        if back >= 64 {
            // Too old for the bitmap; far more likely a very late arrival than a duplicate.
            return Seen::OutOfOrder;
        }
        let bit = 1u64 << back;
        if self.recent & bit != 0 {
            Seen::Duplicate
        } else {
            self.recent |= bit;
            Seen::OutOfOrder
        }
    }
}

/// Deliveries the run should have seen: every message sent into a room reaches every member of
/// that room, its sender included. `sent[r]` and `members[r]` are per room.
pub fn expected_deliveries(sent: &[u64], members: &[u64]) -> u64 {
    sent.iter().zip(members).map(|(s, m)| s.saturating_mul(*m)).sum()
}

/// The measured window's delivery totals.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Tally {
    /// Sent-in-window messages times their room's size.
    pub expected: u64,
    /// Distinct deliveries of sent-in-window messages.
    pub received: u64,
    /// Deliveries of a `seq` the connection had already seen.
    pub duplicated: u64,
    /// Deliveries that arrived after a higher `seq`.
    pub out_of_order: u64,
}

impl Tally {
    /// Expected deliveries that never arrived.
    pub fn lost(&self) -> u64 {
        self.expected.saturating_sub(self.received)
    }
}

/// Latency percentiles in microseconds.
#[derive(Debug, Default, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LatencySummary {
    /// Samples recorded.
    pub count: u64,
    /// Mean.
    pub mean_us: f64,
    /// Median.
    pub p50_us: f64,
    /// 90th percentile.
    pub p90_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// 99.9th percentile.
    pub p999_us: f64,
    /// Largest sample.
    pub max_us: f64,
    /// The latency-by-percentile curve (HdrHistogram's classic plot): the latency at percentiles
    /// spaced evenly on a log scale of `1 / (1 - p)` (four per decade: 0, 43.8, 68.4, 82.2, 90, …,
    /// 99.999), only as far as the sample count resolves (`1 / (1 - p)` at most `count`), then the
    /// largest sample at percentile 100.
    #[serde(default)]
    pub by_percentile: Vec<PercentilePoint>,
}

/// One point of [`LatencySummary::by_percentile`].
#[derive(Debug, Default, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PercentilePoint {
    /// 0 to 100.
    pub percentile: f64,
    /// The latency at or under which `percentile` % of the samples fall, µs.
    pub latency_us: f64,
}

/// Points per decade of `1 / (1 - p)` in [`LatencySummary::by_percentile`].
const CURVE_STEPS_PER_DECADE: u32 = 4;
/// Decades of `1 / (1 - p)` in the curve: 5 reaches the 99.999th percentile.
const CURVE_DECADES: u32 = 5;

impl LatencySummary {
    /// Summarises a histogram of nanoseconds.
    pub fn from_histogram(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        let us = |ns: u64| ns as f64 / 1_000.0;
        Self {
            count: h.len(),
            mean_us: h.mean() / 1_000.0,
            p50_us: us(h.value_at_quantile(0.5)),
            p90_us: us(h.value_at_quantile(0.9)),
            p99_us: us(h.value_at_quantile(0.99)),
            p999_us: us(h.value_at_quantile(0.999)),
            max_us: us(h.max()),
            by_percentile: percentile_curve(h),
        }
    }
}

/// [`LatencySummary::by_percentile`] of a non-empty histogram of nanoseconds.
fn percentile_curve(h: &Histogram<u64>) -> Vec<PercentilePoint> {
    let count = h.len() as f64;
    let mut points: Vec<PercentilePoint> = (0..=CURVE_DECADES * CURVE_STEPS_PER_DECADE)
        // Whole decades from `powi`, exact, so that 100,000 samples do reach the 99.999th percentile.
        .map(|i| {
            let (decade, step) = (i / CURVE_STEPS_PER_DECADE, i % CURVE_STEPS_PER_DECADE);
            10f64.powi(decade as i32) * 10f64.powf(f64::from(step) / f64::from(CURVE_STEPS_PER_DECADE))
        })
        // Beyond `count` every percentile is the largest sample: the max point below says it once.
        .take_while(|&inverse_tail| inverse_tail <= count)
        .map(|inverse_tail| {
            let quantile = 1.0 - 1.0 / inverse_tail;
            // Six decimals place 99.999 exactly and keep the file short.
            let percentile = (quantile * 100.0 * 1e6).round() / 1e6;
            PercentilePoint { percentile, latency_us: h.value_at_quantile(quantile) as f64 / 1_000.0 }
        })
        .collect();
    points.push(PercentilePoint { percentile: 100.0, latency_us: h.max() as f64 / 1_000.0 });
    points
}

/// Slowest latency the histograms hold: anything slower is clamped, and a minute is already a
/// failed run.
const MAX_LATENCY_NS: u64 = 60_000_000_000;

/// A new histogram of nanoseconds, 1 µs to 60 s at 3 significant digits (about 57 KiB).
pub fn new_histogram() -> Histogram<u64> {
    match Histogram::new_with_bounds(1_000, MAX_LATENCY_NS, 3) {
        Ok(h) => h,
        // The bounds are constants that hdrhistogram accepts; this arm is unreachable.
        Err(e) => unreachable!("constant histogram bounds rejected: {e}"),
    }
}

/// Latency histograms shared by the connection tasks. One histogram per connection would cost
/// 57 KiB x 15,000; a handful of shards behind uncontended locks costs a few tens of nanoseconds per
/// sample instead.
#[derive(Debug)]
pub struct LatencyShards {
    shards: Vec<Mutex<Histogram<u64>>>,
}

impl LatencyShards {
    /// `count` shards (at least one).
    pub fn new(count: usize) -> Self {
        Self { shards: (0..count.max(1)).map(|_| Mutex::new(new_histogram())).collect() }
    }

    /// Records `ns` in the shard for `key` (a connection index).
    pub fn record(&self, key: usize, ns: u64) {
        let shard = &self.shards[key % self.shards.len()];
        shard.lock().saturating_record(ns.min(MAX_LATENCY_NS));
    }

    /// All shards added together.
    pub fn merged(&self) -> Histogram<u64> {
        let mut all = new_histogram();
        for shard in &self.shards {
            // Same bounds everywhere, so adding cannot fail.
            let _ = all.add(&*shard.lock());
        }
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_stream_with_a_gap() {
        let mut t = SeqTracker::default();
        assert_eq!(t.observe(10), Seen::InOrder);
        assert_eq!(t.observe(11), Seen::InOrder);
        assert_eq!(t.observe(13), Seen::InOrder);
        // 12 arrives late: reordered, not a duplicate.
        assert_eq!(t.observe(12), Seen::OutOfOrder);
        assert_eq!(t.observe(12), Seen::Duplicate);
        assert_eq!(t.observe(13), Seen::Duplicate);
        assert_eq!(t.observe(14), Seen::InOrder);
    }

    #[test]
    fn big_jumps_clear_the_bitmap() {
        let mut t = SeqTracker::default();
        assert_eq!(t.observe(1), Seen::InOrder);
        assert_eq!(t.observe(200), Seen::InOrder);
        assert_eq!(t.observe(199), Seen::OutOfOrder);
        assert_eq!(t.observe(137), Seen::OutOfOrder);
        assert_eq!(t.observe(1), Seen::OutOfOrder, "beyond the bitmap: counted as late");
        assert_eq!(t.observe(200), Seen::Duplicate);
    }

    #[test]
    fn expected_and_lost() {
        // Room 0: 10 messages x 3 members; room 1: 4 x 2.
        let expected = expected_deliveries(&[10, 4], &[3, 2]);
        assert_eq!(expected, 38);
        let tally = Tally { expected, received: 35, duplicated: 1, out_of_order: 2 };
        assert_eq!(tally.lost(), 3);
        let over = Tally { expected: 1, received: 2, ..Tally::default() };
        assert_eq!(over.lost(), 0);
    }

    #[test]
    fn shards_merge_into_percentiles() {
        let shards = LatencyShards::new(4);
        for i in 1..=1000u64 {
            shards.record(i as usize, i * 1_000);
        }
        let summary = LatencySummary::from_histogram(&shards.merged());
        assert_eq!(summary.count, 1000);
        assert!((summary.p50_us - 500.0).abs() < 1.0, "{summary:?}");
        assert!((summary.p99_us - 990.0).abs() < 1.0, "{summary:?}");
        assert!((summary.max_us - 1000.0).abs() < 1.0, "{summary:?}");
        assert_eq!(LatencySummary::from_histogram(&new_histogram()).count, 0);
    }

    #[test]
    fn the_percentile_curve_rises_to_the_max_and_stops_where_the_samples_do() {
        let mut h = new_histogram();
        // 100,000 samples: 1..=100,000 µs, so the p-th percentile is about p x 1,000 µs.
        for i in 1..=100_000u64 {
            h.saturating_record(i * 1_000);
        }
        let summary = LatencySummary::from_histogram(&h);
        let curve = &summary.by_percentile;
        // 1 / (1 - p) from 1 to 100,000 at four points per decade, then the max.
        assert_eq!(curve.len(), 21 + 1, "{curve:?}");
        assert_eq!(curve[0].percentile, 0.0);
        assert_eq!(curve[4].percentile, 90.0);
        assert_eq!(curve[1].percentile, 43.765867);
        assert_eq!(curve[20].percentile, 99.999);
        for pair in curve.windows(2) {
            assert!(pair[1].percentile > pair[0].percentile, "{pair:?}");
            assert!(pair[1].latency_us >= pair[0].latency_us, "{pair:?}");
        }
        let last = curve[curve.len() - 1];
        assert_eq!(last, PercentilePoint { percentile: 100.0, latency_us: summary.max_us });
        // 3 significant digits: the 90th percentile within 0.1 % of 90,000 µs.
        assert!((curve[4].latency_us - 90_000.0).abs() < 90.0, "{curve:?}");

        // Ten samples resolve only 1 / (1 - p) <= 10: 0 %, 43.8 %, 68.4 %, 82.2 %, 90 %, then the max.
        let mut few = new_histogram();
        for i in 1..=10u64 {
            few.saturating_record(i * 1_000_000);
        }
        let curve = LatencySummary::from_histogram(&few).by_percentile;
        assert_eq!(curve.len(), 6, "{curve:?}");
        assert!((curve[5].latency_us - 10_000.0).abs() < 10.0, "{curve:?}");
        assert!(LatencySummary::from_histogram(&new_histogram()).by_percentile.is_empty());
    }
}
