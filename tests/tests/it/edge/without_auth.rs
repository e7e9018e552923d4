//! What the edge does before auth answers: refuses connects clearly, reports
//! not ready, and says so on `/auth/login`.

use sb_tests::NatsServer;
use sb_tests::edge::{TestClient, TokenVia, Transport, edge_config, spawn_edge};
use sb_tests::http::http_request;

/// An address where nothing listens.
fn dead_auth_addr() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a probe port");
    let addr = listener.local_addr().expect("probe address");
    drop(listener);
    format!("http://{addr}")
}

#[tokio::test]
async fn connects_are_refused_with_a_reason_while_auth_is_down() {
    let nats = NatsServer::start().await.expect("start nats");
    let edge = spawn_edge(edge_config(nats.url(), &dead_auth_addr())).await.expect("start edge");

    let refused = TestClient::refusal(&edge.url, None, TokenVia::AuthObject, Transport::Websocket).await;
    assert_eq!(refused.expect("refused"), "token missing");
    let refused = TestClient::refusal(&edge.url, Some("a.b.c"), TokenVia::AuthObject, Transport::Websocket).await;
    assert_eq!(refused.expect("refused"), "authentication unavailable, try again");
    let refused = TestClient::refusal(&edge.url, Some("a.b.c"), TokenVia::Query, Transport::Polling).await;
    assert_eq!(refused.expect("refused"), "authentication unavailable, try again");
    edge.stop().await.expect("stop edge");
}

#[tokio::test]
async fn http_endpoints_without_auth() {
    let nats = NatsServer::start().await.expect("start nats");
    let edge = spawn_edge(edge_config(nats.url(), &dead_auth_addr())).await.expect("start edge");

    assert_eq!(http_request(edge.addr, "GET", "/healthz", None).await.expect("healthz").0, 200);
    assert_eq!(http_request(edge.addr, "GET", "/readyz", None).await.expect("readyz").0, 503);
    let (status, body) = http_request(edge.addr, "GET", "/metrics", None).await.expect("metrics");
    assert_eq!(status, 200);
    assert!(body.contains("switchboard_edge_connects"), "{body}");

    let (status, body) = http_request(edge.addr, "POST", "/auth/login", Some("{not json")).await.expect("login");
    assert_eq!(status, 400, "{body}");
    let (status, body) =
        http_request(edge.addr, "POST", "/auth/login", Some(r#"{"email":"a@b.c"}"#)).await.expect("login");
    assert_eq!(status, 400, "{body}");
    let (status, body) = http_request(edge.addr, "POST", "/auth/login", Some(r#"{"email":"a@b.c","password":"x"}"#))
        .await
        .expect("login");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("authentication unavailable"), "{body}");
    edge.stop().await.expect("stop edge");
}
