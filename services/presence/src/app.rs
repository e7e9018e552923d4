//! [`App`]: builds one presence replica (connect NATS, set up the streams,
//! bind the listeners) and runs it until shutdown.
//!
//! Start-up order: the applier replays the presence stream from its start;
//! once it reached the stream's last sequence as of start-up, the replica
//! answers queries, watches heartbeats, competes for the emission lease and
//! reports ready. Until then it emits nothing, so a restarted replica never
//! announces what it merely re-reads.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::registry::Registry;
use sb_authn::{AdminGuard, AuthClient};
use sb_events::bus::{Bus, BusError};
use sb_proto::edge::v1::edge_control_server::EdgeControlServer;
use sb_proto::presence::v1::presence_service_server::PresenceServiceServer;
use sb_service::{Check, Service};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::edge_control::EdgeControlGrpc;
use crate::grpc::PresenceGrpc;
use crate::lease::{Lease, ensure_lease_stream};
use crate::liveness::{LivenessSettings, run_liveness};
use crate::metrics::Metrics;
use crate::replica::Replica;

/// The gRPC service this server answers for (health reports it by name).
const GRPC_SERVICE: &str = "switchboard.presence.v1.PresenceService";
/// The edge control service presence serves beside it.
const EDGE_CONTROL_SERVICE: &str = "switchboard.edge.v1.EdgeControl";

