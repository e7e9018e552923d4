//! PostgreSQL over TLS: a private PostgreSQL 15 with a certificate of the
//! test's CA that accepts TLS connections only; auth and messaging work over
//! `sslmode=verify-full` with that CA and refuse a server their CA did not sign.

use sb_tests::edge::TestClient;
use sb_tests::stack::{StackOptions, TestStack};
use sb_tests::tls::TestCa;
use sb_tests::{DbKind, PrivatePostgres, TestDatabase};
use serde_json::json;
use sqlx::Connection as _;

use super::chain;

#[tokio::test]
async fn auth_and_messaging_over_verify_full_and_a_wrong_ca_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = TestCa::new(dir.path(), "pg").expect("CA");
    let cert = ca.server_cert("postgres").expect("server certificate");
    let server = PrivatePostgres::start(Some(&cert)).await.expect("start a private PostgreSQL with ssl=on");
    let verify_full = format!("?sslmode=verify-full&sslrootcert={}", ca.ca_file.display());

    // The connection really is TLS.
    let mut admin = sqlx::PgConnection::connect(&server.admin_url(&verify_full)).await.expect("verify-full connects");
    let ssl: bool = sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .fetch_one(&mut admin)
        .await
        .expect("pg_stat_ssl");
    assert!(ssl, "the connection uses TLS");
    // The server takes TLS only (hostssl), so sslmode=disable is refused.
    assert!(sqlx::PgConnection::connect(&server.admin_url("?sslmode=disable")).await.is_err(), "plain text refused");

    // auth and messaging store over verify-full.
    let mut options = StackOptions::new(DbKind::Postgres);
    options.postgres_admin_url = Some(server.admin_url(&verify_full));
    let stack = TestStack::start_with(options).await.expect("the stack starts on PostgreSQL over TLS");
    let alice = stack.user("alice").await.expect("auth stores a user over TLS");
    let client = TestClient::connect_ws(stack.url(), &alice.token).await.expect("alice connects");
    client.ack("join_room", json!({"room": "tls"})).await.expect("join");
    let sent = client.ack("send_message", json!({"room": "tls", "message": "over tls"})).await.expect("send");
    sb_tests::wait_until("messaging stored the message", std::time::Duration::from_secs(10), || async {
        let history = client.ack("get_history", json!({"room": "tls"})).await.ok()?;
        history["messages"].as_array()?.iter().any(|m| m["id"] == sent["id"]).then_some(())
    })
    .await;
    client.disconnect().await;
    stack.stop().await.expect("stop");

    // A CA that did not sign the server's certificate: connecting fails, and auth does not start.
    let other = TestCa::new(dir.path(), "other").expect("another CA");
    let wrong_ca = format!("?sslmode=verify-full&sslrootcert={}", other.ca_file.display());
    let error = sqlx::PgConnection::connect(&server.admin_url(&wrong_ca)).await.expect_err("wrong CA refused");
    assert!(chain(&error).to_lowercase().contains("certificate"), "says why: {}", chain(&error));
    let db = TestDatabase::create_on(&server.admin_url(&verify_full)).await.expect("a database");
    let wrong_url = db.url.replace(&verify_full, &wrong_ca);
    let nats = sb_tests::NatsServer::start().await.expect("nats");
    let config = sb_tests::auth::auth_config(&wrong_url, nats.url(), Some("a-secret-of-at-least-32-bytes-long!!"));
    let error = sb_auth::App::build(config).await.err().expect("auth refuses a server its CA did not sign");
    assert!(chain(&error).to_lowercase().contains("certificate"), "{}", chain(&error));
    drop(db);
    drop(server);
}
