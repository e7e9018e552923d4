//! Presence connect-storm benchmark (not a test): a private nats-server,
//! presence replicas in-process, and simulated edges running the real
//! edge-side reporter. Measures what presence does with `--users` first
//! connects arriving at `--rate` per second, then a reconnect storm (every
//! user disconnects and connects again at once), with `PRESENCE_SCOPE=all`.
//!
//! ```sh
//! cargo run --release -p sb-tests --bin presence_storm -- --users 10000 --rate 10000
//! ```
//! Prints a human summary and one JSON line.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures_util::StreamExt as _;
use parking_lot::Mutex;
use sb_events::bus::Bus;
use sb_events::client::UserPresence;
use sb_events::deliver::DeliveryBatch;
use sb_tests::NatsServer;
use sb_tests::presence::{PresenceReplica, SimEdge, replica_config, user};

struct Args {
    users: usize,
    rate: usize,
    edges: usize,
    replicas: usize,
    window_ms: u64,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args { users: 10_000, rate: 10_000, edges: 4, replicas: 2, window_ms: 100 };
    let mut iter = std::env::args().skip(1);
    while let Some(flag) = iter.next() {
        let value: u64 = iter.next().with_context(|| format!("{flag} needs a value"))?.parse()?;
        match flag.as_str() {
            "--users" => args.users = value as usize,
            "--rate" => args.rate = value as usize,
            "--edges" => args.edges = value as usize,
            "--replicas" => args.replicas = value as usize,
            "--window-ms" => args.window_ms = value,
            other => anyhow::bail!("unknown flag {other}; use --users --rate --edges --replicas --window-ms"),
        }
    }
    Ok(args)
}

/// What the counting subscriber saw on `deliver.presence`.
#[derive(Default)]
struct Seen {
    messages: u64,
    online: HashMap<String, (Instant, u32)>,
    offline: HashMap<String, u32>,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let nats = NatsServer::start().await?;
    let mut replicas = Vec::new();
    for _ in 0..args.replicas {
        let mut config = replica_config(nats.url(), "127.0.0.1:9");
        config.coalesce_window = Duration::from_millis(args.window_ms);
        replicas.push(PresenceReplica::start(config).await?);
    }

    let observer = Bus::connect(&sb_config::NatsArgs::for_url(nats.url()), "storm-observer").await?;
    let seen = Arc::new(Mutex::new(Seen::default()));
    let mut subscription = observer.client.subscribe(observer.subjects.deliver_presence()).await?;
    sb_tests::round_trip(&observer.client).await?;
    tokio::spawn({
        let seen = seen.clone();
        async move {
            while let Some(message) = subscription.next().await {
                let Ok(batch) = serde_json::from_slice::<DeliveryBatch>(&message.payload) else { continue };
                let now = Instant::now();
                let mut seen = seen.lock();
                seen.messages += 1;
                for delivery in batch.deliveries {
                    let Ok(presence) = serde_json::from_str::<UserPresence>(delivery.data.get()) else { continue };
                    if delivery.event == "user_online" {
                        seen.online.entry(presence.user.id).or_insert((now, 0)).1 += 1;
                    } else {
                        *seen.offline.entry(presence.user.id).or_insert(0) += 1;
                    }
                }
            }
        }
    });

    let mut edges = Vec::new();
    for e in 0..args.edges {
        edges.push(SimEdge::start(nats.url(), &format!("storm-edge-{e}"), Duration::from_secs(2)).await?);
    }

