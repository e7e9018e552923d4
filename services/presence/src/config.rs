//! [`Config`]: every setting of the presence service, as a flag or an env var.

use std::net::SocketAddr;
use std::time::Duration;

use crate::state::Scope;

/// Settings for the presence service; every field is a flag or an env var.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "sb-presence", about = "Switchboard presence: who is online, cluster-wide")]
pub struct Config {
    /// Address the gRPC server (PresenceService, health, reflection) binds; port 0 in tests.
    #[arg(long, env = "GRPC_ADDR", default_value = "0.0.0.0:50052")]
    pub grpc_addr: SocketAddr,
    /// Address of `/metrics`, `/healthz` and `/readyz`.
    #[arg(long, env = "METRICS_ADDR", default_value = "0.0.0.0:9102")]
    pub metrics_addr: SocketAddr,
    /// The auth service's gRPC address, for checking admin credentials.
    #[arg(long, env = "AUTH_ADDR", default_value = "127.0.0.1:50051")]
    pub auth_addr: String,
    /// Who hears about users coming and going: `all` (every socket, the
    /// seed's rule), `rooms` (users sharing a room) or `none`. Every replica
    /// must use the same value.
    #[arg(long, env = "PRESENCE_SCOPE", value_enum, default_value = "all")]
    pub scope: Scope,
    /// How long the presence stream keeps events (e.g. `1h`, `30m`). Live
    /// edges are asked for a fresh snapshot every third of this.
    /// At least 2 minutes, the stream's duplicate window.
    #[arg(long, env = "PRESENCE_STREAM_MAX_AGE", value_parser = parse_stream_max_age, default_value = "1h")]
    pub stream_max_age: Duration,
    /// Replicas of the presence and lease streams (1 for a single nats-server,
    /// 3 in a cluster); the same setting as the other services'.
    #[arg(long = "jetstream-replicas", env = "JETSTREAM_REPLICAS", default_value_t = 1)]
    pub stream_replicas: usize,
    /// Transitions are collected over this window and published together
    /// (online/offline changes share batched messages).
    #[arg(long, env = "PRESENCE_COALESCE_WINDOW", value_parser = sb_config::parse_duration, default_value = "100ms")]
    pub coalesce_window: Duration,
    /// A window with more transitions than this is a storm: room joins and
    /// leaves that undo each other within it are not announced at all. At or
    /// below it every room change is announced, in order (online/offline
    /// changes that undo each other within a window never are). 0 always
    /// cancels such pairs.
    #[arg(long, env = "PRESENCE_COALESCE_ABOVE", default_value_t = 1000)]
    pub coalesce_above: usize,
    /// An edge is declared dead after three of its heartbeat intervals
    /// without a heartbeat, but never sooner than this...
    #[arg(long, env = "PRESENCE_EDGE_TIMEOUT_MIN", value_parser = sb_config::parse_duration, default_value = "1s")]
    pub edge_timeout_min: Duration,
    /// ...and never later than this (keeps edge death to removal under 15 s).
    #[arg(long, env = "PRESENCE_EDGE_TIMEOUT_MAX", value_parser = sb_config::parse_duration, default_value = "10s")]
    pub edge_timeout_max: Duration,
    /// The emission lease expires this long after its holder's last renewal;
    /// another replica then takes over publishing transitions.
    #[arg(long, env = "PRESENCE_LEASE_TTL", value_parser = sb_config::parse_duration, default_value = "3s")]
    pub lease_ttl: Duration,
    /// Longest graceful stop: announce what is owed, release the lease,
    /// finish queries, close NATS (keep it below the orchestrator's grace period).
    #[arg(long, env = "SHUTDOWN_TIMEOUT", default_value = "10s", value_parser = sb_config::parse_duration)]
    pub shutdown_timeout: Duration,
    /// This replica's name in the lease and logs (default: a new UUIDv7).
    #[arg(long, env = "PRESENCE_REPLICA_ID")]
    pub replica_id: Option<String>,
    /// NATS_URL, SUBJECT_PREFIX.
    #[command(flatten)]
    pub nats: sb_config::NatsArgs,
    /// RUST_LOG, OTEL_*.
    #[command(flatten)]
    pub telemetry: sb_config::TelemetryArgs,
}

impl Config {
    /// Defaults for a replica on loopback port 0 against `nats_url` and auth at `auth_addr` (for tests).
    pub fn for_tests(nats_url: &str, auth_addr: &str) -> Self {
        Self {
            grpc_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            metrics_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            auth_addr: auth_addr.to_owned(),
            scope: Scope::All,
            stream_max_age: sb_events::presence::DEFAULT_STREAM_MAX_AGE,
            stream_replicas: 1,
            coalesce_window: Duration::from_millis(100),
            coalesce_above: 1000,
            edge_timeout_min: Duration::from_secs(1),
            edge_timeout_max: Duration::from_secs(10),
            lease_ttl: Duration::from_secs(3),
            shutdown_timeout: Duration::from_secs(10),
            replica_id: None,
            nats: sb_config::NatsArgs::for_url(nats_url),
            telemetry: sb_config::TelemetryArgs::default(),
        }
    }
}

/// `PRESENCE_STREAM_MAX_AGE`: a duration no shorter than the stream's
/// duplicate window, which JetStream requires to fit inside it.
fn parse_stream_max_age(text: &str) -> Result<Duration, String> {
    let age = sb_config::parse_duration(text)?;
    let window = sb_events::bus::DUPLICATE_WINDOW;
    if age < window {
        return Err(format!(
            "must be at least {}s: the presence stream drops republished events within a {}s duplicate window, which must fit inside it",
            window.as_secs(),
            window.as_secs()
        ));
    }
    Ok(age)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;
    use sb_config::parse_duration;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("3s"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("3d").is_err());
    }

    #[test]
    fn defaults_parse() {
        let config = Config::try_parse_from(["sb-presence"]).expect("defaults");
        assert_eq!(config.grpc_addr.port(), 50052);
        assert_eq!(config.metrics_addr.port(), 9102);
        assert_eq!(config.scope, Scope::All);
        assert!(Config::try_parse_from(["sb-presence", "--scope", "everyone"]).is_err());
    }

    #[test]
    fn a_stream_age_shorter_than_the_duplicate_window_is_refused() {
        let error = Config::try_parse_from(["sb-presence", "--stream-max-age", "30s"]).unwrap_err().to_string();
        assert!(error.contains("at least 120s"), "{error}");
        let config = Config::try_parse_from(["sb-presence", "--stream-max-age", "2m"]).expect("2m is the shortest");
        assert_eq!(config.stream_max_age, Duration::from_secs(120));
    }
}
