//! [`Reporter`]: how one edge tells presence what its sockets do.
//!
//! Every call becomes a [`PresenceEvent`] of this edge's incarnation. Calls
//! go into one unbounded channel (so a connect never waits for NATS) and a
//! single pipeline task numbers them `1, 2, 3, ...` in the order they were
//! made, publishes them to the presence stream with `Nats-Msg-Id` =
//! [`PresenceEvent::msg_id`], keeps up to `max_in_flight` of them waiting for
//! their PubAck, and takes the acks in order. When a publish or an ack fails
//! (NATS down, the stream not there yet) it republishes every unacknowledged
//! event, oldest first, with the same seq and id until they are stored: the
//! stream de-duplicates what had already arrived, nothing is lost, and
//! presence re-orders the rare event that overtook a lost one (its seq says
//! where it belongs).
//!
//! Besides events the reporter sends an [`EdgeHeartbeat`] every interval,
//! carrying the last stored seq and the number of sockets as of that seq,
//! and answers commands on `control.edge.<edge>` and `control.edges`:
//! `Snapshot` (the [`SessionSource`]'s sessions are published as `Snapshot`
//! parts into the same ordered sequence), `KickUser` and `Drain` (handed to
//! the [`SessionSource`]).

//!
//! The module is split by job: this file is the API the edge calls;
//! [`pipeline`] numbers, publishes and acknowledges events in order;
//! [`control`] sends heartbeats and answers commands.

mod control;
mod pipeline;

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use sb_events::bus::{Bus, BusError};
use sb_events::client::PublicUser;
use sb_events::presence::{
    DEFAULT_HEARTBEAT_INTERVAL, DEFAULT_STREAM_MAX_AGE, PresenceEventKind, SessionState, Transport,
};
use sb_events::timestamp::now_ms;
use sb_events::{EdgeId, RoomName};
use sb_telemetry::TraceLink;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use self::pipeline::Pipeline;

/// How long [`Reporter::start`] waits for the edge's `EdgeUp` to be stored.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long [`Reporter::shutdown`] waits for the edge's `EdgeDown` to be stored.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// What the edge gives the reporter: its live sessions (for snapshots) and a
/// way to kick a user (for the admin's `KickUser` command).
///
/// Ordering rule for the edge: change its own session table first, then
/// call the reporter (add a socket, then [`Reporter::session_opened`];
/// remove it, then [`Reporter::session_closed`]; the same for rooms). A
/// snapshot taken between the two steps is then never older than the
/// events that follow it, and presence applies events idempotently.
pub trait SessionSource: Send + Sync + 'static {
    /// Returns every live session of this edge with its rooms.
    fn sessions(&self) -> Vec<SessionState>;

    /// Sends every local socket of `user_id` an `exception` with `reason`,
    /// disconnects them, and returns how many there were.
    fn kick_user(&self, user_id: &str, reason: &str) -> u64;

    /// Starts draining the edge over `over` (`None`: its own default) and
    /// returns at once with what it will do; `None` if this source cannot
    /// drain (the command is then answered `unavailable`).
    fn drain(&self, over: Option<Duration>) -> Option<DrainStarted> {
        let _ = over;
        None
    }

    /// What heartbeats carry besides the socket count.
    fn status(&self) -> EdgeStatus {
        EdgeStatus::default()
    }
}

/// A drain the edge started (or had started before).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DrainStarted {
    /// Sockets it will close.
    pub sockets: u64,
    /// The time their closes are spread over.
    pub over: Duration,
}

/// The edge's state as heartbeats report it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EdgeStatus {
    /// Distinct users with a socket on the edge.
    pub users: u64,
    /// The edge is draining.
    pub draining: bool,
}

/// Settings of a [`Reporter`].
#[derive(Debug, Clone)]
pub struct ReporterConfig {
    /// This edge's stable id (the pod name); a restart with the same id
    /// replaces the old incarnation's sessions.
    pub edge: EdgeId,
    /// How often to heart-beat; presence declares the edge dead after three
    /// missed intervals (default 2 s).
    pub heartbeat_interval: Duration,
    /// How many events may wait for their PubAck at once (default 256).
    pub max_in_flight: usize,
    /// Whether this edge takes private deliveries on `<p>.deliver.edge.<edge>`;
    /// heartbeats say so, and messaging routes there only then (default false).
    pub edge_delivery: bool,
    /// Where clients reach this edge, carried by heartbeats for `ListEdges`
    /// (default empty: not known).
    pub address: String,
    /// The edge's version, carried by heartbeats (default empty).
    pub version: String,
}

impl ReporterConfig {
    /// Defaults for edge `edge`.
    pub fn new(edge: EdgeId) -> Self {
        Self {
            edge,
            heartbeat_interval: DEFAULT_HEARTBEAT_INTERVAL,
            max_in_flight: 256,
            edge_delivery: false,
            address: String::new(),
            version: String::new(),
        }
    }
}

