//! Why a token was refused, and what else can go wrong calling auth.

/// Why a token did not verify, or that auth could not be asked.
///
/// The `Display` of the six token reasons is exactly the text clients see
/// (DESIGN.md §2 `connect_error` messages) and the message of auth's
/// UNAUTHENTICATED status, so it can be passed through unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthFailure {
    /// No token was presented (or only whitespace / a bare `Bearer`).
    #[error("token missing")]
    TokenMissing,
    /// The token is not a well-formed HS256 JWT signed with our secret, or
    /// lacks a required claim.
    #[error("token invalid")]
    TokenInvalid,
    /// The token's `exp` has passed.
    #[error("token expired")]
    TokenExpired,
    /// The token's `tokenVersion` is older than the user's (tokens revoked).
    #[error("token revoked")]
    TokenRevoked,
    /// The token names a user that does not exist (any more).
    #[error("user unknown")]
    UserUnknown,
    /// The user is disabled.
    #[error("user disabled")]
    UserDisabled,
    /// Auth could not be reached or failed internally; the token was not
    /// judged. Callers should refuse the request and let the client retry.
    #[error("auth unavailable")]
    Unavailable {
        /// What went wrong, for logs (never shown to clients).
        detail: String,
    },
}

impl AuthFailure {
    /// The client-facing text (`token expired`, …; `auth unavailable` for
    /// [`AuthFailure::Unavailable`]).
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::TokenMissing => "token missing",
            Self::TokenInvalid => "token invalid",
            Self::TokenExpired => "token expired",
            Self::TokenRevoked => "token revoked",
            Self::UserUnknown => "user unknown",
            Self::UserDisabled => "user disabled",
            Self::Unavailable { .. } => "auth unavailable",
        }
    }

    /// Reads the message of an UNAUTHENTICATED status from auth. A message
    /// that is none of the six reasons counts as `token invalid`, so an
    /// unexpected answer never lets a token through.
    pub fn from_unauthenticated_message(message: &str) -> Self {
        match message {
            "token missing" => Self::TokenMissing,
            "token invalid" => Self::TokenInvalid,
            "token expired" => Self::TokenExpired,
            "token revoked" => Self::TokenRevoked,
            "user unknown" => Self::UserUnknown,
            "user disabled" => Self::UserDisabled,
            _ => Self::TokenInvalid,
        }
    }

    /// Maps any status from a token-checking call: UNAUTHENTICATED carries a
    /// reason, everything else means auth could not judge the token.
    pub fn from_status(status: &tonic::Status) -> Self {
        if status.code() == tonic::Code::Unauthenticated {
            Self::from_unauthenticated_message(status.message())
        } else {
            Self::Unavailable { detail: format!("{:?}: {}", status.code(), status.message()) }
        }
    }

    /// Whether auth could not be asked (as opposed to refusing the token).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }

    /// The status a gRPC server returns for this failure: UNAUTHENTICATED
    /// with the reason, or UNAVAILABLE when auth could not be asked.
    pub fn to_status(&self) -> tonic::Status {
        match self {
            Self::Unavailable { .. } => tonic::Status::unavailable("auth service unavailable, retry later"),
            reason => tonic::Status::unauthenticated(reason.as_str()),
        }
    }
}

/// What can go wrong in the other calls to auth ([`crate::AuthClient::login`],
/// [`crate::AuthClient::lookup_users`]) or in building the client.
#[derive(Debug, thiserror::Error)]
pub enum AuthnError {
    /// The caller's token (or account) was refused.
    #[error(transparent)]
    Rejected(AuthFailure),
    /// Login with an unknown email or a wrong password.
    #[error("invalid email or password")]
    InvalidCredentials,
    /// The request was refused as malformed; the message names the field.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The caller is authenticated but not allowed.
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    /// Auth refused for now (too many failed logins for the email); the
    /// message says how long to wait.
    #[error("{0}")]
    Throttled(String),
    /// Auth could not be reached or failed internally; retry later.
    #[error("auth unavailable: {0}")]
    Unavailable(String),
    /// The address of auth is not a usable URI.
    #[error("invalid auth address {addr:?}: {reason}")]
    InvalidAddress {
        /// The address as given (`AUTH_ADDR`).
        addr: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl AuthnError {
    /// Maps a status from auth. UNAUTHENTICATED becomes [`AuthnError::Rejected`]
    /// with its reason.
    pub fn from_status(status: &tonic::Status) -> Self {
        let message = status.message().to_owned();
        match status.code() {
            tonic::Code::Unauthenticated => Self::Rejected(AuthFailure::from_unauthenticated_message(&message)),
            tonic::Code::InvalidArgument => Self::InvalidArgument(message),
            tonic::Code::PermissionDenied => Self::PermissionDenied(message),
            tonic::Code::ResourceExhausted => Self::Throttled(message),
            code => Self::Unavailable(format!("{code:?}: {message}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_round_trip_through_their_text() {
        for reason in [
            AuthFailure::TokenMissing,
            AuthFailure::TokenInvalid,
            AuthFailure::TokenExpired,
            AuthFailure::TokenRevoked,
            AuthFailure::UserUnknown,
            AuthFailure::UserDisabled,
        ] {
            assert_eq!(reason.to_string(), reason.as_str());
            assert_eq!(AuthFailure::from_unauthenticated_message(reason.as_str()), reason);
            let status = reason.to_status();
            assert_eq!(status.code(), tonic::Code::Unauthenticated);
            assert_eq!(AuthFailure::from_status(&status), reason);
        }
    }

    #[test]
    fn unknown_unauthenticated_message_is_token_invalid() {
        assert_eq!(AuthFailure::from_unauthenticated_message("something new"), AuthFailure::TokenInvalid);
    }

    #[test]
    fn other_codes_mean_unavailable() {
        for status in [tonic::Status::unavailable("down"), tonic::Status::internal("boom")] {
            let failure = AuthFailure::from_status(&status);
            assert!(failure.is_unavailable());
            assert_eq!(failure.to_string(), "auth unavailable");
            assert_eq!(failure.to_status().code(), tonic::Code::Unavailable);
        }
    }
}
