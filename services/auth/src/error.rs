//! The auth service's errors and their one mapping onto gRPC statuses.

use sb_authn::AuthFailure;
use tonic::Status;

use crate::store::StoreError;

/// Everything a request to auth can fail with.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// A token (the one to verify, or the caller's) was refused.
    #[error(transparent)]
    Token(AuthFailure),
    /// Login with an unknown email, a wrong password, or a user without one.
    #[error("invalid email or password")]
    InvalidCredentials,
    /// Too many failed logins for this email lately ([`crate::login_guard`]).
    #[error("too many failed logins for this email; try again in {retry_after_s} s")]
    TooManyFailedLogins {
        /// Seconds until logins for the email are accepted again.
        retry_after_s: u64,
    },
    /// The caller is not an admin.
    #[error("admin role required")]
    NotAdmin,
    /// A request field is malformed.
    #[error("invalid {field}: {reason}")]
    InvalidArgument {
        /// The proto field name.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The email is taken.
    #[error("a user with this email already exists")]
    EmailTaken,
    /// The id is taken.
    #[error("a user with this id already exists")]
    IdTaken,
    /// No user has this id.
    #[error("no user with id {id:?}")]
    UserNotFound {
        /// The id asked for.
        id: String,
    },
    /// The operation needs an enabled user.
    #[error("user {id:?} is disabled")]
    UserDisabled {
        /// The user.
        id: String,
    },
    /// The token version was bumped but the AccessChanged event could not
    /// be published, so live sockets were not told.
    #[error(
        "token_version of user {user_id:?} was bumped to {token_version}, but the access-changed event could \
         not be published to NATS, so live sockets were not disconnected; retry the call"
    )]
    AccessEventNotPublished {
        /// The user.
        user_id: String,
        /// The version now stored.
        token_version: i64,
    },
    /// Signing a token failed (a bug or a bad key).
    #[error("sign token: {0}")]
    Sign(#[from] jsonwebtoken::errors::Error),
    /// Hashing or checking a password failed unexpectedly.
    #[error("password hashing: {0}")]
    PasswordHash(String),
    /// The store failed.
    #[error(transparent)]
    Store(StoreError),
}

impl AuthError {
    /// An INVALID_ARGUMENT error naming `field`.
    pub fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Self::InvalidArgument { field, reason: reason.into() }
    }
}

impl From<StoreError> for AuthError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::EmailTaken => Self::EmailTaken,
            StoreError::IdTaken => Self::IdTaken,
            other => Self::Store(other),
        }
    }
}

impl From<sqlx::Error> for AuthError {
    fn from(error: sqlx::Error) -> Self {
        Self::Store(StoreError::Db(error))
    }
}

impl From<AuthError> for Status {
    fn from(error: AuthError) -> Self {
        match error {
            AuthError::Token(failure) => failure.to_status(),
            AuthError::InvalidCredentials => Status::unauthenticated(error.to_string()),
            AuthError::NotAdmin => Status::permission_denied(error.to_string()),
            AuthError::TooManyFailedLogins { .. } => Status::resource_exhausted(error.to_string()),
            AuthError::InvalidArgument { .. } => Status::invalid_argument(error.to_string()),
            AuthError::EmailTaken | AuthError::IdTaken => Status::already_exists(error.to_string()),
            AuthError::UserNotFound { .. } => Status::not_found(error.to_string()),
            AuthError::UserDisabled { .. } => Status::failed_precondition(error.to_string()),
            AuthError::AccessEventNotPublished { .. } => {
                tracing::warn!(error = %error, "access change not published");
                Status::unavailable(error.to_string())
            }
            AuthError::Store(StoreError::Db(
                sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_),
            )) => {
                tracing::error!(error = %error, "database unavailable");
                Status::unavailable("database unavailable, retry later")
            }
            AuthError::Sign(_) | AuthError::PasswordHash(_) | AuthError::Store(_) => {
                tracing::error!(error = %error, "request failed");
                Status::internal("internal error")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_name_what_happened() {
        let status = Status::from(AuthError::invalid("email", "must contain @"));
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert_eq!(status.message(), "invalid email: must contain @");
        assert_eq!(Status::from(AuthError::EmailTaken).code(), tonic::Code::AlreadyExists);
        assert_eq!(Status::from(AuthError::NotAdmin).code(), tonic::Code::PermissionDenied);
        let status = Status::from(AuthError::TooManyFailedLogins { retry_after_s: 42 });
        assert_eq!(
            (status.code(), status.message()),
            (tonic::Code::ResourceExhausted, "too many failed logins for this email; try again in 42 s")
        );
        let status = Status::from(AuthError::Token(AuthFailure::TokenRevoked));
        assert_eq!((status.code(), status.message()), (tonic::Code::Unauthenticated, "token revoked"));
        let status = Status::from(AuthError::Store(StoreError::Corrupt("x".into())));
        assert_eq!((status.code(), status.message()), (tonic::Code::Internal, "internal error"));
    }
}
