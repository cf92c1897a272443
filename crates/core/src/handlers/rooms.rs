//! What a room costs a connection, checked before a `join` or a `sendmessage` into a room other
//! than the connection's own.
//!
//! Rooms are not free: each is a stored item, and in memory an entry of the sequencer and the
//! presence budget (and of the store's indexes). So a connection belongs to at most
//! [`ChatSettings::max_rooms_per_connection`](super::ChatSettings) rooms in its life (the
//! distinct rooms it has joined or posted into, the default room aside), recorded by the store
//! ([`MessageLog::claim_room`](crate::MessageLog::claim_room)), so the bound holds across Lambda
//! instances too; and bringing a room into existence takes a token from the connection's
//! creation rate ([`RoomCreationRate`]). The rate is kept in memory: in Lambda each warm
//! instance has its own, so a connection whose requests reach k instances creates at most k
//! times the rate (and never more rooms than its limit).

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use super::ChatDeps;
use crate::error::HandlerError;
use crate::model::ConnectionRecord;
use crate::protocol::ProtocolError;
use crate::store::RoomClaim;

/// Checks between sweeps of the limiter's idle keys: a sweep visits every key, so it runs
/// once per so many checks rather than at each.
const SWEEP_EVERY: u64 = 1024;

/// Room creations per connection: a token bucket per connection id (governor's GCRA).
pub struct RoomCreationRate {
    limiter: Option<DefaultKeyedRateLimiter<String>>,
    checks: AtomicU64,
}

impl RoomCreationRate {
    /// `per_minute` creations, bursts of `burst` (at least 1); `per_minute == 0`: no limit.
    pub fn new(per_minute: u32, burst: u32) -> Self {
        let limiter = NonZeroU32::new(per_minute).map(|rate| {
            let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
            RateLimiter::keyed(Quota::per_minute(rate).allow_burst(burst))
        });
        Self { limiter, checks: AtomicU64::new(0) }
    }

    /// Takes one creation from `connection_id`'s bucket: `false` means over the rate.
    pub fn take(&self, connection_id: &str) -> bool {
        let Some(limiter) = &self.limiter else { return true };
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            // Buckets that have refilled are the same as none: forget them, so the map holds
            // only connections that created rooms lately.
            limiter.retain_recent();
        }
        limiter.check_key(&connection_id.to_string()).is_ok()
    }

    /// Connections with a bucket in memory.
    pub fn len(&self) -> usize {
        self.limiter.as_ref().map_or(0, |l| {
            l.retain_recent();
            l.len()
        })
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Admits `me` to `room` (a `join`, or a post into a room other than its own): the creation
/// rate if the room does not exist yet, then the per-connection room limit. The default room
/// is everybody's and costs nothing.
pub(crate) async fn admit(
    deps: &ChatDeps,
    me: &ConnectionRecord,
    room: &str,
) -> Result<Result<(), ProtocolError>, HandlerError> {
    let settings = &deps.settings;
    if room == settings.default_room {
        return Ok(Ok(()));
    }
    let exists =
        deps.messages.room_exists(room).await? || !deps.connections.members(room, None, 1).await?.items.is_empty();
    if !exists && !deps.room_rate.take(&me.connection_id) {
        return Ok(Err(ProtocolError::new(
            "room_rate",
            format!(
                "you are creating rooms too fast (at most {} a minute); join an existing room or try again later",
                settings.room_create_per_minute
            ),
        )));
    }
    if settings.max_rooms_per_connection == 0 {
        return Ok(Ok(()));
    }
    let expires_at = super::now_ms() / 1000 + settings.connection_ttl_secs;
    let claim =
        deps.messages.claim_room(&me.connection_id, room, settings.max_rooms_per_connection, expires_at).await?;
    if claim == RoomClaim::Full {
        return Ok(Err(ProtocolError::new(
            "too_many_rooms",
            format!(
                "a connection may belong to at most {} rooms; reconnect to start afresh",
                settings.max_rooms_per_connection
            ),
        )));
    }
    Ok(Ok(()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_refused_per_connection() {
        let rate = RoomCreationRate::new(1, 3);
        assert_eq!((0..10).filter(|_| rate.take("a")).count(), 3, "the burst, then nothing within the minute");
        assert!(rate.take("b"), "each connection has its own bucket");
        assert_eq!(rate.len(), 2);
    }

    #[test]
    fn zero_is_no_limit() {
        let rate = RoomCreationRate::new(0, 0);
        assert!((0..10_000).all(|_| rate.take("a")));
        assert!(rate.is_empty());
    }
}
