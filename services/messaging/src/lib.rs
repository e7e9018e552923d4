//! The messaging service: stores every message an edge accepted and routes
//! it back to the edges that have recipients.
//!
//! - [`ingest`]: the durable JetStream pull consumer shared by all replicas;
//!   batches are stored, routed and only then acked.
//! - [`route`]: validation of an ingested message and the deliveries it
//!   becomes (`deliver.room.<r>`, `deliver.user.<u>`, `deliver.all`).
//! - [`store`]: the `messages` table on PostgreSQL or SQLite.
//! - [`query`]: history pages and pending claims, shared by NATS and gRPC.
//! - [`requests`]: the NATS requests the edge sends (`get_history`, pending
//!   claims on connect).
//! - [`grpc`]: the admin `MessagingService` (History, Notify, Announce).
//! - [`metrics`]: Prometheus metrics on `METRICS_ADDR`.
//!
//! [`App::build`] connects and binds, [`App::run`] serves until shutdown;
//! `docs/messaging.md` is the operator's view.

pub mod config;
pub mod grpc;
pub mod ingest;
pub mod metrics;
pub mod query;
pub mod requests;
pub mod route;
pub mod store;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use async_nats::jetstream::consumer::PullConsumer;
use prometheus_client::registry::Registry;
use sb_events::bus::{Bus, BusError};
use sb_proto::messaging::v1::messaging_service_server::MessagingServiceServer;
use sb_telemetry::http::Readiness;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use config::Config;

use crate::grpc::MessagingApi;
use crate::ingest::{ConsumerSetupError, Ingest, IngestSettings};
use crate::metrics::Metrics;
use crate::requests::{RequestSubscriptions, Requests};
use crate::store::Store;

