//! Reading stored messages, shared by the NATS requests (`get_history`,
//! pending claims) and the gRPC `History` RPC: argument checks and the one
//! place store errors become client-facing errors.

use sb_events::rpc::{RpcError, RpcErrorCode};

use sb_events::{MessageAccepted, MessageId, RoomName, UserId};

use crate::store::{HistoryPageRows, HistoryScope, Store, StoreError};

/// Largest history page.
pub const MAX_HISTORY_LIMIT: u32 = 100;
/// Largest pending claim.
pub const MAX_PENDING_LIMIT: u32 = 1000;

/// Why a query was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// A request field is invalid; the message names it.
    #[error("invalid {field}: {reason}")]
    InvalidArgument {
        /// The field as the caller spells it.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The store failed (logged where it is mapped).
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for QueryError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::UnknownBefore => {
                Self::InvalidArgument { field: "before", reason: "names no message in this history".to_owned() }
            }
            other => Self::Store(other),
        }
    }
}

impl QueryError {
    fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Self::InvalidArgument { field, reason: reason.into() }
    }

    /// The error for a NATS reply. Store failures are logged here, once, and
    /// reach the caller as `internal error`.
    pub fn to_rpc(&self) -> RpcError {
        match self {
            Self::InvalidArgument { .. } => RpcError::new(RpcErrorCode::InvalidArgument, self.to_string()),
            Self::Store(error) => {
                tracing::error!(%error, "query failed");
                RpcError::new(RpcErrorCode::Internal, "internal error")
            }
        }
    }

    /// The error for a gRPC reply (logged like [`Self::to_rpc`]).
    pub fn to_status(&self) -> tonic::Status {
        match self {
            Self::InvalidArgument { .. } => tonic::Status::invalid_argument(self.to_string()),
            Self::Store(error) => {
                tracing::error!(%error, "query failed");
                tonic::Status::internal("internal error")
            }
        }
    }

    /// The outcome label for metrics.
    pub fn outcome(&self) -> &'static str {
        match self {
            Self::InvalidArgument { .. } => "invalid_argument",
            Self::Store(_) => "internal",
        }
    }
}

/// Checks a user id field: a valid [`UserId`].
pub fn parse_user(field: &'static str, value: &str) -> Result<UserId, QueryError> {
    UserId::parse(value).map_err(|error| QueryError::invalid(field, error.to_string()))
}

/// Checks a room field: a valid [`RoomName`].
pub fn parse_room(field: &'static str, value: &str) -> Result<RoomName, QueryError> {
    RoomName::parse(value).map_err(|error| QueryError::invalid(field, error.to_string()))
}

/// Checks an optional `before` field: empty means none, else a message id.
pub fn parse_before(value: Option<&str>) -> Result<Option<MessageId>, QueryError> {
    match value.filter(|before| !before.is_empty()) {
        None => Ok(None),
        Some(before) => MessageId::parse("before", before)
            .map(Some)
            .map_err(|_| QueryError::invalid("before", "must be a message id")),
    }
}

/// Reads one history page: `limit` must be 1..=100 (no silent clamping, so a
/// caller's mistake is visible), `before` a message id of the same scope.
pub async fn read_history(
    store: &Store,
    scope: &HistoryScope,
    before: Option<&MessageId>,
    limit: u32,
) -> Result<HistoryPageRows, QueryError> {
    if !(1..=MAX_HISTORY_LIMIT).contains(&limit) {
        return Err(QueryError::invalid("limit", format!("must be between 1 and {MAX_HISTORY_LIMIT}")));
    }
    Ok(store.history(scope, before, limit).await?)
}

/// Claims a user's pending private messages: `limit` must be 1..=1000.
pub async fn claim_pending(store: &Store, user: &str, limit: u32) -> Result<Vec<MessageAccepted>, QueryError> {
    let user = parse_user("user", user)?;
    if !(1..=MAX_PENDING_LIMIT).contains(&limit) {
        return Err(QueryError::invalid("limit", format!("must be between 1 and {MAX_PENDING_LIMIT}")));
    }
    Ok(store.claim_pending(&user, limit).await?)
}
