//! `fanout` (room messages), `private` (`{to, message}` between pairs) and
//! `broadcast` (`{message}` to everyone): end-to-end latency and loss.
//!
//! The method is the shared loadgen's, so numbers compare with
//! `BASELINE.md`. Each message text is `lg|<sender>|<seq>|<send µs>|<m>|xxx…`
//! padded to `--msg-size`; `m = 1` marks a message sent inside the
//! measured window (warm-up messages are delivered but not counted). The
//! receive time minus the embedded send time is the latency: one process,
//! one monotonic clock. Receivers ignore their own echo, so a server that
//! does or does not echo to the sender measures the same. `expected` is
//! the sum over measured sends of the sender's ready receivers; after
//! sending stops the run waits up to `--drain` for the rest.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

mod member;
mod settings;

use member::{Member, Phase, Role, Schedule, Shared, Target};
pub use settings::{BroadcastSettings, FanoutSettings, MessagingResults, PrivateSettings, Shape};

use crate::accounting::{Snapshot, round};
use crate::client::Ctx;
use crate::record::Outcome;
use crate::scenario::Results;
use crate::{Error, RunSettings, pacer, progress};

/// One scenario's plan: who does what, and who receives whose messages.
struct Plan<R, C> {
    connections: u64,
    rate: f64,
    msg_size: usize,
    drain: Duration,
    role: R,
    /// Ready receivers of each connection's messages, given who is ready.
    receivers: C,
    shape: Shape,
    group: String,
}

/// Runs `fanout`.
pub(crate) async fn run_fanout(ctx: &Arc<Ctx>, run: &RunSettings, settings: &FanoutSettings) -> Result<Outcome, Error> {
    if settings.senders > settings.members || settings.members == 0 || settings.rooms == 0 {
        return Err(Error::invalid("senders", "need rooms >= 1 and 1 <= members >= senders"));
    }
    let (members, senders) = (settings.members, settings.senders);
    let plan = Plan {
        connections: settings.rooms * members,
        rate: settings.rate,
        msg_size: settings.msg_size,
        drain: settings.drain,
        role: move |i: u64| {
            let room = format!("bench-room-{}", i / members);
            let sends = i % members < senders;
            Role { join: Some(room.clone()), target: sends.then_some(Target::Room(room)) }
        },
        receivers: move |ready: &[bool]| room_receivers(ready, members),
        shape: Shape::Fanout { rooms: settings.rooms, members, senders_per_room: senders },
        group: format!("fanout {}x{} s{}", settings.rooms, members, senders),
    };
    execute(ctx, run, plan).await
}

/// Runs `private`.
pub(crate) async fn run_private(
    ctx: &Arc<Ctx>,
    run: &RunSettings,
    settings: &PrivateSettings,
) -> Result<Outcome, Error> {
    if settings.pairs == 0 {
        return Err(Error::invalid("pairs", "must be at least 1"));
    }
    if settings.pairs * 2 > ctx.settings.users {
        return Err(Error::invalid("pairs", "2 x pairs must be <= --users (each side is its own user)"));
    }
    let partner_ctx = ctx.clone();
    let plan = Plan {
        connections: settings.pairs * 2,
        rate: settings.rate,
        msg_size: settings.msg_size,
        drain: settings.drain,
        role: move |i: u64| Role { join: None, target: Some(Target::User(partner_ctx.user_id(i ^ 1))) },
        receivers: pair_receivers,
        shape: Shape::Private { pairs: settings.pairs },
        group: format!("private {} pairs", settings.pairs),
    };
    execute(ctx, run, plan).await
}

