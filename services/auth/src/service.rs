//! What auth does, independent of the transport: [`AuthCore`] holds the
//! store, the signing keys and the bus, and implements each RPC as a plain
//! async fn returning [`AuthError`]. `grpc.rs` only unpacks requests and
//! maps errors.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sb_authn::AuthFailure;
use sb_events::bus::Bus;
use sb_events::control::AccessChanged;
use sb_events::timestamp::now_ms;
use sb_proto::auth::v1 as pb;
use tonic::metadata::MetadataMap;

use crate::error::AuthError;
use crate::input;
use crate::login_guard::LoginGuard;
use crate::metrics::AuthMetrics;
use crate::password::{hash_password, verify_password};
use crate::store::{NewUser, Role, SeedPlan, Store, UserRecord};
use crate::token::{Claims, TokenKeys, now_s};

/// Email domain of seeded users when the request names none.
pub const DEFAULT_SEED_DOMAIN: &str = "load.test";
/// How long RevokeTokens / DisableUser wait for NATS to confirm the event.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(3);

/// The auth service's logic.
#[derive(Debug)]
pub struct AuthCore {
    /// The users table.
    pub store: Store,
    /// Signs and checks tokens.
    pub keys: TokenKeys,
    /// NATS, for AccessChanged events.
    pub bus: Bus,
    /// Metrics handles.
    pub metrics: AuthMetrics,
    /// Default token lifetime, seconds.
    pub token_ttl_s: u64,
    /// Longest lifetime IssueToken grants, seconds.
    pub max_token_ttl_s: u64,
    /// Failed logins per email.
    pub login_guard: LoginGuard,
}

impl AuthCore {
    /// Verifies a token: the JWT first (no database), then one lookup of
    /// the user by primary key.
    pub async fn verify_token(&self, token: &str) -> Result<(UserRecord, Claims), AuthError> {
        let token = sb_authn::strip_bearer(token);
        let claims = self.keys.verify(token).map_err(AuthError::Token)?;
        let user = self.store.user_by_id(&claims.sub).await?.ok_or(AuthError::Token(AuthFailure::UserUnknown))?;
        if user.disabled {
            return Err(AuthError::Token(AuthFailure::UserDisabled));
        }
        if user.token_version != claims.token_version {
            return Err(AuthError::Token(AuthFailure::TokenRevoked));
        }
        Ok((user, claims))
    }

    /// The caller of an RPC, from `authorization: Bearer <jwt>`.
    pub async fn caller(&self, metadata: &MetadataMap) -> Result<UserRecord, AuthError> {
        let token = sb_authn::bearer_token(metadata).map_err(AuthError::Token)?;
        Ok(self.verify_token(token).await?.0)
    }

    /// The caller, who must be an admin (by its current stored role).
    pub async fn admin(&self, metadata: &MetadataMap) -> Result<UserRecord, AuthError> {
        let caller = self.caller(metadata).await?;
        if caller.role != Role::Admin {
            return Err(AuthError::NotAdmin);
        }
        Ok(caller)
    }

    /// Signs a token for `user` valid `ttl_s` seconds from now; returns the
    /// token and its `exp`.
    pub fn issue(&self, user: &UserRecord, ttl_s: u64) -> Result<(String, i64), AuthError> {
        let iat = now_s();
        let exp = iat.saturating_add(i64::try_from(ttl_s).unwrap_or(i64::MAX));
        let claims = Claims {
            sub: user.id.clone(),
            email: user.email.clone(),
            role: user.role,
            token_version: user.token_version,
            iat,
            exp,
            nbf: None,
        };
        Ok((self.keys.sign(&claims)?, exp))
    }

    /// Login: email and password for a token with the default lifetime.
    pub async fn login(&self, email: &str, password: &str) -> Result<pb::LoginResponse, AuthError> {
        // A malformed email cannot belong to anyone: same answer as a wrong password.
        let Ok(email) = input::parse_email("email", email) else {
            return Err(AuthError::InvalidCredentials);
        };
        if password.is_empty() {
            return Err(AuthError::invalid("password", "must not be empty"));
        }
        if password.len() > input::MAX_PASSWORD_LEN {
            return Err(AuthError::InvalidCredentials);
        }
        self.login_guard.check(&email).await.map_err(|wait| AuthError::TooManyFailedLogins {
            retry_after_s: u64::try_from(wait.as_millis().div_ceil(1000)).unwrap_or(u64::MAX).max(1),
        })?;
        let found = self.store.user_by_email(&email).await?;
        let (user, hash) = match found {
            Some((user, hash)) => (Some(user), hash),
            None => (None, None),
        };
        if !verify_password(password.to_owned(), hash).await? {
            self.login_guard.failed(&email).await;
            return Err(AuthError::InvalidCredentials);
        }
        let user = user.ok_or(AuthError::InvalidCredentials)?;
        self.login_guard.succeeded(&email).await;
        if user.disabled {
            return Err(AuthError::Token(AuthFailure::UserDisabled));
        }
        let (token, expires_at_s) = self.issue(&user, self.token_ttl_s)?;
        tracing::info!(user_id = %user.id, "login");
        Ok(pb::LoginResponse { token, expires_at_s, user: Some(user.into_proto()) })
    }

