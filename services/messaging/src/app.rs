//! [`App`]: builds the messaging service (connect NATS and the database,
//! migrate, set up the ingest consumer, subscribe to requests, bind the
//! listeners) and runs it until shutdown with the shared runner.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use async_nats::jetstream::consumer::PullConsumer;
use prometheus_client::registry::Registry;
use sb_events::bus::{Bus, BusError};
use sb_proto::messaging::v1::messaging_service_server::MessagingServiceServer;
use sb_service::{Check, Service};
use tokio::net::TcpListener;

use crate::config::Config;
use crate::grpc::MessagingApi;
use crate::ingest::{ConsumerSetupError, Ingest, IngestSettings};
use crate::metrics::Metrics;
use crate::requests::{RequestSubscriptions, Requests};
use crate::store::Store;

static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");
static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// The gRPC service this server answers for (health reports it by name).
const GRPC_SERVICE: &str = "switchboard.messaging.v1.MessagingService";

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
    Requests(#[from] crate::requests::RequestsError),
    /// A listener could not be bound.
    #[error(transparent)]
    Bind(#[from] sb_config::BindError),
    /// A setting is unusable.
    #[error(transparent)]
    Renamed(#[from] sb_config::RenamedSetting),
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
    /// A server or task failed while running.
    #[error(transparent)]
    Service(#[from] sb_service::ServiceError),
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
}

impl App {
    /// Connects to NATS and the database, migrates, creates the ingest stream
    /// and the durable consumer, subscribes to requests and binds both
    /// listeners. Nothing is consumed until [`App::run`].
    pub async fn build(config: Config) -> Result<Self, Error> {
        let bus = Bus::connect(&config.nats, "sb-messaging").await?;
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
        let consumer = crate::ingest::ensure_consumer(&bus, &settings).await?;

        let mut registry = Registry::default();
        let metrics = Metrics::register(&mut registry);
        bus.register_metrics(registry.sub_registry_with_prefix("switchboard_messaging"));

        let locate_cache = Arc::new(crate::locate::LocateCache::new(config.locate_cache_ttl, metrics.clone()));
        let ingest = Ingest {
            bus: bus.clone(),
            store: store.clone(),
            metrics: metrics.clone(),
            settings,
            presence_unanswered: Arc::default(),
            locate_cache,
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
    /// within `SHUTDOWN_TIMEOUT`: not ready first, then the batch in hand is
    /// finished (pulled messages not started go back to the stream), NATS is
    /// drained and the pool closed.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> Result<(), Error> {
        let grpc_addr = self.grpc_addr();
        let metrics_addr = self.metrics_addr();
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
        } = self;
        let service = Service::new("messaging");
        let nats = bus.client.clone();
        service.health().add_probe("nats", move || sb_events::bus::connection_check(&nats));

        let reflection = sb_telemetry::grpc::reflection(sb_proto::FILE_DESCRIPTOR_SET, &[GRPC_SERVICE])?;
        let grpc = sb_telemetry::grpc::router(service.grpc_health(&[GRPC_SERVICE]).await, reflection)
            .add_service(MessagingServiceServer::new(api));
        service.serve_grpc(grpc_listener, grpc);
        service.serve_ops(metrics_listener, registry);
        service.spawn_background(crate::locate::run_watcher(
            bus.clone(),
            ingest.locate_cache.clone(),
            service.stop_token(),
        ));
        service.spawn_essential("ingest", {
            let stop = service.stop_token();
            async move {
                ingest.run(consumer, stop).await;
                Ok::<(), std::convert::Infallible>(())
            }
        });
        service.spawn_essential("request answering", {
            let (tracker, stop) = (service.tracker().clone(), service.stop_token());
            async move {
                requests.serve(subscriptions, tracker, stop).await;
                Ok::<(), std::convert::Infallible>(())
            }
        });
        service.health().set("ingest", Check::Ok);
        tracing::info!(%grpc_addr, %metrics_addr, "messaging started");

        service
            .run(
                shutdown,
                config.shutdown_timeout,
                |_| async {},
                |_| async move {
                    bus.close().await;
                    db.close().await;
                },
            )
            .await?;
        Ok(())
    }
}
