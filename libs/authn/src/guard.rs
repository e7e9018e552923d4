//! Guarding gRPC handlers: who is calling, and are they an admin.

use tonic::metadata::MetadataMap;

use crate::{AuthClient, AuthFailure, VerifiedUser};

/// Removes surrounding whitespace and a leading `Bearer ` (any case) from a
/// presented token.
pub fn strip_bearer(token: &str) -> &str {
    let token = token.trim();
    match token.get(..7) {
        Some(scheme) if scheme.eq_ignore_ascii_case("bearer ") => token[7..].trim_start(),
        _ if token.eq_ignore_ascii_case("bearer") => "",
        _ => token,
    }
}

/// The token of an incoming request's `authorization` metadata
/// (`Bearer <jwt>`; a bare token is accepted too). No header, or an empty
/// one, is `token missing`; a value that is not visible ASCII is
/// `token invalid`.
pub fn bearer_token(metadata: &MetadataMap) -> Result<&str, AuthFailure> {
    let Some(value) = metadata.get("authorization") else {
        return Err(AuthFailure::TokenMissing);
    };
    let value = value.to_str().map_err(|_| AuthFailure::TokenInvalid)?;
    let token = strip_bearer(value);
    if token.is_empty() { Err(AuthFailure::TokenMissing) } else { Ok(token) }
}

/// Checks the caller of a gRPC handler through auth. Verification never
/// uses the cache, so a revoked admin loses access at once.
///
/// ```ignore
/// async fn announce(&self, request: Request<AnnounceRequest>) -> Result<Response<..>, Status> {
///     let admin = self.guard.require_admin(request.metadata()).await?;
///     ...
/// }
/// ```
#[derive(Debug, Clone)]
pub struct AdminGuard {
    client: AuthClient,
}

impl AdminGuard {
    /// A guard that verifies callers with `client`.
    pub fn new(client: AuthClient) -> Self {
        Self { client }
    }

    /// The caller, if its token is valid: UNAUTHENTICATED (with the reason)
    /// otherwise, UNAVAILABLE when auth cannot be asked.
    #[allow(clippy::result_large_err)] // handlers return tonic::Status
    pub async fn require_user(&self, metadata: &MetadataMap) -> Result<VerifiedUser, tonic::Status> {
        let token = bearer_token(metadata).map_err(|failure| failure.to_status())?;
        match self.client.verify_uncached(token).await {
            Ok(user) => Ok(user),
            Err(failure) => {
                if let AuthFailure::Unavailable { detail } = &failure {
                    tracing::warn!(%detail, "cannot verify caller: auth unavailable");
                }
                Err(failure.to_status())
            }
        }
    }

    /// The caller, if it is an admin: as [`Self::require_user`], plus
    /// PERMISSION_DENIED for a valid non-admin token.
    #[allow(clippy::result_large_err)] // handlers return tonic::Status
    pub async fn require_admin(&self, metadata: &MetadataMap) -> Result<VerifiedUser, tonic::Status> {
        let user = self.require_user(metadata).await?;
        if user.is_admin() { Ok(user) } else { Err(tonic::Status::permission_denied("admin role required")) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_prefix_is_optional_and_case_insensitive() {
        assert_eq!(strip_bearer("Bearer abc"), "abc");
        assert_eq!(strip_bearer("bearer   abc "), "abc");
        assert_eq!(strip_bearer("BEARER abc"), "abc");
        assert_eq!(strip_bearer("abc"), "abc");
        assert_eq!(strip_bearer("Bearer"), "");
        assert_eq!(strip_bearer("  "), "");
        assert_eq!(strip_bearer("Bearerabc"), "Bearerabc");
        assert_eq!(strip_bearer("é"), "é");
    }

    #[test]
    fn metadata_token_missing_or_invalid() {
        let mut metadata = MetadataMap::new();
        assert_eq!(bearer_token(&metadata), Err(AuthFailure::TokenMissing));
        metadata.insert("authorization", "Bearer ".parse().unwrap());
        assert_eq!(bearer_token(&metadata), Err(AuthFailure::TokenMissing));
        metadata.insert("authorization", "Bearer a.b.c".parse().unwrap());
        assert_eq!(bearer_token(&metadata), Ok("a.b.c"));
        metadata.insert("authorization", tonic::metadata::MetadataValue::try_from(&b"Bearer \xff"[..]).unwrap());
        assert_eq!(bearer_token(&metadata), Err(AuthFailure::TokenInvalid));
    }

    #[tokio::test]
    async fn guard_refuses_missing_token_before_asking_auth() {
        let guard = AdminGuard::new(AuthClient::connect_lazy("127.0.0.1:9").expect("valid address"));
        let status = guard.require_admin(&MetadataMap::new()).await.expect_err("no token");
        assert_eq!(status.code(), tonic::Code::Unauthenticated);
        assert_eq!(status.message(), "token missing");
    }
}
