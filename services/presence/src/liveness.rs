//! Liveness and anti-entropy, run by every replica.
//!
//! - Heartbeats (`<p>.presence.hb.*`): an edge whose current incarnation
//!   sent none for three of its intervals (clamped to
//!   `PRESENCE_EDGE_TIMEOUT_MIN..=MAX`) is declared dead: this replica
//!   publishes `EdgeDown{incarnation}` into the presence stream with
//!   `Nats-Msg-Id` = `down:<edge>:<incarnation>`, so replicas racing to do
//!   it store one, and every replica removes the sessions at the same
//!   stream position. While this replica is cut off from NATS it declares
//!   nobody dead, and it restarts every clock when it reconnects.
//! - Anti-entropy: a heartbeat whose `last_seq` equals what the state has
//!   applied for that incarnation but whose socket count differs, an edge
//!   whose history the state lacks (seen mid-history, a gap that does not
//!   fill, an unknown incarnation that heart-beats, an edge declared dead
//!   that is alive) gets a `Snapshot` request. The leader also asks every
//!   live edge for a snapshot when the stream's copy of its history is
//!   older than a third of the stream's max age, so a replay of what the
//!   stream keeps always rebuilds the whole state.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use sb_events::EdgeId;
use sb_events::bus::Bus;
use sb_events::control::{EdgeCommand, EdgeCommandDone};
use sb_events::presence::{
    DEFAULT_HEARTBEAT_INTERVAL, EdgeHeartbeat, PresenceEvent, PresenceEventKind, edge_down_msg_id,
};
use sb_events::timestamp::now_ms;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::replica::Replica;

/// How often the deadlines are checked.
const TICK: Duration = Duration::from_millis(250);
/// The least time between two snapshot requests to one edge.
const SNAPSHOT_RETRY: Duration = Duration::from_secs(10);
/// How long the state may stay behind an edge's heartbeat without progress
/// before the edge is asked for a snapshot.
const BEHIND_LIMIT: Duration = Duration::from_secs(5);
/// The least time between two `EdgeDown` publications for one incarnation.
const DOWN_RETRY: Duration = Duration::from_secs(5);

/// Settings of the liveness task.
#[derive(Debug, Clone)]
pub struct LivenessSettings {
    /// Never declare an edge dead sooner than this after its last heartbeat.
    pub timeout_min: Duration,
    /// Never later than this.
    pub timeout_max: Duration,
    /// The presence stream's max age.
    pub stream_max_age: Duration,
}

struct Seen {
    at: Instant,
    heartbeat: EdgeHeartbeat,
}

struct Liveness {
    bus: Bus,
    tracker: TaskTracker,
    replica: Arc<Replica>,
    settings: LivenessSettings,
    seen: HashMap<String, Seen>,
    /// Deadline base for incarnations never heard from by this replica.
    watching_since: Instant,
    connected: bool,
    down_published: HashMap<(String, String), Instant>,
    snapshot_requested: HashMap<String, Instant>,
    /// Edge → (since when behind, state seq then).
    behind: HashMap<String, (Instant, u64)>,
}

/// Watches heartbeats until `cancel`; snapshot requests run on `tracker`.
pub async fn run_liveness(
    bus: Bus,
    replica: Arc<Replica>,
    settings: LivenessSettings,
    tracker: TaskTracker,
    cancel: CancellationToken,
) -> Result<(), async_nats::SubscribeError> {
    let mut heartbeats = bus.client.subscribe(bus.subjects.presence_heartbeat_all()).await?;
    let mut liveness = Liveness {
        bus,
        tracker,
        replica,
        settings,
        seen: HashMap::new(),
        watching_since: Instant::now(),
        connected: true,
        down_published: HashMap::new(),
        snapshot_requested: HashMap::new(),
        behind: HashMap::new(),
    };
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = cancel.cancelled() => return Ok(()),
            message = heartbeats.next() => match message {
                Some(message) => match serde_json::from_slice::<EdgeHeartbeat>(&message.payload) {
                    Ok(heartbeat) => liveness.on_heartbeat(heartbeat),
                    Err(error) => tracing::debug!(%error, subject = %message.subject, "undecodable heartbeat"),
                },
                None => return Ok(()),
            },
            _ = ticker.tick() => liveness.check().await,
        }
    }
}