/// Why the service could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// NATS could not be reached or the prefix is invalid.
    #[error(transparent)]
    Bus(#[from] BusError),
    /// A JetStream stream could not be created, updated or read.
    #[error("set up the presence streams: {0}")]
    Streams(String),
    /// A listener could not be bound.
    #[error(transparent)]
    Bind(#[from] sb_config::BindError),
    /// `AUTH_ADDR` is not usable.
    #[error("auth client: {0}")]
    Authn(#[from] sb_authn::AuthnError),
    /// A server or task failed while running.
    #[error(transparent)]
    Service(#[from] sb_service::ServiceError),
    /// The reflection service could not be built.
    #[error("build the gRPC reflection service: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
}

/// One presence replica, built and ready to run.
pub struct App {
    config: Config,
    bus: Bus,
    replica: Arc<Replica>,
    grpc_listener: TcpListener,
    metrics_listener: TcpListener,
    registry: Arc<Registry>,
    guard: AdminGuard,
    stream_last_seq: u64,
}

impl App {
    /// Connects to NATS, creates or updates the presence and lease streams,
    /// and binds the gRPC and metrics listeners.
    pub async fn build(config: Config) -> Result<Self, Error> {
        let replica_id = config.replica_id.clone().unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
        let bus = Bus::connect(&config.nats, &format!("presence-{replica_id}")).await?;

        let stream = bus.ensure_presence_stream(config.stream_replicas, config.stream_max_age).await?;
        let mut stream_config = stream.cached_info().config.clone();
        if stream_config.max_age != config.stream_max_age || stream_config.num_replicas != config.stream_replicas.max(1)
        {
            stream_config.max_age = config.stream_max_age;
            stream_config.num_replicas = config.stream_replicas.max(1);
            bus.jetstream.update_stream(stream_config).await.map_err(|error| Error::Streams(error.to_string()))?;
            tracing::info!(max_age = ?config.stream_max_age, "presence stream settings updated");
        }
        ensure_lease_stream(&bus, config.stream_replicas).await.map_err(|error| Error::Streams(error.to_string()))?;
        let mut stream = bus
            .jetstream
            .get_stream(bus.subjects.presence_stream())
            .await
            .map_err(|error| Error::Streams(error.to_string()))?;
        let stream_state = stream.info().await.map_err(|error| Error::Streams(error.to_string()))?.state.clone();
        // Caught up once the last message stored at start-up is applied (an
        // empty stream, e.g. purged or expired, has nothing to wait for).
        let stream_last_seq = if stream_state.messages == 0 { 0 } else { stream_state.last_sequence };
        crate::lease::drop_stale_lease(&bus, stream_state.last_sequence)
            .await
            .map_err(|error| Error::Streams(error.to_string()))?;

        let grpc_listener = sb_config::bind_listener("gRPC", config.grpc_addr).await?;
        let metrics_listener = sb_config::bind_listener("metrics", config.metrics_addr).await?;

        let metrics = Metrics::default();
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        bus.register_metrics(registry.sub_registry_with_prefix("switchboard_presence"));
        let replica = Arc::new(Replica::new(replica_id, config.scope, metrics));
        let guard = AdminGuard::new(AuthClient::connect_lazy(&config.auth_addr)?);
        Ok(Self {
            config,
            bus,
            replica,
            grpc_listener,
            metrics_listener,
            registry: Arc::new(registry),
            guard,
            stream_last_seq,
        })
    }

    /// The bound gRPC address.
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_listener.local_addr().unwrap_or(self.config.grpc_addr)
    }

    /// The bound metrics address.
    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics_listener.local_addr().unwrap_or(self.config.metrics_addr)
    }

    /// The replica's shared state (for tests and diagnostics).
    pub fn replica(&self) -> Arc<Replica> {
        self.replica.clone()
    }

    /// Serves until `shutdown` completes, then stops within
    /// `SHUTDOWN_TIMEOUT`: not serving first, then the emitter announces
    /// what it owes and releases the lease, queries finish, NATS is drained.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), Error> {
        let Self { config, bus, replica, grpc_listener, metrics_listener, registry, guard, stream_last_seq } = self;
        let service = Service::new("presence");
        let nats = bus.client.clone();
        service.health().add_probe("nats", move || sb_events::bus::connection_check(&nats));
        // Until the stream is replayed this replica knows nothing and emits nothing.
        service.health().set("replay", Check::pending("in progress"));

        let services = [GRPC_SERVICE, EDGE_CONTROL_SERVICE];
        let reflection = sb_telemetry::grpc::reflection(sb_proto::FILE_DESCRIPTOR_SET, &services)?;
        let edge_control = EdgeControlGrpc::new(replica.clone(), bus.clone(), guard.clone());
        let grpc = sb_telemetry::grpc::router(service.grpc_health(&services).await, reflection)
            .add_service(PresenceServiceServer::new(PresenceGrpc::new(replica.clone(), guard)))
            .add_service(EdgeControlServer::new(edge_control));
        service.serve_grpc(grpc_listener, grpc);
        service.serve_ops(metrics_listener, registry);
        service.spawn_background(crate::consume::run_applier(bus.clone(), replica.clone(), service.stop_token()));
        service.spawn_background(report_lag(bus.clone(), replica.clone(), service.stop_token()));

        // Once caught up: queries, liveness, emission, readiness.
        let started = service.clone();
        let bus_for_start = bus.clone();
        service.spawn("start-up replay", async move {
            let bus = bus_for_start;
            let stop = started.stop_token();
            let replay = std::time::Instant::now();
            tokio::select! {
                () = stop.cancelled() => return Ok(()),
                _ = replica.wait_applied(stream_last_seq, Duration::MAX) => {}
            }
            let took = replay.elapsed();
            replica.metrics.replay_seconds.set(took.as_secs_f64());
            tracing::info!(
                replica = %replica.id,
                applied = replica.applied_seq(),
                ?took,
                "presence state rebuilt from the stream"
            );
            let queries =
                crate::query::serve_queries(bus.clone(), replica.clone(), started.tracker().clone(), stop.clone());
            started.spawn_essential("presence queries", queries);
            let liveness = LivenessSettings {
                timeout_min: config.edge_timeout_min,
                timeout_max: config.edge_timeout_max,
                stream_max_age: config.stream_max_age,
            };
            let tracker = started.tracker().clone();
            started.spawn_essential(
                "edge liveness",
                run_liveness(bus.clone(), replica.clone(), liveness, tracker, stop.clone()),
            );
            let lease = Lease::new(bus.clone(), replica.id.clone(), config.lease_ttl);
            started.spawn_background(crate::emit::run_emitter(
                bus.clone(),
                replica.clone(),
                lease,
                config.coalesce_window,
                config.coalesce_above,
                stop,
            ));
            replica.set_ready(true);
            started.health().set("replay", Check::Ok);
            Ok::<(), std::convert::Infallible>(())
        });

        let result =
            service.run(shutdown, config.shutdown_timeout, |_| async {}, |_| async move { bus.close().await }).await;
        result.map_err(Error::from)
    }
}

/// Updates the lag gauge once a second.
async fn report_lag(bus: Bus, replica: Arc<Replica>, cancel: CancellationToken) {
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = ticker.tick() => {}
        }
        // Looking the stream up returns its current state.
        if let Ok(stream) = bus.jetstream.get_stream(bus.subjects.presence_stream()).await {
            let lag = stream.cached_info().state.last_sequence.saturating_sub(replica.applied_seq());
            replica.metrics.lag.set(i64::try_from(lag).unwrap_or(i64::MAX));
        }
    }
}
