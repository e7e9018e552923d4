//! `switchboard.edge.v1.EdgeControl` (served by presence) against real
//! edges: kicks, the edge list, the transport in `GetUser`, drains started
//! by the RPC and by the stop signal.

use std::time::{Duration, Instant};

use sb_proto::edge::v1 as pb;
use sb_proto::edge::v1::edge_control_client::EdgeControlClient;
use sb_proto::presence::v1 as presence_pb;
use sb_proto::presence::v1::presence_service_client::PresenceServiceClient;
use sb_tests::auth::AuthHandle;
use sb_tests::edge::{TestClient, TokenVia, Transport};
use sb_tests::http::{http_get, http_response, metric_value, scrape_metrics};
use sb_tests::stack::{StackOptions, TestStack};
use sb_tests::{DbKind, wait_until};
use serde_json::json;
use tonic::Code;
use tonic::transport::Channel;

async fn presence_channel(stack: &TestStack) -> Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{}", stack.presence.grpc_addr))
        .expect("uri")
        .connect()
        .await
        .expect("connect to presence")
}

async fn list_edges(client: &mut EdgeControlClient<Channel>, stack: &TestStack) -> Vec<pb::Edge> {
    client.list_edges(stack.auth.as_admin(pb::ListEdgesRequest {})).await.expect("list edges").into_inner().edges
}

#[tokio::test]
async fn edge_control_lists_edges_kicks_users_and_refuses_bad_calls() {
    let options = StackOptions { edges: 2, ..StackOptions::new(DbKind::Sqlite) };
    let stack = TestStack::start_with(options).await.expect("start stack");
    let alice = stack.user("alice").await.expect("alice");
    let bob = stack.user("bob").await.expect("bob");
    let offline = stack.user("olive").await.expect("olive");
    let a1 = TestClient::connect_ws(&stack.edges[0].url, &alice.token).await.expect("alice on A");
    let a2 = TestClient::connect(&stack.edges[1].url, Some(&alice.token), TokenVia::AuthObject, Transport::Polling)
        .await
        .expect("alice on B over polling");
    let b = TestClient::connect_ws(&stack.edges[1].url, &bob.token).await.expect("bob on B");
    let mut control = EdgeControlClient::new(presence_channel(&stack).await);

    // ListEdges: both edges, from their heartbeats (every 2 s).
    let edges = wait_until("both edges report their sockets", Duration::from_secs(10), || {
        let mut control = control.clone();
        let stack = &stack;
        async move {
            let edges = list_edges(&mut control, stack).await;
            (edges.len() == 2 && edges.iter().map(|e| e.sockets).sum::<u64>() == 3).then_some(edges)
        }
    })
    .await;
    let mut expected: Vec<&str> = stack.edges.iter().map(|e| e.edge_id.as_str()).collect();
    expected.sort();
    assert_eq!(edges.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(), expected, "ordered by id");
    for edge in &edges {
        let handle = stack.edges.iter().find(|h| h.edge_id == edge.id).expect("a known edge");
        assert_eq!(edge.address, handle.url, "the advertised address defaults to the bound one");
        assert_eq!(edge.version, env!("CARGO_PKG_VERSION"));
        assert!(!edge.draining);
        assert!(edge.last_heartbeat_ms > 0);
        let (sockets, users) = if handle.edge_id == stack.edges[0].edge_id { (1, 1) } else { (2, 2) };
        assert_eq!((edge.sockets, edge.users), (sockets, users), "{edge:?}");
    }

    // GetUser shows each session's transport.
    let mut presence = PresenceServiceClient::new(presence_channel(&stack).await);
    let user = presence
        .get_user(stack.auth.as_admin(presence_pb::GetUserRequest { id: alice.id.clone() }))
        .await
        .expect("get user")
        .into_inner();
    let mut transports: Vec<(String, String)> =
        user.sessions.iter().map(|s| (s.edge_id.clone(), s.transport.clone())).collect();
    transports.sort();
    let mut wanted = vec![
        (stack.edges[0].edge_id.clone(), "websocket".to_owned()),
        (stack.edges[1].edge_id.clone(), "polling".to_owned()),
    ];
    wanted.sort();
    assert_eq!(transports, wanted);

    // Refusals: no token, not an admin, bad arguments naming the field.
    let status = control.kick(pb::KickRequest { user_id: alice.id.clone(), reason: String::new() }).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    let status = control
        .drain(AuthHandle::with_token(
            pb::DrainRequest { edge_id: stack.edges[0].edge_id.clone(), over: "1s".into() },
            &bob.token,
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    let status = control
        .kick(stack.auth.as_admin(pb::KickRequest { user_id: " ".into(), reason: String::new() }))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("user_id"), "{status:?}");
    let status = control
        .kick(stack.auth.as_admin(pb::KickRequest { user_id: alice.id.clone(), reason: "x".repeat(501) }))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("reason"), "{status:?}");
    let drain = |edge_id: &str, over: &str| {
        stack.auth.as_admin(pb::DrainRequest { edge_id: edge_id.to_owned(), over: over.to_owned() })
    };
    let status = control.drain(drain("", "1s")).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("edge_id"), "{status:?}");
    let status = control.drain(drain(&stack.edges[0].edge_id, "soon")).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("over"), "{status:?}");
    let status = control.drain(drain("no-such-edge", "1s")).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status:?}");

    // An offline user: nothing to kick, every edge answered.
    let kicked = control
        .kick(stack.auth.as_admin(pb::KickRequest { user_id: offline.id.clone(), reason: String::new() }))
        .await
        .expect("kick offline")
        .into_inner();
    assert_eq!((kicked.sockets, kicked.edges), (0, 2));

    // Alice everywhere: every socket gets the reason and is gone within a second.
    let started = Instant::now();
    let kicked = control
        .kick(stack.auth.as_admin(pb::KickRequest { user_id: alice.id.clone(), reason: "spamming".into() }))
        .await
        .expect("kick alice")
        .into_inner();
    assert_eq!((kicked.sockets, kicked.edges), (2, 2));
    for client in [&a1, &a2] {
        let exception = client.event("exception").await.expect("exception");
        assert_eq!(exception["message"], "spamming");
        client.closed().await.expect("kicked");
    }
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(1), "kicked sockets gone after {elapsed:?}");
    b.ack("ping", json!({})).await.expect("bob stays");
    stack.stop().await.expect("stop stack");
}

