//! Handing the emission lease on under churn (issue 15): two replicas, a
//! simulated edge connecting and disconnecting users all the time, two
//! observers. The lease holder stops cleanly, or is killed, or both replicas
//! are restarted one after the other; every observer must see each
//! transition exactly once, and the tests measure how long each transition
//! took from the edge reporting it to the observer receiving it.
//!
//! The churn never lets one user change twice within one publication window
//! (its users stay online for `population × step`, longer than any takeover
//! here): a user who comes and goes within one window is, by design, not
//! announced at all, which would read as a loss.
//!
//! The delays printed (`--nocapture`) are the figures in docs/presence.md.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use sb_events::bus::Bus;
use sb_presence::lease::LeaseRecord;
use sb_presence::replica::Replica;
use sb_tests::NatsServer;
use sb_tests::presence::{PresenceReplica, SimEdge, Watcher, replica_config, settle, user};
use tokio_util::sync::CancellationToken;

const HEARTBEAT: Duration = Duration::from_millis(500);
const WAIT: Duration = Duration::from_secs(20);
/// No auth service in these tests.
const NO_AUTH: &str = "127.0.0.1:9";
/// `PRESENCE_COALESCE_WINDOW` and `PRESENCE_LEASE_TTL` of the replicas (the defaults).
const WINDOW: Duration = Duration::from_millis(100);
const TTL: Duration = Duration::from_secs(3);
/// The bound of issue 15 for a clean stop: one window plus 500 ms.
const CLEAN_BOUND: Duration = WINDOW.saturating_add(Duration::from_millis(500));
/// The documented bound for a killed holder: the lease expires `ttl` after
/// its last write (under churn: at most a window before the kill); the
/// follower read that record within a window of it and checks again every
/// `ttl / 3` (3 s + 1 s + 2 windows), plus 100 ms for a loaded machine.
const KILL_BOUND: Duration = TTL
    .saturating_add(Duration::from_millis(TTL.as_millis() as u64 / 3))
    .saturating_add(WINDOW.saturating_mul(2))
    .saturating_add(Duration::from_millis(100));
/// One connect and one disconnect every `STEP`: 100 transitions a second.
const STEP: Duration = Duration::from_millis(20);

/// One transition the churn caused, and when.
#[derive(Debug, Clone)]
struct Caused {
    event: &'static str,
    user: String,
    at: Instant,
}

/// Connects a new user every `step` and disconnects the one connected
/// `population` steps earlier, on one simulated edge.
struct Churn {
    caused: Arc<Mutex<Vec<Caused>>>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Churn {
    /// Connects `population` users at once, waits until `watcher` has seen
    /// them (so none of them changes again within the window that announced
    /// it), then churns in the background.
    async fn start(edge: Arc<SimEdge>, population: usize, step: Duration, watcher: &Watcher) -> Self {
        let caused = Arc::new(Mutex::new(Vec::new()));
        let mut online = VecDeque::new();
        let mut next = 0;
        let mut connect = move |edge: &SimEdge, online: &mut VecDeque<String>, caused: &Mutex<Vec<Caused>>| {
            let name = format!("churn-{next:05}");
            next += 1;
            caused.lock().push(Caused { event: "user_online", user: name.clone(), at: Instant::now() });
            edge.connect(&name, &user(&name));
            online.push_back(name);
        };
        for _ in 0..population {
            connect(&edge, &mut online, &caused);
        }
        let last = online.back().cloned().expect("a population of at least one");
        watcher.wait_for("user_online", &last, WAIT).await;

        let stop = CancellationToken::new();
        let task = tokio::spawn({
            let (caused, stop) = (caused.clone(), stop.clone());
            async move {
                let mut ticker = tokio::time::interval(step);
                ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        () = stop.cancelled() => return,
                        _ = ticker.tick() => {}
                    }
                    connect(&edge, &mut online, &caused);
                    if let Some(gone) = online.pop_front() {
                        caused.lock().push(Caused { event: "user_offline", user: gone.clone(), at: Instant::now() });
                        edge.disconnect(&gone);
                    }
                }
            }
        });
        Self { caused, stop, task }
    }

    /// Waits until the churn has taken `steps` more steps.
    async fn wait_steps(&self, steps: usize) {
        let target = self.caused.lock().len() + 2 * steps;
        sb_tests::wait_until("churn steps", WAIT, || async { (self.caused.lock().len() >= target).then_some(()) })
            .await;
    }

    /// Stops churning; returns every transition caused, in order.
    async fn finish(self) -> Vec<Caused> {
        self.stop.cancel();
        let _ = self.task.await;
        self.caused.lock().clone()
    }
}

