//! The library's error type: what stops a run before or while it starts.
//!
//! Failures *during* a run (a socket that did not connect, a message that
//! was lost) are results, not errors: they are counted in the report and
//! make it `ok: false`.

use std::net::IpAddr;

/// Why a run (or a report) could not be made.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A setting is out of range or contradicts another one.
    #[error("invalid {name}: {reason}")]
    InvalidSetting {
        /// The flag or field.
        name: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A target or source address outside 127.0.0.0/8 without `--allow-non-loopback`.
    #[error("refusing non-loopback address {0} (pass --allow-non-loopback)")]
    NonLoopback(IpAddr),
    /// Signing a token failed.
    #[error("sign a token")]
    Token(#[from] jsonwebtoken::errors::Error),
    /// Reading or writing a file failed.
    #[error("{what}")]
    Io {
        /// What was being done ("append to results.jsonl").
        what: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Encoding or decoding JSON failed.
    #[error("encode json")]
    Json(#[from] serde_json::Error),
}

impl Error {
    /// An [`Error::InvalidSetting`].
    pub(crate) fn invalid(name: &'static str, reason: impl Into<String>) -> Self {
        Self::InvalidSetting { name, reason: reason.into() }
    }

    /// An [`Error::Io`] saying what was being done.
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io { what: what.into(), source }
    }
}
