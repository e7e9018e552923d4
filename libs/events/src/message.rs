//! A message's parts as every service handles them: its id, its body and
//! who it goes to. Each is parsed once (at the edge, or in messaging's admin
//! API) and travels as its type, over NATS too.
//!
//! - [`MessageId`]: a UUIDv7 made by whoever accepts the message; 1 to 64
//!   characters without control characters when it comes from outside.
//! - [`MessageBody`]: the text, not blank and within the deployment's size
//!   limit ([`MessageBody::parse`]); on the wire only within
//!   [`MessageBody::WIRE_MAX_BYTES`].
//! - [`MessageTarget`]: a room, one user, everyone, or everyone as an admin
//!   announcement. [`MessageKind`] is its tag: the `kind` column in the
//!   store, the metric label, the `kind` field on the wire.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::ids::{RoomName, UserId};

/// Why a message id was refused; `Display` is what a client sees.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} must be a message id")]
pub struct InvalidMessageId {
    /// The field that held it (`before`, `id`).
    pub field: &'static str,
}

/// A message id: a UUIDv7 string for messages Switchboard accepted.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct MessageId(String);

impl MessageId {
    /// The longest accepted id, in bytes (a UUID has 36).
    pub const MAX_LEN: usize = 64;

    /// A new UUIDv7 id: ids made one after another sort in time order.
    pub fn new_v7() -> Self {
        Self(uuid::Uuid::now_v7().to_string())
    }

    /// Parses an id that came from outside, naming `field` in the error:
    /// 1 to [`Self::MAX_LEN`] bytes, no control characters.
    pub fn parse(field: &'static str, value: impl Into<String>) -> Result<Self, InvalidMessageId> {
        let value = value.into();
        if value.is_empty() || value.len() > Self::MAX_LEN || value.chars().any(char::is_control) {
            return Err(InvalidMessageId { field });
        }
        Ok(Self(value))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for MessageId {
    type Error = InvalidMessageId;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse("id", value)
    }
}

impl From<MessageId> for String {
    fn from(id: MessageId) -> String {
        id.0
    }
}

impl PartialEq<str> for MessageId {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for MessageId {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl PartialEq<String> for MessageId {
    fn eq(&self, other: &String) -> bool {
        &self.0 == other
    }
}

impl PartialEq<MessageId> for String {
    fn eq(&self, other: &MessageId) -> bool {
        self == &other.0
    }
}

impl PartialEq<MessageId> for &str {
    fn eq(&self, other: &MessageId) -> bool {
        *self == other.0
    }
}

impl std::ops::Deref for MessageId {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

// A `MessageId` hashes and compares exactly like its text, so maps keyed by
// ids can be asked with a plain string.
impl std::borrow::Borrow<str> for MessageId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<String> for MessageId {
    fn borrow(&self) -> &String {
        &self.0
    }
}

impl AsRef<str> for MessageId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// Why a message text was refused; `Display` is what a client sees.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidBody {
    /// Empty or only whitespace.
    #[error("{field} must not be empty")]
    Empty {
        /// `message`, or the admin API's field name.
        field: &'static str,
    },
    /// Longer than the limit, in UTF-8 bytes.
    #[error("{field} must be at most {max_bytes} bytes")]
    TooLong {
        /// `message`, or the admin API's field name.
        field: &'static str,
        /// The limit.
        max_bytes: usize,
    },
}

/// The text of a message: not blank, and at most the limit it was parsed
/// with (`MESSAGE_MAX_BYTES`, 4 KiB by default).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct MessageBody(String);

impl MessageBody {
    /// The most a body may hold on the wire, whatever a deployment's limit:
    /// a consumer refuses anything longer as a producer bug.
    pub const WIRE_MAX_BYTES: usize = 1 << 20;