/// What one observer saw of the churn.
struct Observed {
    /// Transitions caused but never seen.
    lost: Vec<(String, String)>,
    /// Transitions seen more than once, with the numbers of the messages that carried them.
    repeated: Vec<(String, String, Vec<u64>)>,
    /// Transitions seen that nobody caused.
    invented: Vec<(String, String)>,
    /// Per caused transition (same order): how long until it was first seen.
    delays: Vec<Option<Duration>>,
}

fn observe(caused: &[Caused], watcher: &Watcher) -> Observed {
    let mut arrivals: HashMap<(String, String), Vec<(Instant, u64)>> = HashMap::new();
    for arrival in watcher.arrivals() {
        if arrival.seen.user.starts_with("churn-") {
            arrivals.entry((arrival.seen.event, arrival.seen.user)).or_default().push((arrival.at, arrival.message));
        }
    }
    let mut observed = Observed { lost: Vec::new(), repeated: Vec::new(), invented: Vec::new(), delays: Vec::new() };
    for transition in caused {
        let key = (transition.event.to_owned(), transition.user.clone());
        match arrivals.remove(&key) {
            None => {
                observed.lost.push(key);
                observed.delays.push(None);
            }
            Some(seen) => {
                observed.delays.push(Some(seen[0].0.saturating_duration_since(transition.at)));
                if seen.len() > 1 {
                    observed.repeated.push((key.0, key.1, seen.iter().map(|(_, message)| *message).collect()));
                }
            }
        }
    }
    observed.invented = arrivals.into_keys().collect();
    observed
}

/// The delays of the transitions caused in a span of time.
struct DelayFigures {
    count: usize,
    max: Duration,
    p99: Duration,
    p50: Duration,
}

impl DelayFigures {
    /// Of the transitions caused in `[from, to)` that were seen.
    fn of(caused: &[Caused], delays: &[Option<Duration>], from: Instant, to: Instant) -> Self {
        let mut within: Vec<Duration> = caused
            .iter()
            .zip(delays)
            .filter(|(transition, _)| transition.at >= from && transition.at < to)
            .filter_map(|(_, delay)| *delay)
            .collect();
        within.sort();
        let at = |q: f64| within.get(((within.len().max(1) - 1) as f64 * q).round() as usize).copied();
        Self {
            count: within.len(),
            max: at(1.0).unwrap_or_default(),
            p99: at(0.99).unwrap_or_default(),
            p50: at(0.5).unwrap_or_default(),
        }
    }
}

impl std::fmt::Display for DelayFigures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} transitions, delay max {} p99 {} p50 {}", self.count, ms(self.max), ms(self.p99), ms(self.p50))
    }
}

fn ms(duration: Duration) -> String {
    format!("{:.0} ms", duration.as_secs_f64() * 1000.0)
}

/// Waits (up to `WAIT`) until every caused transition reached every
/// watcher, then puts a barrier through: a late duplicate would arrive
/// before it. What is still missing then is left to the assertions to name.
async fn wait_delivered(caused: &[Caused], watchers: &[&Watcher], edge: &SimEdge, barrier: &str) {
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline && watchers.iter().any(|watcher| !observe(caused, watcher).lost.is_empty()) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    watchers[0].barrier(edge, barrier).await;
    for watcher in &watchers[1..] {
        watcher.wait_for("user_online", barrier, WAIT).await;
    }
}

