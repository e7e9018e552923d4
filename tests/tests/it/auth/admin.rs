//! The RPCs behind the admin check, LookupUsers and Login.

use std::collections::HashSet;

use sb_proto::auth::v1 as pb;
use sb_tests::DbKind;
use sb_tests::auth::{ADMIN_EMAIL, ADMIN_PASSWORD, AuthHandle};
use tonic::Code;

use super::{Env, assert_rejected, assert_status, both, next_access_change, now_s, subscribe_access_changes};

/// Calls every admin RPC with `token` (or none) and returns the statuses.
async fn call_every_admin_rpc(env: &Env, token: Option<&str>) -> Vec<(&'static str, tonic::Status)> {
    fn request<T>(message: T, token: Option<&str>) -> tonic::Request<T> {
        match token {
            Some(token) => AuthHandle::with_token(message, token),
            None => tonic::Request::new(message),
        }
    }
    let mut grpc = env.grpc().await;
    let id = env.auth.admin_id.clone();
    let mut failures = Vec::new();
    let mut check = |name: &'static str, result: Result<(), tonic::Status>| match result {
        Ok(()) => panic!("{name} succeeded without an admin token"),
        Err(status) => failures.push((name, status)),
    };
    check(
        "IssueToken",
        grpc.issue_token(request(pb::IssueTokenRequest { user_id: id.clone(), ttl_seconds: 0 }, token)).await.map(drop),
    );
    check(
        "RevokeTokens",
        grpc.revoke_tokens(request(pb::RevokeTokensRequest { user_id: id.clone() }, token)).await.map(drop),
    );
    check(
        "CreateUser",
        grpc.create_user(request(
            pb::CreateUserRequest { email: "x@y.test".into(), password: "p".into(), role: 0, id: String::new() },
            token,
        ))
        .await
        .map(drop),
    );
    check("GetUser", grpc.get_user(request(pb::GetUserRequest { id: id.clone() }, token)).await.map(drop));
    check("ListUsers", grpc.list_users(request(pb::ListUsersRequest::default(), token)).await.map(drop));
    check(
        "DisableUser",
        grpc.disable_user(request(pb::DisableUserRequest { id: id.clone(), disabled: true }, token)).await.map(drop),
    );
    check(
        "SetRole",
        grpc.set_role(request(pb::SetRoleRequest { id: id.clone(), role: pb::Role::User as i32 }, token))
            .await
            .map(drop),
    );
    check(
        "SeedUsers",
        grpc.seed_users(request(pb::SeedUsersRequest { count: 1, id_prefix: "s".into(), ..Default::default() }, token))
            .await
            .map(drop),
    );
    failures
}

async fn admin_rpcs_need_an_admin(kind: DbKind) {
    let env = Env::start(kind).await;
    for (name, status) in call_every_admin_rpc(&env, None).await {
        assert_eq!((name, status.code(), status.message()), (name, Code::Unauthenticated, "token missing"));
    }
    for (name, status) in call_every_admin_rpc(&env, Some("garbage")).await {
        assert_eq!((name, status.code(), status.message()), (name, Code::Unauthenticated, "token invalid"));
    }
    let (_, user_token) = env.auth.create_user("plain@example.test", pb::Role::User).await.expect("create user");
    for (name, status) in call_every_admin_rpc(&env, Some(&user_token)).await {
        assert_eq!((name, status.code()), (name, Code::PermissionDenied), "{status:?}");
    }
    // Nothing changed: the admin is still an enabled admin with its token valid.
    env.verify(&env.auth.admin_token).await.expect("admin token still valid");
}
both!(admin_rpcs_need_an_admin);

