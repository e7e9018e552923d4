//! What clients of the edge are told when something fails.
//!
//! [`ClientError`]'s `Display` is exactly the text a client sees: in the
//! `exception` event (`{status:"error", message, event}`), in the error ack
//! (`{status:"error", message}`), or as the `connect_error` message. Internal
//! failures are logged where they happen and reach clients only as one of the
//! generic "try again" texts, never with their details.

use sb_events::IdError;

/// A refusal a client sees, with its client-facing text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// The payload has the wrong shape or a field is missing or invalid.
    #[error("{0}")]
    InvalidPayload(String),
    /// A room or user id was refused (`room must not be empty`, ...).
    #[error("{0}")]
    InvalidId(#[from] IdError),
    /// The event name is not one the edge knows.
    #[error("unknown event: {0}")]
    UnknownEvent(String),
    /// The socket sent more events than its rate limit allows.
    #[error("rate limit exceeded, slow down")]
    RateLimited,
    /// Too many of the socket's events are waiting to be handled.
    #[error("too many events in flight, slow down")]
    QueueFull,
    /// The socket's token expired after it connected.
    #[error("token expired")]
    TokenExpired,
    /// The user's tokens were revoked while the socket was connected.
    #[error("token revoked")]
    TokenRevoked,
    /// The user was disabled while the socket was connected.
    #[error("user disabled")]
    UserDisabled,
    /// A room operation on a room the socket has not joined.
    #[error("not a member of room {0}: join_room first")]
    NotMember(String),
    /// `to` names no user.
    #[error("user {0} does not exist")]
    UnknownUser(String),
    /// A non-admin sent an admin-only event.
    #[error("admin role required")]
    AdminRequired,
    /// The ingest stream did not acknowledge the message (NATS unreachable,
    /// stream unavailable or timeout): nothing was accepted.
    #[error("message not accepted, try again")]
    NotAccepted,
    /// A dependency (auth, messaging, presence, NATS) did not answer.
    #[error("{0} unavailable, try again")]
    Unavailable(&'static str),
    /// The request was refused by the service that answered it.
    #[error("{0}")]
    Refused(String),
    /// Anything else; details are in the edge's log.
    #[error("internal error")]
    Internal,
}

impl ClientError {
    /// A payload error with `message`.
    pub fn payload(message: impl Into<String>) -> Self {
        Self::InvalidPayload(message.into())
    }
}
