//! The messaging service: stores every message an edge accepted and routes
//! it back to the edges that have recipients.
//!
//! - [`ingest`]: the durable JetStream pull consumer shared by all replicas;
//!   batches are stored, routed and only then acked.
//! - [`locate`]: where private recipients are, kept from presence's answers
//!   until the presence stream says they changed.
//! - [`route`]: validation of an ingested message and the deliveries it
//!   becomes (`deliver.room.<r>`, `deliver.user.<u>`, `deliver.all`).
//! - [`store`]: the `messages` table on PostgreSQL or SQLite.
//! - [`query`]: history pages and pending claims, shared by NATS and gRPC.
//! - [`requests`]: the NATS requests the edge sends (`get_history`, pending
//!   claims on connect).
//! - [`grpc`]: the admin `MessagingService` (History, Notify, Announce).
//! - [`metrics`]: Prometheus metrics on `METRICS_ADDR`.
//!
//! - [`app`]: [`App::build`] connects and binds, [`App::run`] serves until
//!   shutdown through the shared runner (`sb_service`).
//!
//! `docs/messaging.md` is the operator's view.

pub mod app;
pub mod config;
pub mod grpc;
pub mod ingest;
pub mod locate;
pub mod metrics;
pub mod query;
pub mod requests;
pub mod route;
pub mod store;

pub use app::{App, Error};
pub use config::Config;