impl Liveness {
    fn on_heartbeat(&mut self, heartbeat: EdgeHeartbeat) {
        let now = Instant::now();
        self.replica.heartbeats.lock().insert(heartbeat.edge.clone(), now_ms());
        self.replica.edge_directory.heard(heartbeat.clone(), now_ms());
        {
            let mut direct = self.replica.edge_delivery.lock();
            if heartbeat.edge_delivery {
                direct.insert(heartbeat.edge.clone());
            } else {
                direct.remove(&heartbeat.edge);
            }
        }
        let edge = heartbeat.edge.clone();
        let view = self.replica.read(|state| state.edge(&edge));
        let reason = match &view {
            Some(view) if view.incarnation == heartbeat.incarnation => {
                if view.down {
                    Some("edge declared dead is alive")
                } else if !view.synced {
                    Some("state lacks the edge's history")
                } else if view.last_seq >= heartbeat.last_seq {
                    self.behind.remove(&edge);
                    (view.last_seq == heartbeat.last_seq && view.sockets != heartbeat.sockets)
                        .then_some("socket count differs")
                } else {
                    self.behind_without_progress(&edge, view.last_seq, now).then_some("events missing")
                }
            }
            Some(view) if heartbeat.incarnation < view.incarnation => None,
            _ => (heartbeat.last_seq > 0 && self.behind_without_progress(&edge, 0, now))
                .then_some("incarnation unknown to the state"),
        };
        self.seen.insert(edge.clone(), Seen { at: now, heartbeat });
        if let Some(reason) = reason {
            self.request_snapshot(&edge, reason);
        }
    }

    /// Whether the state has been behind this edge for `BEHIND_LIMIT`
    /// without applying anything of it.
    fn behind_without_progress(&mut self, edge: &str, state_seq: u64, now: Instant) -> bool {
        let entry = self.behind.entry(edge.to_owned()).or_insert((now, state_seq));
        if entry.1 != state_seq {
            *entry = (now, state_seq);
        }
        now.duration_since(entry.0) >= BEHIND_LIMIT
    }

    async fn check(&mut self) {
        let now = Instant::now();
        let connected = self.bus.client.connection_state() == async_nats::connection::State::Connected;
        if !connected || !self.connected {
            // Heartbeats could not reach us: start every clock again.
            self.watching_since = now;
            for seen in self.seen.values_mut() {
                seen.at = now;
            }
            self.connected = connected;
            return;
        }
        let edges = self.replica.read(|state| state.edges());
        for view in edges.iter().filter(|view| !view.down) {
            let (since, interval_ms) = match self.seen.get(&view.edge) {
                Some(seen) if seen.heartbeat.incarnation == view.incarnation => (seen.at, seen.heartbeat.interval_ms),
                _ => (self.watching_since, duration_ms(DEFAULT_HEARTBEAT_INTERVAL)),
            };
            let timeout = Duration::from_millis(interval_ms.saturating_mul(3))
                .clamp(self.settings.timeout_min, self.settings.timeout_max);
            if now.duration_since(since) > timeout {
                self.declare_dead(&view.edge, &view.incarnation, now).await;
                continue;
            }
            let refresh_after_ms = duration_ms(self.settings.stream_max_age / 3);
            let stale = view.history_from_ms.is_some_and(|from| {
                now_ms().saturating_sub(from) > i64::try_from(refresh_after_ms).unwrap_or(i64::MAX)
            });
            if self.replica.is_leader() && stale {
                self.request_snapshot(&view.edge, "history older than a third of the stream's max age");
            }
        }
    }

    async fn declare_dead(&mut self, edge: &str, incarnation: &str, now: Instant) {
        let key = (edge.to_owned(), incarnation.to_owned());
        if self.down_published.get(&key).is_some_and(|at| now.duration_since(*at) < DOWN_RETRY) {
            return;
        }
        self.down_published.insert(key, now);
        let Ok(edge_id) = EdgeId::parse(edge) else { return };
        let event = PresenceEvent {
            edge: edge.to_owned(),
            incarnation: incarnation.to_owned(),
            seq: 0,
            at_ms: now_ms(),
            kind: PresenceEventKind::EdgeDown { incarnation: incarnation.to_owned() },
        };
        let subject = self.bus.subjects.presence_events(&edge_id);
        match self.bus.publish_durable(subject, &edge_down_msg_id(edge, incarnation), &event).await {
            Ok(ack) => {
                self.replica.metrics.edges_declared_dead.inc();
                tracing::warn!(
                    edge,
                    incarnation,
                    duplicate = ack.duplicate,
                    "edge missed its heartbeats; declared dead"
                );
            }
            Err(error) => tracing::warn!(%error, edge, "publish EdgeDown for a silent edge"),
        }
    }

    fn request_snapshot(&mut self, edge: &str, reason: &'static str) {
        let now = Instant::now();
        if self.snapshot_requested.get(edge).is_some_and(|at| now.duration_since(*at) < SNAPSHOT_RETRY) {
            return;
        }
        self.snapshot_requested.insert(edge.to_owned(), now);
        let Ok(edge_id) = EdgeId::parse(edge) else { return };
        self.replica.metrics.snapshots_requested.inc();
        tracing::info!(edge, reason, "asking edge for a snapshot");
        let bus = self.bus.clone();
        let command = EdgeCommand::Snapshot { request_id: uuid::Uuid::now_v7().to_string() };
        self.tracker.spawn(async move {
            let subject = bus.subjects.control_edge(&edge_id);
            if let Err(error) = bus.request::<_, EdgeCommandDone>(subject, &command).await {
                tracing::warn!(%error, edge = %edge_id, "snapshot request not answered");
            }
        });
    }
}

fn duration_ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
