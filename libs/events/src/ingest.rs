//! Accepted client messages on the ingest stream (`<p>.msg.*`). The edge
//! (and messaging's `Announce`) publishes one [`MessageAccepted`] per
//! `send_message` / `admin_broadcast` with [`crate::bus::Bus::publish_accepted`]:
//! the subject comes from the target, `Nats-Msg-Id` from the id, and the
//! client is acked after the PubAck. Messaging stores it and routes it.
//!
//! # Wire format
//! JSON, version [`MessageAccepted::WIRE_VERSION`]:
//!
//! ```json
//! {"v":1,"id":"0190…","kind":"room","room":"lobby","from":{"id":"u1","email":"u1@example.com"},
//!  "message":"hi","timestamp_ms":1764104561123,"origin":{"edge":"edge-0","socket":"AbC…"}}
//! ```
//!
//! The [`MessageTarget`] is internally tagged by `kind` (`room` + `room`,
//! `private` + `to`, `broadcast`, `announcement`), which is byte for byte what
//! wave 1 wrote, so replicas of either version read each other's messages
//! during a rolling upgrade. Decoding ignores fields it does not know and
//! treats a missing `v` as 1; a field added later must be optional. A
//! message with a newer `v` that still decodes is handled; one that does not
//! is reported as [`DecodeError::Newer`], so a consumer can leave it for an
//! upgraded replica instead of dropping it.

use serde::{Deserialize, Serialize};

use crate::client::{AdminAnnouncement, NewMessage, PublicUser};
use crate::ids::UserId;
pub use crate::message::MessageKind;
use crate::message::{InvalidTarget, MessageBody, MessageId, MessageTarget};
use crate::timestamp::rfc3339_ms;

/// The socket a message came from, so its echo can be skipped where the
/// contract says so (private messages go to the sender's *other* sockets).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    /// Edge id.
    pub edge: String,
    /// Socket.IO socket id.
    pub socket: String,
}

/// Who sent a message, as verified at connect (an admin, for `Announce`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Sender {
    /// The user id.
    pub id: UserId,
    /// The email other users see.
    pub email: String,
}

impl PartialEq<Sender> for PublicUser {
    fn eq(&self, other: &Sender) -> bool {
        self.id == other.id.as_str() && self.email == other.email
    }
}

impl PartialEq<PublicUser> for Sender {
    fn eq(&self, other: &PublicUser) -> bool {
        other == self
    }
}

impl Sender {
    /// The sender as clients see it (`from` of `new_message`).
    pub fn public(&self) -> PublicUser {
        PublicUser { id: self.id.as_str().to_owned(), email: self.email.clone() }
    }
}

/// A message the edge (or messaging's admin API) accepted.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "Wire")]
pub struct MessageAccepted {
    /// UUIDv7, also the `Nats-Msg-Id` and the stored row's key.
    pub id: MessageId,
    /// Who receives it; also decides the ingest subject.
    pub target: MessageTarget,
    /// The sender.
    pub from: Sender,
    /// The text, checked against the accepting edge's limit.
    pub message: MessageBody,
    /// Acceptance time, epoch milliseconds; the client's ack carries it as RFC 3339.
    pub timestamp_ms: i64,
    /// The socket it came from; `None` for messages from the admin API.
    pub origin: Option<Origin>,
}

impl MessageAccepted {
    /// The version this build writes.
    pub const WIRE_VERSION: u32 = 1;

    /// The `new_message` payload clients see for this message.
    pub fn new_message(&self) -> NewMessage {
        NewMessage {
            id: self.id.as_str().to_owned(),
            from: self.from.public(),
            room: self.target.room().map(|room| room.as_str().to_owned()),
            to: self.target.recipient().map(|to| to.as_str().to_owned()),
            message: self.message.as_str().to_owned(),
            timestamp: rfc3339_ms(self.timestamp_ms),
        }
    }

