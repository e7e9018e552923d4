//! The payloads Socket.IO clients receive (DESIGN.md §2). Services build
//! them once, serialize them once, and the edge forwards the bytes unchanged.

use serde::{Deserialize, Serialize};

/// Server → client event names.
pub mod event {
    /// A user's first socket joined a room.
    pub const USER_JOINED: &str = "user_joined";
    /// A user's last socket left a room.
    pub const USER_LEFT: &str = "user_left";
    /// A user's first socket anywhere connected.
    pub const USER_ONLINE: &str = "user_online";
    /// A user's last socket anywhere disconnected.
    pub const USER_OFFLINE: &str = "user_offline";
    /// A room, private or broadcast message.
    pub const NEW_MESSAGE: &str = "new_message";
    /// A system notification.
    pub const NOTIFICATION: &str = "notification";
    /// An admin announcement.
    pub const ADMIN_ANNOUNCEMENT: &str = "admin_announcement";
    /// An error (NestJS `WsException` shape).
    pub const EXCEPTION: &str = "exception";
    /// The answer to `ping`.
    pub const PONG: &str = "pong";
    /// The answer to `get_online_users`.
    pub const ONLINE_USERS: &str = "online_users";
}

/// A user as other users see it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PublicUser {
    /// User id.
    pub id: String,
    /// Email address.
    pub email: String,
}

/// `new_message`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewMessage {
    /// Message id (UUIDv7).
    pub id: String,
    /// The sender.
    pub from: PublicUser,
    /// The room, for room messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room: Option<String>,
    /// The recipient's user id, for private messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// The text.
    pub message: String,
    /// RFC 3339 UTC with milliseconds.
    pub timestamp: String,
}

/// `admin_announcement`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminAnnouncement {
    /// Announcement id (UUIDv7).
    pub id: String,
    /// The admin who sent it.
    pub from: PublicUser,
    /// The text.
    pub message: String,
    /// RFC 3339 UTC with milliseconds.
    pub timestamp: String,
}

/// `notification`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    /// Notification id (UUIDv7).
    pub id: String,
    /// Optional title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// The text.
    pub message: String,
    /// RFC 3339 UTC with milliseconds.
    pub timestamp: String,
}

/// `user_online` / `user_offline`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserPresence {
    /// Who.
    pub user: PublicUser,
    /// RFC 3339 UTC with milliseconds.
    pub timestamp: String,
}

/// `user_joined` / `user_left`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomPresence {
    /// Which room.
    pub room: String,
    /// Who.
    pub user: PublicUser,
    /// RFC 3339 UTC with milliseconds.
    pub timestamp: String,
}

/// `exception`, and the error form of every ack: `{status:"error", message, event?}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exception {
    /// Always `"error"`.
    pub status: String,
    /// What was wrong, for people.
    pub message: String,
    /// The client event that caused it, when there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
}

impl Exception {
    /// An exception with `message`, caused by client event `event`.
    pub fn new(message: impl Into<String>, event: Option<&str>) -> Self {
        Self { status: "error".to_owned(), message: message.into(), event: event.map(str::to_owned) }
    }
}

/// `online_users` and the `get_online_users` ack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OnlineUsers {
    /// This page of online users, ordered by id.
    pub users: Vec<PublicUser>,
    /// Online users in all, cluster-wide.
    pub count: u64,
    /// Pass back as `cursor` for the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}
