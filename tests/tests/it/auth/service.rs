//! The service around the RPCs: start-up checks, bootstrap admin,
//! reflection, health, metrics, shutdown.

use sb_proto::auth::v1 as pb;
use sb_tests::auth::{ADMIN_EMAIL, auth_config, spawn_auth_with};
use sb_tests::http::http_response;
use sb_tests::{DbKind, NatsServer, TestDatabase};

use super::{Env, both};

#[tokio::test]
async fn start_up_refuses_without_jwt_secret_outside_dev_mode() {
    // The secret is checked before anything is bound or connected, so no
    // database or NATS is needed to see the refusal.
    for secret in [None, Some("")] {
        let config = auth_config("sqlite::memory:", "nats://127.0.0.1:1", secret);
        let error = match sb_auth::App::build(config).await {
            Ok(_) => panic!("auth started without JWT_SECRET"),
            Err(error) => error.to_string(),
        };
        assert!(error.contains("JWT_SECRET"), "{error}");
        assert!(error.contains("--dev"), "the error says how to run without one: {error}");
    }
}

async fn dev_mode_starts_without_secret(kind: DbKind) {
    let nats = NatsServer::start().await.expect("nats");
    let db = TestDatabase::create(kind).await.expect("db");
    let mut config = auth_config(&db.url, nats.url(), None);
    config.dev = true;
    let app = sb_auth::App::build(config).await.expect("dev mode starts without JWT_SECRET");
    let addr = app.grpc_addr();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(app.run(shutdown.clone().cancelled_owned()));
    let mut grpc =
        pb::auth_service_client::AuthServiceClient::connect(format!("http://{addr}")).await.expect("connect");
    let login = grpc
        .login(pb::LoginRequest { email: ADMIN_EMAIL.into(), password: sb_tests::auth::ADMIN_PASSWORD.into() })
        .await
        .expect("login in dev mode")
        .into_inner();
    // Signed with the published dev key.
    let keys = sb_auth::token::TokenKeys::new(sb_auth::config::DEV_JWT_SECRET.as_bytes(), std::time::Duration::ZERO);
    keys.verify(&login.token).expect("dev tokens are signed with DEV_JWT_SECRET");
    shutdown.cancel();
    task.await.expect("join").expect("clean shutdown");
}
both!(dev_mode_starts_without_secret);

async fn bootstrap_admin_is_created_once(kind: DbKind) {
    let env = Env::start(kind).await;
    let secret = env.auth.secret.clone();
    // A second replica (or a restart) against the same database.
    let second = spawn_auth_with(auth_config(&env.db.url, env.nats.url(), Some(&secret))).await.expect("second auth");
    assert_eq!(second.admin_id, env.auth.admin_id, "same admin, not a new one");
    let users = env
        .grpc()
        .await
        .list_users(env.auth.as_admin(pb::ListUsersRequest::default()))
        .await
        .expect("list")
        .into_inner();
    assert_eq!(users.users.len(), 1);
    assert_eq!(users.users[0].role, pb::Role::Admin as i32);
    second.stop().await.expect("stop second auth");
}
both!(bootstrap_admin_is_created_once);

async fn channel(env: &Env) -> tonic::transport::Channel {
    tonic::transport::Endpoint::from_shared(env.auth.uri()).expect("uri").connect().await.expect("connect to auth")
}

async fn reflection_lists_the_service_and_health_serves(kind: DbKind) {
    let env = Env::start(kind).await;
    let names = sb_tests::grpc::list_services(channel(&env).await).await.expect("reflection");
    assert!(names.contains(&"switchboard.auth.v1.AuthService".to_owned()), "{names:?}");
    assert!(names.contains(&"grpc.health.v1.Health".to_owned()), "{names:?}");
    assert!(!names.iter().any(|name| name.contains("presence")), "only what auth serves: {names:?}");

    let mut health = tonic_health::pb::health_client::HealthClient::new(channel(&env).await);
    for service in ["", "switchboard.auth.v1.AuthService"] {
        let status = health
            .check(tonic_health::pb::HealthCheckRequest { service: service.into() })
            .await
            .expect("health check")
            .into_inner()
            .status;
        assert_eq!(status, tonic_health::pb::health_check_response::ServingStatus::Serving as i32, "{service:?}");
    }
}
both!(reflection_lists_the_service_and_health_serves);

async fn metrics_count_verify_results(kind: DbKind) {
    let env = Env::start(kind).await;
    env.verify(&env.auth.admin_token).await.expect("valid");
    let _ = env.verify("garbage").await;
    let _ = env.verify("").await;
    let metrics = http_response(env.auth.metrics_addr, "GET", "/metrics", None).await.expect("metrics");
    assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
    assert!(metrics.contains("switchboard_auth_verify_total{result=\"ok\"} 1"), "{metrics}");
    assert!(metrics.contains("switchboard_auth_verify_total{result=\"token_invalid\"} 1"), "{metrics}");
    assert!(metrics.contains("switchboard_auth_verify_total{result=\"token_missing\"} 1"), "{metrics}");
    assert!(metrics.contains("switchboard_auth_verify_duration_seconds_count 3"), "{metrics}");
    assert!(
        metrics.contains("switchboard_auth_login_total{result=\"ok\"} 1"),
        "the harness logged the admin in: {metrics}"
    );
    assert!(
        http_response(env.auth.metrics_addr, "GET", "/readyz", None).await.expect("readyz").starts_with("HTTP/1.1 200")
    );
}
both!(metrics_count_verify_results);

async fn stops_cleanly_and_releases_its_port(kind: DbKind) {
    let env = Env::start(kind).await;
    let Env { auth, db, nats } = env;
    let addr = auth.grpc_addr;
    auth.stop().await.expect("clean stop");
    let refused = tokio::net::TcpStream::connect(addr).await;
    assert!(refused.is_err(), "nothing listens after stop");
    drop((db, nats));
}
both!(stops_cleanly_and_releases_its_port);

async fn stops_when_nats_is_gone(kind: DbKind) {
    let Env { auth, db, mut nats } = Env::start(kind).await;
    nats.kill();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    tokio::time::timeout(std::time::Duration::from_secs(60), auth.stop())
        .await
        .expect("auth stopped instead of waiting for NATS forever")
        .expect("clean stop");
    drop(db);
}
both!(stops_when_nats_is_gone);
