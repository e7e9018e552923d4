//! Every client event of DESIGN.md §2 with its ack and payload shape, and
//! every bad-input case (issue 3), through the real services.

use std::time::Duration;

use sb_tests::DbKind;
use sb_tests::edge::TestClient;
use sb_tests::stack::{StackOptions, TestStack};
use serde_json::{Value, json};

fn is_rfc3339_ms(value: &Value) -> bool {
    value.as_str().is_some_and(|text| text.len() == 24 && text.ends_with('Z') && text.as_bytes()[19] == b'.')
}

fn assert_error_ack(ack: &Value, message: &str) {
    assert_eq!(ack, &json!({"status": "error", "message": message}));
}

async fn events_round_trip(db: DbKind) {
    let stack = TestStack::start(db).await.expect("start stack");
    let alice = stack.user("alice").await.expect("alice");
    let bob = stack.user("bob").await.expect("bob");
    let root = stack.admin("root").await.expect("admin");
    let a = TestClient::connect_ws(stack.url(), &alice.token).await.expect("alice connects");
    let b = TestClient::connect_ws(stack.url(), &bob.token).await.expect("bob connects");

    // ping -> pong event and the same as ack.
    let pong = a.ack("ping", json!({})).await.expect("ping");
    assert_eq!(pong["user"], json!({"id": alice.id, "email": alice.email, "role": "user"}));
    assert!(is_rfc3339_ms(&pong["timestamp"]), "{pong}");
    assert_eq!(a.event("pong").await.expect("pong event"), pong);

    // join_room: members cluster-wide; the others get user_joined.
    let joined = a.ack("join_room", json!({"room": "lobby"})).await.expect("alice joins");
    assert_eq!(joined["room"], "lobby");
    assert_eq!(joined["status"], "ok");
    assert_eq!(joined["members"], json!([{"id": alice.id, "email": alice.email}]));
    let joined = b.ack("join_room", json!({"room": "lobby"})).await.expect("bob joins");
    let members = sb_tests::edge::sorted_ids(&joined["members"]);
    let mut expected = vec![alice.id.clone(), bob.id.clone()];
    expected.sort();
    assert_eq!(members, expected);
    let user_joined = a.event_where("user_joined", |v| v["user"]["id"] == bob.id).await.expect("user_joined");
    assert_eq!(user_joined["room"], "lobby");
    assert_eq!(user_joined["user"]["email"], bob.email);

    // Room message: ack {id, timestamp} after the stream accepted it; every member gets new_message.
    let sent = b.ack("send_message", json!({"room": "lobby", "message": "hello room"})).await.expect("send");
    let id = sent["id"].as_str().expect("message id").to_owned();
    assert!(uuid::Uuid::parse_str(&id).is_ok_and(|u| u.get_version_num() == 7), "{sent}");
    assert!(is_rfc3339_ms(&sent["timestamp"]), "{sent}");
    let message = a.event_where("new_message", |v| v["id"] == id.as_str()).await.expect("room message");
    assert_eq!(message["from"], json!({"id": bob.id, "email": bob.email}));
    assert_eq!(message["room"], "lobby");
    assert_eq!(message["message"], "hello room");
    assert!(message.get("to").is_none(), "{message}");
    b.event_where("new_message", |v| v["id"] == id.as_str()).await.expect("the sender is a member too");

    // Private message to every socket of the recipient.
    let b2 = TestClient::connect_ws(stack.url(), &bob.token).await.expect("bob's second socket");
    let sent = a.ack("send_message", json!({"to": bob.id, "message": "psst"})).await.expect("private");
    let id = sent["id"].as_str().expect("id").to_owned();
    for socket in [&b, &b2] {
        let message = socket.event_where("new_message", |v| v["id"] == id.as_str()).await.expect("private message");
        assert_eq!(message["to"], bob.id.as_str());
        assert_eq!(message["from"]["id"], alice.id.as_str());
        assert!(message.get("room").is_none(), "{message}");
    }

    // Broadcast to everyone.
    let sent = a.ack("send_message", json!({"message": "hello all"})).await.expect("broadcast");
    let id = sent["id"].as_str().expect("id").to_owned();
    for socket in [&a, &b, &b2] {
        let message = socket.event_where("new_message", |v| v["id"] == id.as_str()).await.expect("broadcast");
        assert!(message.get("room").is_none() && message.get("to").is_none(), "{message}");
    }

    // History: the room (members only) and the private conversation, newest first.
    let history = b.ack("get_history", json!({"room": "lobby"})).await.expect("room history");
    let texts: Vec<&str> =
        history["messages"].as_array().expect("messages").iter().filter_map(|m| m["message"].as_str()).collect();
    assert_eq!(texts, vec!["hello room"]);
    let history = a.ack("get_history", json!({"with": bob.id, "limit": 10})).await.expect("conversation history");
    assert_eq!(history["messages"][0]["message"], "psst");

    // Online users cluster-wide: event and ack.
    let online = a.ack("get_online_users", json!({})).await.expect("online users");
    let ids: Vec<&str> = online["users"].as_array().expect("users").iter().filter_map(|u| u["id"].as_str()).collect();
    assert!(ids.contains(&alice.id.as_str()) && ids.contains(&bob.id.as_str()), "{online}");
    assert!(online["count"].as_u64().is_some_and(|count| count >= 2), "{online}");
    assert_eq!(a.event("online_users").await.expect("online_users event"), online);

    // Admin broadcast -> admin_announcement to everyone.
    let admin = TestClient::connect_ws(stack.url(), &root.token).await.expect("admin connects");
    let sent = admin.ack("admin_broadcast", json!({"message": "maintenance at 5"})).await.expect("announce");
    assert!(sent["id"].is_string() && is_rfc3339_ms(&sent["timestamp"]), "{sent}");
    let announcement = a.event("admin_announcement").await.expect("announcement");
    assert_eq!(announcement["message"], "maintenance at 5");
    assert_eq!(announcement["from"]["id"], root.id.as_str());
    assert_eq!(announcement["id"], sent["id"]);

    // leave_room: ack {room}; the others get user_left once bob's last socket in the room left.
    let left = b.ack("leave_room", json!({"room": "lobby"})).await.expect("leave");
    assert_eq!(left["room"], "lobby");
    let user_left = a.event_where("user_left", |v| v["user"]["id"] == bob.id).await.expect("user_left");
    assert_eq!(user_left["room"], "lobby");
    // Bob no longer gets the room's messages: the next one he sees is a marker to him.
    a.ack("send_message", json!({"room": "lobby", "message": "after leave"})).await.expect("send");
    let marker = a.ack("send_message", json!({"to": bob.id, "message": "marker"})).await.expect("marker");
    let next = b.event("new_message").await.expect("bob's next message");
    assert_eq!(next["id"], marker["id"], "bob got {next} after leaving the room");

    stack.stop().await.expect("stop stack");
}

