//! The Switchboard edge: the Socket.IO gateway clients connect to.
//!
//! It terminates Socket.IO v4 (websocket and long-polling) with axum and
//! socketioxide, authenticates every connection through auth's gRPC
//! `VerifyToken`, turns client events into NATS messages and delivers what
//! NATS routes to it to its local sockets. It keeps no state another edge
//! needs. `docs/edge.md` describes the behaviour and the settings.
//!
//! Modules, from the bottom up (a module only uses the ones above it in
//! this list; `docs/architecture.md` draws the layers):
//! - [`config`]: settings (flags and env).
//! - [`error`]: every client-facing text: [`ClientError`] (exceptions and
//!   error acks), [`ConnectRefusal`] (`connect_error`), [`error::RefusedAccess`].
//! - [`metrics`], [`bucket`] (a token bucket: each socket's event budget),
//!   [`throttle`] (the edge's presence frame budget), [`admission`] (new
//!   connections per source address).
//! - [`payload`]: parsing client frames and payloads into typed requests.
//! - [`socket`]: writing to one socket (emits, acks, error replies).
//! - [`ingest`]: batched publishing of accepted messages to the ingest stream.
//! - [`delivery`]: delivery subscriptions and emitting what NATS routes here.
//! - [`session`]: sessions, their queued work, and the registry.
//! - [`transport`]: closing one socket's transport (its TCP connection or
//!   polling session), so the client reconnects by itself.
//! - [`drain`]: the drain (SIGTERM or the admin's `Drain`): not ready,
//!   handshakes refused, transports closed gradually.
//! - [`presence`]: reporting to presence and asking it (via `sb_presence_client`).
//! - `ctx`: what every event handler shares.
//! - [`events`]: what each client event does, and a socket's open and close steps.
//! - [`queue`]: per-socket ordering (one queue per socket, rate limit at arrival).
//! - [`connect`]: the connect middleware (token, session, subscriptions).
//! - [`control`]: access changes (revocation) from auth.
//! - [`http`]: `/auth/login`, CORS, and the readiness probes.
//! - [`app`]: [`App::build`] and [`App::run`] (through `sb_service`).

pub mod admission;
pub mod app;
pub mod bucket;
pub mod config;
pub mod connect;
pub mod control;
mod ctx;
pub mod delivery;
pub mod drain;
pub mod error;
pub mod events;
pub mod http;
pub mod ingest;
pub mod metrics;
mod outbox;
pub mod payload;
pub mod presence;
pub mod queue;
pub mod session;
pub mod socket;
pub mod throttle;
pub mod transport;

pub use app::{App, EdgeError};
pub use config::Config;
pub use error::{ClientError, ConnectRefusal};
