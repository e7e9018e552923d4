//! Sessions: what the edge knows about each authenticated socket, and the
//! registry of all of them (for revocation, kicks and presence snapshots).
//!
//! A [`Session`] is created by the connect middleware once the token is
//! verified and lives as long as the socket object: it is held by the
//! socket's handlers and extensions, and the [`Registry`] keeps only weak
//! references. Its room and user [`crate::delivery::Lease`]s are released
//! when the socket disconnects (or, if the connection never completed, when
//! the session is dropped).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use sb_authn::VerifiedUser;
use sb_events::client::PublicUser;
use sb_events::control::AccessChanged;
use sb_events::{RoomName, UserId};
use socketioxide::socket::Sid;

use crate::bucket::TokenBucket;
use crate::delivery::{Lease, UserLease};
use crate::error::{ConnectRefusal, RefusedAccess};
use crate::outbox::Outbox;
use crate::payload::EventFrame;
use crate::transport::Transports;

/// How long an access change is remembered for sockets whose verification
/// was in flight when it arrived.
const REVOCATION_MEMORY: Duration = Duration::from_secs(30);

/// Whether a session may still act.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Normal.
    Active,
    /// Revoked or disabled: every further event gets this refusal.
    Refused(RefusedAccess),
}

/// Work queued for one socket (see [`crate::queue`]).
pub(crate) enum Job {
    /// A client event.
    Event {
        /// Name and payload.
        frame: EventFrame,
        /// The client's ack id, if it wants an ack.
        ack_id: Option<i64>,
        /// When it arrived.
        received: Instant,
    },
    /// The socket disconnected: release everything, tell presence.
    Close,
}

/// Mutable per-socket state.
pub(crate) struct SessionState {
    pub(crate) rooms: BTreeMap<RoomName, Lease>,
    pub(crate) user_lease: Option<Arc<UserLease>>,
    pub(crate) queue: VecDeque<Job>,
    pub(crate) running: bool,
    /// The connect handler ran: the client has its CONNECT and the queue may be handled.
    pub(crate) started: bool,
    pub(crate) bucket: TokenBucket,
    pub(crate) access: Access,
    /// The connect middleware reported the session to presence and counted it.
    pub(crate) opened: bool,
    /// The queue's connect step (claiming pending messages) ran.
    pub(crate) connect_step_done: bool,
    /// Where presence stored this session's `SessionOpened`.
    pub(crate) opened_seq: Option<sb_presence_client::StoredSeq>,
    /// The close job ran; nothing more is accepted.
    pub(crate) closed: bool,
}

/// What one socket may send and be sent.
pub(crate) struct Budget {
    /// Its events (`RATE_LIMIT_PER_SEC`, `RATE_LIMIT_BURST`).
    pub(crate) events: TokenBucket,
    /// The bytes its outgoing buffer may hold (`SOCKET_BUFFER_BYTES`).
    pub(crate) buffer_bytes: u64,
}

/// One authenticated socket.
pub struct Session {
    /// Socket.IO socket id.
    pub sid: Sid,
    /// The verified user.
    pub user: VerifiedUser,
    /// The user id, validated.
    pub user_id: UserId,
    /// `{id, email}` as other users see it.
    pub public: PublicUser,
    /// When the socket connected, epoch milliseconds.
    pub connected_at_ms: i64,
    /// The socket's token, kept to call auth on the user's behalf
    /// (`LookupUsers`). Never logged (no `Debug`).
    token: String,
    /// The socket, weakly (the socket owns the session, not the reverse).
    pub(crate) socket: Weak<socketioxide::socket::Socket>,
    registry: Weak<Registry>,
    /// Closes the socket's transport when its outgoing buffer overflows.
    pub(crate) transports: Weak<Transports>,
    /// The bytes waiting in the socket's outgoing buffer (`SOCKET_BUFFER_BYTES`).
    pub(crate) outbox: Arc<Outbox>,
    pub(crate) state: Mutex<SessionState>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("sid", &self.sid).field("user", &self.user.id).finish_non_exhaustive()
    }
}

