//! Reflection `v1alpha` on every gRPC server (auth, presence, messaging; the
//! edge serves no gRPC): a client that speaks only v1alpha lists the services
//! and resolves the file descriptor of each, as it does over v1.

use sb_tests::DbKind;
use sb_tests::stack::TestStack;

async fn channel(uri: String) -> tonic::transport::Channel {
    tonic::transport::Endpoint::from_shared(uri).expect("uri").connect().await.expect("connect")
}

#[tokio::test]
async fn every_grpc_server_answers_reflection_v1alpha_and_v1() {
    let stack = TestStack::start(DbKind::Sqlite).await.expect("start stack");
    let servers = [
        (stack.auth.uri(), vec!["switchboard.auth.v1.AuthService"]),
        (
            format!("http://{}", stack.presence.grpc_addr),
            vec!["switchboard.presence.v1.PresenceService", "switchboard.edge.v1.EdgeControl"],
        ),
        (stack.messaging.grpc_url(), vec!["switchboard.messaging.v1.MessagingService"]),
    ];
    for (uri, own) in servers {
        let described = sb_tests::grpc::describe_services_v1alpha(channel(uri.clone()).await).await.expect("v1alpha");
        let names: Vec<&str> = described.iter().map(|(name, _)| name.as_str()).collect();
        for wanted in own.iter().copied().chain([
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection",
        ]) {
            assert!(names.contains(&wanted), "{uri} lists {wanted} over v1alpha: {names:?}");
        }
        assert_eq!(names.len(), own.len() + 3, "{uri} lists only what it serves: {names:?}");
        for (service, files) in &described {
            assert!(!files.is_empty(), "{uri}: no file for {service}");
        }
        let v1 = sb_tests::grpc::list_services(channel(uri.clone()).await).await.expect("v1");
        let mut v1: Vec<&str> = v1.iter().map(String::as_str).collect();
        let mut alpha = names.clone();
        v1.sort();
        alpha.sort();
        assert_eq!(v1, alpha, "{uri}: v1 and v1alpha list the same services");
    }
    stack.stop().await.expect("stop stack");
}
