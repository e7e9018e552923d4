//! [`Replica`]: what the tasks of one presence replica share — the state,
//! the log of transitions not yet known to be published, and progress.
//!
//! The applier is the only writer of the state. Transitions it computes go
//! into the log unless the emission lease says they were already published
//! (`emitted_through`); the emitter takes them out in order when this
//! replica leads, and a follower drops them once the leader reports them
//! published. So whichever replica leads next still has every transition
//! that might not have gone out.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use sb_events::presence::{EdgeHeartbeat, PresenceEvent};
use sb_telemetry::TraceLink;
use tokio::sync::watch;

use crate::metrics::Metrics;
use crate::state::{Scope, State, Transition};

/// The most transitions a replica keeps waiting for publication; beyond it
/// the oldest are dropped (only possible if no replica has led for long).
const LOG_MAX: usize = 1_000_000;
/// The most trace contexts kept for logged transitions (the oldest go
/// first: their announcements are then published outside any trace).
const TRACES_MAX: usize = 10_000;

/// The trace of each event, by stream sequence, whose transitions wait for
/// publication and which arrived inside a trace.
pub type Traces = BTreeMap<u64, TraceLink>;

/// The state plus the emission bookkeeping, under one lock.
#[derive(Debug)]
pub struct Inner {
    /// The presence state.
    pub state: State,
    /// Transitions computed but not known to be published, in stream order.
    pub log: VecDeque<Transition>,
    /// Every transition of a stream sequence up to this one was published.
    pub emitted_through: u64,
    /// The traces of the logged transitions' events, where they had one.
    pub traces: Traces,
}

/// Shared by the tasks of one replica.
#[derive(Debug)]
pub struct Replica {
    /// This replica's name (lease holder, logs).
    pub id: String,
    /// `PRESENCE_SCOPE`.
    pub scope: Scope,
    inner: RwLock<Inner>,
    applied: watch::Sender<u64>,
    leader: AtomicBool,
    ready: AtomicBool,
    /// Edge id → epoch ms of its last heartbeat seen by this replica.
    pub heartbeats: Mutex<HashMap<String, i64>>,
    /// Edges whose last heartbeat said they take deliveries on their own
    /// subject (`edge_delivery`).
    pub edge_delivery: Mutex<std::collections::HashSet<String>>,
    /// The last heartbeat of every edge (`ListEdges`, kicks).
    pub edge_directory: EdgeDirectory,
    /// Metrics.
    pub metrics: Metrics,
}

impl Replica {
    /// A replica with an empty state.
    pub fn new(id: String, scope: Scope, metrics: Metrics) -> Self {
        Self {
            id,
            scope,
            inner: RwLock::new(Inner {
                state: State::new(scope),
                log: VecDeque::new(),
                emitted_through: 0,
                traces: Traces::new(),
            }),
            applied: watch::channel(0).0,
            leader: AtomicBool::new(false),
            ready: AtomicBool::new(false),
            heartbeats: Mutex::new(HashMap::new()),
            edge_delivery: Mutex::new(std::collections::HashSet::new()),
            edge_directory: EdgeDirectory::default(),
            metrics,
        }
    }

    /// Applies the presence stream message at `seq`; `trace` is the trace it
    /// arrived in, which the announcements of its transitions continue.
    pub fn apply_message(&self, seq: u64, payload: &[u8], trace: Option<TraceLink>) {
        let mut transitions = Vec::new();
        let (totals, edges) = {
            let mut inner = self.inner.write();
            match serde_json::from_slice::<PresenceEvent>(payload) {
                Ok(event) => inner.state.apply(seq, event, &mut transitions),
                Err(error) => {
                    tracing::warn!(%error, seq, "undecodable presence event skipped");
                    inner.state.skip(seq);
                }
            }
            self.metrics.transitions_computed.inc_by(transitions.len() as u64);
            if seq > inner.emitted_through {
                if let Some(trace) = trace
                    && !transitions.is_empty()
                {
                    inner.traces.insert(seq, trace);
                    if inner.traces.len() > TRACES_MAX {
                        inner.traces.pop_first();
                    }
                }
                inner.log.extend(transitions);
                if inner.log.len() > LOG_MAX {
                    let excess = inner.log.len() - LOG_MAX;
                    inner.log.drain(..excess);
                    tracing::error!(dropped = excess, "transition log full: no replica has published for too long");
                }
            }
            (inner.state.totals(), inner.state.live_edges())
        };
        self.metrics.events_applied.inc();
        self.metrics.applied_seq.set(i64::try_from(seq).unwrap_or(i64::MAX));
        self.metrics.users.set(i64::try_from(totals.users).unwrap_or(i64::MAX));
        self.metrics.sockets.set(i64::try_from(totals.sockets).unwrap_or(i64::MAX));
        self.metrics.rooms.set(i64::try_from(totals.rooms).unwrap_or(i64::MAX));
        self.metrics.edges.set(i64::try_from(edges).unwrap_or(i64::MAX));
        self.applied.send_replace(seq);
    }

