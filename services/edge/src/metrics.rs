//! The edge's Prometheus metrics, served on `/metrics` of the Socket.IO port.
//!
//! Label values come from fixed sets (reasons, known event names, scopes),
//! never from client strings, so a client cannot grow the series count.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// `reason` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// Why.
    pub reason: &'static str,
}

/// `event` + `outcome` labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabels {
    /// A known client event name, or `unknown`.
    pub event: &'static str,
    /// `ok`, `error`, `rate_limited`, `queue_full`, `token_expired`.
    pub outcome: &'static str,
}

/// `event` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabel {
    /// A known client event name, or `unknown`.
    pub event: &'static str,
}

/// `result` label of the token cache (`hit`, `miss`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CacheResultLabel {
    /// `hit` or `miss`.
    pub result: &'static str,
}

/// A histogram of one event's handling time.
pub type EventDurations = Family<EventLabel, Histogram, fn() -> Histogram>;

fn event_duration_histogram() -> Histogram {
    // 100 µs .. ~3.3 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 16))
}

/// `scope` label (`room`, `user`, `all`, `pending`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ScopeLabel {
    /// Which kind of delivery.
    pub scope: &'static str,
}

/// `transport` label of drain closes (`websocket`, `polling`, `nothing`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TransportLabel {
    /// How the socket's transport was closed.
    pub transport: &'static str,
}

/// Every `reason` of `switchboard_edge_dropped_emits_total` (docs/metrics.md).
pub const DROP_REASONS: [&str; 6] =
    ["buffer_full", "claim_buffer_full", "closed", "encode", "presence_rate", "undecodable"];

/// Every metric the edge exports.
#[derive(Clone)]
pub struct Metrics {
    /// Accepted Socket.IO connections.
    pub connects: Counter,
    /// Refused connections by reason (`token missing`, ..., `auth unavailable`).
    pub connect_rejects: Family<ReasonLabel, Counter>,
    /// Sockets connected now.
    pub sockets: Gauge,
    /// Client events handled, by name and outcome.
    pub events: Family<EventLabels, Counter>,
    /// From an event's arrival (queued) to its reply, by name.
    pub event_duration: EventDurations,
    /// Connects whose token the edge's verify cache answered (`hit`) or
    /// that asked auth (`miss`).
    pub token_cache: Family<CacheResultLabel, Counter>,
    /// Deliveries received from NATS and emitted to local sockets, by scope.
    pub deliveries: Family<ScopeLabel, Counter>,
    /// Emits that did not reach a socket, by reason (`buffer_full`: the socket is
    /// being closed for it, `closed`, `encode`).
    pub dropped_emits: Family<ReasonLabel, Counter>,
    /// Delivery subjects this edge is subscribed to now.
    pub delivery_subscriptions: Gauge,
    /// Sockets disconnected because their user's access changed.
    pub revocation_disconnects: Counter,
    /// `send_message` / `admin_broadcast` refused because the ingest stream did not acknowledge.
    pub ingest_failures: Counter,
    /// Accepted messages per stream publish.
    pub ingest_batch_size: Histogram,
    /// Message acceptance (at its edge) → written here, once per delivery.
    pub delivery_latency: Histogram,
    /// 1 once the edge drains.
    pub draining: Gauge,
    /// Transports closed by a drain, by transport.
    pub drain_closes: Family<TransportLabel, Counter>,
    /// `join_room`s refused because the socket was in `MAX_ROOMS_PER_SOCKET` rooms.
    pub refused_joins: Counter,
    /// Sockets whose transport was closed because their outgoing buffer
    /// overflowed (the client read too slowly), by transport.
    pub slow_disconnects: Family<TransportLabel, Counter>,
}

