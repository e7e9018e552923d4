//! Prometheus metrics of the messaging service, served on `METRICS_ADDR`
//! at `/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Label of per-kind counters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct KindLabel {
    /// `room`, `private`, `broadcast` or `announcement`.
    pub kind: &'static str,
}

/// Label of request counters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct OutcomeLabel {
    /// `ok` or the error code.
    pub outcome: &'static str,
}

/// Every metric the service updates; cheap to clone (handles share state).
#[derive(Debug, Clone)]
pub struct Metrics {
    /// Messages written to the database (first time seen).
    pub stored: Family<KindLabel, Counter>,
    /// Messages that were already stored (redelivery or re-published id).
    pub duplicates: Counter,
    /// Messages published to delivery subjects, by kind.
    pub routed: Family<KindLabel, Counter>,
    /// Stream messages delivered to us more than once.
    pub redelivered: Counter,
    /// Stream messages terminated because they cannot be decoded or are invalid.
    pub rejected: Counter,
    /// Stream messages from a newer wire version this one cannot read (handed back).
    pub newer_version: Counter,
    /// Batches that failed (store or publish) and were handed back to the stream.
    pub failed_batches: Counter,
    /// Messages per processed batch.
    pub batch_size: Histogram,
    /// Seconds to write one batch.
    pub store_seconds: Histogram,
    /// Private messages stored for an offline recipient.
    pub pending_stored: Counter,
    /// Presence `OnlineAmong` questions that got no answer.
    pub presence_failures: Counter,
    /// Private recipients and senders whose place came from the locate cache.
    pub locate_cache_hits: Counter,
    /// Private recipients and senders presence was asked about.
    pub locate_cache_misses: Counter,
    /// Cached places forgotten because a presence event changed them.
    pub locate_cache_forgotten: Counter,
    /// Pending private messages handed out to connecting recipients.
    pub pending_claimed: Counter,
    /// History requests (NATS and gRPC), by outcome.
    pub history_requests: Family<OutcomeLabel, Counter>,
    /// Notifications sent through gRPC `Notify`.
    pub notifications: Counter,
}

impl Metrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            stored: Family::default(),
            duplicates: Counter::default(),
            routed: Family::default(),
            redelivered: Counter::default(),
            rejected: Counter::default(),
            failed_batches: Counter::default(),
            newer_version: Counter::default(),
            batch_size: Histogram::new(exponential_buckets(1.0, 2.0, 11)),
            store_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 14)),
            pending_stored: Counter::default(),
            presence_failures: Counter::default(),
            locate_cache_hits: Counter::default(),
            locate_cache_misses: Counter::default(),
            locate_cache_forgotten: Counter::default(),
            pending_claimed: Counter::default(),
            history_requests: Family::default(),
            notifications: Counter::default(),
        };
        // Fixed label sets exist from the start, at 0 (docs/metrics.md).
        for kind in ["room", "private", "broadcast", "announcement"] {
            drop(metrics.stored.get_or_create(&KindLabel { kind }));
            drop(metrics.routed.get_or_create(&KindLabel { kind }));
        }
        drop(metrics.history_requests.get_or_create(&OutcomeLabel { outcome: "ok" }));
        let registry = registry.sub_registry_with_prefix("switchboard_messaging");
        registry.register("messages_stored", "Messages written to the database", metrics.stored.clone());
        registry.register(
            "messages_duplicate",
            "Ingested messages whose id was already stored",
            metrics.duplicates.clone(),
        );
        registry.register("messages_routed", "Messages published to delivery subjects", metrics.routed.clone());
        registry.register(
            "messages_redelivered",
            "Ingest stream messages delivered more than once",
            metrics.redelivered.clone(),
        );
        registry.register(
            "messages_rejected",
            "Ingest stream messages terminated as undecodable or invalid",
            metrics.rejected.clone(),
        );
        registry.register(
            "messages_newer_version",
            "Ingest stream messages from a newer wire version, handed back for an upgraded replica",
            metrics.newer_version.clone(),
        );
        registry.register(
            "batches_failed",
            "Batches handed back to the stream after a store or publish failure",
            metrics.failed_batches.clone(),
        );
        registry.register("batch_size", "Messages per processed ingest batch", metrics.batch_size.clone());
        registry.register("store_seconds", "Seconds to store one ingest batch", metrics.store_seconds.clone());
        registry.register(
            "pending_stored",
            "Private messages stored for a recipient not known to be online",
            metrics.pending_stored.clone(),
        );
        registry.register(
            "presence_query_failures",
            "OnlineAmong questions presence did not answer",
            metrics.presence_failures.clone(),
        );
        registry.register(
            "locate_cache_hits",
            "Private recipients and senders placed from the locate cache, without asking presence",
            metrics.locate_cache_hits.clone(),
        );
        registry.register(
            "locate_cache_misses",
            "Private recipients and senders presence was asked about",
            metrics.locate_cache_misses.clone(),
        );
        registry.register(
            "locate_cache_forgotten",
            "Cached places of users forgotten because a presence event changed them",
            metrics.locate_cache_forgotten.clone(),
        );
        registry.register(
            "pending_claimed",
            "Pending private messages handed out to a connecting recipient",
            metrics.pending_claimed.clone(),
        );
        registry.register("history_requests", "History requests by outcome", metrics.history_requests.clone());
        registry.register("notifications", "Notifications sent through Notify", metrics.notifications.clone());
        metrics
    }
}
