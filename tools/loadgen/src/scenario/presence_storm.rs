//! `presence-storm`: many users connect in a burst while long-lived
//! observers count the `user_online` events it causes; optionally they all
//! leave at once and the observers count `user_offline`.
//!
//! Reports how long after the burst started the last observer had seen
//! every storm user (`seen_all_online_after_s`; absent if some observer
//! never did within `--wait`), and how many each observer saw. With
//! presence broadcast to everyone, N connects cost N × (observers + N)
//! frames; a server that batches or bounds presence shows up here as a
//! shorter time, or as fewer events seen (counted, not hidden). The storm
//! users come after the observers' users, so each is a first socket.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

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

/// `presence-storm` settings.
#[derive(Debug, Clone, clap::Args, Serialize)]
pub struct PresenceStormSettings {
    /// Long-lived observers that count presence events.
    #[arg(long, default_value_t = 100)]
    pub observers: u64,
    /// Users that connect in the burst.
    #[arg(long, default_value_t = 1000)]
    pub storm: u64,
    /// Burst connects started per second; 0: as fast as `--max-inflight` allows.
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Longest wait for the observers to see everyone (per wave).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    #[serde(serialize_with = "as_seconds")]
    pub wait: Duration,
    /// Then disconnect the storm users at once and count `user_offline` too.
    #[arg(long, default_value_t = false)]
    pub offline: bool,
}

impl Default for PresenceStormSettings {
    fn default() -> Self {
        Self { observers: 100, storm: 1000, rate: 0.0, wait: Duration::from_secs(30), offline: false }
    }
}

/// How one wave (online or offline) reached the observers.
#[derive(Debug, Clone, Serialize)]
pub struct Wave {
    /// Events each observer should see.
    pub expected_per_observer: u64,
    /// Fewest an observer saw.
    pub seen_min: Option<u64>,
    /// Most an observer saw.
    pub seen_max: Option<u64>,
    /// Observers that saw every one.
    pub observers_complete: u64,
    /// When the last observer had seen everyone, seconds after the wave started.
    pub seen_all_after_s: Option<f64>,
    /// When the last event arrived at any observer, seconds after the wave started.
    pub last_event_after_s: Option<f64>,
}

/// What `presence-storm` measured.
#[derive(Debug, Clone, Serialize)]
pub struct PresenceStormResults {
    /// Observers asked for.
    pub observers: u64,
    /// Observers connected.
    pub observers_ready: u64,
    /// Observers the server closed.
    pub observers_dropped: u64,
    /// Storm users asked for.
    pub storm_target: u64,
    /// Storm users connected.
    pub storm_connected: u64,
    /// Storm connects that failed.
    pub storm_failed: u64,
    /// Failures by kind (observers' prefixed `observer_`).
    pub failures: FailureSummary,
    /// Offered burst rate (0: unpaced).
    pub rate_limit: f64,
    /// From the first burst connect to the last success, seconds.
    pub storm_connect_s: f64,
    /// Storm connects per second.
    pub connects_per_s: f64,
    /// Connect latency of the storm users.
    pub connect_latency_ms: LatencySummary,
    /// The `user_online` wave.
    pub online: Wave,
    /// The `user_offline` wave (`--offline`).
    pub offline: Option<Wave>,
}

/// One observer's counts for a wave.
#[derive(Default)]
struct Seen {
    online: Counter,
    offline: Counter,
    last_online_us: Counter,
    last_offline_us: Counter,
}

struct Shared {
    seen: Vec<Seen>,
    counting: AtomicBool,
    observers_dropped: Counter,
    storm_connected: Counter,
    last_storm_connect_us: Counter,
    storm_failures: Counter,
    failures: Failures,
    latency: Latencies,
}

