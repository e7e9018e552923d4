//! Deliveries: what NATS routes to this edge, emitted to its local sockets.
//!
//! - Rooms: the edge subscribes to `deliver.room.<r>` only while it has a
//!   local member. [`Deliveries::acquire_room`] hands out a [`Lease`]; the
//!   first lease of a room subscribes and flushes the SUB to the socket; the
//!   caller then reports the join to presence on the same NATS connection,
//!   and the server handles one connection's messages in order, so the
//!   interest exists before anything caused by that report. The last lease
//!   dropped unsubscribes. Each room subscription has one task, so a room's
//!   deliveries are emitted in the order NATS delivered them.
//! - Users: no subscription per user. Messaging sends private deliveries to
//!   the edges presence places the recipients on, batched, on this edge's
//!   `deliver.edge.<edge>`; anything addressed to a user on
//!   `deliver.user.<u>` (users presence did not place, notifications)
//!   reaches every edge through one `deliver.user.*` subscription and is
//!   kept only where the user has a socket. One task handles both
//!   ([`users`]). A socket's [`UserLease`] counts it and holds its claim of
//!   pending messages ([`claim`]).
//! - `deliver.all` is subscribed for the edge's whole life; `deliver.presence`
//!   carries batches of presence changes for every socket and has its own
//!   loop, bounded by a frame budget ([`presence_batch`]).
//! - A [`Delivery`] is decoded once and emitted to each local socket of the
//!   target in turn ([`emit`]); a socket whose outgoing buffer is full has
//!   its transport closed rather than miss the event while connected. The
//!   payload stays a `RawValue`: the bytes the producer serialized are what
//!   clients get.
//! - Local Socket.IO rooms: `room:<name>` for joined rooms, `user:<id>` for
//!   every socket of a user. A room name is never a NATS subject (subjects
//!   come from [`sb_events::Subjects`]).
//!
//! The module is split by job: [`lease`] (room subscriptions, user counts),
//! [`users`] (user deliveries), [`claim`] (pending messages and the live
//! deliveries that race them), [`emit`] (writing a delivery to the local
//! sockets), [`presence_batch`].

mod claim;
mod emit;
mod lease;
mod presence_batch;
mod users;

pub(crate) use emit::local_socket;
use lease::Entry;
pub use lease::{Lease, UserLease};

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::StreamExt as _;
use parking_lot::Mutex;
use sb_events::bus::Bus;
use sb_events::deliver::Delivery;
use sb_events::{EdgeId, RoomName, UserId};
use socketioxide::SocketIo;
use socketioxide::socket::Sid;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument as _;

use crate::metrics::{Metrics, ScopeLabel};
use crate::throttle::PresenceThrottle;

/// Local room of the sockets that have not finished claiming pending messages.
pub const CLAIMING_ROOM: &str = "sys:claiming";
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

/// What every part of the delivery side shares.
pub(crate) struct Inner {
    bus: Bus,
    edge: EdgeId,
    pub(crate) io: SocketIo,
    pub(crate) metrics: Arc<Metrics>,
    /// The sockets' outgoing byte counts ([`crate::outbox`]).
    pub(crate) transports: Arc<crate::transport::Transports>,
    /// Budget of presence frames (one presence event to one socket) per second.
    pub(crate) presence_throttle: Mutex<PresenceThrottle>,
    tracker: TaskTracker,
    /// Subscribed rooms.
    entries: Mutex<HashMap<Target, Arc<Entry>>>,
    /// Local sockets per user.
    local_users: Mutex<HashMap<UserId, usize>>,
    /// Sockets still claiming their pending messages.
    claiming: Mutex<HashMap<Sid, claim::ClaimBuffer>>,
    /// Commands for the user deliveries' task; `None` once it ended.
    commands: Mutex<Option<VecDeque<claim::Command>>>,
    command_ready: Notify,
}

/// The delivery side of the edge; cheap to clone.
#[derive(Clone)]
pub struct Deliveries {
    inner: Arc<Inner>,
}

