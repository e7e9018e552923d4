//! Starts connection tasks at a rate, with a cap on handshakes in flight.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, MissedTickBehavior, interval};

/// Calls `spawn(i, permit)` for `i` in `0..count` at up to `rate` per
/// second (`rate <= 0`: as fast as the cap allows), with at most
/// `max_inflight` permits outstanding; a task drops its permit once its
/// handshake is done. Stops at `deadline`; returns how many it started.
pub async fn launch<F>(count: u64, rate: f64, max_inflight: usize, deadline: Instant, mut spawn: F) -> u64
where
    F: FnMut(u64, OwnedSemaphorePermit),
{
    let permits = Arc::new(Semaphore::new(max_inflight.max(1)));
    let started_at = Instant::now();
    let mut launched = 0u64;
    let mut tick = interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    while launched < count && Instant::now() < deadline {
        tick.tick().await;
        let due =
            if rate <= 0.0 { count } else { count.min((started_at.elapsed().as_secs_f64() * rate).floor() as u64 + 1) };
        while launched < due {
            let Ok(permit) = permits.clone().try_acquire_owned() else { break };
            spawn(launched, permit);
            launched += 1;
        }
    }
    launched
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn launches_everything_and_respects_the_cap() {
        let mut held = Vec::new();
        let deadline = Instant::now() + Duration::from_millis(200);
        // Nobody releases a permit: only `max_inflight` start before the deadline.
        let launched = launch(10, 0.0, 3, deadline, |_, permit| held.push(permit)).await;
        assert_eq!(launched, 3);
        let mut seen = Vec::new();
        let launched = launch(5, 0.0, 2, Instant::now() + Duration::from_secs(5), |i, _permit| seen.push(i)).await;
        assert_eq!((launched, seen), (5, vec![0, 1, 2, 3, 4]));
    }
}
