//! `PresenceService` over gRPC: admin-only, against a real auth service;
//! health, reflection and metrics.

use std::time::Duration;

use sb_proto::auth::v1::Role;
use sb_proto::presence::v1 as pb;
use sb_proto::presence::v1::presence_service_client::PresenceServiceClient;
use sb_tests::auth::{AuthHandle, spawn_auth};
use sb_tests::http::http_response;
use sb_tests::presence::{PresenceReplica, SimEdge, replica_config, user};
use sb_tests::{DbKind, NatsServer, TestDatabase};
use tonic::Code;
use tonic::transport::Channel;

async fn channel(replica: &PresenceReplica) -> Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{}", replica.grpc_addr))
        .expect("uri")
        .connect()
        .await
        .expect("connect to presence")
}

#[tokio::test]
async fn admin_reads_sessions_rooms_and_stats_and_others_are_refused() {
    let nats = NatsServer::start().await.expect("nats");
    let db = TestDatabase::create(DbKind::Sqlite).await.expect("database");
    let auth = spawn_auth(&db, nats.url()).await.expect("auth");
    let (_member, user_token) = auth.create_user("member@switchboard.test", Role::User).await.expect("user");
    let replica =
        PresenceReplica::start(replica_config(nats.url(), &auth.grpc_addr.to_string())).await.expect("presence");
    let edge_a = SimEdge::start(nats.url(), "edge-a", Duration::from_millis(300)).await.expect("edge a");
    let edge_b = SimEdge::start(nats.url(), "edge-b", Duration::from_millis(300)).await.expect("edge b");
    edge_a.connect("a1", &user("alice"));
    edge_b.connect("b1", &user("alice"));
    edge_a.join("a1", "lobby").await.expect("join");
    edge_b.join("b1", "games").await.expect("join");
    for i in 0..5 {
        edge_b.connect(&format!("x{i}"), &user(&format!("user{i}")));
        edge_b.join(&format!("x{i}"), "lobby").await.expect("join");
    }
    let mut client = PresenceServiceClient::new(channel(&replica).await);
    sb_tests::wait_until("presence applied everything", Duration::from_secs(20), || {
        let mut client = client.clone();
        let request = AuthHandle::with_token(pb::StatsRequest {}, &auth.admin_token);
        async move { client.stats(request).await.ok().filter(|s| s.get_ref().sockets == 7).map(|_| ()) }
    })
    .await;

    // Who may call.
    let status = client.stats(pb::StatsRequest {}).await.expect_err("no token");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    let status = client.stats(AuthHandle::with_token(pb::StatsRequest {}, "not-a-jwt")).await.expect_err("bad token");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    let status = client.stats(AuthHandle::with_token(pb::StatsRequest {}, &user_token)).await.expect_err("not admin");
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");

    let stats = client.stats(auth.as_admin(pb::StatsRequest {})).await.expect("stats").into_inner();
    assert_eq!((stats.users, stats.sockets, stats.rooms), (6, 7, 2));
    let per_edge: Vec<(String, u64, u64)> =
        stats.edges.iter().map(|e| (e.edge_id.clone(), e.sockets, e.users)).collect();
    assert_eq!(per_edge, [("edge-a".to_owned(), 1, 1), ("edge-b".to_owned(), 6, 6)]);
    assert!(stats.edges.iter().all(|e| e.last_heartbeat_ms > 0));

    let alice =
        client.get_user(auth.as_admin(pb::GetUserRequest { id: "alice".into() })).await.expect("alice").into_inner();
    assert!(alice.online);
    assert_eq!(alice.user.as_ref().map(|u| u.email.as_str()), Some("alice@example.com"));
    assert_eq!(alice.rooms, ["games", "lobby"]);
    let sessions: Vec<(String, String, Vec<String>)> =
        alice.sessions.iter().map(|s| (s.edge_id.clone(), s.socket_id.clone(), s.rooms.clone())).collect();
    assert_eq!(
        sessions,
        [
            ("edge-a".to_owned(), "a1".to_owned(), vec!["lobby".to_owned()]),
            ("edge-b".to_owned(), "b1".to_owned(), vec!["games".to_owned()])
        ]
    );
    let nobody =
        client.get_user(auth.as_admin(pb::GetUserRequest { id: "nobody".into() })).await.expect("offline").into_inner();
    assert!(!nobody.online && nobody.sessions.is_empty());

    let mut members = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = client
            .room_members(auth.as_admin(pb::RoomMembersRequest { room: "lobby".into(), limit: 4, cursor }))
            .await
            .expect("members")
            .into_inner();
        assert_eq!(page.count, 6);
        members.extend(page.members.into_iter().map(|m| m.id));
        if page.next_cursor.is_empty() {
            break;
        }
        cursor = page.next_cursor;
    }
    assert_eq!(members, ["alice", "user0", "user1", "user2", "user3", "user4"]);

    let online = client
        .list_online(auth.as_admin(pb::ListOnlineRequest { limit: 2, cursor: String::new() }))
        .await
        .expect("list")
        .into_inner();
    assert_eq!((online.users.len(), online.count), (2, 6));
    assert!(!online.next_cursor.is_empty());

    // Bad arguments name the field.
    let status = client
        .list_online(auth.as_admin(pb::ListOnlineRequest { limit: 5000, cursor: String::new() }))
        .await
        .expect_err("limit");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("limit"), "{status:?}");
    let status = client
        .list_online(auth.as_admin(pb::ListOnlineRequest { limit: 10, cursor: "%%%".into() }))
        .await
        .expect_err("cursor");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("cursor"), "{status:?}");
    let status = client
        .room_members(auth.as_admin(pb::RoomMembersRequest { room: String::new(), limit: 0, cursor: String::new() }))
        .await
        .expect_err("room");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("room"), "{status:?}");
    let status = client.get_user(auth.as_admin(pb::GetUserRequest { id: " ".into() })).await.expect_err("id");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("id"), "{status:?}");

    let metrics = http_response(replica.metrics_addr, "GET", "/metrics", None).await.expect("metrics");
    assert!(metrics.contains("switchboard_presence_users 6"), "{metrics}");
    assert!(metrics.contains("switchboard_presence_sockets 7"), "{metrics}");
    assert!(
        http_response(replica.metrics_addr, "GET", "/readyz", None).await.expect("readyz").starts_with("HTTP/1.1 200")
    );
    replica.stop().await;
}

