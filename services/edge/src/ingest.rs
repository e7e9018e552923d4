//! Publishing accepted messages to the ingest stream, batched.
//!
//! Every `send_message` / `admin_broadcast` hands its [`MessageAccepted`] to
//! the one [`Ingest`] task of the edge and waits for the stream's verdict.
//! The task gathers what arrives within `INGEST_LINGER` of the first
//! message (up to [`IngestSettings::max_batch`] messages or
//! [`BATCH_MAX_BYTES`]) and writes it in one stream publish: a single
//! message as itself on its target's subject, several as one
//! [`sb_events::ingest::IngestBatch`] on `<p>.msg.batch.<edge>`. Each client is acked after
//! the one PubAck that stored its message. Up to
//! [`IngestSettings::max_in_flight`] publishes wait for their PubAck at
//! once, so a slow acknowledgement does not stop the next batch from
//! forming.
//!
//! Why: nats-server spends most of its time per stream operation, not per
//! byte (a paced JetStream publish costs it ~10 times a core message), and
//! so does messaging per stream message it pulls and acks. A batch of N
//! messages costs about what one did (docs/performance.md).

use std::collections::VecDeque;
use std::future::{Future, IntoFuture as _};
use std::pin::Pin;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::context::PublishError;
use async_nats::jetstream::publish::PublishAck;
use bytes::Bytes;
use sb_events::bus::Bus;
use sb_events::ingest::{BatchedMessageRef, IngestBatchRef, MessageAccepted};
use sb_events::{EdgeId, HEADER_MSG_ID};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::metrics::Metrics;

/// The most bytes one batch's messages may hold (NATS refuses payloads
/// over its `max_payload`, 1 MiB by default).
pub const BATCH_MAX_BYTES: usize = 512 * 1024;

/// Over how long the arrival rate that turns the linger on is measured.
/// A second, so that senders that all send on the same tick (bursts a
/// few milliseconds long) count at their average rate.
pub const RATE_WINDOW: Duration = Duration::from_secs(1);

/// Messages a second arriving at the batcher, over the last whole
/// [`RATE_WINDOW`].
#[derive(Debug)]
struct ArrivalRate {
    window_start: Instant,
    count: u32,
    rate: f64,
}

impl ArrivalRate {
    fn new(now: Instant) -> Self {
        Self { window_start: now, count: 0, rate: 0.0 }
    }

    /// Notes `messages` arriving at `now`.
    fn note(&mut self, messages: u32, now: Instant) {
        let elapsed = now.saturating_duration_since(self.window_start);
        if elapsed >= RATE_WINDOW {
            // A window with no arrival after this one's end counts as none.
            self.rate = if elapsed >= 2 * RATE_WINDOW { 0.0 } else { f64::from(self.count) / elapsed.as_secs_f64() };
            self.window_start = now;
            self.count = 0;
        }
        self.count = self.count.saturating_add(messages);
    }

    /// The rate of the last whole window.
    fn rate(&self) -> f64 {
        self.rate
    }
}

/// How the edge batches its stream writes.
#[derive(Debug, Clone, Copy)]
pub struct IngestSettings {
    /// How long the first message of a batch waits for others (`INGEST_LINGER`).
    /// Zero still batches what arrives while earlier publishes are unacknowledged.
    pub linger: Duration,
    /// The linger applies only while messages arrive at least this fast, in
    /// messages a second over the last [`RATE_WINDOW`]
    /// (`INGEST_LINGER_FROM_RATE`; `0`: always).
    pub linger_from_rate: f64,
    /// The most messages in one batch.
    pub max_batch: usize,
    /// The most publishes waiting for their PubAck at once.
    pub max_in_flight: usize,
}

/// Why a message was not accepted.
#[derive(Debug, Clone, thiserror::Error)]
pub enum IngestError {
    /// The stream did not store it (NATS unreachable, stream unavailable).
    #[error("{0}")]
    NotStored(String),
    /// The edge is stopping.
    #[error("the edge is stopping")]
    Stopped,
}

/// One message waiting for its batch and its verdict.
struct Pending {
    message: MessageAccepted,
    traceparent: Option<String>,
    tracestate: Option<String>,
    done: oneshot::Sender<Result<(), IngestError>>,
}

type AckFuture = Pin<Box<dyn Future<Output = Result<PublishAck, PublishError>> + Send>>;

/// One publish waiting for its PubAck, and whom to tell.
struct InFlight {
    ack: AckFuture,
    waiting: Vec<oneshot::Sender<Result<(), IngestError>>>,
}

/// The edge's way into the ingest stream; cheap to clone.
#[derive(Clone)]
pub struct Ingest {
    sender: mpsc::UnboundedSender<Pending>,
    destinations: std::sync::Arc<Destinations>,
}

/// The ingest subjects' templates (`sb.msg.room.{room}`, …), which name a
/// message's producer span: built once, not per message.
struct Destinations {
    room: String,
    user: String,
    everyone: String,
    announcement: String,
}