impl Deliveries {
    /// The delivery side over `bus`, emitting through `io`; presence
    /// batches are bounded to `presence_frames_per_sec` (0: unbounded).
    pub fn new(
        bus: Bus,
        edge: EdgeId,
        io: SocketIo,
        metrics: Arc<Metrics>,
        tracker: TaskTracker,
        presence_frames_per_sec: u64,
        transports: Arc<crate::transport::Transports>,
    ) -> Self {
        let presence_throttle = Mutex::new(PresenceThrottle::new(presence_frames_per_sec));
        Self {
            inner: Arc::new(Inner {
                bus,
                edge,
                io,
                metrics,
                transports,
                presence_throttle,
                tracker,
                entries: Mutex::new(HashMap::new()),
                local_users: Mutex::new(HashMap::new()),
                claiming: Mutex::new(HashMap::new()),
                commands: Mutex::new(Some(VecDeque::new())),
                command_ready: Notify::new(),
            }),
        }
    }

    /// Subscribes to a room's deliveries unless this edge already is.
    pub async fn acquire_room(&self, room: &RoomName) -> Result<Lease, DeliveryError> {
        self.acquire(Target::Room(room.clone())).await
    }

    /// Counts socket `socket` of `user` here and joins it to the local rooms
    /// `user:<id>` and [`CLAIMING_ROOM`]: until [`UserLease::finish_claim`],
    /// live deliveries to the user are buffered for it.
    pub fn acquire_user(&self, user: &UserId, socket: &socketioxide::extract::SocketRef) -> UserLease {
        *self.inner.local_users.lock().entry(user.clone()).or_default() += 1;
        {
            // Joining under the claiming lock: a delivery handled after this
            // point is buffered for the socket; one handled before is not
            // and skips it (it is older than the connection).
            let mut claiming = self.inner.claiming.lock();
            claiming.insert(socket.id, claim::ClaimBuffer::new(user.clone()));
            socket.join([user_key(user), CLAIMING_ROOM.to_owned()]);
        }
        UserLease { inner: self.inner.clone(), user: user.clone(), sid: socket.id }
    }

    /// Subscribes to `deliver.all`, `deliver.presence`, this edge's
    /// `deliver.edge.<edge>` and `deliver.user.*` until `shutdown`.
    pub async fn subscribe_all(&self, shutdown: CancellationToken) -> Result<(), DeliveryError> {
        let subjects = &self.inner.bus.subjects;
        let edge = self.subscribe_subject(subjects.deliver_edge(&self.inner.edge)).await?;
        let users = self.subscribe_subject(subjects.deliver_user_all()).await?;
        self.inner.tracker.spawn(users::run(self.inner.clone(), edge, users, shutdown.clone()));
        let entry = Arc::new(Entry::new(Target::All));
        let subscriber = self.subscribe(&entry.target).await?;
        let inner = self.inner.clone();
        let stop = shutdown.clone();
        self.inner.tracker.spawn(async move {
            tokio::select! {
                () = stop.cancelled() => {}
                () = run_subscription(inner, entry, subscriber) => {}
            }
        });
        let subscriber = self.subscribe(&Target::PresenceBatch).await?;
        self.inner.tracker.spawn(presence_batch::run(self.inner.clone(), subscriber, shutdown));
        Ok(())
    }

    /// Rooms subscribed now.
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
        self.subscribe_subject(subject).await
    }

    async fn subscribe_subject(&self, subject: String) -> Result<async_nats::Subscriber, DeliveryError> {
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
    while let Some(message) = subscriber.next().await {
        // Boxed: the task stays small while idle (one per subscribed room).
        Box::pin(handle_message(&inner, &entry, message)).await;
    }
}

async fn handle_message(inner: &Inner, entry: &Entry, message: async_nats::Message) {
    let span = sb_telemetry::nats::consumer_span("edge.deliver", &message.subject, message.headers.as_ref());
    async {
        let delivery: Delivery = match serde_json::from_slice(&message.payload) {
            Ok(delivery) => delivery,
            Err(error) => {
                tracing::warn!(subject = %message.subject, %error, "dropping a delivery that is not a Delivery");
                inner.metrics.dropped("undecodable");
                return;
            }
        };
        inner.metrics.deliveries.get_or_create(&ScopeLabel { scope: entry.target.scope() }).inc();
        let written = emit::emit(inner, &entry.target, &delivery);
        tracing::Span::current().record("switchboard.sockets", written);
    }
    .instrument(span)
    .await
}
