//! The login lock is one count for all auth replicas (through NATS), with
//! locks that double from 1 s: two replicas on one database and one NATS.

use std::time::Duration;

use sb_proto::auth::v1 as pb;
use sb_tests::auth::{AuthHandle, auth_config, spawn_auth_with};
use sb_tests::{DbKind, NatsServer, TestDatabase};
use tonic::Code;

fn login(email: &str, password: &str) -> pb::LoginRequest {
    pb::LoginRequest { email: email.into(), password: password.into() }
}

async fn attempt(auth: &AuthHandle, password: &str) -> Result<(), tonic::Status> {
    auth.grpc().await.expect("connect to auth").login(login("target@example.test", password)).await.map(drop)
}

#[tokio::test]
async fn replicas_share_one_count_and_locks_double() {
    let nats = NatsServer::start().await.expect("nats-server");
    let db = TestDatabase::create(DbKind::Sqlite).await.expect("database");
    let secret = "login-lock-test-secret";
    let config = || {
        let mut config = auth_config(&db.url, nats.url(), Some(secret));
        config.login_max_failures = 4;
        config
    };
    let first = spawn_auth_with(config()).await.expect("first replica");
    let second = spawn_auth_with(config()).await.expect("second replica");
    first.create_user("target@example.test", pb::Role::User).await.expect("create");
    let replicas = [&first, &second];

    // Four failures, alternating replicas: each replica saw two, yet the
    // fourth locks the email on both.
    for n in 0..4 {
        let status = attempt(replicas[n % 2], "wrong").await.expect_err("wrong password");
        assert_eq!(status.code(), Code::Unauthenticated, "failure {n}: {status:?}");
    }
    for replica in replicas {
        let status = attempt(replica, "user-password").await.expect_err("locked on every replica");
        assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
        assert!(status.message().starts_with("too many failed logins for this email; try again in 1 s"), "{status:?}");
    }
    // The first lock lasts a second; the next failure locks for two.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let status = attempt(&second, "wrong").await.expect_err("wrong password after the lock");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    let status = attempt(&first, "user-password").await.expect_err("locked again");
    assert!(status.message().starts_with("too many failed logins for this email; try again in 2 s"), "{status:?}");
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    // The owner gets in after the delay, and the success clears the count everywhere.
    attempt(&first, "user-password").await.expect("login after the delay");
    let status = attempt(&second, "wrong").await.expect_err("wrong password");
    assert_eq!(status.code(), Code::Unauthenticated, "a failure after the success is the first of a new count");
    attempt(&second, "user-password").await.expect("not locked");

    // Concurrent failures on both replicas are all counted (compare-and-set).
    let failures = (0..4).map(|n| attempt(replicas[n % 2], "wrong"));
    for result in futures_util::future::join_all(failures).await {
        assert_eq!(result.expect_err("wrong").code(), Code::Unauthenticated);
    }
    let status = attempt(&first, "user-password").await.expect_err("four concurrent failures lock");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");

    first.stop().await.expect("stop");
    second.stop().await.expect("stop");
}
