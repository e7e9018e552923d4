//! Messaging's ingest alone (a benchmark, not a test; `make bench` runs it):
//! a private nats-server and database, the ingest stream filled first with
//! `--messages` room messages over 50 rooms (as edge batches of `--batch`,
//! 1 = one stream message each), then one messaging replica started and timed
//! until every message is stored, routed (received on `deliver.room.*`) and
//! acked.
//!
//! ```sh
//! cargo run --release -p sb-tests --bin ingest_throughput -- --db sqlite --messages 20000 --batch 16
//! ```
//! Prints one JSON line: messages per second, batches, mean batch size and
//! write time.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures_util::StreamExt as _;
use sb_events::bus::Bus;
use sb_events::ingest::{BatchedMessage, IngestBatch, MessageAccepted, Origin};
use sb_events::{EdgeId, MessageBody, MessageId, MessageTarget, RoomName, Sender, UserId};
use sb_tests::messaging::{messaging_config, spawn_messaging};
use sb_tests::{DbKind, NatsServer, TestDatabase};

fn arg<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> T {
    args.windows(2).find(|pair| pair[0] == name).and_then(|pair| pair[1].parse().ok()).unwrap_or(default)
}

fn message(n: usize) -> anyhow::Result<MessageAccepted> {
    Ok(MessageAccepted {
        id: MessageId::new_v7(),
        target: MessageTarget::Room(RoomName::parse(format!("room-{}", n % 50))?),
        from: Sender { id: UserId::parse("alice")?, email: "alice@example.com".to_owned() },
        message: MessageBody::parse("message", &format!("message {n} {}", "x".repeat(60)), 4096)?,
        timestamp_ms: sb_events::timestamp::now_ms(),
        origin: Some(Origin { edge: "bench-edge".to_owned(), socket: "socket".to_owned() }),
    })
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let kind = match arg(&args, "--db", "sqlite".to_owned()).as_str() {
        "postgres" => DbKind::Postgres,
        _ => DbKind::Sqlite,
    };
    let total: usize = arg(&args, "--messages", 20_000);
    let batch: usize = arg(&args, "--batch", 1).max(1);
    let nats = NatsServer::start().await?;
    let db = TestDatabase::create(kind).await?;
    let bus = Bus::connect(&sb_config::NatsArgs::for_url(nats.url()), "ingest-bench").await?;
    bus.ensure_ingest_stream(1).await?;
    let mut routed = bus.client.subscribe(format!("{}.deliver.room.*", bus.subjects.prefix())).await?;
    sb_tests::round_trip(&bus.client).await?;

    let edge = EdgeId::parse("bench-edge")?;
    let mut acks = Vec::new();
    let mut n = 0;
    while n < total {
        let messages: Vec<MessageAccepted> = (n..(n + batch).min(total)).map(message).collect::<Result<_, _>>()?;
        n += messages.len();
        let ack = if messages.len() == 1 {
            let message = &messages[0];
            let subject = bus.subjects.ingest(&message.target);
            let payload = bytes::Bytes::from(serde_json::to_vec(message)?);
            bus.publish_durable_pipelined(&tracing::Span::none(), subject, message.id.as_str(), payload).await?
        } else {
            let id = uuid::Uuid::now_v7().to_string();
            let entries = messages
                .into_iter()
                .map(|message| BatchedMessage { message, traceparent: None, tracestate: None })
                .collect();
            let payload = serde_json::to_vec(&IngestBatch { v: 1, id: id.clone(), messages: entries })?;
            bus.publish_durable_pipelined(
                &tracing::Span::none(),
                bus.subjects.ingest_batch(&edge),
                &id,
                bytes::Bytes::from(payload),
            )
            .await?
        };
        acks.push(ack);
        if acks.len() >= 512 {
            for ack in acks.drain(..) {
                ack.await.context("stream stores the filling")?;
            }
        }
    }
    for ack in acks {
        ack.await.context("stream stores the filling")?;
    }

    let started = Instant::now();
    let messaging = spawn_messaging(messaging_config(nats.url(), &db.url)).await?;
    let mut received = 0usize;
    while received < total {
        match tokio::time::timeout(Duration::from_secs(120), routed.next()).await {
            Ok(Some(_)) => received += 1,
            _ => anyhow::bail!("only {received} of {total} routed"),
        }
    }
    let elapsed = started.elapsed();
    let metrics = sb_tests::http::scrape_metrics(messaging.metrics_addr).await?;
    let value = |name: &str| sb_tests::http::metric_value(&metrics, name).unwrap_or(0.0);
    let batches = value("switchboard_messaging_batch_size_count");
    let line = serde_json::json!({
        "bench": "ingest_throughput",
        "db": format!("{kind:?}"),
        "messages": total,
        "edge_batch": batch,
        "seconds": elapsed.as_secs_f64(),
        "messages_per_s": total as f64 / elapsed.as_secs_f64(),
        "store_batches": batches,
        "mean_store_batch": value("switchboard_messaging_batch_size_sum") / batches.max(1.0),
        "mean_write_ms": value("switchboard_messaging_store_seconds_sum") * 1000.0 / batches.max(1.0),
    });
    println!("{line}");
    messaging.stop().await?;
    Ok(())
}
