//! [`Service`]: the servers and tasks of one service process, and its stop.
//!
//! Everything a service runs goes through the service's one
//! [`TaskTracker`], so the stop can wait for it. A server or task that fails
//! (returns an error, or ends while the service is running when it was
//! spawned as essential) stops the whole service, and [`Service::run`]
//! returns that error.
//!
//! The stop, whether asked for (SIGTERM, ctrl-c, a test's token) or caused
//! by a failure, goes in this order, all within `shutdown_timeout`:
//!
//! 1. every health status says not serving: `/readyz` 503 with
//!    `"shutdown": "in progress"`, gRPC health `NOT_SERVING` for `""` and
//!    every named service, so balancers stop sending work first;
//! 2. the service's own drain (the edge closes its sockets gradually;
//!    presence announces what it owes), given the deadline;
//! 3. the stop token is cancelled: servers finish in-flight calls and
//!    close, tasks return;
//! 4. the tracker is waited for, up to the deadline;
//! 5. the service's release (drain NATS, close the database), with what is
//!    left of the time.

use std::error::Error as StdError;
use std::future::{Future, IntoFuture as _};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::health::Health;

/// How often gRPC health is brought in line with probes that changed
/// without telling (a NATS connection that dropped).
const GRPC_HEALTH_REFRESH: Duration = Duration::from_secs(1);
/// How long an HTTP server may finish its requests after the stop token;
/// connections still open then (a long-poll, a client that never hangs up)
/// are left to close with the process.
const HTTP_GRACE: Duration = Duration::from_secs(1);

/// Why a service stopped on its own.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// A server or task returned an error.
    #[error("{what} failed: {source}")]
    Failed {
        /// Which server or task (`gRPC server`, `ingest`).
        what: &'static str,
        /// Its error.
        source: Box<dyn StdError + Send + Sync>,
    },
    /// An essential task ended while the service was running.
    #[error("{what} ended unexpectedly")]
    Ended {
        /// Which task.
        what: &'static str,
    },
    /// A task panicked.
    #[error("{what} panicked")]
    Panicked {
        /// Which task.
        what: &'static str,
    },
}

struct Shared {
    name: &'static str,
    health: Health,
    tracker: TaskTracker,
    stop: CancellationToken,
    /// Cancelled once the whole stop is over (the operations endpoint stays until then).
    end: CancellationToken,
    /// The operations endpoint's task, which outlives [`Shared::tracker`]'s wait.
    ops: TaskTracker,
    failure: CancellationToken,
    failures: Mutex<Vec<ServiceError>>,
    grpc: Mutex<Option<(HealthReporter, Vec<&'static str>)>>,
}

impl Shared {
    fn fail(&self, error: ServiceError) {
        if !self.stop.is_cancelled() {
            tracing::error!(service = self.name, %error, "stopping the service");
        }
        self.failures.lock().push(error);
        self.failure.cancel();
    }
}

/// One service process: its health, its tracker and its stop.
#[derive(Clone)]
pub struct Service {
    shared: Arc<Shared>,
}

impl Service {
    /// A service named `name` (`auth`, `edge`, …; for logs).
    pub fn new(name: &'static str) -> Self {
        Self {
            shared: Arc::new(Shared {
                name,
                health: Health::new(),
                tracker: TaskTracker::new(),
                stop: CancellationToken::new(),
                end: CancellationToken::new(),
                ops: TaskTracker::new(),
                failure: CancellationToken::new(),
                failures: Mutex::new(Vec::new()),
                grpc: Mutex::new(None),
            }),
        }
    }

    /// The service's readiness.
    pub fn health(&self) -> &Health {
        &self.shared.health
    }

    /// The tracker every task of the service goes through.
    pub fn tracker(&self) -> &TaskTracker {
        &self.shared.tracker
    }

    /// Cancelled when servers and tasks must stop (step 3 of the stop).
    pub fn stop_token(&self) -> CancellationToken {
        self.shared.stop.clone()
    }