    /// Runs `read` on the state.
    pub fn read<R>(&self, read: impl FnOnce(&State) -> R) -> R {
        read(&self.inner.read().state)
    }

    /// The last stream sequence applied.
    pub fn applied_seq(&self) -> u64 {
        *self.applied.borrow()
    }

    /// Waits until stream sequence `seq` is applied; false after `timeout`.
    pub async fn wait_applied(&self, seq: u64, timeout: Duration) -> bool {
        let mut applied = self.applied.subscribe();
        tokio::time::timeout(timeout, applied.wait_for(|applied| *applied >= seq)).await.is_ok_and(|r| r.is_ok())
    }

    /// Takes every logged transition up to the applied sequence, for
    /// publication: `(through, transitions, their traces)`, or `None` when
    /// nothing was applied since the last publication.
    pub fn take_for_emission(&self) -> Option<(u64, Vec<Transition>, Traces)> {
        let mut inner = self.inner.write();
        let through = inner.state.applied_seq();
        if through <= inner.emitted_through {
            return None;
        }
        let transitions = inner.log.drain(..).collect();
        let later = inner.traces.split_off(&(through + 1));
        let traces = std::mem::replace(&mut inner.traces, later);
        Some((through, transitions, traces))
    }

    /// Returns transitions whose publication failed to the front of the log.
    pub fn put_back(&self, transitions: Vec<Transition>, traces: Traces) {
        let mut inner = self.inner.write();
        for transition in transitions.into_iter().rev() {
            inner.log.push_front(transition);
        }
        inner.traces.extend(traces);
    }

    /// Records that every transition up to `through` was published (by this
    /// replica or, for a follower, by the leader) and drops them from the log.
    pub fn set_emitted_through(&self, through: u64) {
        let mut inner = self.inner.write();
        if through <= inner.emitted_through {
            return;
        }
        inner.emitted_through = through;
        while inner.log.front().is_some_and(|transition| transition.seq <= through) {
            inner.log.pop_front();
        }
        let later = inner.traces.split_off(&(through + 1));
        inner.traces = later;
    }

    /// Every transition up to this stream sequence was published.
    pub fn emitted_through(&self) -> u64 {
        self.inner.read().emitted_through
    }

    /// Transitions waiting for publication.
    pub fn pending_transitions(&self) -> usize {
        self.inner.read().log.len()
    }

    /// Whether the replica caught up with the stream and serves.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Marks the replica caught up (or not).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    /// Whether this replica holds the emission lease.
    pub fn is_leader(&self) -> bool {
        self.leader.load(Ordering::Acquire)
    }

    /// Sets whether this replica holds the emission lease.
    pub fn set_leader(&self, leader: bool) {
        self.leader.store(leader, Ordering::Release);
        self.metrics.leader.set(i64::from(leader));
    }
}

/// An edge is live while its last heartbeat is younger than this many of its intervals.
const LIVE_INTERVALS: i64 = 3;
/// …and never less than this.
const LIVE_MIN_MS: i64 = 3_000;

/// The last heartbeat of each edge, with when this replica received it.
#[derive(Debug, Default)]
pub struct EdgeDirectory {
    edges: Mutex<HashMap<String, (i64, EdgeHeartbeat)>>,
}

impl EdgeDirectory {
    /// Records `heartbeat`, received at `at_ms`.
    pub fn heard(&self, heartbeat: EdgeHeartbeat, at_ms: i64) {
        self.edges.lock().insert(heartbeat.edge.clone(), (at_ms, heartbeat));
    }

    /// The edges heard from recently enough to be alive at `now_ms`, by id,
    /// each with when it was last heard.
    pub fn live(&self, now_ms: i64) -> Vec<(i64, EdgeHeartbeat)> {
        let mut edges = self.edges.lock();
        edges.retain(|_, (at, heartbeat)| {
            // Forget edges silent for far longer than any liveness bound.
            now_ms - *at < 10 * LIVE_MIN_MS.max(heartbeat.interval_ms as i64 * LIVE_INTERVALS)
        });
        let mut live: Vec<(i64, EdgeHeartbeat)> = edges
            .values()
            .filter(|(at, heartbeat)| {
                let bound =
                    (i64::try_from(heartbeat.interval_ms).unwrap_or(i64::MAX / 4) * LIVE_INTERVALS).max(LIVE_MIN_MS);
                now_ms - *at <= bound
            })
            .cloned()
            .collect();
        live.sort_by(|a, b| a.1.edge.cmp(&b.1.edge));
        live
    }
}
