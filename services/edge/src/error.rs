//! What clients of the edge are told when something fails: the one place
//! every client-facing text comes from.
//!
//! - [`ClientError`]: a refused event. Its `Display` is exactly the text a
//!   client sees, in the `exception` event (`{status:"error", message,
//!   event}`) and the error ack (`{status:"error", message}`).
//! - [`ConnectRefusal`]: a refused connection. Its `Display` is the
//!   `connect_error` message (DESIGN.md §2: `token missing`, `token invalid`,
//!   `token expired`, `token revoked`, `user unknown`, …).
//! - [`RefusedAccess`]: why a connected socket lost its access (revoked,
//!   disabled), mapped to the `exception` it gets before it is disconnected.
//!
//! Internal failures are logged where they happen and reach clients only as
//! one of the generic "try again" texts, never with their details.

use sb_authn::AuthFailure;
use sb_events::IdError;
use sb_events::message::{InvalidBody, InvalidMessageId};

/// A dependency that did not answer, as clients see it named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dependency {
    /// The room's delivery subscription could not be made (NATS).
    RoomDelivery,
    /// Presence (online users, room members).
    Presence,
    /// Messaging's history.
    History,
    /// Auth's check that a recipient exists.
    RecipientCheck,
}

impl Dependency {
    fn as_str(self) -> &'static str {
        match self {
            Self::RoomDelivery => "room delivery",
            Self::Presence => "presence",
            Self::History => "history",
            Self::RecipientCheck => "recipient check",
        }
    }
}

impl std::fmt::Display for Dependency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refusal a client sees, with its client-facing text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// The payload has the wrong shape or a field is missing or invalid.
    #[error("{0}")]
    InvalidPayload(String),
    /// A room or user id was refused (`room must not be empty`, ...).
    #[error("{0}")]
    InvalidId(#[from] IdError),
    /// A message text was refused (`message must not be empty`, ...).
    #[error("{0}")]
    InvalidBody(#[from] InvalidBody),
    /// A message id was refused (`before must be a message id`).
    #[error("{0}")]
    InvalidMessageId(#[from] InvalidMessageId),
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
    /// A `join_room` past `MAX_ROOMS_PER_SOCKET`.
    #[error("too many rooms: a socket may be in at most {0} rooms, leave_room first")]
    TooManyRooms(usize),
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
    /// A dependency did not answer.
    #[error("{0} unavailable, try again")]
    Unavailable(Dependency),
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

    /// The `outcome` label of `switchboard_edge_events_total` for this refusal.
    pub fn outcome(&self) -> &'static str {
        match self {
            Self::TokenExpired => "token_expired",
            Self::TokenRevoked | Self::UserDisabled => "access_refused",
            Self::RateLimited => "rate_limited",
            Self::QueueFull => "queue_full",
            _ => "error",
        }
    }

    /// The refusal of an event from a socket whose access was withdrawn by
    /// auth while it was connected.
    pub fn from_auth(failure: AuthFailure) -> Option<Self> {
        match failure {
            AuthFailure::TokenExpired => Some(Self::TokenExpired),
            AuthFailure::TokenRevoked => Some(Self::TokenRevoked),
            AuthFailure::UserDisabled => Some(Self::UserDisabled),
            _ => None,
        }
    }
}

/// Why a connected session lost its access.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusedAccess {
    /// `token revoked`.
    Revoked,
    /// `user disabled`.
    Disabled,
}

impl RefusedAccess {
    /// The error clients get.
    pub fn client_error(self) -> ClientError {
        match self {
            Self::Revoked => ClientError::TokenRevoked,
            Self::Disabled => ClientError::UserDisabled,
        }
    }
}

/// Why a connection was refused; `Display` is the `connect_error` message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectRefusal {
    /// The token did not verify, or the account is not usable.
    #[error("{}", token_text(.0))]
    Token(AuthFailure),
    /// A revocation for the user arrived while its token was being verified.
    #[error("{}", access_text(*.0))]
    Access(RefusedAccess),
    /// Auth did not answer.
    #[error("authentication unavailable, try again")]
    AuthUnavailable,
    /// The edge could not set up the socket's deliveries.
    #[error("service unavailable, try again")]
    Unavailable,
    /// The user has `MAX_SOCKETS_PER_USER` sockets on this edge already.
    #[error("too many connections: a user may have at most {limit} sockets open on one server; close one first")]
    TooManySockets {
        /// `MAX_SOCKETS_PER_USER`.
        limit: usize,
    },
    /// The edge holds `MAX_SOCKETS` sockets.
    #[error("server full, try again")]
    EdgeFull,
}

fn token_text(failure: &AuthFailure) -> &'static str {
    match failure {
        AuthFailure::Unavailable { .. } => "authentication unavailable, try again",
        other => other.as_str(),
    }
}

fn access_text(refused: RefusedAccess) -> &'static str {
    match refused {
        RefusedAccess::Revoked => AuthFailure::TokenRevoked.as_str(),
        RefusedAccess::Disabled => AuthFailure::UserDisabled.as_str(),
    }
}

impl ConnectRefusal {
    /// The `reason` label of the connect-refusal metric.
    pub fn metric_reason(&self) -> &'static str {
        match self {
            Self::Token(failure) => token_text(failure),
            Self::Access(refused) => access_text(*refused),
            Self::AuthUnavailable => "auth unavailable",
            Self::Unavailable => "service unavailable",
            Self::TooManySockets { .. } => "too many sockets",
            Self::EdgeFull => "edge full",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_are_the_contract() {
        assert_eq!(ConnectRefusal::Token(AuthFailure::TokenMissing).to_string(), "token missing");
        assert_eq!(ConnectRefusal::Token(AuthFailure::TokenRevoked).to_string(), "token revoked");
        assert_eq!(ConnectRefusal::Access(RefusedAccess::Disabled).to_string(), "user disabled");
        assert_eq!(ConnectRefusal::AuthUnavailable.to_string(), "authentication unavailable, try again");
        assert_eq!(ClientError::Unavailable(Dependency::History).to_string(), "history unavailable, try again");
        assert_eq!(RefusedAccess::Revoked.client_error().to_string(), "token revoked");
        assert_eq!(ClientError::RateLimited.outcome(), "rate_limited");
    }
}