impl Metrics {
    /// Creates the metrics and registers them under `switchboard_edge_`.
    pub fn register(registry: &mut Registry) -> Arc<Self> {
        let metrics = Self {
            connects: Counter::default(),
            connect_rejects: Family::default(),
            sockets: Gauge::default(),
            events: Family::default(),
            event_duration: Family::new_with_constructor(event_duration_histogram),
            token_cache: Family::default(),
            deliveries: Family::default(),
            dropped_emits: Family::default(),
            delivery_subscriptions: Gauge::default(),
            revocation_disconnects: Counter::default(),
            ingest_failures: Counter::default(),
            ingest_batch_size: Histogram::new(exponential_buckets(1.0, 2.0, 10)),
            // 1 ms .. ~16 s: the message timestamp has millisecond resolution.
            delivery_latency: Histogram::new(exponential_buckets(0.001, 2.0, 15)),
            draining: Gauge::default(),
            drain_closes: Family::default(),
            refused_joins: Counter::default(),
            slow_disconnects: Family::default(),
        };
        let edge = registry.sub_registry_with_prefix("switchboard_edge");
        edge.register("connects", "Accepted Socket.IO connections", metrics.connects.clone());
        edge.register(
            "refused_joins",
            "join_room refused because the socket is in MAX_ROOMS_PER_SOCKET rooms",
            metrics.refused_joins.clone(),
        );
        edge.register("connect_rejects", "Refused Socket.IO connections by reason", metrics.connect_rejects.clone());
        edge.register("sockets", "Sockets connected now", metrics.sockets.clone());
        edge.register("events", "Client events by name and outcome", metrics.events.clone());
        edge.register(
            "event_duration_seconds",
            "From a client event's arrival to its reply (queueing included), by event",
            metrics.event_duration.clone(),
        );
        edge.register(
            "token_cache",
            "Token verifications answered by the edge's verify cache (hit) or by auth (miss)",
            metrics.token_cache.clone(),
        );
        edge.register("deliveries", "Deliveries emitted to local sockets by scope", metrics.deliveries.clone());
        edge.register("dropped_emits", "Emits that did not reach a socket by reason", metrics.dropped_emits.clone());
        edge.register(
            "delivery_subscriptions",
            "Delivery subjects subscribed now",
            metrics.delivery_subscriptions.clone(),
        );
        edge.register(
            "revocation_disconnects",
            "Sockets disconnected after a revocation or a disabled user",
            metrics.revocation_disconnects.clone(),
        );
        edge.register(
            "ingest_failures",
            "Messages refused because the ingest stream did not acknowledge",
            metrics.ingest_failures.clone(),
        );
        edge.register(
            "ingest_batch_size",
            "Accepted messages written to the ingest stream per publish",
            metrics.ingest_batch_size.clone(),
        );
        edge.register(
            "delivery_latency_seconds",
            "From a message's acceptance at its edge to its emit here, once per delivery",
            metrics.delivery_latency.clone(),
        );
        edge.register("draining", "1 while the edge drains", metrics.draining.clone());
        edge.register("drain_closes", "Transports closed by a drain, by transport", metrics.drain_closes.clone());
        edge.register(
            "slow_disconnects",
            "Sockets closed because their outgoing buffer overflowed (slow reader), by transport",
            metrics.slow_disconnects.clone(),
        );
        // Series with a fixed label set exist from the start, at 0, so that
        // `rate()` and alerts see them before the first increment.
        for reason in DROP_REASONS {
            drop(metrics.dropped_emits.get_or_create(&ReasonLabel { reason }));
        }
        for transport in ["websocket", "polling"] {
            drop(metrics.slow_disconnects.get_or_create(&TransportLabel { transport }));
            drop(metrics.drain_closes.get_or_create(&TransportLabel { transport }));
        }
        drop(metrics.drain_closes.get_or_create(&TransportLabel { transport: "nothing" }));
        for result in ["hit", "miss"] {
            drop(metrics.token_cache.get_or_create(&CacheResultLabel { result }));
        }
        Arc::new(metrics)
    }

    /// Records, once per delivery this edge wrote to a local socket, the
    /// time since its message was accepted (`sent_at_ms`, the sending
    /// edge's clock: hosts' clock offsets show up here; negative is 0).
    pub fn observe_delivery_latency(&self, sent_at_ms: i64) {
        let elapsed_ms = (sb_events::timestamp::now_ms() - sent_at_ms).max(0);
        self.delivery_latency.observe(elapsed_ms as f64 / 1000.0);
    }

    /// Counts one handled event.
    pub fn event(&self, event: &'static str, outcome: &'static str) {
        self.events.get_or_create(&EventLabels { event, outcome }).inc();
    }

    /// Counts one dropped emit; `reason` is one of [`DROP_REASONS`].
    pub fn dropped(&self, reason: &'static str) {
        debug_assert!(DROP_REASONS.contains(&reason), "add {reason} to DROP_REASONS and docs/metrics.md");
        self.dropped_emits.get_or_create(&ReasonLabel { reason }).inc();
    }
}
