//! Counters the connection tasks share: latency histograms sharded so
//! tasks on several threads rarely wait for each other, failure counts by
//! kind, and the summaries a report prints.
//!
//! Nothing here is per connection: 20k sockets share one of each.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use hdrhistogram::Histogram;
use parking_lot::Mutex;
use serde::Serialize;

use crate::accounting::round;

/// Longest latency a histogram holds, µs (an hour); longer ones saturate.
const MAX_LATENCY_US: u64 = 3_600_000_000;

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("1 µs .. 1 h with 3 digits are valid bounds")
}

/// Latencies in µs, recorded into one of several shards by connection index.
pub struct Latencies {
    shards: Vec<Mutex<Histogram<u64>>>,
}

impl Default for Latencies {
    /// 16 shards: plenty for the few worker threads a loadgen runs.
    fn default() -> Self {
        Self::new(16)
    }
}

impl Latencies {
    /// A histogram with `shards` shards (at least one).
    pub fn new(shards: usize) -> Self {
        Self { shards: (0..shards.max(1)).map(|_| Mutex::new(new_histogram())).collect() }
    }

    /// Records `us` microseconds into the shard of connection `index`.
    pub fn record(&self, index: u64, us: u64) {
        let shard = &self.shards[(index % self.shards.len() as u64) as usize];
        shard.lock().saturating_record(us.max(1));
    }

    /// The summary of everything recorded so far.
    pub fn summary(&self) -> LatencySummary {
        let mut merged = new_histogram();
        for shard in &self.shards {
            // Same bounds everywhere, so adding cannot fail.
            let _ = merged.add(&*shard.lock());
        }
        LatencySummary::of(&merged)
    }
}

/// Percentiles of a latency histogram, in milliseconds.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct LatencySummary {
    /// Samples.
    pub count: u64,
    /// Mean.
    pub mean: Option<f64>,
    /// Median.
    pub p50: Option<f64>,
    /// 90th percentile.
    pub p90: Option<f64>,
    /// 99th percentile.
    pub p99: Option<f64>,
    /// 99.9th percentile.
    pub p999: Option<f64>,
    /// Largest.
    pub max: Option<f64>,
}

impl LatencySummary {
    fn of(histogram: &Histogram<u64>) -> Self {
        if histogram.is_empty() {
            return Self::default();
        }
        let ms = |us: u64| Some(round(us as f64 / 1000.0, 3));
        Self {
            count: histogram.len(),
            mean: Some(round(histogram.mean() / 1000.0, 3)),
            p50: ms(histogram.value_at_quantile(0.50)),
            p90: ms(histogram.value_at_quantile(0.90)),
            p99: ms(histogram.value_at_quantile(0.99)),
            p999: ms(histogram.value_at_quantile(0.999)),
            max: ms(histogram.max()),
        }
    }
}

/// Failures by kind (`tcp:EMFILE`, `timeout`, `connect_error`, …) and the first message seen.
#[derive(Default)]
pub struct Failures {
    by_kind: Mutex<BTreeMap<String, u64>>,
    first: Mutex<Option<String>>,
    total: AtomicU64,
}

impl Failures {
    /// Counts one failure of `kind`; keeps `message` if it is the first.
    pub fn add(&self, kind: impl Into<String>, message: impl FnOnce() -> String) {
        self.total.fetch_add(1, Ordering::Relaxed);
        *self.by_kind.lock().entry(kind.into()).or_insert(0) += 1;
        let mut first = self.first.lock();
        if first.is_none() {
            *first = Some(message());
        }
    }

    /// How many so far.
    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    /// The counts by kind and the first message.
    pub fn summary(&self) -> FailureSummary {
        FailureSummary { by_kind: self.by_kind.lock().clone(), first_error: self.first.lock().clone() }
    }
}

/// [`Failures`] as a report shows them.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FailureSummary {
    /// Counts by kind.
    pub by_kind: BTreeMap<String, u64>,
    /// The first failure's message.
    pub first_error: Option<String>,
}

/// A relaxed atomic counter.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds one.
    pub fn incr(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// Subtracts one.
    pub fn decr(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }

    /// Raises the value to `n` if it is lower.
    pub fn raise_to(&self, n: u64) {
        self.0.fetch_max(n, Ordering::Relaxed);
    }

    /// The current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latencies_merge_shards_into_millisecond_percentiles() {
        let latencies = Latencies::new(4);
        for us in 1..=1000u64 {
            latencies.record(us, us * 1000);
        }
        let summary = latencies.summary();
        assert_eq!(summary.count, 1000);
        let p50 = summary.p50.expect("p50");
        assert!((499.0..=501.0).contains(&p50), "{summary:?}");
        assert!(summary.max.expect("max") >= 999.0);
        assert_eq!(Latencies::new(1).summary(), LatencySummary::default());
    }

    #[test]
    fn failures_count_by_kind_and_keep_the_first_message() {
        let failures = Failures::default();
        failures.add("timeout", || "first".to_owned());
        failures.add("timeout", || "second".to_owned());
        failures.add("tcp:EMFILE", || "third".to_owned());
        let summary = failures.summary();
        assert_eq!(failures.total(), 3);
        assert_eq!(summary.by_kind["timeout"], 2);
        assert_eq!(summary.first_error.as_deref(), Some("first"));
    }
}
