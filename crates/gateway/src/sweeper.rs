//! The sweeper: closes the connections past API Gateway's idle timeout or maximum duration
//! (1001), one task for all of them rather than two timers in every connection's task; the
//! limits are checked every tenth of the shorter one, at most every second. At shutdown it
//! closes every connection with 1001 (a connection registered later closes itself: see
//! `upgrade`).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::close_code;
use crate::state::GatewayState;

pub(crate) async fn sweep(state: Arc<GatewayState>) {
    let limits = &state.settings.limits;
    let every = (limits.idle_timeout.min(limits.max_connection_duration) / 10)
        .clamp(Duration::from_millis(10), Duration::from_secs(1));
    let millis = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    let (idle_ms, lifetime_ms) = (millis(limits.idle_timeout), millis(limits.max_connection_duration));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = state.shutdown.cancelled() => break,
            _ = tick.tick() => {}
        }
        let now = chrono::Utc::now().timestamp_millis();
        state.registry.for_each(|live| {
            if live.is_closing() {
                return;
            }
            if now.saturating_sub(live.ctx.connected_at) >= lifetime_ms {
                live.close(close_code::GOING_AWAY, "Going away: connection duration limit");
            } else if now.saturating_sub(live.last_active_at.load(Ordering::Relaxed)) >= idle_ms {
                live.close(close_code::GOING_AWAY, "Going away: idle timeout");
            }
        });
    }
    state.registry.for_each(|live| live.close(close_code::GOING_AWAY, "Going away"));
}
