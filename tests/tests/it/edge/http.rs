//! HTTP on the Socket.IO port with auth up: login, readiness, metrics.

use std::time::Duration;

use sb_tests::DbKind;
use sb_tests::auth::{ADMIN_EMAIL, ADMIN_PASSWORD};
use sb_tests::edge::TestClient;
use sb_tests::http::http_request;
use sb_tests::stack::TestStack;
use serde_json::{Value, json};

#[tokio::test]
async fn login_readiness_and_metrics() {
    let stack = TestStack::start(DbKind::Sqlite).await.expect("start stack");
    let addr = stack.edges[0].addr;

    sb_tests::wait_until("edge ready", Duration::from_secs(10), || async {
        let (status, _) = http_request(addr, "GET", "/readyz", None).await.ok()?;
        (status == 200).then_some(())
    })
    .await;

    let body = json!({"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}).to_string();
    let (status, response) = http_request(addr, "POST", "/auth/login", Some(&body)).await.expect("login");
    assert_eq!(status, 200, "{response}");
    let response: Value = serde_json::from_str(&response).expect("JSON body");
    let token = response["token"].as_str().expect("token");
    assert!(response["expiresAt"].as_str().is_some_and(|t| t.ends_with('Z')), "{response}");
    assert_eq!(response["user"]["email"], ADMIN_EMAIL);
    // The token works on the socket.
    let client = TestClient::connect_ws(stack.url(), token).await.expect("connect with the login token");
    client.ack("ping", json!({})).await.expect("ping");

    let body = json!({"email": ADMIN_EMAIL, "password": "wrong"}).to_string();
    let (status, response) = http_request(addr, "POST", "/auth/login", Some(&body)).await.expect("login");
    assert_eq!(status, 401, "{response}");
    let (status, _) = http_request(addr, "POST", "/auth/login", Some("[]")).await.expect("login");
    assert_eq!(status, 400);

    let (status, metrics) = http_request(addr, "GET", "/metrics", None).await.expect("metrics");
    assert_eq!(status, 200);
    for name in [
        "switchboard_edge_connects_total 1",
        "switchboard_edge_sockets 1",
        "switchboard_edge_events_total{event=\"ping\",outcome=\"ok\"} 1",
    ] {
        assert!(metrics.lines().any(|line| line == name), "{name} missing in\n{metrics}");
    }
    // Not ready once auth is gone.
    client.disconnect().await;
    let TestStack { auth, edges, .. } = stack;
    auth.stop().await.expect("stop auth");
    sb_tests::wait_until("edge not ready without auth", Duration::from_secs(10), || async {
        let (status, _) = http_request(addr, "GET", "/readyz", None).await.ok()?;
        (status == 503).then_some(())
    })
    .await;
    for edge in edges {
        edge.stop().await.expect("stop edge");
    }
}
