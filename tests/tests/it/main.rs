//! Cross-service tests, one binary (see `sb_tests` for the harness).

mod auth;
mod cli;
mod deploy;
mod edge;
mod harness;
mod loadgen;
mod messaging;
mod metrics;
mod presence;
mod readiness;
mod reflection;
mod secure;
mod traces;
