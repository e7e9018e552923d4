//! The test harness: real infrastructure for cross-service tests.
//!
//! - [`NatsServer`] starts a private `nats-server` with JetStream on a free
//!   port and its own store directory, and kills it on drop.
//! - [`TestDatabase`] creates a fresh PostgreSQL database (through
//!   `TEST_DATABASE_URL`, default `postgres://postgres@127.0.0.1:5432/postgres`)
//!   or a temporary SQLite file, and drops it afterwards.
//!
//! - [`PrivatePostgres`] runs a PostgreSQL server of the test's own (TLS
//!   with a test certificate, or one the test restarts); [`tls::TestCa`]
//!   makes the certificates.
//! - [`RunningService`] runs a service's `App::run` on the test's runtime
//!   until the test stops or drops it.
//! - [`CrashableRuntime`] runs a service on its own runtime so a test can
//!   kill it as `kill -9` would.
//! - [`otlp::Collector`] receives OTLP spans (the tracing test, `otlp-sink`).
//! - [`grpc::list_services`] asks a gRPC server's reflection what it serves.
//! - [`http`] sends plain HTTP requests to `/metrics`, `/readyz` and the
//!   edge's HTTP API, and reads metric values.
//!
//! Tests themselves live in `tests/it/` (one binary).

pub mod auth;
pub mod cluster;
mod crash;
mod database;
pub mod edge;
pub mod grpc;
pub mod http;
pub mod jwt;
pub mod messaging;
mod nats;
pub mod otlp;
pub mod postgres;
pub mod presence;
mod running;
pub mod stack;
pub mod tls;

pub use crash::CrashableRuntime;
pub use database::{DbKind, TestDatabase};
pub use nats::{NatsServer, nats_server_binary, round_trip};
pub use postgres::PrivatePostgres;
pub use running::RunningService;

use std::future::Future;
use std::time::Duration;

/// Polls `check` every 20 ms until it returns `Some`, or panics with `what`
/// after `timeout`. Tests wait for conditions, never for fixed sleeps.
pub async fn wait_until<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
