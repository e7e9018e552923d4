//! `connect` and `idle`: open N authenticated connections at up to R per
//! second, keep them open answering Engine.IO pings, then close them.
//!
//! Both report the achieved connect rate (successes over the time to the
//! last success), connect latency (TCP connect → `40`), failures by kind,
//! and the RSS of every watched process before connecting, once all are
//! connected, and after the idle hold, with bytes per connection. They
//! differ in the measured window: `connect` measures the connect phase
//! (CPU per handshake), `idle` the whole run from before the first connect
//! to the end of the hold (memory per connection, the cost of keeping
//! sockets alive). The shared loadgen's `connect` flags work unchanged.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{OwnedSemaphorePermit, mpsc};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::accounting::{Snapshot, Usage, process_name, round};
use crate::client::Ctx;
use crate::metrics::{Counter, FailureSummary, Failures, Latencies, LatencySummary};
use crate::record::Outcome;
use crate::scenario::Results;
use crate::settings::{as_seconds, parse_duration};
use crate::{Error, RunSettings, pacer, progress};

/// `connect` settings.
#[derive(Debug, Clone, clap::Args, Serialize)]
pub struct ConnectSettings {
    /// Connections to open.
    #[arg(long, default_value_t = 1000)]
    pub conns: u64,
    /// Connection attempts started per second (the offered rate); 0: as fast as `--max-inflight` allows.
    #[arg(long, default_value_t = 1000.0)]
    pub rate: f64,
    /// How long to stay connected and idle after the connect phase before sampling RSS again.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    #[serde(serialize_with = "as_seconds")]
    pub idle: Duration,
    /// Upper bound on the connect phase.
    #[arg(long, default_value = "150s", value_parser = parse_duration)]
    #[serde(serialize_with = "as_seconds")]
    pub max_connect_time: Duration,
}

impl Default for ConnectSettings {
    fn default() -> Self {
        Self { conns: 1000, rate: 1000.0, idle: Duration::from_secs(10), max_connect_time: Duration::from_secs(150) }
    }
}

/// `idle` settings.
#[derive(Debug, Clone, clap::Args, Serialize)]
pub struct IdleSettings {
    /// Connections to open.
    #[arg(long, default_value_t = 1000)]
    pub conns: u64,
    /// Connection attempts started per second; 0: as fast as `--max-inflight` allows.
    #[arg(long, default_value_t = 1000.0)]
    pub rate: f64,
    /// How long to hold the connections once all are open.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    #[serde(serialize_with = "as_seconds")]
    pub hold: Duration,
    /// Upper bound on the connect phase.
    #[arg(long, default_value = "150s", value_parser = parse_duration)]
    #[serde(serialize_with = "as_seconds")]
    pub max_connect_time: Duration,
}

impl Default for IdleSettings {
    fn default() -> Self {
        Self { conns: 1000, rate: 1000.0, hold: Duration::from_secs(30), max_connect_time: Duration::from_secs(150) }
    }
}

/// The memory of one process across the phases.
#[derive(Debug, Clone, Serialize)]
pub struct ProcessMemory {
    /// The process (`loadgen` for this one).
    pub name: String,
    /// Before the first connect, KiB.
    pub rss_before_kb: Option<u64>,
    /// Once every connection is open, KiB.
    pub rss_connected_kb: Option<u64>,
    /// After the idle hold, KiB.
    pub rss_after_idle_kb: Option<u64>,
    /// (after − before) / connections alive, bytes.
    pub rss_bytes_per_conn: Option<f64>,
}

/// CPU of one phase, percent of one core.
#[derive(Debug, Clone, Serialize)]
pub struct PhaseCpu {
    /// Length, seconds.
    pub seconds: f64,
    /// All watched processes.
    pub server_cpu_pct: Option<f64>,
    /// The loadgen.
    pub loadgen_cpu_pct: Option<f64>,
    /// Everything else.
    pub other_cpu_pct: Option<f64>,
}

impl PhaseCpu {
    fn of(usage: &Usage) -> Self {
        Self {
            seconds: usage.window_s,
            server_cpu_pct: usage.server_cpu_pct,
            loadgen_cpu_pct: usage.loadgen.cpu_pct,
            other_cpu_pct: usage.host.other_cpu_pct,
        }
    }
}