    /// The `admin_announcement` payload clients see for this message.
    pub fn admin_announcement(&self) -> AdminAnnouncement {
        AdminAnnouncement {
            id: self.id.as_str().to_owned(),
            from: self.from.public(),
            message: self.message.as_str().to_owned(),
            timestamp: rfc3339_ms(self.timestamp_ms),
        }
    }

    /// The message's kind (its target's tag).
    pub fn kind(&self) -> MessageKind {
        self.target.kind()
    }

    /// Decodes a message from the ingest stream, telling a message from a
    /// newer version apart from a malformed one.
    pub fn decode(payload: &[u8]) -> Result<Self, DecodeError> {
        serde_json::from_slice::<Self>(payload).map_err(|error| classify(payload, error))
    }
}

/// Accepted messages one edge gathered for one stream write
/// (`<p>.msg.batch.<edge>`, `Nats-Msg-Id` = [`IngestBatch::id`]): the edge acks
/// every client of the batch after its one PubAck. Under load this turns
/// many stream writes, deliveries to messaging and acks into one each.
///
/// Wire format: `{"v":1,"id":"…","messages":[{"message":{…MessageAccepted…},"traceparent":"…"}]}`.
/// Each message keeps the trace context of its own `send_message`. A
/// producer that holds its messages elsewhere writes the same bytes with
/// [`IngestBatchRef`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngestBatch {
    /// Wire version ([`MessageAccepted::WIRE_VERSION`]).
    #[serde(default = "wire_v1")]
    pub v: u32,
    /// The batch's own id (UUIDv7), its de-duplication id on the stream.
    pub id: String,
    /// The messages, in the order the edge accepted them.
    pub messages: Vec<BatchedMessage>,
}

/// One message of an [`IngestBatch`] with the trace context of its event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchedMessage {
    /// The message.
    pub message: MessageAccepted,
    /// W3C `traceparent` of the span that accepted it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    /// W3C `tracestate`, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracestate: Option<String>,
}

/// An [`IngestBatch`] borrowed from where the producer keeps its messages.
#[derive(Debug, Serialize)]
pub struct IngestBatchRef<'a> {
    /// Wire version ([`MessageAccepted::WIRE_VERSION`]).
    pub v: u32,
    /// The batch's own id.
    pub id: &'a str,
    /// The messages.
    pub messages: Vec<BatchedMessageRef<'a>>,
}

/// A [`BatchedMessage`] borrowed.
#[derive(Debug, Serialize)]
pub struct BatchedMessageRef<'a> {
    /// The message.
    pub message: &'a MessageAccepted,
    /// W3C `traceparent`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<&'a str>,
    /// W3C `tracestate`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tracestate: Option<&'a str>,
}

impl IngestBatch {
    /// Decodes a batch from the ingest stream, telling a batch from a newer
    /// version apart from a malformed one (as [`MessageAccepted::decode`]).
    pub fn decode(payload: &[u8]) -> Result<Self, DecodeError> {
        serde_json::from_slice::<Self>(payload).map_err(|error| classify(payload, error))
    }
}

fn classify(payload: &[u8], error: serde_json::Error) -> DecodeError {
    #[derive(Deserialize)]
    struct VersionOnly {
        #[serde(default)]
        v: Option<u32>,
    }
    match serde_json::from_slice::<VersionOnly>(payload) {
        Ok(VersionOnly { v: Some(version) }) if version > MessageAccepted::WIRE_VERSION => {
            DecodeError::Newer { version, reason: error.to_string() }
        }
        _ => DecodeError::Invalid(error.to_string()),
    }
}

/// Why a payload on the ingest stream is not a [`MessageAccepted`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Written by a newer version that changed something this one needs.
    #[error("written by wire version {version}, newer than this build's: {reason}")]
    Newer {
        /// The payload's `v`.
        version: u32,
        /// What failed to decode.
        reason: String,
    },
    /// Malformed: a producer bug.
    #[error("{0}")]
    Invalid(String),
}

/// Why a wire message is not a valid [`MessageAccepted`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidMessage {
    /// The target's fields do not match its kind.
    #[error(transparent)]
    Target(#[from] InvalidTarget),
    /// The sender's id is not a user id.
    #[error("invalid sender: {0}")]
    Sender(crate::IdError),
}

