//! How every Switchboard service starts, serves and stops.
//!
//! A service's `App::build` binds its listeners and connects; its
//! `App::run` hands everything to a [`Service`]:
//!
//! ```ignore
//! let service = Service::new("messaging");
//! service.health().set("replay", Check::pending("in progress"));
//! let grpc = sb_telemetry::grpc::router(service.grpc_health(&[NAME]), reflection).add_service(api);
//! service.serve_grpc(grpc_listener, grpc);
//! service.serve_http("metrics", metrics_listener, service.ops_router(registry));
//! service.spawn("ingest", ingest.run(service.stop_token()));
//! service.run(shutdown, settings.shutdown_timeout, |deadline| drain(deadline), || release()).await
//! ```
//!
//! - [`runner`]: [`Service`]: every server and task goes through one
//!   tracker; any server or task that fails stops the service with its
//!   error; a stop marks every health status not serving first, then drains
//!   and releases, all within one bounded time.
//! - [`health`]: [`Health`], the named readiness checks behind `/readyz`
//!   (as JSON) and the gRPC health service (overall and per service).
//! - [`ops`]: the HTTP operations endpoint: `/metrics`, `/healthz`, `/readyz`.
//! - [`backoff`]: [`Backoff`], the one retry delay every reconnect loop uses.

pub mod backoff;
pub mod health;
pub mod ops;
pub mod runner;

pub use backoff::Backoff;
pub use health::{Check, Health};
pub use runner::{Service, ServiceError};
