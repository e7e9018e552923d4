//! The gRPC face of auth: unpacks each request, calls [`AuthCore`], and
//! lets `From<AuthError> for Status` (in `error.rs`) shape the failure.

use std::sync::Arc;
use std::time::Instant;

use sb_proto::auth::v1 as pb;
use sb_proto::auth::v1::auth_service_server::AuthService;
use tonic::{Request, Response, Status};

use crate::error::AuthError;
use crate::service::AuthCore;
use crate::store::UserRecord;

/// Implements `switchboard.auth.v1.AuthService`.
#[derive(Debug, Clone)]
pub struct AuthGrpc {
    core: Arc<AuthCore>,
}

impl AuthGrpc {
    /// Serves `core`.
    pub fn new(core: Arc<AuthCore>) -> Self {
        Self { core }
    }
}

fn user_response(user: UserRecord) -> Response<pb::User> {
    Response::new(user.into_proto())
}

/// Records on the request's server span whose token or login it was
/// (`switchboard.user.id`) and the outcome (`switchboard.auth.result`: `ok`,
/// or why not, e.g. `token revoked`); never the token or password.
fn record_auth(result: Result<&str, &AuthError>) {
    let span = tracing::Span::current();
    match result {
        Ok(user_id) => {
            span.record("switchboard.user.id", user_id);
            span.record("switchboard.auth.result", "ok");
        }
        Err(AuthError::Token(failure)) => {
            span.record("switchboard.auth.result", tracing::field::display(failure));
        }
        Err(AuthError::InvalidCredentials) => {
            span.record("switchboard.auth.result", "invalid credentials");
        }
        Err(AuthError::TooManyFailedLogins { .. }) => {
            span.record("switchboard.auth.result", "too many failed logins");
        }
        Err(_) => {
            span.record("switchboard.auth.result", "error");
        }
    }
}

#[tonic::async_trait]
impl AuthService for AuthGrpc {
    async fn verify_token(
        &self,
        request: Request<pb::VerifyTokenRequest>,
    ) -> Result<Response<pb::VerifyTokenResponse>, Status> {
        let started = Instant::now();
        let result = self.core.verify_token(&request.get_ref().token).await;
        self.core.metrics.record_verify(&result, started.elapsed());
        record_auth(result.as_ref().map(|(user, _)| user.id.as_str()));
        let (user, claims) = result?;
        Ok(Response::new(pb::VerifyTokenResponse {
            user: Some(user.into_proto()),
            expires_at_s: claims.exp,
            issued_at_s: claims.iat,
        }))
    }

    async fn login(&self, request: Request<pb::LoginRequest>) -> Result<Response<pb::LoginResponse>, Status> {
        let request = request.into_inner();
        let result = self.core.login(&request.email, &request.password).await;
        self.core.metrics.record_login(&result);
        record_auth(result.as_ref().map(|response| response.user.as_ref().map_or("", |user| user.id.as_str())));
        Ok(Response::new(result?))
    }

    async fn lookup_users(
        &self,
        request: Request<pb::LookupUsersRequest>,
    ) -> Result<Response<pb::LookupUsersResponse>, Status> {
        self.core.caller(request.metadata()).await?;
        let users = self.core.lookup_users(request.into_inner().ids).await?;
        Ok(Response::new(pb::LookupUsersResponse { users }))
    }

    async fn issue_token(
        &self,
        request: Request<pb::IssueTokenRequest>,
    ) -> Result<Response<pb::IssueTokenResponse>, Status> {
        let admin = self.core.admin(request.metadata()).await?;
        let request = request.into_inner();
        let response = self.core.issue_token(&request.user_id, request.ttl_seconds).await?;
        tracing::info!(admin_id = %admin.id, user_id = %request.user_id, "token issued");
        Ok(Response::new(response))
    }

    async fn revoke_tokens(
        &self,
        request: Request<pb::RevokeTokensRequest>,
    ) -> Result<Response<pb::RevokeTokensResponse>, Status> {
        let admin = self.core.admin(request.metadata()).await?;
        tracing::info!(admin_id = %admin.id, "revoke tokens requested");
        Ok(Response::new(self.core.revoke_tokens(&request.get_ref().user_id).await?))
    }

    async fn create_user(&self, request: Request<pb::CreateUserRequest>) -> Result<Response<pb::User>, Status> {
        let admin = self.core.admin(request.metadata()).await?;
        tracing::info!(admin_id = %admin.id, "create user requested");
        Ok(user_response(self.core.create_user(request.into_inner()).await?))
    }

    async fn get_user(&self, request: Request<pb::GetUserRequest>) -> Result<Response<pb::User>, Status> {
        self.core.admin(request.metadata()).await?;
        Ok(user_response(self.core.get_user(&request.get_ref().id).await?))
    }

    async fn list_users(
        &self,
        request: Request<pb::ListUsersRequest>,
    ) -> Result<Response<pb::ListUsersResponse>, Status> {
        self.core.admin(request.metadata()).await?;
        let request = request.get_ref();
        Ok(Response::new(self.core.list_users(request.page_size, &request.page_token).await?))
    }

    async fn disable_user(&self, request: Request<pb::DisableUserRequest>) -> Result<Response<pb::User>, Status> {
        let admin = self.core.admin(request.metadata()).await?;
        tracing::info!(admin_id = %admin.id, disabled = request.get_ref().disabled, "disable user requested");
        let request = request.get_ref();
        Ok(user_response(self.core.disable_user(&request.id, request.disabled).await?))
    }

    async fn set_role(&self, request: Request<pb::SetRoleRequest>) -> Result<Response<pb::User>, Status> {
        let admin = self.core.admin(request.metadata()).await?;
        tracing::info!(admin_id = %admin.id, "set role requested");
        let request = request.get_ref();
        Ok(user_response(self.core.set_role(&request.id, request.role).await?))
    }

    async fn seed_users(
        &self,
        request: Request<pb::SeedUsersRequest>,
    ) -> Result<Response<pb::SeedUsersResponse>, Status> {
        let admin = self.core.admin(request.metadata()).await?;
        tracing::info!(admin_id = %admin.id, "seed users requested");
        let created = self.core.seed_users(request.into_inner()).await?;
        Ok(Response::new(pb::SeedUsersResponse { created }))
    }
}