impl Session {
    /// A new session for `user` on socket `sid`.
    pub(crate) fn new(
        socket: &Arc<socketioxide::socket::Socket>,
        user: VerifiedUser,
        user_id: UserId,
        token: String,
        budget: Budget,
        registry: &Arc<Registry>,
        transports: &Arc<Transports>,
    ) -> Self {
        let public = PublicUser { id: user.id.clone(), email: user.email.clone() };
        Self {
            sid: socket.id,
            user,
            user_id,
            public,
            connected_at_ms: sb_events::timestamp::now_ms(),
            token,
            socket: Arc::downgrade(socket),
            registry: Arc::downgrade(registry),
            transports: Arc::downgrade(transports),
            outbox: Arc::new(Outbox::new(budget.buffer_bytes)),
            state: Mutex::new(SessionState {
                rooms: BTreeMap::new(),
                user_lease: None,
                queue: VecDeque::new(),
                running: false,
                started: false,
                bucket: budget.events,
                access: Access::Active,
                opened: false,
                connect_step_done: false,
                opened_seq: None,
                closed: false,
            }),
        }
    }

    /// The user as the sender of a message.
    pub fn sender(&self) -> sb_events::Sender {
        sb_events::Sender { id: self.user_id.clone(), email: self.user.email.clone() }
    }

    /// The token the socket connected with.
    pub(crate) fn token(&self) -> &str {
        &self.token
    }

    /// Whether the token's `exp` has passed.
    pub fn token_expired(&self) -> bool {
        sb_events::timestamp::now_ms() / 1000 >= self.user.expires_at_s
    }

    /// Whether the socket is in `room`.
    pub fn in_room(&self, room: &RoomName) -> bool {
        self.state.lock().rooms.contains_key(room)
    }

    /// How many rooms the socket is in.
    pub fn room_count(&self) -> usize {
        self.state.lock().rooms.len()
    }