    /// Runs `task` until it returns; an error stops the service.
    pub fn spawn<F, E>(&self, what: &'static str, task: F)
    where
        F: Future<Output = Result<(), E>> + Send + 'static,
        E: Into<Box<dyn StdError + Send + Sync>> + Send + 'static,
    {
        self.spawn_inner(what, false, task);
    }

    /// Runs `task`, which must last as long as the service: ending before
    /// the stop, with or without an error, stops the service.
    pub fn spawn_essential<F, E>(&self, what: &'static str, task: F)
    where
        F: Future<Output = Result<(), E>> + Send + 'static,
        E: Into<Box<dyn StdError + Send + Sync>> + Send + 'static,
    {
        self.spawn_inner(what, true, task);
    }

    /// Runs a task whose end means nothing (it stops with the stop token).
    pub fn spawn_background(&self, task: impl Future<Output = ()> + Send + 'static) {
        self.shared.tracker.spawn(task);
    }

    fn spawn_inner<F, E>(&self, what: &'static str, essential: bool, task: F)
    where
        F: Future<Output = Result<(), E>> + Send + 'static,
        E: Into<Box<dyn StdError + Send + Sync>> + Send + 'static,
    {
        let shared = self.shared.clone();
        let inner = self.shared.tracker.spawn(task);
        // A second, tiny task watches the first so a panic is reported too.
        self.shared.tracker.spawn(async move {
            match inner.await {
                Ok(Ok(())) if essential && !shared.stop.is_cancelled() => shared.fail(ServiceError::Ended { what }),
                Ok(Ok(())) => {}
                Ok(Err(error)) => shared.fail(ServiceError::Failed { what, source: error.into() }),
                Err(join) if join.is_panic() => shared.fail(ServiceError::Panicked { what }),
                Err(_) => {}
            }
        });
    }

    /// The gRPC health service for this server, kept in step with
    /// [`Self::health`] for the whole server (`""`) and for each of
    /// `services` (fully qualified names). It says `NOT_SERVING` until the
    /// health is ready.
    pub async fn grpc_health(
        &self,
        services: &[&'static str],
    ) -> tonic_health::pb::health_server::HealthServer<impl tonic_health::pb::health_server::Health + use<>> {
        let (reporter, server) = tonic_health::server::health_reporter();
        let names: Vec<&'static str> = std::iter::once("").chain(services.iter().copied()).collect();
        let ready = self.shared.health.is_ready();
        set_all(&reporter, &names, ready).await;
        *self.shared.grpc.lock() = Some((reporter.clone(), names.clone()));
        let health = self.shared.health.clone();
        let stop = self.shared.stop.clone();
        self.shared.tracker.spawn(async move {
            let mut published = ready;
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = health.changed() => {}
                    () = tokio::time::sleep(GRPC_HEALTH_REFRESH) => {}
                }
                let ready = health.is_ready();
                if ready != published {
                    set_all(&reporter, &names, ready).await;
                    published = ready;
                }
            }
        });
        server
    }

    /// Serves `router` on `listener` until the stop token; a failure stops
    /// the service.
    pub fn serve_grpc(&self, listener: TcpListener, router: sb_telemetry::grpc::Router) {
        let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
        let stop = self.shared.stop.clone();
        self.spawn_essential("gRPC server", async move {
            router.serve_with_incoming_shutdown(incoming, stop.cancelled_owned()).await
        });
    }

    /// Serves `router` (HTTP) on `listener` until the stop token, then
    /// gives in-flight requests a second; a failure stops the service.
    /// `what` names it in errors (`metrics server`, `HTTP server`).
    pub fn serve_http(&self, what: &'static str, listener: TcpListener, router: axum::Router) {
        let stop = self.shared.stop.clone();
        self.spawn_essential(what, async move {
            let serve = axum::serve(listener, router).with_graceful_shutdown(stop.clone().cancelled_owned());
            let grace = async {
                stop.cancelled().await;
                tokio::time::sleep(HTTP_GRACE).await;
            };
            tokio::select! {
                result = serve.into_future() => result,
                () = grace => Ok(()),
            }
        });
    }

    /// Like [`Self::serve_http`], on any axum `listener`, with each request
    /// carrying `C` (what `C` takes from its connection) as `ConnectInfo<C>`.
    pub fn serve_http_with_connect_info<L, C>(&self, what: &'static str, listener: L, router: axum::Router)
    where
        L: axum::serve::Listener,
        L::Addr: std::fmt::Debug,
        C: for<'a> axum::extract::connect_info::Connected<axum::serve::IncomingStream<'a, L>>
            + Clone
            + Send
            + Sync
            + 'static,
    {
        let stop = self.shared.stop.clone();
        self.spawn_essential(what, async move {
            let serve = axum::serve(listener, router.into_make_service_with_connect_info::<C>())
                .with_graceful_shutdown(stop.clone().cancelled_owned());
            let grace = async {
                stop.cancelled().await;
                tokio::time::sleep(HTTP_GRACE).await;
            };
            tokio::select! {
                result = serve.into_future() => result,
                () = grace => Ok(()),
            }
        });
    }

    /// The operations router (`/metrics`, `/healthz`, `/readyz`) for this
    /// service's health and `registry`, to merge into a server of its own.
    pub fn ops_router(&self, registry: Arc<prometheus_client::registry::Registry>) -> axum::Router {
        crate::ops::router(registry, self.shared.health.clone())
    }

    /// Serves the operations router on its own `listener` (`METRICS_ADDR`)
    /// for the whole life of the process, stop included: a probe during the
    /// stop gets `503` with `"shutdown": "in progress"`, not a refused
    /// connection.
    pub fn serve_ops(&self, listener: TcpListener, registry: Arc<prometheus_client::registry::Registry>) {
        let router = self.ops_router(registry);
        let end = self.shared.end.clone();
        // On its own tracker: it must outlive the wait for the main one.
        let shared = self.shared.clone();
        self.shared.ops.spawn(async move {
            if let Err(error) = axum::serve(listener, router).with_graceful_shutdown(end.cancelled_owned()).await {
                shared.fail(ServiceError::Failed { what: "metrics server", source: error.into() });
            }
        });
    }

    /// Runs until `shutdown` completes or something fails, then stops (see
    /// the module docs) within `shutdown_timeout`. `drain` gets the
    /// deadline and runs while the service still serves, but is no longer
    /// ready; `release` runs last, after every task ended or the time ran
    /// out.
    pub async fn run<S, D, DF, R, RF>(
        self,
        shutdown: S,
        shutdown_timeout: Duration,
        drain: D,
        release: R,
    ) -> Result<(), ServiceError>
    where
        S: Future<Output = ()>,
        D: FnOnce(Instant) -> DF,
        DF: Future<Output = ()>,
        R: FnOnce(Instant) -> RF,
        RF: Future<Output = ()>,
    {
        let shared = self.shared.clone();
        tokio::select! {
            () = shutdown => tracing::info!(service = shared.name, "shutting down"),
            () = shared.failure.cancelled() => {}
        }
        let deadline = Instant::now() + shutdown_timeout;
        shared.health.set_stopping();
        let grpc = shared.grpc.lock().clone();
        if let Some((reporter, names)) = grpc {
            set_all(&reporter, &names, false).await;
        }
        if tokio::time::timeout_at(deadline, drain(deadline)).await.is_err() {
            tracing::warn!(service = shared.name, timeout = ?shutdown_timeout, "draining took the whole shutdown time");
        }
        shared.stop.cancel();
        shared.tracker.close();
        if tokio::time::timeout_at(deadline, shared.tracker.wait()).await.is_err() {
            tracing::warn!(
                service = shared.name,
                timeout = ?shutdown_timeout,
                "in-flight work did not finish in time; stopping anyway"
            );
        }
        // Release gets a moment even when draining used up the time, so
        // NATS is at least flushed.
        let release_deadline = deadline.max(Instant::now() + Duration::from_secs(1));
        if tokio::time::timeout_at(release_deadline, release(release_deadline)).await.is_err() {
            tracing::warn!(service = shared.name, "releasing connections took too long");
        }
        shared.end.cancel();
        shared.ops.close();
        if tokio::time::timeout(HTTP_GRACE, shared.ops.wait()).await.is_err() {
            tracing::debug!(service = shared.name, "operations endpoint still had open connections");
        }
        tracing::info!(service = shared.name, "stopped");
        let mut failures = shared.failures.lock();
        if failures.is_empty() { Ok(()) } else { Err(failures.remove(0)) }
    }
}

async fn set_all(reporter: &HealthReporter, names: &[&'static str], ready: bool) {
    let status = if ready { ServingStatus::Serving } else { ServingStatus::NotServing };
    for name in names {
        reporter.set_service_status(*name, status).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::Check;

    #[tokio::test]
    async fn a_failing_task_stops_the_service_with_its_error() {
        let service = Service::new("test");
        let stop = service.stop_token();
        service.spawn_background(async move { stop.cancelled().await });
        service.spawn("worker", async { Err::<(), _>(std::io::Error::other("disk on fire")) });
        let result = service.run(std::future::pending(), Duration::from_secs(5), |_| async {}, |_| async {}).await;
        let error = result.expect_err("the worker failed");
        assert_eq!(error.to_string(), "worker failed: disk on fire");
    }

    #[tokio::test]
    async fn stop_marks_not_ready_before_draining_and_waits_for_tasks() {
        let service = Service::new("test");
        service.health().set("replay", Check::Ok);
        assert!(service.health().is_ready());
        let stop = service.stop_token();
        let finished = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = finished.clone();
        service.spawn_essential("loop", async move {
            stop.cancelled().await;
            flag.store(true, std::sync::atomic::Ordering::SeqCst);
            Ok::<(), std::io::Error>(())
        });
        let health = service.health().clone();
        let result = service
            .run(
                async {},
                Duration::from_secs(5),
                |_| {
                    let ready_while_draining = health.is_ready();
                    async move { assert!(!ready_while_draining, "not ready before the drain") }
                },
                |_| async {},
            )
            .await;
        assert!(result.is_ok());
        assert!(finished.load(std::sync::atomic::Ordering::SeqCst));
    }

    #[tokio::test]
    async fn an_essential_task_that_ends_stops_the_service() {
        let service = Service::new("test");
        service.spawn_essential("consumer", async { Ok::<(), std::io::Error>(()) });
        let result = service.run(std::future::pending(), Duration::from_secs(5), |_| async {}, |_| async {}).await;
        assert_eq!(result.expect_err("ended").to_string(), "consumer ended unexpectedly");
    }
}