/// What `connect` and `idle` measured.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectResults {
    /// Connections asked for.
    pub target_conns: u64,
    /// Offered connect rate (per second; 0: unpaced).
    pub rate_limit: f64,
    /// Attempts started.
    pub launched: u64,
    /// Attempts that connected.
    pub connected: u64,
    /// Attempts that failed.
    pub failed: u64,
    /// Failures by kind.
    pub failures: FailureSummary,
    /// From the first attempt to the last success, seconds.
    pub connect_phase_s: f64,
    /// Successes per second over `connect_phase_s`.
    pub connects_per_s: f64,
    /// TCP connect → Socket.IO CONNECT answered.
    pub connect_latency_ms: LatencySummary,
    /// Connections still open after the hold.
    pub alive_after_idle: u64,
    /// Connections the server closed during the hold.
    pub dropped_while_idle: u64,
    /// Length of the hold, seconds.
    pub idle_s: f64,
    /// Text frames received (pings included).
    pub frames_received: u64,
    /// `user_online` / `user_offline` frames received.
    pub presence_events_received: u64,
    /// Memory per watched process and of the loadgen.
    pub memory: Vec<ProcessMemory>,
    /// CPU while connecting.
    pub cpu_connect_phase: PhaseCpu,
    /// CPU while idle.
    pub cpu_idle_phase: PhaseCpu,
}

/// Counters the connection tasks share.
#[derive(Default)]
struct Shared {
    connected: Counter,
    alive: Counter,
    dropped: Counter,
    frames: Counter,
    presence: Counter,
    last_success_us: Counter,
    failures: Failures,
    latency: Latencies,
}

/// What both scenarios do; `hold` is the idle time after connecting.
struct Plan {
    conns: u64,
    rate: f64,
    hold: Duration,
    max_connect_time: Duration,
    /// `idle`: the window spans the whole run, not just the connect phase.
    window_is_whole_run: bool,
}

/// Runs `connect`.
pub(crate) async fn run_connect(
    ctx: &Arc<Ctx>,
    run: &RunSettings,
    settings: &ConnectSettings,
) -> Result<Outcome, Error> {
    let plan = Plan {
        conns: settings.conns,
        rate: settings.rate,
        hold: settings.idle,
        max_connect_time: settings.max_connect_time,
        window_is_whole_run: false,
    };
    execute(ctx, run, plan).await
}

/// Runs `idle`.
pub(crate) async fn run_idle(ctx: &Arc<Ctx>, run: &RunSettings, settings: &IdleSettings) -> Result<Outcome, Error> {
    let plan = Plan {
        conns: settings.conns,
        rate: settings.rate,
        hold: settings.hold,
        max_connect_time: settings.max_connect_time,
        window_is_whole_run: true,
    };
    execute(ctx, run, plan).await
}