/// Records how long after `from` `replica` first leads.
fn time_until_leading(replica: Arc<Replica>, from: Instant) -> tokio::task::JoinHandle<Option<Duration>> {
    tokio::spawn(async move {
        let deadline = from + WAIT;
        while Instant::now() < deadline {
            if replica.is_leader() {
                return Some(from.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        None
    })
}

/// Every lease record written, with when it arrived, on a core subscription
/// to the lease subject (as the replicas watch it).
struct LeaseRecords {
    records: Arc<Mutex<Vec<(Instant, LeaseRecord)>>>,
    _task: tokio::task::JoinHandle<()>,
}

impl LeaseRecords {
    async fn start(bus: &Bus) -> Self {
        use futures_util::StreamExt as _;
        let mut subscriber = bus.client.subscribe(bus.subjects.presence_lease()).await.expect("watch the lease");
        sb_tests::round_trip(&bus.client).await.expect("round trip");
        let records = Arc::new(Mutex::new(Vec::new()));
        let task = tokio::spawn({
            let records = records.clone();
            async move {
                while let Some(message) = subscriber.next().await {
                    if let Ok(record) = serde_json::from_slice::<LeaseRecord>(&message.payload) {
                        records.lock().push((Instant::now(), record));
                    }
                }
            }
        });
        Self { records, _task: task }
    }

    /// When the last record of `holder` arrived before `before`.
    fn last_of(&self, holder: &str, before: Instant) -> Option<Instant> {
        self.records
            .lock()
            .iter()
            .rev()
            .find(|(at, record)| record.holder == holder && *at <= before)
            .map(|(at, _)| *at)
    }

    /// When the first record of `holder` arrived after `after`.
    fn first_of(&self, holder: &str, after: Instant) -> Option<Instant> {
        self.records.lock().iter().find(|(at, record)| record.holder == holder && *at >= after).map(|(at, _)| *at)
    }
}

/// The replicas' settings; the bounds above are computed from these two.
fn config(nats: &NatsServer) -> sb_presence::Config {
    let config = replica_config(nats.url(), NO_AUTH);
    assert_eq!((config.coalesce_window, config.lease_ttl), (WINDOW, TTL), "the bounds assume these settings");
    config
}

async fn replica(nats: &NatsServer) -> PresenceReplica {
    PresenceReplica::start(config(nats)).await.expect("start presence replica")
}

/// A replica named `id` (`PRESENCE_REPLICA_ID`, as a StatefulSet pod is).
async fn named_replica(nats: &NatsServer, id: &str) -> PresenceReplica {
    let mut config = config(nats);
    config.replica_id = Some(id.to_owned());
    PresenceReplica::start(config).await.expect("start presence replica")
}

/// Splits two replicas into (the lease holder, the other).
async fn holder_first(first: PresenceReplica, second: PresenceReplica) -> (PresenceReplica, PresenceReplica) {
    let first_leads = sb_tests::wait_until("one replica leads", WAIT, || async {
        match (first.replica.is_leader(), second.replica.is_leader()) {
            (true, false) => Some(true),
            (false, true) => Some(false),
            _ => None,
        }
    })
    .await;
    if first_leads { (first, second) } else { (second, first) }
}

async fn watchers(nats: &NatsServer) -> [Watcher; 2] {
    [Watcher::start(nats.url(), &[]).await.expect("watcher"), Watcher::start(nats.url(), &[]).await.expect("watcher")]
}

/// The first few of `items`, and how many there are.
fn some_of<T: std::fmt::Debug>(items: &[T]) -> String {
    format!("{} (first: {:?})", items.len(), &items[..items.len().min(5)])
}

/// Asserts that the observer saw every transition the churn caused exactly
/// once, and nothing else.
fn assert_exactly_once(index: usize, observed: &Observed) {
    assert!(observed.lost.is_empty(), "observer {index} never saw {}", some_of(&observed.lost));
    assert!(observed.repeated.is_empty(), "observer {index} saw twice {}", some_of(&observed.repeated));
    assert!(observed.invented.is_empty(), "observer {index} saw uncaused {}", some_of(&observed.invented));
}

/// As [`assert_exactly_once`], but for the one repetition the design allows
/// after a kill: the holder died after publishing a window and before
/// recording it, so the next holder publishes that window again. Then every
/// repeated transition came first in one and the same message, and twice.
fn assert_once_but_for_one_republished_window(index: usize, observed: &Observed) {
    assert!(observed.lost.is_empty(), "observer {index} never saw {}", some_of(&observed.lost));
    assert!(observed.invented.is_empty(), "observer {index} saw uncaused {}", some_of(&observed.invented));
    let first_copies: std::collections::BTreeSet<u64> =
        observed.repeated.iter().map(|(_, _, messages)| messages[0]).collect();
    assert!(
        first_copies.len() <= 1 && observed.repeated.iter().all(|(_, _, messages)| messages.len() == 2),
        "observer {index} saw repeated transitions beyond one republished window: {}",
        some_of(&observed.repeated)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_stop_of_the_holder_hands_the_lease_on_at_once_exactly_once() {
    let nats = NatsServer::start().await.expect("nats");
    let bus = Bus::connect(&sb_config::NatsArgs::for_url(nats.url()), "test-observer").await.expect("observer bus");
    let (first, second) = (replica(&nats).await, replica(&nats).await);
    let watchers = watchers(&nats).await;
    let edge = Arc::new(SimEdge::start(nats.url(), "edge-churn", HEARTBEAT).await.expect("edge"));
    // Users stay online for 100 steps (2 s).
    let churn = Churn::start(edge.clone(), 100, STEP, &watchers[0]).await;
    let (holder, survivor) = holder_first(first, second).await;
    churn.wait_steps(50).await;

    let stop_at = Instant::now();
    let leads = time_until_leading(survivor.replica.clone(), stop_at);
    holder.stop().await;
    let stopped_in = stop_at.elapsed();
    let took_over = leads.await.expect("poller").expect("the other replica took the lease");
    churn.wait_steps(50).await;
    let caused = churn.finish().await;
    wait_delivered(&caused, &[&watchers[0], &watchers[1]], &edge, "barrier").await;
    settle(&bus, &[&survivor]).await;

    let end = Instant::now();
    for (index, watcher) in watchers.iter().enumerate() {
        let observed = observe(&caused, watcher);
        let before = DelayFigures::of(&caused, &observed.delays, caused[0].at, stop_at);
        let after = DelayFigures::of(&caused, &observed.delays, stop_at, end);
        eprintln!(
            "clean stop, observer {index}: the stop took {}, the other replica led {} after it began; caused after \
             the stop: {after}; before: {before}; {} lost, {} repeated",
            ms(stopped_in),
            ms(took_over),
            observed.lost.len(),
            observed.repeated.len(),
        );
        // Issue 15's bound: a clean stop costs the announcements at most one
        // window plus 500 ms (without the release: the lease ttl, 3 s).
        assert!(
            after.max <= CLEAN_BOUND,
            "a transition after the clean stop took {:?} (bound {CLEAN_BOUND:?})",
            after.max
        );
        assert_exactly_once(index, &observed);
    }
    assert!(took_over <= CLEAN_BOUND, "the other replica led {took_over:?} after the stop began");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_holder_is_taken_over_within_the_ttl_and_nothing_is_lost() {
    let nats = NatsServer::start().await.expect("nats");
    let bus = Bus::connect(&sb_config::NatsArgs::for_url(nats.url()), "test-observer").await.expect("observer bus");
    let (first, second) = (replica(&nats).await, replica(&nats).await);
    let watchers = watchers(&nats).await;
    let edge = Arc::new(SimEdge::start(nats.url(), "edge-churn", HEARTBEAT).await.expect("edge"));
    // Users stay online for 400 steps (8 s): the first window after a kill
    // spans the whole takeover, and nobody may come and go within it.
    let churn = Churn::start(edge.clone(), 400, STEP, &watchers[0]).await;
    let (holder, survivor) = holder_first(first, second).await;
    churn.wait_steps(50).await;

    let kill_at = Instant::now();
    let leads = time_until_leading(survivor.replica.clone(), kill_at);
    holder.crash();
    let took_over = leads.await.expect("poller").expect("the other replica took the lease");
    churn.wait_steps(50).await;
    let caused = churn.finish().await;
    wait_delivered(&caused, &[&watchers[0], &watchers[1]], &edge, "barrier").await;
    settle(&bus, &[&survivor]).await;

    let end = Instant::now();
    for (index, watcher) in watchers.iter().enumerate() {
        let observed = observe(&caused, watcher);
        let after = DelayFigures::of(&caused, &observed.delays, kill_at, end);
        eprintln!(
            "kill -9, observer {index}: the other replica led {} after the kill; caused after the kill: {after}; \
             {} lost, {} repeated",
            ms(took_over),
            observed.lost.len(),
            observed.repeated.len(),
        );
        assert!(after.max <= KILL_BOUND, "a transition after the kill took {:?} (bound {KILL_BOUND:?})", after.max);
        assert_once_but_for_one_republished_window(index, &observed);
    }
    // The holder wrote the record at most ttl/3 before the kill, so the lease
    // cannot have expired sooner than 2/3 ttl after it.
    assert!(took_over >= TTL - TTL / 3, "the lease was taken over {took_over:?} after the kill, before it expired");
    assert!(took_over <= KILL_BOUND, "the lease was taken over {took_over:?} after the kill (bound {KILL_BOUND:?})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_restart_under_churn_loses_nothing_repeats_nothing_and_delays_nothing() {
    let nats = NatsServer::start().await.expect("nats");
    let bus = Bus::connect(&sb_config::NatsArgs::for_url(nats.url()), "test-observer").await.expect("observer bus");
    let (a, b) = (replica(&nats).await, replica(&nats).await);
    let watchers = watchers(&nats).await;
    let edge = Arc::new(SimEdge::start(nats.url(), "edge-churn", HEARTBEAT).await.expect("edge"));
    // Users stay online for 100 steps (2 s).
    let churn = Churn::start(edge.clone(), 100, STEP, &watchers[0]).await;
    churn.wait_steps(50).await;

    let started = Instant::now();
    let mut steps = Vec::new();
    let mut holders_stopped = 0;
    let mut holding = |replica: &PresenceReplica| {
        if replica.replica.is_leader() {
            holders_stopped += 1;
            "holder"
        } else {
            "follower"
        }
    };
    let step_at = Instant::now();
    let role = holding(&a);
    a.stop().await;
    steps.push(format!("stop A ({role}) {}", ms(step_at.elapsed())));
    churn.wait_steps(25).await;
    let step_at = Instant::now();
    let a2 = replica(&nats).await;
    steps.push(format!("start A' {}", ms(step_at.elapsed())));
    churn.wait_steps(25).await;
    let step_at = Instant::now();
    let role = holding(&b);
    b.stop().await;
    steps.push(format!("stop B ({role}) {}", ms(step_at.elapsed())));
    churn.wait_steps(25).await;
    let step_at = Instant::now();
    let b2 = replica(&nats).await;
    steps.push(format!("start B' {}", ms(step_at.elapsed())));
    // B took over from A, or held already: at least one stop was the holder's.
    assert!(holders_stopped >= 1, "neither stop was of the lease holder: {steps:?}");
    churn.wait_steps(50).await;
    let caused = churn.finish().await;
    wait_delivered(&caused, &[&watchers[0], &watchers[1]], &edge, "barrier").await;
    settle(&bus, &[&a2, &b2]).await;

    let end = Instant::now();
    for (index, watcher) in watchers.iter().enumerate() {
        let observed = observe(&caused, watcher);
        let during = DelayFigures::of(&caused, &observed.delays, started, end);
        eprintln!(
            "rolling restart, observer {index}: {}; caused during the restart: {during}; {} lost, {} repeated",
            steps.join(", "),
            observed.lost.len(),
            observed.repeated.len(),
        );
        assert!(
            during.max <= CLEAN_BOUND,
            "a transition during the rolling restart took {:?} (bound {CLEAN_BOUND:?})",
            during.max
        );
        assert_exactly_once(index, &observed);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_idle_holder_is_taken_over_one_ttl_after_its_last_write() {
    let nats = NatsServer::start().await.expect("nats");
    let bus = Bus::connect(&sb_config::NatsArgs::for_url(nats.url()), "test-observer").await.expect("observer bus");
    let (first, second) = (replica(&nats).await, replica(&nats).await);
    let watcher = Watcher::start(nats.url(), &[]).await.expect("watcher");
    let edge = SimEdge::start(nats.url(), "edge-a", HEARTBEAT).await.expect("edge");
    let records = LeaseRecords::start(&bus).await;
    edge.connect("s1", &user("alice"));
    watcher.wait_for("user_online", "alice", WAIT).await;
    let (holder, survivor) = holder_first(first, second).await;
    let (holder_id, survivor_id) = (holder.replica.id.clone(), survivor.replica.id.clone());
    // Idle now: the holder only renews, every ttl/3; kill it between renewals.
    sb_tests::wait_until("a renewal after the last transition", WAIT, || async {
        records.last_of(&holder_id, Instant::now()).filter(|at| at.elapsed() >= Duration::from_millis(300)).map(|_| ())
    })
    .await;

    let kill_at = Instant::now();
    holder.crash();
    let last_write = records.last_of(&holder_id, kill_at).expect("the holder wrote the record");
    let taken = sb_tests::wait_until("the survivor writes the lease", WAIT, || async {
        records.first_of(&survivor_id, kill_at)
    })
    .await;
    edge.connect("s2", &user("bob"));
    watcher.wait_for("user_online", "bob", WAIT).await;
    settle(&bus, &[&survivor]).await;

    let after_write = taken.saturating_duration_since(last_write);
    eprintln!(
        "kill -9 of an idle holder: taken over {} after the kill, {} after the holder's last write",
        ms(taken.saturating_duration_since(kill_at)),
        ms(after_write)
    );
    // The follower counts ttl from when it read the record, which is after
    // it was written (and after this test saw it, but for a little jitter):
    // never sooner. It then looks every ttl/3, and needs a window to notice.
    assert!(after_write >= TTL - Duration::from_millis(50), "taken over {after_write:?} after the last write");
    assert!(after_write <= KILL_BOUND, "taken over {after_write:?} after the last write");
    assert_eq!(watcher.count("user_online", "alice"), 1);
    assert_eq!(watcher.count("user_online", "bob"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_holder_restarted_under_its_own_id_takes_the_lease_back_at_once() {
    let nats = NatsServer::start().await.expect("nats");
    let bus = Bus::connect(&sb_config::NatsArgs::for_url(nats.url()), "test-observer").await.expect("observer bus");
    let (first, second) = (named_replica(&nats, "presence-0").await, named_replica(&nats, "presence-1").await);
    let watchers = watchers(&nats).await;
    let edge = Arc::new(SimEdge::start(nats.url(), "edge-churn", HEARTBEAT).await.expect("edge"));
    // Users stay online for 400 steps (8 s), as in the kill test.
    let churn = Churn::start(edge.clone(), 400, STEP, &watchers[0]).await;
    let (holder, other) = holder_first(first, second).await;
    let holder_id = holder.replica.id.clone();
    churn.wait_steps(50).await;

    let kill_at = Instant::now();
    holder.crash();
    let restarted = named_replica(&nats, &holder_id).await;
    let started_in = kill_at.elapsed();
    let leads = time_until_leading(restarted.replica.clone(), kill_at);
    let took_over = leads.await.expect("poller").expect("the restarted replica took its lease back");
    churn.wait_steps(50).await;
    let caused = churn.finish().await;
    wait_delivered(&caused, &[&watchers[0], &watchers[1]], &edge, "barrier").await;
    settle(&bus, &[&restarted, &other]).await;
    assert!(restarted.replica.is_leader() && !other.replica.is_leader(), "the restarted replica holds the lease");

    let end = Instant::now();
    for (index, watcher) in watchers.iter().enumerate() {
        let observed = observe(&caused, watcher);
        let after = DelayFigures::of(&caused, &observed.delays, kill_at, end);
        eprintln!(
            "kill -9 and restart as {holder_id}, observer {index}: caught up {} after the kill, led {} after it; \
             caused after the kill: {after}; {} lost, {} repeated",
            ms(started_in),
            ms(took_over),
            observed.lost.len(),
            observed.repeated.len(),
        );
        // Not the ttl: as soon as it caught up, plus a window.
        let bound = started_in + CLEAN_BOUND;
        assert!(after.max <= bound, "a transition after the kill took {:?} (bound {bound:?})", after.max);
        assert_once_but_for_one_republished_window(index, &observed);
    }
    assert!(took_over <= started_in + CLEAN_BOUND, "led {took_over:?} after the kill, caught up after {started_in:?}");
}
