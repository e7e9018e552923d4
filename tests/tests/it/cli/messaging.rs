//! `notify`, `announce` and `history` against real sockets on two edges, on
//! both databases (history is read from the store).

use std::time::Duration;

use sb_tests::DbKind;
use sb_tests::edge::TestClient;
use sb_tests::stack::{StackOptions, TestStack};
use serde_json::{Value, json};

use super::{Ctl, both, table};

async fn notify_reaches_exactly_its_audience(kind: DbKind) {
    let stack = TestStack::start_with(StackOptions { edges: 2, ..StackOptions::new(kind) }).await.expect("start stack");
    let ctl = Ctl::for_stack(&stack).await;
    let (alice, bob, carol) = (
        stack.user("alice").await.expect("alice"),
        stack.user("bob").await.expect("bob"),
        stack.user("carol").await.expect("carol"),
    );
    // alice and bob share the room from different edges; carol is elsewhere.
    let alice_ws = TestClient::connect_ws(&stack.edges[0].url, &alice.token).await.expect("alice");
    let bob_ws = TestClient::connect_ws(&stack.edges[1].url, &bob.token).await.expect("bob");
    let carol_ws = TestClient::connect_ws(&stack.edges[0].url, &carol.token).await.expect("carol");
    for ws in [&alice_ws, &bob_ws] {
        ws.ack("join_room", json!({"room": "developers"})).await.expect("join");
    }
    carol_ws.ack("join_room", json!({"room": "ops"})).await.expect("carol joins ops");
    sb_tests::wait_until("both members seen by presence", Duration::from_secs(10), || async {
        (ctl.json(&["rooms", "members", "developers"]).await["count"] == 2).then_some(())
    })
    .await;

    let sent = ctl.json(&["notify", "--room", "developers", "deploy at 17:00", "--title", "Ops"]).await;
    assert_eq!(sent["to"], json!({"room": "developers"}));
    let id = sent["id"].as_str().expect("an id").to_owned();
    assert!(sent["timestamp"].as_str().is_some_and(|at| at.ends_with('Z')), "{sent}");
    for ws in [&alice_ws, &bob_ws] {
        let notification = ws.event("notification").await.expect("a member gets it");
        assert_eq!(notification["id"], id.as_str());
        assert_eq!(notification["title"], "Ops");
        assert_eq!(notification["message"], "deploy at 17:00");
    }
    // carol's first notification is the one sent to her alone: the room's never came.
    let to_carol = ctl.run(&["notify", "--user", &carol.id, "just for you"]).await;
    assert!(to_carol.ok().contains(&format!("sent to user {}", carol.id)), "{to_carol:?}");
    let first = carol_ws.event("notification").await.expect("carol's notification");
    assert_eq!(first["message"], "just for you");
    assert!(first.get("title").is_none_or(Value::is_null), "{first}");

    let everyone = ctl.json(&["notify", "--all", "maintenance"]).await;
    assert_eq!(everyone["to"], json!({"all": true}));
    for ws in [&alice_ws, &bob_ws, &carol_ws] {
        ws.event_where("notification", |n| n["message"] == "maintenance").await.expect("everyone gets it");
    }

    let announced = ctl.run(&["announce", "welcome"]).await;
    assert!(announced.ok().starts_with("announcement "), "{announced:?}");
    for ws in [&alice_ws, &bob_ws, &carol_ws] {
        let announcement = ws.event("admin_announcement").await.expect("an announcement");
        assert_eq!(announcement["message"], "welcome");
        assert_eq!(announcement["from"]["id"], stack.auth.admin_id);
    }
    assert!(ctl.json(&["announce", "again"]).await["id"].is_string());

    // Failures.
    assert_eq!(ctl.run(&["notify", "--user", "nobody", "hi"]).await.fails(), "no user with id nobody");
    assert!(ctl.run(&["notify", "--room", &"x".repeat(101), "hi"]).await.fails().starts_with("invalid room"));
    // An empty room (an unset shell variable) must not mean "everyone".
    let empty_room = ctl.run(&["notify", "--room", "", "hi"]).await;
    assert_eq!(empty_room.code, 2, "{empty_room:?}");
    assert_eq!(
        ctl.run_as(&alice.token, &["announce", "hi"]).await.fails(),
        "permission denied: the token is not an admin's"
    );
    let two_audiences = ctl.run(&["notify", "--user", &alice.id, "--all", "hi"]).await;
    assert_eq!(two_audiences.code, 2, "{two_audiences:?}");
    for ws in [alice_ws, bob_ws, carol_ws] {
        ws.disconnect().await;
    }
    stack.stop().await.expect("stop stack");
}
both!(notify_reaches_exactly_its_audience);

