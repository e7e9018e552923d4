//! The edge-side reporter (`sb-presence-client`) against a real JetStream.

use std::time::Duration;

use async_nats::jetstream::consumer::pull::OrderedConfig;
use futures_util::StreamExt as _;
use sb_events::bus::Bus;
use sb_events::control::{EdgeCommand, EdgeCommandDone};
use sb_events::presence::{EdgeHeartbeat, PresenceEvent, PresenceEventKind};
use sb_tests::NatsServer;
use sb_tests::presence::{SimEdge, user};

/// Reads every event the presence stream holds right now, with its stream sequence.
async fn stream_events(bus: &Bus) -> Vec<(u64, PresenceEvent, String)> {
    let stream = bus.jetstream.get_stream(bus.subjects.presence_stream()).await.expect("presence stream");
    let last = stream.get_info().await.expect("stream info").state.last_sequence;
    let consumer = stream.create_consumer(OrderedConfig::default()).await.expect("ordered consumer");
    let mut messages = consumer.messages().await.expect("messages");
    let mut events = Vec::new();
    while events.last().is_none_or(|(seq, _, _): &(u64, PresenceEvent, String)| *seq < last) {
        let message = tokio::time::timeout(Duration::from_secs(5), messages.next())
            .await
            .expect("stream message in time")
            .expect("stream open")
            .expect("stream message");
        let seq = message.info().expect("jetstream message").stream_sequence;
        let id = message
            .headers
            .as_ref()
            .and_then(|h| h.get(sb_events::HEADER_MSG_ID))
            .map(|v| v.as_str().to_owned())
            .unwrap_or_default();
        events.push((seq, serde_json::from_slice(&message.payload).expect("presence event json"), id));
    }
    events
}

#[tokio::test]
async fn events_are_stored_in_order_with_consecutive_seq_and_msg_ids() {
    let nats = NatsServer::start().await.expect("nats");
    let edge = SimEdge::start(nats.url(), "edge-a", Duration::from_millis(200)).await.expect("edge");
    let alice = user("alice");
    edge.connect("s1", &alice);
    let join_seq = edge.join("s1", "lobby").await.expect("join stored");
    edge.leave("s1", "lobby").expect("leave");
    edge.disconnect("s1");
    edge.reporter.shutdown().await.expect("shutdown");

    let events = stream_events(&edge.bus).await;
    let kinds: Vec<&str> = events
        .iter()
        .map(|(_, e, _)| match e.kind {
            PresenceEventKind::EdgeUp => "up",
            PresenceEventKind::SessionOpened { .. } => "open",
            PresenceEventKind::RoomJoined { .. } => "join",
            PresenceEventKind::RoomLeft { .. } => "leave",
            PresenceEventKind::SessionClosed { .. } => "close",
            PresenceEventKind::EdgeDown { .. } => "down",
            PresenceEventKind::Snapshot { .. } => "snapshot",
        })
        .collect();
    assert_eq!(kinds, ["up", "open", "join", "leave", "close", "down"]);
    for (index, (_, event, id)) in events.iter().enumerate() {
        assert_eq!(event.seq, index as u64 + 1, "consecutive seq");
        assert_eq!(event.incarnation, edge.reporter.incarnation());
        assert_eq!(id, &event.msg_id(), "Nats-Msg-Id");
    }
    let (stream_seq_of_join, _, _) = events[2];
    assert_eq!(join_seq, stream_seq_of_join, "room_joined returns the stream sequence of the join");
}

