//! The ingest loop: pull accepted messages from the JetStream ingest stream,
//! store them in batches, route them to the edges, and only then ack.
//!
//! Every replica pulls from one durable consumer ([`sb_events::MESSAGING_CONSUMER`]),
//! so each stream message is handled by one replica at a time. For each batch:
//!
//! 1. decode: a message that is not a valid [`MessageAccepted`] is logged
//!    and terminated (`Term`), so it is never retried; one written by a newer
//!    version that this one cannot read is handed back (`Nak`) for an
//!    upgraded replica;
//! 2. find where the private recipients and senders are connected: from
//!    the [`crate::locate`] cache, else one presence `Locate` request per
//!    batch (no answer counts as "nowhere");
//! 3. write the batch in one transaction, idempotent on the message id;
//! 4. publish every message's deliveries (redelivered ones too, since a crash
//!    may have come between the write and the publish), inside the message's
//!    consumer span so the trace continues from the edge;
//! 5. ack the stream messages (on the same connection, after the deliveries:
//!    the server sees them in that order, so no flush is needed).
//!
//! A failure in 3–5 naks the batch with a delay and nothing is acked, so the
//! stream redelivers it; a crash anywhere leaves the messages un-acked, and the
//! stream redelivers them after `ack_wait`. A message acked to a client is
//! therefore never lost; it may be delivered twice after a crash.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use async_nats::jetstream::AckKind;
use async_nats::jetstream::consumer::pull::MessagesErrorKind;
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull};
use futures_util::{FutureExt as _, StreamExt as _};
use sb_events::bus::{Bus, BusError};
use sb_service::Backoff;
use tokio_util::sync::CancellationToken;

mod batch;

use crate::metrics::Metrics;
use crate::store::Store;

/// First and longest wait before setting the consumer up again after a failure.
const RECONNECT_BACKOFF: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(5));

/// How the ingest consumer pulls and acks.
#[derive(Debug, Clone)]
pub struct IngestSettings {
    /// Most messages stored and routed together.
    pub batch_size: usize,
    /// How long the stream waits for an ack before redelivering.
    pub ack_wait: Duration,
    /// Most un-acked messages the consumer hands out across all replicas.
    pub max_ack_pending: i64,
    /// How long to wait for presence's `OnlineAmong` answer.
    pub presence_timeout: Duration,
    /// Delay before a failed batch is redelivered.
    pub retry_delay: Duration,
    /// Replicas of the ingest stream, if messaging creates it.
    pub stream_replicas: usize,
}

/// Why the consumer could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ConsumerSetupError {
    /// The ingest stream could not be created or read.
    #[error(transparent)]
    Stream(#[from] BusError),
    /// The durable consumer could not be created or read.
    #[error("create the durable consumer {name} on {stream}: {source}")]
    Consumer {
        /// Consumer name.
        name: &'static str,
        /// Stream name.
        stream: String,
        /// What the server said.
        source: async_nats::jetstream::stream::ConsumerError,
    },
}

/// The durable consumer's configuration.
pub fn consumer_config(bus: &Bus, settings: &IngestSettings) -> pull::Config {
    pull::Config {
        durable_name: Some(sb_events::MESSAGING_CONSUMER.to_owned()),
        description: Some("Switchboard messaging: stores and routes accepted messages".to_owned()),
        deliver_policy: DeliverPolicy::All,
        ack_policy: AckPolicy::Explicit,
        ack_wait: settings.ack_wait,
        // Never give up on a message: a message acked to a client must be stored.
        max_deliver: -1,
        filter_subject: bus.subjects.ingest_all_subjects(),
        max_ack_pending: settings.max_ack_pending,
        ..Default::default()
    }
}

/// Creates the ingest stream and the shared durable consumer unless they
/// exist. An existing consumer keeps its configuration (a differing
/// `ack_wait` or `max_ack_pending` is logged; change it with `nats consumer edit`).
pub async fn ensure_consumer(bus: &Bus, settings: &IngestSettings) -> Result<PullConsumer, ConsumerSetupError> {
    let stream = bus.ensure_ingest_stream(settings.stream_replicas).await?;
    let wanted = consumer_config(bus, settings);
    let consumer: PullConsumer = stream
        .get_or_create_consumer(sb_events::MESSAGING_CONSUMER, wanted.clone())
        .await
        .map_err(|source| ConsumerSetupError::Consumer {
            name: sb_events::MESSAGING_CONSUMER,
            stream: bus.subjects.ingest_stream(),
            source,
        })?;
    let existing = &consumer.cached_info().config;
    if existing.ack_wait != wanted.ack_wait || existing.max_ack_pending != wanted.max_ack_pending {
        tracing::warn!(
            existing_ack_wait = ?existing.ack_wait,
            existing_max_ack_pending = existing.max_ack_pending,
            wanted_ack_wait = ?wanted.ack_wait,
            wanted_max_ack_pending = wanted.max_ack_pending,
            "the durable consumer exists with other settings; keeping them (edit it with `nats consumer edit`)"
        );
    }
    Ok(consumer)
}