    /// `{id, email}` of the existing users among `ids`.
    pub async fn lookup_users(&self, ids: Vec<String>) -> Result<Vec<pb::PublicUser>, AuthError> {
        if ids.len() > input::MAX_LOOKUP_IDS {
            return Err(AuthError::invalid("ids", format!("at most {} ids per call", input::MAX_LOOKUP_IDS)));
        }
        let mut ids: Vec<String> = ids.into_iter().filter(|id| input::parse_user_id("ids", id).is_ok()).collect();
        ids.sort_unstable();
        ids.dedup();
        let found = self.store.lookup_public(&ids).await?;
        Ok(found.into_iter().map(|(id, email)| pb::PublicUser { id, email }).collect())
    }

    /// Admin: a token for any enabled user.
    pub async fn issue_token(&self, user_id: &str, ttl_s: i64) -> Result<pb::IssueTokenResponse, AuthError> {
        let user_id = input::parse_user_id("user_id", user_id)?;
        let ttl_s = input::parse_ttl("ttl_seconds", ttl_s, self.token_ttl_s, self.max_token_ttl_s)?;
        let user = self.store.user_by_id(&user_id).await?.ok_or(AuthError::UserNotFound { id: user_id })?;
        if user.disabled {
            return Err(AuthError::UserDisabled { id: user.id });
        }
        let (token, expires_at_s) = self.issue(&user, ttl_s)?;
        Ok(pb::IssueTokenResponse { token, expires_at_s })
    }

    /// Admin: bumps the user's token version and tells the edges.
    pub async fn revoke_tokens(&self, user_id: &str) -> Result<pb::RevokeTokensResponse, AuthError> {
        let user_id = input::parse_user_id("user_id", user_id)?;
        let user = self
            .store
            .bump_token_version(&user_id, now_ms(), None)
            .await?
            .ok_or(AuthError::UserNotFound { id: user_id })?;
        tracing::info!(user_id = %user.id, token_version = user.token_version, "tokens revoked");
        self.publish_access_changed(&user).await?;
        Ok(pb::RevokeTokensResponse { token_version: user.token_version })
    }

    /// Admin: creates a user.
    pub async fn create_user(&self, request: pb::CreateUserRequest) -> Result<UserRecord, AuthError> {
        let email = input::parse_email("email", &request.email)?;
        input::parse_password("password", &request.password)?;
        let role = input::parse_role("role", request.role, Some(Role::User))?;
        let id = if request.id.is_empty() {
            uuid::Uuid::now_v7().to_string()
        } else {
            input::parse_user_id("id", &request.id)?
        };
        let password_hash = hash_password(request.password).await?;
        let user =
            self.store.insert_user(NewUser { id, email, password_hash: Some(password_hash), role }, now_ms()).await?;
        tracing::info!(user_id = %user.id, role = user.role.as_str(), "user created");
        Ok(user)
    }

    /// Admin: one user.
    pub async fn get_user(&self, id: &str) -> Result<UserRecord, AuthError> {
        let id = input::parse_user_id("id", id)?;
        self.store.user_by_id(&id).await?.ok_or(AuthError::UserNotFound { id })
    }

    /// Admin: a page of users ordered by id.
    pub async fn list_users(&self, page_size: u32, page_token: &str) -> Result<pb::ListUsersResponse, AuthError> {
        let page_size = input::parse_page_size("page_size", page_size)?;
        let after = if page_token.is_empty() {
            None
        } else {
            let bytes = URL_SAFE_NO_PAD
                .decode(page_token)
                .map_err(|_| AuthError::invalid("page_token", "is not a token from a previous page"))?;
            Some(
                String::from_utf8(bytes)
                    .map_err(|_| AuthError::invalid("page_token", "is not a token from a previous page"))?,
            )
        };
        let mut users = self.store.list_users(after.as_deref(), page_size + 1).await?;
        let next_page_token = if users.len() > page_size as usize {
            users.truncate(page_size as usize);
            users.last().map(|last| URL_SAFE_NO_PAD.encode(last.id.as_bytes())).unwrap_or_default()
        } else {
            String::new()
        };
        Ok(pb::ListUsersResponse { users: users.into_iter().map(UserRecord::into_proto).collect(), next_page_token })
    }

