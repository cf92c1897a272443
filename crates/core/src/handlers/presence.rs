//! The per-room presence budget: at most so many join/leave events per second per room.
//!
//! Presence is best-effort (a client that needs the exact list asks `who`). Without a budget, a
//! room whose members come and go quickly — reconnect storms after a network blip, a script
//! that reconnects in a loop — turns every connect and disconnect into a post to every member,
//! and one abusive client into traffic for everybody. Over the budget, events for that room are
//! skipped until it refills; the room-size limit (`presence_broadcast_limit`) still applies.
//! In Lambda each warm instance keeps its own budget, so the room-wide rate is the budget times
//! the instances in use.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Rooms remembered before full buckets are forgotten (a full bucket is the same as none).
const MAX_TRACKED_ROOMS: usize = 10_000;
/// Full buckets are also forgotten this often, so the rooms that went quiet (or expired) leave
/// memory even when fewer than [`MAX_TRACKED_ROOMS`] are tracked.
const SWEEP_INTERVAL: Duration = Duration::from_secs(60);

/// A token bucket per room: `per_second` events, bursts of as many.
pub struct PresenceBudget {
    per_second: f64,
    rooms: Mutex<HashMap<String, Bucket>>,
    last_sweep: Mutex<Instant>,
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

impl PresenceBudget {
    /// `per_second <= 0`: no budget (every event goes out).
    pub fn new(per_second: f64) -> Self {
        Self { per_second, rooms: Mutex::new(HashMap::new()), last_sweep: Mutex::new(Instant::now()) }
    }

    /// Rooms with a bucket in memory.
    pub fn len(&self) -> usize {
        self.rooms.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes one event from `room`'s budget: `false` means over budget, skip the event.
    pub fn take(&self, room: &str) -> bool {
        self.take_at(room, Instant::now())
    }

    fn take_at(&self, room: &str, now: Instant) -> bool {
        if self.per_second <= 0.0 {
            return true;
        }
        let burst = self.per_second.max(1.0);
        let refill = |b: &mut Bucket| {
            let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
            b.tokens = (b.tokens + elapsed * self.per_second).min(burst);
            b.at = now;
        };
        // A map lookup, never held across an await.
        let mut rooms = self.rooms.lock();
        let due = {
            let mut last = self.last_sweep.lock();
            let due = now.saturating_duration_since(*last) >= SWEEP_INTERVAL;
            if due {
                *last = now;
            }
            due
        };
        if due || rooms.len() >= MAX_TRACKED_ROOMS {
            rooms.retain(|_, b| {
                refill(b);
                b.tokens < burst
            });
        }
        if !rooms.contains_key(room) {
            rooms.insert(room.to_string(), Bucket { tokens: burst, at: now });
        }
        let Some(bucket) = rooms.get_mut(room) else { return true };
        refill(bucket);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_burst_then_the_rate_per_room() {
        let budget = PresenceBudget::new(5.0);
        let t0 = Instant::now();
        let granted = (0..20).filter(|_| budget.take_at("lobby", t0)).count();
        assert_eq!(granted, 5, "a burst of the rate");
        assert!(budget.take_at("other", t0), "rooms have their own budgets");
        assert!(!budget.take_at("lobby", t0 + Duration::from_millis(100)), "half a token is not one");
        assert!(budget.take_at("lobby", t0 + Duration::from_millis(250)));
        let later = t0 + Duration::from_secs(10);
        assert_eq!((0..20).filter(|_| budget.take_at("lobby", later)).count(), 5, "refills to the burst, no more");
    }

    #[test]
    fn the_buckets_of_quiet_rooms_go() {
        let budget = PresenceBudget::new(20.0);
        let t0 = Instant::now();
        // Fewer than MAX_TRACKED_ROOMS: only the timed sweep can free them.
        for i in 0..5_000 {
            assert!(budget.take_at(&format!("room-{i}"), t0));
        }
        assert_eq!(budget.len(), 5_000, "one bucket per room");
        assert!(budget.take_at("busy", t0 + SWEEP_INTERVAL));
        assert_eq!(budget.len(), 1, "a minute later the refilled buckets are gone");
    }

    #[test]
    fn zero_means_no_budget() {
        let budget = PresenceBudget::new(0.0);
        assert!((0..10_000).all(|_| budget.take("lobby")));
    }

    #[test]
    fn many_rooms_do_not_grow_the_map_forever() {
        let budget = PresenceBudget::new(1000.0);
        let t0 = Instant::now();
        for i in 0..(MAX_TRACKED_ROOMS * 3) {
            budget.take_at(&format!("room-{i}"), t0 + Duration::from_secs(i as u64));
        }
        assert!(budget.rooms.lock().len() <= MAX_TRACKED_ROOMS + 1);
    }
}