/// Runs `broadcast`.
pub(crate) async fn run_broadcast(
    ctx: &Arc<Ctx>,
    run: &RunSettings,
    settings: &BroadcastSettings,
) -> Result<Outcome, Error> {
    if settings.senders == 0 || settings.senders > settings.conns {
        return Err(Error::invalid("senders", "must be between 1 and --conns"));
    }
    let senders = settings.senders;
    let plan = Plan {
        connections: settings.conns,
        rate: settings.rate,
        msg_size: settings.msg_size,
        drain: settings.drain,
        role: move |i: u64| Role { join: None, target: (i < senders).then_some(Target::Everyone) },
        receivers: everyone_receivers,
        shape: Shape::Broadcast { conns: settings.conns, senders },
        group: format!("broadcast {} conns s{}", settings.conns, senders),
    };
    execute(ctx, run, plan).await
}

async fn execute<R, C>(ctx: &Arc<Ctx>, run: &RunSettings, plan: Plan<R, C>) -> Result<Outcome, Error>
where
    R: Fn(u64) -> Role,
    C: Fn(&[bool]) -> Vec<u32>,
{
    if !(plan.rate > 0.0 && plan.rate.is_finite()) {
        return Err(Error::invalid("rate", "must be > 0"));
    }
    let settings = &ctx.settings;
    let count = plan.connections;
    let shared = Arc::new(Shared::default());
    let (phase_tx, phase_rx) = watch::channel(Phase::Setup);
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel::<(u64, bool)>();
    let mut tasks = JoinSet::new();
    let setup_budget = Duration::from_secs_f64(count as f64 / settings.connect_rate.max(1.0))
        + settings.connect_timeout * 2
        + Duration::from_secs(10);
    let hard_deadline =
        Instant::now() + setup_budget + run.warmup + run.duration + plan.drain + Duration::from_secs(30);
    let period = Duration::from_secs_f64(1.0 / plan.rate);

    progress(&ctx.clock, format_args!("setting up {count} connections"));
    let setup_started = Instant::now();
    let launched = pacer::launch(
        count,
        settings.connect_rate,
        settings.max_inflight,
        setup_started + setup_budget,
        |i, permit| {
            let member = Member {
                ctx: ctx.clone(),
                shared: shared.clone(),
                index: i,
                role: (plan.role)(i),
                period,
                msg_size: plan.msg_size,
                hard_deadline,
            };
            tasks.spawn(member.run(permit, ready_tx.clone(), phase_rx.clone()));
        },
    )
    .await;
    drop(ready_tx);
    let mut ready = vec![false; count as usize];
    let mut answered = 0;
    let wait_until = Instant::now() + settings.connect_timeout * 2 + Duration::from_secs(2);
    while answered < launched {
        match tokio::time::timeout_at(wait_until, ready_rx.recv()).await {
            Ok(Some((i, ok))) => {
                answered += 1;
                ready[i as usize] = ok;
            }
            _ => break,
        }
    }
    let ready_count = ready.iter().filter(|ready| **ready).count() as u64;
    let setup_s = setup_started.elapsed().as_secs_f64();
    progress(&ctx.clock, format_args!("{ready_count}/{count} ready in {setup_s:.1}s; settling"));
    // Let the last joins' presence traffic pass before the clock starts.
    tokio::time::sleep(Duration::from_secs(1)).await;

    let receivers: Vec<u32> = (plan.receivers)(&ready)
        .into_iter()
        .enumerate()
        .map(|(i, receivers)| if (plan.role)(i as u64).target.is_some() { receivers } else { 0 })
        .collect();
    let deliveries_per_round: u64 = receivers.iter().map(|r| u64::from(*r)).sum();
    let active_senders = receivers.iter().filter(|r| **r > 0).count() as u64;
    let start = Instant::now() + Duration::from_millis(50);
    let warm_end = start + run.warmup;
    let send_end = warm_end + run.duration;
    let _ = phase_tx.send(Phase::Run(Arc::new(Schedule { start, warm_end, send_end, receivers })));
    progress(
        &ctx.clock,
        format_args!("sending at {}/s per sender, warm-up {:?}, measuring {:?}", plan.rate, run.warmup, run.duration),
    );

    tokio::time::sleep_until(warm_end).await;
    let window_start = Snapshot::take(&run.pids);
    tokio::time::sleep_until(send_end).await;
    let window_end = Snapshot::take(&run.pids);
    let sent_at_end = shared.sent_measured.get();
    let received_at_end = shared.received.get();
    let drain_until = Instant::now() + plan.drain;
    while Instant::now() < drain_until && shared.received.get() < shared.expected.get() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let drain_s = send_end.elapsed().as_secs_f64();
    let (expected, received) = (shared.expected.get(), shared.received.get());
    let _ = phase_tx.send(Phase::Stop);
    let _ = tokio::time::timeout(Duration::from_secs(5), async { while tasks.join_next().await.is_some() {} }).await;
    tasks.abort_all();

    let lost = expected.saturating_sub(received);
    let window_s = run.duration.as_secs_f64().max(1e-6);
    let results = MessagingResults {
        shape: plan.shape,
        connections: count,
        ready: ready_count,
        setup_failures: shared.failures.summary(),
        setup_s: round(setup_s, 1),
        active_senders,
        rate_per_sender: plan.rate,
        offered_send_per_s: round(active_senders as f64 * plan.rate, 1),
        offered_deliveries_per_s: round(deliveries_per_round as f64 * plan.rate, 1),
        msg_size: plan.msg_size,
        sent_measured: shared.sent_measured.get(),
        sent_measured_per_s: round(sent_at_end as f64 / window_s, 1),
        expected,
        received,
        lost,
        loss_pct: if expected > 0 { round(lost as f64 * 100.0 / expected as f64, 3) } else { 0.0 },
        delivered_per_s: round(received as f64 / window_s, 1),
        received_in_window_per_s: round(received_at_end as f64 / window_s, 1),
        drain_s: round(drain_s, 3),
        latency_ms: shared.latency.summary(),
        received_warmup: shared.received_warmup.get(),
        self_echoes: shared.self_echoes.get(),
        exceptions: shared.exceptions.get(),
        other_frames: shared.other_frames.get(),
        dropped_connections: shared.dropped.get(),
        late_sends_over_5ms: shared.late_sends.get(),
        max_send_lag_ms: round(shared.max_send_lag_us.get() as f64 / 1000.0, 3),
    };
    let ok = ready_count == count && lost == 0 && results.dropped_connections == 0 && expected > 0;
    Ok(Outcome {
        deliveries: Some(received),
        messages: Some(results.sent_measured),
        connects: None,
        connections: None,
        group: plan.group,
        results: Results::Messaging(results),
        window: (window_start, window_end),
        ok,
    })
}

