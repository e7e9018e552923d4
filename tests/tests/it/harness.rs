//! The harness itself: a private nats-server and fresh databases work.

use sb_tests::{DbKind, NatsServer, TestDatabase};
use sqlx::Connection as _;

#[tokio::test]
async fn nats_server_starts_with_jetstream_and_restarts_on_same_port() {
    let server = NatsServer::start().await.expect("start nats-server");
    let bus = sb_events::bus::Bus::connect(&sb_config::NatsArgs::for_url(server.url()), "harness-test")
        .await
        .expect("connect");
    bus.ensure_ingest_stream(1).await.expect("jetstream available");
    let url = server.url().to_owned();
    let server = server.restart().await.expect("restart");
    assert_eq!(server.url(), url);
}

#[tokio::test]
async fn fresh_databases_on_both_engines() {
    for kind in [DbKind::Postgres, DbKind::Sqlite] {
        let db = TestDatabase::create(kind).await.expect("create database");
        sqlx::any::install_default_drivers();
        let url = if kind == DbKind::Sqlite { format!("{}?mode=rwc", db.url) } else { db.url.clone() };
        let mut conn = sqlx::AnyConnection::connect(&url).await.expect("connect to the test database");
        sqlx::query("SELECT 1").execute(&mut conn).await.expect("query");
    }
}
