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

    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let mut reflection = ServerReflectionClient::new(channel);
    let request = tonic_reflection::pb::v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = reflection
        .server_reflection_info(futures_util::stream::iter([request]))
        .await
        .expect("reflection")
        .into_inner();
    let response = responses.message().await.expect("reflection answer").expect("one answer");
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected reflection answer {response:?}");
    };
    assert!(list.service.iter().any(|service| service.name == "switchboard.messaging.v1.MessagingService"));

    let (status, body) = sb_tests::messaging::http_get(messaging.metrics_addr, "/readyz").await.expect("readyz");
    assert!(status.contains(" 200"), "{status} {body}");
    messaging.stop().await.expect("stops cleanly");
}
