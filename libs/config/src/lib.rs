//! Settings shared by every Switchboard service.
//!
//! Each service has one `Config` struct deriving [`clap::Parser`]; the pieces
//! every service needs live here and are `#[command(flatten)]`ed into it, so a
//! setting has one name (flag and env var) everywhere:
//!
//! | piece | env vars |
//! |---|---|
//! | [`NatsArgs`] | `NATS_URL`, `SUBJECT_PREFIX`, `NATS_USER`, `NATS_PASSWORD`, `NATS_TOKEN`, `NATS_NKEY_SEED_FILE`, `NATS_CREDS_FILE`, `NATS_TLS_CA_FILE`, `NATS_TLS_CERT_FILE`, `NATS_TLS_KEY_FILE`, `NATS_TLS_REQUIRED` |
//! | [`DatabaseArgs`] | `DATABASE_URL`, `DATABASE_MAX_CONNECTIONS` |
//! | [`TelemetryArgs`] | `RUST_LOG`, `LOG_FORMAT`, `OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_SERVICE_NAME`, `OTEL_SDK_DISABLED` |
//!
//! Secrets are [`Secret`]s, which never print their value. [`bind_listener`]
//! binds a configured address and names the listener when it cannot.
//!
//! Durations are written one way everywhere: a number and a unit, `250ms`,
//! `5s`, `2m`, `1h` ([`parse_duration`], the `value_parser` of every
//! duration setting), in settings named for what they are (`SHUTDOWN_TIMEOUT`,
//! never `SHUTDOWN_TIMEOUT_MS`). [`check_renamed_env`] refuses to start when
//! a setting still uses a name from before the rename, so a value is never
//! silently ignored.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use tokio::net::TcpListener;

mod nats;

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

/// Parses a duration written as a number and a unit: `ms`, `s`, `m` or `h`
/// (`250ms`, `5s`, `2m`, `1h`). A bare number means seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: u64 = number.parse().map_err(|_| format!("{text:?} is not a duration like 250ms, 5s, 2m or 1h"))?;
    let seconds = |factor: u64| Duration::from_secs(value.saturating_mul(factor));
    match unit.trim() {
        "ms" => Ok(Duration::from_millis(value)),
        "" | "s" => Ok(seconds(1)),
        "m" => Ok(seconds(60)),
        "h" => Ok(seconds(3600)),
        other => Err(format!("{text:?} has unknown unit {other:?}; use ms, s, m or h (250ms, 5s, 2m, 1h)")),
    }
}

/// A [`parse_duration`] that also refuses values outside `min..=max`, for
/// `value_parser = sb_config::duration_between(..)`.
pub fn duration_between(
    min: Duration,
    max: Duration,
) -> impl Fn(&str) -> Result<Duration, String> + Clone + Send + Sync + 'static {
    move |text| {
        let value = parse_duration(text)?;
        if value < min || value > max {
            return Err(format!("{text:?} must be from {} to {}", format_duration(min), format_duration(max)));
        }
        Ok(value)
    }
}