async fn execute(ctx: &Arc<Ctx>, run: &RunSettings, plan: Plan) -> Result<Outcome, Error> {
    if plan.conns == 0 {
        return Err(Error::invalid("conns", "must be at least 1"));
    }
    let shared = Arc::new(Shared::default());
    let stop = CancellationToken::new();
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<()>();
    let mut tasks = JoinSet::new();

    let before = Snapshot::take(&run.pids);
    let started = Instant::now();
    let started_us = ctx.clock.now_us();
    progress(&ctx.clock, format_args!("connect: opening {} connections at <= {}/s", plan.conns, plan.rate));
    let connect_deadline = started + plan.max_connect_time;
    let launched =
        pacer::launch(plan.conns, plan.rate, ctx.settings.max_inflight, connect_deadline, |index, permit| {
            tasks.spawn(hold_connection(ctx.clone(), shared.clone(), index, permit, stop.clone(), done_tx.clone()));
        })
        .await;
    drop(done_tx);
    let wait_until = Instant::now() + ctx.settings.connect_timeout + Duration::from_secs(2);
    let mut finished = 0;
    while finished < launched {
        match tokio::time::timeout_at(wait_until, done_rx.recv()).await {
            Ok(Some(())) => finished += 1,
            _ => break,
        }
    }
    let connected_snapshot = Snapshot::take(&run.pids);
    let connected = shared.connected.get();
    let last_success_us = shared.last_success_us.get();
    let connect_phase_s = if last_success_us > started_us {
        (last_success_us - started_us) as f64 / 1e6
    } else {
        started.elapsed().as_secs_f64()
    };
    progress(
        &ctx.clock,
        format_args!(
            "connect: {connected}/{launched} connected in {connect_phase_s:.2}s ({} failed); holding {:?}",
            shared.failures.total(),
            plan.hold
        ),
    );
    tokio::time::sleep(plan.hold).await;
    let after = Snapshot::take(&run.pids);
    let alive = shared.alive.get();
    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(5), async { while tasks.join_next().await.is_some() {} }).await;
    tasks.abort_all();

    let connect_usage = Usage::between(&before, &connected_snapshot, &run.pids);
    let idle_usage = Usage::between(&connected_snapshot, &after, &run.pids);
    let memory = memory_by_process(run, [&before, &connected_snapshot, &after], alive);
    let results = ConnectResults {
        target_conns: plan.conns,
        rate_limit: plan.rate,
        launched,
        connected,
        failed: shared.failures.total(),
        failures: shared.failures.summary(),
        connect_phase_s: round(connect_phase_s, 2),
        connects_per_s: round(connected as f64 / connect_phase_s.max(1e-6), 1),
        connect_latency_ms: shared.latency.summary(),
        alive_after_idle: alive,
        dropped_while_idle: shared.dropped.get(),
        idle_s: plan.hold.as_secs_f64(),
        frames_received: shared.frames.get(),
        presence_events_received: shared.presence.get(),
        memory,
        cpu_connect_phase: PhaseCpu::of(&connect_usage),
        cpu_idle_phase: PhaseCpu::of(&idle_usage),
    };
    let window = if plan.window_is_whole_run { (before, after) } else { (before, connected_snapshot) };
    Ok(Outcome {
        group: if plan.window_is_whole_run { "idle" } else { "connect" }.to_owned(),
        results: Results::Connect(results),
        window,
        deliveries: None,
        messages: None,
        connects: (!plan.window_is_whole_run).then_some(connected),
        connections: plan.window_is_whole_run.then_some(alive),
        ok: connected == plan.conns && alive == plan.conns,
    })
}

/// RSS of every watched process (and the loadgen) at the three points.
fn memory_by_process(run: &RunSettings, snapshots: [&Snapshot; 3], alive: u64) -> Vec<ProcessMemory> {
    let [before, connected, after] = snapshots.map(|snapshot| (snapshot.rss_kb(), snapshot.loadgen_rss_kb()));
    let per_conn = |start: Option<u64>, end: Option<u64>| match (start, end) {
        (Some(start), Some(end)) if alive > 0 => Some(round((end as f64 - start as f64) * 1024.0 / alive as f64, 1)),
        _ => None,
    };
    let mut memory: Vec<ProcessMemory> = run
        .pids
        .iter()
        .enumerate()
        .map(|(i, process)| ProcessMemory {
            name: process_name(process),
            rss_before_kb: before.0[i],
            rss_connected_kb: connected.0[i],
            rss_after_idle_kb: after.0[i],
            rss_bytes_per_conn: per_conn(before.0[i], after.0[i]),
        })
        .collect();
    memory.push(ProcessMemory {
        name: "loadgen".to_owned(),
        rss_before_kb: before.1,
        rss_connected_kb: connected.1,
        rss_after_idle_kb: after.1,
        rss_bytes_per_conn: per_conn(before.1, after.1),
    });
    memory
}

async fn hold_connection(
    ctx: Arc<Ctx>,
    shared: Arc<Shared>,
    index: u64,
    permit: OwnedSemaphorePermit,
    stop: CancellationToken,
    done: mpsc::UnboundedSender<()>,
) {
    let started_us = ctx.clock.now_us();
    let opened = ctx.open_as(index, index).await;
    drop(permit);
    let mut connection = match opened {
        Ok(connection) => {
            let now = ctx.clock.now_us();
            shared.latency.record(index, now.saturating_sub(started_us));
            shared.connected.incr();
            shared.alive.incr();
            shared.last_success_us.raise_to(now);
            let _ = done.send(());
            connection
        }
        Err(error) => {
            shared.failures.add(error.kind(), || error.to_string());
            let _ = done.send(());
            return;
        }
    };
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            frame = connection.recv() => {
                let Ok(frame) = frame else {
                    shared.alive.decr();
                    shared.dropped.incr();
                    return;
                };
                shared.frames.incr();
                if frame.starts_with("42[\"user_o") {
                    shared.presence.incr();
                } else if connection.answer_ping(&frame).await.is_err() {
                    shared.alive.decr();
                    shared.dropped.incr();
                    return;
                }
            }
        }
    }
    connection.close().await;
}
