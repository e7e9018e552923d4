//! [`AuthClient`]: the typed way to call auth.

use std::sync::Arc;
use std::time::Duration;

use sb_proto::auth::v1 as pb;
use sb_proto::auth::v1::auth_service_client::AuthServiceClient;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

use crate::cache::{VerifyCache, VerifyCacheSettings, token_key};
use crate::{AuthFailure, AuthnError, strip_bearer};

/// The trace-context interceptor's type, as a plain fn pointer.
type InjectFn = fn(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status>;

/// The generated client with trace propagation, for the admin RPCs that
/// [`AuthClient`] has no method for (see [`AuthClient::grpc`]).
pub type AuthGrpcClient = AuthServiceClient<InterceptedService<Channel, InjectFn>>;

/// A user's role: what auth stores, signs into the `role` claim (as
/// `user` / `admin`) and answers in `VerifyToken`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// An ordinary user.
    User,
    /// May call admin RPCs and `admin_broadcast`.
    Admin,
}

impl Role {
    /// `user` or `admin`, as stored and as in the JWT `role` claim.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Admin => "admin",
        }
    }

    /// Reads the stored text (`user` or `admin`).
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "user" => Some(Self::User),
            "admin" => Some(Self::Admin),
            _ => None,
        }
    }

    /// The proto enum value.
    pub fn to_proto(self) -> i32 {
        match self {
            Self::User => pb::Role::User as i32,
            Self::Admin => pb::Role::Admin as i32,
        }
    }

    /// Reads the proto enum; anything but `ROLE_ADMIN` is a plain user, so
    /// an unexpected value never grants admin rights.
    pub fn from_proto(role: i32) -> Self {
        if role == pb::Role::Admin as i32 { Self::Admin } else { Self::User }
    }
}

/// Who a verified token belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedUser {
    /// The user id (`sub`).
    pub id: String,
    /// The user's current email.
    pub email: String,
    /// The user's current role.
    pub role: Role,
    /// The user's current token version (equal to the token's `tokenVersion`).
    pub token_version: i64,
    /// The token's `exp`, seconds since the Unix epoch.
    pub expires_at_s: i64,
}

impl VerifiedUser {
    /// Whether the user is an admin.
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    fn from_proto(user: pb::User, expires_at_s: i64) -> Self {
        Self {
            id: user.id,
            email: user.email,
            role: Role::from_proto(user.role),
            token_version: user.token_version,
            expires_at_s,
        }
    }
}

/// A token handed out by [`AuthClient::login`].
#[derive(Debug, Clone)]
pub struct IssuedToken {
    /// The JWT. Treat it as a secret: never log it.
    pub token: String,
    /// Its `exp`, seconds since the Unix epoch.
    pub expires_at_s: i64,
    /// Whom it belongs to.
    pub user: VerifiedUser,
}

/// Turns `AUTH_ADDR` into a URI: `host:port` gets `http://` in front; an
/// `http://` or `https://` URI is kept.
pub fn normalize_addr(addr: &str) -> String {
    let addr = addr.trim();
    if addr.starts_with("http://") || addr.starts_with("https://") { addr.to_owned() } else { format!("http://{addr}") }
}

/// A cheap-to-clone client of the auth service. Clones share one HTTP/2
/// connection and one verify cache.
#[derive(Clone)]
pub struct AuthClient {
    grpc: AuthGrpcClient,
    cache: Option<Arc<VerifyCache>>,
    cache_counts: Option<CacheCounts>,
}

/// Counters of the verify cache's answers (see [`AuthClient::count_cache`]).
#[derive(Clone, Debug)]
struct CacheCounts {
    hits: prometheus_client::metrics::counter::Counter,
    misses: prometheus_client::metrics::counter::Counter,
}

impl std::fmt::Debug for AuthClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthClient").field("cache", &self.cache.is_some()).finish_non_exhaustive()
    }
}

