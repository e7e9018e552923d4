//! The edge's settings: every field is a flag and an environment variable
//! (see `docs/edge.md` for the table). Tests build [`Config`] as a struct
//! literal, usually from [`Config::for_tests`].

use std::net::SocketAddr;
use std::time::Duration;

use sb_config::parse_duration;

/// What a stop needs after the drain (presence told, NATS drained); see [`Config::validate`].
pub const DRAIN_STOP_MARGIN: Duration = Duration::from_secs(5);

/// The smallest `SOCKET_BUFFER_BYTES`: a few frames of the largest messages.
pub const SOCKET_BUFFER_BYTES_MIN: u64 = 64 << 10;

/// The default `SOCKET_BUFFER_BYTES`.
pub const SOCKET_BUFFER_BYTES_DEFAULT: u64 = 1 << 20;

/// Settings renamed in wave 2 (durations are written like `5s` now); a
/// deployment that still sets an old name fails to start with the new one.
pub const RENAMED: &[(&str, &str)] = &[
    ("AUTH_CACHE_TTL_MS", "AUTH_CACHE_TTL"),
    ("PUBLISH_TIMEOUT_MS", "PUBLISH_TIMEOUT"),
    ("REQUEST_TIMEOUT_MS", "REQUEST_TIMEOUT"),
    ("PING_INTERVAL_MS", "PING_INTERVAL"),
    ("PING_TIMEOUT_MS", "PING_TIMEOUT"),
    ("SHUTDOWN_TIMEOUT_MS", "SHUTDOWN_TIMEOUT"),
];

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
    /// (revocation events clear it at once); `0s` turns the cache off.
    #[arg(long, env = "AUTH_CACHE_TTL", default_value = "2s", value_parser = parse_duration)]
    pub auth_cache_ttl: Duration,
    /// Allowed browser origins, comma-separated, or `*` for any.
    #[arg(long, env = "CORS_ORIGINS", default_value = "*")]
    pub cors_origins: String,
    /// Largest WebSocket message accepted, in bytes; a larger one closes that connection.
    #[arg(long, env = "WS_MAX_MESSAGE_SIZE", default_value_t = 1 << 20)]
    pub ws_max_message_size: usize,
    /// Largest long-polling request body accepted, in bytes.
    #[arg(long, env = "POLLING_MAX_PAYLOAD", default_value_t = 1 << 20)]
    pub polling_max_payload: u64,
    /// Packets buffered per socket for a client that reads slowly; an event
    /// that does not fit closes the socket's transport (the client reconnects
    /// and catches up with `get_history`), counted in
    /// `switchboard_edge_slow_disconnects_total`.
    #[arg(long, env = "SOCKET_BUFFER_PACKETS", default_value_t = 1024)]
    pub socket_buffer_packets: usize,
    /// Bytes buffered per socket for a client that reads slowly (what the
    /// edge handed its transport and the transport has not written yet); a
    /// frame past it closes the socket's transport, as a full
    /// `SOCKET_BUFFER_PACKETS` does. One frame larger than it (a large
    /// `get_history` page) still goes into an empty buffer.
    #[arg(long, env = "SOCKET_BUFFER_BYTES", default_value_t = SOCKET_BUFFER_BYTES_DEFAULT)]
    pub socket_buffer_bytes: u64,
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
    #[arg(long, env = "PUBLISH_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub publish_timeout: Duration,
    /// How long the first message of a stream write waits for others to
    /// join it (one publish and one PubAck for all of them), while messages
    /// arrive at least `INGEST_LINGER_FROM_RATE` a second. Otherwise, and
    /// with `0s`, a write goes out at once and what arrives while it waits
    /// for its PubAck forms the next one, so a lone message is never held
    /// back.
    #[arg(long, env = "INGEST_LINGER", default_value = "1ms", value_parser = parse_duration)]
    pub ingest_linger: Duration,
    /// The arrival rate (messages a second at this edge, over the last
    /// whole second) from which `INGEST_LINGER` applies; `0`: at any rate.
    #[arg(long, env = "INGEST_LINGER_FROM_RATE", default_value_t = 1500.0)]
    pub ingest_linger_from_rate: f64,
    /// The most messages in one stream write.
    #[arg(long, env = "INGEST_BATCH_MAX", default_value_t = 256, value_parser = clap::value_parser!(u16).range(1..=4096))]
    pub ingest_batch_max: u16,
    /// The most stream writes waiting for their PubAck at once (more keeps
    /// more throughput on a slow link, fewer makes larger batches).
    #[arg(long, env = "INGEST_MAX_IN_FLIGHT", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub ingest_max_in_flight: u16,
    /// How long requests to messaging and presence wait for an answer.
    #[arg(long, env = "REQUEST_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub request_timeout: Duration,
    /// Engine.IO ping interval.
    #[arg(long, env = "PING_INTERVAL", default_value = "25s", value_parser = parse_duration)]
    pub ping_interval: Duration,
    /// Engine.IO ping timeout.
    #[arg(long, env = "PING_TIMEOUT", default_value = "20s", value_parser = parse_duration)]
    pub ping_timeout: Duration,
    /// How long a drain (SIGTERM, or the admin `Drain` without `over`)
    /// spreads the closes of the sockets' transports over (`0s`: all at once).
    #[arg(long, env = "DRAIN_DURATION", default_value = "30s", value_parser = parse_duration)]
    pub drain_duration: Duration,
    /// Where clients reach this edge, as `ListEdges` reports it (e.g.
    /// `https://edge-0.chat.example.com`); default `http://<bound address>`,
    /// with the host name for an unspecified IP (`0.0.0.0`).
    #[arg(long, env = "ADVERTISE_URL")]
    pub advertise_url: Option<String>,
    /// Most rooms one socket may be in at once; a `join_room` past it is
    /// refused (`too many rooms: …`) and changes nothing.
    #[arg(long, env = "MAX_ROOMS_PER_SOCKET", default_value_t = 10_000, value_parser = clap::value_parser!(u16).range(1..))]
    pub max_rooms_per_socket: u16,
    /// Most sockets one user may have open on this edge; a connect past it
    /// gets `connect_error` "too many connections: …". The default is high
    /// because the seed's clients open 500 sockets of one user at once (a
    /// contract case); a product without many tabs per user can set ~20.
    #[arg(long, env = "MAX_SOCKETS_PER_USER", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_sockets_per_user: u32,
    /// Most sockets this edge holds; at it, new handshakes get `503` and
    /// `/readyz` reports `capacity: full`, so a balancer sends new clients
    /// elsewhere. `0`: nine tenths of the open-file limit (`ulimit -n`).
    #[arg(long, env = "MAX_SOCKETS", default_value_t = 0)]
    pub max_sockets: u32,
    /// New connections (Engine.IO handshakes) one source address may open
    /// per second; past it (and its burst) a handshake gets `429`. `0`: no limit.
    #[arg(long, env = "CONNECT_RATE_PER_ADDRESS", default_value_t = 100.0)]
    pub connect_rate_per_address: f64,
    /// New connections one source address may open at once before the rate applies.
    #[arg(long, env = "CONNECT_BURST_PER_ADDRESS", default_value_t = 1000)]
    pub connect_burst_per_address: u32,
    /// A header in which the balancer in front appends the client's address
    /// (e.g. `x-forwarded-for`); its last address is the one limited. Unset:
    /// the TCP peer. Set it only behind a balancer that writes it.
    #[arg(long, env = "CLIENT_ADDRESS_HEADER")]
    pub client_address_header: Option<String>,
    /// A TCP connection on which no whole HTTP request arrived this long
    /// after it was accepted is closed, and so is an Engine.IO session whose
    /// Socket.IO CONNECT did not arrive within it (`0s`: TCP connections
    /// are never closed for it, and socketioxide's own 45 s applies to the
    /// CONNECT).
    #[arg(long, env = "HANDSHAKE_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub handshake_timeout: Duration,
    /// Longest graceful shutdown before the rest is abandoned.
    #[arg(long, env = "SHUTDOWN_TIMEOUT", default_value = "40s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,
    /// Presence frames (one `user_online` / `user_offline` to one socket)
    /// this edge writes per second at most; past it, changes are dropped and
    /// counted (`switchboard_edge_dropped_emits_total{reason="presence_rate"}`). 0: unbounded.
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
            auth_cache_ttl: Duration::from_secs(2),
            cors_origins: "*".to_owned(),
            ws_max_message_size: 1 << 20,
            polling_max_payload: 1 << 20,
            socket_buffer_packets: 1024,
            socket_buffer_bytes: SOCKET_BUFFER_BYTES_DEFAULT,
            message_max_bytes: 4096,
            rate_limit_per_sec: 100.0,
            rate_limit_burst: 200,
            event_queue_limit: 256,
            publish_timeout: Duration::from_secs(5),
            ingest_linger: Duration::ZERO,
            ingest_linger_from_rate: 1500.0,
            ingest_batch_max: 256,
            ingest_max_in_flight: 1,
            request_timeout: Duration::from_secs(5),
            ping_interval: Duration::from_secs(25),
            ping_timeout: Duration::from_secs(20),
            shutdown_timeout: Duration::from_secs(10),
            // Tests stop edges often: close everything at once unless a test drains.
            drain_duration: Duration::ZERO,
            advertise_url: None,
            handshake_timeout: Duration::from_secs(10),
            max_rooms_per_socket: 10_000,
            max_sockets_per_user: 1000,
            max_sockets: 0,
            connect_rate_per_address: 100.0,
            connect_burst_per_address: 1000,
            client_address_header: None,
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

    /// `MAX_SOCKETS`, or nine tenths of the open-file limit when it is 0
    /// (every socket holds at least one file descriptor).
    pub fn resolved_max_sockets(&self) -> usize {
        if self.max_sockets > 0 {
            return self.max_sockets as usize;
        }
        let files = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
            .map(|(soft, _)| soft)
            .unwrap_or(1024);
        usize::try_from(files / 10 * 9).unwrap_or(usize::MAX).max(1)
    }

    /// Refuses settings that cannot work together: a stop must leave time
    /// for the drain (`SHUTDOWN_TIMEOUT` > `DRAIN_DURATION`), and a socket's
    /// buffer must hold a few large frames (`SOCKET_BUFFER_BYTES`).
    pub fn validate(&self) -> Result<(), String> {
        if !(self.ingest_linger_from_rate.is_finite() && self.ingest_linger_from_rate >= 0.0) {
            return Err(format!(
                "INGEST_LINGER_FROM_RATE ({}) must be a number of messages a second, 0 or more (0: linger at any rate)",
                self.ingest_linger_from_rate
            ));
        }
        if self.socket_buffer_bytes < SOCKET_BUFFER_BYTES_MIN {
            return Err(format!(
                "SOCKET_BUFFER_BYTES ({}) must be at least {SOCKET_BUFFER_BYTES_MIN} bytes (a few frames of the largest messages); the default is {SOCKET_BUFFER_BYTES_DEFAULT}",
                self.socket_buffer_bytes
            ));
        }
        if !self.drain_duration.is_zero() && self.shutdown_timeout <= self.drain_duration + DRAIN_STOP_MARGIN {
            return Err(format!(
                "SHUTDOWN_TIMEOUT ({:?}) must be longer than DRAIN_DURATION ({:?}) plus {:?} for the last steps of the stop; raise SHUTDOWN_TIMEOUT or lower DRAIN_DURATION",
                self.shutdown_timeout, self.drain_duration, DRAIN_STOP_MARGIN
            ));
        }
        Ok(())
    }

    /// `ADVERTISE_URL`, else `http://` and the bound address (the host
    /// name instead of an unspecified IP).
    pub fn advertised_url(&self, bound: SocketAddr) -> String {
        if let Some(url) = self.advertise_url.as_deref().map(str::trim).filter(|url| !url.is_empty()) {
            return url.to_owned();
        }
        if bound.ip().is_unspecified() {
            let host = std::env::var("HOSTNAME").ok().map(|h| h.trim().to_owned()).filter(|h| !h.is_empty());
            if let Some(host) = host {
                return format!("http://{host}:{}", bound.port());
            }
        }
        format!("http://{bound}")
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stop_must_leave_time_for_the_drain() {
        let mut config = Config::for_tests("nats://127.0.0.1:4222", "http://127.0.0.1:50051");
        assert!(config.validate().is_ok(), "no drain in tests");
        config.drain_duration = Duration::from_secs(30);
        config.shutdown_timeout = Duration::from_secs(10);
        let error = config.validate().expect_err("10s cannot cover a 30s drain");
        assert!(error.contains("SHUTDOWN_TIMEOUT") && error.contains("DRAIN_DURATION"), "{error}");
        config.shutdown_timeout = Duration::from_secs(40);
        assert!(config.validate().is_ok());
    }

    #[test]
    fn a_socket_buffer_must_hold_a_few_large_frames() {
        let mut config = Config::for_tests("nats://127.0.0.1:4222", "http://127.0.0.1:50051");
        config.socket_buffer_bytes = 4096;
        let error = config.validate().expect_err("4 KiB holds one message");
        assert!(error.contains("SOCKET_BUFFER_BYTES (4096)"), "{error}");
        config.socket_buffer_bytes = SOCKET_BUFFER_BYTES_MIN;
        assert!(config.validate().is_ok());
    }

    #[test]
    fn the_linger_rate_must_be_a_rate() {
        let mut config = Config::for_tests("nats://127.0.0.1:4222", "http://127.0.0.1:50051");
        for bad in [-1.0, f64::NAN, f64::INFINITY] {
            config.ingest_linger_from_rate = bad;
            let error = config.validate().expect_err("not a rate");
            assert!(error.contains("INGEST_LINGER_FROM_RATE"), "{error}");
        }
        config.ingest_linger_from_rate = 0.0;
        assert!(config.validate().is_ok());
    }

    #[test]
    fn the_advertised_url_defaults_to_the_bound_address() {
        let mut config = Config::for_tests("nats://127.0.0.1:4222", "http://127.0.0.1:50051");
        assert_eq!(config.advertised_url("127.0.0.1:3000".parse().unwrap()), "http://127.0.0.1:3000");
        config.advertise_url = Some("wss://edge-0.example.com".into());
        assert_eq!(config.advertised_url("0.0.0.0:3000".parse().unwrap()), "wss://edge-0.example.com");
    }

    #[test]
    fn the_defaults_parse_and_cover_the_drain() {
        use clap::Parser as _;
        let config = Config::try_parse_from(["sb-edge"]).expect("defaults");
        assert_eq!(config.drain_duration, Duration::from_secs(30));
        assert!(config.validate().is_ok(), "{:?}", config.validate());
    }
}
