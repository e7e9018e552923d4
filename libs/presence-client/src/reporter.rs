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
//! parts into the same ordered sequence) and `KickUser` (handed to the
//! [`SessionSource`]).

use std::collections::{HashSet, VecDeque};
use std::future::{Future, IntoFuture as _};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_nats::jetstream::context::PublishError;
use async_nats::jetstream::publish::PublishAck;
use bytes::Bytes;
use futures_util::StreamExt as _;
use parking_lot::Mutex;
use sb_events::bus::{Bus, BusError, decode};
use sb_events::client::PublicUser;
use sb_events::control::{EdgeCommand, EdgeCommandDone};
use sb_events::presence::{
    DEFAULT_HEARTBEAT_INTERVAL, DEFAULT_STREAM_MAX_AGE, EdgeHeartbeat, PresenceEvent, PresenceEventKind,
    SNAPSHOT_PART_MAX_SESSIONS, SessionState,
};
use sb_events::rpc::{Reply, RpcError, RpcErrorCode};
use sb_events::timestamp::now_ms;
use sb_events::{EdgeId, RoomName};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

/// How long [`Reporter::start`] waits for the edge's `EdgeUp` to be stored.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long [`Reporter::shutdown`] waits for the edge's `EdgeDown` to be stored.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);
/// First and longest pause before republishing after a failure.
const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(2);

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
}

