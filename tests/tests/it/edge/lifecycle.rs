//! Limits and the edge's life: oversized frames, kicks from the control
//! subject, graceful shutdown.

use std::time::Duration;

use sb_events::control::{EdgeCommand, EdgeCommandDone};
use sb_tests::DbKind;
use sb_tests::edge::TestClient;
use sb_tests::stack::{StackOptions, TestStack};
use serde_json::json;

#[tokio::test]
async fn a_frame_over_the_limit_closes_only_that_connection() {
    let options = StackOptions::new(DbKind::Sqlite).edges_with(|config| config.ws_max_message_size = 16 * 1024);
    let stack = TestStack::start_with(options).await.expect("start stack");
    let alice = stack.user("alice").await.expect("alice");
    let bob = stack.user("bob").await.expect("bob");
    let a = TestClient::connect_ws(stack.url(), &alice.token).await.expect("alice");
    let b = TestClient::connect_ws(stack.url(), &bob.token).await.expect("bob");

    a.emit("send_message", json!({"message": "x".repeat(32 * 1024)})).await.expect("emit");
    a.closed().await.expect("the oversized frame closes alice's connection");
    b.ack("ping", json!({})).await.expect("bob carries on");
    stack.stop().await.expect("stop stack");
}

#[tokio::test]
async fn kick_user_on_the_control_subject_disconnects_every_socket_of_the_user() {
    let options = StackOptions { edges: 2, ..StackOptions::new(DbKind::Sqlite) };
    let stack = TestStack::start_with(options).await.expect("start stack");
    let alice = stack.user("alice").await.expect("alice");
    let bob = stack.user("bob").await.expect("bob");
    let a1 = TestClient::connect_ws(&stack.edges[0].url, &alice.token).await.expect("alice on A");
    let a2 = TestClient::connect_ws(&stack.edges[1].url, &alice.token).await.expect("alice on B");
    let b = TestClient::connect_ws(&stack.edges[1].url, &bob.token).await.expect("bob on B");

    let bus =
        sb_events::bus::Bus::connect(&sb_config::NatsArgs::for_url(stack.nats_url()), "kick-test").await.expect("bus");
    let command = EdgeCommand::KickUser { user_id: alice.id.clone(), reason: "kicked by an admin".to_owned() };
    for edge in &stack.edges {
        let edge_id = sb_events::EdgeId::parse(edge.edge_id.clone()).expect("edge id");
        let done: EdgeCommandDone = bus.request(bus.subjects.control_edge(&edge_id), &command).await.expect("kick");
        assert_eq!(done.sockets, 1, "{done:?}");
    }
    for client in [&a1, &a2] {
        let exception = client.event("exception").await.expect("exception");
        assert_eq!(exception["message"], "kicked by an admin");
        client.closed().await.expect("kicked");
    }
    b.ack("ping", json!({})).await.expect("bob stays");
    stack.stop().await.expect("stop stack");
}

#[tokio::test]
async fn graceful_stop_disconnects_sockets_and_tells_presence() {
    let options = StackOptions { edges: 2, ..StackOptions::new(DbKind::Sqlite) };
    let mut stack = TestStack::start_with(options).await.expect("start stack");
    let alice = stack.user("alice").await.expect("alice");
    let bob = stack.user("bob").await.expect("bob");
    let a = TestClient::connect_ws(&stack.edges[0].url, &alice.token).await.expect("alice on A");
    let b = TestClient::connect_ws(&stack.edges[1].url, &bob.token).await.expect("bob on B");
    a.ack("join_room", json!({"room": "lobby"})).await.expect("alice joins");
    b.ack("join_room", json!({"room": "lobby"})).await.expect("bob joins");
    a.event_where("user_joined", |v| v["user"]["id"] == bob.id).await.expect("user_joined for bob");

    let edge_b = stack.edges.pop().expect("edge B");
    let edge_b_addr = edge_b.addr;
    tokio::time::timeout(Duration::from_secs(15), edge_b.stop()).await.expect("stops in time").expect("stops cleanly");
    // Nothing listens there any more.
    assert!(tokio::net::TcpStream::connect(edge_b_addr).await.is_err());
    a.event_where("user_left", |v| v["user"]["id"] == bob.id).await.expect("user_left for bob");
    a.event_where("user_offline", |v| v["user"]["id"] == bob.id).await.expect("user_offline for bob");
    let online = a.ack("get_online_users", json!({})).await.expect("online users");
    let ids: Vec<&str> = online["users"].as_array().expect("users").iter().filter_map(|u| u["id"].as_str()).collect();
    assert_eq!(ids, vec![alice.id.as_str()]);
    stack.stop().await.expect("stop stack");
}