impl Destinations {
    fn new(prefix: &str) -> Self {
        Self {
            room: format!("{prefix}.msg.room.{{room}}"),
            user: format!("{prefix}.msg.user.{{user}}"),
            everyone: format!("{prefix}.msg.all"),
            announcement: format!("{prefix}.msg.announce"),
        }
    }

    fn of(&self, target: &sb_events::MessageTarget) -> &str {
        use sb_events::MessageTarget;
        match target {
            MessageTarget::Room(_) => &self.room,
            MessageTarget::User(_) => &self.user,
            MessageTarget::Everyone => &self.everyone,
            MessageTarget::Announcement => &self.announcement,
        }
    }
}

impl Ingest {
    /// Starts the batching task on `tracker`; it publishes what it holds and
    /// ends once `stop` is cancelled and every handle is dropped.
    pub fn start(
        bus: Bus,
        edge: &EdgeId,
        settings: IngestSettings,
        metrics: std::sync::Arc<Metrics>,
        tracker: &TaskTracker,
        stop: CancellationToken,
    ) -> Self {
        let (sender, receiver) = mpsc::unbounded_channel();
        let destinations = std::sync::Arc::new(Destinations::new(bus.subjects.prefix()));
        let batcher = Batcher {
            subject: bus.subjects.ingest_batch(edge),
            bus,
            settings: IngestSettings {
                max_batch: settings.max_batch.max(1),
                max_in_flight: settings.max_in_flight.max(1),
                ..settings
            },
            metrics,
        };
        tracker.spawn(batcher.run(receiver, stop));
        Self { sender, destinations }
    }

    /// Publishes `message` with the next batch and returns once the stream
    /// stored it (or refused it). Call it inside the event's span: the
    /// message's producer span (`send <p>.msg.<kind>…`, from now until the
    /// stream's verdict) is its child, and the message carries its context.
    pub async fn publish(&self, message: MessageAccepted) -> Result<(), IngestError> {
        let span =
            sb_telemetry::nats::producer_span_to(self.destinations.of(&message.target), Some(message.id.as_str()));
        let (traceparent, tracestate) = span.in_scope(sb_telemetry::nats::current_trace_fields);
        let (done, verdict) = oneshot::channel();
        self.sender.send(Pending { message, traceparent, tracestate, done }).map_err(|_| IngestError::Stopped)?;
        let verdict = verdict.await.unwrap_or(Err(IngestError::Stopped));
        if verdict.is_err() {
            span.record("otel.status_code", "error");
        }
        verdict
    }
}

struct Batcher {
    bus: Bus,
    subject: String,
    settings: IngestSettings,
    metrics: std::sync::Arc<Metrics>,
}

impl Batcher {
    async fn run(self, mut receiver: mpsc::UnboundedReceiver<Pending>, stop: CancellationToken) {
        let mut gathered: Vec<Pending> = Vec::new();
        let mut gathered_bytes = 0usize;
        let mut linger_until: Option<Instant> = None;
        let mut in_flight: VecDeque<InFlight> = VecDeque::new();
        let mut open = true;
        let mut arrivals = ArrivalRate::new(Instant::now());
        let from_rate = self.settings.linger_from_rate;
        loop {
            let full = gathered.len() >= self.settings.max_batch || gathered_bytes >= BATCH_MAX_BYTES;
            let lingered = linger_until.is_some_and(|until| Instant::now() >= until);
            let closing = !open || stop.is_cancelled();
            if !gathered.is_empty() && (full || lingered || closing) && in_flight.len() < self.settings.max_in_flight {
                let batch = std::mem::take(&mut gathered);
                gathered_bytes = 0;
                linger_until = None;
                if let Some(sent) = self.publish(batch).await {
                    in_flight.push_back(sent);
                }
                continue;
            }
            if closing && gathered.is_empty() && in_flight.is_empty() {
                return;
            }
            let can_gather = open && !full;
            tokio::select! {
                biased;
                verdict = front_ack(&mut in_flight), if !in_flight.is_empty() => {
                    if let Some(done) = in_flight.pop_front() {
                        let verdict = verdict.map(|_| ()).map_err(|error| IngestError::NotStored(error.to_string()));
                        for waiting in done.waiting {
                            let _ = waiting.send(verdict.clone());
                        }
                    }
                }
                pending = receiver.recv(), if can_gather => match pending {
                    Some(pending) => {
                        gathered_bytes += approximate_size(&pending.message);
                        gathered.push(pending);
                        let now = Instant::now();
                        arrivals.note(1, now);
                        if linger_until.is_none() {
                            // Linger only under load: a lone message is never held back.
                            let linger = from_rate <= 0.0 || arrivals.rate() >= from_rate;
                            linger_until = Some(if linger { now + self.settings.linger } else { now });
                        }
                        // Take what else is queued already without waiting.
                        while gathered.len() < self.settings.max_batch && gathered_bytes < BATCH_MAX_BYTES {
                            match receiver.try_recv() {
                                Ok(pending) => {
                                    gathered_bytes += approximate_size(&pending.message);
                                    gathered.push(pending);
                                    arrivals.note(1, now);
                                }
                                Err(_) => break,
                            }
                        }
                    }
                    None => open = false,
                },
                () = sleep_until(linger_until), if linger_until.is_some() && in_flight.len() < self.settings.max_in_flight => {}
                () = stop.cancelled(), if !stop.is_cancelled() => {}
            }
        }
    }