/// What can go wrong while reporting.
#[derive(Debug, thiserror::Error)]
pub enum ReporterError {
    /// The presence stream could not be created or looked up.
    #[error("set up the presence stream: {0}")]
    Stream(#[source] BusError),
    /// A control subject could not be subscribed.
    #[error("subscribe to {subject}: {source}")]
    Subscribe {
        /// Which subject.
        subject: String,
        /// Why.
        source: async_nats::SubscribeError,
    },
    /// The `EdgeUp` event was not stored in time (is NATS with JetStream up?).
    #[error("the presence stream did not store this edge's start within {0:?}; check NATS and JetStream")]
    StartTimeout(Duration),
    /// The `EdgeDown` event was not stored in time at shutdown.
    #[error("the presence stream did not store this edge's stop within {0:?}")]
    ShutdownTimeout(Duration),
    /// The reporter was shut down (or its task ended).
    #[error("the presence reporter has stopped")]
    Stopped,
}

/// Reports one edge's sockets to presence. Cheap to clone; every clone
/// feeds the same ordered pipeline. Dropping the last clone stops it (like
/// a crash: no `EdgeDown`; presence notices the missing heartbeats), so
/// call [`Reporter::shutdown`] on a graceful stop.
#[derive(Clone)]
pub struct Reporter {
    inner: Arc<Inner>,
}

struct Inner {
    edge: EdgeId,
    incarnation: String,
    commands: mpsc::UnboundedSender<Command>,
    progress: Arc<Mutex<Progress>>,
    stopped: AtomicBool,
    cancel: CancellationToken,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// The last stored event of this incarnation and the sockets as of it.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Progress {
    pub(super) last_seq: u64,
    pub(super) sockets: u64,
}

/// The stream sequence of a reported event, once the stream stored it.
/// Cheap to clone; keep it with the session and await it when a later
/// question must see this event (e.g. `get_online_users` right after connect).
#[derive(Debug, Clone)]
pub struct StoredSeq(watch::Receiver<u64>);

impl StoredSeq {
    /// The presence stream sequence that stored the event, waiting until it
    /// is stored (wrap it in a timeout if the caller cannot wait).
    pub async fn wait(&self) -> Result<u64, ReporterError> {
        let mut receiver = self.0.clone();
        let seq = receiver.wait_for(|seq| *seq > 0).await.map_err(|_| ReporterError::Stopped)?;
        Ok(*seq)
    }

    /// The sequence if it is stored already.
    pub fn now(&self) -> Option<u64> {
        Some(*self.0.borrow()).filter(|seq| *seq > 0)
    }
}

/// Who waits for an event's stream sequence.
pub(super) enum Stored {
    Once(oneshot::Sender<u64>),
    Watch(watch::Sender<u64>),
}

impl Stored {
    fn send(self, seq: u64) {
        match self {
            Self::Once(sender) => {
                let _ = sender.send(seq);
            }
            Self::Watch(sender) => {
                sender.send_replace(seq);
            }
        }
    }
}

/// What the API hands the pipeline.
pub(super) enum Command {
    /// `trace`: the reporting span's context; the event's publish joins its trace.
    Report {
        kind: PresenceEventKind,
        at_ms: i64,
        stored: Option<Stored>,
        trace: Option<TraceLink>,
    },
    Snapshot {
        request_id: String,
        done: oneshot::Sender<u64>,
    },
}

impl Reporter {
    /// Starts reporting for `config.edge`: a new incarnation (UUIDv7), the
    /// control subscriptions, the pipeline (whose first event is `EdgeUp`),
    /// and heartbeats. Returns once `EdgeUp` is stored, so presence knows the
    /// edge before its first socket connects.
    /// Its tasks (pipeline, control, heartbeats) run on `tracker`, so the
    /// edge's stop waits for them.
    pub async fn start(
        bus: Bus,
        config: ReporterConfig,
        source: Arc<dyn SessionSource>,
        tracker: &TaskTracker,
    ) -> Result<Self, ReporterError> {
        let incarnation = uuid::Uuid::now_v7().to_string();
        // Normally presence creates the stream with its own settings; this
        // lets an edge start first (an existing stream is left as it is).
        bus.ensure_presence_stream(1, DEFAULT_STREAM_MAX_AGE).await.map_err(ReporterError::Stream)?;

        let mut subscriptions = Vec::new();
        for subject in [bus.subjects.control_edge(&config.edge), bus.subjects.control_edges()] {
            let subscription = bus
                .client
                .subscribe(subject.clone())
                .await
                .map_err(|source| ReporterError::Subscribe { subject, source })?;
            subscriptions.push(subscription);
        }

        let cancel = CancellationToken::new();
        let progress = Arc::new(Mutex::new(Progress::default()));
        let (commands, receiver) = mpsc::unbounded_channel();
        let pipeline = Pipeline {
            bus: bus.clone(),
            edge: config.edge.clone(),
            incarnation: incarnation.clone(),
            subject: bus.subjects.presence_events(&config.edge),
            source: source.clone(),
            next_seq: 1,
            sockets: HashSet::new(),
            in_flight: VecDeque::new(),
            progress: progress.clone(),
            max_in_flight: config.max_in_flight.max(1),
        };
        // The reporter's tasks run in no span: each event's publish is a
        // child of the span that reported it (if any), and heartbeats and
        // snapshots start no trace.
        tracker.spawn(pipeline.run(receiver, cancel.clone()));

        let reporter = Self {
            inner: Arc::new(Inner {
                edge: config.edge.clone(),
                incarnation: incarnation.clone(),
                commands: commands.clone(),
                progress: progress.clone(),
                stopped: AtomicBool::new(false),
                cancel: cancel.clone(),
            }),
        };
        let (stored, started) = oneshot::channel();
        reporter.send(PresenceEventKind::EdgeUp, Some(Stored::Once(stored)));

        let heartbeat_source = source.clone();
        let control = control::serve_control(
            bus.clone(),
            config.edge.clone(),
            commands,
            source,
            futures_util::stream::select_all(subscriptions),
            cancel.clone(),
        );
        tracker.spawn(control);
        let heartbeat = control::send_heartbeats(
            bus,
            control::HeartbeatSettings {
                edge: config.edge.clone(),
                incarnation,
                interval: config.heartbeat_interval,
                edge_delivery: config.edge_delivery,
                address: config.address.clone(),
                version: config.version.clone(),
            },
            heartbeat_source,
            progress,
            cancel.clone(),
        );
        tracker.spawn(heartbeat);

        match tokio::time::timeout(START_TIMEOUT, started).await {
            Ok(Ok(_)) => Ok(reporter),
            Ok(Err(_)) => Err(ReporterError::Stopped),
            Err(_) => Err(ReporterError::StartTimeout(START_TIMEOUT)),
        }
    }

