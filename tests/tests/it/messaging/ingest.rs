//! Store and route: each kind reaches the right subjects in the client
//! payload shape, once stored, and ids are idempotent.

use serde_json::json;

use super::*;

on_both_backends!(
    room_message_is_stored_and_routed_to_the_room,
    private_message_reaches_recipient_and_senders_other_sockets,
    broadcast_and_announcement_reach_everyone,
    same_id_published_twice_is_stored_once,
    invalid_ingest_messages_are_dropped_and_the_rest_flows,
    messages_accepted_while_messaging_is_down_are_stored_when_it_returns,
    a_failed_store_is_retried_and_nothing_is_routed_before_it_succeeds,
    a_deleted_consumer_is_recreated,
);

async fn room_message_is_stored_and_routed_to_the_room(kind: DbKind) {
    let env = Env::start(kind).await;
    let _messaging = env.messaging().await;
    // A room name that would be a wildcard if it reached a subject raw.
    let lobby = env.watch(&[env.edge.subjects.deliver_room(&room("a.*"))]).await;
    let other = env.watch(&[env.edge.subjects.deliver_room(&room("a.b"))]).await;

    let message = room_message("a.*", "alice", "hello room");
    env.publish(&message).await;

    let received = lobby.wait_for(1).await;
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].delivery.event, "new_message");
    assert_eq!(received[0].delivery.except_socket, None);
    assert_eq!(
        received[0].json(),
        json!({
            "id": message.id,
            "from": {"id": "alice", "email": "alice@example.com"},
            "room": "a.*",
            "message": "hello room",
            "timestamp": sb_events::timestamp::rfc3339_ms(message.timestamp_ms),
        })
    );
    let db = env.database().await;
    assert_eq!(stored_count(&db, &message.id).await, 1);
    assert_eq!(stored_rows(&db).await.get(&message.id), Some(&true), "room messages are never pending");
    wait_for_consumer_idle(&env.edge).await;
    assert!(other.all().await.is_empty(), "another room got the message");
}

async fn private_message_reaches_recipient_and_senders_other_sockets(kind: DbKind) {
    let env = Env::start(kind).await;
    let _messaging = env.messaging().await;
    let bob = env.watch(&[env.edge.subjects.deliver_user(&user("bob"))]).await;
    let alice = env.watch(&[env.edge.subjects.deliver_user(&user("alice"))]).await;
    let carol = env.watch(&[env.edge.subjects.deliver_user(&user("carol"))]).await;

    let message = private_message("alice", "bob", "psst");
    env.publish(&message).await;

    let expected = json!({
        "id": message.id,
        "from": {"id": "alice", "email": "alice@example.com"},
        "to": "bob",
        "message": "psst",
        "timestamp": sb_events::timestamp::rfc3339_ms(message.timestamp_ms),
    });
    let to_bob = bob.wait_for(1).await;
    assert_eq!(to_bob[0].subject, env.edge.subjects.deliver_user(&user("bob")));
    assert_eq!(to_bob[0].delivery.event, "new_message");
    assert_eq!(to_bob[0].json(), expected);
    assert_eq!(to_bob[0].delivery.except_socket, None);
    let to_alice = alice.wait_for(1).await;
    assert_eq!(to_alice[0].json(), expected);
    assert_eq!(
        to_alice[0].delivery.except_socket.as_deref(),
        Some("socket-of-alice"),
        "the sending socket must be skipped, the sender's other sockets not"
    );
    wait_for_consumer_idle(&env.edge).await;
    assert_eq!(bob.all().await.len(), 1);
    assert_eq!(alice.all().await.len(), 1);
    assert!(carol.all().await.is_empty());
    assert_eq!(stored_count(&env.database().await, &message.id).await, 1);
}

