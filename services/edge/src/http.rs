//! Plain HTTP on the Socket.IO port: `POST /auth/login` (so a browser can
//! get a token), `/healthz`, `/readyz` and `/metrics` (the operations
//! router of `sb_service`), CORS, and the readiness probe that keeps the
//! `nats` and `auth` checks of `/readyz` honest.

use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use sb_authn::{AuthClient, AuthFailure, AuthnError};
use sb_service::{Check, Health};
use serde::Deserialize;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tower_http::cors::{AllowHeaders, AllowOrigin, CorsLayer};

/// Why the CORS setting is unusable.
#[derive(Debug, thiserror::Error)]
#[error("invalid CORS_ORIGINS entry {0:?}: use `*` or comma-separated origins like https://app.example.com")]
pub struct InvalidCorsOrigin(pub String);

/// CORS for `CORS_ORIGINS`: `*` allows any origin (without credentials);
/// a list allows exactly those origins, with credentials.
pub fn cors_layer(origins: &str) -> Result<CorsLayer, InvalidCorsOrigin> {
    let base =
        CorsLayer::new().allow_methods([Method::GET, Method::POST, Method::OPTIONS]).max_age(Duration::from_secs(600));
    let origins = origins.trim();
    if origins.is_empty() || origins == "*" {
        return Ok(base.allow_origin(AllowOrigin::any()).allow_headers(tower_http::cors::Any));
    }
    let mut list = Vec::new();
    for origin in origins.split(',').map(str::trim).filter(|origin| !origin.is_empty()) {
        if origin == "*" {
            return Err(InvalidCorsOrigin(origin.to_owned()));
        }
        list.push(HeaderValue::from_str(origin).map_err(|_| InvalidCorsOrigin(origin.to_owned()))?);
    }
    Ok(base.allow_origin(AllowOrigin::list(list)).allow_headers(AllowHeaders::mirror_request()).allow_credentials(true))
}

/// The HTTP routes: `/auth/login` and `ops` (the operations routes);
/// Socket.IO is layered on top by the app.
pub fn router(auth: AuthClient, ops: axum::Router) -> axum::Router {
    axum::Router::new().route("/auth/login", post(login)).with_state(auth).merge(ops)
}

#[derive(Deserialize)]
struct LoginBody {
    email: String,
    password: String,
}

fn error_body(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "status": "error", "message": message }))).into_response()
}

async fn login(State(auth): State<AuthClient>, body: Bytes) -> Response {
    let body: LoginBody = match serde_json::from_slice(&body) {
        Ok(body) => body,
        Err(_) => {
            return error_body(StatusCode::BAD_REQUEST, "body must be JSON like {\"email\": ..., \"password\": ...}");
        }
    };
    if body.email.trim().is_empty() || body.password.is_empty() {
        return error_body(StatusCode::BAD_REQUEST, "email and password are required");
    }
    match auth.login(body.email.trim(), &body.password).await {
        Ok(issued) => Json(json!({
            "token": issued.token,
            "expiresAt": sb_events::timestamp::rfc3339_ms(issued.expires_at_s.saturating_mul(1000)),
            "user": { "id": issued.user.id, "email": issued.user.email, "role": issued.user.role.as_str() },
        }))
        .into_response(),
        Err(AuthnError::InvalidCredentials) => error_body(StatusCode::UNAUTHORIZED, "invalid email or password"),
        Err(AuthnError::Rejected(AuthFailure::UserDisabled)) => error_body(StatusCode::UNAUTHORIZED, "user disabled"),
        Err(AuthnError::InvalidArgument(message)) => error_body(StatusCode::BAD_REQUEST, &message),
        Err(AuthnError::Throttled(message)) => error_body(StatusCode::TOO_MANY_REQUESTS, &message),
        Err(error) => {
            tracing::warn!(%error, "login through auth failed");
            error_body(StatusCode::SERVICE_UNAVAILABLE, "authentication unavailable, try again")
        }
    }
}

/// Keeps the `nats` and `auth` checks of `health` up to date (NATS
/// connected, auth answering its health check), every `interval` until
/// `stop`. When NATS reconnects, the verify cache is cleared (revocation
/// events may have been missed meanwhile).
pub(crate) async fn probe_readiness(
    health: Health,
    nats: async_nats::Client,
    auth_client: AuthClient,
    auth_addr: String,
    interval: Duration,
    stop: CancellationToken,
) {
    let channel = tonic::transport::Endpoint::from_shared(sb_authn::normalize_addr(&auth_addr)).map(|endpoint| {
        endpoint.connect_timeout(Duration::from_secs(1)).timeout(Duration::from_secs(1)).connect_lazy()
    });
    let mut auth_health = match channel {
        Ok(channel) => Some(HealthClient::new(channel)),
        Err(error) => {
            tracing::error!(%error, "AUTH_ADDR is not a valid URI; /readyz stays not ready");
            None
        }
    };
    health.set("nats", Check::pending("connecting"));
    health.set("auth", Check::pending("not checked yet"));
    let mut nats_was_connected = true;
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let nats_connected = nats.connection_state() == async_nats::connection::State::Connected;
        if nats_connected && !nats_was_connected {
            auth_client.clear_cache();
        }
        nats_was_connected = nats_connected;
        let auth_healthy = match auth_health.as_mut() {
            Some(health) => match health.check(HealthCheckRequest { service: String::new() }).await {
                Ok(response) => response.into_inner().status == ServingStatus::Serving as i32,
                Err(status) => {
                    tracing::debug!(%status, "auth health check failed");
                    false
                }
            },
            None => false,
        };
        if stop.is_cancelled() {
            return;
        }
        health.set("nats", if nats_connected { Check::Ok } else { Check::failing("disconnected") });
        health.set("auth", if auth_healthy { Check::Ok } else { Check::failing("unavailable") });
    }
}
