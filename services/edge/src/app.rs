//! [`App`]: building the edge (bind, connect, subscribe, start reporting)
//! and running it until shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use sb_authn::{AuthClient, AuthnError, VerifyCacheSettings};
use sb_events::EdgeId;
use sb_events::bus::{Bus, BusError};
use sb_presence_client::{PresenceQueries, Reporter, ReporterConfig, ReporterError};
use sb_service::{Check, Service};
use socketioxide::SocketIo;
use socketioxide::handler::ConnectHandler as _;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::admission::AddressLimiter;
use crate::config::{Config, DRAIN_STOP_MARGIN};
use crate::connect;
use crate::ctx::{EdgeCtx, KnownUsers};
use crate::delivery::{Deliveries, DeliveryError};
use crate::drain::{Drain, DrainParts, Gate};
use crate::http::{InvalidCorsOrigin, cors_layer, probe_readiness};
use crate::ingest::{Ingest, IngestSettings};
use crate::metrics::Metrics;
use crate::payload::Limits;
use crate::presence::{EdgeSessions, Presence};
use crate::session::{Registry, SessionLimits};
use crate::socket::SocketArc;
use crate::transport::{ClosableListener, Connection, Transports};

/// How often `/readyz` re-checks NATS and auth.
const READINESS_INTERVAL: Duration = Duration::from_secs(1);
/// Bytes the WebSocket reader asks the socket for at a time (engineioxide
/// allocates this per connection; larger frames take several reads).
const WS_READ_BUFFER_BYTES: usize = 1024;

