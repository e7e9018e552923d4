//! Prometheus metrics of the auth service, served on `METRICS_ADDR`.
//!
//! - `switchboard_auth_verify_total{result}`: VerifyToken outcomes (`ok`, `token_missing`,
//!   `token_invalid`, `token_expired`, `token_revoked`, `user_unknown`,
//!   `user_disabled`, `error`).
//! - `switchboard_auth_verify_duration_seconds`: VerifyToken latency inside the
//!   service (JWT check plus the user lookup).
//! - `switchboard_auth_login_total{result}`: Login outcomes (`ok`, `rejected`, `error`).
//!
//! Counter handles are created once at start-up, so recording is a few
//! atomic adds with no lock or allocation.

use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use sb_authn::AuthFailure;

use crate::error::AuthError;

type Labels = Vec<(&'static str, &'static str)>;

/// Handles on every auth metric.
#[derive(Debug, Clone)]
pub struct AuthMetrics {
    verify_ok: Counter,
    verify_token_missing: Counter,
    verify_token_invalid: Counter,
    verify_token_expired: Counter,
    verify_token_revoked: Counter,
    verify_user_unknown: Counter,
    verify_user_disabled: Counter,
    verify_error: Counter,
    verify_duration: Histogram,
    login_ok: Counter,
    login_rejected: Counter,
    login_throttled: Counter,
    login_error: Counter,
}

impl AuthMetrics {
    /// Registers the metrics in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let verify = Family::<Labels, Counter>::default();
        registry.register("verify", "VerifyToken calls by result", verify.clone());
        let login = Family::<Labels, Counter>::default();
        registry.register("login", "Login calls by result", login.clone());
        // 25 µs .. ~0.4 s
        let verify_duration = Histogram::new(exponential_buckets(0.000_025, 2.0, 15));
        registry.register("verify_duration_seconds", "VerifyToken latency inside the service", verify_duration.clone());
        let verify_handle = |result: &'static str| verify.get_or_create(&vec![("result", result)]).clone();
        let login_handle = |result: &'static str| login.get_or_create(&vec![("result", result)]).clone();
        Self {
            verify_ok: verify_handle("ok"),
            verify_token_missing: verify_handle("token_missing"),
            verify_token_invalid: verify_handle("token_invalid"),
            verify_token_expired: verify_handle("token_expired"),
            verify_token_revoked: verify_handle("token_revoked"),
            verify_user_unknown: verify_handle("user_unknown"),
            verify_user_disabled: verify_handle("user_disabled"),
            verify_error: verify_handle("error"),
            verify_duration,
            login_ok: login_handle("ok"),
            login_rejected: login_handle("rejected"),
            login_throttled: login_handle("throttled"),
            login_error: login_handle("error"),
        }
    }

    /// Records one VerifyToken call.
    pub fn record_verify<T>(&self, result: &Result<T, AuthError>, elapsed: Duration) {
        let counter = match result {
            Ok(_) => &self.verify_ok,
            Err(AuthError::Token(failure)) => match failure {
                AuthFailure::TokenMissing => &self.verify_token_missing,
                AuthFailure::TokenInvalid => &self.verify_token_invalid,
                AuthFailure::TokenExpired => &self.verify_token_expired,
                AuthFailure::TokenRevoked => &self.verify_token_revoked,
                AuthFailure::UserUnknown => &self.verify_user_unknown,
                AuthFailure::UserDisabled => &self.verify_user_disabled,
                AuthFailure::Unavailable { .. } => &self.verify_error,
            },
            Err(_) => &self.verify_error,
        };
        counter.inc();
        self.verify_duration.observe(elapsed.as_secs_f64());
    }

    /// Records one Login call.
    pub fn record_login<T>(&self, result: &Result<T, AuthError>) {
        match result {
            Ok(_) => self.login_ok.inc(),
            Err(AuthError::InvalidCredentials | AuthError::Token(_)) => self.login_rejected.inc(),
            Err(AuthError::TooManyFailedLogins { .. }) => self.login_throttled.inc(),
            Err(_) => self.login_error.inc(),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verify_results_are_counted_by_reason() {
        let mut registry = Registry::with_prefix("switchboard_auth");
        let metrics = AuthMetrics::register(&mut registry);
        metrics.record_verify::<()>(&Ok(()), Duration::from_micros(100));
        metrics.record_verify::<()>(&Err(AuthError::Token(AuthFailure::TokenRevoked)), Duration::from_micros(80));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(text.contains("switchboard_auth_verify_total{result=\"ok\"} 1"), "{text}");
        assert!(text.contains("switchboard_auth_verify_total{result=\"token_revoked\"} 1"), "{text}");
        assert!(text.contains("switchboard_auth_verify_duration_seconds_count 2"), "{text}");
    }
}
