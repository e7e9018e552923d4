//! Presence in tests:
//! - [`SimEdge`] drives the real edge-side reporting code
//!   (`sb_presence_client::Reporter`) the way an edge does, without sockets,
//!   optionally on its own runtime so a test can crash it like `kill -9`.
//! - [`PresenceReplica`] runs one presence replica in-process on a
//!   [`CrashableRuntime`] (graceful stop or crash).
//! - [`Watcher`] subscribes to the delivery subjects the way an edge does
//!   and records every presence event delivered, in order, with when it
//!   arrived and in which message ([`Arrival`]).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use futures_util::StreamExt as _;
use parking_lot::Mutex;
use sb_events::bus::Bus;
use sb_events::client::{PublicUser, RoomPresence, UserPresence};
use sb_events::deliver::{Delivery, DeliveryBatch};
use sb_events::presence::SessionState;
use sb_events::{EdgeId, RoomName};
use sb_presence::replica::Replica;
use sb_presence_client::{Reporter, ReporterConfig, SessionSource};

use crate::CrashableRuntime;

/// The session table of a simulated edge (what `SessionSource` reads).
#[derive(Default)]
pub struct SessionTable {
    sessions: Mutex<BTreeMap<String, SessionState>>,
    kicked: Mutex<Vec<(String, String)>>,
}

impl SessionSource for SessionTable {
    fn sessions(&self) -> Vec<SessionState> {
        self.sessions.lock().values().cloned().collect()
    }

    fn kick_user(&self, user_id: &str, reason: &str) -> u64 {
        self.kicked.lock().push((user_id.to_owned(), reason.to_owned()));
        let mut sessions = self.sessions.lock();
        let before = sessions.len();
        sessions.retain(|_, session| session.user.id != user_id);
        (before - sessions.len()) as u64
    }
}

/// An edge without sockets: a session table plus the real [`Reporter`],
/// updated in the order the edge contract asks (table first, then report).
pub struct SimEdge {
    /// The reporter (the edge's real presence code).
    pub reporter: Reporter,
    /// The sessions it reports.
    pub table: Arc<SessionTable>,
    /// The bus it reports on.
    pub bus: Bus,
    runtime: Option<CrashableRuntime>,
}

/// A user `name` with id `name` and email `name@example.com`.
pub fn user(name: &str) -> PublicUser {
    PublicUser { id: name.to_owned(), email: format!("{name}@example.com") }
}

impl SimEdge {
    /// Connects to `nats_url` and starts reporting as `edge` with a heartbeat every `heartbeat`.
    pub async fn start(nats_url: &str, edge: &str, heartbeat: Duration) -> anyhow::Result<Self> {
        let bus = Bus::connect(&sb_config::NatsArgs::for_url(nats_url), &format!("sim-edge-{edge}"))
            .await
            .context("connect sim edge")?;
        let table = Arc::new(SessionTable::default());
        let mut config = ReporterConfig::new(EdgeId::parse(edge)?);
        config.heartbeat_interval = heartbeat;
        let tracker = tokio_util::task::TaskTracker::new();
        let reporter = Reporter::start(bus.clone(), config, table.clone(), &tracker).await.context("start reporter")?;
        Ok(Self { reporter, table, bus, runtime: None })
    }

    /// As [`Self::start`], with the reporter's NATS connection and tasks on
    /// their own runtime, so [`Self::crash`] kills them as `kill -9` would.
    pub async fn start_crashable(nats_url: &str, edge: &str, heartbeat: Duration) -> anyhow::Result<Self> {
        let runtime = CrashableRuntime::new(&format!("edge-{edge}"))?;
        let (url, name) = (nats_url.to_owned(), edge.to_owned());
        let mut edge = runtime.run(async move { Self::start(&url, &name, heartbeat).await }).await??;
        edge.runtime = Some(runtime);
        Ok(edge)
    }