async fn create_and_get_user(kind: DbKind) {
    let env = Env::start(kind).await;
    let mut grpc = env.grpc().await;
    let created = grpc
        .create_user(env.auth.as_admin(pb::CreateUserRequest {
            email: "  Grace@Example.TEST ".into(),
            password: "pw".into(),
            role: pb::Role::Admin as i32,
            id: String::new(),
        }))
        .await
        .expect("create")
        .into_inner();
    assert_eq!(created.email, "grace@example.test");
    assert_eq!(created.role, pb::Role::Admin as i32);
    assert_eq!((created.token_version, created.disabled), (0, false));
    let uuid = uuid::Uuid::parse_str(&created.id).expect("generated id is a uuid");
    assert_eq!(uuid.get_version_num(), 7);
    assert!(created.created_at_ms > 0 && created.created_at_ms == created.updated_at_ms);
    let fetched = grpc
        .get_user(env.auth.as_admin(pb::GetUserRequest { id: created.id.clone() }))
        .await
        .expect("get")
        .into_inner();
    assert_eq!(fetched, created);

    // Imported id.
    let imported = grpc
        .create_user(env.auth.as_admin(pb::CreateUserRequest {
            email: "legacy@example.test".into(),
            password: "pw".into(),
            role: 0,
            id: "legacy-42".into(),
        }))
        .await
        .expect("create with id")
        .into_inner();
    assert_eq!((imported.id.as_str(), imported.role), ("legacy-42", pb::Role::User as i32));

    // Duplicates.
    let duplicate_email = grpc
        .create_user(env.auth.as_admin(pb::CreateUserRequest {
            email: "GRACE@example.test".into(),
            password: "pw".into(),
            role: 0,
            id: String::new(),
        }))
        .await;
    assert_status(duplicate_email, Code::AlreadyExists, "email");
    let duplicate_id = grpc
        .create_user(env.auth.as_admin(pb::CreateUserRequest {
            email: "other@example.test".into(),
            password: "pw".into(),
            role: 0,
            id: "legacy-42".into(),
        }))
        .await;
    assert_status(duplicate_id, Code::AlreadyExists, "id");

    assert_status(
        grpc.get_user(env.auth.as_admin(pb::GetUserRequest { id: "nobody".into() })).await,
        Code::NotFound,
        "nobody",
    );
    assert_status(
        grpc.get_user(env.auth.as_admin(pb::GetUserRequest { id: String::new() })).await,
        Code::InvalidArgument,
        "invalid id",
    );
}
both!(create_and_get_user);

async fn create_user_rejects_bad_arguments(kind: DbKind) {
    let env = Env::start(kind).await;
    let mut grpc = env.grpc().await;
    let cases = [
        (
            pb::CreateUserRequest { email: "not-an-email".into(), password: "pw".into(), role: 0, id: String::new() },
            "invalid email",
        ),
        (
            pb::CreateUserRequest { email: String::new(), password: "pw".into(), role: 0, id: String::new() },
            "invalid email",
        ),
        (
            pb::CreateUserRequest { email: "a@b.test".into(), password: String::new(), role: 0, id: String::new() },
            "invalid password",
        ),
        (
            pb::CreateUserRequest { email: "a@b.test".into(), password: "pw".into(), role: 9, id: String::new() },
            "invalid role",
        ),
        (
            pb::CreateUserRequest { email: "a@b.test".into(), password: "pw".into(), role: 0, id: "bad\nid".into() },
            "invalid id",
        ),
        (
            pb::CreateUserRequest { email: "a@b.test".into(), password: "pw".into(), role: 0, id: "x".repeat(129) },
            "invalid id",
        ),
    ];
    for (request, needle) in cases {
        assert_status(grpc.create_user(env.auth.as_admin(request)).await, Code::InvalidArgument, needle);
    }
    // Nothing was created: only the bootstrap admin exists.
    let users = grpc.list_users(env.auth.as_admin(pb::ListUsersRequest::default())).await.expect("list").into_inner();
    assert_eq!(users.users.len(), 1);
}
both!(create_user_rejects_bad_arguments);

