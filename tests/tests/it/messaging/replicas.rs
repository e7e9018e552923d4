//! Two replicas share the durable consumer: every message is stored once and
//! delivered once.

use std::collections::HashSet;

use sb_tests::http::{metric_value, scrape_metrics};

use super::*;

on_both_backends!(two_replicas_store_and_deliver_each_message_once);

async fn two_replicas_store_and_deliver_each_message_once(kind: DbKind) {
    let env = Env::start(kind).await;
    let first = env.messaging().await;
    let second = env.messaging().await;
    let rooms = ["r0", "r1", "r2"];
    let subjects: Vec<String> = rooms.iter().map(|name| env.edge.subjects.deliver_room(&room(name))).collect();
    let watched = env.watch(&subjects).await;

    let total = 300;
    let mut published = HashSet::new();
    let env = Arc::new(env);
    // Three publishers at once, like three edges.
    let mut publishers = Vec::new();
    for name in rooms {
        let env = env.clone();
        publishers.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for n in 0..total / 3 {
                let message = room_message(name, "alice", &format!("{name}-{n}"));
                env.publish(&message).await;
                ids.push(message.id);
            }
            ids
        }));
    }
    for publisher in publishers {
        published.extend(publisher.await.expect("publisher task"));
    }
    assert_eq!(published.len(), total);

    watched.wait_for(total).await;
    wait_for_consumer_idle(&env.edge).await;
    // A final round trip: anything published before the consumer went idle has reached us.
    sb_tests::round_trip(&env.edge.client).await.expect("round trip");
    let received = watched.all().await;
    let delivered: Vec<String> = received.iter().map(Received::id).collect();
    let unique: HashSet<&String> = delivered.iter().collect();
    assert_eq!(delivered.len(), total, "each message delivered exactly once");
    assert_eq!(unique.len(), total);
    assert!(delivered.iter().all(|id| published.contains(id)));

    let rows = stored_rows(&env.database().await).await;
    assert_eq!(rows.len(), total);
    let mut stored_by_replica = Vec::new();
    for replica in [&first, &second] {
        let metrics = scrape_metrics(replica.metrics_addr).await.expect("scrape metrics");
        stored_by_replica.push(metric_value(&metrics, "switchboard_messaging_messages_stored_total").unwrap_or(0.0));
    }
    assert_eq!(
        stored_by_replica.iter().sum::<f64>(),
        total as f64,
        "stored once across replicas: {stored_by_replica:?}"
    );
    tracing::info!(?stored_by_replica, "work split between replicas");
}