    /// Kills the edge: no `EdgeDown`, no more heartbeats, connection gone.
    pub fn crash(mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.crash();
        }
    }

    /// A socket of `user` connects; returns the handle on the stream
    /// sequence of its `SessionOpened`.
    pub fn connect(&self, socket: &str, user: &PublicUser) -> sb_presence_client::StoredSeq {
        let connected_at_ms = sb_events::timestamp::now_ms();
        self.table.sessions.lock().insert(
            socket.to_owned(),
            SessionState {
                socket: socket.to_owned(),
                user: user.clone(),
                connected_at_ms,
                rooms: Vec::new(),
                transport: None,
            },
        );
        self.reporter.session_opened(socket, user.clone(), connected_at_ms, None)
    }

    /// A socket disconnects.
    pub fn disconnect(&self, socket: &str) {
        self.table.sessions.lock().remove(socket);
        self.reporter.session_closed(socket);
    }

    /// A socket joins `room`; returns the stream sequence of the join.
    pub async fn join(&self, socket: &str, room: &str) -> anyhow::Result<u64> {
        let room = RoomName::parse(room)?;
        if let Some(session) = self.table.sessions.lock().get_mut(socket)
            && !session.rooms.iter().any(|r| r == room.as_str())
        {
            session.rooms.push(room.as_str().to_owned());
        }
        Ok(self.reporter.room_joined(socket, &room).await?)
    }

    /// A socket leaves `room`.
    pub fn leave(&self, socket: &str, room: &str) -> anyhow::Result<()> {
        let room = RoomName::parse(room)?;
        if let Some(session) = self.table.sessions.lock().get_mut(socket) {
            session.rooms.retain(|r| r != room.as_str());
        }
        self.reporter.room_left(socket, &room);
        Ok(())
    }

    /// `(user, reason)` of every `KickUser` this edge received.
    pub fn kicked(&self) -> Vec<(String, String)> {
        self.table.kicked.lock().clone()
    }
}

/// One presence replica running in-process on its own runtime.
pub struct PresenceReplica {
    /// The replica's shared state (read it to compare replicas).
    pub replica: Arc<Replica>,
    /// Its gRPC address.
    pub grpc_addr: SocketAddr,
    /// Its `/metrics`, `/healthz`, `/readyz` address.
    pub metrics_addr: SocketAddr,
    runtime: CrashableRuntime,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    done: Option<tokio::sync::oneshot::Receiver<()>>,
}

/// A replica config for tests: loopback port 0, auth at `auth_addr`.
pub fn replica_config(nats_url: &str, auth_addr: &str) -> sb_presence::Config {
    sb_presence::Config::for_tests(nats_url, auth_addr)
}

impl PresenceReplica {
    /// Builds and runs a replica with `config`; returns once it caught up.
    pub async fn start(config: sb_presence::Config) -> anyhow::Result<Self> {
        let runtime = CrashableRuntime::new("presence")?;
        let app = runtime.run(sb_presence::App::build(config)).await?.context("build presence")?;
        let (replica, grpc_addr, metrics_addr) = (app.replica(), app.grpc_addr(), app.metrics_addr());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (finished, done) = tokio::sync::oneshot::channel::<()>();
        runtime.spawn(async move {
            if let Err(error) = app
                .run(async move {
                    let _ = stopped.await;
                })
                .await
            {
                eprintln!("presence replica failed: {error}");
            }
            let _ = finished.send(());
        });
        let started = Self { replica, grpc_addr, metrics_addr, runtime, stop: Some(stop), done: Some(done) };
        let replica = started.replica.clone();
        crate::wait_until("presence replica caught up", Duration::from_secs(30), || {
            let replica = replica.clone();
            async move { replica.is_ready().then_some(()) }
        })
        .await;
        // The gRPC health follows the replica's readiness a moment later.
        crate::grpc::wait_serving(
            started.grpc_addr,
            "switchboard.presence.v1.PresenceService",
            Duration::from_secs(10),
        )
        .await;
        Ok(started)
    }

    /// Kills the replica as `kill -9` would.
    pub fn crash(self) {
        self.runtime.crash();
    }

    /// Stops the replica gracefully and waits until it finished.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(done) = self.done.take() {
            let _ = tokio::time::timeout(Duration::from_secs(20), done).await;
        }
    }
}

/// Waits until every replica applied the whole presence stream and the
/// leader published every transition up to it.
pub async fn settle(bus: &Bus, replicas: &[&PresenceReplica]) {
    crate::wait_until("presence replicas settled", Duration::from_secs(30), || async {
        let stream = bus.jetstream.get_stream(bus.subjects.presence_stream()).await.ok()?;
        let last = stream.cached_info().state.last_sequence;
        let applied = replicas.iter().all(|r| r.replica.applied_seq() >= last);
        let published = replicas.iter().any(|r| {
            r.replica.is_leader() && r.replica.emitted_through() >= last && r.replica.pending_transitions() == 0
        });
        (applied && published).then_some(())
    })
    .await;
}

/// One presence event as a socket would receive it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// `user_online`, `user_offline`, `user_joined` or `user_left`.
    pub event: String,
    /// The user it is about.
    pub user: String,
    /// The room, for joins and leaves.
    pub room: Option<String>,
}

/// A presence event with when and in which NATS message it arrived.
#[derive(Debug, Clone)]
pub struct Arrival {
    /// What arrived.
    pub seen: Seen,
    /// When the watcher received the NATS message that carried it.
    pub at: std::time::Instant,
    /// Which message carried it (0, 1, 2… in arrival order): events of one
    /// `DeliveryBatch` share the number, so a window published twice shows up
    /// as the same set under two numbers.
    pub message: u64,
}

