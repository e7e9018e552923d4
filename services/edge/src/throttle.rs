//! [`PresenceThrottle`]: bounds the work an edge spends on `user_online` /
//! `user_offline` fan-out.
//!
//! With `PRESENCE_SCOPE=all` every presence change goes to every local
//! socket, so a connect storm of N users costs an edge O(N²) frames. The
//! throttle gives an edge a budget of presence *frames* per second (one
//! frame = one event written to one socket): a change is emitted while the
//! budget allows `sockets` more frames and dropped (count it) otherwise.
//! Each socket then receives at most `budget / sockets` presence events per
//! second, and connects, messages and pings keep their share of the CPU.
//! Clients that missed changes during a storm get the truth from
//! `get_online_users` (the seed's clients call it on connect).

use std::time::Instant;

use crate::bucket::TokenBucket;

/// A token bucket of presence frames per second for one edge.
#[derive(Debug, Clone)]
pub struct PresenceThrottle(TokenBucket);

impl PresenceThrottle {
    /// A budget of `frames_per_second` presence frames, up to one second's
    /// worth at once. 0 means unbounded.
    pub fn new(frames_per_second: u64) -> Self {
        let rate = frames_per_second as f64;
        Self(TokenBucket::new(rate, rate, Instant::now()))
    }

    /// Whether one presence change may be emitted now to `sockets` local
    /// sockets; takes the frames from the budget when it may. A change for
    /// more sockets than one second's budget is admitted only into a full
    /// bucket (so it is never starved forever).
    pub fn admit(&mut self, now: Instant, sockets: usize) -> bool {
        self.0.try_take_n(now, sockets as f64)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn budget_divides_among_sockets_and_refills() {
        let start = Instant::now();
        let mut throttle = PresenceThrottle::new(10_000);
        // 1000 sockets: 10 changes fit in one second's budget.
        let admitted = (0..50).filter(|_| throttle.admit(start, 1000)).count();
        assert_eq!(admitted, 10);
        // Half a second later: 5 more.
        let later = start + Duration::from_millis(500);
        assert_eq!((0..50).filter(|_| throttle.admit(later, 1000)).count(), 5);
        // A change for more sockets than the budget still goes out from a full bucket.
        let much_later = start + Duration::from_secs(5);
        assert!(throttle.admit(much_later, 1_000_000));
        assert!(!throttle.admit(much_later, 1));
    }

    #[test]
    fn zero_means_unbounded() {
        let mut throttle = PresenceThrottle::new(0);
        assert!((0..1000).all(|_| throttle.admit(Instant::now(), 1_000_000)));
    }
}
