//! Deliveries across edges, offline private messages, and the
//! ack-after-PubAck rule.

use std::time::Duration;

use sb_tests::DbKind;
use sb_tests::edge::TestClient;
use sb_tests::stack::{StackOptions, TestStack};
use serde_json::json;

#[tokio::test]
async fn room_and_private_messages_cross_edges() {
    let mut options = StackOptions::new(DbKind::Sqlite);
    options.edges = 2;
    let stack = TestStack::start_with(options).await.expect("start stack");
    let (edge_a, edge_b) = (&stack.edges[0].url, &stack.edges[1].url);
    let alice = stack.user("alice").await.expect("alice");
    let bob = stack.user("bob").await.expect("bob");
    let a = TestClient::connect_ws(edge_a, &alice.token).await.expect("alice on edge A");
    let b = TestClient::connect_ws(edge_b, &bob.token).await.expect("bob on edge B");

    a.ack("join_room", json!({"room": "lobby"})).await.expect("alice joins");
    let joined = b.ack("join_room", json!({"room": "lobby"})).await.expect("bob joins");
    assert_eq!(joined["members"].as_array().map(Vec::len), Some(2), "members cluster-wide: {joined}");
    a.event_where("user_joined", |v| v["user"]["id"] == bob.id).await.expect("user_joined across edges");

    let sent = b.ack("send_message", json!({"room": "lobby", "message": "from B"})).await.expect("send on B");
    let message = a.event_where("new_message", |v| v["id"] == sent["id"]).await.expect("room message on A");
    assert_eq!(message["message"], "from B");

    let sent = a.ack("send_message", json!({"to": bob.id, "message": "A to B"})).await.expect("private on A");
    let message = b.event_where("new_message", |v| v["id"] == sent["id"]).await.expect("private message on B");
    assert_eq!(message["to"], bob.id.as_str());

    // A second socket of alice on edge B sees her private message too (the sender's other sockets).
    let a2 = TestClient::connect_ws(edge_b, &alice.token).await.expect("alice on edge B");
    let sent = a.ack("send_message", json!({"to": bob.id, "message": "again"})).await.expect("private");
    a2.event_where("new_message", |v| v["id"] == sent["id"]).await.expect("sender's other socket");

    b.ack("leave_room", json!({"room": "lobby"})).await.expect("bob leaves");
    a.event_where("user_left", |v| v["user"]["id"] == bob.id).await.expect("user_left across edges");
    stack.stop().await.expect("stop stack");
}

#[tokio::test]
async fn private_messages_to_an_offline_user_arrive_in_order_on_connect() {
    let stack = TestStack::start(DbKind::Sqlite).await.expect("start stack");
    let alice = stack.user("alice").await.expect("alice");
    let bob = stack.user("bob").await.expect("bob");
    let a = TestClient::connect_ws(stack.url(), &alice.token).await.expect("alice connects");
    let mut ids = Vec::new();
    for i in 0..20 {
        let sent = a.ack("send_message", json!({"to": bob.id, "message": format!("offline {i}")})).await.expect("send");
        ids.push(sent["id"].as_str().expect("id").to_owned());
    }
    // Wait until messaging stored them (history shows them) before bob connects.
    sb_tests::wait_until("messages stored", Duration::from_secs(10), || async {
        let history = a.ack("get_history", json!({"with": bob.id, "limit": 100})).await.ok()?;
        (history["messages"].as_array()?.len() == ids.len()).then_some(())
    })
    .await;

    let b = TestClient::connect_ws(stack.url(), &bob.token).await.expect("bob connects");
    for (i, id) in ids.iter().enumerate() {
        let message = b.event("new_message").await.expect("pending message");
        assert_eq!(&message["id"], id, "message {i} out of order");
    }
    // Delivered once: a second socket of bob does not get them again; its
    // first message is a new one.
    let b2 = TestClient::connect_ws(stack.url(), &bob.token).await.expect("bob's second socket");
    let marker = a.ack("send_message", json!({"to": bob.id, "message": "live"})).await.expect("live");
    let first = b2.event("new_message").await.expect("live message");
    assert_eq!(first["id"], marker["id"]);
    stack.stop().await.expect("stop stack");
}

#[tokio::test]
async fn no_ack_without_the_stream_acknowledgement() {
    let options = StackOptions::new(DbKind::Sqlite)
        .edges_with(|config| config.publish_timeout = std::time::Duration::from_millis(1500));
    let mut stack = TestStack::start_with(options).await.expect("start stack");
    let alice = stack.user("alice").await.expect("alice");
    let a = TestClient::connect_ws(stack.url(), &alice.token).await.expect("connect");
    a.ack("join_room", json!({"room": "lobby"})).await.expect("join");
    a.ack("send_message", json!({"room": "lobby", "message": "before"})).await.expect("accepted while NATS is up");

    stack.kill_nats();
    for payload in [json!({"room": "lobby", "message": "during"}), json!({"message": "to all"})] {
        let ack = a.ack("send_message", payload).await.expect("an answer");
        assert_eq!(ack, json!({"status": "error", "message": "message not accepted, try again"}));
        let exception = a.event("exception").await.expect("exception");
        assert_eq!(exception["message"], "message not accepted, try again");
        assert_eq!(exception["event"], "send_message");
    }
    // Once NATS is back, messages are accepted again on the same connection.
    stack.restart_nats().await.expect("restart nats");
    sb_tests::wait_until("messages accepted again", Duration::from_secs(30), || async {
        let ack = a.ack("send_message", json!({"room": "lobby", "message": "after"})).await.ok()?;
        ack["id"].is_string().then_some(())
    })
    .await;
    stack.stop().await.expect("stop stack");
}
