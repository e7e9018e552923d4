//! Presence: what edges tell the presence service, and how they are asked.
//!
//! - Each edge publishes [`PresenceEvent`]s for its sockets on
//!   `<p>.presence.ev.<edge>`, captured by the JetStream stream
//!   `<PREFIX>_PRESENCE`. Events of one edge incarnation carry consecutive
//!   `seq` numbers from 1 and are published in order with `Nats-Msg-Id` =
//!   [`PresenceEvent::msg_id`], so a retried publish is stored once and a
//!   gap is visible.
//! - Each edge sends an [`EdgeHeartbeat`] on `<p>.presence.hb.<edge>` (core
//!   NATS) every `interval_ms`; presence declares an edge dead after missing
//!   heartbeats and publishes an [`PresenceEventKind::EdgeDown`] for it itself
//!   (`Nats-Msg-Id` = [`edge_down_msg_id`], so replicas agree on one).
//! - Presence asks an edge to resend its whole state with
//!   [`crate::control::EdgeCommand::Snapshot`]; the edge answers by publishing
//!   [`PresenceEventKind::Snapshot`] parts into its event sequence.
//! - Queries ([`PresenceQuery`]) go to `<p>.presence.query` (request/reply,
//!   queue group `presence`), answered with [`crate::rpc::Reply`].

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::client::PublicUser;

/// How long the presence stream keeps events unless configured otherwise
/// (`PRESENCE_STREAM_MAX_AGE`). Presence asks every live edge for a fresh
/// snapshot well within this age, so a replay of what the stream still holds
/// always rebuilds the whole state.
pub const DEFAULT_STREAM_MAX_AGE: Duration = Duration::from_secs(3600);

/// The heartbeat interval edges use unless configured otherwise. Presence
/// declares an edge dead after three missed intervals.
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(2);

/// The most sessions one [`PresenceEventKind::Snapshot`] part carries, so a
/// part stays far below NATS's 1 MiB message limit.
pub const SNAPSHOT_PART_MAX_SESSIONS: usize = 500;

/// One presence event from an edge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceEvent {
    /// The edge's id (stable across restarts, e.g. the pod name).
    pub edge: String,
    /// Random id of this edge process (UUIDv7, new at every start).
    pub incarnation: String,
    /// 1, 2, 3, ... within one incarnation.
    pub seq: u64,
    /// When the edge saw it, epoch milliseconds.
    pub at_ms: i64,
    /// What happened.
    #[serde(flatten)]
    pub kind: PresenceEventKind,
}

impl PresenceEvent {
    /// The JetStream de-duplication id: `<edge>:<incarnation>:<seq>`.
    pub fn msg_id(&self) -> String {
        format!("{}:{}:{}", self.edge, self.incarnation, self.seq)
    }
}

/// The JetStream de-duplication id of the `EdgeDown` presence publishes for a dead edge.
pub fn edge_down_msg_id(edge: &str, incarnation: &str) -> String {
    format!("down:{edge}:{incarnation}")
}

/// One socket's state, as carried by snapshots.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionState {
    /// Socket.IO socket id.
    pub socket: String,
    /// The authenticated user.
    pub user: PublicUser,
    /// Epoch milliseconds.
    pub connected_at_ms: i64,
    /// Rooms the socket is in.
    pub rooms: Vec<String>,
    /// The socket's transport when the snapshot was taken (older edges omit it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transport: Option<Transport>,
}

/// The Engine.IO transport a socket uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transport {
    /// A WebSocket.
    Websocket,
    /// HTTP long-polling.
    Polling,
}

impl Transport {
    /// `websocket` or `polling`, as the Engine.IO query parameter names it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Websocket => "websocket",
            Self::Polling => "polling",
        }
    }
}

