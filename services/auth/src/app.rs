//! Starting and stopping the auth service: [`App::build`] does everything
//! that can fail (check the secret, bind, connect, migrate, bootstrap the
//! admin), [`App::run`] serves until the shutdown future completes.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::registry::Registry;
use sb_db::Db;
use sb_events::bus::Bus;
use sb_proto::auth::v1::auth_service_server::AuthServiceServer;
use sb_telemetry::http::Readiness;
use sqlx::migrate::Migrator;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::TcpIncoming;

use crate::config::{Config, DEV_JWT_SECRET, MAX_TOKEN_TTL_SECS};
use crate::error::AuthError;
use crate::grpc::AuthGrpc;
use crate::login_guard::LoginGuard;
use crate::metrics::AuthMetrics;
use crate::service::AuthCore;
use crate::store::Store;
use crate::token::TokenKeys;

static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");
static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");

/// How long in-flight requests may take to finish after shutdown starts.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Why auth could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// No signing key outside dev mode.
    #[error(
        "JWT_SECRET is not set: set JWT_SECRET (or --jwt-secret) to the HS256 signing key, at least 32 random \
         bytes, or run with --dev / SB_DEV=1 to use a public development key"
    )]
    MissingJwtSecret,
    /// A listener could not be bound.
    #[error(transparent)]
    Bind(#[from] sb_config::BindError),
    /// The database could not be reached or migrated.
    #[error(transparent)]
    Database(#[from] sb_db::DbError),
    /// NATS could not be reached.
    #[error(transparent)]
    Nats(#[from] sb_events::bus::BusError),
    /// The bootstrap admin could not be created.
    #[error("create the bootstrap admin: {0}")]
    BootstrapAdmin(AuthError),
    /// The reflection service could not be built.
    #[error("build the reflection service: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// The gRPC server failed.
    #[error("serve gRPC: {0}")]
    Grpc(#[from] tonic::transport::Error),
    /// The metrics endpoint failed.
    #[error("serve metrics: {0}")]
    Metrics(std::io::Error),
}

/// A built auth service, ready to [`App::run`].
pub struct App {
    grpc_listener: TcpListener,
    metrics_listener: TcpListener,
    grpc_addr: SocketAddr,
    metrics_addr: SocketAddr,
    core: Arc<AuthCore>,
    registry: Arc<Registry>,
}

impl App {
    /// Checks the settings, binds both listeners, connects to the database
    /// (migrating it) and to NATS, and creates the bootstrap admin.
    pub async fn build(config: Config) -> Result<Self, StartError> {
        let secret = match config.jwt_secret.as_ref().filter(|secret| !secret.is_empty()) {
            Some(secret) => {
                if secret.expose().len() < 32 {
                    tracing::warn!("JWT_SECRET is shorter than 32 bytes; use a longer random key");
                }
                secret.expose().to_owned()
            }
            None if config.dev => {
                tracing::warn!(
                    "JWT_SECRET is not set: dev mode signs tokens with a public dev key, never use this in production"
                );
                DEV_JWT_SECRET.to_owned()
            }
            None => return Err(StartError::MissingJwtSecret),
        };
        let mut keys = TokenKeys::new(secret.as_bytes(), Duration::from_secs(config.clock_skew_secs));
        if let Some(previous) = config.jwt_secret_previous.as_ref().filter(|previous| !previous.is_empty()) {
            if previous.expose() == secret {
                tracing::warn!("JWT_SECRET_PREVIOUS equals JWT_SECRET; it has no effect");
            } else {
                tracing::info!("accepting tokens signed with JWT_SECRET_PREVIOUS until they expire (key rotation)");
            }
            keys = keys.with_previous(previous.expose().as_bytes());
        }

        let grpc_listener = sb_config::bind_listener("gRPC", config.grpc_addr).await?;
        let metrics_listener = sb_config::bind_listener("metrics", config.metrics_addr).await?;
        let grpc_addr = grpc_listener.local_addr().map_err(|source| sb_config::BindError {
            what: "gRPC",
            addr: config.grpc_addr,
            source,
        })?;
        let metrics_addr = metrics_listener.local_addr().map_err(|source| sb_config::BindError {
            what: "metrics",
            addr: config.metrics_addr,
            source,
        })?;

        let db = Db::connect(&config.database).await?;
        db.migrate(&POSTGRES_MIGRATIONS, &SQLITE_MIGRATIONS).await?;
        let bus = Bus::connect(&config.nats.url, &config.nats.subject_prefix, "sb-auth").await?;

        let mut registry = Registry::with_prefix("sb_auth");
        let metrics = AuthMetrics::register(&mut registry);
        let core = Arc::new(AuthCore {
            store: Store::new(db),
            keys,
            bus,
            metrics,
            token_ttl_s: config.token_ttl_secs,
            max_token_ttl_s: MAX_TOKEN_TTL_SECS,
            login_guard: LoginGuard::new(
                config.login_max_failures,
                Duration::from_secs(config.login_failure_window_secs),
            ),
        });
        if let (Some(email), Some(password)) = (&config.bootstrap_admin_email, &config.bootstrap_admin_password) {
            core.ensure_bootstrap_admin(email, password.expose()).await.map_err(StartError::BootstrapAdmin)?;
        }
        tracing::info!(%grpc_addr, %metrics_addr, backend = ?core.store.db().backend, "auth built");
        Ok(Self { grpc_listener, metrics_listener, grpc_addr, metrics_addr, core, registry: Arc::new(registry) })
    }

    /// Where the gRPC server listens.
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_addr
    }

    /// Where `/metrics`, `/healthz` and `/readyz` are served.
    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics_addr
    }

    /// Serves gRPC and the metrics endpoint until `shutdown` completes (or a
    /// server fails), then marks itself not serving, lets in-flight calls
    /// finish (up to 10 s), and closes NATS and the database pool.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), StartError> {
        let token = CancellationToken::new();
        let readiness = Readiness::new();
        let (health_reporter, health_service) = tonic_health::server::health_reporter();
        health_reporter.set_serving::<AuthServiceServer<AuthGrpc>>().await;
        let reflection =
            sb_telemetry::grpc::reflection(sb_proto::FILE_DESCRIPTOR_SET, "switchboard.auth.v1.AuthService")?;

        let incoming = TcpIncoming::from(self.grpc_listener).with_nodelay(Some(true));
        let grpc_service = AuthServiceServer::new(AuthGrpc::new(Arc::clone(&self.core)));
        let grpc_token = token.clone();
        let grpc = async move {
            let serve = sb_telemetry::grpc::router(health_service, reflection)
                .add_service(grpc_service)
                .serve_with_incoming_shutdown(incoming, grpc_token.clone().cancelled_owned());
            let drain_deadline = async {
                grpc_token.cancelled().await;
                tokio::time::sleep(DRAIN_TIMEOUT).await;
            };
            let result = tokio::select! {
                result = serve => result.map_err(StartError::from),
                () = drain_deadline => {
                    tracing::warn!("gRPC calls still running after {DRAIN_TIMEOUT:?}; stopping anyway");
                    Ok(())
                }
            };
            grpc_token.cancel();
            result
        };
        let metrics_token = token.clone();
        let metrics = {
            let readiness = readiness.clone();
            async move {
                let result = sb_telemetry::http::serve(
                    self.metrics_listener,
                    self.registry,
                    readiness,
                    metrics_token.clone().cancelled_owned(),
                )
                .await
                .map_err(StartError::Metrics);
                metrics_token.cancel();
                result
            }
        };
        let watcher = {
            let token = token.clone();
            let readiness = readiness.clone();
            async move {
                tokio::select! {
                    () = shutdown => tracing::info!("auth shutting down"),
                    () = token.cancelled() => tracing::warn!("a server stopped; shutting auth down"),
                }
                readiness.set_not_ready();
                health_reporter.set_not_serving::<AuthServiceServer<AuthGrpc>>().await;
                // "" is the whole server: what a Kubernetes gRPC probe without a service name asks.
                health_reporter.set_service_status("", tonic_health::ServingStatus::NotServing).await;
                token.cancel();
            }
        };
        readiness.set_ready();
        tracing::info!(grpc_addr = %self.grpc_addr, metrics_addr = %self.metrics_addr, "auth serving");
        let (grpc_result, metrics_result, ()) = tokio::join!(grpc, metrics, watcher);

        self.core.bus.close().await;
        self.core.store.db().close().await;
        tracing::info!("auth stopped");
        grpc_result.and(metrics_result)
    }
}
