//! Request/reply over NATS: the reply envelope and the messaging queries.

use serde::{Deserialize, Serialize};

use crate::client::NewMessage;

/// The answer to any NATS request: `{"ok": T}` or `{"error": {code, message}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reply<T> {
    /// The request succeeded.
    Ok(T),
    /// It did not.
    Error(RpcError),
}

impl<T> Reply<T> {
    /// Converts into a `Result`.
    pub fn into_result(self) -> Result<T, RpcError> {
        match self {
            Self::Ok(value) => Ok(value),
            Self::Error(error) => Err(error),
        }
    }
}

impl<T> From<Result<T, RpcError>> for Reply<T> {
    fn from(result: Result<T, RpcError>) -> Self {
        match result {
            Ok(value) => Self::Ok(value),
            Err(error) => Self::Error(error),
        }
    }
}

/// Why a request failed; `message` is safe to show a client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct RpcError {
    /// The kind of failure.
    pub code: RpcErrorCode,
    /// What went wrong.
    pub message: String,
}

impl RpcError {
    /// An error of kind `code`.
    pub fn new(code: RpcErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }
}

/// Kinds of request failure (mapped to gRPC codes and client messages).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RpcErrorCode {
    /// The request is malformed.
    InvalidArgument,
    /// Something named does not exist.
    NotFound,
    /// The caller may not do this.
    PermissionDenied,
    /// Try again later.
    Unavailable,
    /// A bug or an unexpected failure.
    Internal,
}

/// A `get_history` question, asked by the edge on `<p>.messaging.history`
/// after it checked that the caller may read the scope (room member).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryQuery {
    /// The user asking (for a conversation, one of its two users).
    pub caller: String,
    /// Which messages.
    pub scope: HistoryScope,
    /// Only messages older than this message id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<String>,
    /// 1..=100.
    pub limit: u32,
}

/// Which messages a history query reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HistoryScope {
    /// A room's messages.
    Room(String),
    /// The private conversation between the caller and this user.
    With(String),
}

/// A page of history, newest first, in the `new_message` shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryPage {
    /// The messages.
    pub messages: Vec<NewMessage>,
}

/// Claims the private messages stored for `user` while it was offline
/// (`<p>.messaging.pending`). Each message is handed out once, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingClaim {
    /// The recipient that just connected.
    pub user: String,
    /// At most this many (the edge asks again while it gets full pages).
    pub limit: u32,
}

/// Messages handed out by a [`PendingClaim`], oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingMessages {
    /// The messages.
    pub messages: Vec<NewMessage>,
}