impl ReporterConfig {
    /// Defaults for edge `edge`.
    pub fn new(edge: EdgeId) -> Self {
        Self { edge, heartbeat_interval: DEFAULT_HEARTBEAT_INTERVAL, max_in_flight: 256 }
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
struct Progress {
    last_seq: u64,
    sockets: u64,
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
enum Stored {
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

enum Command {
    Report { kind: PresenceEventKind, at_ms: i64, stored: Option<Stored> },
    Snapshot { request_id: String, done: oneshot::Sender<u64> },
}

impl Reporter {
    /// Starts reporting for `config.edge`: a new incarnation (UUIDv7), the
    /// control subscriptions, the pipeline (whose first event is `EdgeUp`),
    /// and heartbeats. Returns once `EdgeUp` is stored, so presence knows the
    /// edge before its first socket connects.
    pub async fn start(
        bus: Bus,
        config: ReporterConfig,
        source: Arc<dyn SessionSource>,
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
        let span = tracing::info_span!("presence.reporter", edge = %config.edge, %incarnation);
        tokio::spawn(tracing::Instrument::instrument(pipeline.run(receiver, cancel.clone()), span.clone()));

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

        let control = serve_control(
            bus.clone(),
            config.edge.clone(),
            commands,
            source,
            futures_util::stream::select_all(subscriptions),
            cancel.clone(),
        );
        tokio::spawn(tracing::Instrument::instrument(control, span.clone()));
        let heartbeat =
            send_heartbeats(bus, config.edge.clone(), incarnation, config.heartbeat_interval, progress, cancel.clone());
        tokio::spawn(tracing::Instrument::instrument(heartbeat, span));

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
    pub fn session_opened(&self, socket: &str, user: PublicUser, connected_at_ms: i64) -> StoredSeq {
        let (sender, receiver) = watch::channel(0);
        self.send(
            PresenceEventKind::SessionOpened { socket: socket.to_owned(), user, connected_at_ms },
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
        let command = Command::Report { kind, at_ms: now_ms(), stored };
        if self.inner.commands.send(command).is_err() {
            tracing::debug!("presence reporter stopped; event not reported");
        }
    }
}

type AckFuture = Pin<Box<dyn Future<Output = Result<PublishAck, PublishError>> + Send>>;

/// One event between its publish and its PubAck.
struct InFlight {
    seq: u64,
    msg_id: String,
    payload: Bytes,
    /// The number of sockets once this event is applied.
    sockets_after: u64,
    stored: Option<Stored>,
    /// `None` until (re)published.
    ack: Option<AckFuture>,
}

/// The single task that numbers, publishes and acknowledges events in order.
struct Pipeline {
    bus: Bus,
    edge: EdgeId,
    incarnation: String,
    subject: String,
    source: Arc<dyn SessionSource>,
    next_seq: u64,
    /// The sockets as presence will see them after the last numbered event
    /// (same idempotent rules), for the heartbeat's socket count.
    sockets: HashSet<String>,
    in_flight: VecDeque<InFlight>,
    progress: Arc<Mutex<Progress>>,
    max_in_flight: usize,
}

impl Pipeline {
    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>, cancel: CancellationToken) {
        let mut open = true;
        let mut backoff = RETRY_MIN;
        loop {
            if !open && self.in_flight.is_empty() {
                return;
            }
            self.publish_unsent().await;
            let front_sent = self.in_flight.front().is_some_and(|entry| entry.ack.is_some());
            let has_unsent = self.in_flight.iter().any(|entry| entry.ack.is_none());
            let can_accept = open && self.in_flight.len() < self.max_in_flight;
            tokio::select! {
                biased;
                () = cancel.cancelled() => return,
                result = front_ack(&mut self.in_flight), if front_sent => match result {
                    Ok(ack) => {
                        backoff = RETRY_MIN;
                        self.complete_front(&ack);
                    }
                    Err(error) => {
                        tracing::warn!(%error, pending = self.in_flight.len(), "presence event not acknowledged; republishing");
                        for entry in &mut self.in_flight {
                            entry.ack = None;
                        }
                        tokio::select! {
                            () = cancel.cancelled() => return,
                            () = tokio::time::sleep(backoff) => {}
                        }
                        backoff = (backoff * 2).min(RETRY_MAX);
                    }
                },
                command = commands.recv(), if can_accept => match command {
                    Some(command) => self.accept(command),
                    None => open = false,
                },
                () = tokio::time::sleep(backoff), if has_unsent && !front_sent => {
                    backoff = (backoff * 2).min(RETRY_MAX);
                }
            }
        }
    }

    /// Publishes, in order, every event not yet sent; stops at the first failure.
    async fn publish_unsent(&mut self) {
        for entry in self.in_flight.iter_mut().filter(|entry| entry.ack.is_none()) {
            match self.bus.publish_durable_pipelined(self.subject.clone(), &entry.msg_id, entry.payload.clone()).await {
                Ok(ack) => entry.ack = Some(ack.into_future()),
                Err(error) => {
                    tracing::warn!(%error, seq = entry.seq, "publish presence event; will retry");
                    return;
                }
            }
        }
    }

    fn complete_front(&mut self, ack: &PublishAck) {
        let Some(entry) = self.in_flight.pop_front() else { return };
        *self.progress.lock() = Progress { last_seq: entry.seq, sockets: entry.sockets_after };
        if let Some(stored) = entry.stored {
            stored.send(ack.sequence);
        }
    }

    fn accept(&mut self, command: Command) {
        match command {
            Command::Report { kind, at_ms, stored } => self.number(kind, at_ms, stored),
            Command::Snapshot { request_id, done } => {
                let sessions = self.source.sessions();
                let count = sessions.len() as u64;
                let at_ms = now_ms();
                let mut parts: Vec<Vec<SessionState>> =
                    sessions.chunks(SNAPSHOT_PART_MAX_SESSIONS).map(<[SessionState]>::to_vec).collect();
                if parts.is_empty() {
                    parts.push(Vec::new());
                }
                let last_part = parts.len() - 1;
                // Presence replaces the edge's sessions only at the last
                // part, so the heartbeat's count changes with it too.
                let snapshot_sockets: HashSet<String> = sessions.iter().map(|session| session.socket.clone()).collect();
                let mut snapshot_sockets = Some(snapshot_sockets);
                for (part, sessions) in parts.into_iter().enumerate() {
                    if part == last_part
                        && let Some(sockets) = snapshot_sockets.take()
                    {
                        self.sockets = sockets;
                    }
                    let kind = PresenceEventKind::Snapshot {
                        snapshot: request_id.clone(),
                        part: u32::try_from(part).unwrap_or(u32::MAX),
                        last: part == last_part,
                        sessions,
                    };
                    self.number(kind, at_ms, None);
                }
                tracing::debug!(%request_id, sockets = count, "snapshot queued");
                let _ = done.send(count);
            }
        }
    }

    /// Gives `kind` the next seq and queues it for publishing.
    fn number(&mut self, kind: PresenceEventKind, at_ms: i64, stored: Option<Stored>) {
        match &kind {
            PresenceEventKind::SessionOpened { socket, .. } => {
                self.sockets.insert(socket.clone());
            }
            PresenceEventKind::SessionClosed { socket } => {
                self.sockets.remove(socket);
            }
            PresenceEventKind::EdgeDown { .. } => self.sockets.clear(),
            _ => {}
        }
        let event = PresenceEvent {
            edge: self.edge.as_str().to_owned(),
            incarnation: self.incarnation.clone(),
            seq: self.next_seq,
            at_ms,
            kind,
        };
        let payload = match serde_json::to_vec(&event) {
            Ok(bytes) => Bytes::from(bytes),
            Err(error) => {
                // Cannot happen for these plain types; never skip a seq silently.
                tracing::error!(%error, seq = event.seq, "encode presence event; event dropped");
                return;
            }
        };
        self.next_seq += 1;
        self.in_flight.push_back(InFlight {
            seq: event.seq,
            msg_id: event.msg_id(),
            payload,
            sockets_after: self.sockets.len() as u64,
            stored,
            ack: None,
        });
    }
}

/// Resolves with the PubAck of the oldest in-flight event (pending while there is none).
async fn front_ack(in_flight: &mut VecDeque<InFlight>) -> Result<PublishAck, PublishError> {
    match in_flight.front_mut().and_then(|entry| entry.ack.as_mut()) {
        Some(ack) => ack.await,
        None => std::future::pending().await,
    }
}

async fn send_heartbeats(
    bus: Bus,
    edge: EdgeId,
    incarnation: String,
    interval: Duration,
    progress: Arc<Mutex<Progress>>,
    cancel: CancellationToken,
) {
    let subject = bus.subjects.presence_heartbeat(&edge);
    let interval = interval.max(Duration::from_millis(10));
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let Progress { last_seq, sockets } = *progress.lock();
        let heartbeat = EdgeHeartbeat {
            edge: edge.as_str().to_owned(),
            incarnation: incarnation.clone(),
            last_seq,
            sockets,
            sent_at_ms: now_ms(),
            interval_ms: u64::try_from(interval.as_millis()).unwrap_or(u64::MAX),
        };
        if let Err(error) = bus.publish(subject.clone(), &heartbeat).await {
            tracing::debug!(%error, "send presence heartbeat");
        }
    }
}

async fn serve_control(
    bus: Bus,
    edge: EdgeId,
    commands: mpsc::UnboundedSender<Command>,
    source: Arc<dyn SessionSource>,
    mut messages: futures_util::stream::SelectAll<async_nats::Subscriber>,
    cancel: CancellationToken,
) {
    loop {
        let message = tokio::select! {
            () = cancel.cancelled() => return,
            message = messages.next() => match message {
                Some(message) => message,
                None => return,
            },
        };
        let reply: Reply<EdgeCommandDone> = match decode::<EdgeCommand>(message.subject.as_str(), &message.payload) {
            Ok(EdgeCommand::Snapshot { request_id }) => {
                let (done, counted) = oneshot::channel();
                let _ = commands.send(Command::Snapshot { request_id, done });
                match counted.await {
                    Ok(sockets) => Reply::Ok(EdgeCommandDone { edge: edge.as_str().to_owned(), sockets }),
                    Err(_) => Reply::Error(RpcError::new(RpcErrorCode::Unavailable, "edge is stopping")),
                }
            }
            Ok(EdgeCommand::KickUser { user_id, reason }) => {
                let sockets = source.kick_user(&user_id, &reason);
                tracing::info!(%user_id, sockets, "user kicked by control command");
                Reply::Ok(EdgeCommandDone { edge: edge.as_str().to_owned(), sockets })
            }
            Err(error) => {
                tracing::info!(%error, "invalid edge command");
                Reply::Error(RpcError::new(RpcErrorCode::InvalidArgument, format!("invalid edge command: {error}")))
            }
        };
        if let Some(reply_to) = message.reply
            && let Err(error) = bus.respond(reply_to, &reply).await
        {
            tracing::warn!(%error, "answer edge command");
        }
    }
}
