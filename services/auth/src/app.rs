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
use sb_service::Service;
use sqlx::migrate::Migrator;
use tokio::net::TcpListener;

use crate::config::{Config, DEV_JWT_SECRET, MAX_TOKEN_TTL_SECS};
use crate::error::AuthError;
use crate::grpc::AuthGrpc;
use crate::login_guard::{LoginGuard, Policy};
use crate::metrics::AuthMetrics;
use crate::service::AuthCore;
use crate::store::Store;
use crate::token::TokenKeys;

static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");
static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");

/// The gRPC service this server answers for (health reports it by name).
const GRPC_SERVICE: &str = "switchboard.auth.v1.AuthService";

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
    /// A server failed while running.
    #[error(transparent)]
    Service(#[from] sb_service::ServiceError),
}

/// A built auth service, ready to [`App::run`].
pub struct App {
    grpc_listener: TcpListener,
    metrics_listener: TcpListener,
    grpc_addr: SocketAddr,
    metrics_addr: SocketAddr,
    core: Arc<AuthCore>,
    registry: Arc<Registry>,
    shutdown_timeout: Duration,
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
        let mut keys = TokenKeys::new(secret.as_bytes(), config.jwt_clock_skew);
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
        let bus = Bus::connect(&config.nats, "sb-auth").await?;

        let policy = Policy { max_failures: config.login_max_failures, window: config.login_failure_window };
        let login_guard = LoginGuard::shared(policy, &bus, config.stream_replicas).await?;
        let mut registry = Registry::with_prefix("switchboard_auth");
        let metrics = AuthMetrics::register(&mut registry);
        bus.register_metrics(&mut registry);
        let core = Arc::new(AuthCore {
            store: Store::new(db),
            keys,
            bus,
            metrics,
            token_ttl_s: config.token_ttl.as_secs(),
            max_token_ttl_s: MAX_TOKEN_TTL_SECS,
            login_guard,
        });
        if let (Some(email), Some(password)) = (&config.bootstrap_admin_email, &config.bootstrap_admin_password) {
            core.ensure_bootstrap_admin(email, password.expose()).await.map_err(StartError::BootstrapAdmin)?;
        }
        tracing::info!(%grpc_addr, %metrics_addr, backend = ?core.store.db().backend, "auth built");
        Ok(Self {
            grpc_listener,
            metrics_listener,
            grpc_addr,
            metrics_addr,
            core,
            registry: Arc::new(registry),
            shutdown_timeout: config.shutdown_timeout,
        })
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
    /// server fails), then stops within `SHUTDOWN_TIMEOUT`: not serving
    /// first, in-flight calls finish, NATS and the database pool are closed.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), StartError> {
        let Self { grpc_listener, metrics_listener, grpc_addr, metrics_addr, core, registry, shutdown_timeout } = self;
        let service = Service::new("auth");
        let nats = core.bus.client.clone();
        service.health().add_probe("nats", move || sb_events::bus::connection_check(&nats));
        let reflection = sb_telemetry::grpc::reflection(sb_proto::FILE_DESCRIPTOR_SET, &[GRPC_SERVICE])?;
        let grpc = sb_telemetry::grpc::router(service.grpc_health(&[GRPC_SERVICE]).await, reflection)
            .add_service(AuthServiceServer::new(AuthGrpc::new(Arc::clone(&core))));
        service.serve_grpc(grpc_listener, grpc);
        service.serve_ops(metrics_listener, registry);
        tracing::info!(%grpc_addr, %metrics_addr, "auth serving");
        service
            .run(
                shutdown,
                shutdown_timeout,
                |_| async {},
                |_| async move {
                    core.bus.close().await;
                    core.store.db().close().await;
                },
            )
            .await?;
        Ok(())
    }
}