impl AuthClient {
    /// A client of auth at `addr` (`host:port` or a URI). Nothing is
    /// connected yet: the first call connects, and the channel reconnects
    /// by itself, so a service can start before auth does. Calls time out
    /// after 5 s, connecting after 2 s. No verify cache; see
    /// [`Self::with_verify_cache`].
    pub fn connect_lazy(addr: &str) -> Result<Self, AuthnError> {
        let uri = normalize_addr(addr);
        let endpoint = Endpoint::from_shared(uri)
            .map_err(|error| AuthnError::InvalidAddress { addr: addr.to_owned(), reason: error.to_string() })?
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(5))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_while_idle(true);
        Ok(Self::from_channel(endpoint.connect_lazy()))
    }

    /// A client over an existing channel (no verify cache).
    pub fn from_channel(channel: Channel) -> Self {
        let inject: InjectFn = sb_telemetry::grpc::inject;
        Self { grpc: AuthServiceClient::with_interceptor(channel, inject), cache: None, cache_counts: None }
    }

    /// Turns on the short positive verify cache. Use it where tokens repeat
    /// within seconds (reconnect storms at the edge) and pair it with
    /// [`Self::invalidate_user`] on every `AccessChanged` event.
    #[must_use]
    pub fn with_verify_cache(mut self, settings: VerifyCacheSettings) -> Self {
        self.cache = Some(Arc::new(VerifyCache::new(settings)));
        self
    }

    /// Counts each [`Self::verify`] the cache answered in `hits`, each it
    /// passed on to auth in `misses` (the edge's
    /// `switchboard_edge_token_cache_total`). Without a cache nothing counts.
    #[must_use]
    pub fn count_cache(
        mut self,
        hits: prometheus_client::metrics::counter::Counter,
        misses: prometheus_client::metrics::counter::Counter,
    ) -> Self {
        self.cache_counts = Some(CacheCounts { hits, misses });
        self
    }

    /// The generated client (with trace propagation) for the admin RPCs.
    pub fn grpc(&self) -> AuthGrpcClient {
        self.grpc.clone()
    }

    /// Verifies `token` (a leading `Bearer ` is accepted): who it belongs
    /// to, or why it is refused. An empty token fails with `token missing`
    /// without a round trip. With a cache, a token verified moments ago is
    /// answered locally.
    pub async fn verify(&self, token: &str) -> Result<VerifiedUser, AuthFailure> {
        let token = strip_bearer(token);
        if token.is_empty() {
            return Err(AuthFailure::TokenMissing);
        }
        let Some(cache) = self.cache.as_ref() else {
            return self.verify_remote(token).await;
        };
        let key = token_key(token);
        if let Some(user) = cache.get(&key) {
            tracing::Span::current().record("switchboard.auth.cache", "hit");
            if let Some(counts) = &self.cache_counts {
                counts.hits.inc();
            }
            return Ok(user);
        }
        tracing::Span::current().record("switchboard.auth.cache", "miss");
        if let Some(counts) = &self.cache_counts {
            counts.misses.inc();
        }
        let generation = cache.generation();
        let user = self.verify_remote(token).await?;
        cache.insert(key, &user, generation);
        Ok(user)
    }

    /// Verifies `token` with auth, bypassing the cache. Use it where a
    /// revocation must count immediately (admin checks).
    pub async fn verify_uncached(&self, token: &str) -> Result<VerifiedUser, AuthFailure> {
        let token = strip_bearer(token);
        if token.is_empty() {
            return Err(AuthFailure::TokenMissing);
        }
        self.verify_remote(token).await
    }

    async fn verify_remote(&self, token: &str) -> Result<VerifiedUser, AuthFailure> {
        use tracing::Instrument as _;
        let request = pb::VerifyTokenRequest { token: token.to_owned() };
        let span = sb_telemetry::grpc::client_span("switchboard.auth.v1.AuthService/VerifyToken");
        let response = self.grpc.clone().verify_token(request).instrument(span.clone()).await;
        sb_telemetry::grpc::record_status(
            &span,
            response.as_ref().map_or_else(tonic::Status::code, |_| tonic::Code::Ok),
        );
        let response = response.map_err(|status| AuthFailure::from_status(&status))?.into_inner();
        let user = response.user.ok_or_else(|| AuthFailure::Unavailable {
            detail: "auth answered VerifyToken without a user".to_owned(),
        })?;
        Ok(VerifiedUser::from_proto(user, response.expires_at_s))
    }

    /// Drops every cached verification of `user_id`; call it on each
    /// `AccessChanged` event. Without a cache it does nothing.
    pub fn invalidate_user(&self, user_id: &str) {
        if let Some(cache) = self.cache.as_ref() {
            cache.invalidate_user(user_id);
        }
    }

    /// Drops the whole verify cache (e.g. after losing the NATS connection,
    /// when revocation events may have been missed).
    pub fn clear_cache(&self) {
        if let Some(cache) = self.cache.as_ref() {
            cache.clear();
        }
    }

    /// How many verified tokens the cache holds (0 without a cache), for metrics.
    pub fn cached_tokens(&self) -> usize {
        self.cache.as_ref().map_or(0, |cache| cache.len())
    }

    /// Resolves user ids to `{id, email}`; ids that name no user are left
    /// out. `caller_token` is any valid token (the edge forwards the
    /// caller's).
    pub async fn lookup_users(&self, caller_token: &str, ids: Vec<String>) -> Result<Vec<pb::PublicUser>, AuthnError> {
        let request = with_bearer(pb::LookupUsersRequest { ids }, caller_token)?;
        let response =
            self.grpc.clone().lookup_users(request).await.map_err(|status| AuthnError::from_status(&status))?;
        Ok(response.into_inner().users)
    }

    /// Exchanges an email and password for a token.
    pub async fn login(&self, email: &str, password: &str) -> Result<IssuedToken, AuthnError> {
        let request = pb::LoginRequest { email: email.to_owned(), password: password.to_owned() };
        let response = self.grpc.clone().login(request).await.map_err(|status| match status.code() {
            tonic::Code::Unauthenticated if status.message() == AuthFailure::UserDisabled.as_str() => {
                AuthnError::Rejected(AuthFailure::UserDisabled)
            }
            tonic::Code::Unauthenticated => AuthnError::InvalidCredentials,
            _ => AuthnError::from_status(&status),
        })?;
        let response = response.into_inner();
        let user =
            response.user.ok_or_else(|| AuthnError::Unavailable("auth answered Login without a user".to_owned()))?;
        Ok(IssuedToken {
            token: response.token,
            expires_at_s: response.expires_at_s,
            user: VerifiedUser::from_proto(user, response.expires_at_s),
        })
    }
}

