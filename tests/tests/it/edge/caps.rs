//! Connection caps: sockets per user (`MAX_SOCKETS_PER_USER`) and sockets
//! per edge (`MAX_SOCKETS`, with `/readyz` reporting the edge full).

use std::time::Duration;

use sb_tests::DbKind;
use sb_tests::edge::{TestClient, TokenVia, Transport};
use sb_tests::stack::{StackOptions, TestStack};
use serde_json::{Value, json};

fn metric(metrics: &str, name: &str, label: &str) -> f64 {
    metrics
        .lines()
        .filter(|line| line.starts_with(name) && line.contains(label))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn polling(url: &str, token: &str) -> anyhow::Result<TestClient> {
    TestClient::connect(url, Some(token), TokenVia::AuthObject, Transport::Polling)
        .await
        .map_err(|failure| anyhow::anyhow!("{failure:?}"))
}

#[tokio::test]
async fn a_user_has_at_most_max_sockets_per_user_sockets_on_an_edge() {
    let options = StackOptions::new(DbKind::Sqlite).edges_with(|config| config.max_sockets_per_user = 2);
    let stack = TestStack::start_with(options).await.expect("stack");
    let alice = stack.user("alice").await.expect("alice");
    let bob = stack.user("bob").await.expect("bob");

    let first = polling(stack.url(), &alice.token).await.expect("first socket");
    let _second = TestClient::connect_ws(stack.url(), &alice.token).await.expect("second socket");
    let refusal = TestClient::refusal(stack.url(), Some(&alice.token), TokenVia::AuthObject, Transport::Websocket)
        .await
        .expect("a third is refused");
    assert!(
        refusal.contains("too many connections") && refusal.contains("at most 2"),
        "the connect_error says why: {refusal}"
    );
    // Another user is not affected, and alice's sockets still work.
    let bob_client = TestClient::connect_ws(stack.url(), &bob.token).await.expect("bob connects");
    bob_client.ack("join_room", json!({"room": "r"})).await.expect("bob joins");
    first.ack("join_room", json!({"room": "r"})).await.expect("alice's first socket works");

    // Once one closes, a new one connects.
    first.disconnect().await;
    let mut again = None;
    for _ in 0..50 {
        match TestClient::connect_ws(stack.url(), &alice.token).await {
            Ok(client) => {
                again = Some(client);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    assert!(again.is_some(), "a socket connects once alice has fewer than 2");

    let (_, metrics) = sb_tests::http::http_get(stack.edges[0].addr, "/metrics").await.expect("metrics");
    assert!(metric(&metrics, "sb_edge_connect_rejects_total", "too many sockets") >= 1.0, "{metrics}");
}

#[tokio::test]
async fn a_full_edge_refuses_handshakes_and_reports_not_ready() {
    let options = StackOptions::new(DbKind::Sqlite).edges_with(|config| config.max_sockets = 2);
    let stack = TestStack::start_with(options).await.expect("stack");
    let addr = stack.edges[0].addr;
    let users = [stack.user("u0").await.unwrap(), stack.user("u1").await.unwrap(), stack.user("u2").await.unwrap()];

    let (status, _) = sb_tests::http::http_get(addr, "/readyz").await.expect("readyz");
    assert!(status.contains(" 200"), "ready while there is room: {status}");
    let first = polling(stack.url(), &users[0].token).await.expect("first");
    let _second = TestClient::connect_ws(stack.url(), &users[1].token).await.expect("second");

    let (status, body) = sb_tests::http::http_get(addr, "/readyz").await.expect("readyz");
    assert!(status.contains(" 503"), "not ready once full: {status} {body}");
    let report: Value = serde_json::from_str(&body).expect("readyz JSON");
    assert!(report["checks"]["capacity"].as_str().unwrap_or_default().starts_with("full"), "{report}");

    let (status, body) =
        sb_tests::http::http_get(addr, "/socket.io/?EIO=4&transport=polling").await.expect("handshake");
    assert!(status.contains(" 503"), "a new handshake is refused: {status} {body}");
    assert!(body.contains("full"), "{body}");
    assert!(TestClient::connect_ws(stack.url(), &users[2].token).await.is_err(), "a client cannot connect");
    // The connected sockets go on.
    first.ack("join_room", json!({"room": "r"})).await.expect("a connected socket works");

    first.disconnect().await;
    let mut ready = false;
    for _ in 0..50 {
        if sb_tests::http::http_get(addr, "/readyz").await.expect("readyz").0.contains(" 200") {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "ready again once a socket left");
    TestClient::connect_ws(stack.url(), &users[2].token).await.expect("a client connects again");

    let (_, metrics) = sb_tests::http::http_get(addr, "/metrics").await.expect("metrics");
    assert!(metric(&metrics, "sb_edge_connect_rejects_total", "edge full") >= 1.0, "{metrics}");
}
