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
    /// Bytes one socket's outgoing buffer may hold (`SOCKET_BUFFER_BYTES`).
    pub(crate) socket_buffer_bytes: u64,
    /// Most rooms one socket may be in (`MAX_ROOMS_PER_SOCKET`).
    pub(crate) max_rooms_per_socket: usize,
    pub(crate) publish_timeout: Duration,
    pub(crate) drain: Arc<crate::drain::Drain>,
}

/// How long a user id that auth confirmed is trusted to exist.
const KNOWN_USER_TTL: Duration = Duration::from_secs(600);
/// Most user ids remembered.
const KNOWN_USERS_MAX: usize = 100_000;
/// How often ids older than [`KNOWN_USER_TTL`] are dropped, so the set holds
/// the users of the last ten minutes or so, not every user ever seen up to
/// [`KNOWN_USERS_MAX`] (which a churn of new users fills over hours).
const KNOWN_USERS_SWEEP: Duration = Duration::from_secs(60);

/// A positive cache of user ids auth confirmed, so a private message to a
/// known user costs no round trip. Unknown ids are never cached (a user
/// created a moment later must become reachable at once).
#[derive(Default)]
pub(crate) struct KnownUsers {
    ids: Mutex<Known>,
}

#[derive(Default)]
struct Known {
    ids: HashMap<String, Instant>,
    next_sweep: Option<Instant>,
}

impl KnownUsers {
    /// Whether `user` exists, asking auth (with the caller's token) unless
    /// it was confirmed recently.
    pub(crate) async fn check(&self, auth: &AuthClient, caller_token: &str, user: &UserId) -> Result<(), ClientError> {
        let now = Instant::now();
        if self.ids.lock().ids.get(user.as_str()).is_some_and(|seen| now.duration_since(*seen) < KNOWN_USER_TTL) {
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
        self.insert_at(user.as_str(), now);
        Ok(())
    }

    /// Remembers an id known to exist (a connected user).
    pub(crate) fn remember(&self, user: &str) {
        self.insert_at(user, Instant::now());
    }

    fn insert_at(&self, user: &str, now: Instant) {
        let mut known = self.ids.lock();
        let sweep = known.next_sweep.is_none_or(|at| now >= at);
        if sweep || known.ids.len() >= KNOWN_USERS_MAX {
            known.ids.retain(|_, seen| now.duration_since(*seen) < KNOWN_USER_TTL);
            if known.ids.len() >= KNOWN_USERS_MAX {
                known.ids.clear();
            }
            known.next_sweep = Some(now + KNOWN_USERS_SWEEP);
        }
        known.ids.insert(user.to_owned(), now);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.ids.lock().ids.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_users_forget_ids_older_than_the_ttl_at_the_next_sweep() {
        let known = KnownUsers::default();
        let start = Instant::now();
        for n in 0..50 {
            known.insert_at(&format!("old{n}"), start);
        }
        known.insert_at("recent", start + KNOWN_USERS_SWEEP / 2);
        assert_eq!(known.len(), 51, "nothing is swept before a sweep interval passed");
        known.insert_at("new", start + KNOWN_USER_TTL + Duration::from_secs(10));
        assert_eq!(known.len(), 2, "the old ids went; the recent one stays");
    }
}