/// The ingest worker of one replica.
#[derive(Debug, Clone)]
pub struct Ingest {
    /// The bus used for deliveries and acks.
    pub bus: Bus,
    /// The store.
    pub store: Store,
    /// Metrics.
    pub metrics: Metrics,
    /// Settings.
    pub settings: IngestSettings,
    /// Whether the last `Locate` question went unanswered (shared by clones).
    pub presence_unanswered: Arc<AtomicBool>,
    /// Presence's answers, kept while the presence stream says they hold.
    pub locate_cache: Arc<crate::locate::LocateCache>,
}

/// What to do after a pull failed.
enum AfterError {
    /// Keep reading the same pull stream.
    Continue,
    /// Set the consumer and its stream up again.
    Reconnect,
}

impl Ingest {
    /// Pulls and handles batches until `shutdown` is cancelled. The batch in
    /// hand is finished first; messages pulled but not started are nak'ed so
    /// another replica takes them at once.
    pub async fn run(self, consumer: PullConsumer, shutdown: CancellationToken) {
        let mut backoff = Backoff::new(RECONNECT_BACKOFF.0, RECONNECT_BACKOFF.1);
        let mut consumer = Some(consumer);
        while !shutdown.is_cancelled() {
            let Some(mut messages) = self.open_stream(consumer.take(), &mut backoff, &shutdown).await else {
                return;
            };
            loop {
                let next = tokio::select! {
                    () = shutdown.cancelled() => {
                        release_buffered(&mut messages).await;
                        return;
                    }
                    next = messages.next() => next,
                };
                let first = match next {
                    Some(Ok(message)) => message,
                    Some(Err(error)) => match after_pull_error(&error) {
                        AfterError::Continue => {
                            tracing::warn!(%error, "ingest pull interrupted, continuing");
                            continue;
                        }
                        AfterError::Reconnect => {
                            tracing::warn!(%error, retry_in = ?backoff.peek(), "ingest pull failed, setting the consumer up again");
                            if backoff.wait(&shutdown).await {
                                return;
                            }
                            break;
                        }
                    },
                    None => break,
                };
                backoff.reset();
                let batch = take_ready(first, &mut messages, self.settings.batch_size.max(1));
                let handled = batch::handle(&self, batch).await;
                if !handled && sleep_or_cancel(self.settings.retry_delay, &shutdown).await {
                    release_buffered(&mut messages).await;
                    return;
                }
            }
        }
    }

    /// The pull stream of `consumer`, or of the consumer looked up (or
    /// created) again when there is none: after a failure someone may have
    /// deleted it, or the stream may be new. `None` once `shutdown` came.
    async fn open_stream(
        &self,
        mut consumer: Option<PullConsumer>,
        backoff: &mut Backoff,
        shutdown: &CancellationToken,
    ) -> Option<pull::Stream> {
        loop {
            let current = match consumer.take() {
                Some(current) => current,
                None => match ensure_consumer(&self.bus, &self.settings).await {
                    Ok(current) => current,
                    Err(error) => {
                        tracing::warn!(%error, retry_in = ?backoff.peek(), "cannot set up the ingest consumer");
                        if backoff.wait(shutdown).await {
                            return None;
                        }
                        continue;
                    }
                },
            };
            let stream = current
                .stream()
                .max_messages_per_batch(self.settings.batch_size.max(1))
                .heartbeat(Duration::from_secs(5))
                .expires(Duration::from_secs(30))
                .messages()
                .await;
            match stream {
                Ok(messages) => return Some(messages),
                Err(error) => {
                    tracing::warn!(%error, retry_in = ?backoff.peek(), "cannot pull from the ingest consumer");
                    if backoff.wait(shutdown).await {
                        return None;
                    }
                }
            }
        }
    }
}

fn after_pull_error(error: &pull::MessagesError) -> AfterError {
    match error.kind() {
        MessagesErrorKind::MissingHeartbeat | MessagesErrorKind::Pull => AfterError::Continue,
        _ => AfterError::Reconnect,
    }
}

/// `first`, and whatever else already arrived, up to `batch_size`; nothing
/// waits for more.
fn take_ready(
    first: async_nats::jetstream::Message,
    messages: &mut pull::Stream,
    batch_size: usize,
) -> Vec<async_nats::jetstream::Message> {
    let mut batch = vec![first];
    while batch.len() < batch_size {
        match messages.next().now_or_never() {
            Some(Some(Ok(message))) => batch.push(message),
            _ => break,
        }
    }
    batch
}

/// Naks (without delay) the messages already pulled into this process but
/// not started, so another replica gets them now rather than after `ack_wait`.
/// Messages still in flight from the server are redelivered after `ack_wait`.
async fn release_buffered(messages: &mut pull::Stream) {
    let mut released = 0usize;
    while let Some(Some(Ok(message))) = messages.next().now_or_never() {
        if message.ack_with(AckKind::Nak(None)).await.is_ok() {
            released += 1;
        }
    }
    if released > 0 {
        tracing::info!(released, "handed pulled messages back to the stream at shutdown");
    }
}

/// Sleeps for `duration`; returns `true` if `shutdown` came first.
async fn sleep_or_cancel(duration: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        () = shutdown.cancelled() => true,
        () = tokio::time::sleep(duration) => false,
    }
}
