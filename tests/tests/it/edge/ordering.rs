//! A socket's events are handled in the order it sent them, and events a
//! client emits in its `connect` callback are never lost (the two hazards
//! of SOCKETIO-NOTES.md).

use std::collections::HashSet;
use std::time::Duration;

use sb_tests::DbKind;
use sb_tests::edge::{TestClient, TokenVia, Transport};
use sb_tests::stack::{StackOptions, TestStack};
use serde_json::json;

fn unlimited(config: &mut sb_edge::Config) {
    config.rate_limit_per_sec = 0.0;
    config.rate_limit_burst = 0;
    config.event_queue_limit = 100_000;
}

#[tokio::test]
async fn back_to_back_join_then_send_pairs_run_in_order() {
    const PAIRS: usize = 2000;
    let options = StackOptions::new(DbKind::Sqlite).edges_with(unlimited);
    let stack = TestStack::start_with(options).await.expect("start stack");
    let alice = stack.user("alice").await.expect("alice");
    let client = TestClient::connect_ws(stack.url(), &alice.token).await.expect("connect");

    for i in 0..PAIRS {
        let room = format!("room-{i}");
        client.emit("join_room", json!({"room": room})).await.expect("emit join");
        client.emit("send_message", json!({"room": room, "message": format!("m{i}")})).await.expect("emit send");
    }
    // Events are handled in order, so this ack comes after all of the above
    // (4,000 events: on a loaded 2-core machine that can take more than the
    // usual 10 s ack wait).
    client.ack_within("ping", json!({}), Duration::from_secs(60)).await.expect("barrier");
    // Nothing was refused (a send handled before its join would be), and
    // every message reached its room (the sender is its only member).
    let mut seen = HashSet::new();
    let mut exceptions = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        for (name, data) in client.drain_events().await {
            match name.as_str() {
                "exception" => exceptions.push(data),
                "new_message" => {
                    seen.insert(data["message"].as_str().unwrap_or_default().to_owned());
                }
                _ => {}
            }
        }
        if seen.len() >= PAIRS || tokio::time::Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(exceptions.is_empty(), "{} of {PAIRS} pairs ran out of order: {:?}", exceptions.len(), exceptions.first());
    assert_eq!(seen.len(), PAIRS);
    stack.stop().await.expect("stop stack");
}

#[tokio::test]
async fn events_emitted_in_the_connect_callback_are_never_lost() {
    const CLIENTS: usize = 200;
    let options = StackOptions::new(DbKind::Sqlite).edges_with(unlimited);
    let stack = TestStack::start_with(options).await.expect("start stack");
    let user = stack.user("eager").await.expect("user");
    let mut clients = Vec::with_capacity(CLIENTS);
    for i in 0..CLIENTS {
        let room = format!("eager-{i}");
        let on_connect = vec![
            ("join_room".to_owned(), json!({"room": room})),
            ("send_message".to_owned(), json!({"room": room, "message": format!("hello {i}")})),
            ("get_online_users".to_owned(), json!({})),
        ];
        let transport = if i % 2 == 0 { Transport::Websocket } else { Transport::Polling };
        let client =
            TestClient::connect_and_emit(stack.url(), Some(&user.token), TokenVia::AuthObject, transport, on_connect)
                .await
                .unwrap_or_else(|failure| panic!("client {i}: {failure:?}"));
        clients.push(client);
    }
    for (i, client) in clients.iter().enumerate() {
        let message = client.event("new_message").await.unwrap_or_else(|error| panic!("client {i}: {error}"));
        assert_eq!(message["message"], format!("hello {i}"));
        let online = client.event("online_users").await.unwrap_or_else(|error| panic!("client {i}: {error}"));
        let listed = online["users"].as_array().is_some_and(|users| users.iter().any(|u| u["id"] == user.id.as_str()));
        assert!(listed, "client {i} does not see itself online right after connecting: {online}");
        let exceptions: Vec<_> =
            client.drain_events().await.into_iter().filter(|(name, _)| name == "exception").collect();
        assert!(exceptions.is_empty(), "client {i}: {exceptions:?}");
    }
    stack.stop().await.expect("stop stack");
}
