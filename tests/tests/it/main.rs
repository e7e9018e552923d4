//! Cross-service tests, one binary (see `sb_tests` for the harness).

mod auth;
mod deploy;
mod edge;
mod harness;
mod messaging;
mod presence;
