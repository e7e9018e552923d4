//! Presence in tests: [`SimEdge`] drives the real edge-side reporting code
//! (`sb_presence_client::Reporter`) the way an edge does, without sockets,
//! and [`spawn_presence`] runs a presence replica in-process.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use parking_lot::Mutex;
use sb_events::bus::Bus;
use sb_events::client::PublicUser;
use sb_events::presence::SessionState;
use sb_events::{EdgeId, RoomName};
use sb_presence_client::{Reporter, ReporterConfig, SessionSource};

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
}

/// A user `name` with id `name` and email `name@example.com`.
pub fn user(name: &str) -> PublicUser {
    PublicUser { id: name.to_owned(), email: format!("{name}@example.com") }
}

impl SimEdge {
    /// Connects to `nats_url` and starts reporting as `edge` with a heartbeat every `heartbeat`.
    pub async fn start(nats_url: &str, edge: &str, heartbeat: Duration) -> anyhow::Result<Self> {
        let bus = Bus::connect(nats_url, "sb", &format!("sim-edge-{edge}")).await.context("connect sim edge")?;
        let table = Arc::new(SessionTable::default());
        let mut config = ReporterConfig::new(EdgeId::parse(edge)?);
        config.heartbeat_interval = heartbeat;
        let reporter = Reporter::start(bus.clone(), config, table.clone()).await.context("start reporter")?;
        Ok(Self { reporter, table, bus })
    }

    /// A socket of `user` connects.
    pub fn connect(&self, socket: &str, user: &PublicUser) {
        let connected_at_ms = sb_events::timestamp::now_ms();
        self.table.sessions.lock().insert(
            socket.to_owned(),
            SessionState { socket: socket.to_owned(), user: user.clone(), connected_at_ms, rooms: Vec::new() },
        );
        self.reporter.session_opened(socket, user.clone(), connected_at_ms);
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