async fn broadcast_and_announcement_reach_everyone(kind: DbKind) {
    let env = Env::start(kind).await;
    let _messaging = env.messaging().await;
    let everyone = env.watch(&[env.edge.subjects.deliver_all()]).await;

    let broadcast = accepted(MessageKind::Broadcast, "alice", "hi all");
    let announcement = accepted(MessageKind::Announcement, "admin", "maintenance at noon");
    env.publish(&broadcast).await;
    env.publish(&announcement).await;

    let received = everyone.wait_for(2).await;
    let by_event: HashMap<&str, &Received> =
        received.iter().map(|received| (received.delivery.event.as_str(), received)).collect();
    assert_eq!(
        by_event["new_message"].json(),
        json!({
            "id": broadcast.id,
            "from": {"id": "alice", "email": "alice@example.com"},
            "message": "hi all",
            "timestamp": sb_events::timestamp::rfc3339_ms(broadcast.timestamp_ms),
        })
    );
    assert_eq!(
        by_event["admin_announcement"].json(),
        json!({
            "id": announcement.id,
            "from": {"id": "admin", "email": "admin@example.com"},
            "message": "maintenance at noon",
            "timestamp": sb_events::timestamp::rfc3339_ms(announcement.timestamp_ms),
        })
    );
    let db = env.database().await;
    assert_eq!(stored_count(&db, &broadcast.id).await, 1);
    assert_eq!(stored_count(&db, &announcement.id).await, 1);
}

async fn same_id_published_twice_is_stored_once(kind: DbKind) {
    let env = Env::start(kind).await;
    let messaging = env.messaging().await;
    let lobby = env.watch(&[env.edge.subjects.deliver_room(&room("lobby"))]).await;
    let message = room_message("lobby", "alice", "once");
    env.publish(&message).await;
    lobby.wait_for(1).await;
    // The same message again under another de-duplication id, as after the
    // stream's window passed: the stream keeps it, messaging must not store it twice.
    env.edge
        .publish_durable(ingest_subject(&env.edge, &message), &format!("{}-again", message.id), &message)
        .await
        .expect("stream accepts the re-publish");
    // Routing again is the at-least-once side of the contract.
    lobby.wait_for(2).await;
    wait_for_consumer_idle(&env.edge).await;
    let db = env.database().await;
    assert_eq!(stored_count(&db, &message.id).await, 1);
    assert_eq!(stored_rows(&db).await.len(), 1);
    let metrics = sb_tests::http::scrape_metrics(messaging.metrics_addr).await.expect("scrape metrics");
    assert_eq!(sb_tests::http::metric_value(&metrics, "switchboard_messaging_messages_stored_total"), Some(1.0));
    assert_eq!(sb_tests::http::metric_value(&metrics, "switchboard_messaging_messages_duplicate_total"), Some(1.0));
}

async fn invalid_ingest_messages_are_dropped_and_the_rest_flows(kind: DbKind) {
    let env = Env::start(kind).await;
    let messaging = env.messaging().await;
    let lobby = env.watch(&[env.edge.subjects.deliver_room(&room("lobby"))]).await;

    let subject = env.edge.subjects.ingest(&MessageTarget::Room(room("lobby")));
    env.edge.publish_durable(subject.clone(), "garbage-1", "not a message").await.expect("stream accepts bytes");
    // A room message without its room: no edge can build one any more, so
    // the test writes its JSON by hand.
    let no_room = room_message("lobby", "alice", "where to?");
    let mut no_room_json = serde_json::to_value(&no_room).expect("encode");
    no_room_json.as_object_mut().expect("an object").remove("room");
    env.edge.publish_durable(subject.clone(), &no_room.id, &no_room_json).await.expect("stream accepts it");
    let good = room_message("lobby", "alice", "fine");
    env.publish(&good).await;

    let received = lobby.wait_for(1).await;
    assert_eq!(received[0].id(), good.id);
    // Terminated, not waiting for a retry: the consumer is idle and the
    // work-queue stream holds nothing.
    wait_for_consumer_idle(&env.edge).await;
    let db = env.database().await;
    assert_eq!(stored_rows(&db).await.len(), 1);
    let metrics = sb_tests::http::scrape_metrics(messaging.metrics_addr).await.expect("scrape metrics");
    assert_eq!(sb_tests::http::metric_value(&metrics, "switchboard_messaging_messages_rejected_total"), Some(2.0));
    assert_eq!(lobby.all().await.len(), 1);
}

