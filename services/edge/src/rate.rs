//! A token bucket: each socket's event budget.
//!
//! The bucket holds at most `burst` tokens and refills at `rate` per second;
//! every event takes one. It is checked when the event arrives (before it is
//! queued), so a flooding socket costs the edge one check per event and never
//! delays other sockets.

use std::time::Instant;

/// One socket's budget.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    tokens: f64,
    burst: f64,
    rate_per_sec: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket of `burst` tokens refilled at `rate_per_sec`. A rate of
    /// zero or less (or a zero burst) disables limiting.
    pub fn new(rate_per_sec: f64, burst: u32, now: Instant) -> Self {
        let burst = f64::from(burst);
        Self { tokens: burst, burst, rate_per_sec, last: now }
    }

    /// Whether limiting is on.
    pub fn enabled(&self) -> bool {
        self.rate_per_sec > 0.0 && self.burst > 0.0
    }

    /// Takes one token if there is one.
    pub fn try_take(&mut self, now: Instant) -> bool {
        if !self.enabled() {
            return true;
        }
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate_per_sec).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
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
        let mut bucket = TokenBucket::new(10.0, 3, start);
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
        let mut bucket = TokenBucket::new(0.0, 0, now);
        assert!((0..10_000).all(|_| bucket.try_take(now)));
    }
}
