//! [`Backoff`]: doubling retry delays with a ceiling, for loops that
//! reconnect or retry (a consumer to set up again, a stream to reach).

use std::time::Duration;

/// Retry delays that start at `initial`, double after every failure up to
/// `max`, and start over after a success ([`Backoff::reset`]).
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    /// Delays from `initial` up to `max`.
    pub fn new(initial: Duration, max: Duration) -> Self {
        let initial = initial.max(Duration::from_millis(1));
        Self { initial, max: max.max(initial), next: initial }
    }

    /// The delay to wait before the next attempt; the one after it is twice
    /// as long (at most the ceiling).
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(self.max);
        delay
    }

    /// The delay [`Self::next_delay`] would return, without moving on.
    pub fn peek(&self) -> Duration {
        self.next
    }

    /// Starts over after a success.
    pub fn reset(&mut self) {
        self.next = self.initial;
    }

    /// Sleeps for the next delay; returns `true` if `stop` was cancelled first.
    pub async fn wait(&mut self, stop: &tokio_util::sync::CancellationToken) -> bool {
        let delay = self.next_delay();
        tokio::select! {
            () = stop.cancelled() => true,
            () = tokio::time::sleep(delay) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_ceiling_and_resets() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_millis(500));
        let delays: Vec<u128> = (0..5).map(|_| backoff.next_delay().as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 500, 500]);
        backoff.reset();
        assert_eq!(backoff.peek(), Duration::from_millis(100));
    }

    #[tokio::test(start_paused = true)]
    async fn wait_returns_early_when_stopped() {
        let stop = tokio_util::sync::CancellationToken::new();
        let mut backoff = Backoff::new(Duration::from_secs(60), Duration::from_secs(60));
        stop.cancel();
        assert!(backoff.wait(&stop).await);
        assert!(!Backoff::new(Duration::from_millis(5), Duration::from_millis(5)).wait(&Default::default()).await);
    }
}