static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");
static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// Why the service could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// NATS could not be reached.
    #[error(transparent)]
    Bus(#[from] BusError),
    /// The ingest stream or consumer could not be set up.
    #[error(transparent)]
    Consumer(#[from] ConsumerSetupError),
    /// The database could not be reached or migrated.
    #[error(transparent)]
    Db(#[from] sb_db::DbError),
    /// The request subjects could not be subscribed.
    #[error(transparent)]
    Requests(#[from] requests::RequestsError),
    /// A listener could not be bound.
    #[error(transparent)]
    Bind(#[from] sb_config::BindError),
    /// `AUTH_ADDR` is not usable.
    #[error("invalid AUTH_ADDR {addr:?}: {reason}")]
    AuthAddr {
        /// As configured.
        addr: String,
        /// Why.
        reason: String,
    },
    /// The reflection service could not be built (a bug in the descriptor set).
    #[error("build gRPC reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// The gRPC server failed.
    #[error("serve gRPC: {0}")]
    Grpc(#[from] tonic::transport::Error),
    /// The metrics server failed.
    #[error("serve metrics: {0}")]
    Metrics(std::io::Error),
}

/// A started (connected, migrated, bound) messaging service.
pub struct App {
    config: Config,
    bus: Bus,
    db: sb_db::Db,
    consumer: PullConsumer,
    ingest: Ingest,
    requests: Requests,
    subscriptions: RequestSubscriptions,
    api: MessagingApi,
    grpc_listener: TcpListener,
    metrics_listener: TcpListener,
    registry: Arc<Registry>,
    readiness: Readiness,
}

impl App {
    /// Connects to NATS and the database, migrates, creates the ingest stream
    /// and the durable consumer, subscribes to requests and binds both
    /// listeners. Nothing is consumed until [`App::run`].
    pub async fn build(config: Config) -> Result<Self, Error> {
        let bus = Bus::connect(&config.nats.url, &config.nats.subject_prefix, "sb-messaging").await?;
        let db = sb_db::Db::connect(&config.database).await?;
        db.migrate(&POSTGRES_MIGRATIONS, &SQLITE_MIGRATIONS).await?;
        let store = Store::new(db.clone());

        let settings = IngestSettings {
            batch_size: usize::from(config.ingest_batch_size),
            ack_wait: config.ingest_ack_wait,
            max_ack_pending: config.ingest_max_ack_pending,
            presence_timeout: config.presence_timeout,
            retry_delay: config.ingest_retry_delay,
            stream_replicas: config.stream_replicas,
        };
        let consumer = ingest::ensure_consumer(&bus, &settings).await?;

        let mut registry = Registry::default();
        let metrics = Metrics::register(&mut registry);

        let ingest = Ingest {
            bus: bus.clone(),
            store: store.clone(),
            metrics: metrics.clone(),
            settings,
            presence_unanswered: Arc::default(),
        };
        let requests = Requests { bus: bus.clone(), store: store.clone(), metrics: metrics.clone() };
        let subscriptions = requests.subscribe().await?;
        let api = MessagingApi::new(&config, bus.clone(), store, metrics)?;

        let grpc_listener = sb_config::bind_listener("gRPC", config.grpc_addr).await?;
        let metrics_listener = sb_config::bind_listener("metrics", config.metrics_addr).await?;
        Ok(Self {
            config,
            bus,
            db,
            consumer,
            ingest,
            requests,
            subscriptions,
            api,
            grpc_listener,
            metrics_listener,
            registry: Arc::new(registry),
            readiness: Readiness::new(),
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

    /// Consumes, answers and serves until `shutdown` completes, then stops
    /// taking work, finishes what is in flight (up to `SHUTDOWN_TIMEOUT`),
    /// drains NATS and closes the pool.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> Result<(), Error> {
        let Self {
            config,
            bus,
            db,
            consumer,
            ingest,
            requests,
            subscriptions,
            api,
            grpc_listener,
            metrics_listener,
            registry,
            readiness,
        } = self;
        let token = CancellationToken::new();
        let tracker = TaskTracker::new();
        let grpc_addr = grpc_listener.local_addr().unwrap_or(config.grpc_addr);
        let metrics_addr = metrics_listener.local_addr().unwrap_or(config.metrics_addr);

        let (health, health_service) = tonic_health::server::health_reporter();
        health.set_serving::<MessagingServiceServer<MessagingApi>>().await;
        let reflection =
            sb_telemetry::grpc::reflection(sb_proto::FILE_DESCRIPTOR_SET, "switchboard.messaging.v1.MessagingService")?;
        let grpc_server = sb_telemetry::grpc::router(health_service, reflection)
            .add_service(MessagingServiceServer::new(api))
            .serve_with_incoming_shutdown(
                tonic::transport::server::TcpIncoming::from(grpc_listener),
                token.clone().cancelled_owned(),
            );
        // A server that fails stops the whole service, and run returns its error.
        let (failures, mut failed) = tokio::sync::mpsc::unbounded_channel::<Error>();
        {
            let (token, failures) = (token.clone(), failures.clone());
            tracker.spawn(async move {
                if let Err(error) = grpc_server.await {
                    tracing::error!(%error, "gRPC server failed; shutting down");
                    let _ = failures.send(Error::Grpc(error));
                    token.cancel();
                }
            });
        }
        {
            let metrics_server = sb_telemetry::http::serve(
                metrics_listener,
                registry,
                readiness.clone(),
                token.clone().cancelled_owned(),
            );
            let token = token.clone();
            tracker.spawn(async move {
                if let Err(error) = metrics_server.await {
                    tracing::error!(%error, "metrics server failed; shutting down");
                    let _ = failures.send(Error::Metrics(error));
                    token.cancel();
                }
            });
        }
        tracker.spawn(ingest.run(consumer, token.clone()));
        tracker.spawn(requests.serve(subscriptions, tracker.clone(), token.clone()));
        readiness.set_ready();
        tracing::info!(%grpc_addr, %metrics_addr, "messaging started");

        tokio::select! {
            () = shutdown => tracing::info!("messaging shutting down"),
            () = token.cancelled() => {}
        }
        readiness.set_not_ready();
        health.set_not_serving::<MessagingServiceServer<MessagingApi>>().await;
        token.cancel();
        tracker.close();
        if tokio::time::timeout(config.shutdown_timeout, tracker.wait()).await.is_err() {
            tracing::warn!(timeout = ?config.shutdown_timeout, "in-flight work did not finish in time; stopping anyway");
        }
        bus.close().await;
        db.close().await;
        tracing::info!("messaging stopped");
        match failed.try_recv() {
            Ok(error) => Err(error),
            Err(_) => Ok(()),
        }
    }
}
