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
    assert!(metric(&metrics, "switchboard_edge_connect_rejects_total", "too many sockets") >= 1.0, "{metrics}");
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
    assert!(metric(&metrics, "switchboard_edge_connect_rejects_total", "edge full") >= 1.0, "{metrics}");
}

/// A `GET` of `path` from source address `from`, with extra header lines;
/// the response's status line and body.
async fn get_from(from: &str, to: std::net::SocketAddr, path: &str, headers: &str) -> (String, String) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.bind(format!("{from}:0").parse().expect("source address")).expect("bind the source address");
    let mut stream = socket.connect(to).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: edge\r\n{headers}Connection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("request");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("response");
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    (head.lines().next().unwrap_or_default().to_owned(), body.to_owned())
}

const HANDSHAKE: &str = "/socket.io/?EIO=4&transport=polling";

#[tokio::test]
async fn one_address_opens_at_most_its_burst_of_connections_then_its_rate() {
    let options = StackOptions::new(DbKind::Sqlite).edges_with(|config| {
        config.connect_rate_per_address = 2.0;
        config.connect_burst_per_address = 3;
    });
    let stack = TestStack::start_with(options).await.expect("stack");
    let addr = stack.edges[0].addr;
    for i in 0..3 {
        let (status, body) = get_from("127.0.0.1", addr, HANDSHAKE, "").await;
        assert!(status.contains(" 200"), "handshake {i} within the burst: {status} {body}");
    }
    let (status, body) = get_from("127.0.0.1", addr, HANDSHAKE, "").await;
    assert!(status.contains(" 429"), "past the burst: {status} {body}");
    assert!(body.contains("too many new connections from your address"), "{body}");
    // Another address has its own budget; requests that are not handshakes are not counted.
    let (status, _) = get_from("127.0.0.2", addr, HANDSHAKE, "").await;
    assert!(status.contains(" 200"), "another address: {status}");
    let (status, _) = get_from("127.0.0.1", addr, "/healthz", "").await;
    assert!(status.contains(" 200"), "health checks are not connections: {status}");
    // The rate refills the budget.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let (status, _) = get_from("127.0.0.1", addr, HANDSHAKE, "").await;
    assert!(status.contains(" 200"), "one more after 1/rate: {status}");

    let (_, metrics) = sb_tests::http::http_get(addr, "/metrics").await.expect("metrics");
    assert!(metric(&metrics, "switchboard_edge_connect_rejects_total", "address rate") >= 1.0, "{metrics}");
}

#[tokio::test]
async fn behind_a_balancer_the_forwarded_address_is_limited() {
    let options = StackOptions::new(DbKind::Sqlite).edges_with(|config| {
        config.connect_rate_per_address = 0.5;
        config.connect_burst_per_address = 1;
        config.client_address_header = Some("x-forwarded-for".into());
    });
    let stack = TestStack::start_with(options).await.expect("stack");
    let addr = stack.edges[0].addr;
    let from = |client: &str| format!("X-Forwarded-For: 198.51.100.7, {client}\r\n");
    let (status, _) = get_from("127.0.0.1", addr, HANDSHAKE, &from("203.0.113.1")).await;
    assert!(status.contains(" 200"), "{status}");
    let (status, _) = get_from("127.0.0.1", addr, HANDSHAKE, &from("203.0.113.1")).await;
    assert!(status.contains(" 429"), "the same client through the balancer: {status}");
    let (status, _) = get_from("127.0.0.1", addr, HANDSHAKE, &from("203.0.113.2")).await;
    assert!(status.contains(" 200"), "another client through the same balancer: {status}");
}