#[tokio::test]
async fn events_reported_while_nats_is_down_are_each_stored_once() {
    let nats = NatsServer::start().await.expect("nats");
    let edge = SimEdge::start(nats.url(), "edge-a", Duration::from_millis(200)).await.expect("edge");
    let url = nats.url().to_owned();
    let mut nats = nats;
    nats.kill();
    for i in 0..50 {
        edge.connect(&format!("s{i}"), &user(&format!("u{i}")));
    }
    let nats = nats.restart().await.expect("restart nats");
    assert_eq!(nats.url(), url);
    sb_tests::wait_until("all 51 events stored", Duration::from_secs(30), || async {
        (edge.reporter.last_stored_seq() == 51).then_some(())
    })
    .await;
    let events = stream_events(&edge.bus).await;
    // Publishes buffered across the reconnect may overtake the ones lost with
    // the old connection; presence puts them back in seq order.
    let mut seqs: Vec<u64> = events.iter().map(|(_, e, _)| e.seq).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=51).collect::<Vec<_>>(), "each event stored exactly once");
}

#[tokio::test]
async fn snapshot_command_publishes_the_sessions_in_parts_and_heartbeats_count_them() {
    let nats = NatsServer::start().await.expect("nats");
    let edge = SimEdge::start(nats.url(), "edge-a", Duration::from_millis(100)).await.expect("edge");
    let observer = Bus::connect(&sb_config::NatsArgs::for_url(nats.url()), "observer").await.expect("observer");
    let edge_id = edge.reporter.edge().clone();
    let mut heartbeats = observer.client.subscribe(observer.subjects.presence_heartbeat(&edge_id)).await.expect("sub");

    for i in 0..1200 {
        edge.connect(&format!("s{i}"), &user(&format!("u{}", i % 700)));
    }
    edge.join("s0", "lobby").await.expect("join");
    let done: EdgeCommandDone = observer
        .request(observer.subjects.control_edge(&edge_id), &EdgeCommand::Snapshot { request_id: "r1".into() })
        .await
        .expect("snapshot answered");
    assert_eq!(done.sockets, 1200);

    let expected_seq = 1 + 1200 + 1 + 3; // EdgeUp, connects, join, 3 snapshot parts
    let heartbeat = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let message = heartbeats.next().await.expect("heartbeat subscription open");
            let heartbeat: EdgeHeartbeat = serde_json::from_slice(&message.payload).expect("heartbeat json");
            if heartbeat.last_seq == expected_seq {
                return heartbeat;
            }
        }
    })
    .await
    .expect("a heartbeat after the snapshot");
    assert_eq!(heartbeat.sockets, 1200);
    assert_eq!(heartbeat.incarnation, edge.reporter.incarnation());

    let events = stream_events(&edge.bus).await;
    let parts: Vec<(u32, bool, usize, bool)> = events
        .iter()
        .filter_map(|(_, e, _)| match &e.kind {
            PresenceEventKind::Snapshot { snapshot, part, last, sessions } => {
                Some((*part, *last, sessions.len(), snapshot == "r1"))
            }
            _ => None,
        })
        .collect();
    assert_eq!(parts, [(0, false, 500, true), (1, false, 500, true), (2, true, 200, true)]);
    let in_lobby = events.iter().any(|(_, e, _)| match &e.kind {
        PresenceEventKind::Snapshot { sessions, .. } => {
            sessions.iter().any(|s| s.socket == "s0" && s.rooms == ["lobby"])
        }
        _ => false,
    });
    assert!(in_lobby, "snapshot carries rooms");
}

#[tokio::test]
async fn kick_user_command_reaches_the_session_source() {
    let nats = NatsServer::start().await.expect("nats");
    let edge = SimEdge::start(nats.url(), "edge-a", Duration::from_millis(200)).await.expect("edge");
    edge.connect("s1", &user("mallory"));
    edge.connect("s2", &user("mallory"));
    edge.connect("s3", &user("bob"));
    let observer = Bus::connect(&sb_config::NatsArgs::for_url(nats.url()), "observer").await.expect("observer");
    let done: EdgeCommandDone = observer
        .request(
            observer.subjects.control_edges(),
            &EdgeCommand::KickUser { user_id: "mallory".into(), reason: "banned".into() },
        )
        .await
        .expect("kick answered");
    assert_eq!(done.sockets, 2);
    assert_eq!(edge.kicked(), [("mallory".to_owned(), "banned".to_owned())]);
}
