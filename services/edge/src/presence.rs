//! The edge's link to presence, through `sb_presence_client` (the protocol
//! itself lives there): reporting sessions and rooms with the [`Reporter`],
//! asking with [`PresenceQueries`], and [`EdgeSessions`], the
//! [`SessionSource`] the reporter reads for snapshots and kicks.
//!
//! Ordering rule of the reporter: the edge changes its own table first and
//! reports second (open: the session is marked open, then reported; close:
//! marked closed, then reported; rooms likewise).

use std::sync::Arc;
use std::time::Duration;

use sb_events::RoomName;
use sb_events::client::{Exception, OnlineUsers, PublicUser, event};
use sb_events::presence::{SessionState, Transport};
use sb_presence_client::{DrainStarted, EdgeStatus, PresenceQueries, QueryError, Reporter, SessionSource, StoredSeq};
use socketioxide::SocketIo;
use tokio_util::task::TaskTracker;

use crate::error::RefusedAccess;
use crate::metrics::Metrics;
use crate::session::{Registry, Session};

/// How long a join (or an online-users query right after connect) waits for
/// presence to store the socket's own event before answering with what is
/// known (the event stays queued in the reporter).
const JOIN_STORE_TIMEOUT: Duration = Duration::from_secs(3);

/// Reporting and queries.
#[derive(Clone)]
pub(crate) struct Presence {
    pub(crate) reporter: Reporter,
    pub(crate) queries: PresenceQueries,
}

impl Presence {
    /// Reports an opened session; the returned handle resolves to the
    /// stream sequence that stored it.
    pub(crate) fn opened(&self, session: &Session) -> StoredSeq {
        self.reporter.session_opened(
            &session.sid.to_string(),
            session.public.clone(),
            session.connected_at_ms,
            session_transport(session),
        )
    }

    /// Reports a closed session.
    pub(crate) fn closed(&self, session: &Session) {
        self.reporter.session_closed(&session.sid.to_string());
    }

    /// Reports a join and returns the presence stream sequence that stored
    /// it, or `None` if that took too long.
    pub(crate) async fn room_joined(&self, session: &Session, room: &RoomName) -> Option<u64> {
        let socket = session.sid.to_string();
        let stored = self.reporter.room_joined(&socket, room);
        match tokio::time::timeout(JOIN_STORE_TIMEOUT, stored).await {
            Ok(Ok(seq)) => Some(seq),
            Ok(Err(error)) => {
                tracing::warn!(%error, "report a room join to presence");
                None
            }
            Err(_) => {
                tracing::warn!("presence did not store a room join in time; answering with what is known");
                None
            }
        }
    }

    /// Reports a leave.
    pub(crate) fn room_left(&self, session: &Session, room: &RoomName) {
        self.reporter.room_left(&session.sid.to_string(), room);
    }

    /// A room's members cluster-wide.
    pub(crate) async fn members(&self, room: &RoomName, after_seq: Option<u64>) -> Result<Vec<PublicUser>, QueryError> {
        Ok(self.queries.room_members(room, after_seq).await?.members)
    }

    /// A page of online users cluster-wide, including the asking session
    /// (presence first applies its `SessionOpened`, `opened`).
    pub(crate) async fn online(
        &self,
        limit: u32,
        cursor: Option<String>,
        opened: Option<StoredSeq>,
    ) -> Result<OnlineUsers, QueryError> {
        let after_seq = match opened {
            Some(opened) => match tokio::time::timeout(JOIN_STORE_TIMEOUT, opened.wait()).await {
                Ok(Ok(seq)) => Some(seq),
                _ => None,
            },
            None => None,
        };
        self.queries.online_users_after(limit, cursor, after_seq).await
    }
}

/// The transport the session's socket uses now (`None` once it is gone).
pub(crate) fn session_transport(session: &Session) -> Option<Transport> {
    let socket = session.socket.upgrade()?;
    Some(match socket.transport_type() {
        socketioxide::TransportType::Websocket => Transport::Websocket,
        socketioxide::TransportType::Polling => Transport::Polling,
    })
}

/// The sessions of this edge as presence's reporter sees them.
pub(crate) struct EdgeSessions {
    pub(crate) registry: Arc<Registry>,
    pub(crate) io: SocketIo,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) tracker: TaskTracker,
    pub(crate) drain: Arc<crate::drain::Drain>,
}

impl SessionSource for EdgeSessions {
    fn drain(&self, over: Option<Duration>) -> Option<DrainStarted> {
        Some(self.drain.begin(over))
    }

    fn status(&self) -> EdgeStatus {
        EdgeStatus { users: self.registry.user_count() as u64, draining: self.drain.is_draining() }
    }

    fn sessions(&self) -> Vec<SessionState> {
        self.registry
            .all()
            .into_iter()
            .filter_map(|session| {
                let state = session.state.lock();
                // Only sessions reported as opened and not yet as closed.
                if !state.opened || state.closed {
                    return None;
                }
                let rooms = state.rooms.keys().map(|room| room.as_str().to_owned()).collect();
                drop(state);
                Some(SessionState {
                    socket: session.sid.to_string(),
                    user: session.public.clone(),
                    connected_at_ms: session.connected_at_ms,
                    rooms,
                    transport: session_transport(&session),
                })
            })
            .collect()
    }

    fn kick_user(&self, user_id: &str, reason: &str) -> u64 {
        let sessions = self.registry.user_sessions(user_id);
        for session in &sessions {
            disconnect_with_exception(&self.io, &self.metrics, &self.tracker, session, reason);
        }
        sessions.len() as u64
    }
}

/// Sends `exception` `reason` to the session's socket and disconnects it.
/// The socket leaves every local room first, so it gets no further
/// deliveries even if its buffer is full; a disconnect refused by a full
/// buffer is retried for a second.
pub(crate) fn disconnect_with_exception(
    io: &SocketIo,
    metrics: &Metrics,
    tracker: &TaskTracker,
    session: &Session,
    reason: &str,
) {
    let Some(socket) = crate::delivery::local_socket(io, session.sid) else {
        return;
    };
    socket.leave_all();
    crate::socket::emit_to(&socket, metrics, event::EXCEPTION, &Exception::new(reason, None));
    if socket.clone().disconnect().is_ok() {
        return;
    }
    let io = io.clone();
    let sid = session.sid;
    tracker.spawn(async move {
        for _ in 0..20 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            match crate::delivery::local_socket(&io, sid) {
                Some(socket) if socket.clone().disconnect().is_err() => continue,
                _ => return,
            }
        }
        tracing::warn!(%sid, "could not disconnect a socket whose buffer stays full");
    });
}

/// Disconnects the sessions an access change invalidated.
pub(crate) fn disconnect_refused(
    io: &SocketIo,
    metrics: &Metrics,
    tracker: &TaskTracker,
    refused: &[(Arc<Session>, RefusedAccess)],
) {
    for (session, reason) in refused {
        disconnect_with_exception(io, metrics, tracker, session, &reason.client_error().to_string());
        metrics.revocation_disconnects.inc();
    }
}
