//! The ingest loop: pull accepted messages from the JetStream ingest stream,
//! store them in batches, route them to the edges, and only then ack.
//!
//! Every replica pulls from one durable consumer ([`sb_events::MESSAGING_CONSUMER`]),
//! so each stream message is handled by one replica at a time. For each batch:
//!
//! 1. decode and validate; a message that is not a valid [`MessageAccepted`]
//!    is logged and terminated (`Term`), so it is never retried;
//! 2. ask presence which private recipients are online (one
//!    `OnlineAmong` request per batch; no answer counts as "nobody");
//! 3. write the batch in one transaction, idempotent on the message id;
//! 4. publish every message's deliveries (redelivered ones too, since a crash
//!    may have come between the write and the publish), inside the message's
//!    consumer span so the trace continues from the edge;
//! 5. flush the NATS connection, then ack the stream messages.
//!
//! A failure in 3–5 naks the batch with a delay and nothing is acked, so the
//! stream redelivers it; a crash anywhere leaves the messages un-acked, and the
//! stream redelivers them after `ack_wait`. A message acked to a client is
//! therefore never lost; it may be delivered twice after a crash.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream::AckKind;
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull};
use futures_util::{FutureExt as _, StreamExt as _};
use opentelemetry::trace::TraceContextExt as _;
use sb_events::bus::{Bus, BusError};
use sb_events::ingest::{MessageAccepted, MessageKind};
use sb_events::presence::{OnlineAmong, PresenceQuery};
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use crate::metrics::{KindLabel, Metrics};
use crate::route::{ValidMessage, validate};
use crate::store::{MessageRow, Store};

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

/// One stream message on its way through a batch.
struct Item {
    message: async_nats::jetstream::Message,
    span: tracing::Span,
    /// `None` once a message turned out to be invalid (and was terminated).
    valid: Option<ValidMessage>,
    /// The first occurrence of its id in the batch (later ones are only acked).
    first_of_id: bool,
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
    /// Whether the last `OnlineAmong` question went unanswered (shared by clones).
    pub presence_unanswered: Arc<AtomicBool>,
}

