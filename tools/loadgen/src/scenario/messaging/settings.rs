//! The settings of the three messaging scenarios and the results they share.

use std::time::Duration;

use serde::Serialize;

use crate::metrics::{FailureSummary, LatencySummary};
use crate::settings::{as_seconds, parse_duration};

/// `fanout` settings: expected deliveries per second = rate × rooms × senders × (members − 1).
#[derive(Debug, Clone, clap::Args, Serialize)]
pub struct FanoutSettings {
    /// Rooms.
    #[arg(long, default_value_t = 10)]
    pub rooms: u64,
    /// Members per room (senders are members).
    #[arg(long, default_value_t = 100)]
    pub members: u64,
    /// Senders per room.
    #[arg(long, default_value_t = 1)]
    pub senders: u64,
    /// Messages per second per sender.
    #[arg(long, default_value_t = 10.0)]
    pub rate: f64,
    /// Message text length, bytes (at least the ~40-byte timestamp header).
    #[arg(long, default_value_t = 100)]
    pub msg_size: usize,
    /// Longest wait after sending stops for deliveries still in flight.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    #[serde(serialize_with = "as_seconds")]
    pub drain: Duration,
}

impl Default for FanoutSettings {
    fn default() -> Self {
        Self { rooms: 10, members: 100, senders: 1, rate: 10.0, msg_size: 100, drain: Duration::from_secs(5) }
    }
}

/// `private` settings: 2 × pairs connections, each sending to its partner.
#[derive(Debug, Clone, clap::Args, Serialize)]
pub struct PrivateSettings {
    /// User pairs.
    #[arg(long, default_value_t = 500)]
    pub pairs: u64,
    /// Messages per second per sender (both sides of a pair send).
    #[arg(long, default_value_t = 10.0)]
    pub rate: f64,
    /// Message text length, bytes.
    #[arg(long, default_value_t = 100)]
    pub msg_size: usize,
    /// Longest wait after sending stops for deliveries still in flight.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    #[serde(serialize_with = "as_seconds")]
    pub drain: Duration,
}

impl Default for PrivateSettings {
    fn default() -> Self {
        Self { pairs: 500, rate: 10.0, msg_size: 100, drain: Duration::from_secs(5) }
    }
}

/// `broadcast` settings: expected deliveries per second = senders × rate × (connected − 1).
#[derive(Debug, Clone, clap::Args, Serialize)]
pub struct BroadcastSettings {
    /// Connections (everyone receives).
    #[arg(long, default_value_t = 1000)]
    pub conns: u64,
    /// Connections that send.
    #[arg(long, default_value_t = 1)]
    pub senders: u64,
    /// Messages per second per sender.
    #[arg(long, default_value_t = 1.0)]
    pub rate: f64,
    /// Message text length, bytes.
    #[arg(long, default_value_t = 100)]
    pub msg_size: usize,
    /// Longest wait after sending stops for deliveries still in flight.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    #[serde(serialize_with = "as_seconds")]
    pub drain: Duration,
}

impl Default for BroadcastSettings {
    fn default() -> Self {
        Self { conns: 1000, senders: 1, rate: 1.0, msg_size: 100, drain: Duration::from_secs(5) }
    }
}

/// The scenario's shape, in its results.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Shape {
    /// `fanout`.
    Fanout {
        /// Rooms.
        rooms: u64,
        /// Members per room.
        members: u64,
        /// Senders per room.
        senders_per_room: u64,
    },
    /// `private`.
    Private {
        /// Pairs.
        pairs: u64,
    },
    /// `broadcast`.
    Broadcast {
        /// Connections.
        conns: u64,
        /// Senders.
        senders: u64,
    },
}

/// What `fanout`, `private` and `broadcast` measured.
#[derive(Debug, Clone, Serialize)]
pub struct MessagingResults {
    /// The scenario's shape.
    #[serde(flatten)]
    pub shape: Shape,
    /// Connections set up.
    pub connections: u64,
    /// Connections connected (and joined) before sending started.
    pub ready: u64,
    /// Why the others were not.
    pub setup_failures: FailureSummary,
    /// Setup time, seconds.
    pub setup_s: f64,
    /// Senders with at least one ready receiver.
    pub active_senders: u64,
    /// Messages per second per sender.
    pub rate_per_sender: f64,
    /// Messages offered per second.
    pub offered_send_per_s: f64,
    /// Deliveries offered per second.
    pub offered_deliveries_per_s: f64,
    /// Message text length.
    pub msg_size: usize,
    /// Messages sent in the window.
    pub sent_measured: u64,
    /// The same per second.
    pub sent_measured_per_s: f64,
    /// Deliveries expected for them.
    pub expected: u64,
    /// Deliveries received.
    pub received: u64,
    /// expected − received.
    pub lost: u64,
    /// lost / expected, percent.
    pub loss_pct: f64,
    /// received / window.
    pub delivered_per_s: f64,
    /// Received by the end of the window, per second of it.
    pub received_in_window_per_s: f64,
    /// How long the drain took, seconds.
    pub drain_s: f64,
    /// Send → receive.
    pub latency_ms: LatencySummary,
    /// Deliveries of warm-up messages.
    pub received_warmup: u64,
    /// Own messages echoed back (ignored).
    pub self_echoes: u64,
    /// `exception` events from the server.
    pub exceptions: u64,
    /// Frames that were neither.
    pub other_frames: u64,
    /// Connections the server closed during the run.
    pub dropped_connections: u64,
    /// Sends more than 5 ms behind their schedule (the loadgen fell behind).
    pub late_sends_over_5ms: u64,
    /// The furthest a send fell behind, ms.
    pub max_send_lag_ms: f64,
}