/// [`MessageAccepted`] as JSON: the wave-1 fields plus `v`.
#[derive(Deserialize)]
struct Wire {
    // Read to tell newer versions apart (`DecodeError::Newer`); a message
    // that decodes is handled whatever its version.
    #[serde(default = "wire_v1")]
    #[allow(dead_code)]
    v: u32,
    id: MessageId,
    kind: MessageKind,
    from: PublicUser,
    #[serde(default)]
    room: Option<String>,
    #[serde(default)]
    to: Option<String>,
    message: MessageBody,
    timestamp_ms: i64,
    #[serde(default)]
    origin: Option<Origin>,
}

fn wire_v1() -> u32 {
    1
}

impl TryFrom<Wire> for MessageAccepted {
    type Error = InvalidMessage;
    fn try_from(wire: Wire) -> Result<Self, Self::Error> {
        let target = MessageTarget::from_parts(wire.kind, wire.room, wire.to)?;
        let sender = UserId::parse(wire.from.id).map_err(InvalidMessage::Sender)?;
        Ok(Self {
            id: wire.id,
            target,
            from: Sender { id: sender, email: wire.from.email },
            message: wire.message,
            timestamp_ms: wire.timestamp_ms,
            origin: wire.origin,
        })
    }
}

/// [`Wire`] borrowed from a [`MessageAccepted`], so serializing copies nothing.
#[derive(Serialize)]
struct WireRef<'a> {
    v: u32,
    id: &'a str,
    kind: MessageKind,
    from: SenderRef<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    room: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    to: Option<&'a str>,
    message: &'a str,
    timestamp_ms: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    origin: Option<&'a Origin>,
}

#[derive(Serialize)]
struct SenderRef<'a> {
    id: &'a str,
    email: &'a str,
}

