//! Presence with real edges: two edges (socket.io over `rust_socketio`),
//! two presence replicas, auth and messaging on one nats-server.

use std::time::Duration;

use sb_tests::CrashableRuntime;
use sb_tests::DbKind;
use sb_tests::edge::{TestClient, edge_config};
use sb_tests::presence::{PresenceReplica, replica_config};
use sb_tests::stack::{StackOptions, TestStack, TestUser};
use serde_json::{Value, json};

async fn stack_with_two_edges_and_two_replicas() -> (TestStack, PresenceReplica) {
    let stack =
        TestStack::start_with(StackOptions { edges: 2, ..StackOptions::new(DbKind::Sqlite) }).await.expect("stack");
    let second = PresenceReplica::start(replica_config(stack.nats_url(), &stack.auth.uri()))
        .await
        .expect("second presence replica");
    (stack, second)
}

fn about(user: &TestUser) -> impl Fn(&Value) -> bool + '_ {
    move |data: &Value| data["user"]["id"] == user.id.as_str()
}

/// Connects `user` to `edge` and waits until `observer` saw its `user_online`:
/// everything presence published before it has reached the observer.
async fn barrier(stack: &TestStack, edge: usize, observer: &TestClient, name: &str) -> TestClient {
    let user = stack.user(name).await.expect("barrier user");
    let client = TestClient::connect_ws(&stack.edges[edge].url, &user.token).await.expect("barrier connects");
    observer.event_where("user_online", about(&user)).await.expect("barrier user_online");
    client
}

fn count(events: &[(String, Value)], event: &str, user: &TestUser) -> usize {
    events.iter().filter(|(name, data)| name == event && data["user"]["id"] == user.id.as_str()).count()
}

#[tokio::test]
async fn user_on_two_real_edges_is_online_once_and_offline_once_with_two_replicas() {
    let (stack, second) = stack_with_two_edges_and_two_replicas().await;
    let watcher = stack.user("watcher").await.expect("user");
    let observer = TestClient::connect_ws(&stack.edges[0].url, &watcher.token).await.expect("observer");
    let frank = stack.user("frank").await.expect("user");

    let first_socket = TestClient::connect_ws(&stack.edges[0].url, &frank.token).await.expect("frank on edge 0");
    let online = observer.event_where("user_online", about(&frank)).await.expect("user_online");
    assert_eq!(online["user"], json!({"id": frank.id, "email": frank.email}));
    assert!(online["timestamp"].as_str().is_some_and(|t| t.ends_with('Z') && t.len() == 24), "{online}");
    let second_socket = TestClient::connect_ws(&stack.edges[1].url, &frank.token).await.expect("frank on edge 1");
    second_socket.ack("ping", json!({})).await.expect("ping");
    first_socket.disconnect().await;
    let _b1 = barrier(&stack, 1, &observer, "barrier-one").await;
    let events = observer.drain_events().await;
    assert_eq!(count(&events, "user_online", &frank), 0, "announced once");
    assert_eq!(count(&events, "user_offline", &frank), 0, "still online on edge 1");

    second_socket.disconnect().await;
    let offline = observer.event_where("user_offline", about(&frank)).await.expect("user_offline");
    assert_eq!(offline["user"], json!({"id": frank.id, "email": frank.email}));
    let _b2 = barrier(&stack, 0, &observer, "barrier-two").await;
    let events = observer.drain_events().await;
    assert_eq!(count(&events, "user_offline", &frank), 0, "offline once");
    assert_eq!(count(&events, "user_online", &frank), 0);
    second.stop().await;
    stack.stop().await.expect("stop");
}

#[tokio::test]
async fn get_online_users_and_join_acks_are_cluster_wide() {
    let (stack, second) = stack_with_two_edges_and_two_replicas().await;
    let mut users = Vec::new();
    let mut clients = Vec::new();
    for i in 0..5 {
        let user = stack.user(&format!("grace{i}")).await.expect("user");
        let client = TestClient::connect_ws(&stack.edges[i % 2].url, &user.token).await.expect("connect");
        client.ack("join_room", json!({"room": "lobby"})).await.expect("join");
        users.push(user);
        clients.push(client);
    }
    // The last join's ack already lists every member, on both edges.
    let asker_user = stack.user("asker").await.expect("user");
    let asker = TestClient::connect_ws(&stack.edges[1].url, &asker_user.token).await.expect("asker");
    let joined = asker.ack("join_room", json!({"room": "lobby"})).await.expect("join ack");
    let members = sb_tests::edge::sorted_ids(&joined["members"]);
    let mut expected: Vec<String> = users.iter().map(|u| u.id.clone()).chain([asker_user.id.clone()]).collect();
    expected.sort();
    assert_eq!(members, expected);

    let mut paged = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut request = json!({"limit": 2});
        if let Some(cursor) = &cursor {
            request["cursor"] = json!(cursor);
        }
        let page = asker.ack("get_online_users", request).await.expect("page");
        assert!(page["users"].as_array().expect("users").len() <= 2, "{page}");
        assert_eq!(page["count"], 6);
        paged
            .extend(page["users"].as_array().expect("users").iter().map(|u| u["id"].as_str().unwrap_or("").to_owned()));
        match page["cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    paged.sort();
    assert_eq!(paged, expected, "pages cover every online user on both edges once");
    second.stop().await;
    stack.stop().await.expect("stop");
}

#[tokio::test]
async fn killed_edge_has_its_users_offline_and_out_of_their_rooms_within_15_seconds() {
    let (stack, second) = stack_with_two_edges_and_two_replicas().await;
    let watcher = stack.user("watcher").await.expect("user");
    let observer = TestClient::connect_ws(&stack.edges[0].url, &watcher.token).await.expect("observer");
    observer.ack("join_room", json!({"room": "r"})).await.expect("observer joins");

    // A third edge on a runtime of its own, so it can die like kill -9.
    let runtime = CrashableRuntime::new("doomed-edge").expect("runtime");
    let config = edge_config(stack.nats_url(), &stack.auth.uri());
    let app = runtime.run(sb_edge::App::build(config)).await.expect("runtime").expect("build edge");
    let url = format!("http://{}", app.local_addr());
    runtime.spawn(app.run(std::future::pending::<()>()));

    let ivan = stack.user("ivan").await.expect("user");
    let doomed = TestClient::connect_ws(&url, &ivan.token).await.expect("ivan on the doomed edge");
    doomed.ack("join_room", json!({"room": "r"})).await.expect("ivan joins");
    observer.event_where("user_joined", about(&ivan)).await.expect("user_joined");

    let killed = std::time::Instant::now();
    runtime.crash();
    // The contract's bound (DESIGN §3): sessions of a dead edge are removed within 15 s.
    let deadline = killed + Duration::from_secs(15);
    let offline = loop {
        if let Ok(offline) = observer.event_where("user_offline", about(&ivan)).await {
            break offline;
        }
        assert!(std::time::Instant::now() < deadline, "no user_offline within 15 s of the kill");
    };
    let left = observer.event_where("user_left", about(&ivan)).await.expect("user_left");
    assert_eq!(left["room"], "r");
    assert!(std::time::Instant::now() < deadline, "removed within 15 s of the kill");
    eprintln!("real edge kill to user_offline: {:?}", killed.elapsed());
    assert_eq!(offline["user"]["id"], ivan.id.as_str());
    second.stop().await;
    stack.stop().await.expect("stop");
}
