//! [`TokenBucket`]: a budget that refills at a steady rate up to a burst.
//!
//! The edge gives each socket one (every event takes one token; checked when
//! the event arrives, before it is queued, so a flooding socket costs one
//! check per event and never delays other sockets), and
//! [`crate::throttle::PresenceThrottle`] gives the edge one for presence frames (a
//! change takes one token per socket it goes to).

use std::time::Instant;

/// Tokens refilled at `rate_per_sec` up to `burst`; a take succeeds when the
/// bucket holds what it costs.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate_per_sec: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket of `burst` tokens, refilled at `rate_per_sec` from `now`
    /// on. A rate of zero or less (or a burst of zero or less) disables
    /// limiting: every take succeeds.
    pub fn new(rate_per_sec: f64, burst: f64, now: Instant) -> Self {
        Self { rate_per_sec, burst, tokens: burst, last: now }
    }

    /// Takes one token if there is one.
    pub fn try_take(&mut self, now: Instant) -> bool {
        self.try_take_n(now, 1.0)
    }

    /// Takes `cost` tokens if the bucket holds that many. A cost above the
    /// burst counts as the burst, so it is admitted from a full bucket
    /// rather than never.
    pub fn try_take_n(&mut self, now: Instant, cost: f64) -> bool {
        if self.rate_per_sec <= 0.0 || self.burst <= 0.0 {
            return true;
        }
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate_per_sec).min(self.burst);
        let cost = cost.min(self.burst);
        if self.tokens >= cost {
            self.tokens -= cost;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn burst_then_refill() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(10.0, 3.0, start);
        assert!(bucket.try_take(start));
        assert!(bucket.try_take(start));
        assert!(bucket.try_take(start));
        assert!(!bucket.try_take(start));
        // 10/s: one token after 100 ms, never more than the burst.
        assert!(bucket.try_take(start + Duration::from_millis(100)));
        assert!(!bucket.try_take(start + Duration::from_millis(100)));
        let later = start + Duration::from_secs(60);
        assert!((0..3).all(|_| bucket.try_take(later)));
        assert!(!bucket.try_take(later));
    }

    #[test]
    fn zero_rate_disables() {
        let now = Instant::now();
        let mut bucket = TokenBucket::new(0.0, 0.0, now);
        assert!((0..10_000).all(|_| bucket.try_take(now)));
    }
}
