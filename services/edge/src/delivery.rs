//! Deliveries: what NATS routes to this edge, emitted to its local sockets.
//!
//! - The edge subscribes to `deliver.room.<r>` / `deliver.user.<u>` only
//!   while it has a local member. [`Deliveries::acquire`] hands out a
//!   [`Lease`]; the first lease of a target subscribes and flushes the SUB
//!   to the socket; the caller then reports to presence on the same NATS
//!   connection, and the server handles one connection's messages in order,
//!   so the interest exists before anything caused by that report. The last
//!   lease dropped unsubscribes. Concurrent first
//!   acquirers wait for the one subscription.
//! - `deliver.all` is subscribed for the edge's whole life.
//! - Each subscription has one task, so deliveries of one subject are emitted
//!   in the order NATS delivered them. A [`Delivery`] is decoded once and
//!   emitted once per target with `io.to(..).emit(..)`, which encodes the
//!   frame once for every local socket of the room. The payload stays a
//!   `RawValue`: the bytes the producer serialized are what clients get.
//! - Local Socket.IO rooms: `room:<name>` for joined rooms, `user:<id>` for
//!   every socket of a user. A room name is never a NATS subject (subjects
//!   come from [`sb_events::Subjects`]).
//!
//! Pending private messages: a socket that just connected is *claiming*
//! (local room [`CLAIMING_ROOM`]) until its user's stored offline messages
//! were fetched. Live user deliveries skip claiming sockets and are buffered
//! for them instead; [`UserLease::finish_claim`] then emits, in the user
//! subscription's own task (so nothing interleaves), the claimed messages in
//! order, then the buffered live ones whose id was not among them, and ends
//! the claim.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use parking_lot::Mutex;
use sb_events::bus::Bus;
use sb_events::client::NewMessage;
use sb_events::deliver::{Delivery, DeliveryBatch};
use sb_events::{RoomName, UserId};
use sb_presence_client::PresenceThrottle;
use socketioxide::SocketIo;
use socketioxide::operators::BroadcastOperators;
use socketioxide::socket::Sid;
use tokio::sync::{Notify, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument as _;

use crate::metrics::{Metrics, ScopeLabel};

/// Local room of the sockets that have not finished claiming pending messages.
pub const CLAIMING_ROOM: &str = "sys:claiming";
/// Most live deliveries buffered for one claiming socket; beyond it the
/// oldest are dropped (and counted).
const CLAIM_BUFFER_MAX: usize = 1024;
/// How long a new subscription waits for the server's acknowledgement of
/// the flush before going on (the subscription stays and is re-sent by the
/// client after a reconnect).
const FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

/// The local Socket.IO room of a Switchboard room.
pub fn room_key(room: &RoomName) -> String {
    format!("room:{}", room.as_str())
}

/// The local Socket.IO room of every socket of a user.
pub fn user_key(user: &UserId) -> String {
    format!("user:{}", user.as_str())
}

/// Why a subscription could not be made.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// The NATS client refused the subscription (it is closed).
    #[error("subscribe to {subject}: {source}")]
    Subscribe {
        /// The subject.
        subject: String,
        /// What the client said.
        source: async_nats::SubscribeError,
    },
}

/// What a delivery subscription is for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// A room's members.
    Room(RoomName),
    /// Every socket of a user.
    User(UserId),
    /// Every socket.
    All,
    /// Every socket, several deliveries per message
    /// ([`sb_events::deliver::DeliveryBatch`] on `deliver.presence`).
    PresenceBatch,
}

impl Target {
    fn scope(&self) -> &'static str {
        match self {
            Self::Room(_) => "room",
            Self::User(_) => "user",
            Self::All | Self::PresenceBatch => "all",
        }
    }
}

/// Deliveries buffered for one claiming socket.
#[derive(Default)]
struct ClaimBuffer {
    deliveries: Vec<Arc<Delivery>>,
}

enum Command {
    FinishClaim { sid: Sid, pending: Vec<NewMessage>, done: oneshot::Sender<()> },
}

struct Entry {
    target: Target,
    /// Leases alive; changed only under the map lock.
    leases: AtomicUsize,
    ready: tokio::sync::OnceCell<()>,
    cancel: CancellationToken,
    claiming: Mutex<HashMap<Sid, ClaimBuffer>>,
    /// Commands for the subscription task; `None` once the task ended. A
    /// queue and a `Notify` rather than a channel: a channel allocates a
    /// block per entry up front, and there is one entry per connected user.
    commands: Mutex<Option<VecDeque<Command>>>,
    command_ready: Notify,
}

