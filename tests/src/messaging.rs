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
use tokio_util::sync::CancellationToken;

use crate::CrashableRuntime;

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
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<Result<(), sb_messaging::Error>>>,
}

impl RunningMessaging {
    /// `http://<grpc_addr>` for tonic clients.
    pub fn grpc_url(&self) -> String {
        format!("http://{}", self.grpc_addr)
    }

    /// Stops it gracefully and waits until it has drained.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            task.await.context("join messaging")?.context("messaging stopped with an error")?;
        }
        Ok(())
    }
}

impl Drop for RunningMessaging {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Builds messaging with `config` (connect, migrate, bind) and runs it on the
/// current runtime until the handle is stopped or dropped.
pub async fn spawn_messaging(config: sb_messaging::Config) -> anyhow::Result<RunningMessaging> {
    sb_telemetry::init_for_tests();
    let app = sb_messaging::App::build(config).await.context("build messaging")?;
    let (grpc_addr, metrics_addr) = (app.grpc_addr(), app.metrics_addr());
    let stop = CancellationToken::new();
    let task = tokio::spawn(app.run(stop.clone().cancelled_owned()));
    Ok(RunningMessaging { grpc_addr, metrics_addr, stop, task: Some(task) })
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

/// Sends `GET path` over plain HTTP/1.0 and returns the status line and the body.
pub async fn http_get(addr: SocketAddr, path: &str) -> anyhow::Result<(String, String)> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(addr).await.with_context(|| format!("connect to {addr}"))?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n");
    stream.write_all(request.as_bytes()).await.context("send http request")?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await.context("read http response")?;
    let (head, body) = response.split_once("\r\n\r\n").context("http response has no body")?;
    let status = head.lines().next().unwrap_or_default().to_owned();
    Ok((status, body.to_owned()))
}

/// Reads a service's `/metrics` text.
pub async fn scrape_metrics(addr: SocketAddr) -> anyhow::Result<String> {
    let (status, body) = http_get(addr, "/metrics").await?;
    anyhow::ensure!(status.contains(" 200"), "metrics answered {status}");
    Ok(body)
}

/// The value of one sample in Prometheus text (`name{labels} value`); the
/// sum over label sets when `name` has several. `None` if absent.
pub fn metric_value(metrics: &str, name: &str) -> Option<f64> {
    let mut total = None;
    for line in metrics.lines().filter(|line| !line.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else { continue };
        let series_name = series.split('{').next().unwrap_or(series);
        if series_name == name
            && let Ok(value) = value.parse::<f64>()
        {
            *total.get_or_insert(0.0) += value;
        }
    }
    total
}