/// Wraps `message` in a request carrying `authorization: Bearer <token>`.
/// A token that cannot be a header value is `token invalid`; an empty one
/// `token missing`.
pub(crate) fn with_bearer<T>(message: T, token: &str) -> Result<tonic::Request<T>, AuthnError> {
    let token = strip_bearer(token);
    if token.is_empty() {
        return Err(AuthnError::Rejected(AuthFailure::TokenMissing));
    }
    let value = format!("Bearer {token}")
        .parse::<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>()
        .map_err(|_| AuthnError::Rejected(AuthFailure::TokenInvalid))?;
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert("authorization", value);
    Ok(request)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_get_a_scheme() {
        assert_eq!(normalize_addr("127.0.0.1:50051"), "http://127.0.0.1:50051");
        assert_eq!(normalize_addr(" http://auth:50051 "), "http://auth:50051");
        assert_eq!(normalize_addr("https://auth.example"), "https://auth.example");
    }

    #[test]
    fn bad_address_is_an_error_not_a_panic() {
        assert!(matches!(AuthClient::connect_lazy("http://[::1"), Err(AuthnError::InvalidAddress { .. })));
    }

    #[tokio::test]
    async fn empty_token_is_missing_without_a_round_trip() {
        // Port 9 (discard) on loopback: nothing answers, so a round trip would fail as unavailable.
        let client = AuthClient::connect_lazy("127.0.0.1:9").expect("valid address");
        assert_eq!(client.verify("").await, Err(AuthFailure::TokenMissing));
        assert_eq!(client.verify("Bearer  ").await, Err(AuthFailure::TokenMissing));
    }

    #[tokio::test]
    async fn unreachable_auth_is_unavailable() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        drop(listener);
        let client = AuthClient::connect_lazy(&addr.to_string()).expect("valid address");
        let failure = client.verify("a.b.c").await.expect_err("nobody listens");
        assert!(failure.is_unavailable(), "{failure:?}");
    }

    #[test]
    fn bearer_metadata_is_set_and_bad_tokens_refused() {
        let request = with_bearer((), "Bearer abc").expect("ascii token");
        assert_eq!(request.metadata().get("authorization").unwrap(), "Bearer abc");
        assert!(matches!(with_bearer((), ""), Err(AuthnError::Rejected(AuthFailure::TokenMissing))));
        assert!(matches!(with_bearer((), "a\nb"), Err(AuthnError::Rejected(AuthFailure::TokenInvalid))));
    }
}
