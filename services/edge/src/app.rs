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
use sb_telemetry::http::Readiness;
use socketioxide::SocketIo;
use socketioxide::handler::ConnectHandler as _;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::connect;
use crate::ctx::{EdgeCtx, KnownUsers};
use crate::delivery::{Deliveries, DeliveryError};
use crate::http::{InvalidCorsOrigin, cors_layer, probe_readiness};
use crate::metrics::Metrics;
use crate::payload::Limits;
use crate::presence::{EdgeSessions, Presence};
use crate::session::Registry;
use crate::socket::SocketArc;

/// How often `/readyz` re-checks NATS and auth.
const READINESS_INTERVAL: Duration = Duration::from_secs(1);
/// How long plain HTTP connections get to finish once the sockets are closed.
const HTTP_DRAIN: Duration = Duration::from_secs(1);
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
    /// The HTTP server failed.
    #[error("serve HTTP: {0}")]
    Serve(#[source] std::io::Error),
}

/// A built edge, ready to [`App::run`].
pub struct App {
    listener: TcpListener,
    local_addr: SocketAddr,
    router: axum::Router,
    ctx: Arc<EdgeCtx>,
    readiness: Readiness,
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
        let edge_id = EdgeId::parse(config.resolved_edge_id())?;
        let mut bus =
            Bus::connect(&config.nats.url, &config.nats.subject_prefix, &format!("sb-edge {edge_id}")).await?;
        bus.request_timeout = config.request_timeout();
        // Messages are accepted into the stream even while messaging is
        // down; it stores them when it comes back.
        bus.ensure_ingest_stream(config.stream_replicas).await?;

        let mut auth = AuthClient::connect_lazy(&config.auth_addr)?;
        if config.auth_cache_ttl_ms > 0 {
            auth = auth.with_verify_cache(VerifyCacheSettings {
                ttl: Duration::from_millis(config.auth_cache_ttl_ms),
                ..VerifyCacheSettings::default()
            });
        }

        let (layer, io) = SocketIo::builder()
            .req_path("/socket.io")
            .ping_interval(Duration::from_millis(config.ping_interval_ms))
            .ping_timeout(Duration::from_millis(config.ping_timeout_ms))
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
        let registry = Registry::new();
        let tracker = TaskTracker::new();
        let background = CancellationToken::new();
        let deliveries =
            Deliveries::new(bus.clone(), io.clone(), metrics.clone(), tracker.clone(), config.presence_frames_per_sec);
        deliveries.subscribe_all(background.clone()).await?;

        let sessions = Arc::new(EdgeSessions { registry: registry.clone(), io: io.clone(), metrics: metrics.clone() });
        let reporter = Reporter::start(bus.clone(), ReporterConfig::new(edge_id.clone()), sessions).await?;
        let presence = Presence { reporter, queries: PresenceQueries::new(bus.clone()) };

        let ctx = Arc::new(EdgeCtx {
            edge_id: edge_id.clone(),
            bus,
            auth: auth.clone(),
            io: io.clone(),
            deliveries,
            registry,
            presence,
            metrics,
            tracker,
            known_users: KnownUsers::default(),
            limits: Limits { message_max_bytes: config.message_max_bytes },
            rate_per_sec: config.rate_limit_per_sec,
            rate_burst: config.rate_limit_burst,
            queue_limit: config.event_queue_limit.max(1),
            publish_timeout: config.publish_timeout(),
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

        let readiness = Readiness::new();
        let router = crate::http::router(auth, Arc::new(prometheus), readiness.clone())
            .layer(layer)
            .layer(cors_layer(&config.cors_origins)?);

        let addr = config.bind_addr();
        let listener = TcpListener::bind(addr).await.map_err(|source| EdgeError::Bind { addr, source })?;
        let local_addr = listener.local_addr().map_err(|source| EdgeError::Bind { addr, source })?;
        tracing::info!(%local_addr, edge = %edge_id, "edge listening");
        Ok(App {
            listener,
            local_addr,
            router,
            ctx,
            readiness,
            auth_addr: config.auth_addr,
            background,
            shutdown_timeout: Duration::from_millis(config.shutdown_timeout_ms.max(1)),
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

    /// Serves until `shutdown` completes, then stops gracefully: not ready,
    /// every socket disconnected (their close steps report to presence),
    /// `EdgeDown` reported, background tasks stopped, NATS drained.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), EdgeError> {
        let App { listener, router, ctx, readiness, auth_addr, background, shutdown_timeout, .. } = self;
        let probe = tokio::spawn(probe_readiness(
            readiness.clone(),
            ctx.bus.client.clone(),
            ctx.auth.clone(),
            auth_addr,
            READINESS_INTERVAL,
            background.clone(),
        ));

        let stop_server = CancellationToken::new();
        let server = axum::serve(listener, router).with_graceful_shutdown(stop_server.clone().cancelled_owned());
        let mut server = tokio::spawn(async move { server.await });
        let server_result = tokio::select! {
            () = shutdown => None,
            result = &mut server => Some(result),
        };
        if let Some(result) = server_result {
            // The server stopped by itself: report it after cleaning up.
            background.cancel();
            ctx.presence.reporter.shutdown().await.ok();
            ctx.bus.close().await;
            return match result {
                Ok(Ok(())) => Ok(()),
                Ok(Err(error)) => Err(EdgeError::Serve(error)),
                Err(join) => Err(EdgeError::Serve(std::io::Error::other(join))),
            };
        }

        tracing::info!(edge = %ctx.edge_id, "edge shutting down");
        readiness.set_not_ready();
        probe.abort();
        readiness.set_not_ready();
        let deadline = tokio::time::Instant::now() + shutdown_timeout;
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
        stop_server.cancel();
        // Sockets are closed by now; what is left are plain HTTP requests
        // and engine.io connections that never joined the namespace (refused
        // clients that did not hang up). Give them a moment, then close.
        let http_deadline = deadline.min(tokio::time::Instant::now() + HTTP_DRAIN);
        match tokio::time::timeout_at(http_deadline, &mut server).await {
            Ok(Ok(Err(error))) => tracing::warn!(%error, "HTTP server stopped with an error"),
            Ok(_) => {}
            Err(_) => {
                tracing::debug!("closing the HTTP connections still open");
                server.abort();
            }
        }
        ctx.tracker.close();
        if tokio::time::timeout_at(deadline, ctx.tracker.wait()).await.is_err() {
            tracing::warn!("some socket tasks did not finish before the shutdown deadline");
        }
        if tokio::time::timeout(HTTP_DRAIN, ctx.bus.close()).await.is_err() {
            tracing::warn!("draining NATS took too long");
        }
        tracing::info!(edge = %ctx.edge_id, "edge stopped");
        Ok(())
    }
}
