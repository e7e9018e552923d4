//! Settings of the messaging service; every field is a flag and an env var.

use std::net::SocketAddr;
use std::time::Duration;

/// Where messages are stored when `DATABASE_URL` is not set: a SQLite file
/// in the working directory, so a local run needs no setup.
pub const DEFAULT_DATABASE_URL: &str = "sqlite:messaging.db";

/// Settings for the messaging service.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "sb-messaging",
    version,
    about = "Switchboard messaging: stores accepted messages and routes them to the edges",
    mut_arg("database_url", |arg| arg.required(false).default_value(DEFAULT_DATABASE_URL))
)]
pub struct Config {
    /// Address the gRPC server (`MessagingService`, health, reflection) binds; port 0 picks a free one.
    #[arg(long, env = "GRPC_ADDR", default_value = "0.0.0.0:50053")]
    pub grpc_addr: SocketAddr,
    /// Address of `/metrics`, `/healthz` and `/readyz`.
    #[arg(long, env = "METRICS_ADDR", default_value = "0.0.0.0:9103")]
    pub metrics_addr: SocketAddr,
    /// The auth service's gRPC address, used to check admin callers of the gRPC API.
    #[arg(long, env = "AUTH_ADDR", default_value = "http://127.0.0.1:50051")]
    pub auth_addr: String,
    /// Most ingest messages stored and routed together in one transaction.
    #[arg(long, env = "INGEST_BATCH_SIZE", default_value_t = 256, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub ingest_batch_size: u16,
    /// How long the stream waits for messaging to ack a message before
    /// redelivering it (also how soon messages held by a crashed replica come back).
    #[arg(long, env = "INGEST_ACK_WAIT", default_value = "30s", value_parser = sb_config::parse_duration)]
    pub ingest_ack_wait: Duration,
    /// Most un-acked ingest messages handed out across all replicas.
    #[arg(long, env = "INGEST_MAX_ACK_PENDING", default_value_t = 4096, value_parser = clap::value_parser!(i64).range(1..))]
    pub ingest_max_ack_pending: i64,
    /// Delay before a batch that could not be stored or routed is retried.
    #[arg(long, env = "INGEST_RETRY_DELAY", default_value = "1s", value_parser = sb_config::parse_duration)]
    pub ingest_retry_delay: Duration,
    /// Replicas of the ingest stream when messaging creates it (3 on a NATS cluster).
    #[arg(long, env = "JETSTREAM_REPLICAS", default_value_t = 1)]
    pub stream_replicas: usize,
    /// How long to wait for presence to say which private recipients are online.
    #[arg(long, env = "PRESENCE_TIMEOUT", default_value = "500ms", value_parser = sb_config::parse_duration)]
    pub presence_timeout: Duration,
    /// How long this replica keeps presence's answer about where a private
    /// recipient is; the presence stream's events forget it sooner when it
    /// changes (docs/messaging.md). `0s` asks presence for every batch.
    #[arg(long, env = "LOCATE_CACHE_TTL", default_value = "10s", value_parser = sb_config::parse_duration)]
    pub locate_cache_ttl: Duration,
    /// Longest `Notify`/`Announce` text, in bytes (the edge's `send_message` limit).
    #[arg(long, env = "MAX_MESSAGE_BYTES", default_value_t = 4096)]
    pub max_message_bytes: usize,
    /// How long shutdown waits for in-flight work before giving up.
    #[arg(long, env = "SHUTDOWN_TIMEOUT", default_value = "20s", value_parser = sb_config::parse_duration)]
    pub shutdown_timeout: Duration,
    /// Where messages are stored.
    #[command(flatten)]
    pub database: sb_config::DatabaseArgs,
    /// NATS.
    #[command(flatten)]
    pub nats: sb_config::NatsArgs,
    /// Logs and traces.
    #[command(flatten)]
    pub telemetry: sb_config::TelemetryArgs,
}

impl Config {
    /// Settings for tests and embedding: loopback port-0 listeners, the given
    /// NATS and database, defaults elsewhere.
    pub fn for_tests(nats_url: &str, database_url: &str) -> Self {
        Self {
            grpc_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            metrics_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            auth_addr: "http://127.0.0.1:50051".to_owned(),
            ingest_batch_size: 256,
            ingest_ack_wait: Duration::from_secs(30),
            ingest_max_ack_pending: 4096,
            ingest_retry_delay: Duration::from_millis(500),
            stream_replicas: 1,
            presence_timeout: Duration::from_millis(500),
            locate_cache_ttl: Duration::from_secs(10),
            max_message_bytes: 4096,
            shutdown_timeout: Duration::from_secs(10),
            database: sb_config::DatabaseArgs::for_url(database_url),
            nats: sb_config::NatsArgs::for_url(nats_url),
            telemetry: sb_config::TelemetryArgs::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    #[test]
    fn defaults_parse() {
        let config = Config::try_parse_from(["sb-messaging", "--database-url", "sqlite:x.db"]).unwrap();
        assert_eq!(config.grpc_addr.port(), 50053);
        assert_eq!(config.metrics_addr.port(), 9103);
        assert_eq!(config.ingest_ack_wait, Duration::from_secs(30));
        assert!(Config::try_parse_from(["sb-messaging", "--database-url", "x", "--ingest-batch-size", "0"]).is_err());
    }
}