/// Runs `presence-storm`.
pub(crate) async fn run(ctx: &Arc<Ctx>, run: &RunSettings, settings: &PresenceStormSettings) -> Result<Outcome, Error> {
    if settings.observers == 0 || settings.storm == 0 {
        return Err(Error::invalid("storm", "--observers and --storm must be at least 1"));
    }
    if settings.observers + settings.storm > ctx.settings.users {
        return Err(Error::invalid("storm", "--observers + --storm must be <= --users (one user per socket)"));
    }
    let shared = Arc::new(Shared {
        seen: (0..settings.observers).map(|_| Seen::default()).collect(),
        counting: AtomicBool::new(false),
        observers_dropped: Counter::default(),
        storm_connected: Counter::default(),
        last_storm_connect_us: Counter::default(),
        storm_failures: Counter::default(),
        failures: Failures::default(),
        latency: Latencies::new(16),
    });
    let stop_observers = CancellationToken::new();
    let stop_storm = CancellationToken::new();
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel::<bool>();
    let mut observer_tasks = JoinSet::new();
    let budget = Duration::from_secs_f64(settings.observers as f64 / ctx.settings.connect_rate.max(1.0))
        + ctx.settings.connect_timeout * 2;
    progress(&ctx.clock, format_args!("presence-storm: connecting {} observers", settings.observers));
    let launched = pacer::launch(
        settings.observers,
        ctx.settings.connect_rate,
        ctx.settings.max_inflight,
        Instant::now() + budget,
        |i, permit| {
            let task = observe(ctx.clone(), shared.clone(), i, permit, ready_tx.clone(), stop_observers.clone());
            observer_tasks.spawn(task);
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
    progress(&ctx.clock, format_args!("presence-storm: {observers_ready} observers ready; settling"));
    tokio::time::sleep(Duration::from_secs(1)).await;
    shared.counting.store(true, Ordering::Relaxed);

    let window_start = Snapshot::take(&run.pids);
    let storm_started = Instant::now();
    let storm_started_us = ctx.clock.now_us();
    progress(&ctx.clock, format_args!("presence-storm: {} users connect", settings.storm));
    let mut storm_tasks = JoinSet::new();
    let base = settings.observers;
    let storm_deadline = storm_started + settings.wait;
    let attempted =
        pacer::launch(settings.storm, settings.rate, ctx.settings.max_inflight, storm_deadline, |j, permit| {
            storm_tasks.spawn(storm_user(ctx.clone(), shared.clone(), base + j, permit, stop_storm.clone()));
        })
        .await;
    // Wait until every storm connect finished and the observers saw them all (or time is up).
    let online_deadline = storm_started + settings.wait + ctx.settings.connect_timeout;
    let finished = |shared: &Shared| shared.storm_connected.get() + shared.storm_failures.get() >= attempted;
    while Instant::now() < online_deadline
        && !(finished(&shared) && complete(&shared.seen, shared.storm_connected.get(), |seen| &seen.online))
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let storm_connected = shared.storm_connected.get();
    let online = wave(&shared.seen, storm_connected, storm_started_us, |seen| (&seen.online, &seen.last_online_us));
    progress(&ctx.clock, format_args!("presence-storm: online wave {online:?}"));

    let offline = if settings.offline {
        let offline_started_us = ctx.clock.now_us();
        stop_storm.cancel();
        let deadline = Instant::now() + settings.wait;
        while Instant::now() < deadline && !complete(&shared.seen, storm_connected, |seen| &seen.offline) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let offline = wave(&shared.seen, storm_connected, offline_started_us, |s| (&s.offline, &s.last_offline_us));
        progress(&ctx.clock, format_args!("presence-storm: offline wave {offline:?}"));
        Some(offline)
    } else {
        None
    };
    let window_end = Snapshot::take(&run.pids);
    stop_storm.cancel();
    stop_observers.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while storm_tasks.join_next().await.is_some() {}
        while observer_tasks.join_next().await.is_some() {}
    })
    .await;
    storm_tasks.abort_all();
    observer_tasks.abort_all();

    let last_connect_us = shared.last_storm_connect_us.get();
    let storm_connect_s = if last_connect_us > storm_started_us {
        (last_connect_us - storm_started_us) as f64 / 1e6
    } else {
        storm_started.elapsed().as_secs_f64()
    };
    let all_seen = online.seen_all_after_s.is_some() && offline.as_ref().is_none_or(|w| w.seen_all_after_s.is_some());
    let results = PresenceStormResults {
        observers: settings.observers,
        observers_ready,
        observers_dropped: shared.observers_dropped.get(),
        storm_target: settings.storm,
        storm_connected,
        storm_failed: shared.storm_failures.get(),
        failures: shared.failures.summary(),
        rate_limit: settings.rate,
        storm_connect_s: round(storm_connect_s, 3),
        connects_per_s: round(storm_connected as f64 / storm_connect_s.max(1e-6), 1),
        connect_latency_ms: shared.latency.summary(),
        online,
        offline,
    };
    let ok = observers_ready == settings.observers && storm_connected == settings.storm && all_seen;
    Ok(Outcome {
        results: Results::PresenceStorm(results),
        window: (window_start, window_end),
        deliveries: None,
        messages: None,
        connects: Some(storm_connected),
        connections: None,
        group: format!("presence-storm {} observers", settings.observers),
        ok,
    })
}

