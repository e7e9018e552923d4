//! The HTTP operations endpoint every service serves: `/metrics`
//! (Prometheus text), `/healthz` (the process is alive) and `/readyz` (it can
//! do its work: 200 with the [`crate::health::Report`] as JSON, 503 with the
//! same body while starting, broken or stopping). Health checks and scrapes
//! are never traced.
//!
//! The edge merges [`router`] into its Socket.IO app; the other services
//! serve it alone on `METRICS_ADDR`. [`probe`] is the client side, for the
//! binaries' `healthcheck` subcommand (the runtime image has no curl).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::health::Health;

#[derive(Clone)]
struct OpsState {
    registry: Arc<Registry>,
    health: Health,
}

/// Routes `/metrics`, `/healthz` and `/readyz`.
pub fn router(registry: Arc<Registry>, health: Health) -> axum::Router {
    axum::Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { axum::Json(serde_json::json!({"status": "alive"})) }))
        .route("/readyz", get(readyz))
        .with_state(OpsState { registry, health })
}

async fn metrics(State(state): State<OpsState>) -> impl IntoResponse {
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

async fn readyz(State(state): State<OpsState>) -> impl IntoResponse {
    let report = state.health.report();
    let status = if report.ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, axum::Json(report.to_json()))
}

/// What [`probe`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeOutcome {
    /// The endpoint answered 200.
    Healthy,
    /// It answered with another status; the body says why.
    Unhealthy {
        /// The HTTP status line's code.
        status: u16,
        /// The response body (the readiness report).
        body: String,
    },
    /// Nothing answered in time.
    Unreachable(String),
}

/// Asks `path` (`/readyz` or `/healthz`) on `addr` with a plain HTTP/1.1
/// GET, within `timeout`. An unspecified bind address (`0.0.0.0`) is asked
/// on loopback.
pub async fn probe(addr: SocketAddr, path: &str, timeout: Duration) -> ProbeOutcome {
    let mut target = addr;
    if target.ip().is_unspecified() {
        target.set_ip(if addr.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(target).await?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: {target}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        Ok::<_, std::io::Error>(String::from_utf8_lossy(&response).into_owned())
    };
    let response = match tokio::time::timeout(timeout, exchange).await {
        Ok(Ok(response)) => response,
        Ok(Err(error)) => return ProbeOutcome::Unreachable(format!("{target}: {error}")),
        Err(_) => return ProbeOutcome::Unreachable(format!("{target}: no answer within {timeout:?}")),
    };
    let status = response.split_whitespace().nth(1).and_then(|code| code.parse::<u16>().ok()).unwrap_or(0);
    if status == 200 {
        return ProbeOutcome::Healthy;
    }
    let body = response.split_once("\r\n\r\n").map(|(_, body)| body.trim().to_owned()).unwrap_or_default();
    ProbeOutcome::Unhealthy { status, body }
}

/// `<binary> healthcheck`: asks `/readyz` on the service's own ops address
/// and turns the answer into an exit code, printing one line (the
/// readiness report when it is not ready).
pub async fn healthcheck(addr: SocketAddr) -> std::process::ExitCode {
    match probe(addr, "/readyz", Duration::from_secs(3)).await {
        ProbeOutcome::Healthy => {
            println!("ready ({addr})");
            std::process::ExitCode::SUCCESS
        }
        ProbeOutcome::Unhealthy { status, body } => {
            eprintln!("not ready: HTTP {status} from {addr}: {body}");
            std::process::ExitCode::FAILURE
        }
        ProbeOutcome::Unreachable(reason) => {
            eprintln!("not running: nothing answered at {reason}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::Check;

    #[tokio::test]
    async fn readyz_says_what_is_missing_and_probe_reads_it() {
        let health = Health::new();
        health.set("replay", Check::pending("in progress"));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = router(Arc::new(Registry::default()), health.clone());
        let server = tokio::spawn(async move { axum::serve(listener, app).await });

        let outcome = probe(addr, "/readyz", Duration::from_secs(5)).await;
        match outcome {
            ProbeOutcome::Unhealthy { status, body } => {
                assert_eq!(status, 503);
                let json: serde_json::Value = serde_json::from_str(&body).unwrap();
                assert_eq!(json["checks"]["replay"], "in progress");
            }
            other => panic!("expected not ready, got {other:?}"),
        }
        assert_eq!(probe(addr, "/healthz", Duration::from_secs(5)).await, ProbeOutcome::Healthy);
        health.set("replay", Check::Ok);
        assert_eq!(probe(addr, "/readyz", Duration::from_secs(5)).await, ProbeOutcome::Healthy);
        server.abort();
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let nobody = closed.local_addr().unwrap();
        drop(closed);
        assert!(matches!(probe(nobody, "/healthz", Duration::from_secs(2)).await, ProbeOutcome::Unreachable(_)));
    }
}
