//! `churn`: connect → hold → disconnect cycles at a fixed rate while
//! long-lived observers count `user_online` / `user_offline`.
//!
//! Every observer must see exactly one of each per successful cycle (the
//! churn users come from a pool after the observers' users and are never
//! reused within a run, so each cycle is a first socket and a last one).
//! The counts are read before the observers stop: an observer that closes
//! first would otherwise make the others see its own `user_offline`.
//! RSS of the watched processes is sampled every `--rss-interval`.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde::Serialize;
use tokio::sync::{OwnedSemaphorePermit, mpsc};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::accounting::{Snapshot, round};
use crate::client::Ctx;
use crate::metrics::{Counter, FailureSummary, Failures, Latencies, LatencySummary};
use crate::record::Outcome;
use crate::scenario::Results;
use crate::settings::{as_seconds, parse_duration};
use crate::{Error, RunSettings, pacer, progress};

/// `churn` settings; the churn lasts `--duration`.
#[derive(Debug, Clone, clap::Args, Serialize)]
pub struct ChurnSettings {
    /// Long-lived observers that count presence events.
    #[arg(long, default_value_t = 100)]
    pub observers: u64,
    /// Churn connections started per second.
    #[arg(long, default_value_t = 50.0)]
    pub rate: f64,
    /// How long each churn connection stays, milliseconds.
    #[arg(long, default_value_t = 1000)]
    pub hold_ms: u64,
    /// Distinct users the churn connections cycle through (after the observers' users).
    #[arg(long, default_value_t = 10_000)]
    pub pool: u64,
    /// Longest wait at the end for the presence counts to settle.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    #[serde(serialize_with = "as_seconds")]
    pub settle: Duration,
    /// RSS sampling interval.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    #[serde(serialize_with = "as_seconds")]
    pub rss_interval: Duration,
}

impl Default for ChurnSettings {
    fn default() -> Self {
        Self {
            observers: 100,
            rate: 50.0,
            hold_ms: 1000,
            pool: 10_000,
            settle: Duration::from_secs(10),
            rss_interval: Duration::from_secs(5),
        }
    }
}

/// One RSS sample: seconds into the churn, KiB per watched process.
#[derive(Debug, Clone, Serialize)]
pub struct RssSample {
    /// Seconds since the churn started.
    pub at_s: f64,
    /// `VmRSS` of each watched process, KiB.
    pub rss_kb: Vec<Option<u64>>,
}

/// What `churn` measured.
#[derive(Debug, Clone, Serialize)]
pub struct ChurnResults {
    /// Observers asked for.
    pub observers: u64,
    /// Observers connected.
    pub observers_ready: u64,
    /// Observers the server closed.
    pub observers_dropped: u64,
    /// Cycles started per second.
    pub rate: f64,
    /// Hold of each cycle, ms.
    pub hold_ms: u64,
    /// Cycles started.
    pub churn_attempted: u64,
    /// Cycles that connected.
    pub churn_connected: u64,
    /// Cycles that failed to connect.
    pub churn_failed: u64,
    /// Failures by kind (observers' prefixed `observer_`).
    pub failures: FailureSummary,
    /// Cycles that closed politely.
    pub churn_closed_cleanly: u64,
    /// Cycles the server closed early.
    pub churn_dropped_by_server: u64,
    /// Successful cycles per second of churn.
    pub cycles_per_s: f64,
    /// Connect latency of the churn connections.
    pub connect_latency_ms: LatencySummary,
    /// `user_online` (and `user_offline`) each observer should have seen.
    pub expected_per_observer: u64,
    /// Fewest `user_online` an observer saw.
    pub observer_online_min: Option<u64>,
    /// Most `user_online` an observer saw.
    pub observer_online_max: Option<u64>,
    /// Fewest `user_offline` an observer saw.
    pub observer_offline_min: Option<u64>,
    /// Most `user_offline` an observer saw.
    pub observer_offline_max: Option<u64>,
    /// Observers whose counts are not exactly the expected ones.
    pub observers_mismatched: u64,
    /// RSS samples during the churn.
    pub rss_samples: Vec<RssSample>,
}

struct Shared {
    online: Vec<Counter>,
    offline: Vec<Counter>,
    counting: std::sync::atomic::AtomicBool,
    observers_dropped: Counter,
    churn_connected: Counter,
    churn_closed: Counter,
    churn_dropped: Counter,
    churn_failed: Counter,
    failures: Failures,
    latency: Latencies,
}

