//! `online`, `sessions` and `rooms members` against real sockets (presence
//! keeps no store, so SQLite only).

use std::time::Duration;

use sb_tests::DbKind;
use sb_tests::edge::TestClient;
use sb_tests::stack::TestStack;
use serde_json::json;

use super::{Ctl, table};

#[tokio::test]
async fn online_sessions_and_room_members() {
    let stack = TestStack::start(DbKind::Sqlite).await.expect("start stack");
    let ctl = Ctl::for_stack(&stack).await;
    assert_eq!(ctl.json(&["online"]).await, json!({"users": [], "count": 0, "next_cursor": null}));
    let empty = ctl.run(&["online"]).await;
    assert_eq!((empty.ok(), empty.stderr.as_str()), ("", "no users online\n"));

    let alice = stack.user("alice").await.expect("alice");
    let bob = stack.user("bob").await.expect("bob");
    let alice_ws = TestClient::connect_ws(stack.url(), &alice.token).await.expect("alice connects");
    let bob_ws = TestClient::connect_ws(stack.url(), &bob.token).await.expect("bob connects");
    alice_ws.ack("join_room", json!({"room": "developers"})).await.expect("alice joins");
    alice_ws.ack("join_room", json!({"room": "ops"})).await.expect("alice joins ops");
    bob_ws.ack("join_room", json!({"room": "developers"})).await.expect("bob joins");

    let online = sb_tests::wait_until("both online", Duration::from_secs(10), || async {
        let online = ctl.json(&["online"]).await;
        (online["count"] == 2).then_some(online)
    })
    .await;
    let mut expected = vec![json!({"id": alice.id, "email": alice.email}), json!({"id": bob.id, "email": bob.email})];
    expected.sort_by_key(|user| user["id"].as_str().unwrap_or("").to_owned());
    assert_eq!(online["users"], json!(expected));
    let rows = table(ctl.run(&["online"]).await.ok());
    assert_eq!(rows[0], ["ID", "EMAIL"]);
    assert_eq!(rows.len(), 3);
    let first_page = ctl.run(&["online", "--limit", "1"]).await;
    assert_eq!(table(first_page.ok()).len(), 2);
    assert!(first_page.stderr.starts_with("1 of 2 shown; more: --cursor "), "{first_page:?}");
    let cursor = ctl.json(&["online", "--limit", "1"]).await["next_cursor"].as_str().expect("cursor").to_owned();
    let second = ctl.json(&["online", "--limit", "1", "--cursor", &cursor]).await;
    assert_eq!(second["users"], json!([expected[1]]));

    let members = sb_tests::wait_until("both in developers", Duration::from_secs(10), || async {
        let members = ctl.json(&["rooms", "members", "developers"]).await;
        (members["count"] == 2).then_some(members)
    })
    .await;
    assert_eq!(members["room"], "developers");
    assert_eq!(members["members"], json!(expected));
    let ops = ctl.run(&["rooms", "members", "ops"]).await;
    assert_eq!(table(ops.ok())[1], [alice.id.as_str(), alice.email.as_str()]);
    let nobody = ctl.run(&["rooms", "members", "empty-room"]).await;
    assert_eq!((nobody.ok(), nobody.stderr.as_str()), ("", "nobody is in empty-room\n"));

    let sessions = ctl.json(&["sessions", &alice.id]).await;
    assert_eq!(sessions["online"], true);
    assert_eq!(sessions["user"], json!({"id": alice.id, "email": alice.email}));
    assert_eq!(sessions["rooms"], json!(["developers", "ops"]));
    let session = &sessions["sessions"][0];
    assert_eq!(session["edge_id"], stack.edges[0].edge_id);
    assert_eq!(session["transport"], "websocket");
    assert!(session["connected_at"].as_str().is_some_and(|at| at.ends_with('Z')), "{sessions}");
    let sessions_table = ctl.run(&["sessions", &alice.id]).await;
    let rows = table(sessions_table.ok());
    assert_eq!(rows[0], ["EDGE", "SOCKET", "TRANSPORT", "CONNECTED (UTC)", "ROOMS"]);
    assert_eq!(rows[1][0], stack.edges[0].edge_id);
    assert_eq!(rows[1][2], "websocket");
    assert_eq!(rows[1][4], "developers,ops");

    // An offline user is not an unknown one.
    let carol = stack.user("carol").await.expect("carol");
    let offline = ctl.run(&["sessions", &carol.id]).await;
    assert_eq!((offline.ok(), offline.stderr.clone()), ("", format!("{} is offline\n", carol.id)));
    assert_eq!(ctl.json(&["sessions", &carol.id]).await["online"], false);
    assert_eq!(ctl.run(&["sessions", "nobody"]).await.fails(), "no user with id nobody");

    // Failures: a bad room name, a non-admin, no stack at that address.
    assert!(ctl.run(&["rooms", "members", &"x".repeat(101)]).await.fails().contains("room"));
    assert_eq!(ctl.run_as(&alice.token, &["online"]).await.fails(), "permission denied: the token is not an admin's");
    let bad_limit = ctl.run(&["online", "--limit", "0"]).await;
    assert_eq!(bad_limit.code, 2, "{bad_limit:?}");
    alice_ws.disconnect().await;
    bob_ws.disconnect().await;
    stack.stop().await.expect("stop stack");
}