    /// Admin: disables a user (revoking every token and telling the edges)
    /// or re-enables it. Disabling bumps the token version too, so
    /// re-enabling later does not revive tokens issued before.
    pub async fn disable_user(&self, id: &str, disabled: bool) -> Result<UserRecord, AuthError> {
        let id = input::parse_user_id("id", id)?;
        let now = now_ms();
        if disabled {
            let user =
                self.store.bump_token_version(&id, now, Some(true)).await?.ok_or(AuthError::UserNotFound { id })?;
            tracing::info!(user_id = %user.id, token_version = user.token_version, "user disabled");
            self.publish_access_changed(&user).await?;
            Ok(user)
        } else {
            let user = self.store.set_disabled(&id, false, now).await?.ok_or(AuthError::UserNotFound { id })?;
            tracing::info!(user_id = %user.id, "user enabled");
            Ok(user)
        }
    }

    /// Admin: changes a user's role. VerifyToken reports the stored role, so
    /// admin checks see the change at once.
    pub async fn set_role(&self, id: &str, role: i32) -> Result<UserRecord, AuthError> {
        let id = input::parse_user_id("id", id)?;
        let role = input::parse_role("role", role, None)?;
        let user = self.store.set_role(&id, role, now_ms()).await?.ok_or(AuthError::UserNotFound { id })?;
        tracing::info!(user_id = %user.id, role = role.as_str(), "role changed");
        Ok(user)
    }

    /// Admin: bulk-creates load-test users.
    pub async fn seed_users(&self, request: pb::SeedUsersRequest) -> Result<u32, AuthError> {
        if request.count == 0 || request.count > input::MAX_SEED_COUNT {
            return Err(AuthError::invalid("count", format!("must be between 1 and {}", input::MAX_SEED_COUNT)));
        }
        let id_prefix = input::parse_seed_prefix("id_prefix", &request.id_prefix)?;
        let email_domain = if request.email_domain.is_empty() {
            DEFAULT_SEED_DOMAIN.to_owned()
        } else {
            let domain = request.email_domain.trim().to_lowercase();
            input::parse_domain("email_domain", &domain)?;
            domain
        };
        // The longest email must still be a valid one.
        let longest = format!("{id_prefix}{}@{email_domain}", request.count);
        if longest.len() > input::MAX_EMAIL_LEN {
            return Err(AuthError::invalid("email_domain", "makes the seeded emails too long"));
        }
        let password_hash = if request.password.is_empty() {
            None
        } else {
            input::parse_password("password", &request.password)?;
            Some(hash_password(request.password).await?)
        };
        let plan =
            SeedPlan { id_prefix, email_domain, count: request.count, admin_every: request.admin_every, password_hash };
        let created = self.store.seed_users(&plan, now_ms()).await?;
        tracing::info!(count = plan.count, created, prefix = %plan.id_prefix, "users seeded");
        Ok(u32::try_from(created).unwrap_or(u32::MAX))
    }

    /// Creates the bootstrap admin unless a user with that email exists.
    pub async fn ensure_bootstrap_admin(&self, email: &str, password: &str) -> Result<(), AuthError> {
        let email = input::parse_email("BOOTSTRAP_ADMIN_EMAIL", email)?;
        input::parse_password("BOOTSTRAP_ADMIN_PASSWORD", password)?;
        if let Some((existing, _)) = self.store.user_by_email(&email).await? {
            if existing.role != Role::Admin {
                tracing::warn!(user_id = %existing.id, "the bootstrap admin email belongs to a non-admin user; left unchanged");
            }
            return Ok(());
        }
        let password_hash = hash_password(password.to_owned()).await?;
        let user = NewUser {
            id: uuid::Uuid::now_v7().to_string(),
            email,
            password_hash: Some(password_hash),
            role: Role::Admin,
        };
        match self.store.insert_user(user, now_ms()).await {
            Ok(user) => {
                tracing::info!(user_id = %user.id, "bootstrap admin created");
                Ok(())
            }
            // Another replica created it at the same moment.
            Err(crate::store::StoreError::EmailTaken) => Ok(()),
            Err(error) => Err(error.into()),
        }
    }

    /// Publishes AccessChanged for `user` and waits until NATS has it.
    async fn publish_access_changed(&self, user: &UserRecord) -> Result<(), AuthError> {
        let event =
            AccessChanged { user_id: user.id.clone(), token_version: user.token_version, disabled: user.disabled };
        self.bus.publish_flushed(self.bus.subjects.control_access(), &event, PUBLISH_TIMEOUT).await.map_err(|error| {
            tracing::warn!(user_id = %user.id, %error, "publish access change");
            AuthError::AccessEventNotPublished { user_id: user.id.clone(), token_version: user.token_version }
        })
    }
}
