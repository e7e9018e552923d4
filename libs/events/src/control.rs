//! Control: commands and access changes the edges act on.

use serde::{Deserialize, Serialize};

/// Published by auth on `<p>.control.access` when a user's tokens are
/// revoked or the user is disabled. Every edge disconnects the user's sockets
/// whose token is no longer valid within one second, after sending them an
/// `exception` (`token revoked` / `user disabled`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessChanged {
    /// The user.
    pub user_id: String,
    /// The user's token_version now; tokens with a lower `tokenVersion` are revoked.
    pub token_version: i64,
    /// Whether the user is now disabled (every token is invalid).
    pub disabled: bool,
}

/// A command to one edge (`<p>.control.edge.<edge>`) or to all
/// (`<p>.control.edges`), answered with [`crate::rpc::Reply`] of [`EdgeCommandDone`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum EdgeCommand {
    /// Publish the edge's whole state as presence `Snapshot` events.
    Snapshot {
        /// Echoed as the snapshot's id.
        request_id: String,
    },
    /// Disconnect every socket of a user, after an `exception` with `reason`.
    KickUser {
        /// The user.
        user_id: String,
        /// Shown to the client.
        reason: String,
    },
    /// Start draining: fail readiness, refuse new connections and close
    /// every socket's transport (not a Socket.IO DISCONNECT, so clients
    /// reconnect elsewhere), paced evenly over `over_ms`. Answered at once,
    /// with the sockets to close and the duration in [`EdgeCommandDone`].
    /// A second `Drain` changes nothing and answers the drain in progress.
    Drain {
        /// How long to spread the closes over; `None`: the edge's
        /// `DRAIN_DURATION`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        over_ms: Option<u64>,
    },
}

/// What an edge did with an [`EdgeCommand`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EdgeCommandDone {
    /// The edge that answered.
    pub edge: String,
    /// Sockets affected (sessions snapshotted, sockets kicked, or sockets a
    /// drain will close).
    pub sockets: u64,
    /// For `Drain`: the duration the closes are spread over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub over_ms: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drain_json_round_trips_and_omits_no_duration() {
        let command = EdgeCommand::Drain { over_ms: Some(5000) };
        let json = serde_json::to_string(&command).unwrap();
        assert_eq!(json, r#"{"command":"drain","over_ms":5000}"#);
        assert_eq!(serde_json::from_str::<EdgeCommand>(&json).unwrap(), command);
        let json = serde_json::to_string(&EdgeCommand::Drain { over_ms: None }).unwrap();
        assert_eq!(json, r#"{"command":"drain"}"#);
        assert_eq!(serde_json::from_str::<EdgeCommand>(&json).unwrap(), EdgeCommand::Drain { over_ms: None });
    }

    #[test]
    fn a_done_without_duration_decodes() {
        let done: EdgeCommandDone = serde_json::from_str(r#"{"edge":"e","sockets":2}"#).unwrap();
        assert_eq!(done, EdgeCommandDone { edge: "e".into(), sockets: 2, over_ms: None });
    }
}