/// Runs `churn`.
pub(crate) async fn run(ctx: &Arc<Ctx>, run: &RunSettings, settings: &ChurnSettings) -> Result<Outcome, Error> {
    if settings.observers + settings.pool > ctx.settings.users {
        return Err(Error::invalid("pool", "--observers + --pool must be <= --users so churn users never collide"));
    }
    let concurrent = settings.rate * settings.hold_ms as f64 / 1000.0;
    if (settings.pool as f64) < concurrent * 2.0 {
        return Err(Error::invalid("pool", format!("too small for rate x hold ({concurrent:.0} concurrent)")));
    }
    let observers = settings.observers as usize;
    let shared = Arc::new(Shared {
        online: (0..observers).map(|_| Counter::default()).collect(),
        offline: (0..observers).map(|_| Counter::default()).collect(),
        counting: false.into(),
        observers_dropped: Counter::default(),
        churn_connected: Counter::default(),
        churn_closed: Counter::default(),
        churn_dropped: Counter::default(),
        churn_failed: Counter::default(),
        failures: Failures::default(),
        latency: Latencies::new(16),
    });
    let connect_budget = Duration::from_secs_f64(settings.observers as f64 / ctx.settings.connect_rate.max(1.0))
        + ctx.settings.connect_timeout * 2;
    let stop = CancellationToken::new();
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel::<bool>();

    progress(&ctx.clock, format_args!("churn: connecting {} observers", settings.observers));
    let mut observer_tasks = JoinSet::new();
    let launched = pacer::launch(
        settings.observers,
        ctx.settings.connect_rate,
        ctx.settings.max_inflight,
        Instant::now() + connect_budget,
        |i, permit| {
            observer_tasks.spawn(observe(ctx.clone(), shared.clone(), i, permit, ready_tx.clone(), stop.clone()));
        },
    )
    .await;
    drop(ready_tx);
    let (mut observers_ready, mut answered) = (0u64, 0u64);
    let wait_until = Instant::now() + ctx.settings.connect_timeout + Duration::from_secs(2);
    while answered < launched {
        match tokio::time::timeout_at(wait_until, ready_rx.recv()).await {
            Ok(Some(ok)) => {
                answered += 1;
                observers_ready += u64::from(ok);
            }
            _ => break,
        }
    }
    progress(&ctx.clock, format_args!("churn: {observers_ready}/{} observers ready; settling", settings.observers));
    tokio::time::sleep(Duration::from_secs(1)).await;
    shared.counting.store(true, std::sync::atomic::Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(100)).await;

    let window_start = Snapshot::take(&run.pids);
    let churn_started = Instant::now();
    let samples = Arc::new(Mutex::new(Vec::new()));
    let sampler = tokio::spawn(sample_rss(run.clone(), settings.rss_interval, churn_started, samples.clone()));
    let cycles = (settings.rate * run.duration.as_secs_f64()).round() as u64;
    progress(&ctx.clock, format_args!("churn: {cycles} cycles at {}/s, hold {} ms", settings.rate, settings.hold_ms));
    let hold = Duration::from_millis(settings.hold_ms);
    let mut churners = JoinSet::new();
    let churn_deadline = churn_started + run.duration + Duration::from_secs(1);
    let (base, pool) = (settings.observers, settings.pool);
    let attempted = pacer::launch(cycles, settings.rate, ctx.settings.max_inflight, churn_deadline, |j, permit| {
        churners.spawn(cycle(ctx.clone(), shared.clone(), j, base + j % pool, permit, hold));
    })
    .await;
    let churn_s = churn_started.elapsed().as_secs_f64();
    let _ = tokio::time::timeout(hold + ctx.settings.connect_timeout + Duration::from_secs(5), async {
        while churners.join_next().await.is_some() {}
    })
    .await;
    churners.abort_all();

    let expected = shared.churn_connected.get();
    let settled = |shared: &Shared| {
        shared.online.iter().zip(&shared.offline).all(|(on, off)| on.get() >= expected && off.get() >= expected)
    };
    let settle_until = Instant::now() + settings.settle;
    while Instant::now() < settle_until && !settled(&shared) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Anything extra (a duplicate event) would arrive shortly after.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let window_end = Snapshot::take(&run.pids);
    let online: Vec<u64> = shared.online.iter().map(Counter::get).collect();
    let offline: Vec<u64> = shared.offline.iter().map(Counter::get).collect();
    stop.cancel();
    sampler.abort();
    let _ = tokio::time::timeout(Duration::from_secs(5), async { while observer_tasks.join_next().await.is_some() {} })
        .await;
    observer_tasks.abort_all();

    let mismatched = online.iter().zip(&offline).filter(|(on, off)| **on != expected || **off != expected).count();
    let results = ChurnResults {
        observers: settings.observers,
        observers_ready,
        observers_dropped: shared.observers_dropped.get(),
        rate: settings.rate,
        hold_ms: settings.hold_ms,
        churn_attempted: attempted,
        churn_connected: expected,
        churn_failed: shared.churn_failed.get(),
        failures: shared.failures.summary(),
        churn_closed_cleanly: shared.churn_closed.get(),
        churn_dropped_by_server: shared.churn_dropped.get(),
        cycles_per_s: round(expected as f64 / churn_s.max(1e-6), 1),
        connect_latency_ms: shared.latency.summary(),
        expected_per_observer: expected,
        observer_online_min: online.iter().min().copied(),
        observer_online_max: online.iter().max().copied(),
        observer_offline_min: offline.iter().min().copied(),
        observer_offline_max: offline.iter().max().copied(),
        observers_mismatched: mismatched as u64,
        rss_samples: samples.lock().clone(),
    };
    let ok = mismatched == 0 && observers_ready == settings.observers && results.churn_failed == 0;
    Ok(Outcome {
        results: Results::Churn(results),
        window: (window_start, window_end),
        deliveries: None,
        messages: None,
        connects: Some(expected),
        connections: None,
        group: format!("churn {} observers hold {} ms", settings.observers, settings.hold_ms),
        ok,
    })
}

