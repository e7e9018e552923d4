//! `HANDSHAKE_TIMEOUT`: a TCP connection that sends no whole HTTP request
//! (nothing at all, or half a request line), and an Engine.IO WebSocket that
//! never sends the Socket.IO CONNECT, are closed after the timeout and
//! counted; connections that did their part are not touched.

use std::time::{Duration, Instant};

use sb_tests::DbKind;
use sb_tests::edge::TestClient;
use sb_tests::stack::{StackOptions, TestStack};
use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

const TIMEOUT: Duration = Duration::from_secs(1);
const IDLE_CONNECTIONS: usize = 200;

/// Reads until the peer closes the connection (EOF or a reset); how long
/// that took, or `None` if it stayed open for `within`.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    tokio::time::timeout(within, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return started.elapsed(),
                Ok(_) => {}
            }
        }
    })
    .await
    .ok()
}

#[tokio::test]
async fn connections_that_never_finish_the_handshake_are_closed() {
    let options = StackOptions::new(DbKind::Sqlite).edges_with(|config| config.handshake_timeout = TIMEOUT);
    let stack = TestStack::start_with(options).await.expect("stack");
    let addr = stack.edges[0].addr;
    let alice = stack.user("alice").await.expect("alice");
    let client = TestClient::connect_ws(stack.url(), &alice.token).await.expect("a real client connects");

    let mut idle = Vec::new();
    for _ in 0..IDLE_CONNECTIONS {
        idle.push(TcpStream::connect(addr).await.expect("raw TCP connect"));
    }
    let mut half = TcpStream::connect(addr).await.expect("connect");
    half.write_all(b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n").await.expect("half a request");
    let mut websocket = TcpStream::connect(addr).await.expect("connect");
    websocket
        .write_all(
            b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\
              Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        )
        .await
        .expect("a WebSocket upgrade without a Socket.IO CONNECT after it");
    // A client that made a request and keeps its connection (keep-alive) is not closed.
    let mut answered = TcpStream::connect(addr).await.expect("connect");
    answered.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.expect("a whole request");
    let mut response = [0u8; 512];
    let n = answered.read(&mut response).await.expect("an answer");
    assert!(response[..n].starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&response[..n]));

    let bound = TIMEOUT * 4;
    for (i, stream) in idle.iter_mut().enumerate() {
        let took = closed_within(stream, bound).await;
        assert!(took.is_some(), "idle connection {i} still open {bound:?} after the timeout");
    }
    assert!(closed_within(&mut half, bound).await.is_some(), "half a request: closed");
    assert!(closed_within(&mut websocket, bound).await.is_some(), "WebSocket without CONNECT: closed");
    assert!(closed_within(&mut answered, Duration::from_millis(500)).await.is_none(), "a connection that asked stays");

    // The real client was never affected.
    client.ack("join_room", json!({"room": "lobby"})).await.expect("the client still works");
    let (_, metrics) = sb_tests::http::http_get(addr, "/metrics").await.expect("metrics");
    let closed: f64 = metrics
        .lines()
        .find(|line| line.contains("connect_rejects") && line.contains("handshake_timeout"))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("a handshake_timeout count in the metrics:\n{metrics}"));
    assert!(closed >= (IDLE_CONNECTIONS + 1) as f64, "counted {closed}");
    client.disconnect().await;
    stack.stop().await.expect("stop");
}