#[tokio::test]
async fn reflection_and_health_serve() {
    let nats = NatsServer::start().await.expect("nats");
    let replica = PresenceReplica::start(replica_config(nats.url(), "127.0.0.1:9")).await.expect("presence");
    let names = sb_tests::grpc::list_services(channel(&replica).await).await.expect("reflection");
    assert!(names.contains(&"switchboard.presence.v1.PresenceService".to_owned()), "{names:?}");
    assert!(names.contains(&"grpc.health.v1.Health".to_owned()), "{names:?}");
    assert!(
        !names.iter().any(|name| name.contains("auth") || name.contains("messaging")),
        "only what presence serves: {names:?}"
    );

    let mut health = tonic_health::pb::health_client::HealthClient::new(channel(&replica).await);
    let status = health
        .check(tonic_health::pb::HealthCheckRequest { service: "switchboard.presence.v1.PresenceService".into() })
        .await
        .expect("health check")
        .into_inner()
        .status;
    assert_eq!(status, tonic_health::pb::health_check_response::ServingStatus::Serving as i32);

    // Auth unreachable: an admin call cannot be checked, so it is refused as unavailable.
    let mut client = PresenceServiceClient::new(channel(&replica).await);
    let status = client
        .stats(sb_tests::auth::AuthHandle::with_token(pb::StatsRequest {}, "a.b.c"))
        .await
        .expect_err("auth down");
    assert!(matches!(status.code(), Code::Unavailable | Code::Unauthenticated), "{status:?}");
    replica.stop().await;
}