async fn messages_accepted_while_messaging_is_down_are_stored_when_it_returns(kind: DbKind) {
    let env = Env::start(kind).await;
    let lobby = env.watch(&[env.edge.subjects.deliver_room(&room("lobby"))]).await;
    let first = env.messaging().await;
    let before_stop = room_message("lobby", "alice", "before");
    env.publish(&before_stop).await;
    lobby.wait_for(1).await;
    first.stop().await.expect("messaging stops cleanly");

    let while_down: Vec<MessageAccepted> =
        (0..20).map(|n| room_message("lobby", "alice", &format!("while down {n}"))).collect();
    for message in &while_down {
        env.publish(message).await;
    }
    let _second = env.messaging().await;
    let received = lobby.wait_for(1 + while_down.len()).await;
    let ids: Vec<String> = received.iter().map(Received::id).collect();
    let expected: Vec<String> = std::iter::once(&before_stop).chain(&while_down).map(|m| m.id.to_string()).collect();
    assert_eq!(ids, expected, "the stream kept them, in order, and one replica routes in order");
    assert_eq!(stored_rows(&env.database().await).await.len(), expected.len());
}

async fn a_failed_store_is_retried_and_nothing_is_routed_before_it_succeeds(kind: DbKind) {
    let env = Env::start(kind).await;
    let messaging = env.messaging().await;
    let lobby = env.watch(&[env.edge.subjects.deliver_room(&room("lobby"))]).await;
    let db = env.database().await;
    // Take the table away: every insert fails until it is back.
    sqlx::query("ALTER TABLE messages RENAME TO messages_away").execute(&db.pool).await.expect("rename table");
    let message = room_message("lobby", "alice", "eventually");
    env.publish(&message).await;
    wait_until("a failed batch", WAIT, || async {
        let metrics = sb_tests::http::scrape_metrics(messaging.metrics_addr).await.ok()?;
        (sb_tests::http::metric_value(&metrics, "switchboard_messaging_batches_failed_total")? >= 2.0).then_some(())
    })
    .await;
    assert!(lobby.all().await.is_empty(), "a message must not be routed before it is stored");

    sqlx::query("ALTER TABLE messages_away RENAME TO messages").execute(&db.pool).await.expect("rename table back");
    let received = lobby.wait_for(1).await;
    assert_eq!(received[0].id(), message.id);
    assert_eq!(stored_count(&db, &message.id).await, 1);
}

async fn a_deleted_consumer_is_recreated(kind: DbKind) {
    let env = Env::start(kind).await;
    let _messaging = env.messaging().await;
    let lobby = env.watch(&[env.edge.subjects.deliver_room(&room("lobby"))]).await;
    let before = room_message("lobby", "alice", "before");
    env.publish(&before).await;
    lobby.wait_for(1).await;

    let stream = env.edge.jetstream.get_stream(env.edge.subjects.ingest_stream()).await.expect("ingest stream");
    stream.delete_consumer(sb_events::MESSAGING_CONSUMER).await.expect("delete the consumer");
    let after = room_message("lobby", "alice", "after");
    env.publish(&after).await;
    let received = lobby.wait_for(2).await;
    assert_eq!(received[1].id(), after.id);
}

/// One trace from the edge's publish to the delivery messaging publishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_continues_the_producers_trace() {
    let env = Env::start(DbKind::Sqlite).await;
    let _messaging = env.messaging().await;
    let lobby = env.watch(&[env.edge.subjects.deliver_room(&room("lobby"))]).await;

    let span = tracing::info_span!("edge.send_message");
    let mut headers = async_nats::HeaderMap::new();
    span.in_scope(|| sb_telemetry::nats::inject(&mut headers));
    let producer_traceparent = headers.get("traceparent").expect("the test span has a trace").as_str().to_owned();
    let message = room_message("lobby", "alice", "traced");
    {
        use tracing::Instrument as _;
        env.publish(&message).instrument(span).await;
    }

    let received = lobby.wait_for(1).await;
    let delivery_traceparent = received[0].traceparent.clone().expect("the delivery carries a traceparent");
    let trace_id = |traceparent: &str| traceparent.split('-').nth(1).map(str::to_owned);
    assert_eq!(trace_id(&delivery_traceparent), trace_id(&producer_traceparent));
}
