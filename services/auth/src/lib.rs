//! The auth service: users, access tokens, and the check every connection
//! goes through.
//!
//! - [`config`]: [`Config`], every setting as a flag and an env var.
//! - [`app`]: [`App::build`] / [`App::run`], start-up and graceful shutdown.
//! - [`grpc`]: the `switchboard.auth.v1.AuthService` server, a thin adapter over
//! - [`service`]: [`service::AuthCore`], what each RPC does.
//! - [`token`]: HS256 JWT claims, signing and the database-free half of verification.
//! - [`store`]: the users table on PostgreSQL or SQLite.
//! - [`password`]: argon2id hashing on the blocking pool.
//! - [`input`]: request fields parsed into valid values (errors name the field).
//! - [`error`]: [`error::AuthError`] and its one mapping to gRPC statuses.
//! - [`metrics`]: Prometheus counters and the VerifyToken latency histogram.
//!
//! `docs/auth.md` describes the service for operators.

pub mod app;
pub mod config;
pub mod error;
pub mod grpc;
pub mod input;
pub mod login_guard;
pub mod metrics;
pub mod password;
pub mod service;
pub mod store;
pub mod token;

pub use app::{App, StartError};
pub use config::Config;
