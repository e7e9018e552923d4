//! Messaging service tests: a real nats-server, PostgreSQL and SQLite, the
//! service in-process. The test plays the edge: it publishes
//! `MessageAccepted` to the ingest stream exactly as the edge does
//! (`Bus::publish_durable` with the message id) and watches the delivery
//! subjects, and it sends the edge's NATS requests (history, pending claims).

mod crash;
mod grpc;
mod health;
mod history;
mod ingest;
mod pending;
mod replicas;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use deliveries::{Deliveries, Received};
use futures_util::StreamExt as _;
use sb_events::bus::Bus;
use sb_events::client::PublicUser;
use sb_events::deliver::Delivery;
use sb_events::ingest::{MessageAccepted, MessageKind, Origin};
use sb_events::{MessageBody, MessageId, MessageTarget, RoomName, Sender, UserId};
use sb_messaging::Config;
use sb_tests::messaging::{RunningMessaging, messaging_config, spawn_messaging};
use sb_tests::{DbKind, NatsServer, TestDatabase, wait_until};

/// How long a test waits for something that should happen at once.
pub const WAIT: Duration = Duration::from_secs(20);

/// Runs `async fn $name(kind: DbKind)` once on PostgreSQL and once on SQLite,
/// as two tests `$name::postgres` and `$name::sqlite`.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$name(sb_tests::DbKind::Postgres).await
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name(sb_tests::DbKind::Sqlite).await
                }
            }
        )*
    };
}
pub(crate) use on_both_backends;

/// A nats-server, a fresh database, and a bus client acting as the edge.
pub struct Env {
    pub nats: NatsServer,
    pub db: TestDatabase,
    pub edge: Bus,
}

impl Env {
    /// Starts nats-server and creates a database of `kind`; no messaging yet.
    pub async fn start(kind: DbKind) -> Self {
        sb_telemetry::init_for_tests();
        let nats = NatsServer::start().await.expect("start nats-server");
        let db = TestDatabase::create(kind).await.expect("create test database");
        let mut edge = Bus::connect(&sb_config::NatsArgs::for_url(nats.url()), "test-edge")
            .await
            .expect("connect test edge to nats");
        edge.request_timeout = Duration::from_secs(10);
        edge.ensure_ingest_stream(1).await.expect("create the ingest stream as the edge does");
        Self { nats, db, edge }
    }

    /// Messaging settings for this environment.
    pub fn config(&self) -> Config {
        messaging_config(self.nats.url(), &self.db.url)
    }

    /// Starts messaging with the default test settings.
    pub async fn messaging(&self) -> RunningMessaging {
        spawn_messaging(self.config()).await.expect("start messaging")
    }

    /// Publishes `message` to its ingest subject as the edge does, waiting for the PubAck.
    pub async fn publish(&self, message: &MessageAccepted) {
        self.edge
            .publish_durable(ingest_subject(&self.edge, message), &message.id, message)
            .await
            .expect("ingest stream acks the message");
    }

    /// Watches `subjects`, recording every delivery (subscribed and flushed
    /// before this returns, so nothing published afterwards is missed).
    pub async fn watch(&self, subjects: &[String]) -> Deliveries {
        Deliveries::watch(&self.edge.client, subjects).await
    }

    /// Opens a direct connection to the test database.
    pub async fn database(&self) -> sb_db::Db {
        sb_db::Db::connect(&sb_config::DatabaseArgs::for_url(&self.db.url)).await.expect("connect to the test database")
    }
}

/// The ingest subject the edge uses for `message`.
pub fn ingest_subject(bus: &Bus, message: &MessageAccepted) -> String {
    bus.subjects.ingest(&message.target)
}

pub fn room(name: &str) -> RoomName {
    RoomName::parse(name).expect("valid room name")
}

pub fn user(id: &str) -> UserId {
    UserId::parse(id).expect("valid user id")
}

pub fn public_user(id: &str) -> PublicUser {
    PublicUser { id: id.to_owned(), email: format!("{id}@example.com") }
}

/// A message as the edge builds it, accepted now (`Room` and `Private`
/// get their room and recipient from [`room_message`] and [`private_message`]).
pub fn accepted(kind: MessageKind, from: &str, text: &str) -> MessageAccepted {
    let target = match kind {
        MessageKind::Room => MessageTarget::Room(room("lobby")),
        MessageKind::Private => MessageTarget::User(user(from)),
        MessageKind::Broadcast => MessageTarget::Everyone,
        MessageKind::Announcement => MessageTarget::Announcement,
    };
    MessageAccepted {
        id: MessageId::new_v7(),
        target,
        from: Sender { id: user(from), email: format!("{from}@example.com") },
        message: MessageBody::parse("message", text, MessageBody::WIRE_MAX_BYTES).expect("a valid message text"),
        timestamp_ms: sb_events::timestamp::now_ms(),
        origin: Some(Origin { edge: "edge-test".to_owned(), socket: format!("socket-of-{from}") }),
    }
}

