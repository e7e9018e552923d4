//! The shared client library (`sb-authn`) against a real auth.

use std::time::Duration;

use sb_authn::{AdminGuard, AuthClient, AuthFailure, AuthnError, Role, VerifyCacheSettings};
use sb_proto::auth::v1 as pb;
use sb_tests::DbKind;
use sb_tests::auth::{ADMIN_EMAIL, ADMIN_PASSWORD};

use super::{Env, both};

async fn client_verify_maps_every_reason(kind: DbKind) {
    let env = Env::start(kind).await;
    let client = env.auth.client();
    let (user, token) = env.auth.create_user("c@example.test", pb::Role::User).await.expect("create");
    let verified = client.verify(&token).await.expect("valid");
    assert_eq!(
        (verified.id.as_str(), verified.email.as_str(), verified.role),
        (user.id.as_str(), "c@example.test", Role::User)
    );
    assert_eq!(client.verify("").await, Err(AuthFailure::TokenMissing));
    assert_eq!(client.verify("garbage").await, Err(AuthFailure::TokenInvalid));
    env.grpc()
        .await
        .revoke_tokens(env.auth.as_admin(pb::RevokeTokensRequest { user_id: user.id.clone() }))
        .await
        .expect("revoke");
    let failure = client.verify(&token).await.expect_err("revoked");
    assert_eq!((failure.clone(), failure.to_string()), (AuthFailure::TokenRevoked, "token revoked".to_owned()));
}
both!(client_verify_maps_every_reason);

async fn cache_answers_until_the_user_is_invalidated(kind: DbKind) {
    let env = Env::start(kind).await;
    let client =
        env.auth.client().with_verify_cache(VerifyCacheSettings { ttl: Duration::from_secs(300), capacity: 100 });
    let (user, token) = env.auth.create_user("cached@example.test", pb::Role::User).await.expect("create");
    client.verify(&token).await.expect("valid");
    assert_eq!(client.cached_tokens(), 1);
    env.grpc()
        .await
        .revoke_tokens(env.auth.as_admin(pb::RevokeTokensRequest { user_id: user.id.clone() }))
        .await
        .expect("revoke");
    // The cache still answers (that is what it is for) ...
    client.verify(&token).await.expect("answered from the cache");
    // ... until the AccessChanged event makes the edge invalidate the user.
    client.invalidate_user(&user.id);
    assert_eq!(client.verify(&token).await, Err(AuthFailure::TokenRevoked));
    assert_eq!(client.cached_tokens(), 0, "failures are not cached");
    // verify_uncached never uses the cache.
    let fresh = env
        .grpc()
        .await
        .issue_token(env.auth.as_admin(pb::IssueTokenRequest { user_id: user.id.clone(), ttl_seconds: 0 }))
        .await
        .expect("issue")
        .into_inner()
        .token;
    client.verify(&fresh).await.expect("cached");
    env.grpc()
        .await
        .revoke_tokens(env.auth.as_admin(pb::RevokeTokensRequest { user_id: user.id.clone() }))
        .await
        .expect("revoke");
    assert_eq!(client.verify_uncached(&fresh).await, Err(AuthFailure::TokenRevoked));
}
both!(cache_answers_until_the_user_is_invalidated);

async fn client_login_and_lookup(kind: DbKind) {
    let env = Env::start(kind).await;
    let client = env.auth.client();
    let issued = client.login(ADMIN_EMAIL, ADMIN_PASSWORD).await.expect("login");
    assert!(issued.user.is_admin());
    assert!(matches!(client.login(ADMIN_EMAIL, "wrong").await, Err(AuthnError::InvalidCredentials)));
    let users = client.lookup_users(&issued.token, vec![issued.user.id.clone(), "ghost".into()]).await.expect("lookup");
    assert_eq!(users.len(), 1);
    assert_eq!(users[0].email, ADMIN_EMAIL);
    assert!(matches!(client.lookup_users("", vec![]).await, Err(AuthnError::Rejected(AuthFailure::TokenMissing))));
    assert!(matches!(client.lookup_users("x.y.z", vec![]).await, Err(AuthnError::Rejected(AuthFailure::TokenInvalid))));
}
both!(client_login_and_lookup);

async fn admin_guard_checks_callers_through_auth(kind: DbKind) {
    let env = Env::start(kind).await;
    let guard = AdminGuard::new(env.auth.client());
    let (_, user_token) = env.auth.create_user("guarded@example.test", pb::Role::User).await.expect("create");
    let metadata = |token: &str| {
        let mut metadata = tonic::metadata::MetadataMap::new();
        metadata.insert("authorization", format!("Bearer {token}").parse().expect("ascii"));
        metadata
    };
    let admin = guard.require_admin(&metadata(&env.auth.admin_token)).await.expect("admin passes");
    assert_eq!(admin.id, env.auth.admin_id);
    let denied = guard.require_admin(&metadata(&user_token)).await.expect_err("user is not admin");
    assert_eq!(denied.code(), tonic::Code::PermissionDenied);
    guard.require_user(&metadata(&user_token)).await.expect("but is a valid user");
    let invalid = guard.require_admin(&metadata("garbage")).await.expect_err("garbage");
    assert_eq!((invalid.code(), invalid.message()), (tonic::Code::Unauthenticated, "token invalid"));
    let missing = guard.require_admin(&tonic::metadata::MetadataMap::new()).await.expect_err("none");
    assert_eq!((missing.code(), missing.message()), (tonic::Code::Unauthenticated, "token missing"));
}
both!(admin_guard_checks_callers_through_auth);

#[tokio::test]
async fn unreachable_auth_is_unavailable_not_a_rejection() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let client = AuthClient::connect_lazy(&addr.to_string()).expect("valid address");
    assert!(client.verify("a.b.c").await.expect_err("nobody listens").is_unavailable());
    let guard = AdminGuard::new(client);
    let mut metadata = tonic::metadata::MetadataMap::new();
    metadata.insert("authorization", "Bearer a.b.c".parse().expect("ascii"));
    assert_eq!(guard.require_admin(&metadata).await.expect_err("unavailable").code(), tonic::Code::Unavailable);
}
