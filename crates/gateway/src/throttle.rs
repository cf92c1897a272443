//! Token buckets (governor's GCRA) for API Gateway's throttling: account-wide, per route
//! (`DefaultRouteSettings`/`RouteSettings`), new connections, and per connection.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::middleware::NoOpMiddleware;
use governor::{Quota, RateLimiter, clock::MonotonicClock, state::InMemoryState, state::NotKeyed};
use parking_lot::Mutex;

use crate::settings::{Bucket, Throttling};

/// std's monotonic clock: a zero-sized clock, so a per-connection limiter is 40 bytes (governor's
/// default quanta clock carries its calibration in every limiter, and calibrates when made).
pub type Limiter = RateLimiter<NotKeyed, InMemoryState, MonotonicClock, NoOpMiddleware<std::time::Instant>>;

/// A limiter for a bucket, on `clock`. A rate of 0 or less means "unlimited".
pub fn limiter(bucket: Bucket, clock: &MonotonicClock) -> Option<Limiter> {
    if bucket.rate <= 0.0 {
        return None;
    }
    let burst = NonZeroU32::new(bucket.burst.max(1)).unwrap_or(NonZeroU32::MIN);
    let period = Duration::from_secs_f64(1.0 / bucket.rate);
    Some(RateLimiter::direct_with_clock(Quota::with_period(period)?.allow_burst(burst), clock.clone()))
}

fn admit(l: &Option<Limiter>) -> bool {
    l.as_ref().is_none_or(|l| l.check().is_ok())
}

/// Which limit refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Throttled {
    Account,
    Route,
    Connection,
}

impl Throttled {
    pub fn label(self) -> &'static str {
        match self {
            Throttled::Account => "account",
            Throttled::Route => "route",
            Throttled::Connection => "connection",
        }
    }
}

/// The gateway-wide buckets.
pub struct Throttles {
    settings: Throttling,
    clock: MonotonicClock,
    account: Option<Limiter>,
    connect: Option<Limiter>,
    routes: Mutex<HashMap<String, std::sync::Arc<Option<Limiter>>>>,
}

impl Throttles {
    pub fn new(settings: Throttling) -> Self {
        let clock = MonotonicClock;
        Self {
            account: limiter(settings.account, &clock),
            connect: limiter(settings.connect, &clock),
            routes: Mutex::new(HashMap::new()),
            settings,
            clock,
        }
    }

    /// A new connection may be made (else: 429 on the upgrade).
    pub fn admit_connect(&self) -> bool {
        admit(&self.connect)
    }

    /// A message for `route_key` may be invoked: the route's bucket, then the account's.
    pub fn admit_message(&self, route_key: &str) -> Result<(), Throttled> {
        let route = {
            // Held only for a map lookup, never across an await.
            let mut routes = self.routes.lock();
            routes
                .entry(route_key.to_string())
                .or_insert_with(|| {
                    let b = self.settings.route_settings.get(route_key).copied().unwrap_or(self.settings.default_route);
                    std::sync::Arc::new(limiter(b, &self.clock))
                })
                .clone()
        };
        if !admit(&route) {
            return Err(Throttled::Route);
        }
        if !admit(&self.account) {
            return Err(Throttled::Account);
        }
        Ok(())
    }

    /// A fresh per-connection bucket.
    pub fn per_connection(&self) -> Option<Limiter> {
        limiter(self.settings.per_connection, &self.clock)
    }
}

/// Checks a connection's own bucket.
pub fn admit_connection(l: &Option<Limiter>) -> Result<(), Throttled> {
    if admit(l) { Ok(()) } else { Err(Throttled::Connection) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refuse() {
        let t = Throttles::new(Throttling { default_route: Bucket { rate: 1.0, burst: 3 }, ..Throttling::default() });
        for _ in 0..3 {
            assert!(t.admit_message("sendmessage").is_ok());
        }
        assert_eq!(t.admit_message("sendmessage"), Err(Throttled::Route));
        // Another route has its own bucket.
        assert!(t.admit_message("join").is_ok());
    }

    #[test]
    fn zero_rate_is_unlimited() {
        let l = limiter(Bucket { rate: 0.0, burst: 0 }, &MonotonicClock);
        assert!(l.is_none());
        for _ in 0..10_000 {
            assert!(admit_connection(&l).is_ok());
        }
    }
}
