//! The operational HTTP endpoint every service serves: `/metrics`
//! (Prometheus text format), `/healthz` (the process is alive) and `/readyz`
//! (it can do its work; 503 while starting or draining).
//!
//! Services register their metrics in a [`prometheus_client::registry::Registry`]
//! at start-up and hand it to [`router`], which the edge merges into its own
//! axum app and the other services serve on their metrics port with [`serve`].

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::registry::Registry;

/// Whether a service is ready for traffic; cheap to clone and share.
#[derive(Debug, Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    /// A readiness flag that starts as not ready.
    pub fn new() -> Self {
        Self::default()
    }

    /// Marks the service ready (`/readyz` answers 200).
    pub fn set_ready(&self) {
        self.0.store(true, Ordering::Release);
    }

    /// Marks the service not ready (`/readyz` answers 503), e.g. while draining.
    pub fn set_not_ready(&self) {
        self.0.store(false, Ordering::Release);
    }

    /// Whether the service is ready.
    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

#[derive(Clone)]
struct EndpointState {
    registry: Arc<Registry>,
    readiness: Readiness,
}

/// Routes `/metrics`, `/healthz` and `/readyz`.
pub fn router(registry: Arc<Registry>, readiness: Readiness) -> axum::Router {
    axum::Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(EndpointState { registry, readiness })
}

/// Serves [`router`] on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    registry: Arc<Registry>,
    readiness: Readiness,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(registry, readiness)).with_graceful_shutdown(shutdown).await
}

async fn metrics(State(state): State<EndpointState>) -> impl IntoResponse {
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, &state.registry) {
        Ok(()) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
            body,
        ),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "encode metrics failed".to_owned(),
        ),
    }
}

async fn readyz(State(state): State<EndpointState>) -> impl IntoResponse {
    if state.readiness.is_ready() { (StatusCode::OK, "ready") } else { (StatusCode::SERVICE_UNAVAILABLE, "not ready") }
}