    /// Parses `text` from `field` with a limit of `max_bytes` UTF-8 bytes.
    pub fn parse(field: &'static str, text: &str, max_bytes: usize) -> Result<Self, InvalidBody> {
        if text.trim().is_empty() {
            return Err(InvalidBody::Empty { field });
        }
        if text.len() > max_bytes {
            return Err(InvalidBody::TooLong { field, max_bytes });
        }
        Ok(Self(text.to_owned()))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for MessageBody {
    type Error = InvalidBody;
    fn try_from(text: String) -> Result<Self, Self::Error> {
        if text.trim().is_empty() {
            return Err(InvalidBody::Empty { field: "message" });
        }
        if text.len() > Self::WIRE_MAX_BYTES {
            return Err(InvalidBody::TooLong { field: "message", max_bytes: Self::WIRE_MAX_BYTES });
        }
        Ok(Self(text))
    }
}

impl PartialEq<MessageBody> for String {
    fn eq(&self, other: &MessageBody) -> bool {
        *self == other.0
    }
}

impl PartialEq<MessageBody> for &str {
    fn eq(&self, other: &MessageBody) -> bool {
        *self == other.0
    }
}

impl PartialEq<str> for MessageBody {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for MessageBody {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl From<MessageBody> for String {
    fn from(body: MessageBody) -> String {
        body.0
    }
}

/// The tag of a [`MessageTarget`]: what kind of message, which decides who
/// receives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageKind {
    /// To a room's members.
    Room,
    /// To one user, and the sender's other sockets.
    Private,
    /// To every connected user.
    Broadcast,
    /// An admin announcement to everyone (`admin_announcement`).
    Announcement,
}

impl MessageKind {
    /// The lowercase name stored in the database and used as a metric label.
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

/// Who receives a message.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MessageTarget {
    /// A room's members (`send_message {room, message}`).
    Room(RoomName),
    /// Every socket of one user, and the sender's other sockets
    /// (`send_message {to, message}`).
    User(UserId),
    /// Every connected user, as `new_message` (`send_message {message}`).
    Everyone,
    /// Every connected user, as `admin_announcement` (`admin_broadcast`,
    /// messaging's `Announce`).
    Announcement,
}

impl MessageTarget {
    /// The target's tag.
    pub fn kind(&self) -> MessageKind {
        match self {
            Self::Room(_) => MessageKind::Room,
            Self::User(_) => MessageKind::Private,
            Self::Everyone => MessageKind::Broadcast,
            Self::Announcement => MessageKind::Announcement,
        }
    }

    /// The room, for a room message.
    pub fn room(&self) -> Option<&RoomName> {
        match self {
            Self::Room(room) => Some(room),
            _ => None,
        }
    }

    /// The recipient, for a private message.
    pub fn recipient(&self) -> Option<&UserId> {
        match self {
            Self::User(user) => Some(user),
            _ => None,
        }
    }
}

/// Why a `kind` and its fields do not make a [`MessageTarget`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidTarget {
    /// A room message without a room.
    #[error("a room message needs a room")]
    MissingRoom,
    /// A private message without a recipient.
    #[error("a private message needs a recipient (to)")]
    MissingRecipient,
    /// The room or recipient does not parse.
    #[error(transparent)]
    Id(#[from] crate::IdError),
}

impl MessageTarget {
    /// Rebuilds a target from its tag and the two optional fields a row or
    /// the wire carries (`room` for room messages, `to` for private ones;
    /// the other is ignored).
    pub fn from_parts(kind: MessageKind, room: Option<String>, to: Option<String>) -> Result<Self, InvalidTarget> {
        Ok(match kind {
            MessageKind::Room => Self::Room(RoomName::parse(room.ok_or(InvalidTarget::MissingRoom)?)?),
            MessageKind::Private => Self::User(UserId::parse(to.ok_or(InvalidTarget::MissingRecipient)?)?),
            MessageKind::Broadcast => Self::Everyone,
            MessageKind::Announcement => Self::Announcement,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_id_rules() {
        assert!(MessageId::parse("before", "0190a000-0000-7000-8000-000000000001").is_ok());
        assert_eq!(MessageId::parse("before", "").unwrap_err().to_string(), "before must be a message id");
        assert!(MessageId::parse("before", "x".repeat(65)).is_err());
        assert!(MessageId::parse("before", "a\nb").is_err());
        assert!(serde_json::from_str::<MessageId>("\"\"").is_err());
        let fresh = MessageId::new_v7();
        assert_eq!(fresh.as_str().len(), 36);
    }

    #[test]
    fn body_rules() {
        assert_eq!(MessageBody::parse("message", "hi", 4).unwrap().as_str(), "hi");
        assert_eq!(MessageBody::parse("message", "  ", 4).unwrap_err().to_string(), "message must not be empty");
        assert_eq!(
            MessageBody::parse("message", "hello", 4).unwrap_err().to_string(),
            "message must be at most 4 bytes"
        );
        // The limit is in UTF-8 bytes: "é" is two.
        assert!(MessageBody::parse("message", "éé", 4).is_ok());
        assert!(MessageBody::parse("message", "ééé", 4).is_err());
        assert!(serde_json::from_str::<MessageBody>("\" \"").is_err());
    }

    #[test]
    fn targets_rebuild_from_their_parts() {
        let room = MessageTarget::from_parts(MessageKind::Room, Some("a.*".into()), None).unwrap();
        assert_eq!(room.room().map(RoomName::as_str), Some("a.*"));
        assert_eq!(room.kind(), MessageKind::Room);
        let user = MessageTarget::from_parts(MessageKind::Private, None, Some("bob".into())).unwrap();
        assert_eq!(user.recipient().map(UserId::as_str), Some("bob"));
        assert_eq!(MessageTarget::from_parts(MessageKind::Room, None, None), Err(InvalidTarget::MissingRoom));
        assert_eq!(
            MessageTarget::from_parts(MessageKind::Private, Some("r".into()), None),
            Err(InvalidTarget::MissingRecipient)
        );
        assert!(MessageTarget::from_parts(MessageKind::Room, Some(String::new()), None).is_err());
        assert_eq!(MessageTarget::from_parts(MessageKind::Broadcast, None, None), Ok(MessageTarget::Everyone));
        for kind in [MessageKind::Room, MessageKind::Private, MessageKind::Broadcast, MessageKind::Announcement] {
            assert_eq!(MessageKind::parse(kind.as_str()), Some(kind));
        }
    }
}
