//! The Switchboard edge: the Socket.IO gateway clients connect to.
//!
//! It terminates Socket.IO v4 (websocket and long-polling) with axum and
//! socketioxide, authenticates every connection through auth's gRPC
//! `VerifyToken`, turns client events into NATS messages and delivers what
//! NATS routes to it to its local sockets. It keeps no state another edge
//! needs. `docs/edge.md` describes the behaviour and the settings.
//!
//! Modules, in the order a connection meets them:
//! - [`config`]: settings (flags and env).
//! - [`app`]: [`App::build`] and [`App::run`].
//! - [`connect`]: the connect middleware (token, session, subscriptions).
//! - [`queue`]: per-socket ordering (one queue per socket, rate limit at arrival).
//! - [`events`]: what each client event does.
//! - [`payload`]: parsing client payloads into typed requests.
//! - [`delivery`]: reference-counted delivery subscriptions and emitting deliveries.
//! - [`session`]: sessions and the registry (revocation, snapshots).
//! - [`presence`]: reporting to presence and asking it (via `sb_presence_client`).
//! - [`control`]: access changes (revocation) from auth.
//! - [`http`]: `/auth/login`, health, readiness, metrics, CORS.
//! - [`metrics`], [`error`], [`socket`]: the pieces they share (each
//!   socket's event budget is a [`sb_presence_client::TokenBucket`]).

pub mod app;
pub mod config;
pub mod connect;
pub mod control;
mod ctx;
pub mod delivery;
pub mod error;
pub mod events;
pub mod http;
pub mod metrics;
pub mod payload;
pub mod presence;
pub mod queue;
pub mod session;
pub mod socket;

pub use app::{App, EdgeError};
pub use config::Config;
pub use connect::ConnectRefusal;
pub use error::ClientError;
