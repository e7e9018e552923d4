//! The edge's settings: every field is a flag and an environment variable
//! (see `docs/edge.md` for the table). Tests build [`Config`] as a struct
//! literal, usually from [`Config::for_tests`].

use std::net::SocketAddr;
use std::time::Duration;

/// Settings of one edge process.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "sb-edge", about = "Switchboard edge: the Socket.IO gateway")]
pub struct Config {
    /// Address Socket.IO and HTTP listen on; use port 0 in tests.
    #[arg(long, env = "LISTEN_ADDR", default_value = "0.0.0.0:3000")]
    pub listen_addr: SocketAddr,
    /// Overrides the port of `LISTEN_ADDR` (the usual `PORT` convention).
    #[arg(long, env = "PORT")]
    pub port: Option<u16>,
    /// Stable id of this edge (its pod name); sessions are reported to
    /// presence under it. Defaults to the hostname, else a random id.
    #[arg(long, env = "EDGE_ID")]
    pub edge_id: Option<String>,
    /// Auth's gRPC address (`host:port` or a URI).
    #[arg(long, env = "AUTH_ADDR", default_value = "http://127.0.0.1:50051")]
    pub auth_addr: String,
    /// How long a verified token is trusted without asking auth again
    /// (revocation events clear it at once); 0 turns the cache off.
    #[arg(long, env = "AUTH_CACHE_TTL_MS", default_value_t = 2000)]
    pub auth_cache_ttl_ms: u64,
    /// Allowed browser origins, comma-separated, or `*` for any.
    #[arg(long, env = "CORS_ORIGINS", default_value = "*")]
    pub cors_origins: String,
    /// Largest WebSocket message accepted, in bytes; a larger one closes that connection.
    #[arg(long, env = "WS_MAX_MESSAGE_SIZE", default_value_t = 1 << 20)]
    pub ws_max_message_size: usize,
    /// Largest long-polling request body accepted, in bytes.
    #[arg(long, env = "POLLING_MAX_PAYLOAD", default_value_t = 1 << 20)]
    pub polling_max_payload: u64,
    /// Packets buffered per socket for a client that reads slowly; once full,
    /// further events to that socket are dropped and counted in
    /// `sb_edge_dropped_emits_total{reason="buffer_full"}`.
    #[arg(long, env = "SOCKET_BUFFER_PACKETS", default_value_t = 1024)]
    pub socket_buffer_packets: usize,
    /// Longest `message` accepted in `send_message` / `admin_broadcast`, in UTF-8 bytes.
    #[arg(long, env = "MESSAGE_MAX_BYTES", default_value_t = 4096)]
    pub message_max_bytes: usize,
    /// Sustained events per second one socket may send (token bucket rate).
    #[arg(long, env = "RATE_LIMIT_PER_SEC", default_value_t = 100.0)]
    pub rate_limit_per_sec: f64,
    /// Events one socket may send in a burst (token bucket size).
    #[arg(long, env = "RATE_LIMIT_BURST", default_value_t = 200)]
    pub rate_limit_burst: u32,
    /// Events of one socket waiting to be handled before more are refused.
    #[arg(long, env = "EVENT_QUEUE_LIMIT", default_value_t = 256)]
    pub event_queue_limit: usize,
    /// How long a `send_message` waits for the ingest stream's acknowledgement.
    #[arg(long, env = "PUBLISH_TIMEOUT_MS", default_value_t = 5000)]
    pub publish_timeout_ms: u64,
    /// How long requests to messaging and presence wait for an answer.
    #[arg(long, env = "REQUEST_TIMEOUT_MS", default_value_t = 5000)]
    pub request_timeout_ms: u64,
    /// Engine.IO ping interval.
    #[arg(long, env = "PING_INTERVAL_MS", default_value_t = 25_000)]
    pub ping_interval_ms: u64,
    /// Engine.IO ping timeout.
    #[arg(long, env = "PING_TIMEOUT_MS", default_value_t = 20_000)]
    pub ping_timeout_ms: u64,
    /// Longest graceful shutdown before the rest is abandoned.
    #[arg(long, env = "SHUTDOWN_TIMEOUT_MS", default_value_t = 10_000)]
    pub shutdown_timeout_ms: u64,
    /// Presence frames (one `user_online` / `user_offline` to one socket)
    /// this edge writes per second at most; past it, changes are dropped and
    /// counted (`sb_edge_dropped_emits_total{reason="presence_rate"}`). 0: unbounded.
    #[arg(long, env = "PRESENCE_FRAMES_PER_SEC", default_value_t = 200_000)]
    pub presence_frames_per_sec: u64,
    /// Replicas of the ingest stream if the edge is the first to create it (3 on a NATS cluster).
    #[arg(long, env = "JETSTREAM_REPLICAS", default_value_t = 1)]
    pub stream_replicas: usize,
    /// Where NATS is and the subject prefix.
    #[command(flatten)]
    pub nats: sb_config::NatsArgs,
    /// Logging and tracing.
    #[command(flatten)]
    pub telemetry: sb_config::TelemetryArgs,
}

impl Config {
    /// Settings for a test: loopback port 0, a unique edge id, the given NATS
    /// and auth, every other value its default.
    pub fn for_tests(nats_url: &str, auth_addr: &str) -> Self {
        Self {
            listen_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            port: None,
            edge_id: Some(format!("edge-test-{}", uuid::Uuid::now_v7().simple())),
            auth_addr: auth_addr.to_owned(),
            auth_cache_ttl_ms: 2000,
            cors_origins: "*".to_owned(),
            ws_max_message_size: 1 << 20,
            polling_max_payload: 1 << 20,
            socket_buffer_packets: 1024,
            message_max_bytes: 4096,
            rate_limit_per_sec: 100.0,
            rate_limit_burst: 200,
            event_queue_limit: 256,
            publish_timeout_ms: 5000,
            request_timeout_ms: 5000,
            ping_interval_ms: 25_000,
            ping_timeout_ms: 20_000,
            shutdown_timeout_ms: 10_000,
            stream_replicas: 1,
            presence_frames_per_sec: 200_000,
            nats: sb_config::NatsArgs::for_url(nats_url),
            telemetry: sb_config::TelemetryArgs::default(),
        }
    }

    /// The address to bind: `LISTEN_ADDR` with `PORT` applied.
    pub fn bind_addr(&self) -> SocketAddr {
        let mut addr = self.listen_addr;
        if let Some(port) = self.port {
            addr.set_port(port);
        }
        addr
    }

    /// `EDGE_ID`, else the hostname, else `edge-<random>`.
    pub fn resolved_edge_id(&self) -> String {
        if let Some(id) = self.edge_id.as_deref().map(str::trim).filter(|id| !id.is_empty()) {
            return id.to_owned();
        }
        let from_env = std::env::var("HOSTNAME").ok();
        let from_kernel = || std::fs::read_to_string("/proc/sys/kernel/hostname").ok();
        from_env
            .or_else(from_kernel)
            .map(|name| name.trim().to_owned())
            .filter(|name| !name.is_empty())
            .unwrap_or_else(|| format!("edge-{}", uuid::Uuid::now_v7().simple()))
    }

    pub(crate) fn publish_timeout(&self) -> Duration {
        Duration::from_millis(self.publish_timeout_ms.max(1))
    }

    pub(crate) fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms.max(1))
    }
}