/// Why the edge could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    /// `EDGE_ID` is not a valid id.
    #[error("invalid EDGE_ID: {0}")]
    EdgeId(#[from] sb_events::IdError),
    /// NATS could not be reached or a subject prefix is wrong.
    #[error(transparent)]
    Bus(#[from] BusError),
    /// `AUTH_ADDR` is unusable.
    #[error(transparent)]
    Auth(#[from] AuthnError),
    /// `CORS_ORIGINS` is unusable.
    #[error(transparent)]
    Cors(#[from] InvalidCorsOrigin),
    /// The presence reporter could not start (NATS without JetStream?).
    #[error("start presence reporting: {0}")]
    Presence(#[from] ReporterError),
    /// A subscription could not be made.
    #[error(transparent)]
    Delivery(#[from] DeliveryError),
    /// The control subscription could not be made.
    #[error("subscribe to access changes: {0}")]
    Control(#[from] async_nats::SubscribeError),
    /// The listen address could not be bound.
    #[error("bind {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// Settings that cannot work together.
    #[error("{0}")]
    Config(String),
    /// A server or task failed while running.
    #[error(transparent)]
    Service(#[from] sb_service::ServiceError),
}

/// A built edge, ready to [`App::run`].
pub struct App {
    service: Service,
    listener: TcpListener,
    drain_duration: Duration,
    handshake_timeout: Duration,
    local_addr: SocketAddr,
    router: axum::Router,
    ctx: Arc<EdgeCtx>,
    auth_addr: String,
    background: CancellationToken,
    shutdown_timeout: Duration,
}

impl App {
    /// Connects NATS, subscribes to `deliver.all` and access changes, starts
    /// presence reporting (its `EdgeUp` is stored before this returns), and
    /// binds the listener. Auth is connected lazily, so the edge starts
    /// before auth does (connects are refused until auth answers).
    pub async fn build(config: Config) -> Result<App, EdgeError> {
        config.validate().map_err(EdgeError::Config)?;
        let client_address_header = config
            .client_address_header
            .as_deref()
            .map(str::trim)
            .filter(|name| !name.is_empty())
            .map(|name| {
                http::HeaderName::try_from(name).map_err(|_| {
                    EdgeError::Config(format!("CLIENT_ADDRESS_HEADER {name:?} is not an HTTP header name"))
                })
            })
            .transpose()?;
        let edge_id = EdgeId::parse(config.resolved_edge_id())?;
        let mut bus = Bus::connect(&config.nats, &format!("sb-edge {edge_id}")).await?;
        bus.request_timeout = config.request_timeout.max(Duration::from_millis(1));
        // Messages are accepted into the stream even while messaging is
        // down; it stores them when it comes back.
        bus.ensure_ingest_stream(config.stream_replicas).await?;

        let mut auth = AuthClient::connect_lazy(&config.auth_addr)?;
        if !config.auth_cache_ttl.is_zero() {
            auth = auth.with_verify_cache(VerifyCacheSettings {
                ttl: config.auth_cache_ttl,
                ..VerifyCacheSettings::default()
            });
        }

        let mut builder = SocketIo::builder();
        if !config.handshake_timeout.is_zero() {
            // The Socket.IO CONNECT is the last step of the handshake.
            builder = builder.connect_timeout(config.handshake_timeout);
        }
        let (layer, io) = builder
            .req_path("/socket.io")
            .ping_interval(config.ping_interval)
            .ping_timeout(config.ping_timeout)
            .max_buffer_size(config.socket_buffer_packets.max(16))
            .max_payload(config.polling_max_payload)
            .ws_max_message_size(config.ws_max_message_size)
            .ws_max_frame_size(config.ws_max_message_size)
            // Chat frames are small: a 1 KiB read buffer instead of 4 KiB
            // saves ~3 KB per idle connection (docs/benchmarks.md).
            .ws_read_buffer_size(WS_READ_BUFFER_BYTES)
            .build_layer();

        let mut prometheus = prometheus_client::registry::Registry::default();
        let metrics = Metrics::register(&mut prometheus);
        let auth = auth.count_cache(
            metrics.token_cache.get_or_create(&crate::metrics::CacheResultLabel { result: "hit" }).clone(),
            metrics.token_cache.get_or_create(&crate::metrics::CacheResultLabel { result: "miss" }).clone(),
        );
        bus.register_metrics(prometheus.sub_registry_with_prefix("switchboard_edge"));
        let max_sockets = config.resolved_max_sockets();
        let registry = Registry::with_limits(SessionLimits {
            sockets: max_sockets,
            per_user: config.max_sockets_per_user as usize,
        });
        let transports = Arc::new(Transports::default());
        let service = Service::new("edge");
        let capacity_registry = registry.clone();
        service.health().add_probe("capacity", move || {
            if capacity_registry.is_full() {
                Check::failing(format!("full: {max_sockets} sockets (MAX_SOCKETS)"))
            } else {
                Check::Ok
            }
        });
        let tracker = service.tracker().clone();
        let background = CancellationToken::new();
        let deliveries = Deliveries::new(
            bus.clone(),
            edge_id.clone(),
            io.clone(),
            metrics.clone(),
            tracker.clone(),
            config.presence_frames_per_sec,
            transports.clone(),
        );
        deliveries.subscribe_all(background.clone()).await?;

        let drain = Drain::new(DrainParts {
            default_over: config.drain_duration,
            health: service.health().clone(),
            registry: registry.clone(),
            io: io.clone(),
            metrics: metrics.clone(),
            tracker: tracker.clone(),
            stop: service.stop_token(),
            transports,
        });
        let sessions = Arc::new(EdgeSessions {
            registry: registry.clone(),
            io: io.clone(),
            metrics: metrics.clone(),
            tracker: tracker.clone(),
            drain: drain.clone(),
        });

        let addr = config.bind_addr();
        let listener = sb_config::bind_listener("Socket.IO", addr)
            .await
            .map_err(|error| EdgeError::Bind { addr, source: error.source })?;
        let local_addr = listener.local_addr().map_err(|source| EdgeError::Bind { addr, source })?;
        // Private deliveries reach this edge on its own subject (heartbeats say so).
        let reporter_config = ReporterConfig {
            edge_delivery: true,
            address: config.advertised_url(local_addr),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            ..ReporterConfig::new(edge_id.clone())
        };
        let reporter = Reporter::start(bus.clone(), reporter_config, sessions, &tracker).await?;
        let ingest = Ingest::start(
            bus.clone(),
            &edge_id,
            IngestSettings {
                linger: config.ingest_linger,
                linger_from_rate: config.ingest_linger_from_rate,
                max_batch: usize::from(config.ingest_batch_max),
                max_in_flight: usize::from(config.ingest_max_in_flight),
            },
            metrics.clone(),
            &tracker,
            background.clone(),
        );
        let presence = Presence { reporter, queries: PresenceQueries::new(bus.clone()) };

        let ctx = Arc::new(EdgeCtx {
            edge_id: edge_id.clone(),
            bus,
            auth: auth.clone(),
            io: io.clone(),
            deliveries,
            ingest,
            registry,
            presence,
            metrics,
            tracker,
            known_users: KnownUsers::default(),
            limits: Limits { message_max_bytes: config.message_max_bytes },
            rate_per_sec: config.rate_limit_per_sec,
            rate_burst: config.rate_limit_burst,
            queue_limit: config.event_queue_limit.max(1),
            socket_buffer_bytes: config.socket_buffer_bytes,
            max_rooms_per_socket: usize::from(config.max_rooms_per_socket),
            publish_timeout: config.publish_timeout.max(Duration::from_millis(1)),
            drain,
        });
        crate::control::watch_access(ctx.clone(), background.clone()).await?;

        // The namespace (inside `io`, which the context holds) keeps its
        // handlers; they hold the context weakly so the two do not keep
        // each other alive after the edge stopped.
        let handler_ctx = Arc::downgrade(&ctx);
        let middleware_ctx = Arc::downgrade(&ctx);
        let on_connect = move |socket: SocketArc| connect::connected(handler_ctx.clone(), socket);
        let middleware = move |socket: SocketArc, auth: socketioxide::extract::TryData<serde_json::Value>| {
            connect::authenticate(middleware_ctx.clone(), socket, auth)
        };
        io.ns("/", on_connect.with(middleware));

        let gate = Arc::new(Gate {
            drain: Arc::downgrade(&ctx.drain),
            limiter: AddressLimiter::new(
                config.connect_rate_per_address,
                config.connect_burst_per_address,
                client_address_header,
            ),
        });
        let router = crate::http::router(auth, service.ops_router(Arc::new(prometheus)))
            .layer(layer)
            .layer(axum::middleware::from_fn_with_state(gate, crate::drain::gate))
            .layer(cors_layer(&config.cors_origins)?);
        ctx.drain.transports.set_service(router.clone());

        tracing::info!(%local_addr, edge = %edge_id, "edge listening");
        Ok(App {
            service,
            listener,
            local_addr,
            router,
            ctx,
            auth_addr: config.auth_addr,
            background,
            shutdown_timeout: config.shutdown_timeout,
            drain_duration: config.drain_duration,
            handshake_timeout: config.handshake_timeout,
        })
    }

    /// The bound address (Socket.IO and HTTP).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// This edge's id.
    pub fn edge_id(&self) -> &str {
        self.ctx.edge_id.as_str()
    }

    /// Serves until `shutdown` completes, then stops within
    /// `SHUTDOWN_TIMEOUT`: not ready first, then every socket disconnected
    /// (their close steps report to presence), `EdgeDown` reported,
    /// background tasks stopped, NATS drained.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), EdgeError> {
        let App {
            service,
            listener,
            router,
            ctx,
            auth_addr,
            background,
            shutdown_timeout,
            drain_duration,
            handshake_timeout,
            ..
        } = self;
        service.spawn_background(probe_readiness(
            service.health().clone(),
            ctx.bus.client.clone(),
            ctx.auth.clone(),
            auth_addr,
            READINESS_INTERVAL,
            service.stop_token(),
        ));
        let timed_out = ctx
            .metrics
            .connect_rejects
            .get_or_create(&crate::metrics::ReasonLabel { reason: "handshake_timeout" })
            .clone();
        let listener = ClosableListener::new(listener, handshake_timeout, timed_out);
        service.serve_http_with_connect_info::<_, Connection>("HTTP server", listener, router);
        let drain_ctx = ctx.clone();
        let release_ctx = ctx.clone();
        let result = service
            .run(
                shutdown,
                shutdown_timeout,
                |deadline| async move {
                    let ctx = drain_ctx;
                    tracing::info!(edge = %ctx.edge_id, "edge shutting down");
                    // A drain (begun now, or earlier by the admin) closes the
                    // sockets gradually; what is left is closed at once below.
                    if !drain_duration.is_zero() || ctx.drain.is_draining() {
                        ctx.drain.begin(None);
                        let drained = deadline.checked_sub(DRAIN_STOP_MARGIN).unwrap_or(deadline);
                        if tokio::time::timeout_at(drained, ctx.drain.finished()).await.is_err() {
                            tracing::warn!("the drain did not finish in time; closing the rest at once");
                        }
                    }
                    // Closing the transports (not a Socket.IO DISCONNECT) lets clients
                    // reconnect, to another edge behind the same address.
                    if tokio::time::timeout_at(deadline, ctx.io.close()).await.is_err() {
                        tracing::warn!("closing sockets took too long; going on");
                    }
                    crate::queue::close_all(&ctx);
                    // Let the sockets' close steps run (they tell presence), bounded.
                    while !ctx.registry.is_empty() && tokio::time::Instant::now() < deadline {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    match tokio::time::timeout_at(deadline, ctx.presence.reporter.shutdown()).await {
                        Ok(Ok(())) => {}
                        Ok(Err(error)) => tracing::warn!(%error, "report this edge's stop to presence"),
                        Err(_) => tracing::warn!("reporting this edge's stop to presence took too long"),
                    }
                    background.cancel();
                },
                |_| async move {
                    release_ctx.bus.close().await;
                    tracing::info!(edge = %release_ctx.edge_id, "edge stopped");
                },
            )
            .await;
        result.map_err(EdgeError::from)
    }
}
