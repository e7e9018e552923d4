//! Accepted client messages on the ingest stream (`<p>.msg.*`). The edge
//! publishes one [`MessageAccepted`] per `send_message` / `admin_broadcast`
//! with `Nats-Msg-Id` = its id and acks the client after the PubAck; the
//! messaging service stores it and routes it.

use serde::{Deserialize, Serialize};

use crate::client::PublicUser;

/// What kind of message, which decides who receives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageKind {
    /// To a room's members (`room` is set).
    Room,
    /// To one user (`to` is set), and the sender's other sockets.
    Private,
    /// To every connected user.
    Broadcast,
    /// An admin announcement to everyone (`admin_announcement`).
    Announcement,
}

impl MessageKind {
    /// The lowercase name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Room => "room",
            Self::Private => "private",
            Self::Broadcast => "broadcast",
            Self::Announcement => "announcement",
        }
    }

    /// Parses [`MessageKind::as_str`]'s output.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "room" => Some(Self::Room),
            "private" => Some(Self::Private),
            "broadcast" => Some(Self::Broadcast),
            "announcement" => Some(Self::Announcement),
            _ => None,
        }
    }
}

/// The socket a message came from, so its echo can be skipped where the
/// contract says so (private messages go to the sender's *other* sockets).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    /// Edge id.
    pub edge: String,
    /// Socket.IO socket id.
    pub socket: String,
}

/// A message the edge accepted from a client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageAccepted {
    /// UUIDv7, also the `Nats-Msg-Id`.
    pub id: String,
    /// Who receives it.
    pub kind: MessageKind,
    /// The sender as verified at connect.
    pub from: PublicUser,
    /// The room, for [`MessageKind::Room`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room: Option<String>,
    /// The recipient, for [`MessageKind::Private`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// The text, already checked against the length limit.
    pub message: String,
    /// Acceptance time, epoch milliseconds; the client's ack carries it as RFC 3339.
    pub timestamp_ms: i64,
    /// Where it came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<Origin>,
}