    /// The current access.
    pub fn access(&self) -> Access {
        self.state.lock().access
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Some(registry) = self.registry.upgrade() {
            registry.remove(&self.user.id, self.sid);
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Revocation {
    token_version: i64,
    disabled: bool,
    at: Instant,
}

#[derive(Default)]
struct RegistryState {
    by_user: HashMap<String, HashMap<Sid, Weak<Session>>>,
    revocations: HashMap<String, Revocation>,
    sessions: usize,
}

/// How many sessions an edge holds at most.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionLimits {
    /// Sessions in all (`MAX_SOCKETS`).
    pub sockets: usize,
    /// Sessions of one user (`MAX_SOCKETS_PER_USER`).
    pub per_user: usize,
}

impl SessionLimits {
    /// No limits.
    pub const NONE: Self = Self { sockets: usize::MAX, per_user: usize::MAX };
}

/// Every live session of this edge, by user.
pub struct Registry {
    state: Mutex<RegistryState>,
    limits: SessionLimits,
}

impl Default for Registry {
    fn default() -> Self {
        Self { state: Mutex::default(), limits: SessionLimits::NONE }
    }
}

impl Registry {
    /// An empty registry without limits.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// An empty registry that refuses sessions past `limits`.
    pub fn with_limits(limits: SessionLimits) -> Arc<Self> {
        Arc::new(Self { state: Mutex::default(), limits })
    }

    /// The limits it enforces.
    pub fn limits(&self) -> SessionLimits {
        self.limits
    }

    /// Adds `session`, unless an access change that invalidates its token
    /// arrived while its verification was in flight, or the edge or the
    /// user is at its limit.
    pub fn insert(&self, session: &Arc<Session>) -> Result<(), ConnectRefusal> {
        let mut state = self.state.lock();
        if let Some(refusal) =
            state.revocations.get(&session.user.id).and_then(|r| refusal(r, session.user.token_version))
        {
            return Err(ConnectRefusal::Access(refusal));
        }
        if state.sessions >= self.limits.sockets {
            return Err(ConnectRefusal::EdgeFull);
        }
        let sockets = state.by_user.entry(session.user.id.clone()).or_default();
        // `per_user` is at least 1, so a refused user has sockets: no empty entry is left.
        if sockets.len() >= self.limits.per_user {
            return Err(ConnectRefusal::TooManySockets { limit: self.limits.per_user });
        }
        sockets.insert(session.sid, Arc::downgrade(session));
        state.sessions += 1;
        Ok(())
    }

    /// Whether the edge holds as many sessions as it may.
    pub fn is_full(&self) -> bool {
        self.len() >= self.limits.sockets
    }

    fn remove(&self, user_id: &str, sid: Sid) {
        let mut state = self.state.lock();
        if let Some(sockets) = state.by_user.get_mut(user_id)
            && sockets.remove(&sid).is_some()
        {
            if sockets.is_empty() {
                state.by_user.remove(user_id);
            }
            state.sessions -= 1;
        }
    }

    /// Distinct users with a live session.
    pub fn user_count(&self) -> usize {
        self.state.lock().by_user.len()
    }

    /// Removes a session now (at disconnect) rather than when it is dropped.
    pub fn remove_session(&self, session: &Session) {
        self.remove(&session.user.id, session.sid);
    }

    /// Applies an access change: marks every session of the user whose token
    /// it invalidates and returns them with the reason. Remembers the change
    /// for sessions still being verified.
    pub fn access_changed(&self, change: &AccessChanged) -> Vec<(Arc<Session>, RefusedAccess)> {
        let now = Instant::now();
        let mut state = self.state.lock();
        state.revocations.retain(|_, revocation| now.duration_since(revocation.at) < REVOCATION_MEMORY);
        let fresh = Revocation { token_version: change.token_version, disabled: change.disabled, at: now };
        // Versions only grow: an older change arriving late never lowers the bar.
        let revocation = *state
            .revocations
            .entry(change.user_id.clone())
            .and_modify(|known| {
                known.token_version = known.token_version.max(change.token_version);
                known.disabled = change.disabled;
                known.at = now;
            })
            .or_insert(fresh);
        let sessions: Vec<Arc<Session>> = state
            .by_user
            .get(&change.user_id)
            .map(|sockets| sockets.values().filter_map(Weak::upgrade).collect())
            .unwrap_or_default();
        // A session dropped here could be the last reference, and its Drop
        // takes this lock: release it first.
        drop(state);
        let mut refused = Vec::new();
        for session in sessions {
            if let Some(reason) = refusal(&revocation, session.user.token_version) {
                session.state.lock().access = Access::Refused(reason);
                refused.push((session, reason));
            }
        }
        refused
    }

    /// The live sessions of `user_id`.
    pub fn user_sessions(&self, user_id: &str) -> Vec<Arc<Session>> {
        let state = self.state.lock();
        state
            .by_user
            .get(user_id)
            .map(|sockets| sockets.values().filter_map(Weak::upgrade).collect())
            .unwrap_or_default()
    }

    /// Every live session.
    pub fn all(&self) -> Vec<Arc<Session>> {
        let state = self.state.lock();
        state.by_user.values().flat_map(|sockets| sockets.values().filter_map(Weak::upgrade)).collect()
    }

    /// How many sessions there are.
    pub fn len(&self) -> usize {
        self.state.lock().sessions
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn refusal(revocation: &Revocation, token_version: i64) -> Option<RefusedAccess> {
    if revocation.disabled {
        Some(RefusedAccess::Disabled)
    } else if token_version < revocation.token_version {
        Some(RefusedAccess::Revoked)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusal_rules() {
        let at = Instant::now();
        let revoked = Revocation { token_version: 3, disabled: false, at };
        assert_eq!(refusal(&revoked, 2), Some(RefusedAccess::Revoked));
        assert_eq!(refusal(&revoked, 3), None);
        assert_eq!(refusal(&revoked, 4), None);
        let disabled = Revocation { token_version: 0, disabled: true, at };
        assert_eq!(refusal(&disabled, 9), Some(RefusedAccess::Disabled));
        assert_eq!(RefusedAccess::Revoked.client_error().to_string(), "token revoked");
        assert_eq!(RefusedAccess::Disabled.client_error().to_string(), "user disabled");
    }
}