impl Serialize for MessageAccepted {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        WireRef {
            v: Self::WIRE_VERSION,
            id: self.id.as_str(),
            kind: self.target.kind(),
            from: SenderRef { id: self.from.id.as_str(), email: &self.from.email },
            room: self.target.room().map(|room| room.as_str()),
            to: self.target.recipient().map(|to| to.as_str()),
            message: self.message.as_str(),
            timestamp_ms: self.timestamp_ms,
            origin: self.origin.as_ref(),
        }
        .serialize(serializer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RoomName;

    /// Exactly what a wave-1 edge published (no `v`).
    const WAVE_1_ROOM: &str = r#"{"id":"0190a000-0000-7000-8000-000000000001","kind":"room","from":{"id":"alice","email":"alice@example.com"},"room":"lobby","message":"hi","timestamp_ms":1764104561123,"origin":{"edge":"edge-0","socket":"sock-1"}}"#;
    const WAVE_1_PRIVATE: &str = r#"{"id":"0190a000-0000-7000-8000-000000000002","kind":"private","from":{"id":"alice","email":"alice@example.com"},"to":"bob","message":"psst","timestamp_ms":1764104561124}"#;

    fn room_message() -> MessageAccepted {
        MessageAccepted {
            id: MessageId::parse("id", "0190a000-0000-7000-8000-000000000001").unwrap(),
            target: MessageTarget::Room(RoomName::parse("lobby").unwrap()),
            from: Sender { id: UserId::parse("alice").unwrap(), email: "alice@example.com".into() },
            message: MessageBody::parse("message", "hi", 4096).unwrap(),
            timestamp_ms: 1_764_104_561_123,
            origin: Some(Origin { edge: "edge-0".into(), socket: "sock-1".into() }),
        }
    }

    #[test]
    fn decodes_what_the_previous_format_wrote() {
        assert_eq!(MessageAccepted::decode(WAVE_1_ROOM.as_bytes()).unwrap(), room_message());
        let private = MessageAccepted::decode(WAVE_1_PRIVATE.as_bytes()).unwrap();
        assert_eq!(private.target, MessageTarget::User(UserId::parse("bob").unwrap()));
        assert_eq!(private.origin, None);
        assert_eq!(private.new_message().to.as_deref(), Some("bob"));
    }

    #[test]
    fn writes_what_the_previous_format_reads() {
        // A wave-1 replica decodes with these fields and ignores `v`.
        let written: serde_json::Value = serde_json::to_value(room_message()).unwrap();
        let mut expected: serde_json::Value = serde_json::from_str(WAVE_1_ROOM).unwrap();
        expected["v"] = 1.into();
        assert_eq!(written, expected);
    }

    #[test]
    fn newer_fields_are_tolerated_and_newer_breaks_are_told_apart() {
        let mut newer: serde_json::Value = serde_json::from_str(WAVE_1_ROOM).unwrap();
        newer["v"] = 2.into();
        newer["priority"] = "high".into();
        let decoded = MessageAccepted::decode(newer.to_string().as_bytes()).unwrap();
        assert_eq!(decoded, room_message());

        newer["kind"] = "thread".into();
        assert!(matches!(
            MessageAccepted::decode(newer.to_string().as_bytes()),
            Err(DecodeError::Newer { version: 2, .. })
        ));
        newer["v"] = 1.into();
        assert!(matches!(MessageAccepted::decode(newer.to_string().as_bytes()), Err(DecodeError::Invalid(_))));
    }

    #[test]
    fn invalid_messages_are_refused() {
        let mut message: serde_json::Value = serde_json::from_str(WAVE_1_ROOM).unwrap();
        message.as_object_mut().unwrap().remove("room");
        assert!(MessageAccepted::decode(message.to_string().as_bytes()).is_err());
        let mut message: serde_json::Value = serde_json::from_str(WAVE_1_ROOM).unwrap();
        message["id"] = "".into();
        assert!(MessageAccepted::decode(message.to_string().as_bytes()).is_err());
        let mut message: serde_json::Value = serde_json::from_str(WAVE_1_ROOM).unwrap();
        message["from"]["id"] = "".into();
        assert!(MessageAccepted::decode(message.to_string().as_bytes()).is_err());
        let mut message: serde_json::Value = serde_json::from_str(WAVE_1_ROOM).unwrap();
        message["message"] = " ".into();
        assert!(MessageAccepted::decode(message.to_string().as_bytes()).is_err());
    }

    #[test]
    fn batches_round_trip_with_each_message_s_trace_context() {
        let batch = IngestBatch {
            v: 1,
            id: "batch-1".into(),
            messages: vec![BatchedMessage {
                message: room_message(),
                traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
                tracestate: None,
            }],
        };
        let wire = serde_json::to_vec(&batch).unwrap();
        assert_eq!(IngestBatch::decode(&wire).unwrap(), batch);
        let mut newer: serde_json::Value = serde_json::from_slice(&wire).unwrap();
        newer["v"] = 3.into();
        newer["messages"] = "elsewhere".into();
        assert!(matches!(
            IngestBatch::decode(newer.to_string().as_bytes()),
            Err(DecodeError::Newer { version: 3, .. })
        ));
    }

    #[test]
    fn a_borrowed_batch_writes_the_same_bytes() {
        let message = room_message();
        let owned = IngestBatch {
            v: 1,
            id: "b".into(),
            messages: vec![BatchedMessage {
                message: message.clone(),
                traceparent: Some("tp".into()),
                tracestate: None,
            }],
        };
        let borrowed = IngestBatchRef {
            v: 1,
            id: "b",
            messages: vec![BatchedMessageRef { message: &message, traceparent: Some("tp"), tracestate: None }],
        };
        assert_eq!(serde_json::to_string(&owned).unwrap(), serde_json::to_string(&borrowed).unwrap());
    }

    #[test]
    fn client_payloads() {
        let message = room_message();
        let new_message = message.new_message();
        assert_eq!(new_message.timestamp, "2025-11-25T21:02:41.123Z");
        assert_eq!(new_message.room.as_deref(), Some("lobby"));
        assert_eq!(new_message.from.id, "alice");
        assert_eq!(message.admin_announcement().message, "hi");
    }
}