    // Phase 1: first connects at `rate`.
    let started = Instant::now();
    let mut connected_at = Vec::with_capacity(args.users);
    let mut slowest_call = Duration::ZERO;
    let per_tick = (args.rate / 100).max(1);
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    for chunk in (0..args.users).collect::<Vec<_>>().chunks(per_tick) {
        tick.tick().await;
        for &i in chunk {
            let call = Instant::now();
            edges[i % args.edges].connect(&format!("s{i}"), &user(&format!("u{i:06}")));
            slowest_call = slowest_call.max(call.elapsed());
            connected_at.push(call);
        }
    }
    let offered = started.elapsed();
    let expected_seq = (args.users / args.edges) as u64 + 1;
    while edges.iter().any(|edge| edge.reporter.last_stored_seq() < expected_seq) {
        tokio::time::sleep(Duration::from_millis(5)).await;
        anyhow::ensure!(started.elapsed() < Duration::from_secs(300), "edges did not store their events");
    }
    let stored = started.elapsed();
    loop {
        if seen.lock().online.len() >= args.users {
            break;
        }
        anyhow::ensure!(started.elapsed() < Duration::from_secs(300), "not every user_online arrived");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let announced = started.elapsed();
    let (latencies, duplicates, messages_phase1) = {
        let seen = seen.lock();
        let mut latencies: Vec<Duration> = (0..args.users)
            .filter_map(|i| seen.online.get(&format!("u{i:06}")).map(|(at, _)| at.duration_since(connected_at[i])))
            .collect();
        latencies.sort();
        let duplicates = seen.online.values().filter(|(_, n)| *n > 1).count();
        (latencies, duplicates, seen.messages)
    };

    // Phase 2: every user reconnects at once (an edge's sockets come back
    // after a network blip): disconnect then connect, as fast as possible.
    let reconnect_start = Instant::now();
    for i in 0..args.users {
        let edge = &edges[i % args.edges];
        edge.disconnect(&format!("s{i}"));
        edge.connect(&format!("r{i}"), &user(&format!("u{i:06}")));
    }
    let expected_seq = expected_seq + 2 * (args.users / args.edges) as u64;
    while edges.iter().any(|edge| edge.reporter.last_stored_seq() < expected_seq) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let reconnect_stored = reconnect_start.elapsed();
    // Let every replica apply and the leader publish.
    let stream_last = loop {
        let stream = observer.jetstream.get_stream(observer.subjects.presence_stream()).await?;
        let last = stream.cached_info().state.last_sequence;
        let leader = replicas.iter().find(|r| r.replica.is_leader());
        if leader.is_some_and(|r| r.replica.emitted_through() >= last)
            && replicas.iter().all(|r| r.replica.applied_seq() >= last)
        {
            break last;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let reconnect_settled = reconnect_start.elapsed();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (offline_seen, online_again, messages_total) = {
        let seen = seen.lock();
        let offline: u32 = seen.offline.values().sum();
        let online_twice = seen.online.values().filter(|(_, n)| *n > 1).count();
        (offline, online_twice, seen.messages)
    };
    let leader = replicas.iter().find(|r| r.replica.is_leader()).context("a leader")?;
    let metrics = &leader.replica.metrics;
    let coalesced = metrics.transitions_coalesced.get();
    let delivery_messages = metrics.delivery_messages.get();

    let p50 = percentile(&latencies, 0.5);
    let p99 = percentile(&latencies, 0.99);
    let max = latencies.last().copied().unwrap_or_default();
    println!(
        "presence storm: {} users on {} edges, {} replicas, window {} ms",
        args.users, args.edges, args.replicas, args.window_ms
    );
    println!("  phase 1 (first connects offered at {}/s):", args.rate);
    println!(
        "    offered in {offered:.2?} (slowest reporter call {slowest_call:.2?}); all events stored after {stored:.2?}"
    );
    println!(
        "    every user_online delivered after {announced:.2?}; connect → user_online p50 {p50:.1?}, p99 {p99:.1?}, max {max:.1?}"
    );
    println!(
        "    {messages_phase1} NATS messages on deliver.presence for {} user_online ({duplicates} duplicates)",
        args.users
    );
    println!("  phase 2 (all {} users disconnect and reconnect at once):", args.users);
    println!(
        "    {} events stored after {reconnect_stored:.2?}; applied and published after {reconnect_settled:.2?}",
        2 * args.users
    );
    println!(
        "    user_offline delivered: {offline_seen}; users announced online twice: {online_again}; transitions coalesced away: {coalesced}"
    );
    println!(
        "  presence stream messages: {stream_last}; NATS messages published by presence in all: {delivery_messages} (deliver.presence seen: {messages_total})"
    );
    println!(
        "{}",
        serde_json::json!({
            "users": args.users, "edges": args.edges, "replicas": args.replicas, "rate": args.rate, "window_ms": args.window_ms,
            "offered_s": offered.as_secs_f64(), "stored_s": stored.as_secs_f64(), "announced_s": announced.as_secs_f64(),
            "online_latency_ms": {"p50": p50.as_secs_f64() * 1e3, "p99": p99.as_secs_f64() * 1e3, "max": max.as_secs_f64() * 1e3},
            "slowest_reporter_call_us": slowest_call.as_secs_f64() * 1e6,
            "phase1_presence_messages": messages_phase1, "duplicates": duplicates,
            "reconnect_stored_s": reconnect_stored.as_secs_f64(), "reconnect_settled_s": reconnect_settled.as_secs_f64(),
            "reconnect_offline_seen": offline_seen, "reconnect_online_again": online_again, "coalesced": coalesced,
            "stream_messages": stream_last, "presence_messages_total": delivery_messages,
        })
    );

    // Phase 3: a new replica rebuilds the state from the whole stream.
    let rebuild_start = Instant::now();
    let fresh = PresenceReplica::start(replica_config(nats.url(), "127.0.0.1:9")).await?;
    let rebuilt = rebuild_start.elapsed();
    let same = fresh.replica.read(|state| state.totals()) == leader.replica.read(|state| state.totals());
    println!(
        "  phase 3: a new replica replayed {stream_last} stream messages and was ready after {rebuilt:.2?} (same totals: {same})"
    );

    // Phase 4: an edge with the default 2 s heartbeat is killed; how long until user_offline?
    let doomed =
        SimEdge::start_crashable(nats.url(), "storm-doomed", sb_events::presence::DEFAULT_HEARTBEAT_INTERVAL).await?;
    doomed.connect("d1", &user("doomed-user"));
    while !seen.lock().online.contains_key("doomed-user") {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let killed = Instant::now();
    doomed.crash();
    while !seen.lock().offline.contains_key("doomed-user") {
        anyhow::ensure!(killed.elapsed() < Duration::from_secs(30), "no user_offline after the edge died");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let kill_to_offline = killed.elapsed();
    println!("  phase 4: edge killed (2 s heartbeat) → user_offline delivered after {kill_to_offline:.2?}");
    println!(
        "{}",
        serde_json::json!({"rebuild_messages": stream_last, "rebuild_s": rebuilt.as_secs_f64(), "rebuild_same_totals": same,
            "kill_to_offline_s": kill_to_offline.as_secs_f64()})
    );
    fresh.stop().await;
    for replica in replicas {
        replica.stop().await;
    }
    Ok(())
}