pub fn room_message(room_name: &str, from: &str, text: &str) -> MessageAccepted {
    MessageAccepted { target: MessageTarget::Room(room(room_name)), ..accepted(MessageKind::Room, from, text) }
}

pub fn private_message(from: &str, to: &str, text: &str) -> MessageAccepted {
    MessageAccepted { target: MessageTarget::User(user(to)), ..accepted(MessageKind::Private, from, text) }
}

/// Rows stored with `id` (0 or 1: the id is the primary key).
pub async fn stored_count(db: &sb_db::Db, id: &str) -> i64 {
    use sqlx::Row as _;
    sqlx::query("SELECT COUNT(*) AS n FROM messages WHERE id = $1")
        .bind(id.to_owned())
        .fetch_one(&db.pool)
        .await
        .expect("count stored message")
        .get::<i64, _>("n")
}

/// Every stored row: id → delivered flag.
pub async fn stored_rows(db: &sb_db::Db) -> HashMap<sb_events::MessageId, bool> {
    use sqlx::Row as _;
    sqlx::query("SELECT id, CAST(delivered AS BIGINT) AS delivered FROM messages")
        .fetch_all(&db.pool)
        .await
        .expect("read stored messages")
        .iter()
        .map(|row| {
            let id =
                sb_events::MessageId::parse("id", row.get::<String, _>("id")).expect("a stored id is a message id");
            (id, row.get::<i64, _>("delivered") == 1)
        })
        .collect()
}

/// Waits until the ingest consumer has nothing pending or unacknowledged.
pub async fn wait_for_consumer_idle(bus: &Bus) {
    let stream_name = bus.subjects.ingest_stream();
    wait_until("the ingest consumer to be idle", WAIT, || async {
        let stream = bus.jetstream.get_stream(&stream_name).await.ok()?;
        let mut consumer: async_nats::jetstream::consumer::PullConsumer =
            stream.get_consumer(sb_events::MESSAGING_CONSUMER).await.ok()?;
        let info = consumer.info().await.ok()?;
        (info.num_pending == 0 && info.num_ack_pending == 0).then_some(())
    })
    .await;
}

/// Deliveries recorded from core NATS subscriptions.
mod deliveries {
    use super::*;

    /// One delivery and the subject and trace header it came with.
    #[derive(Debug, Clone)]
    pub struct Received {
        pub subject: String,
        pub delivery: Delivery,
        pub traceparent: Option<String>,
    }

    impl Received {
        /// The payload as JSON.
        pub fn json(&self) -> serde_json::Value {
            serde_json::from_str(self.delivery.data.get()).expect("delivery payload is JSON")
        }

        /// The payload's `id`.
        pub fn id(&self) -> String {
            self.json()["id"].as_str().expect("payload has an id").to_owned()
        }
    }

    /// Everything delivered on some subjects since [`Deliveries::watch`].
    pub struct Deliveries {
        received: Arc<tokio::sync::Mutex<Vec<Received>>>,
        _task: tokio_util::task::AbortOnDropHandle<()>,
    }

    impl Deliveries {
        pub async fn watch(client: &async_nats::Client, subjects: &[String]) -> Self {
            let mut streams = Vec::new();
            for subject in subjects {
                streams.push(client.subscribe(subject.clone()).await.expect("subscribe to a delivery subject"));
            }
            sb_tests::round_trip(client).await.expect("subscriptions registered");
            let received = Arc::new(tokio::sync::Mutex::new(Vec::new()));
            let sink = received.clone();
            let mut all = futures_util::stream::select_all(streams);
            let task = tokio::spawn(async move {
                while let Some(message) = all.next().await {
                    let delivery: Delivery = serde_json::from_slice(&message.payload).expect("delivery is JSON");
                    let traceparent = message
                        .headers
                        .as_ref()
                        .and_then(|headers| headers.get("traceparent"))
                        .map(|value| value.as_str().to_owned());
                    sink.lock().await.push(Received { subject: message.subject.to_string(), delivery, traceparent });
                }
            });
            Self { received, _task: tokio_util::task::AbortOnDropHandle::new(task) }
        }

        /// A copy of everything received so far.
        pub async fn all(&self) -> Vec<Received> {
            self.received.lock().await.clone()
        }

        /// Waits until `count` deliveries arrived and returns them all.
        pub async fn wait_for(&self, count: usize) -> Vec<Received> {
            wait_until(&format!("{count} deliveries"), WAIT, || async {
                let received = self.received.lock().await;
                (received.len() >= count).then(|| received.clone())
            })
            .await
        }
    }
}