/// Whether every observer has seen `expected` events of the kind `count` picks.
fn complete(seen: &[Seen], expected: u64, count: impl Fn(&Seen) -> &Counter) -> bool {
    seen.iter().all(|seen| count(seen).get() >= expected)
}

/// Summarizes a wave that started at `started_us`.
fn wave(seen: &[Seen], expected: u64, started_us: u64, pick: impl Fn(&Seen) -> (&Counter, &Counter)) -> Wave {
    let counts: Vec<(u64, u64)> = seen.iter().map(pick).map(|(n, last)| (n.get(), last.get())).collect();
    let after = |us: u64| round(us.saturating_sub(started_us) as f64 / 1e6, 3);
    let complete = counts.iter().filter(|(n, _)| *n >= expected).count() as u64;
    let last_event = counts.iter().map(|(_, last)| *last).filter(|last| *last > 0).max();
    Wave {
        expected_per_observer: expected,
        seen_min: counts.iter().map(|(n, _)| *n).min(),
        seen_max: counts.iter().map(|(n, _)| *n).max(),
        observers_complete: complete,
        seen_all_after_s: (complete == counts.len() as u64 && expected > 0).then(|| last_event.map(after)).flatten(),
        last_event_after_s: last_event.map(after),
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
    let seen = &shared.seen[index as usize];
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            frame = connection.recv() => {
                let Ok(frame) = frame else {
                    shared.observers_dropped.incr();
                    return;
                };
                let counting = shared.counting.load(Ordering::Relaxed);
                if frame.starts_with("42[\"user_online\"") {
                    if counting {
                        seen.online.incr();
                        seen.last_online_us.raise_to(ctx.clock.now_us());
                    }
                } else if frame.starts_with("42[\"user_offline\"") {
                    if counting {
                        seen.offline.incr();
                        seen.last_offline_us.raise_to(ctx.clock.now_us());
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

async fn storm_user(
    ctx: Arc<Ctx>,
    shared: Arc<Shared>,
    index: u64,
    permit: OwnedSemaphorePermit,
    stop: CancellationToken,
) {
    let started_us = ctx.clock.now_us();
    let opened = ctx.open_as(index, index).await;
    drop(permit);
    let mut connection = match opened {
        Ok(connection) => connection,
        Err(error) => {
            shared.failures.add(error.kind(), || error.to_string());
            shared.storm_failures.incr();
            return;
        }
    };
    let now = ctx.clock.now_us();
    shared.latency.record(index, now.saturating_sub(started_us));
    shared.last_storm_connect_us.raise_to(now);
    shared.storm_connected.incr();
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            frame = connection.recv() => {
                let answered = match frame {
                    Ok(frame) => connection.answer_ping(&frame).await.map(|_| ()),
                    Err(error) => Err(error),
                };
                if answered.is_err() {
                    return;
                }
            }
        }
    }
    connection.close().await;
}
