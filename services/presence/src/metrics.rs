//! Prometheus metrics of one presence replica (served on `METRICS_ADDR`).

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Every metric the replica updates.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    /// Online users (this replica's state).
    pub users: Gauge,
    /// Live sockets.
    pub sockets: Gauge,
    /// Rooms with members.
    pub rooms: Gauge,
    /// Edges known and not declared dead.
    pub edges: Gauge,
    /// Presence stream messages applied.
    pub events_applied: Counter,
    /// The last presence stream sequence applied.
    pub applied_seq: Gauge,
    /// Stream messages not applied yet (last stream sequence − applied).
    pub lag: Gauge,
    /// How long the start-up replay took, in seconds (0 until it ended).
    pub replay_seconds: Gauge<f64, std::sync::atomic::AtomicU64>,
    /// Transitions computed by the state machine (every replica).
    pub transitions_computed: Counter,
    /// Transitions published, by change (`online`, `offline`, `joined`, `left`); leader only.
    pub transitions_emitted: Family<Vec<(String, String)>, Counter>,
    /// Transitions cancelled by coalescing (came and went within a window).
    pub transitions_coalesced: Counter,
    /// NATS messages published with transitions.
    pub delivery_messages: Counter,
    /// 1 while this replica holds the emission lease.
    pub leader: Gauge,
    /// `EdgeDown` events this replica published for silent edges.
    pub edges_declared_dead: Counter,
    /// Snapshots this replica asked edges for.
    pub snapshots_requested: Counter,
    /// Presence queries answered over NATS.
    pub queries: Counter,
}

impl Metrics {
    /// Registers every metric under `switchboard_presence_` in `registry`.
    pub fn register(&self, registry: &mut Registry) {
        // Fixed label sets exist from the start, at 0 (docs/metrics.md).
        for change in ["online", "offline", "joined", "left"] {
            drop(self.transitions_emitted.get_or_create(&vec![("change".to_owned(), change.to_owned())]));
        }
        let registry = registry.sub_registry_with_prefix("switchboard_presence");
        registry.register("users", "Online users", self.users.clone());
        registry.register("sockets", "Live sockets", self.sockets.clone());
        registry.register("rooms", "Rooms with at least one member", self.rooms.clone());
        registry.register("edges", "Edges known and alive", self.edges.clone());
        registry.register("events_applied", "Presence stream messages applied", self.events_applied.clone());
        registry.register("applied_seq", "Last presence stream sequence applied", self.applied_seq.clone());
        registry.register("lag", "Presence stream messages not applied yet", self.lag.clone());
        registry.register(
            "replay_seconds",
            "How long this replica's start-up replay of the presence stream took (0 while it runs)",
            self.replay_seconds.clone(),
        );
        registry.register("transitions_computed", "Transitions computed", self.transitions_computed.clone());
        registry.register("transitions_emitted", "Transitions published, by change", self.transitions_emitted.clone());
        registry.register(
            "transitions_coalesced",
            "Transitions cancelled within a coalescing window",
            self.transitions_coalesced.clone(),
        );
        registry.register(
            "delivery_messages",
            "NATS messages published with transitions",
            self.delivery_messages.clone(),
        );
        registry.register("leader", "1 while this replica holds the emission lease", self.leader.clone());
        registry.register(
            "edges_declared_dead",
            "EdgeDown events published for silent edges",
            self.edges_declared_dead.clone(),
        );
        registry.register("snapshots_requested", "Snapshots requested from edges", self.snapshots_requested.clone());
        registry.register("queries", "Presence queries answered over NATS", self.queries.clone());
    }
}
