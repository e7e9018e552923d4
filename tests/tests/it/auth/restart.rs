//! Auth across a PostgreSQL restart: the pooled connections the restart cut
//! must not each fail one request. Before, the first VerifyToken on every
//! pooled connection answered UNAVAILABLE, so a reconnect burst right after a
//! database restart saw `authentication unavailable` at the edge (found by
//! `make test-cluster`: a drain after the PostgreSQL fault).

use futures_util::future::join_all;
use sb_proto::auth::v1 as pb;
use sb_tests::{NatsServer, PrivatePostgres, TestDatabase};

const CONCURRENT: usize = 16;

async fn verify_concurrently(auth: &sb_tests::auth::AuthHandle, token: &str) -> Vec<Result<(), tonic::Status>> {
    join_all((0..CONCURRENT).map(|_| async {
        let mut client = auth.grpc().await.expect("connect to auth");
        client.verify_token(pb::VerifyTokenRequest { token: token.to_owned() }).await.map(|_| ())
    }))
    .await
}

#[tokio::test]
async fn verify_token_is_answered_on_the_first_try_after_a_postgres_restart() {
    let mut server = PrivatePostgres::start(None).await.expect("a private PostgreSQL");
    let db = TestDatabase::create_on(&server.admin_url("")).await.expect("a database on it");
    let nats = NatsServer::start().await.expect("nats-server");
    let auth = sb_tests::auth::spawn_auth(&db, nats.url()).await.expect("auth");
    let (_, token) = auth.create_user("ada@example.test", pb::Role::User).await.expect("a user");
    // Concurrent checks fill the pool with several connections.
    for result in verify_concurrently(&auth, &token).await {
        result.expect("verify before the restart");
    }

    server.restart().await.expect("restart PostgreSQL (immediate stop, start)");
    let failed: Vec<tonic::Status> =
        verify_concurrently(&auth, &token).await.into_iter().filter_map(Result::err).collect();
    assert!(failed.is_empty(), "{} of {CONCURRENT} checks failed after the restart: {failed:?}", failed.len());
    for _ in 0..CONCURRENT {
        auth.grpc()
            .await
            .expect("connect")
            .verify_token(pb::VerifyTokenRequest { token: token.clone() })
            .await
            .expect("one by one after the restart");
    }
    auth.stop().await.expect("auth stops");
    drop(db);
    drop(server);
}