impl Entry {
    fn new(target: Target) -> Self {
        Self {
            target,
            leases: AtomicUsize::new(0),
            ready: tokio::sync::OnceCell::new(),
            cancel: CancellationToken::new(),
            claiming: Mutex::new(HashMap::new()),
            commands: Mutex::new(Some(VecDeque::new())),
            command_ready: Notify::new(),
        }
    }

    fn next_command(&self) -> Option<Command> {
        self.commands.lock().as_mut().and_then(VecDeque::pop_front)
    }
}

struct Inner {
    bus: Bus,
    io: SocketIo,
    metrics: Arc<Metrics>,
    /// Budget of presence frames (one presence event to one socket) per second.
    presence_throttle: Mutex<PresenceThrottle>,
    tracker: TaskTracker,
    entries: Mutex<HashMap<Target, Arc<Entry>>>,
}

/// The delivery side of the edge; cheap to clone.
#[derive(Clone)]
pub struct Deliveries {
    inner: Arc<Inner>,
}

/// Keeps a delivery subscription alive; dropping the last lease of a target
/// unsubscribes.
pub struct Lease {
    inner: Arc<Inner>,
    entry: Arc<Entry>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut entries = self.inner.entries.lock();
        if self.entry.leases.fetch_sub(1, Ordering::AcqRel) == 1 {
            if entries.get(&self.entry.target).is_some_and(|current| Arc::ptr_eq(current, &self.entry)) {
                entries.remove(&self.entry.target);
            }
            self.entry.cancel.cancel();
        }
    }
}

/// A socket's lease on its user's delivery subscription, with its claim of
/// pending messages.
pub struct UserLease {
    lease: Lease,
    sid: Sid,
}

impl UserLease {
    /// Emits the claimed `pending` messages to the socket in order, then the
    /// live deliveries that arrived meanwhile (skipping ids already sent),
    /// and ends the claim. Runs in the subscription's task, so no live
    /// delivery interleaves. Returns once done (or the subscription is gone).
    pub async fn finish_claim(&self, pending: Vec<NewMessage>) {
        let (done, wait) = oneshot::channel();
        let entry = &self.lease.entry;
        match entry.commands.lock().as_mut() {
            Some(commands) => commands.push_back(Command::FinishClaim { sid: self.sid, pending, done }),
            None => return,
        }
        entry.command_ready.notify_one();
        // The task answers, or drops the command when it stops.
        let _ = wait.await;
    }
}

impl Drop for UserLease {
    fn drop(&mut self) {
        self.lease.entry.claiming.lock().remove(&self.sid);
    }
}

