//! Starting the messaging service in-process for tests.
//!
//! ```ignore
//! let nats = NatsServer::start().await?;
//! let db = TestDatabase::create(DbKind::Sqlite).await?;
//! let messaging = spawn_messaging(messaging_config(nats.url(), &db.url)).await?;
//! // ... messaging.grpc_addr, messaging.metrics_addr; dropping it stops it.
//! ```

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;

use crate::{CrashableRuntime, RunningService};

/// Messaging settings for a test: loopback port-0 listeners, the given NATS
/// and database, a short retry delay. Adjust fields before spawning.
pub fn messaging_config(nats_url: &str, database_url: &str) -> sb_messaging::Config {
    sb_messaging::Config::for_tests(nats_url, database_url)
}

/// A messaging service running on the test's runtime; dropping it stops it.
pub struct RunningMessaging {
    /// Where its gRPC server listens.
    pub grpc_addr: SocketAddr,
    /// Where `/metrics`, `/healthz` and `/readyz` are served.
    pub metrics_addr: SocketAddr,
    service: RunningService<sb_messaging::Error>,
}

impl RunningMessaging {
    /// `http://<grpc_addr>` for tonic clients.
    pub fn grpc_url(&self) -> String {
        format!("http://{}", self.grpc_addr)
    }

    /// Starts the graceful stop without waiting for it.
    pub fn begin_stop(&self) {
        self.service.begin_stop();
    }

    /// Stops it gracefully and waits until it has drained.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.service.stop().await
    }
}

/// Builds messaging with `config` (connect, migrate, bind) and runs it on the
/// current runtime until the handle is stopped or dropped.
pub async fn spawn_messaging(config: sb_messaging::Config) -> anyhow::Result<RunningMessaging> {
    sb_telemetry::init_for_tests();
    let app = sb_messaging::App::build(config).await.context("build messaging")?;
    let (grpc_addr, metrics_addr) = (app.grpc_addr(), app.metrics_addr());
    let service = RunningService::spawn("messaging", |shutdown| app.run(shutdown));
    Ok(RunningMessaging { grpc_addr, metrics_addr, service })
}

/// Builds and runs messaging on `runtime`, which the test may
/// [`CrashableRuntime::crash`] at any moment (the service never shuts down
/// gracefully otherwise). Returns the gRPC and metrics addresses.
pub async fn spawn_messaging_on(
    runtime: &CrashableRuntime,
    config: sb_messaging::Config,
) -> anyhow::Result<(SocketAddr, SocketAddr)> {
    sb_telemetry::init_for_tests();
    let (started, addresses) = tokio::sync::oneshot::channel();
    runtime.spawn(async move {
        match sb_messaging::App::build(config).await {
            Ok(app) => {
                let _ = started.send(Ok((app.grpc_addr(), app.metrics_addr())));
                if let Err(error) = app.run(std::future::pending()).await {
                    tracing::error!(%error, "crashable messaging stopped with an error");
                }
            }
            Err(error) => {
                let _ = started.send(Err(error));
            }
        }
    });
    let addresses = tokio::time::timeout(Duration::from_secs(30), addresses)
        .await
        .context("messaging did not start within 30 s")?
        .context("messaging runtime stopped before it started")?
        .context("build messaging")?;
    Ok(addresses)
}