#[tokio::test]
async fn events_round_trip_sqlite() {
    events_round_trip(DbKind::Sqlite).await;
}

#[tokio::test]
async fn events_round_trip_postgres() {
    events_round_trip(DbKind::Postgres).await;
}

#[tokio::test]
async fn bad_input_gets_an_exception_and_changes_nothing() {
    let stack = TestStack::start(DbKind::Sqlite).await.expect("start stack");
    let alice = stack.user("alice").await.expect("alice");
    let bob = stack.user("bob").await.expect("bob");
    let a = TestClient::connect_ws(stack.url(), &alice.token).await.expect("alice connects");
    let b = TestClient::connect_ws(stack.url(), &bob.token).await.expect("bob connects");
    b.ack("join_room", json!({"room": "lobby"})).await.expect("bob joins");

    let long_room = "r".repeat(101);
    let long_message = "m".repeat(4097);
    let cases: Vec<(&str, Value, String)> = vec![
        ("fly", json!({}), "unknown event: fly".into()),
        ("join_room", json!("lobby"), "join_room payload must be an object like {room}".into()),
        ("join_room", json!({}), "room is required".into()),
        ("join_room", json!({"room": 5}), "room must be a string".into()),
        ("join_room", json!({"room": ""}), "room must not be empty".into()),
        ("join_room", json!({"room": long_room}), "room must be at most 100 characters".into()),
        ("join_room", json!({"room": "a\u{1}b"}), "room must not contain control characters".into()),
        ("leave_room", json!({"room": ["x"]}), "room must be a string".into()),
        ("send_message", json!({}), "message is required".into()),
        ("send_message", json!({"message": 42}), "message must be a string".into()),
        ("send_message", json!({"message": ""}), "message must not be empty".into()),
        ("send_message", json!({"message": "   "}), "message must not be empty".into()),
        ("send_message", json!({"message": long_message}), "message must be at most 4096 bytes".into()),
        (
            "send_message",
            json!({"room": "lobby", "message": "hi"}),
            "not a member of room lobby: join_room first".into(),
        ),
        ("send_message", json!({"to": "no-such-user", "message": "hi"}), "user no-such-user does not exist".into()),
        (
            "send_message",
            json!({"room": "lobby", "to": bob.id, "message": "hi"}),
            "send_message takes either room or to, not both".into(),
        ),
        ("send_message", json!({"room": "", "message": "hi"}), "room must not be empty".into()),
        ("admin_broadcast", json!({"message": "not allowed"}), "admin role required".into()),
        ("get_history", json!({"room": "lobby"}), "not a member of room lobby: join_room first".into()),
        ("get_history", json!({}), "get_history needs room or with".into()),
        ("get_history", json!({"with": bob.id, "limit": 1000}), "limit must be an integer from 1 to 100".into()),
        ("get_online_users", json!({"limit": -1}), "limit must be an integer from 1 to 1000".into()),
    ];
    for (event, payload, message) in &cases {
        let ack = a.ack(event, payload.clone()).await.unwrap_or_else(|error| panic!("{event} {payload}: {error}"));
        assert_error_ack(&ack, message);
        let exception = a.event("exception").await.expect("exception");
        assert_eq!(exception, json!({"status": "error", "message": message, "event": event}), "{event} {payload}");
    }
    // Without an ack the exception still arrives.
    a.emit("send_message", json!({"room": "lobby", "message": "x"})).await.expect("emit");
    let exception = a.event("exception").await.expect("exception without ack");
    assert_eq!(exception["event"], "send_message");
    // A missing payload.
    a.emit_empty("join_room").await.expect("emit");
    let exception = a.event("exception").await.expect("exception");
    assert_eq!(exception["message"], "join_room needs a payload like {room}");

    // Nothing happened: bob saw no message and no announcement; the next
    // thing he receives is a marker sent after all of the above.
    let marker = a.ack("send_message", json!({"to": bob.id, "message": "marker"})).await.expect("marker");
    let next = b.event("new_message").await.expect("marker arrives");
    assert_eq!(next["id"], marker["id"]);
    let unexpected: Vec<(String, Value)> = b
        .drain_events()
        .await
        .into_iter()
        .filter(|(name, _)| name == "new_message" || name == "admin_announcement" || name == "user_joined")
        .collect();
    assert!(unexpected.is_empty(), "{unexpected:?}");
    // The connection carries on.
    a.ack("ping", json!({})).await.expect("still connected");
    stack.stop().await.expect("stop stack");
}

