//! The edge's side of the presence protocol (`sb_events::presence`), so an
//! edge only calls a small API:
//!
//! - [`Reporter`]: one per edge process. It announces the edge (`EdgeUp`
//!   with a fresh incarnation), reports every connect, disconnect, join and
//!   leave as a [`sb_events::presence::PresenceEvent`] through one ordered
//!   pipeline into the presence stream (consecutive `seq`, `Nats-Msg-Id`,
//!   retried until stored), heart-beats, and answers presence's `Snapshot`
//!   and the admin's `KickUser` commands on the edge's control subjects.
//! - [`SessionSource`]: what the edge implements so the reporter can take a
//!   snapshot of its sessions and kick a user's sockets.
//! - [`PresenceQueries`]: the questions an edge (or messaging) asks presence:
//!   online users, a room's members, which users are online.
//!
//! See `docs/presence.md` for the protocol and its guarantees.

mod queries;
mod reporter;

pub use queries::{DEFAULT_PAGE, MAX_PAGE, PresenceQueries, QueryError};
pub use reporter::{DrainStarted, EdgeStatus, Reporter, ReporterConfig, ReporterError, SessionSource, StoredSeq};