impl Ingest {
    /// Pulls and handles batches until `shutdown` is cancelled. The batch in
    /// hand is finished first; messages pulled but not started are nak'ed so
    /// another replica takes them at once.
    pub async fn run(self, consumer: PullConsumer, shutdown: CancellationToken) {
        let batch_size = self.settings.batch_size.max(1);
        let mut backoff = Duration::from_millis(100);
        let mut initial = Some(consumer);
        'reconnect: while !shutdown.is_cancelled() {
            // After a failure the consumer is looked up (or created) again:
            // someone may have deleted it, or the stream may be new.
            let current = match initial.take() {
                Some(current) => current,
                None => match ensure_consumer(&self.bus, &self.settings).await {
                    Ok(current) => current,
                    Err(error) => {
                        tracing::warn!(%error, retry_in = ?backoff, "cannot set up the ingest consumer");
                        if sleep_or_cancel(backoff, &shutdown).await {
                            return;
                        }
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                        continue;
                    }
                },
            };
            let stream = current
                .stream()
                .max_messages_per_batch(batch_size)
                .heartbeat(Duration::from_secs(5))
                .expires(Duration::from_secs(30))
                .messages()
                .await;
            let mut messages = match stream {
                Ok(messages) => messages,
                Err(error) => {
                    tracing::warn!(%error, retry_in = ?backoff, "cannot pull from the ingest consumer");
                    if sleep_or_cancel(backoff, &shutdown).await {
                        return;
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            };
            loop {
                let first = tokio::select! {
                    () = shutdown.cancelled() => {
                        release_buffered(&mut messages).await;
                        return;
                    }
                    next = messages.next() => next,
                };
                let first = match first {
                    Some(Ok(message)) => message,
                    Some(Err(error)) => {
                        use async_nats::jetstream::consumer::pull::MessagesErrorKind;
                        match error.kind() {
                            MessagesErrorKind::MissingHeartbeat | MessagesErrorKind::Pull => {
                                tracing::warn!(%error, "ingest pull interrupted, continuing");
                                continue;
                            }
                            _ => {
                                tracing::warn!(%error, retry_in = ?backoff, "ingest pull failed, setting the consumer up again");
                                if sleep_or_cancel(backoff, &shutdown).await {
                                    return;
                                }
                                backoff = (backoff * 2).min(Duration::from_secs(5));
                                continue 'reconnect;
                            }
                        }
                    }
                    None => continue 'reconnect,
                };
                backoff = Duration::from_millis(100);
                let mut batch = vec![first];
                // Whatever already arrived joins this batch; nothing waits for more.
                while batch.len() < batch_size {
                    match messages.next().now_or_never() {
                        Some(Some(Ok(message))) => batch.push(message),
                        _ => break,
                    }
                }
                if !self.handle_batch(batch).await && sleep_or_cancel(self.settings.retry_delay, &shutdown).await {
                    release_buffered(&mut messages).await;
                    return;
                }
            }
        }
    }

    /// Stores, routes and acks one batch. Returns `false` when the batch was
    /// handed back to the stream (the caller backs off).
    pub async fn handle_batch(&self, batch: Vec<async_nats::jetstream::Message>) -> bool {
        self.metrics.batch_size.observe(batch.len() as f64);
        let mut items = Vec::with_capacity(batch.len());
        let mut seen_ids = HashSet::new();
        for message in batch {
            let span = sb_telemetry::nats::consumer_span(
                "messaging.ingest",
                message.subject.as_str(),
                message.headers.as_ref(),
            );
            if let Ok(info) = message.info()
                && info.delivered > 1
            {
                self.metrics.redelivered.inc();
                span.in_scope(|| tracing::debug!(delivered = info.delivered, "redelivered ingest message"));
            }
            let valid = match decode(&message) {
                Ok(valid) => Some(valid),
                Err(reason) => {
                    self.metrics.rejected.inc();
                    let sequence = message.info().map(|info| info.stream_sequence).unwrap_or_default();
                    span.in_scope(|| {
                        tracing::error!(
                            subject = %message.subject,
                            stream_sequence = sequence,
                            %reason,
                            "dropping an ingest message that is not a valid MessageAccepted (producer bug)"
                        )
                    });
                    if let Err(error) = message.ack_with(AckKind::Term).await {
                        tracing::warn!(%error, "terminate invalid ingest message");
                    }
                    None
                }
            };
            let first_of_id = valid.as_ref().is_some_and(|valid| seen_ids.insert(valid.accepted.id.clone()));
            items.push(Item { message, span, valid, first_of_id });
        }
        let valid: Vec<&Item> = items.iter().filter(|item| item.valid.is_some()).collect();
        if valid.is_empty() {
            return true;
        }

        let online = self.online_recipients(&valid).await;

        let rows: Vec<MessageRow> =
            valid.iter().filter_map(|item| item.valid.as_ref()).map(|message| to_row(message, &online)).collect();
        let now_delivered: Vec<String> = rows
            .iter()
            .filter(|row| row.kind == MessageKind::Private && row.delivered)
            .map(|row| row.id.clone())
            .collect();
        let store_span = tracing::info_span!(
            parent: &valid[0].span,
            "messaging.store",
            otel.kind = "client",
            db.operation = "insert",
            batch_size = rows.len(),
        );
        for item in &valid[1..] {
            store_span.add_link(item.span.context().span().span_context().clone());
        }
        let started = Instant::now();
        let outcome = self.store.insert_batch(&rows, &now_delivered).instrument(store_span.clone()).await;
        self.metrics.store_seconds.observe(started.elapsed().as_secs_f64());
        let outcome = match outcome {
            Ok(outcome) => outcome,
            Err(error) => {
                store_span.in_scope(|| {
                    tracing::error!(error = %error, batch_size = rows.len(), "failed to store message batch; redelivering");
                });
                self.hand_back(&valid).await;
                return false;
            }
        };
        self.metrics.duplicates.inc_by(outcome.duplicates as u64);
        for row in &rows {
            if outcome.inserted.contains(&row.id) {
                self.metrics.stored.get_or_create(&KindLabel { kind: row.kind.as_str() }).inc();
                if !row.delivered {
                    self.metrics.pending_stored.inc();
                }
            }
        }

        for item in valid.iter().filter(|item| item.first_of_id) {
            let Some(message) = item.valid.as_ref() else { continue };
            if let Err(error) = self.route(message).instrument(item.span.clone()).await {
                item.span.in_scope(|| tracing::error!(%error, "failed to route message; redelivering batch"));
                self.hand_back(&valid).await;
                return false;
            }
        }
        // Deliveries must have left this process before the stream forgets the messages.
        if let Err(error) = self.bus.client.flush().await {
            tracing::error!(%error, "flush deliveries to NATS; redelivering batch");
            self.hand_back(&valid).await;
            return false;
        }
        for item in &valid {
            if let Err(error) = item.message.ack().await {
                // The stream redelivers it after ack_wait; routing again is harmless.
                item.span.in_scope(|| tracing::warn!(%error, "ack ingest message"));
            }
        }
        if let Err(error) = self.bus.client.flush().await {
            tracing::warn!(%error, "flush acks to NATS");
        }
        true
    }

    async fn route(&self, message: &ValidMessage) -> Result<(), BusError> {
        for (subject, delivery) in message.deliveries(&self.bus.subjects)? {
            self.bus.publish(subject, &delivery).await?;
        }
        self.metrics.routed.get_or_create(&KindLabel { kind: message.accepted.kind.as_str() }).inc();
        Ok(())
    }

    /// Asks presence which private recipients of the batch are online. No
    /// answer (presence down, slow or erroring) counts as "none online": the
    /// messages then stay pending, which at worst hands one out again on the
    /// recipient's next connect.
    async fn online_recipients(&self, items: &[&Item]) -> HashSet<String> {
        let users: Vec<String> = items
            .iter()
            .filter_map(|item| item.valid.as_ref()?.recipient())
            .map(|user| user.as_str().to_owned())
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        if users.is_empty() {
            return HashSet::new();
        }
        let mut presence = self.bus.clone();
        presence.request_timeout = self.settings.presence_timeout;
        let asked = users.len();
        match presence
            .request::<_, OnlineAmong>(presence.subjects.presence_query(), &PresenceQuery::OnlineAmong { users })
            .await
        {
            Ok(answer) => {
                if self.presence_unanswered.swap(false, Ordering::Relaxed) {
                    tracing::info!("presence answers again; private messages to online users are marked delivered");
                }
                answer.online.into_iter().collect()
            }
            Err(error) => {
                self.metrics.presence_failures.inc();
                // Warn on the first failure of a run of them, not on every batch.
                if self.presence_unanswered.swap(true, Ordering::Relaxed) {
                    tracing::debug!(%error, recipients = asked, "presence still not answering");
                } else {
                    tracing::warn!(
                        %error,
                        recipients = asked,
                        "presence did not say who is online; storing private messages as pending until it answers"
                    );
                }
                HashSet::new()
            }
        }
    }

    /// Naks every message of a failed batch so the stream redelivers it
    /// after the retry delay.
    async fn hand_back(&self, items: &[&Item]) {
        self.metrics.failed_batches.inc();
        for item in items {
            if let Err(error) = item.message.ack_with(AckKind::Nak(Some(self.settings.retry_delay))).await {
                tracing::warn!(%error, "nak ingest message (it is redelivered after ack_wait)");
            }
        }
    }
}

fn decode(message: &async_nats::jetstream::Message) -> Result<ValidMessage, String> {
    let accepted: MessageAccepted = serde_json::from_slice(&message.payload).map_err(|error| error.to_string())?;
    validate(accepted).map_err(|error| error.to_string())
}

fn to_row(message: &ValidMessage, online: &HashSet<String>) -> MessageRow {
    let accepted = &message.accepted;
    let recipient = message.recipient().map(|user| user.as_str().to_owned());
    let delivered = recipient.as_ref().is_none_or(|to| online.contains(to));
    MessageRow {
        id: accepted.id.clone(),
        kind: accepted.kind,
        room: message.room().map(|room| room.as_str().to_owned()),
        from: accepted.from.clone(),
        recipient,
        body: accepted.message.clone(),
        created_at_ms: accepted.timestamp_ms,
        delivered,
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use sb_events::client::PublicUser;

    fn private_to(to: &str) -> ValidMessage {
        validate(MessageAccepted {
            id: "m1".into(),
            kind: MessageKind::Private,
            from: PublicUser { id: "alice".into(), email: "a@example.com".into() },
            room: None,
            to: Some(to.into()),
            message: "hi".into(),
            timestamp_ms: 5,
            origin: None,
        })
        .unwrap()
    }

    #[test]
    fn private_row_is_pending_unless_recipient_online() {
        let online: HashSet<String> = ["bob".to_owned()].into();
        assert!(to_row(&private_to("bob"), &online).delivered);
        let row = to_row(&private_to("carol"), &online);
        assert!(!row.delivered);
        assert_eq!(row.recipient.as_deref(), Some("carol"));
        assert_eq!(row.room, None);
    }
}