/// Records every presence delivery on `deliver.presence` and the given rooms.
pub struct Watcher {
    arrivals: Arc<Mutex<Vec<Arrival>>>,
    _task: tokio::task::JoinHandle<()>,
}

fn record(arrivals: &Mutex<Vec<Arrival>>, delivery: &Delivery, at: std::time::Instant, message: u64) {
    let seen = if let Ok(presence) = serde_json::from_str::<RoomPresence>(delivery.data.get()) {
        Seen { event: delivery.event.clone(), user: presence.user.id, room: Some(presence.room) }
    } else if let Ok(presence) = serde_json::from_str::<UserPresence>(delivery.data.get()) {
        Seen { event: delivery.event.clone(), user: presence.user.id, room: None }
    } else {
        return;
    };
    arrivals.lock().push(Arrival { seen, at, message });
}

impl Watcher {
    /// Subscribes on a connection of its own and waits until the subscriptions are live.
    pub async fn start(nats_url: &str, rooms: &[&str]) -> anyhow::Result<Self> {
        Self::start_for(nats_url, rooms, &[]).await
    }

    /// As [`Self::start`], also recording what is delivered to `users`
    /// (`deliver.user.<id>`, where `PRESENCE_SCOPE=rooms` sends presence);
    /// such events get `room: Some("@<user>")`, the user they were sent to.
    pub async fn start_for(nats_url: &str, rooms: &[&str], users: &[&str]) -> anyhow::Result<Self> {
        let bus = Bus::connect(&sb_config::NatsArgs::for_url(nats_url), "presence-watcher").await?;
        let presence_subject = bus.subjects.deliver_presence();
        let mut subscriptions = vec![bus.client.subscribe(presence_subject.clone()).await?];
        for room in rooms {
            subscriptions.push(bus.client.subscribe(bus.subjects.deliver_room(&RoomName::parse(*room)?)).await?);
        }
        let mut user_subjects = std::collections::HashMap::new();
        for user in users {
            let subject = bus.subjects.deliver_user(&sb_events::UserId::parse(*user)?);
            user_subjects.insert(subject.clone(), format!("@{user}"));
            subscriptions.push(bus.client.subscribe(subject).await?);
        }
        crate::nats::round_trip(&bus.client).await?;
        let arrivals = Arc::new(Mutex::new(Vec::new()));
        let task = tokio::spawn({
            let arrivals = arrivals.clone();
            async move {
                let _bus = bus;
                let mut messages = futures_util::stream::select_all(subscriptions);
                let mut number = 0;
                while let Some(message) = messages.next().await {
                    let at = std::time::Instant::now();
                    if message.subject.as_str() == presence_subject {
                        if let Ok(batch) = serde_json::from_slice::<DeliveryBatch>(&message.payload) {
                            for delivery in &batch.deliveries {
                                record(&arrivals, delivery, at, number);
                            }
                        }
                    } else if let Ok(delivery) = serde_json::from_slice::<Delivery>(&message.payload) {
                        record(&arrivals, &delivery, at, number);
                        if let Some(to) = user_subjects.get(message.subject.as_str())
                            && let Some(last) = arrivals.lock().last_mut()
                        {
                            last.seen.room = Some(to.clone());
                        }
                    }
                    number += 1;
                }
            }
        });
        Ok(Self { arrivals, _task: task })
    }

    /// Everything seen so far, in order.
    pub fn seen(&self) -> Vec<Seen> {
        self.arrivals.lock().iter().map(|arrival| arrival.seen.clone()).collect()
    }

    /// Everything seen so far, in order, with arrival times.
    pub fn arrivals(&self) -> Vec<Arrival> {
        self.arrivals.lock().clone()
    }

    /// How often `event` about `user` was seen.
    pub fn count(&self, event: &str, user: &str) -> usize {
        self.arrivals.lock().iter().filter(|arrival| arrival.seen.event == event && arrival.seen.user == user).count()
    }

    /// Waits until `event` about `user` was seen at least once.
    pub async fn wait_for(&self, event: &str, user: &str, timeout: Duration) {
        let what = format!("{event} of {user}");
        crate::wait_until(&what, timeout, || async { (self.count(event, user) > 0).then_some(()) }).await;
    }

    /// A barrier: `edge` connects a new user and this waits until its
    /// `user_online` arrives. Presence publishes in stream order from one
    /// replica, so every event due before it has arrived by then.
    pub async fn barrier(&self, edge: &SimEdge, name: &str) {
        edge.connect(&format!("barrier-{name}"), &user(name));
        self.wait_for("user_online", name, Duration::from_secs(20)).await;
    }
}