async fn history_of_rooms_and_conversations(kind: DbKind) {
    let stack = TestStack::start(kind).await.expect("start stack");
    let ctl = Ctl::for_stack(&stack).await;
    let (alice, bob) = (stack.user("alice").await.expect("alice"), stack.user("bob").await.expect("bob"));
    let alice_ws = TestClient::connect_ws(stack.url(), &alice.token).await.expect("alice");
    alice_ws.ack("join_room", json!({"room": "developers"})).await.expect("join");
    let mut ids = Vec::new();
    for text in ["one", "two", "three"] {
        let ack = alice_ws.ack("send_message", json!({"room": "developers", "message": text})).await.expect("send");
        ids.push(ack["id"].as_str().expect("message id").to_owned());
    }
    alice_ws.ack("send_message", json!({"to": bob.id, "message": "psst"})).await.expect("private");

    let history = sb_tests::wait_until("three stored messages", Duration::from_secs(10), || async {
        let history = ctl.json(&["history", "--room", "developers"]).await;
        (history["messages"].as_array().map(Vec::len) == Some(3)).then_some(history)
    })
    .await;
    let newest = &history["messages"][0];
    assert_eq!(newest["id"], ids[2].as_str());
    assert_eq!(newest["kind"], "room");
    assert_eq!(newest["from"], json!({"id": alice.id, "email": alice.email}));
    assert_eq!(newest["room"], "developers");
    assert_eq!(newest["to"], Value::Null);
    assert_eq!(newest["message"], "three");
    assert!(newest["timestamp"].as_str().is_some_and(|at| at.ends_with('Z')), "{newest}");
    assert_eq!(history["next_before"], Value::Null);

    // Pages: --limit and --before.
    let page = ctl.json(&["history", "--room", "developers", "--limit", "2"]).await;
    let texts = |page: &Value| -> Vec<String> {
        page["messages"].as_array().unwrap().iter().map(|m| m["message"].as_str().unwrap().to_owned()).collect()
    };
    assert_eq!(texts(&page), ["three", "two"]);
    let before = page["next_before"].as_str().expect("an older page").to_owned();
    let older = ctl.json(&["history", "--room", "developers", "--before", &before]).await;
    assert_eq!(texts(&older), ["one"]);
    let table_page = ctl.run(&["history", "--room", "developers", "--limit", "2"]).await;
    let rows = table(table_page.ok());
    assert_eq!(rows[0], ["ID", "TIME (UTC)", "FROM", "TO", "MESSAGE"]);
    assert_eq!(rows[1][0], ids[2]);
    assert_eq!(rows[1][1].len(), "2025-01-01 00:00:00".len(), "{rows:?}");
    assert_eq!(rows[1][2..], [alice.email.as_str(), "#developers", "three"]);
    assert!(table_page.stderr.contains("--before"), "{table_page:?}");

    let conversation = sb_tests::wait_until("the private message stored", Duration::from_secs(10), || async {
        let conversation = ctl.json(&["history", "--between", &bob.id, &alice.id]).await;
        (conversation["messages"].as_array().map(Vec::len) == Some(1)).then_some(conversation)
    })
    .await;
    let private = &conversation["messages"][0];
    assert_eq!((private["kind"].clone(), private["to"].clone()), (json!("private"), json!(bob.id)));
    let empty = ctl.run(&["history", "--room", "quiet"]).await;
    assert_eq!((empty.ok(), empty.stderr.as_str()), ("", "no messages\n"));

    // Failures.
    let neither = ctl.run(&["history", "--limit", "5"]).await;
    assert_eq!(neither.code, 2, "{neither:?}");
    assert!(ctl.run(&["history", "--room", "developers", "--before", "not-an-id"]).await.fails().contains("before"));
    assert_eq!(
        ctl.run_as(&bob.token, &["history", "--room", "developers"]).await.fails(),
        "permission denied: the token is not an admin's"
    );
    alice_ws.disconnect().await;
    stack.stop().await.expect("stop stack");
}
both!(history_of_rooms_and_conversations);