    /// This edge's id.
    pub fn edge(&self) -> &EdgeId {
        &self.inner.edge
    }

    /// This process's incarnation (UUIDv7).
    pub fn incarnation(&self) -> &str {
        &self.inner.incarnation
    }

    /// The seq of the last event the stream stored (0 before `EdgeUp`).
    pub fn last_stored_seq(&self) -> u64 {
        self.inner.progress.lock().last_seq
    }

    /// Reports an authenticated socket. Returns at once, with a handle on
    /// the stream sequence that will store it (pass it as `after_seq` to
    /// [`crate::PresenceQueries::online_users_after`]; ignoring it is fine).
    /// `transport` is what the socket connected with (GetUser shows it).
    pub fn session_opened(
        &self,
        socket: &str,
        user: PublicUser,
        connected_at_ms: i64,
        transport: Option<Transport>,
    ) -> StoredSeq {
        let (sender, receiver) = watch::channel(0);
        self.send(
            PresenceEventKind::SessionOpened { socket: socket.to_owned(), user, connected_at_ms, transport },
            Some(Stored::Watch(sender)),
        );
        StoredSeq(receiver)
    }

    /// Reports a disconnected socket (any reason). Returns at once.
    pub fn session_closed(&self, socket: &str) {
        self.send(PresenceEventKind::SessionClosed { socket: socket.to_owned() }, None);
    }

    /// Reports that `socket` joined `room` and returns the presence stream
    /// sequence that stored it: pass it as `after_seq` to
    /// [`crate::PresenceQueries::room_members`] so the member list includes
    /// this join. Waits until stored (retrying while NATS is down); wrap it
    /// in a timeout if the caller cannot wait that long (the event stays queued).
    pub async fn room_joined(&self, socket: &str, room: &RoomName) -> Result<u64, ReporterError> {
        let (stored, receiver) = oneshot::channel();
        self.send(
            PresenceEventKind::RoomJoined { socket: socket.to_owned(), room: room.as_str().to_owned() },
            Some(Stored::Once(stored)),
        );
        receiver.await.map_err(|_| ReporterError::Stopped)
    }

    /// Reports that `socket` left `room`. Returns at once.
    pub fn room_left(&self, socket: &str, room: &RoomName) {
        self.send(PresenceEventKind::RoomLeft { socket: socket.to_owned(), room: room.as_str().to_owned() }, None);
    }

    /// Stops gracefully: publishes `EdgeDown` for this incarnation (presence
    /// removes its sessions at once), waits until it is stored, then stops
    /// heartbeats and the control subscriptions. Later calls do nothing.
    pub async fn shutdown(&self) -> Result<(), ReporterError> {
        let (stored, receiver) = oneshot::channel();
        self.send(
            PresenceEventKind::EdgeDown { incarnation: self.inner.incarnation.clone() },
            Some(Stored::Once(stored)),
        );
        self.inner.stopped.store(true, Ordering::Release);
        let result = match tokio::time::timeout(SHUTDOWN_TIMEOUT, receiver).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(ReporterError::Stopped),
            Err(_) => Err(ReporterError::ShutdownTimeout(SHUTDOWN_TIMEOUT)),
        };
        self.inner.cancel.cancel();
        result
    }

    fn send(&self, kind: PresenceEventKind, stored: Option<Stored>) {
        if self.inner.stopped.load(Ordering::Acquire) {
            return;
        }
        let command = Command::Report { kind, at_ms: now_ms(), stored, trace: TraceLink::current() };
        if self.inner.commands.send(command).is_err() {
            tracing::debug!("presence reporter stopped; event not reported");
        }
    }
}