/// Receivers of each member's room messages: the other ready members of
/// its room (connection i is in room i / members).
fn room_receivers(ready: &[bool], members: u64) -> Vec<u32> {
    let members = members.max(1) as usize;
    let mut per_room = vec![0u32; ready.len().div_ceil(members)];
    for (i, _) in ready.iter().enumerate().filter(|(_, ready)| **ready) {
        per_room[i / members] += 1;
    }
    ready.iter().enumerate().map(|(i, ready)| if *ready { per_room[i / members] - 1 } else { 0 }).collect()
}

/// Receivers of each side of a pair (i and i ^ 1): its partner, if both are ready.
fn pair_receivers(ready: &[bool]) -> Vec<u32> {
    (0..ready.len()).map(|i| u32::from(ready[i] && ready.get(i ^ 1).copied().unwrap_or(false))).collect()
}

/// Receivers of a message to everyone: every other ready connection.
fn everyone_receivers(ready: &[bool]) -> Vec<u32> {
    let everyone = ready.iter().filter(|ready| **ready).count() as u32;
    ready.iter().map(|ready| if *ready { everyone - 1 } else { 0 }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receivers_count_ready_peers() {
        let ready = [true, true, false, true, true, true, true];
        assert_eq!(room_receivers(&ready, 3), [1, 1, 0, 2, 2, 2, 0]);
        assert_eq!(pair_receivers(&ready), [1, 1, 0, 0, 1, 1, 0]);
        assert_eq!(everyone_receivers(&ready), [5, 5, 0, 5, 5, 5, 5]);
    }
}
