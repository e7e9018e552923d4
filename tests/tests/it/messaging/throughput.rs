//! A rough measurement of store + route throughput, not a pass/fail test
//! (run by hand, ideally in release):
//!
//! ```text
//! cargo test --release -p sb-tests --test it messaging::throughput -- --ignored --nocapture
//! ```
//!
//! It fills the ingest stream first (`THROUGHPUT_MESSAGES`, default 20000 room
//! messages over 50 rooms), then starts one messaging replica and times how long
//! it takes until every message is stored, routed (received by a subscriber
//! on `deliver.room.*`) and acked.

use std::time::Instant;

use super::*;

async fn measure(kind: DbKind) {
    let total: usize = std::env::var("THROUGHPUT_MESSAGES").ok().and_then(|n| n.parse().ok()).unwrap_or(20_000);
    let env = Arc::new(Env::start(kind).await);
    let watched = env.watch(&[format!("{}.deliver.room.*", env.edge.subjects.prefix())]).await;
    let mut publishers = Vec::new();
    for publisher in 0..8 {
        let env = env.clone();
        publishers.push(tokio::spawn(async move {
            for n in (publisher..total).step_by(8) {
                env.publish(&room_message(&format!("room-{}", n % 50), "alice", &format!("message {n}"))).await;
            }
        }));
    }
    for publisher in publishers {
        publisher.await.expect("publisher");
    }

    let started = Instant::now();
    let messaging = env.messaging().await;
    wait_until("every message routed", Duration::from_secs(600), || async {
        (watched.all().await.len() >= total).then_some(())
    })
    .await;
    wait_for_consumer_idle(&env.edge).await;
    let elapsed = started.elapsed();
    let metrics = sb_tests::http::scrape_metrics(messaging.metrics_addr).await.expect("metrics");
    let stored = sb_tests::http::metric_value(&metrics, "messaging_messages_stored_total").unwrap_or(0.0);
    let batches = sb_tests::http::metric_value(&metrics, "messaging_batch_size_count").unwrap_or(0.0);
    let store_seconds = sb_tests::http::metric_value(&metrics, "messaging_store_seconds_sum").unwrap_or(0.0);
    println!(
        "{kind:?}: {total} messages stored+routed+acked in {:.2} s = {:.0} msg/s ({stored} stored, {batches} batches, \
         mean batch {:.0}, {:.1} ms per batch write)",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64(),
        total as f64 / batches.max(1.0),
        store_seconds * 1000.0 / batches.max(1.0),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement; run by hand with --ignored --nocapture"]
async fn postgres() {
    measure(DbKind::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement; run by hand with --ignored --nocapture"]
async fn sqlite() {
    measure(DbKind::Sqlite).await;
}
