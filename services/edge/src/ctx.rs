//! What every part of the edge shares: connections, the session registry,
//! limits and metrics.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use sb_authn::{AuthClient, AuthFailure, AuthnError};
use sb_events::bus::Bus;
use sb_events::{EdgeId, UserId};
use socketioxide::SocketIo;
use tokio_util::task::TaskTracker;

use crate::delivery::Deliveries;
use crate::error::{ClientError, Dependency};
use crate::ingest::Ingest;
use crate::metrics::Metrics;
use crate::payload::Limits;
use crate::presence::Presence;
use crate::session::Registry;

/// The shared state of one edge.
pub(crate) struct EdgeCtx {
    pub(crate) edge_id: EdgeId,
    pub(crate) bus: Bus,
    pub(crate) auth: AuthClient,
    pub(crate) io: SocketIo,
    pub(crate) deliveries: Deliveries,
    pub(crate) ingest: Ingest,
    pub(crate) registry: Arc<Registry>,
    pub(crate) presence: Presence,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) tracker: TaskTracker,
    pub(crate) known_users: KnownUsers,
    pub(crate) limits: Limits,
    pub(crate) rate_per_sec: f64,
    pub(crate) rate_burst: u32,
    pub(crate) queue_limit: usize,
    /// Most rooms one socket may be in (`MAX_ROOMS_PER_SOCKET`).
    pub(crate) max_rooms_per_socket: usize,
    pub(crate) publish_timeout: Duration,
    pub(crate) drain: Arc<crate::drain::Drain>,
}

/// How long a user id that auth confirmed is trusted to exist.
const KNOWN_USER_TTL: Duration = Duration::from_secs(600);
/// Most user ids remembered.
const KNOWN_USERS_MAX: usize = 100_000;

/// A positive cache of user ids auth confirmed, so a private message to a
/// known user costs no round trip. Unknown ids are never cached (a user
/// created a moment later must become reachable at once).
#[derive(Default)]
pub(crate) struct KnownUsers {
    ids: Mutex<HashMap<String, Instant>>,
}

impl KnownUsers {
    /// Whether `user` exists, asking auth (with the caller's token) unless
    /// it was confirmed recently.
    pub(crate) async fn check(&self, auth: &AuthClient, caller_token: &str, user: &UserId) -> Result<(), ClientError> {
        let now = Instant::now();
        if self.ids.lock().get(user.as_str()).is_some_and(|seen| now.duration_since(*seen) < KNOWN_USER_TTL) {
            return Ok(());
        }
        let found =
            auth.lookup_users(caller_token, vec![user.as_str().to_owned()]).await.map_err(|error| match error {
                AuthnError::Rejected(AuthFailure::TokenExpired) => ClientError::TokenExpired,
                AuthnError::Rejected(AuthFailure::TokenRevoked) => ClientError::TokenRevoked,
                AuthnError::Rejected(AuthFailure::UserDisabled) => ClientError::UserDisabled,
                other => {
                    tracing::warn!(error = %other, "look up a message recipient");
                    ClientError::Unavailable(Dependency::RecipientCheck)
                }
            })?;
        if !found.iter().any(|public| public.id == user.as_str()) {
            return Err(ClientError::UnknownUser(user.as_str().to_owned()));
        }
        let mut ids = self.ids.lock();
        if ids.len() >= KNOWN_USERS_MAX {
            ids.retain(|_, seen| now.duration_since(*seen) < KNOWN_USER_TTL);
            if ids.len() >= KNOWN_USERS_MAX {
                ids.clear();
            }
        }
        ids.insert(user.as_str().to_owned(), now);
        Ok(())
    }

    /// Remembers an id known to exist (a connected user).
    pub(crate) fn remember(&self, user: &str) {
        let mut ids = self.ids.lock();
        if ids.len() < KNOWN_USERS_MAX {
            ids.insert(user.to_owned(), Instant::now());
        }
    }
}
