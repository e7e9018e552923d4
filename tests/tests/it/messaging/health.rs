//! Operational endpoints: gRPC health and reflection, `/readyz`, and a clean stop.

use tonic::transport::Channel;

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_reflection_are_served() {
    let env = Env::start(DbKind::Sqlite).await;
    let messaging = env.messaging().await;
    let channel = Channel::from_shared(messaging.grpc_url()).expect("uri").connect().await.expect("connect");
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    let status = health
        .check(tonic_health::pb::HealthCheckRequest { service: "switchboard.messaging.v1.MessagingService".into() })
        .await
        .expect("health check")
        .into_inner();
    assert_eq!(status.status(), tonic_health::pb::health_check_response::ServingStatus::Serving);

    let names = sb_tests::grpc::list_services(channel).await.expect("reflection");
    assert!(names.iter().any(|name| name == "switchboard.messaging.v1.MessagingService"));
    assert!(names.iter().any(|name| name == "grpc.health.v1.Health"), "{names:?}");
    assert!(
        !names.iter().any(|name| name.contains("auth") || name.contains("presence")),
        "only what messaging serves: {names:?}"
    );

    let (status, body) = sb_tests::http::http_get(messaging.metrics_addr, "/readyz").await.expect("readyz");
    assert!(status.contains(" 200"), "{status} {body}");
    messaging.stop().await.expect("stops cleanly");
}

/// With NATS gone for good, a stop must still end: the final flush and
/// drain of the NATS connection are bounded instead of waiting for a
/// reconnect that never comes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stops_when_nats_is_gone() {
    let mut env = Env::start(DbKind::Sqlite).await;
    let messaging = env.messaging().await;
    env.nats.kill();
    tokio::time::sleep(Duration::from_millis(300)).await;
    tokio::time::timeout(Duration::from_secs(60), messaging.stop())
        .await
        .expect("messaging stopped instead of waiting for NATS forever")
        .expect("stops without an error");
}
