//! Settings of the auth service: every field is a flag and an env var.

use std::net::SocketAddr;
use std::time::Duration;

use sb_config::{DatabaseArgs, NatsArgs, Secret, TelemetryArgs};

/// The signing key used in dev mode when `JWT_SECRET` is not set. Public by
/// design: tokens signed with it are worthless outside a laptop.
pub const DEV_JWT_SECRET: &str = "switchboard-dev-secret-do-not-use-in-production";

/// Where users are stored when `DATABASE_URL` is not set: a SQLite file in
/// the working directory, so a local run needs no setup.
pub const DEFAULT_DATABASE_URL: &str = "sqlite:auth.db";

/// Longest lifetime a token may be given (one year), for `TOKEN_TTL` and
/// `IssueToken`.
pub const MAX_TOKEN_TTL_SECS: u64 = 31_536_000;

/// Settings renamed in wave 2 (durations are written like `5s` now); a
/// deployment that still sets an old name fails to start with the new one.
pub const RENAMED: &[(&str, &str)] = &[
    ("TOKEN_TTL_SECS", "TOKEN_TTL"),
    ("JWT_CLOCK_SKEW_SECS", "JWT_CLOCK_SKEW"),
    ("LOGIN_FAILURE_WINDOW_SECS", "LOGIN_FAILURE_WINDOW"),
];

/// Settings for the auth service.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "sb-auth",
    version,
    about = "Switchboard auth service: users, JWT access tokens, VerifyToken",
    mut_arg("database_url", |arg| arg.required(false).default_value(DEFAULT_DATABASE_URL))
)]
pub struct Config {
    /// Address the gRPC server binds (port 0 picks a free port).
    #[arg(long, env = "GRPC_ADDR", default_value = "0.0.0.0:50051")]
    pub grpc_addr: SocketAddr,
    /// Address of the HTTP endpoint serving `/metrics`, `/healthz` and `/readyz`.
    #[arg(long, env = "METRICS_ADDR", default_value = "0.0.0.0:9101")]
    pub metrics_addr: SocketAddr,
    /// HMAC-SHA256 key that signs and verifies access tokens. Required
    /// unless `--dev`; use at least 32 random bytes.
    #[arg(long, env = "JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<Secret>,
    /// The secret `JWT_SECRET` replaced, during a key rotation: tokens it
    /// signed are still accepted (until they expire), new ones are signed with
    /// `JWT_SECRET`. Remove it once the longest token lifetime has passed.
    #[arg(long, env = "JWT_SECRET_PREVIOUS", hide_env_values = true)]
    pub jwt_secret_previous: Option<Secret>,
    /// Dev mode: without `JWT_SECRET`, sign with a fixed, publicly known dev
    /// key (with a warning). Never in production.
    #[arg(long = "dev", env = "SB_DEV")]
    pub dev: bool,
    /// Lifetime of tokens from `Login` and of `IssueToken` with ttl 0 (1s to 1 year).
    #[arg(long, env = "TOKEN_TTL", default_value = "1h",
          value_parser = sb_config::duration_between(Duration::from_secs(1), Duration::from_secs(MAX_TOKEN_TTL_SECS)))]
    pub token_ttl: Duration,
    /// How far in the future a token's `iat` / `nbf` may lie and still be
    /// accepted, absorbing clock differences between auth replicas. `exp`
    /// gets no leeway: an expired token is expired.
    #[arg(long, env = "JWT_CLOCK_SKEW", default_value = "5s", value_parser = sb_config::parse_duration)]
    pub jwt_clock_skew: Duration,
    /// Failed logins for one email that cost nothing; each further one locks
    /// the email (RESOURCE_EXHAUSTED) for twice as long as the last, from
    /// 1 s up to `LOGIN_FAILURE_WINDOW`. Counted by all replicas together
    /// (NATS); 0 turns the limit off (docs/auth.md).
    #[arg(long, env = "LOGIN_MAX_FAILURES", default_value_t = 10)]
    pub login_max_failures: u32,
    /// The longest lock, and how long after an email's last failure its
    /// count is forgotten (1s to 1d).
    #[arg(long, env = "LOGIN_FAILURE_WINDOW", default_value = "5m",
          value_parser = sb_config::duration_between(Duration::from_secs(1), Duration::from_secs(86_400)))]
    pub login_failure_window: Duration,
    /// Longest graceful stop: in-flight calls finish, then NATS and the
    /// database are closed (keep it below the orchestrator's grace period).
    #[arg(long, env = "SHUTDOWN_TIMEOUT", default_value = "10s", value_parser = sb_config::parse_duration)]
    pub shutdown_timeout: Duration,
    /// Replicas of the `<PREFIX>_LOGIN` stream when auth creates it (3 on a NATS cluster).
    #[arg(long, env = "JETSTREAM_REPLICAS", default_value_t = 1)]
    pub stream_replicas: usize,
    /// Email of the first admin, created at start-up when no user has it.
    #[arg(long, env = "BOOTSTRAP_ADMIN_EMAIL", requires = "bootstrap_admin_password")]
    pub bootstrap_admin_email: Option<String>,
    /// Password of the first admin (used only when it is created).
    #[arg(long, env = "BOOTSTRAP_ADMIN_PASSWORD", hide_env_values = true, requires = "bootstrap_admin_email")]
    pub bootstrap_admin_password: Option<Secret>,
    /// Where users are stored: `sqlite:auth.db` (zero setup) or `postgres://…`.
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// NATS, for the access-change events edges act on.
    #[command(flatten)]
    pub nats: NatsArgs,
    /// Logging and tracing.
    #[command(flatten)]
    pub telemetry: TelemetryArgs,
}

impl Config {
    /// The default token lifetime.
    pub fn token_ttl(&self) -> Duration {
        self.token_ttl
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory as _, Parser as _};

    use super::*;

    #[test]
    fn command_is_well_formed() {
        Config::command().debug_assert();
    }

    #[test]
    fn defaults_and_flags() {
        let config = Config::try_parse_from(["sb-auth", "--dev"]).unwrap();
        assert_eq!(config.database.url, DEFAULT_DATABASE_URL);
        assert_eq!(config.grpc_addr.to_string(), "0.0.0.0:50051");
        assert_eq!(config.metrics_addr.to_string(), "0.0.0.0:9101");
        assert_eq!(config.token_ttl(), Duration::from_secs(3600));
        assert!(config.dev);
        assert!(config.jwt_secret.is_none());
        assert!(Config::try_parse_from(["sb-auth", "--database-url", "x", "--token-ttl", "0s"]).is_err());
        // One of the bootstrap pair alone is refused.
        assert!(
            Config::try_parse_from(["sb-auth", "--database-url", "x", "--bootstrap-admin-email", "a@b.c"]).is_err()
        );
    }
}