/// What an edge reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum PresenceEventKind {
    /// This incarnation started: every session of an older incarnation of the
    /// same edge id is gone (the edge restarted).
    EdgeUp,
    /// The incarnation `incarnation` of this edge is gone with all its
    /// sessions: a graceful stop (published by the edge) or a missed
    /// heartbeat deadline (published by presence).
    EdgeDown {
        /// The incarnation that stopped. On the wire `down_incarnation`: the
        /// event's own `incarnation` field shares the JSON object (flatten),
        /// and two keys of one name do not decode.
        #[serde(rename = "down_incarnation")]
        incarnation: String,
    },
    /// A socket connected and was authenticated.
    SessionOpened {
        /// Socket.IO socket id.
        socket: String,
        /// Who.
        user: PublicUser,
        /// Epoch milliseconds.
        connected_at_ms: i64,
        /// The transport the socket connected with (older edges omit it).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        transport: Option<Transport>,
    },
    /// A socket disconnected (for any reason).
    SessionClosed {
        /// Socket.IO socket id.
        socket: String,
    },
    /// A socket joined a room.
    RoomJoined {
        /// Socket.IO socket id.
        socket: String,
        /// The room name as the client sent it.
        room: String,
    },
    /// A socket left a room.
    RoomLeft {
        /// Socket.IO socket id.
        socket: String,
        /// The room name.
        room: String,
    },
    /// Part of the edge's whole state, sent on request. Parts of one snapshot
    /// share `snapshot`; the state they describe replaces everything known of
    /// this edge once the part with `last: true` arrives.
    Snapshot {
        /// Id of this snapshot (the requester's `request_id`).
        snapshot: String,
        /// 0, 1, 2, ...
        part: u32,
        /// Whether this is the final part.
        last: bool,
        /// Sessions in this part.
        sessions: Vec<SessionState>,
    },
}

/// An edge's periodic sign of life.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EdgeHeartbeat {
    /// Edge id.
    pub edge: String,
    /// Current incarnation.
    pub incarnation: String,
    /// Seq of the last presence event this incarnation published (0 = none).
    pub last_seq: u64,
    /// Sockets connected now.
    pub sockets: u64,
    /// Epoch milliseconds.
    pub sent_at_ms: i64,
    /// The edge's heartbeat interval, so presence knows when one is late.
    pub interval_ms: u64,
    /// The edge takes private deliveries on its own subject
    /// (`<p>.deliver.edge.<edge>`); messaging sends them there instead of
    /// `<p>.deliver.user.<id>` only to edges that say so (older edges do not).
    #[serde(default)]
    pub edge_delivery: bool,
    /// Where clients reach this edge (`ADVERTISE_URL`); empty from older edges.
    #[serde(default)]
    pub address: String,
    /// The edge's version (its crate version); empty from older edges.
    #[serde(default)]
    pub version: String,
    /// The edge is draining: not ready, refusing connects, closing its sockets.
    #[serde(default)]
    pub draining: bool,
    /// Distinct users with a socket on this edge now.
    #[serde(default)]
    pub users: u64,
}

/// A question for presence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "query", rename_all = "snake_case")]
pub enum PresenceQuery {
    /// Online users, ordered by id; answered with [`crate::client::OnlineUsers`].
    OnlineUsers {
        /// 1..=1000.
        limit: u32,
        /// From the previous page.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cursor: Option<String>,
        /// Presence stream sequence to wait for (the caller's own
        /// `SessionOpened`, so the list includes the asking user).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after_seq: Option<u64>,
    },
    /// A room's members cluster-wide; answered with [`RoomMembers`]. With
    /// `after_seq`, presence first applies the presence stream up to that
    /// sequence (the edge passes the PubAck of its own `RoomJoined`).
    RoomMembers {
        /// The room.
        room: String,
        /// Presence stream sequence to wait for.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after_seq: Option<u64>,
    },
    /// Which of `users` are online; answered with [`OnlineAmong`].
    OnlineAmong {
        /// User ids.
        users: Vec<String>,
    },
    /// Where each of `users` is connected; answered with [`Locations`].
    Locate {
        /// User ids.
        users: Vec<String>,
    },
}

/// The answer to [`PresenceQuery::Locate`]: for every asked user that is
/// online, the edges holding its sockets.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Locations {
    /// Online users only, by id.
    pub users: std::collections::BTreeMap<String, Vec<EdgeSockets>>,
    /// The presence stream sequence the answering replica had applied when it
    /// answered: the answer reflects every presence event up to it. Messaging
    /// keeps an answer only if it is at least as new as every event it has
    /// seen itself (its locate cache). `None` from presence before wave 3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_seq: Option<u64>,
}

