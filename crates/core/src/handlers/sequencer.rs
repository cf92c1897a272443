//! Per-room delivery order for handlers that share one process.
//!
//! Two publishers into one room each get their `seq` from the MessageLog, but their fan-outs then
//! race: without help, a member could receive seq 6 before seq 5. When the handlers run in one
//! process (the local gateway), a [`RoomSequencer`] makes each fan-out wait for the previous seq's
//! fan-out, so every member receives a room's messages in `seq` order. (Lambda invocations share
//! no memory; there, as on AWS, clients order by `seq` themselves — see `docs/protocol.md`.)
//!
//! A [`Cut`] holds a room between two fan-outs: a `join … since` catches up to the last seq fanned
//! out and becomes a member while no fan-out runs, so that it gets every seq once and in order:
//! the replay up to the cut, then live from the next.
//!
//! A room's entry is dropped once nobody has used it for [`RoomSequencer::idle`] and no turn of
//! it is held, so rooms that come and go (they expire when empty) do not stay in memory; a
//! room used again gets a fresh entry, initialised from the log again.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::Duration;

use tokio::sync::{Notify, OnceCell};
use tokio::time::Instant;

use crate::error::{StoreError, StoreResult};

/// The next seq allowed to fan out, per room.
pub struct RoomSequencer {
    rooms: Mutex<Rooms>,
    /// How long a fan-out waits for its predecessor (whose handler may have failed between its
    /// append and its fan-out) before going ahead.
    pub max_wait: Duration,
    /// How long an unused room's entry is kept. Far longer than an append takes, since the
    /// entry is not held between `prepare` and `turn`.
    pub idle: Duration,
}

struct Rooms {
    map: HashMap<String, Arc<RoomTurns>>,
    last_sweep: Instant,
}

struct RoomTurns {
    last_used: Mutex<Instant>,
    /// Initialised from the log's last seq the first time the room is used in this process,
    /// before any append of this process to it, so it is exact.
    next: OnceCell<Mutex<u64>>,
    notify: Notify,
    /// Held by each fan-out while it runs, and by a [`Cut`].
    fanning: Arc<tokio::sync::Mutex<()>>,
}

impl RoomSequencer {
    /// Entries unused for 5 minutes are dropped ([`RoomSequencer::with_idle`] to change it).
    pub fn new(max_wait: Duration) -> Self {
        let rooms = Rooms { map: HashMap::new(), last_sweep: Instant::now() };
        Self { rooms: Mutex::new(rooms), max_wait, idle: Duration::from_secs(300) }
    }

    /// Drops the entries of rooms unused for `idle` (at least `max_wait`).
    pub fn with_idle(mut self, idle: Duration) -> Self {
        self.idle = idle.max(self.max_wait);
        self
    }