    /// Publishes `batch` (one message as itself, several as an
    /// `IngestBatch`); `None` if the publish failed at once (then every
    /// waiter has its error already).
    async fn publish(&self, batch: Vec<Pending>) -> Option<InFlight> {
        self.metrics.ingest_batch_size.observe(batch.len() as f64);
        let (subject, msg_id, payload, mut headers) = if batch.len() == 1 {
            let pending = &batch[0];
            let payload = serde_json::to_vec(&pending.message);
            let mut headers = HeaderMap::new();
            if let Some(traceparent) = &pending.traceparent {
                headers.insert(sb_events::HEADER_TRACEPARENT, traceparent.as_str());
            }
            if let Some(tracestate) = &pending.tracestate {
                headers.insert(sb_events::HEADER_TRACESTATE, tracestate.as_str());
            }
            (self.bus.subjects.ingest(&pending.message.target), pending.message.id.to_string(), payload, headers)
        } else {
            let id = uuid::Uuid::now_v7().to_string();
            let messages = batch
                .iter()
                .map(|pending| BatchedMessageRef {
                    message: &pending.message,
                    traceparent: pending.traceparent.as_deref(),
                    tracestate: pending.tracestate.as_deref(),
                })
                .collect();
            let payload = serde_json::to_vec(&IngestBatchRef { v: MessageAccepted::WIRE_VERSION, id: &id, messages });
            (self.subject.clone(), id, payload, HeaderMap::new())
        };
        let waiting: Vec<_> = batch.into_iter().map(|pending| pending.done).collect();
        let payload = match payload {
            Ok(payload) => Bytes::from(payload),
            Err(error) => {
                tracing::error!(%error, "encode accepted messages");
                fail(waiting, &error.to_string());
                return None;
            }
        };
        headers.insert(HEADER_MSG_ID, msg_id.as_str());
        match self.bus.jetstream.publish_with_headers(subject, headers, payload).await {
            Ok(ack) => Some(InFlight { ack: Box::pin(ack.into_future()), waiting }),
            Err(error) => {
                fail(waiting, &error.to_string());
                None
            }
        }
    }
}

fn fail(waiting: Vec<oneshot::Sender<Result<(), IngestError>>>, reason: &str) {
    for done in waiting {
        let _ = done.send(Err(IngestError::NotStored(reason.to_owned())));
    }
}

/// Roughly what a message adds to a batch's payload.
fn approximate_size(message: &MessageAccepted) -> usize {
    message.message.as_str().len() + 512
}

async fn front_ack(in_flight: &mut VecDeque<InFlight>) -> Result<PublishAck, PublishError> {
    match in_flight.front_mut() {
        Some(entry) => (&mut entry.ack).await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(until: Option<Instant>) {
    match until {
        Some(until) => tokio::time::sleep_until(until).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use sb_events::{MessageTarget, RoomName, Subjects, UserId};

    use super::{ArrivalRate, Duration, Instant, RATE_WINDOW};

    #[test]
    fn the_arrival_rate_is_that_of_the_last_whole_window_and_falls_to_none_when_idle() {
        let start = Instant::now();
        let mut rate = ArrivalRate::new(start);
        assert_eq!(rate.rate(), 0.0, "no window has ended yet");
        // 3 000 messages in the first window, all in one burst.
        rate.note(3000, start + Duration::from_millis(5));
        rate.note(1, start + RATE_WINDOW);
        let expected = 3000.0 / RATE_WINDOW.as_secs_f64();
        assert!((rate.rate() - expected).abs() < 1.0, "{} against {expected}", rate.rate());
        // Then one message a half window after the next one ended: the window
        // that ended is the measure (one message in a window and a half).
        rate.note(1, start + RATE_WINDOW * 2 + RATE_WINDOW / 2);
        assert!(rate.rate() < 1.0 / RATE_WINDOW.as_secs_f64(), "{}", rate.rate());
        // A long pause: none.
        rate.note(1, start + RATE_WINDOW * 10);
        assert_eq!(rate.rate(), 0.0);
    }

    #[test]
    fn destinations_are_the_ingest_subjects_templates() {
        let subjects = Subjects::default();
        let destinations = super::Destinations::new(subjects.prefix());
        for target in [
            MessageTarget::Room(RoomName::parse("lobby").unwrap()),
            MessageTarget::User(UserId::parse("alice").unwrap()),
            MessageTarget::Everyone,
            MessageTarget::Announcement,
        ] {
            assert_eq!(
                destinations.of(&target),
                sb_telemetry::nats::destination_template(&subjects.ingest(&target)),
                "{target:?}"
            );
        }
    }
}