impl Deliveries {
    /// The delivery side over `bus`, emitting through `io`; presence
    /// batches are bounded to `presence_frames_per_sec` (0: unbounded).
    pub fn new(
        bus: Bus,
        io: SocketIo,
        metrics: Arc<Metrics>,
        tracker: TaskTracker,
        presence_frames_per_sec: u64,
    ) -> Self {
        let presence_throttle = Mutex::new(PresenceThrottle::new(presence_frames_per_sec));
        Self {
            inner: Arc::new(Inner {
                bus,
                io,
                metrics,
                presence_throttle,
                tracker,
                entries: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Subscribes to a room's deliveries unless this edge already is.
    pub async fn acquire_room(&self, room: &RoomName) -> Result<Lease, DeliveryError> {
        self.acquire(Target::Room(room.clone())).await
    }

    /// Subscribes to a user's deliveries for socket `sid`, which joins the
    /// local rooms `user:<id>` and [`CLAIMING_ROOM`]: until
    /// [`UserLease::finish_claim`], live deliveries to the user are buffered
    /// for it.
    pub async fn acquire_user(
        &self,
        user: &UserId,
        socket: &socketioxide::extract::SocketRef,
    ) -> Result<UserLease, DeliveryError> {
        let lease = self.acquire(Target::User(user.clone())).await?;
        {
            // Joining under the claiming lock: a delivery handled after this
            // point is buffered for the socket; one handled before is not
            // and skips it (it is older than the connection).
            let mut claiming = lease.entry.claiming.lock();
            claiming.insert(socket.id, ClaimBuffer::default());
            socket.join([user_key(user), CLAIMING_ROOM.to_owned()]);
        }
        Ok(UserLease { lease, sid: socket.id })
    }

    /// Subscribes to `deliver.all` and `deliver.presence` until `shutdown`.
    pub async fn subscribe_all(&self, shutdown: CancellationToken) -> Result<(), DeliveryError> {
        for target in [Target::All, Target::PresenceBatch] {
            let entry = Arc::new(Entry::new(target));
            let subscriber = self.subscribe(&entry.target).await?;
            let inner = self.inner.clone();
            let shutdown = shutdown.clone();
            self.inner.tracker.spawn(async move {
                tokio::select! {
                    () = shutdown.cancelled() => {}
                    () = run_subscription(inner, entry, subscriber) => {}
                }
            });
        }
        Ok(())
    }

    /// Delivery subjects subscribed now (rooms and users).
    pub fn subscriptions(&self) -> usize {
        self.inner.entries.lock().len()
    }

    async fn acquire(&self, target: Target) -> Result<Lease, DeliveryError> {
        let entry = {
            let mut entries = self.inner.entries.lock();
            let entry = entries.entry(target).or_insert_with_key(|target| Arc::new(Entry::new(target.clone())));
            entry.leases.fetch_add(1, Ordering::AcqRel);
            entry.clone()
        };
        // The lease exists before the first await, so a cancelled or failed
        // acquire releases its count.
        let lease = Lease { inner: self.inner.clone(), entry };
        lease.entry.ready.get_or_try_init(|| self.start(lease.entry.clone())).await?;
        Ok(lease)
    }

    async fn start(&self, entry: Arc<Entry>) -> Result<(), DeliveryError> {
        let subscriber = self.subscribe(&entry.target).await?;
        self.inner.metrics.delivery_subscriptions.inc();
        let inner = self.inner.clone();
        self.inner.tracker.spawn(async move {
            let metrics = inner.metrics.clone();
            let cancel = entry.cancel.clone();
            tokio::select! {
                () = cancel.cancelled() => {}
                () = run_subscription(inner, entry.clone(), subscriber) => {}
            }
            entry.commands.lock().take();
            metrics.delivery_subscriptions.dec();
        });
        Ok(())
    }

    async fn subscribe(&self, target: &Target) -> Result<async_nats::Subscriber, DeliveryError> {
        let subjects = &self.inner.bus.subjects;
        let subject = match target {
            Target::Room(room) => subjects.deliver_room(room),
            Target::User(user) => subjects.deliver_user(user),
            Target::All => subjects.deliver_all(),
            Target::PresenceBatch => subjects.deliver_presence(),
        };
        let client = &self.inner.bus.client;
        let subscriber = client
            .subscribe(subject.clone())
            .await
            .map_err(|source| DeliveryError::Subscribe { subject: subject.clone(), source })?;
        match tokio::time::timeout(FLUSH_TIMEOUT, client.flush()).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                tracing::warn!(%subject, %error, "flush after subscribe failed; the client re-subscribes after reconnecting")
            }
            Err(_) => {
                tracing::warn!(%subject, "flush after subscribe timed out; the client re-subscribes after reconnecting")
            }
        }
        Ok(subscriber)
    }
}

async fn run_subscription(inner: Arc<Inner>, entry: Arc<Entry>, mut subscriber: async_nats::Subscriber) {
    loop {
        while let Some(command) = entry.next_command() {
            handle_command(&inner, &entry, command);
        }
        tokio::select! {
            biased;
            () = entry.command_ready.notified() => {}
            message = subscriber.next() => match message {
                // Boxed: the task stays small while idle (one per subscribed user).
                Some(message) => Box::pin(handle_message(&inner, &entry, message)).await,
                None => break,
            },
        }
    }
    // Unanswered commands are dropped here, which wakes their callers.
    entry.commands.lock().take();
}

async fn handle_message(inner: &Inner, entry: &Entry, message: async_nats::Message) {
    let span = sb_telemetry::nats::consumer_span("edge.deliver", &message.subject, message.headers.as_ref());
    async {
        if entry.target == Target::PresenceBatch {
            let batch: DeliveryBatch = match serde_json::from_slice(&message.payload) {
                Ok(batch) => batch,
                Err(error) => {
                    tracing::warn!(subject = %message.subject, %error, "dropping a delivery batch that does not decode");
                    inner.metrics.dropped("undecodable");
                    return;
                }
            };
            let sockets = usize::try_from(inner.metrics.sockets.get()).unwrap_or(0);
            for delivery in &batch.deliveries {
                // Bounded: during a connect storm every socket would get
                // every change (O(N²) frames); past the budget a change is
                // dropped for everyone here and counted, and clients can ask
                // `get_online_users`.
                if !inner.presence_throttle.lock().admit(Instant::now(), sockets) {
                    inner.metrics.dropped("presence_rate");
                    continue;
                }
                inner.metrics.deliveries.get_or_create(&ScopeLabel { scope: "presence" }).inc();
                emit(inner, &Target::All, delivery).await;
            }
            return;
        }
        let delivery: Delivery = match serde_json::from_slice(&message.payload) {
            Ok(delivery) => delivery,
            Err(error) => {
                tracing::warn!(subject = %message.subject, %error, "dropping a delivery that is not a Delivery");
                inner.metrics.dropped("undecodable");
                return;
            }
        };
        inner.metrics.deliveries.get_or_create(&ScopeLabel { scope: entry.target.scope() }).inc();
        if let Target::User(_) = entry.target {
            let mut claiming = entry.claiming.lock();
            if !claiming.is_empty() {
                let delivery = Arc::new(delivery.clone());
                for buffer in claiming.values_mut() {
                    if buffer.deliveries.len() >= CLAIM_BUFFER_MAX {
                        buffer.deliveries.remove(0);
                        inner.metrics.dropped("claim_buffer_full");
                    }
                    buffer.deliveries.push(delivery.clone());
                }
            }
        }
        emit(inner, &entry.target, &delivery).await;
    }
    .instrument(span)
    .await
}

/// Every socket of the default namespace, or `None` once the server closed
/// (after `io.close()` the namespace is gone and `io.to(..)` would panic).
pub(crate) fn root(io: &SocketIo) -> Option<BroadcastOperators> {
    io.of("/")
}

/// The local socket `sid`, if it is still connected.
pub(crate) fn local_socket(io: &SocketIo, sid: Sid) -> Option<socketioxide::extract::SocketRef> {
    root(io)?.get_socket(sid)
}

/// Emits `delivery` once to the local sockets of `target`.
async fn emit(inner: &Inner, target: &Target, delivery: &Delivery) {
    let Some(all) = root(&inner.io) else {
        return;
    };
    let except_socket =
        delivery.except_socket.as_deref().and_then(|sid| sid.parse::<Sid>().ok()).and_then(|sid| all.get_socket(sid));
    let mut operators: BroadcastOperators = match (target, except_socket) {
        (Target::Room(room), Some(socket)) => socket.to(room_key(room)),
        (Target::Room(room), None) => all.to(room_key(room)),
        (Target::User(user), Some(socket)) => socket.to(user_key(user)).except(CLAIMING_ROOM),
        (Target::User(user), None) => all.to(user_key(user)).except(CLAIMING_ROOM),
        (Target::All | Target::PresenceBatch, Some(socket)) => socket.broadcast(),
        (Target::All | Target::PresenceBatch, None) => all,
    };
    if let Some(user) = delivery.except_user.as_deref() {
        operators = operators.except(format!("user:{user}"));
    }
    if let Err(error) = operators.emit(&delivery.event, &delivery.data).await {
        count_broadcast_error(&inner.metrics, &error);
    }
}

/// Counts the sockets a broadcast did not reach.
pub fn count_broadcast_error(metrics: &Metrics, error: &socketioxide::BroadcastError) {
    use socketioxide::{BroadcastError, SocketError};
    match error {
        BroadcastError::Socket(errors) => {
            for error in errors {
                match error {
                    SocketError::InternalChannelFull => metrics.dropped("buffer_full"),
                    SocketError::Closed => metrics.dropped("closed"),
                }
            }
        }
        BroadcastError::Serialize(error) => {
            tracing::error!(%error, "encode a delivery");
            metrics.dropped("encode");
        }
        BroadcastError::Adapter(error) => {
            tracing::error!(%error, "local adapter refused a broadcast");
            metrics.dropped("adapter");
        }
    }
}

fn handle_command(inner: &Inner, entry: &Entry, command: Command) {
    match command {
        Command::FinishClaim { sid, pending, done } => {
            let buffered = entry.claiming.lock().remove(&sid).map(|buffer| buffer.deliveries).unwrap_or_default();
            if let Some(socket) = local_socket(&inner.io, sid) {
                let user = match &entry.target {
                    Target::User(user) => Some(user.as_str()),
                    _ => None,
                };
                let mut sent: HashSet<&str> = HashSet::with_capacity(pending.len());
                for message in &pending {
                    sent.insert(message.id.as_str());
                    crate::socket::emit_to(&socket, &inner.metrics, sb_events::client::event::NEW_MESSAGE, message);
                    inner.metrics.deliveries.get_or_create(&ScopeLabel { scope: "pending" }).inc();
                }
                let socket_id = sid.to_string();
                for delivery in &buffered {
                    if delivery.except_socket.as_deref() == Some(socket_id.as_str())
                        || (delivery.except_user.is_some() && delivery.except_user.as_deref() == user)
                    {
                        continue;
                    }
                    if !sent.is_empty()
                        && delivery.event == sb_events::client::event::NEW_MESSAGE
                        && message_id(delivery).is_some_and(|id| sent.contains(id.as_str()))
                    {
                        continue;
                    }
                    crate::socket::emit_to(&socket, &inner.metrics, &delivery.event, &delivery.data);
                }
                socket.leave(CLAIMING_ROOM);
            }
            let _ = done.send(());
        }
    }
}

fn message_id(delivery: &Delivery) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct IdOnly {
        id: Option<String>,
    }
    serde_json::from_str::<IdOnly>(delivery.data.get()).ok().and_then(|only| only.id)
}
