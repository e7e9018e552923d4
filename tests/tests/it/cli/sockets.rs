//! `tokens revoke` and `users disable` seen from live Socket.IO clients: each
//! socket of the user gets the `exception` and is disconnected within 1 s of
//! the command returning; other users' sockets carry on.

use std::time::Duration;

use sb_tests::DbKind;
use sb_tests::edge::{TestClient, TokenVia, Transport};
use sb_tests::stack::TestStack;
use serde_json::json;

use super::Ctl;

/// Waits (at most 1 s) for `client`'s `exception` with `message`, then its disconnect.
async fn kicked_within_a_second(client: &TestClient, message: &str) {
    tokio::time::timeout(Duration::from_secs(1), async {
        let exception = client.event("exception").await.expect("an exception before the disconnect");
        assert_eq!(exception["message"], message);
        client.closed().await.expect("disconnected");
    })
    .await
    .unwrap_or_else(|_| panic!("no {message:?} exception and disconnect within 1 s"));
}

#[tokio::test]
async fn revoke_and_disable_disconnect_live_sockets() {
    let stack = TestStack::start(DbKind::Sqlite).await.expect("start stack");
    let ctl = Ctl::for_stack(&stack).await;
    let (dave, erin) = (stack.user("dave").await.expect("dave"), stack.user("erin").await.expect("erin"));
    let dave_ws = TestClient::connect_ws(stack.url(), &dave.token).await.expect("dave ws");
    let dave_polling = TestClient::connect(stack.url(), Some(&dave.token), TokenVia::Query, Transport::Polling)
        .await
        .expect("dave polling");
    let erin_ws = TestClient::connect_ws(stack.url(), &erin.token).await.expect("erin ws");

    ctl.run(&["tokens", "revoke", "--user", &dave.id]).await.ok();
    for client in [&dave_ws, &dave_polling] {
        kicked_within_a_second(client, "token revoked").await;
    }
    let pong = erin_ws.ack("ping", json!({})).await.expect("erin is untouched");
    assert_eq!(pong["user"]["id"], erin.id);

    ctl.run(&["users", "disable", &erin.id]).await.ok();
    kicked_within_a_second(&erin_ws, "user disabled").await;
    let refused = TestClient::refusal(stack.url(), Some(&erin.token), TokenVia::AuthObject, Transport::Websocket).await;
    assert_eq!(refused.expect("refused"), "user disabled");
    stack.stop().await.expect("stop stack");
}
