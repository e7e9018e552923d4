//! The presence service: who is online, cluster-wide, through crashes.
//!
//! Edges report connects, disconnects, joins and leaves as events of one
//! JetStream stream (`<PREFIX>_PRESENCE`, see `sb_events::presence`). Every
//! replica applies the whole stream in order to the same deterministic
//! [`state::State`], so all replicas agree on who is online and on every
//! transition. One replica at a time — the holder of the emission
//! [`lease`] — publishes the transitions, coalesced per short window, and
//! records how far it got, so each transition is published once (twice at
//! worst after a crash, never lost) and a restarted replica announces
//! nothing it merely replays. See `docs/presence.md`.
//!
//! - [`config`]: `Config` (flags and env).
//! - [`app`]: `App::build` / `App::run`.
//! - [`state`]: the state machine and [`state::coalesce`].
//! - [`replica`]: what the tasks of one replica share.
//! - [`consume`]: applies the stream (ordered consumer).
//! - [`lease`], [`emit`]: who publishes, and what.
//! - [`liveness`]: heartbeats, dead edges, snapshot requests.
//! - [`query`]: `<p>.presence.query` answers; [`grpc`]: `PresenceService`;
//!   [`edge_control`]: `EdgeControl` (kick, drain, list the edges).
//! - [`metrics`]: Prometheus metrics.

pub mod app;
pub mod config;
pub mod consume;
pub mod edge_control;
pub mod emit;
pub mod grpc;
pub mod lease;
pub mod liveness;
pub mod metrics;
pub mod query;
pub mod replica;
pub mod state;

pub use app::{App, Error};
pub use config::Config;
