//! `sb-loadgen`: Switchboard's load generator. It speaks Socket.IO v4 over
//! a raw WebSocket the way the official client does, holds tens of
//! thousands of sockets in one process (one small task each, counters
//! shared), and records every run with the machine, the command and the
//! CPU and memory of the server processes it was told to watch.
//!
//! Modules, bottom up:
//! - [`protocol`]: Engine.IO / Socket.IO frames (parse, encode, ack ids).
//! - [`token`]: HS256 tokens for the seeded users `u1..uN`.
//! - [`settings`]: [`ClientSettings`] and [`RunSettings`], shared by every scenario.
//! - [`accounting`]: `/proc` parsers, machine facts, CPU/RSS over a window.
//! - [`metrics`]: sharded latency histograms, failure counts.
//! - [`client`]: one connection ([`client::Connection`]) and the run context.
//! - [`pacer`]: starts connection tasks at a rate.
//! - [`scenario`]: idle, connect, fanout, private, broadcast, churn, presence-storm, smoke.
//! - [`record`]: the [`Report`] of a run, as one JSON line.
//! - [`summary`] and [`chart`]: the `report` command (Markdown table, SVG plots).
//!
//! A run from Rust:
//! ```no_run
//! # async fn example() -> Result<(), sb_loadgen::Error> {
//! use sb_loadgen::{ClientSettings, RunSettings, Scenario, scenario::FanoutSettings};
//! let client = ClientSettings::new("ws://127.0.0.1:3000", "dev-secret");
//! let fanout = FanoutSettings { rooms: 2, members: 10, ..FanoutSettings::default() };
//! let report = sb_loadgen::run(client, &RunSettings::default(), &Scenario::Fanout(fanout)).await?;
//! assert!(report.ok);
//! # Ok(()) }
//! ```

pub mod accounting;
pub mod chart;
pub mod client;
mod error;
pub mod metrics;
pub mod pacer;
pub mod protocol;
pub mod record;
pub mod scenario;
pub mod settings;
pub mod summary;
pub mod token;

use std::sync::Arc;

pub use error::Error;
pub use record::Report;
pub use scenario::Scenario;
pub use settings::{ClientSettings, RunSettings, SourceIps, WatchedProcess};

/// Runs `scenario` against the server `client` names and records it.
///
/// Runs on the caller's Tokio runtime; the connections are tasks on it.
/// Failures of single connections and lost messages are results (the
/// report says `ok: false`), not errors.
pub async fn run(client: ClientSettings, run: &RunSettings, scenario: &Scenario) -> Result<Report, Error> {
    let ctx = Arc::new(client::Ctx::new(client.clone())?);
    let outcome = match scenario {
        Scenario::Idle(settings) => scenario::connect::run_idle(&ctx, run, settings).await?,
        Scenario::Connect(settings) => scenario::connect::run_connect(&ctx, run, settings).await?,
        Scenario::Fanout(settings) => scenario::messaging::run_fanout(&ctx, run, settings).await?,
        Scenario::Private(settings) => scenario::messaging::run_private(&ctx, run, settings).await?,
        Scenario::Broadcast(settings) => scenario::messaging::run_broadcast(&ctx, run, settings).await?,
        Scenario::Churn(settings) => scenario::churn::run(&ctx, run, settings).await?,
        Scenario::PresenceStorm(settings) => scenario::presence_storm::run(&ctx, run, settings).await?,
        Scenario::Smoke(settings) => scenario::smoke::run(&ctx, run, settings).await?,
    };
    Ok(Report::new(scenario.name(), scenario.settings_json(), &client, run, outcome))
}

/// Progress on stderr (results go to stdout), with seconds since `clock` started.
pub(crate) fn progress(clock: &client::Clock, message: std::fmt::Arguments<'_>) {
    eprintln!("[sb-loadgen {:>8.3}s] {message}", clock.now_us() as f64 / 1e6);
}