#[tokio::test]
async fn drain_rpc_fails_readiness_refuses_handshakes_and_closes_every_transport() {
    let options = StackOptions { edges: 2, ..StackOptions::new(DbKind::Sqlite) };
    let stack = TestStack::start_with(options).await.expect("start stack");
    let (edge_a, edge_b) = (&stack.edges[0], &stack.edges[1]);
    let mut clients = Vec::new();
    let mut users = Vec::new();
    for i in 0..6 {
        let user = stack.user(&format!("drained{i}")).await.expect("user");
        let transport = if i % 2 == 0 { Transport::Websocket } else { Transport::Polling };
        let client = TestClient::connect(&edge_a.url, Some(&user.token), TokenVia::AuthObject, transport)
            .await
            .expect("connect to A");
        client.ack("join_room", json!({"room": "drain"})).await.expect("join");
        let sent =
            client.ack("send_message", json!({"room": "drain", "message": format!("before {i}")})).await.expect("send");
        users.push((user, sent["id"].as_str().expect("message id").to_owned()));
        clients.push(client);
    }
    let mut control = EdgeControlClient::new(presence_channel(&stack).await);
    wait_until("presence hears edge A", Duration::from_secs(10), || {
        let mut control = control.clone();
        let stack = &stack;
        async move {
            list_edges(&mut control, stack)
                .await
                .iter()
                .any(|e| e.id == stack.edges[0].edge_id && e.sockets == 6)
                .then_some(())
        }
    })
    .await;

    let started = Instant::now();
    let drained = control
        .drain(stack.auth.as_admin(pb::DrainRequest { edge_id: edge_a.edge_id.clone(), over: "2s".into() }))
        .await
        .expect("drain A")
        .into_inner();
    assert_eq!((drained.edge_id.as_str(), drained.sockets, drained.over_ms), (edge_a.edge_id.as_str(), 6, 2000));

    // Not ready at once, and new handshakes are refused with a clear 503.
    let (status, body) = http_get(edge_a.addr, "/readyz").await.expect("readyz");
    assert!(status.contains("503"), "{status} {body}");
    assert!(body.contains("draining"), "{body}");
    let response =
        http_response(edge_a.addr, "GET", "/socket.io/?EIO=4&transport=polling", None).await.expect("handshake");
    assert!(response.starts_with("HTTP/1.1 503"), "{response}");
    assert!(response.contains(sb_edge::drain::DRAINING_MESSAGE), "{response}");
    let (status, _) = http_get(edge_b.addr, "/readyz").await.expect("readyz of B");
    assert!(status.contains("200"), "B is not draining: {status}");

    // Every transport is closed (not a Socket.IO DISCONNECT), spread over the drain.
    for client in &clients {
        client.closed().await.expect("closed by the drain");
    }
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(200), "the first tenth of the drain closes nothing: {elapsed:?}");
    let metrics = scrape_metrics(edge_a.addr).await.expect("metrics");
    assert_eq!(metric_value(&metrics, "switchboard_edge_drain_closes_total"), Some(6.0), "{metrics}");
    for transport in ["websocket", "polling"] {
        let series = format!("switchboard_edge_drain_closes_total{{transport=\"{transport}\"}} 3");
        assert!(metrics.lines().any(|line| line == series), "{series} in {metrics}");
    }
    assert_eq!(metric_value(&metrics, "switchboard_edge_draining"), Some(1.0));

    // A second drain changes nothing; the list shows A draining and empty.
    let again = control
        .drain(stack.auth.as_admin(pb::DrainRequest { edge_id: edge_a.edge_id.clone(), over: "9s".into() }))
        .await
        .expect("drain again")
        .into_inner();
    assert_eq!((again.sockets, again.over_ms), (6, 2000));
    wait_until("A is listed draining and empty", Duration::from_secs(10), || {
        let mut control = control.clone();
        let stack = &stack;
        async move {
            let edges = list_edges(&mut control, stack).await;
            let a = edges.iter().find(|e| e.id == stack.edges[0].edge_id)?;
            let b = edges.iter().find(|e| e.id == stack.edges[1].edge_id)?;
            (a.draining && a.sockets == 0 && !b.draining).then_some(())
        }
    })
    .await;

    // What the clients sent before their socket closed is stored: read it from B.
    let (reader, _) = &users[0];
    let reader = TestClient::connect_ws(&edge_b.url, &reader.token).await.expect("reconnect to B");
    reader.ack("join_room", json!({"room": "drain"})).await.expect("join on B");
    let history = reader.ack("get_history", json!({"room": "drain"})).await.expect("history");
    let stored: Vec<&str> =
        history["messages"].as_array().expect("messages").iter().filter_map(|m| m["id"].as_str()).collect();
    for (_, id) in &users {
        assert!(stored.contains(&id.as_str()), "{id} missing from {stored:?}");
    }
    stack.stop().await.expect("stop stack");
}