/// How many sockets of one user one edge holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EdgeSockets {
    /// The edge's id.
    pub edge: String,
    /// The user's sockets on it.
    pub sockets: u32,
    /// The edge takes deliveries on `<p>.deliver.edge.<edge>` (its heartbeat
    /// said so); otherwise send to `<p>.deliver.user.<id>`.
    pub edge_delivery: bool,
}

/// Members of a room.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomMembers {
    /// The room.
    pub room: String,
    /// Members ordered by id, at most 1000.
    pub members: Vec<PublicUser>,
    /// Members in all.
    pub count: u64,
}

/// The online subset of an [`PresenceQuery::OnlineAmong`] question.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OnlineAmong {
    /// User ids that have at least one socket.
    pub online: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_json_round_trips() {
        let event = PresenceEvent {
            edge: "edge-0".into(),
            incarnation: "0192".into(),
            seq: 7,
            at_ms: 1,
            kind: PresenceEventKind::RoomJoined { socket: "s1".into(), room: "a.*".into() },
        };
        let json = serde_json::to_string(&event).unwrap();
        assert!(json.contains("\"type\":\"room_joined\""), "{json}");
        assert_eq!(serde_json::from_str::<PresenceEvent>(&json).unwrap(), event);
        assert_eq!(event.msg_id(), "edge-0:0192:7");
    }

    #[test]
    fn every_kind_round_trips() {
        let user = PublicUser { id: "u1".into(), email: "u1@example.com".into() };
        let kinds = [
            PresenceEventKind::EdgeUp,
            PresenceEventKind::EdgeDown { incarnation: "0191".into() },
            PresenceEventKind::SessionOpened {
                socket: "s1".into(),
                user: user.clone(),
                connected_at_ms: 5,
                transport: Some(Transport::Polling),
            },
            PresenceEventKind::SessionOpened {
                socket: "s2".into(),
                user: user.clone(),
                connected_at_ms: 5,
                transport: None,
            },
            PresenceEventKind::SessionClosed { socket: "s1".into() },
            PresenceEventKind::RoomJoined { socket: "s1".into(), room: "r".into() },
            PresenceEventKind::RoomLeft { socket: "s1".into(), room: "r".into() },
            PresenceEventKind::Snapshot {
                snapshot: "x".into(),
                part: 0,
                last: true,
                sessions: vec![SessionState {
                    socket: "s1".into(),
                    user,
                    connected_at_ms: 5,
                    rooms: vec!["r".into()],
                    transport: Some(Transport::Websocket),
                }],
            },
        ];
        for kind in kinds {
            let event = PresenceEvent { edge: "e".into(), incarnation: "0192".into(), seq: 1, at_ms: 1, kind };
            let json = serde_json::to_string(&event).unwrap();
            assert_eq!(serde_json::from_str::<PresenceEvent>(&json).unwrap(), event, "{json}");
        }
    }

    #[test]
    fn what_older_edges_send_still_decodes() {
        let opened = r#"{"edge":"e","incarnation":"1","seq":2,"at_ms":3,"type":"session_opened","socket":"s1","user":{"id":"u","email":"u@x"},"connected_at_ms":5}"#;
        let event: PresenceEvent = serde_json::from_str(opened).unwrap();
        assert!(matches!(event.kind, PresenceEventKind::SessionOpened { transport: None, .. }), "{event:?}");

        let heartbeat = r#"{"edge":"e","incarnation":"1","last_seq":2,"sockets":3,"sent_at_ms":4,"interval_ms":2000}"#;
        let heartbeat: EdgeHeartbeat = serde_json::from_str(heartbeat).unwrap();
        assert_eq!((heartbeat.address.as_str(), heartbeat.version.as_str()), ("", ""));
        assert!(!heartbeat.draining && !heartbeat.edge_delivery);
        assert_eq!(heartbeat.users, 0);
    }

    #[test]
    fn transport_json_is_the_engine_io_name() {
        for transport in [Transport::Websocket, Transport::Polling] {
            assert_eq!(serde_json::to_string(&transport).unwrap(), format!("\"{}\"", transport.as_str()));
        }
    }
}