#[tokio::test]
async fn wildcard_room_names_get_only_their_own_traffic() {
    let stack = TestStack::start(DbKind::Sqlite).await.expect("start stack");
    let sender = stack.user("sender").await.expect("sender");
    let s = TestClient::connect_ws(stack.url(), &sender.token).await.expect("sender connects");
    let rooms = [">", "a.*", "*", "a.b", "a"];
    let mut members = Vec::new();
    for (i, room) in rooms.iter().enumerate() {
        let user = stack.user(&format!("member{i}")).await.expect("member");
        let client = TestClient::connect_ws(stack.url(), &user.token).await.expect("member connects");
        let joined = client.ack("join_room", json!({"room": room})).await.expect("join");
        assert_eq!(joined["room"], *room);
        s.ack("join_room", json!({"room": room})).await.expect("sender joins");
        members.push(client);
    }
    // One message per room, then one marker per room: each member's room
    // subscription carries, in order, its own message and then its marker,
    // and anything a wildcard would have let through would come before it.
    for room in rooms {
        s.ack("send_message", json!({"room": room, "message": format!("to {room}")})).await.expect("send");
    }
    for room in rooms {
        s.ack("send_message", json!({"room": room, "message": format!("marker {room}")})).await.expect("marker");
    }
    for (room, client) in rooms.iter().zip(&members) {
        let first = client.event("new_message").await.expect("first message");
        assert_eq!(first["message"], format!("to {room}"), "member of {room:?} got {first}");
        let second = client.event("new_message").await.expect("marker");
        assert_eq!(second["message"], format!("marker {room}"), "member of {room:?} got {second}");
    }
    stack.stop().await.expect("stop stack");
}

