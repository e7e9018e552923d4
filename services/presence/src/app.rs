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
use sb_proto::presence::v1::presence_service_server::PresenceServiceServer;
use sb_telemetry::http::Readiness;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::grpc::PresenceGrpc;
use crate::lease::{Lease, ensure_lease_stream};
use crate::liveness::{LivenessSettings, run_liveness};
use crate::metrics::Metrics;
use crate::replica::Replica;

/// How long shutdown waits for in-flight work.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

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
    /// The gRPC server failed.
    #[error("serve gRPC: {0}")]
    Grpc(#[from] tonic::transport::Error),
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
        let bus =
            Bus::connect(&config.nats.url, &config.nats.subject_prefix, &format!("presence-{replica_id}")).await?;

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

    /// Serves until `shutdown` completes, then drains and closes.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), Error> {
        let Self { config, bus, replica, grpc_listener, metrics_listener, registry, guard, stream_last_seq } = self;
        let cancel = CancellationToken::new();
        let tracker = TaskTracker::new();
        let readiness = Readiness::new();
        let (health, health_service) = tonic_health::server::health_reporter();
        health.set_not_serving::<PresenceServiceServer<PresenceGrpc>>().await;

        tracker.spawn({
            let readiness = readiness.clone();
            let cancel = cancel.clone();
            async move {
                if let Err(error) =
                    sb_telemetry::http::serve(metrics_listener, registry, readiness, cancel.cancelled_owned()).await
                {
                    tracing::error!(%error, "metrics endpoint failed");
                }
            }
        });
        tracker.spawn(crate::consume::run_applier(bus.clone(), replica.clone(), cancel.clone()));
        tracker.spawn(report_lag(bus.clone(), replica.clone(), cancel.clone()));

        // Once caught up: queries, liveness, emission, readiness.
        tracker.spawn({
            let (bus, replica, cancel, tracker_inner, readiness, health) =
                (bus.clone(), replica.clone(), cancel.clone(), tracker.clone(), readiness.clone(), health.clone());
            let liveness = LivenessSettings {
                timeout_min: config.edge_timeout_min,
                timeout_max: config.edge_timeout_max,
                stream_max_age: config.stream_max_age,
            };
            let lease = Lease::new(bus.clone(), replica.id.clone(), config.lease_ttl);
            let window = config.coalesce_window;
            let coalesce_above = config.coalesce_above;
            async move {
                tokio::select! {
                    () = cancel.cancelled() => return,
                    _ = replica.wait_applied(stream_last_seq, Duration::MAX) => {}
                }
                tracing::info!(replica = %replica.id, applied = replica.applied_seq(), "presence state rebuilt from the stream");
                tracker_inner.spawn({
                    let (bus, replica, tracker, cancel) = (bus.clone(), replica.clone(), tracker_inner.clone(), cancel.clone());
                    async move {
                        if let Err(error) = crate::query::serve_queries(bus, replica, tracker, cancel).await {
                            tracing::error!(%error, "cannot subscribe to presence queries");
                        }
                    }
                });
                tracker_inner.spawn({
                    let (bus, replica, cancel) = (bus.clone(), replica.clone(), cancel.clone());
                    async move {
                        if let Err(error) = run_liveness(bus, replica, liveness, cancel).await {
                            tracing::error!(%error, "cannot subscribe to edge heartbeats");
                        }
                    }
                });
                tracker_inner.spawn(crate::emit::run_emitter(bus, replica.clone(), lease, window, coalesce_above, cancel));
                readiness.set_ready();
                replica.set_ready(true);
                health.set_serving::<PresenceServiceServer<PresenceGrpc>>().await;
            }
        });

        let reflection =
            sb_telemetry::grpc::reflection(sb_proto::FILE_DESCRIPTOR_SET, "switchboard.presence.v1.PresenceService")?;
        let grpc = sb_telemetry::grpc::router(health_service, reflection)
            .add_service(PresenceServiceServer::new(PresenceGrpc::new(replica.clone(), guard)))
            .serve_with_incoming_shutdown(
                tonic::transport::server::TcpIncoming::from(grpc_listener),
                cancel.clone().cancelled_owned(),
            );
        let mut grpc = tokio::spawn(grpc);

        let result = tokio::select! {
            () = shutdown => Ok(()),
            result = &mut grpc => match result {
                Ok(Ok(())) => Ok(()),
                Ok(Err(error)) => Err(Error::Grpc(error)),
                Err(error) => {
                    tracing::error!(%error, "gRPC server task failed");
                    Ok(())
                }
            },
        };
        tracing::info!("presence shutting down");
        readiness.set_not_ready();
        health.set_not_serving::<PresenceServiceServer<PresenceGrpc>>().await;
        cancel.cancel();
        tracker.close();
        if tokio::time::timeout(DRAIN_TIMEOUT, tracker.wait()).await.is_err() {
            tracing::warn!("presence tasks did not stop within {DRAIN_TIMEOUT:?}");
        }
        if !grpc.is_finished() {
            let _ = tokio::time::timeout(DRAIN_TIMEOUT, &mut grpc).await;
        }
        bus.close().await;
        result
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
