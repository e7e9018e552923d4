//! The scenarios, one module each, and the enum that names them.
//!
//! - [`connect`]: `connect` (a connect storm) and `idle` (connect, then hold
//!   and measure memory per connection).
//! - [`messaging`]: `fanout` (rooms), `private` (`{to}` pairs) and
//!   `broadcast` (`{message}` to everyone), with end-to-end latency.
//! - [`churn`]: connect → hold → disconnect cycles counted by observers.
//! - [`presence_storm`]: many users connect at once while observers count
//!   `user_online` (and, optionally, `user_offline`).
//! - [`smoke`]: functional checks of the protocol.
//!
//! Each scenario takes its settings struct and returns an
//! `Outcome` (in `record`): typed results, the snapshots that
//! bound its measured window, and the counts CPU is divided by.

pub mod churn;
pub mod connect;
pub mod messaging;
pub mod presence_storm;
pub mod smoke;

use serde::Serialize;

pub use churn::{ChurnResults, ChurnSettings};
pub use connect::{ConnectResults, ConnectSettings, IdleSettings};
pub use messaging::{BroadcastSettings, FanoutSettings, MessagingResults, PrivateSettings};
pub use presence_storm::{PresenceStormResults, PresenceStormSettings};
pub use smoke::{SmokeResults, SmokeSettings};

/// A scenario with its settings.
#[derive(Debug, Clone)]
pub enum Scenario {
    /// Connect, hold idle, measure memory per connection.
    Idle(IdleSettings),
    /// A connect storm: achieved rate, latency, failures by kind.
    Connect(ConnectSettings),
    /// Rooms × members, senders per room at a rate.
    Fanout(FanoutSettings),
    /// Pairs sending each other private messages.
    Private(PrivateSettings),
    /// Messages to everyone.
    Broadcast(BroadcastSettings),
    /// Connect/disconnect cycles with presence observers.
    Churn(ChurnSettings),
    /// A burst of connects with presence observers.
    PresenceStorm(PresenceStormSettings),
    /// Functional checks.
    Smoke(SmokeSettings),
}

/// The scenario's name in reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ScenarioName {
    /// `idle`
    Idle,
    /// `connect`
    Connect,
    /// `fanout`
    Fanout,
    /// `private`
    Private,
    /// `broadcast`
    Broadcast,
    /// `churn`
    Churn,
    /// `presence-storm`
    PresenceStorm,
    /// `smoke`
    Smoke,
}

impl Scenario {
    /// Its name.
    pub fn name(&self) -> ScenarioName {
        match self {
            Self::Idle(_) => ScenarioName::Idle,
            Self::Connect(_) => ScenarioName::Connect,
            Self::Fanout(_) => ScenarioName::Fanout,
            Self::Private(_) => ScenarioName::Private,
            Self::Broadcast(_) => ScenarioName::Broadcast,
            Self::Churn(_) => ScenarioName::Churn,
            Self::PresenceStorm(_) => ScenarioName::PresenceStorm,
            Self::Smoke(_) => ScenarioName::Smoke,
        }
    }

    /// Its settings as JSON, for the report.
    pub fn settings_json(&self) -> serde_json::Value {
        let value = match self {
            Self::Idle(settings) => serde_json::to_value(settings),
            Self::Connect(settings) => serde_json::to_value(settings),
            Self::Fanout(settings) => serde_json::to_value(settings),
            Self::Private(settings) => serde_json::to_value(settings),
            Self::Broadcast(settings) => serde_json::to_value(settings),
            Self::Churn(settings) => serde_json::to_value(settings),
            Self::PresenceStorm(settings) => serde_json::to_value(settings),
            Self::Smoke(settings) => serde_json::to_value(settings),
        };
        value.unwrap_or(serde_json::Value::Null)
    }
}

/// What a scenario measured (the `results` object of a report).
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Results {
    /// `idle` and `connect`.
    Connect(ConnectResults),
    /// `fanout`, `private`, `broadcast`.
    Messaging(MessagingResults),
    /// `churn`.
    Churn(ChurnResults),
    /// `presence-storm`.
    PresenceStorm(PresenceStormResults),
    /// `smoke`.
    Smoke(SmokeResults),
}

impl Results {
    /// The messaging results, if these are.
    pub fn messaging(&self) -> Option<&MessagingResults> {
        match self {
            Self::Messaging(results) => Some(results),
            _ => None,
        }
    }

    /// The connect results, if these are.
    pub fn connect(&self) -> Option<&ConnectResults> {
        match self {
            Self::Connect(results) => Some(results),
            _ => None,
        }
    }
}