#[tokio::test]
async fn a_stop_signal_drains_the_sockets_gradually_then_stops() {
    let options = StackOptions { edges: 2, ..StackOptions::new(DbKind::Sqlite) }.edges_with(|config| {
        config.drain_duration = Duration::from_secs(2);
        config.shutdown_timeout = Duration::from_secs(10);
    });
    let mut stack = TestStack::start_with(options).await.expect("start stack");
    let mut clients = Vec::new();
    for i in 0..4 {
        let user = stack.user(&format!("stopped{i}")).await.expect("user");
        let transport = if i % 2 == 0 { Transport::Websocket } else { Transport::Polling };
        clients.push(
            TestClient::connect(&stack.edges[1].url, Some(&user.token), TokenVia::AuthObject, transport)
                .await
                .expect("connect"),
        );
    }
    let edge = stack.edges.pop().expect("edge B");
    let addr = edge.addr;
    let started = Instant::now();
    edge.begin_stop();
    wait_until("not ready once stopping", Duration::from_secs(2), || async move {
        let (status, _) = http_get(addr, "/readyz").await.ok()?;
        status.contains("503").then_some(())
    })
    .await;
    let response = http_response(addr, "GET", "/socket.io/?EIO=4&transport=polling", None).await.expect("handshake");
    assert!(response.starts_with("HTTP/1.1 503"), "handshakes refused while draining: {response}");
    let mut closed_at = Vec::new();
    for client in &clients {
        client.closed().await.expect("closed by the drain");
        closed_at.push(started.elapsed());
    }
    tokio::time::timeout(Duration::from_secs(10), edge.stop()).await.expect("stops in time").expect("stops cleanly");
    let stopped = started.elapsed();
    println!("stop-signal drain of 4 sockets over 2s: closed at {closed_at:?}, stopped after {stopped:?}");
    assert!(closed_at[0] >= Duration::from_millis(200), "nothing closes in the first tenth: {closed_at:?}");
    assert!(stopped >= Duration::from_millis(1500), "the closes were spread over the drain: {stopped:?}");
    stack.stop().await.expect("stop stack");
}