async fn sample_rss(run: RunSettings, interval: Duration, started: Instant, samples: Arc<Mutex<Vec<RssSample>>>) {
    let mut ticker = tokio::time::interval(interval.max(Duration::from_millis(500)));
    loop {
        ticker.tick().await;
        let rss_kb = Snapshot::take(&run.pids).rss_kb();
        samples.lock().push(RssSample { at_s: round(started.elapsed().as_secs_f64(), 1), rss_kb });
    }
}

async fn observe(
    ctx: Arc<Ctx>,
    shared: Arc<Shared>,
    index: u64,
    permit: OwnedSemaphorePermit,
    ready_tx: mpsc::UnboundedSender<bool>,
    stop: CancellationToken,
) {
    let opened = ctx.open_as(index, index).await;
    drop(permit);
    let mut connection = match opened {
        Ok(connection) => connection,
        Err(error) => {
            shared.failures.add(format!("observer_{}", error.kind()), || error.to_string());
            let _ = ready_tx.send(false);
            return;
        }
    };
    let _ = ready_tx.send(true);
    let slot = index as usize;
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            frame = connection.recv() => {
                let Ok(frame) = frame else {
                    shared.observers_dropped.incr();
                    return;
                };
                let counting = shared.counting.load(std::sync::atomic::Ordering::Relaxed);
                if frame.starts_with("42[\"user_online\"") {
                    if counting {
                        shared.online[slot].incr();
                    }
                } else if frame.starts_with("42[\"user_offline\"") {
                    if counting {
                        shared.offline[slot].incr();
                    }
                } else if connection.answer_ping(&frame).await.is_err() {
                    shared.observers_dropped.incr();
                    return;
                }
            }
        }
    }
    connection.close().await;
}

async fn cycle(
    ctx: Arc<Ctx>,
    shared: Arc<Shared>,
    index: u64,
    user_index: u64,
    permit: OwnedSemaphorePermit,
    hold: Duration,
) {
    let started_us = ctx.clock.now_us();
    let opened = ctx.open_as(index, user_index).await;
    drop(permit);
    let mut connection = match opened {
        Ok(connection) => connection,
        Err(error) => {
            shared.churn_failed.incr();
            shared.failures.add(error.kind(), || error.to_string());
            return;
        }
    };
    shared.latency.record(index, ctx.clock.now_us().saturating_sub(started_us));
    shared.churn_connected.incr();
    let until = Instant::now() + hold;
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(until) => break,
            frame = connection.recv() => {
                let answered = match frame {
                    Ok(frame) => connection.answer_ping(&frame).await.map(|_| ()),
                    Err(error) => Err(error),
                };
                if answered.is_err() {
                    shared.churn_dropped.incr();
                    return;
                }
            }
        }
    }
    connection.close().await;
    shared.churn_closed.incr();
}
