//! The CLI's errors. Each prints as one line that says what to do; a gRPC
//! status is turned into one here, in [`CliError::from_status`], and nowhere
//! else, so no command ever prints a status's debug dump.

use tonic::Code;

/// One of the three services a context names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// Users and tokens.
    Auth,
    /// Who is online; also serves edge control.
    Presence,
    /// History and notifications.
    Messaging,
}

impl Service {
    /// The name operators know it by.
    pub fn name(self) -> &'static str {
        match self {
            Self::Auth => "auth",
            Self::Presence => "presence",
            Self::Messaging => "messaging",
        }
    }
}

/// Everything a command can fail with.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// No connection to the service.
    #[error("cannot reach {} at {address} — is the stack running? (make run)", service.name())]
    Unreachable {
        /// The service.
        service: Service,
        /// Its address in the context.
        address: String,
    },
    /// No token: none stored for the context and none in `SWITCHBOARD_TOKEN`.
    #[error("not logged in: run switchboardctl {}login", login_context(.context))]
    NotLoggedIn {
        /// The context in use.
        context: String,
    },
    /// The service refused the caller's token.
    #[error("the token was refused ({reason}): run switchboardctl {}login", login_context(.context))]
    TokenRefused {
        /// The service's reason: `token expired`, `token revoked`, …
        reason: String,
        /// The context in use.
        context: String,
    },
    /// The token is valid but not an admin's.
    #[error("permission denied: the token is not an admin's")]
    NotAdmin,
    /// What the command names does not exist (the text says what).
    #[error("{0}")]
    NotFound(String),
    /// The service refused an argument (its message names the field).
    #[error("{0}")]
    InvalidArgument(String),
    /// The thing to create exists already.
    #[error("{0}")]
    AlreadyExists(String),
    /// The service does not serve this RPC (an older or different version).
    #[error("{} at {address} does not serve {rpc} (is it older than this switchboardctl?)", service.name())]
    Unimplemented {
        /// The service.
        service: Service,
        /// Its address.
        address: String,
        /// The gRPC method.
        rpc: &'static str,
    },
    /// Any other failure the service reported.
    #[error("{} failed: {message}", service.name())]
    Service {
        /// The service.
        service: Service,
        /// Its message.
        message: String,
    },
    /// `--context` / `SWITCHBOARD_CONTEXT` names no context.
    #[error("no context named {0} (see switchboardctl context list)")]
    UnknownContext(String),
    /// The configuration directory cannot be read or written.
    #[error("config: {0}")]
    Config(String),
    /// Bad input the command line could not catch (a password, a flag combination).
    #[error("{0}")]
    Usage(String),
}

fn login_context(context: &str) -> String {
    if context == crate::context::LOCAL { String::new() } else { format!("--context {context} ") }
}

/// One line of a service's message: statuses can carry newlines.
fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Where a call went, for the error it may turn into.
#[derive(Debug, Clone)]
pub struct Target {
    /// The service.
    pub service: Service,
    /// Its address.
    pub address: String,
    /// The context in use.
    pub context: String,
}

impl CliError {
    /// Turns the status of a failed call of `rpc` on `target` into one clear error.
    pub fn from_status(target: &Target, rpc: &'static str, status: &tonic::Status) -> Self {
        let message = one_line(status.message());
        match status.code() {
            // A status made by the client (connection refused, timeout) carries
            // its transport error as the source; a server's never does.
            Code::Unavailable | Code::Unknown | Code::Cancelled | Code::DeadlineExceeded
                if std::error::Error::source(status).is_some() =>
            {
                Self::Unreachable { service: target.service, address: target.address.clone() }
            }
            Code::Unauthenticated => Self::TokenRefused { reason: message, context: target.context.clone() },
            Code::PermissionDenied => Self::NotAdmin,
            Code::NotFound => Self::NotFound(message),
            Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => Self::InvalidArgument(message),
            Code::AlreadyExists => Self::AlreadyExists(message),
            Code::Unimplemented => {
                Self::Unimplemented { service: target.service, address: target.address.clone(), rpc }
            }
            _ => Self::Service { service: target.service, message },
        }
    }

    /// Replaces a NOT_FOUND with `message` (the caller knows what was asked for).
    pub fn not_found_as(self, message: impl FnOnce() -> String) -> Self {
        match self {
            Self::NotFound(_) => Self::NotFound(message()),
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> Target {
        Target { service: Service::Auth, address: "http://127.0.0.1:1".to_owned(), context: "local".to_owned() }
    }

    #[test]
    fn statuses_become_one_clear_line() {
        let cases = [
            (tonic::Status::permission_denied("admin role required"), "permission denied: the token is not an admin's"),
            (
                tonic::Status::unauthenticated("token expired"),
                "the token was refused (token expired): run switchboardctl login",
            ),
            (tonic::Status::not_found("no user with id \"x\""), "no user with id \"x\""),
            (tonic::Status::invalid_argument("invalid room:\n bad"), "invalid room: bad"),
            (tonic::Status::internal("internal error"), "auth failed: internal error"),
            (
                tonic::Status::unimplemented(""),
                "auth at http://127.0.0.1:1 does not serve Kick (is it older than this switchboardctl?)",
            ),
            // A server's UNAVAILABLE is its own message, not "cannot reach".
            (
                tonic::Status::unavailable("database unavailable, retry later"),
                "auth failed: database unavailable, retry later",
            ),
        ];
        for (status, expected) in cases {
            assert_eq!(CliError::from_status(&target(), "Kick", &status).to_string(), expected);
        }
    }

    #[test]
    fn other_contexts_are_named_in_the_login_hint() {
        let error = CliError::NotLoggedIn { context: "prod".to_owned() };
        assert_eq!(error.to_string(), "not logged in: run switchboardctl --context prod login");
    }
}
