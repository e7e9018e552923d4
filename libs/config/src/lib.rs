//! Settings shared by every Switchboard service.
//!
//! Each service has one `Config` struct deriving [`clap::Parser`]; the pieces
//! every service needs live here and are `#[command(flatten)]`ed into it, so a
//! setting has one name (flag and env var) everywhere:
//!
//! | piece | env vars |
//! |---|---|
//! | [`NatsArgs`] | `NATS_URL`, `SUBJECT_PREFIX` |
//! | [`DatabaseArgs`] | `DATABASE_URL`, `DATABASE_MAX_CONNECTIONS` |
//! | [`TelemetryArgs`] | `RUST_LOG`, `LOG_FORMAT`, `OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_SERVICE_NAME`, `OTEL_SDK_DISABLED` |
//!
//! Secrets are [`Secret`]s, which never print their value. [`bind_listener`]
//! binds a configured address and names the listener when it cannot.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

use tokio::net::TcpListener;

/// A secret setting (a signing key, a password). `Debug` and `Display` print
/// `***`, so a config struct can be logged whole; read it with [`Secret::expose`].
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// Returns the secret itself; call it only where the value is used.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the secret is the empty string.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}

/// Where NATS is and which subject prefix this deployment uses.
#[derive(Debug, Clone, clap::Args)]
pub struct NatsArgs {
    /// NATS server URL(s), comma-separated (e.g. `nats://nats-0:4222,nats://nats-1:4222`).
    #[arg(id = "nats_url", long = "nats-url", env = "NATS_URL", default_value = "nats://127.0.0.1:4222")]
    pub url: String,
    /// First token of every subject and part of every stream name, so several
    /// teams or environments can share one NATS cluster. Letters, digits, `_` and `-`.
    #[arg(long = "subject-prefix", env = "SUBJECT_PREFIX", default_value = "sb")]
    pub subject_prefix: String,
}

impl NatsArgs {
    /// Settings for a NATS server at `url` with the default prefix.
    pub fn for_url(url: impl Into<String>) -> Self {
        Self { url: url.into(), subject_prefix: "sb".to_owned() }
    }
}

/// Which database a service stores into.
#[derive(Debug, Clone, clap::Args)]
pub struct DatabaseArgs {
    /// `postgres://user@host/db` or `sqlite:path/to/file.db` (created when missing).
    #[arg(id = "database_url", long = "database-url", env = "DATABASE_URL")]
    pub url: String,
    /// Size of the connection pool.
    #[arg(long = "database-max-connections", env = "DATABASE_MAX_CONNECTIONS", default_value_t = 10)]
    pub max_connections: u32,
}

impl DatabaseArgs {
    /// Settings for the database at `url` with the default pool size.
    pub fn for_url(url: impl Into<String>) -> Self {
        Self { url: url.into(), max_connections: 10 }
    }
}

/// How a service logs and traces.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TelemetryArgs {
    /// Log filter, e.g. `info` or `sb_edge=debug,info`.
    #[arg(long = "log", env = "RUST_LOG", default_value = "info")]
    pub log_filter: String,
    /// `text` for people, `json` for log collectors.
    #[arg(long = "log-format", env = "LOG_FORMAT", default_value = "text")]
    pub log_format: LogFormat,
    /// OTLP gRPC endpoint for traces (Jaeger: `http://jaeger:4317`). Traces are
    /// still created and propagated without one; they are just not exported.
    #[arg(long = "otlp-endpoint", env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
    /// Overrides the service name reported in traces.
    #[arg(long = "otel-service-name", env = "OTEL_SERVICE_NAME")]
    pub service_name: Option<String>,
    /// `true` turns the OpenTelemetry SDK off entirely.
    #[arg(long = "otel-sdk-disabled", env = "OTEL_SDK_DISABLED", default_value_t = false)]
    pub sdk_disabled: bool,
}

/// Log output format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Completes when the process is asked to stop: SIGTERM (Kubernetes, docker)
/// or ctrl-c. Pass it to a service's `run`.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for ctrl-c; stop the process with SIGTERM");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("ctrl-c received, shutting down"),
        () = terminate => tracing::info!("SIGTERM received, shutting down"),
    }
}

/// A listener that could not be bound: which one, where, and why.
#[derive(Debug, thiserror::Error)]
#[error("bind {what} on {addr}: {source}")]
pub struct BindError {
    /// Which listener (`gRPC`, `metrics`).
    pub what: &'static str,
    /// The address asked for.
    pub addr: SocketAddr,
    /// Why it failed.
    pub source: std::io::Error,
}

/// Binds the `what` listener (`gRPC`, `metrics`) on `addr`; port 0 picks a
/// free port. The error says which listener and where, so an operator can
/// tell a taken gRPC port from a taken metrics port.
pub async fn bind_listener(what: &'static str, addr: SocketAddr) -> Result<TcpListener, BindError> {
    TcpListener::bind(addr).await.map_err(|source| BindError { what, addr, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// NatsArgs and DatabaseArgs both have a `url` field; their arg ids must
    /// differ or clap panics (debug) / mixes their values when both are flattened.
    #[test]
    fn shared_args_flatten_together() {
        use clap::{CommandFactory as _, Parser as _};
        #[derive(Debug, clap::Parser)]
        struct Both {
            #[command(flatten)]
            nats: NatsArgs,
            #[command(flatten)]
            database: DatabaseArgs,
            #[command(flatten)]
            telemetry: TelemetryArgs,
        }
        Both::command().debug_assert();
        let both = Both::try_parse_from(["x", "--nats-url", "nats://n:1", "--database-url", "sqlite:d.db"]).unwrap();
        assert_eq!((both.nats.url.as_str(), both.database.url.as_str()), ("nats://n:1", "sqlite:d.db"));
    }

    #[test]
    fn secret_never_prints_its_value() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret:?} {secret}"), "*** ***");
        assert_eq!(secret.expose(), "hunter2");
    }

    #[tokio::test]
    async fn a_taken_address_names_the_listener_and_where() {
        let taken = bind_listener("gRPC", "127.0.0.1:0".parse().unwrap()).await.expect("bind a free port");
        let addr = taken.local_addr().expect("bound address");
        let error = bind_listener("metrics", addr).await.expect_err("the port is taken");
        assert_eq!((error.what, error.addr), ("metrics", addr));
        assert!(error.to_string().starts_with(&format!("bind metrics on {addr}: ")), "{error}");
    }
}