#[tokio::test]
async fn a_flooding_socket_is_rate_limited_and_others_carry_on() {
    let options = StackOptions::new(DbKind::Sqlite).edges_with(|config| {
        config.rate_limit_per_sec = 5.0;
        config.rate_limit_burst = 5;
    });
    let stack = TestStack::start_with(options).await.expect("start stack");
    let flooder = stack.user("flooder").await.expect("flooder");
    let calm = stack.user("calm").await.expect("calm");
    let f = TestClient::connect_ws(stack.url(), &flooder.token).await.expect("flooder connects");
    let c = TestClient::connect_ws(stack.url(), &calm.token).await.expect("calm connects");

    for _ in 0..100 {
        f.emit("ping", json!({})).await.expect("emit");
    }
    let exception = f.event("exception").await.expect("rate limit exception");
    assert_eq!(exception, json!({"status": "error", "message": "rate limit exceeded, slow down", "event": "ping"}));
    // The calm socket is not affected.
    let pong = c.ack("ping", json!({})).await.expect("calm ping");
    assert_eq!(pong["user"]["id"], calm.id.as_str());
    // Every flood event was answered, each either handled (pong) or refused.
    let (mut pongs, mut refused) = (0, 1);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while pongs + refused < 100 && tokio::time::Instant::now() < deadline {
        for (name, _) in f.drain_events().await {
            match name.as_str() {
                "pong" => pongs += 1,
                "exception" => refused += 1,
                _ => {}
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(pongs + refused, 100, "{pongs} handled, {refused} refused");
    assert!(refused >= 50, "{pongs} handled, {refused} refused");
    stack.stop().await.expect("stop stack");
}

#[tokio::test]
async fn a_socket_joins_at_most_max_rooms_per_socket_rooms() {
    let options = StackOptions::new(DbKind::Sqlite).edges_with(|config| config.max_rooms_per_socket = 3);
    let stack = TestStack::start_with(options).await.expect("start stack");
    let alice = stack.user("alice").await.expect("alice");
    let bob = stack.user("bob").await.expect("bob");
    let a = TestClient::connect_ws(stack.url(), &alice.token).await.expect("alice connects");
    let b = TestClient::connect_ws(stack.url(), &bob.token).await.expect("bob connects");
    b.ack("join_room", json!({"room": "r4"})).await.expect("bob joins r4");
    for room in ["r1", "r2", "r3", "r1"] {
        let ack = a.ack("join_room", json!({"room": room})).await.expect("join");
        assert_eq!(ack["status"], "ok", "{room}: {ack}");
    }
    let message = "too many rooms: a socket may be in at most 3 rooms, leave_room first";
    let ack = a.ack("join_room", json!({"room": "r4"})).await.expect("ack");
    assert_error_ack(&ack, message);
    let exception = a.event("exception").await.expect("exception");
    assert_eq!(exception, json!({"status": "error", "message": message, "event": "join_room"}));
    // The refused join changed nothing: alice is not in r4, bob heard of no join.
    let refused = a.ack("send_message", json!({"room": "r4", "message": "hi"})).await.expect("ack");
    assert_error_ack(&refused, "not a member of room r4: join_room first");
    let _ = a.event("exception").await.expect("exception");
    assert!(b.drain_events().await.iter().all(|(name, _)| name != "user_joined"), "bob saw no join");
    // Leaving one makes room for another.
    a.ack("leave_room", json!({"room": "r1"})).await.expect("leave");
    let ack = a.ack("join_room", json!({"room": "r4"})).await.expect("join r4");
    assert_eq!(ack["status"], "ok", "{ack}");
    let (_, metrics) = sb_tests::http::http_get(stack.edges[0].addr, "/metrics").await.expect("metrics");
    assert!(metrics.contains("switchboard_edge_refused_joins_total 1"), "{metrics}");
    stack.stop().await.expect("stop stack");
}