/// Writes a duration the way [`parse_duration`] reads it, in the largest
/// unit that keeps it whole (`1500ms`, `30s`, `2m`).
pub fn format_duration(duration: Duration) -> String {
    let ms = duration.as_millis();
    if !ms.is_multiple_of(1000) || ms == 0 {
        return format!("{ms}ms");
    }
    let secs = ms / 1000;
    match secs {
        s if s.is_multiple_of(3600) => format!("{}h", s / 3600),
        s if s.is_multiple_of(60) => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// A setting that is set under a name it no longer has.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{old} was renamed to {new}: set {new} instead (durations are written like 250ms, 5s or 2m)")]
pub struct RenamedSetting {
    /// The old name, still set in the environment.
    pub old: &'static str,
    /// What it is called now.
    pub new: &'static str,
}

/// Fails if any old name of `renamed` (`(old, new)` pairs) is set in the
/// environment, so a deployment that was not updated stops with a clear
/// message instead of running with a default.
pub fn check_renamed_env(renamed: &[(&'static str, &'static str)]) -> Result<(), RenamedSetting> {
    check_renamed(renamed, |name| std::env::var_os(name).is_some())
}

fn check_renamed(
    renamed: &[(&'static str, &'static str)],
    is_set: impl Fn(&str) -> bool,
) -> Result<(), RenamedSetting> {
    match renamed.iter().find(|(old, _)| is_set(old)) {
        Some((old, new)) => Err(RenamedSetting { old, new }),
        None => Ok(()),
    }
}

/// What a service binary was asked to do: run (the default), or
/// `healthcheck` (ask the running service's own readiness endpoint and exit
/// 0 or 1, for container runtimes whose image has no curl).
#[derive(Debug)]
pub enum Invocation<C> {
    /// Run the service with these settings.
    Run(C),
    /// `<binary> healthcheck`: probe the service these settings describe.
    Healthcheck(C),
}

/// Parses the command line and environment into `C`, recognising a leading
/// `healthcheck` word (which `C`'s own arguments never take). Bad settings
/// exit with clap's message naming the setting, as `C::parse` does.
pub fn parse_invocation<C: clap::Parser>() -> Invocation<C> {
    parse_invocation_from(std::env::args_os())
}

/// [`parse_invocation`] from given arguments (the first is the binary name).
pub fn parse_invocation_from<C: clap::Parser>(args: impl IntoIterator<Item = std::ffi::OsString>) -> Invocation<C> {
    let mut args: Vec<std::ffi::OsString> = args.into_iter().collect();
    let healthcheck = args.get(1).is_some_and(|word| word == "healthcheck");
    if healthcheck {
        args.remove(1);
    }
    let command = C::command().after_help(
        "Run `<binary> healthcheck` (with the same settings) to ask a running instance's readiness \
         endpoint: exit 0 when it is ready, 1 with the reason otherwise.",
    );
    let matches = command.get_matches_from(args);
    let config = C::from_arg_matches(&matches).unwrap_or_else(|error| error.exit());
    if healthcheck { Invocation::Healthcheck(config) } else { Invocation::Run(config) }
}

pub use nats::{AuthSource, NatsArgs, NatsAuth, NatsServers, NatsSettingError, NatsTls, redact_url};

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

/// The accept queue asked for on every listener: a connect storm must not
/// overflow it (the kernel caps it at `net.core.somaxconn`, 4096 on current
/// Linux; tokio's default is 1024).
pub const LISTEN_BACKLOG: u32 = 4096;

/// Binds the `what` listener (`gRPC`, `metrics`, `Socket.IO`) on `addr`
/// with a [`LISTEN_BACKLOG`] accept queue; port 0 picks a free port. The
/// error says which listener and where, so an operator can tell a taken
/// gRPC port from a taken metrics port.
pub async fn bind_listener(what: &'static str, addr: SocketAddr) -> Result<TcpListener, BindError> {
    let error = |source| BindError { what, addr, source };
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4() } else { tokio::net::TcpSocket::new_v6() }
        .map_err(error)?;
    socket.set_reuseaddr(true).map_err(error)?;
    socket.bind(addr).map_err(error)?;
    socket.listen(LISTEN_BACKLOG).map_err(error)
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
    fn durations_have_one_format() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert_eq!(parse_duration(" 0 "), Ok(Duration::ZERO));
        for bad in ["", "ms", "5d", "fast", "-1s", "1.5s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        for text in ["250ms", "1500ms", "30s", "2m", "1h", "0ms"] {
            assert_eq!(format_duration(parse_duration(text).unwrap()), text);
        }
    }

    #[test]
    fn bounded_durations() {
        let parser = duration_between(Duration::from_secs(1), Duration::from_secs(3600));
        assert_eq!(parser("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parser("0s"), Err("\"0s\" must be from 1s to 1h".to_owned()));
        assert!(parser("2h").is_err());
    }

    #[test]
    fn renamed_settings_are_refused() {
        let renamed = [("SHUTDOWN_TIMEOUT_MS", "SHUTDOWN_TIMEOUT")];
        assert_eq!(check_renamed(&renamed, |_| false), Ok(()));
        let error = check_renamed(&renamed, |name| name == "SHUTDOWN_TIMEOUT_MS").unwrap_err();
        assert_eq!(
            error.to_string(),
            "SHUTDOWN_TIMEOUT_MS was renamed to SHUTDOWN_TIMEOUT: set SHUTDOWN_TIMEOUT instead (durations are written like 250ms, 5s or 2m)"
        );
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
