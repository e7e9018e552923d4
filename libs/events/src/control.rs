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
}

/// What an edge did with an [`EdgeCommand`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EdgeCommandDone {
    /// The edge that answered.
    pub edge: String,
    /// Sockets affected (sessions snapshotted or sockets kicked).
    pub sockets: u64,
}