    /// Rooms with an entry in memory.
    pub fn len(&self) -> usize {
        let mut rooms = self.rooms.lock();
        self.sweep(&mut rooms, Instant::now());
        rooms.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// At most once per `idle`: drops the entries unused for `idle` that nobody holds.
    fn sweep(&self, rooms: &mut Rooms, now: Instant) {
        if now.saturating_duration_since(rooms.last_sweep) < self.idle {
            return;
        }
        rooms.last_sweep = now;
        let idle = self.idle;
        rooms.map.retain(|_, t| {
            let last = *t.last_used.lock();
            Arc::strong_count(t) > 1 || now.saturating_duration_since(last) < idle
        });
    }

    /// Call before appending to `room`: makes sure the room's position is known.
    /// `last_seq` reads the log's last seq (only called once per room).
    pub async fn prepare<F, Fut>(&self, room: &str, last_seq: F) -> StoreResult<()>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = StoreResult<u64>>,
    {
        let turns = self.turns(room);
        turns.next.get_or_try_init(|| async { Ok::<_, StoreError>(Mutex::new(last_seq().await? + 1)) }).await?;
        Ok(())
    }

    fn turns(&self, room: &str) -> Arc<RoomTurns> {
        // A map lookup, never held across an await.
        let mut rooms = self.rooms.lock();
        let now = Instant::now();
        self.sweep(&mut rooms, now);
        let turns = rooms
            .map
            .entry(room.to_string())
            .or_insert_with(|| {
                Arc::new(RoomTurns {
                    last_used: Mutex::new(now),
                    next: OnceCell::new(),
                    notify: Notify::new(),
                    fanning: Arc::new(tokio::sync::Mutex::new(())),
                })
            })
            .clone();
        *turns.last_used.lock() = now;
        turns
    }

    /// Waits until it is `seq`'s turn to fan out in `room`. The returned guard passes the turn
    /// on when dropped, whether the fan-out succeeded or not.
    pub async fn turn(&self, room: &str, seq: u64) -> Turn {
        let turns = self.turns(room);
        let deadline = Instant::now() + self.max_wait;
        loop {
            let notified = turns.notify.notified();
            tokio::pin!(notified);
            // Register before checking, so a notification between the check and the wait is not lost.
            notified.as_mut().enable();
            let next = turns.next.get().map(|m| *m.lock());
            match next {
                Some(n) if n < seq => {}
                _ => break,
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                tracing::warn!(room, seq, "fan-out waited too long for the previous seq; going ahead");
                break;
            }
        }
        let fanning = Arc::clone(&turns.fanning).lock_owned().await;
        Turn { turns, seq, _fanning: fanning }
    }

    /// The last seq of `room` whose fan-out has finished (or been given up on), once the room's
    /// position is known ([`RoomSequencer::prepare`]). Only grows; without a [`Cut`] it may be
    /// passed at any moment.
    pub fn fanned_out(&self, room: &str) -> Option<u64> {
        let turns = self.turns(room);
        turns.next.get().map(|n| n.lock().saturating_sub(1))
    }

    /// Waits for the running fan-out of `room` to finish and holds off the next one until the
    /// [`Cut`] is dropped. Call [`RoomSequencer::prepare`] first.
    pub async fn cut(&self, room: &str) -> Cut {
        let turns = self.turns(room);
        let fanning = Arc::clone(&turns.fanning).lock_owned().await;
        let fanned_out = turns.next.get().map(|n| n.lock().saturating_sub(1));
        Cut { fanned_out, _turns: turns, _fanning: fanning }
    }
}

/// A room held between two fan-outs ([`RoomSequencer::cut`]).
pub struct Cut {
    /// Every seq up to this one has been fanned out; none after it has started.
    pub fanned_out: Option<u64>,
    _turns: Arc<RoomTurns>,
    _fanning: tokio::sync::OwnedMutexGuard<()>,
}

/// A room's turn to fan out `seq`; dropping it lets `seq + 1` go.
pub struct Turn {
    turns: Arc<RoomTurns>,
    seq: u64,
    _fanning: tokio::sync::OwnedMutexGuard<()>,
}

impl Drop for Turn {
    fn drop(&mut self) {
        if let Some(next) = self.turns.next.get() {
            let mut next = next.lock();
            if *next <= self.seq {
                *next = self.seq + 1;
            }
        }
        self.turns.notify.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn later_seqs_wait_for_earlier_ones() {
        let s = Arc::new(RoomSequencer::new(Duration::from_secs(5)));
        s.prepare("r", || async { Ok(0) }).await.unwrap();
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for seq in [3u64, 2, 1] {
            let (s, order) = (s.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                let _turn = s.turn("r", seq).await;
                order.lock().push(seq);
            }));
            tokio::task::yield_now().await;
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(*order.lock(), vec![1, 2, 3]);
    }

    #[tokio::test(start_paused = true)]
    async fn entries_of_unused_rooms_go() {
        let s = RoomSequencer::new(Duration::from_secs(2)).with_idle(Duration::from_secs(300));
        for i in 0..10_000 {
            let room = format!("room-{i}");
            s.prepare(&room, || async { Ok(0) }).await.unwrap();
            drop(s.turn(&room, 1).await);
        }
        s.prepare("busy", || async { Ok(0) }).await.unwrap();
        let held = s.turn("busy", 1).await;
        assert_eq!(s.len(), 10_001, "every room used has an entry");
        tokio::time::advance(Duration::from_secs(301)).await;
        assert_eq!(s.len(), 1, "unused entries are gone, the one whose turn is held stays");
        drop(held);
        tokio::time::advance(Duration::from_secs(301)).await;
        assert!(s.is_empty());
        // A room used again starts afresh from the log's position.
        s.prepare("room-1", || async { Ok(7) }).await.unwrap();
        let started = Instant::now();
        drop(s.turn("room-1", 8).await);
        assert_eq!(started.elapsed(), Duration::ZERO, "seq 8 follows the log's 7 without waiting");
    }

    #[tokio::test]
    async fn a_missing_predecessor_only_delays() {
        let s = RoomSequencer::new(Duration::from_millis(50));
        s.prepare("r", || async { Ok(0) }).await.unwrap();
        let started = std::time::Instant::now();
        drop(s.turn("r", 2).await); // seq 1's handler never fanned out
        assert!(started.elapsed() >= Duration::from_millis(40));
        let quick = std::time::Instant::now();
        drop(s.turn("r", 3).await);
        assert!(quick.elapsed() < Duration::from_millis(40));
    }

    #[tokio::test]
    async fn a_cut_waits_for_the_running_fan_out_and_holds_off_the_next() {
        let s = Arc::new(RoomSequencer::new(Duration::from_secs(5)));
        s.prepare("r", || async { Ok(4) }).await.unwrap();
        assert_eq!(s.fanned_out("r"), Some(4));
        let five = s.turn("r", 5).await;
        let cutter = {
            let s = s.clone();
            tokio::spawn(async move { s.cut("r").await.fanned_out })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!cutter.is_finished(), "the cut waits for seq 5's fan-out");
        drop(five);
        assert_eq!(cutter.await.unwrap(), Some(5), "the cut comes right after seq 5");
        let cut = s.cut("r").await;
        let six = {
            let s = s.clone();
            tokio::spawn(async move { drop(s.turn("r", 6).await) })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!six.is_finished(), "seq 6 waits for the cut");
        drop(cut);
        six.await.unwrap();
        assert_eq!(s.fanned_out("r"), Some(6));
    }
}
