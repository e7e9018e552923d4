//! The client side of Switchboard auth, shared by every service that needs
//! to know who is calling: the edge (every Socket.IO connect), presence and
//! messaging (their admin gRPC APIs).
//!
//! - [`AuthClient`] wraps the generated `AuthService` client over a lazily
//!   connecting channel (a service starts even when auth is not up yet) with
//!   the trace-context interceptor, and offers [`AuthClient::verify`],
//!   [`AuthClient::lookup_users`] and [`AuthClient::login`]. An optional short
//!   positive cache ([`VerifyCacheSettings`]) saves a round trip for a token
//!   seen a moment ago; [`AuthClient::invalidate_user`] drops a user's entries
//!   when a revocation event arrives.
//! - [`AuthFailure`] is why a token was refused, with the exact client-facing
//!   texts (`token missing`, `token invalid`, `token expired`, `token revoked`,
//!   `user unknown`, `user disabled`), or that auth could not be asked.
//! - [`AdminGuard`] checks the `authorization: Bearer <jwt>` metadata of an
//!   incoming gRPC request: UNAUTHENTICATED without a valid token,
//!   PERMISSION_DENIED for a non-admin.
//!
//! Raw tokens are never stored or logged here: the cache keys on a SHA-256 of
//! the token.

mod cache;
mod client;
mod failure;
mod guard;

pub use cache::VerifyCacheSettings;
pub use client::{AuthClient, AuthGrpcClient, IssuedToken, Role, VerifiedUser, normalize_addr};
pub use failure::{AuthFailure, AuthnError};
pub use guard::{AdminGuard, bearer_token, strip_bearer};