async fn list_users_pages_through_everyone(kind: DbKind) {
    let env = Env::start(kind).await;
    let mut grpc = env.grpc().await;
    for n in 0..6 {
        env.auth.create_user(&format!("user{n}@example.test"), pb::Role::User).await.expect("create");
    }
    let mut seen = Vec::new();
    let mut page_token = String::new();
    let mut pages = 0;
    loop {
        let page = grpc
            .list_users(env.auth.as_admin(pb::ListUsersRequest { page_size: 2, page_token: page_token.clone() }))
            .await
            .expect("list")
            .into_inner();
        assert!(page.users.len() <= 2);
        seen.extend(page.users.into_iter().map(|user| user.id));
        pages += 1;
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    assert_eq!(seen.len(), 7, "6 users and the admin");
    assert_eq!(pages, 4);
    let unique: HashSet<_> = seen.iter().collect();
    assert_eq!(unique.len(), 7);
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!(seen, sorted, "ordered by id");

    assert_status(
        grpc.list_users(env.auth.as_admin(pb::ListUsersRequest { page_size: 1001, page_token: String::new() })).await,
        Code::InvalidArgument,
        "page_size",
    );
    assert_status(
        grpc.list_users(env.auth.as_admin(pb::ListUsersRequest { page_size: 0, page_token: "!!".into() })).await,
        Code::InvalidArgument,
        "page_token",
    );
}
both!(list_users_pages_through_everyone);

async fn issue_token_mints_verifiable_tokens(kind: DbKind) {
    let env = Env::start(kind).await;
    let mut grpc = env.grpc().await;
    let (user, _) = env.auth.create_user("ttl@example.test", pb::Role::User).await.expect("create");
    let issued = grpc
        .issue_token(env.auth.as_admin(pb::IssueTokenRequest { user_id: user.id.clone(), ttl_seconds: 120 }))
        .await
        .expect("issue")
        .into_inner();
    let lifetime = issued.expires_at_s - now_s();
    assert!((110..=120).contains(&lifetime), "lifetime {lifetime}");
    let verified = env.verify(&issued.token).await.expect("issued token verifies");
    assert_eq!(verified.expires_at_s, issued.expires_at_s);
    assert_eq!(verified.user.expect("user").id, user.id);

    let default = grpc
        .issue_token(env.auth.as_admin(pb::IssueTokenRequest { user_id: user.id.clone(), ttl_seconds: 0 }))
        .await
        .expect("issue default")
        .into_inner();
    assert!((3590..=3600).contains(&(default.expires_at_s - now_s())));

    for ttl in [-1, 31_536_001] {
        assert_status(
            grpc.issue_token(env.auth.as_admin(pb::IssueTokenRequest { user_id: user.id.clone(), ttl_seconds: ttl }))
                .await,
            Code::InvalidArgument,
            "ttl_seconds",
        );
    }
    assert_status(
        grpc.issue_token(env.auth.as_admin(pb::IssueTokenRequest { user_id: "ghost".into(), ttl_seconds: 0 })).await,
        Code::NotFound,
        "ghost",
    );
    grpc.disable_user(env.auth.as_admin(pb::DisableUserRequest { id: user.id.clone(), disabled: true }))
        .await
        .expect("disable");
    assert_status(
        grpc.issue_token(env.auth.as_admin(pb::IssueTokenRequest { user_id: user.id.clone(), ttl_seconds: 0 })).await,
        Code::FailedPrecondition,
        "disabled",
    );
}
both!(issue_token_mints_verifiable_tokens);

async fn revoke_tokens_bumps_version_and_tells_the_edges(kind: DbKind) {
    let env = Env::start(kind).await;
    let mut events = subscribe_access_changes(&env).await;
    let mut grpc = env.grpc().await;
    let (user, old_token) = env.auth.create_user("rev@example.test", pb::Role::User).await.expect("create");
    let revoked = grpc
        .revoke_tokens(env.auth.as_admin(pb::RevokeTokensRequest { user_id: user.id.clone() }))
        .await
        .expect("revoke")
        .into_inner();
    assert_eq!(revoked.token_version, 1);
    let event = next_access_change(&mut events).await;
    assert_eq!(
        event,
        sb_events::control::AccessChanged { user_id: user.id.clone(), token_version: 1, disabled: false }
    );
    assert_rejected(env.verify(&old_token).await, "token revoked");
    let fresh = grpc
        .issue_token(env.auth.as_admin(pb::IssueTokenRequest { user_id: user.id.clone(), ttl_seconds: 0 }))
        .await
        .expect("issue")
        .into_inner();
    assert_eq!(env.verify(&fresh.token).await.expect("fresh token").user.expect("user").token_version, 1);

    assert_status(
        grpc.revoke_tokens(env.auth.as_admin(pb::RevokeTokensRequest { user_id: "ghost".into() })).await,
        Code::NotFound,
        "ghost",
    );
    assert_status(
        grpc.revoke_tokens(env.auth.as_admin(pb::RevokeTokensRequest { user_id: String::new() })).await,
        Code::InvalidArgument,
        "user_id",
    );
}
both!(revoke_tokens_bumps_version_and_tells_the_edges);

async fn revoke_without_nats_is_unavailable_but_revokes(kind: DbKind) {
    let mut env = Env::start(kind).await;
    let (user, old_token) = env.auth.create_user("nonats@example.test", pb::Role::User).await.expect("create");
    env.nats.kill();
    let result =
        env.grpc().await.revoke_tokens(env.auth.as_admin(pb::RevokeTokensRequest { user_id: user.id.clone() })).await;
    assert_status(result, Code::Unavailable, "bumped to 1");
    assert_rejected(env.verify(&old_token).await, "token revoked");
}
both!(revoke_without_nats_is_unavailable_but_revokes);

async fn disable_user_tells_the_edges_and_enable_does_not_revive_tokens(kind: DbKind) {
    let env = Env::start(kind).await;
    let mut events = subscribe_access_changes(&env).await;
    let mut grpc = env.grpc().await;
    let (user, old_token) = env.auth.create_user("dis@example.test", pb::Role::User).await.expect("create");
    let disabled = grpc
        .disable_user(env.auth.as_admin(pb::DisableUserRequest { id: user.id.clone(), disabled: true }))
        .await
        .expect("disable")
        .into_inner();
    assert!(disabled.disabled);
    assert_eq!(disabled.token_version, 1);
    let event = next_access_change(&mut events).await;
    assert_eq!(event, sb_events::control::AccessChanged { user_id: user.id.clone(), token_version: 1, disabled: true });
    assert_rejected(env.verify(&old_token).await, "user disabled");

    let enabled = grpc
        .disable_user(env.auth.as_admin(pb::DisableUserRequest { id: user.id.clone(), disabled: false }))
        .await
        .expect("enable")
        .into_inner();
    assert!(!enabled.disabled);
    assert_rejected(env.verify(&old_token).await, "token revoked");
    let login = grpc
        .login(pb::LoginRequest { email: "dis@example.test".into(), password: "user-password".into() })
        .await
        .expect("login after re-enable")
        .into_inner();
    env.verify(&login.token).await.expect("new token verifies");

    assert_status(
        grpc.disable_user(env.auth.as_admin(pb::DisableUserRequest { id: "ghost".into(), disabled: true })).await,
        Code::NotFound,
        "ghost",
    );
}
both!(disable_user_tells_the_edges_and_enable_does_not_revive_tokens);

async fn set_role_takes_effect_for_admin_checks(kind: DbKind) {
    let env = Env::start(kind).await;
    let mut grpc = env.grpc().await;
    let (user, token) = env.auth.create_user("promote@example.test", pb::Role::User).await.expect("create");
    assert_status(
        grpc.list_users(AuthHandle::with_token(pb::ListUsersRequest::default(), &token)).await,
        Code::PermissionDenied,
        "admin",
    );
    let promoted = grpc
        .set_role(env.auth.as_admin(pb::SetRoleRequest { id: user.id.clone(), role: pb::Role::Admin as i32 }))
        .await
        .expect("set role")
        .into_inner();
    assert_eq!(promoted.role, pb::Role::Admin as i32);
    grpc.list_users(AuthHandle::with_token(pb::ListUsersRequest::default(), &token)).await.expect("now an admin");
    grpc.set_role(env.auth.as_admin(pb::SetRoleRequest { id: user.id.clone(), role: pb::Role::User as i32 }))
        .await
        .expect("demote");
    assert_status(
        grpc.list_users(AuthHandle::with_token(pb::ListUsersRequest::default(), &token)).await,
        Code::PermissionDenied,
        "admin",
    );
    for role in [pb::Role::Unspecified as i32, 42] {
        assert_status(
            grpc.set_role(env.auth.as_admin(pb::SetRoleRequest { id: user.id.clone(), role })).await,
            Code::InvalidArgument,
            "role",
        );
    }
    assert_status(
        grpc.set_role(env.auth.as_admin(pb::SetRoleRequest { id: "ghost".into(), role: pb::Role::User as i32 })).await,
        Code::NotFound,
        "ghost",
    );
}
both!(set_role_takes_effect_for_admin_checks);

async fn seed_users_creates_numbered_users_once(kind: DbKind) {
    let env = Env::start(kind).await;
    let mut grpc = env.grpc().await;
    let seeded = grpc
        .seed_users(env.auth.as_admin(pb::SeedUsersRequest {
            count: 2500,
            id_prefix: "load".into(),
            email_domain: String::new(),
            admin_every: 1000,
            password: String::new(),
        }))
        .await
        .expect("seed")
        .into_inner();
    assert_eq!(seeded.created, 2500);
    let again = grpc
        .seed_users(env.auth.as_admin(pb::SeedUsersRequest {
            count: 2600,
            id_prefix: "load".into(),
            ..Default::default()
        }))
        .await
        .expect("seed again")
        .into_inner();
    assert_eq!(again.created, 100, "existing ids are skipped");

    let user =
        grpc.get_user(env.auth.as_admin(pb::GetUserRequest { id: "load1999".into() })).await.expect("get").into_inner();
    assert_eq!((user.email.as_str(), user.role), ("load1999@load.test", pb::Role::User as i32));
    let admin =
        grpc.get_user(env.auth.as_admin(pb::GetUserRequest { id: "load2000".into() })).await.expect("get").into_inner();
    assert_eq!(admin.role, pb::Role::Admin as i32);
    // No password by default: seeded users cannot log in, but tokens can be issued for them.
    assert_status(
        grpc.login(pb::LoginRequest { email: "load1@load.test".into(), password: "anything".into() }).await,
        Code::Unauthenticated,
        "invalid email or password",
    );
    let token = grpc
        .issue_token(env.auth.as_admin(pb::IssueTokenRequest { user_id: "load7".into(), ttl_seconds: 60 }))
        .await
        .expect("issue")
        .into_inner()
        .token;
    env.verify(&token).await.expect("seeded user's token verifies");

    // With a shared password and a domain.
    let with_password = grpc
        .seed_users(env.auth.as_admin(pb::SeedUsersRequest {
            count: 3,
            id_prefix: "pw-".into(),
            email_domain: "Bench.Example".into(),
            admin_every: 0,
            password: "shared".into(),
        }))
        .await
        .expect("seed with password")
        .into_inner();
    assert_eq!(with_password.created, 3);
    grpc.login(pb::LoginRequest { email: "pw-3@bench.example".into(), password: "shared".into() })
        .await
        .expect("login seeded");

    let bad = [
        (pb::SeedUsersRequest { count: 0, id_prefix: "x".into(), ..Default::default() }, "count"),
        (pb::SeedUsersRequest { count: 100_001, id_prefix: "x".into(), ..Default::default() }, "count"),
        (pb::SeedUsersRequest { count: 1, id_prefix: String::new(), ..Default::default() }, "id_prefix"),
        (pb::SeedUsersRequest { count: 1, id_prefix: "a.b".into(), ..Default::default() }, "id_prefix"),
        (pb::SeedUsersRequest { count: 1, id_prefix: "x".repeat(41), ..Default::default() }, "id_prefix"),
        (
            pb::SeedUsersRequest {
                count: 1,
                id_prefix: "x".into(),
                email_domain: "bad domain".into(),
                ..Default::default()
            },
            "email_domain",
        ),
    ];
    for (request, field) in bad {
        assert_status(grpc.seed_users(env.auth.as_admin(request)).await, Code::InvalidArgument, field);
    }
}
both!(seed_users_creates_numbered_users_once);

async fn login_checks_the_password(kind: DbKind) {
    let env = Env::start(kind).await;
    let mut grpc = env.grpc().await;
    let login = grpc
        .login(pb::LoginRequest { email: ADMIN_EMAIL.to_uppercase(), password: ADMIN_PASSWORD.into() })
        .await
        .expect("login, email case-insensitive")
        .into_inner();
    assert_eq!(login.user.expect("user").id, env.auth.admin_id);
    assert!((3590..=3600).contains(&(login.expires_at_s - now_s())));
    env.verify(&login.token).await.expect("login token verifies");

    for (email, password) in [(ADMIN_EMAIL, "wrong"), ("nobody@example.test", ADMIN_PASSWORD), ("not-an-email", "x")] {
        assert_status(
            grpc.login(pb::LoginRequest { email: email.into(), password: password.into() }).await,
            Code::Unauthenticated,
            "invalid email or password",
        );
    }
    assert_status(
        grpc.login(pb::LoginRequest { email: ADMIN_EMAIL.into(), password: String::new() }).await,
        Code::InvalidArgument,
        "password",
    );
    let (user, _) = env.auth.create_user("off@example.test", pb::Role::User).await.expect("create");
    grpc.disable_user(env.auth.as_admin(pb::DisableUserRequest { id: user.id, disabled: true }))
        .await
        .expect("disable");
    assert_rejected(
        grpc.login(pb::LoginRequest { email: "off@example.test".into(), password: "user-password".into() }).await,
        "user disabled",
    );
}
both!(login_checks_the_password);

/// The default limit: 10 failed logins for one email within 5 minutes lock
/// that email (even with the right password), not others; a success resets.
async fn login_is_refused_after_repeated_failures(kind: DbKind) {
    let env = Env::start(kind).await;
    let mut grpc = env.grpc().await;
    env.auth.create_user("target@example.test", pb::Role::User).await.expect("create");
    env.auth.create_user("other@example.test", pb::Role::User).await.expect("create");
    let login = |email: &str, password: &str| pb::LoginRequest { email: email.into(), password: password.into() };

    // Nine failures, a success, nine more: the success cleared the count.
    for _ in 0..9 {
        assert_status(grpc.login(login("other@example.test", "wrong")).await, Code::Unauthenticated, "invalid");
    }
    grpc.login(login("other@example.test", "user-password")).await.expect("login before the limit");
    for _ in 0..9 {
        assert_status(grpc.login(login("other@example.test", "wrong")).await, Code::Unauthenticated, "invalid");
    }
    grpc.login(login("other@example.test", "user-password")).await.expect("count was reset by the success");

    for _ in 0..10 {
        assert_status(grpc.login(login("target@example.test", "wrong")).await, Code::Unauthenticated, "invalid");
    }
    // Locked: the right password too, in any letter case of the email.
    for email in ["target@example.test", "TARGET@example.test"] {
        let status = grpc.login(login(email, "user-password")).await.expect_err("locked out");
        assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
        assert!(
            status.message().starts_with("too many failed logins for this email; try again in "),
            "{}",
            status.message()
        );
    }
    // Other emails, unknown ones included, are unaffected.
    grpc.login(login("other@example.test", "user-password")).await.expect("other email unaffected");
    assert_status(grpc.login(login("nobody@example.test", "x")).await, Code::Unauthenticated, "invalid");
    // Tokens of the locked user still verify: the lock is about guessing passwords only.
    let (_, token) = env.auth.create_user("target2@example.test", pb::Role::User).await.expect("create");
    env.verify(&token).await.expect("verify is not throttled");
}
both!(login_is_refused_after_repeated_failures);

async fn lookup_users_needs_any_valid_token(kind: DbKind) {
    let env = Env::start(kind).await;
    let mut grpc = env.grpc().await;
    let (alice, alice_token) = env.auth.create_user("alice@example.test", pb::Role::User).await.expect("create");
    let (bob, _) = env.auth.create_user("bob@example.test", pb::Role::User).await.expect("create");
    let ids = vec![alice.id.clone(), bob.id.clone(), "ghost".into(), bob.id.clone(), String::new()];
    let found = grpc
        .lookup_users(AuthHandle::with_token(pb::LookupUsersRequest { ids: ids.clone() }, &alice_token))
        .await
        .expect("lookup with a user token")
        .into_inner();
    let mut got: Vec<(String, String)> = found.users.into_iter().map(|u| (u.id, u.email)).collect();
    got.sort();
    let mut want =
        vec![(alice.id.clone(), "alice@example.test".to_owned()), (bob.id.clone(), "bob@example.test".to_owned())];
    want.sort();
    assert_eq!(got, want);

    assert_rejected(
        grpc.lookup_users(tonic::Request::new(pb::LookupUsersRequest { ids: ids.clone() })).await,
        "token missing",
    );
    assert_rejected(
        grpc.lookup_users(AuthHandle::with_token(pb::LookupUsersRequest { ids: ids.clone() }, "a.b.c")).await,
        "token invalid",
    );
    let too_many: Vec<String> = (0..1001).map(|n| format!("id{n}")).collect();
    assert_status(
        grpc.lookup_users(AuthHandle::with_token(pb::LookupUsersRequest { ids: too_many }, &alice_token)).await,
        Code::InvalidArgument,
        "ids",
    );
}
both!(lookup_users_needs_any_valid_token);
