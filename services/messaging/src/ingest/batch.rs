//! One batch of ingest messages, as steps: [`decode`] → where the private
//! recipients are ([`locate`]) → [`store`] → [`route`] → [`ack`]. A step that
//! fails hands the whole batch back to the stream ([`hand_back`]) and nothing
//! after it runs, so a message is acked only once it is stored and its
//! deliveries have left this process.
//!
//! A stream message is either one [`MessageAccepted`] or an edge's
//! [`IngestBatch`] of them; both become items of the batch, each with the
//! trace context of its own `send_message`.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::time::Instant;

use async_nats::jetstream::{AckKind, Message};
use opentelemetry::trace::TraceContextExt as _;
use sb_events::ingest::{DecodeError, IngestBatch, MessageAccepted};
use sb_events::presence::Locations;
use sb_events::{MessageId, MessageKind};
use tracing::Instrument as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use super::Ingest;
use crate::metrics::KindLabel;
use crate::store::NewRow;

/// One valid accepted message on its way through a batch.
struct Item {
    span: tracing::Span,
    accepted: MessageAccepted,
    /// The first occurrence of its id in the batch (later ones are only routed once).
    first_of_id: bool,
}

/// Stores, routes and acks one batch of stream messages. Returns `false`
/// when the batch was handed back to the stream (the caller backs off).
pub(crate) async fn handle(ingest: &Ingest, batch: Vec<Message>) -> bool {
    let (held, items) = decode(ingest, batch).await;
    ingest.metrics.batch_size.observe(items.len() as f64);
    if items.is_empty() {
        ack(ingest, &held).await;
        return true;
    }
    let locations = locate(ingest, &items).await;
    if !store(ingest, &items, &locations).await || !route(ingest, &items, &locations).await {
        hand_back(ingest, &held).await;
        return false;
    }
    ack(ingest, &held).await;
    true
}

/// Step 1: decodes every stream message into items, returning the stream
/// messages to ack once the items are handled. One that is not a
/// [`MessageAccepted`] or [`IngestBatch`] is terminated (a producer bug:
/// retrying cannot help); one from a newer version this one cannot read is
/// handed back for an upgraded replica.
async fn decode(ingest: &Ingest, batch: Vec<Message>) -> (Vec<Message>, Vec<Item>) {
    let mut held = Vec::with_capacity(batch.len());
    let mut items = Vec::with_capacity(batch.len());
    let mut seen_ids = HashSet::new();
    for message in batch {
        let info = message.info().ok().map(|info| (info.delivered, info.stream_sequence));
        if let Some((delivered, _)) = info
            && delivered > 1
        {
            ingest.metrics.redelivered.inc();
            tracing::debug!(delivered, subject = %message.subject, "redelivered ingest message");
        }
        let stream_sequence = info.map(|(_, sequence)| sequence).unwrap_or_default();
        let decoded = if ingest.bus.subjects.is_ingest_batch(message.subject.as_str()) {
            IngestBatch::decode(&message.payload).map(|batch| {
                batch
                    .messages
                    .into_iter()
                    .map(|entry| {
                        let span = sb_telemetry::nats::consumer_span_from_fields(
                            "messaging.ingest",
                            message.subject.as_str(),
                            entry.traceparent.as_deref(),
                            entry.tracestate.as_deref(),
                        );
                        span.record("messaging.message.id", entry.message.id.as_str());
                        (span, entry.message)
                    })
                    .collect::<Vec<_>>()
            })
        } else {
            MessageAccepted::decode(&message.payload).map(|accepted| {
                let span = sb_telemetry::nats::consumer_span(
                    "messaging.ingest",
                    message.subject.as_str(),
                    message.headers.as_ref(),
                );
                span.record("messaging.message.id", accepted.id.as_str());
                vec![(span, accepted)]
            })
        };
        match decoded {
            Ok(accepted) => {
                for (span, accepted) in accepted {
                    let first_of_id = seen_ids.insert(accepted.id.clone());
                    items.push(Item { span, accepted, first_of_id });
                }
                held.push(message);
            }
            Err(DecodeError::Newer { version, reason }) => {
                ingest.metrics.newer_version.inc();
                tracing::error!(
                    subject = %message.subject,
                    stream_sequence,
                    version,
                    %reason,
                    "an ingest message from a newer version cannot be read here; leaving it for an upgraded replica (upgrade messaging)"
                );
                if let Err(error) = message.ack_with(AckKind::Nak(Some(ingest.settings.retry_delay))).await {
                    tracing::warn!(%error, "hand back an ingest message from a newer version");
                }
            }
            Err(DecodeError::Invalid(reason)) => {
                ingest.metrics.rejected.inc();
                tracing::error!(
                    subject = %message.subject,
                    stream_sequence,
                    %reason,
                    "dropping an ingest message that is not a valid MessageAccepted (producer bug)"
                );
                if let Err(error) = message.ack_with(AckKind::Term).await {
                    tracing::warn!(%error, "terminate invalid ingest message");
                }
            }
        }
    }
    (held, items)
}

/// Step 2: where the batch's private recipients and senders are
/// connected: what the [`crate::locate`] cache knows, and one question to
/// presence for the rest. No answer (presence down, slow or erroring)
/// counts as "nowhere" for the rest: the messages then go to the users' own
/// subjects and stay pending, which at worst hands one out again on the
/// recipient's next connect.
async fn locate(ingest: &Ingest, items: &[Item]) -> Locations {
    let users: Vec<String> = items
        .iter()
        .filter_map(|item| Some((item.accepted.target.recipient()?, &item.accepted.from.id)))
        .flat_map(|(to, from)| [to, from])
        .collect::<HashSet<_>>()
        .into_iter()
        .map(|user| user.as_str().to_owned())
        .collect();
    if users.is_empty() {
        return Locations::default();
    }
    let asked = users.len();
    match crate::locate::locate(&ingest.bus, &ingest.locate_cache, ingest.settings.presence_timeout, users).await {
        Ok(answer) => {
            if ingest.presence_unanswered.swap(false, Ordering::Relaxed) {
                tracing::info!("presence answers again; private messages to online users are marked delivered");
            }
            answer
        }
        Err((error, kept)) => {
            ingest.metrics.presence_failures.inc();
            // Warn on the first failure of a run of them, not on every batch.
            if ingest.presence_unanswered.swap(true, Ordering::Relaxed) {
                tracing::debug!(%error, users = asked, "presence still not answering");
            } else {
                tracing::warn!(
                    %error,
                    users = asked,
                    "presence did not say where users are; storing private messages as pending until it answers"
                );
            }
            kept
        }
    }
}

/// Whether `message` is delivered live: anything but a private message to
/// someone not known to be online.
fn needs_no_pending_delivery(message: &MessageAccepted, locations: &Locations) -> bool {
    message.target.recipient().is_none_or(|to| locations.users.contains_key(to.as_str()))
}

/// Step 3: writes the batch in one transaction, idempotent on the message
/// id. A private message is stored as pending unless its recipient is online.
async fn store(ingest: &Ingest, items: &[Item], locations: &Locations) -> bool {
    let rows: Vec<NewRow<'_>> = items
        .iter()
        .map(|item| NewRow { message: &item.accepted, delivered: needs_no_pending_delivery(&item.accepted, locations) })
        .collect();
    let now_delivered: Vec<&MessageId> = rows
        .iter()
        .filter(|row| row.message.kind() == MessageKind::Private && row.delivered)
        .map(|row| &row.message.id)
        .collect();
    let store_span = tracing::info_span!(
        parent: &items[0].span,
        "messaging.store",
        otel.name = "INSERT messages",
        otel.kind = "client",
        db.system.name = ingest.store.backend().system_name(),
        db.operation.name = "INSERT",
        db.collection.name = "messages",
        db.operation.batch.size = rows.len(),
    );
    for item in &items[1..] {
        store_span.add_link(item.span.context().span().span_context().clone());
    }
    let started = Instant::now();
    let outcome = ingest.store.insert_batch(&rows, &now_delivered).instrument(store_span.clone()).await;
    ingest.metrics.store_seconds.observe(started.elapsed().as_secs_f64());
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(error) => {
            store_span.in_scope(|| {
                tracing::error!(%error, batch_size = rows.len(), "failed to store message batch; redelivering");
            });
            return false;
        }
    };
    ingest.metrics.duplicates.inc_by(outcome.duplicates as u64);
    for row in &rows {
        if outcome.inserted.contains(&row.message.id) {
            ingest.metrics.stored.get_or_create(&KindLabel { kind: row.message.kind().as_str() }).inc();
            if !row.delivered {
                ingest.metrics.pending_stored.inc();
            }
        }
    }
    true
}

/// Step 4: publishes every message's deliveries (redelivered ones too, since
/// a crash may have come between the write and the publish), inside the
/// message's consumer span so the trace continues from the edge. Private
/// deliveries to users presence placed on
/// edges that take them are gathered into one message per edge
/// (`deliver.edge.<edge>`), in order, each in the trace of its first message.
async fn route(ingest: &Ingest, items: &[Item], locations: &Locations) -> bool {
    let mut per_edge = crate::route::EdgeBatches::default();
    for (index, item) in items.iter().enumerate().filter(|(_, item)| item.first_of_id) {
        per_edge.routing(index);
        let published = async {
            for (subject, delivery) in
                crate::route::deliveries(&item.accepted, &ingest.bus.subjects, locations, &mut per_edge)?
            {
                ingest.bus.publish(subject, &delivery).await?;
            }
            Ok::<(), sb_events::bus::BusError>(())
        };
        if let Err(error) = published.instrument(item.span.clone()).await {
            item.span.in_scope(|| tracing::error!(%error, "failed to route message; redelivering batch"));
            return false;
        }
        ingest.metrics.routed.get_or_create(&KindLabel { kind: item.accepted.kind().as_str() }).inc();
    }
    // An edge's batch continues the trace of its first message.
    for (subject, batch, first) in per_edge.into_subjects(&ingest.bus.subjects) {
        if let Err(error) = ingest.bus.publish(subject, &batch).instrument(items[first].span.clone()).await {
            tracing::error!(%error, "failed to route private deliveries to an edge; redelivering batch");
            return false;
        }
    }
    true
}

/// Step 5: acks every stream message of the batch.
///
/// No flush is needed between the deliveries and the acks, nor after the
/// acks: they leave on one connection in the order they were published, and
/// nats-server handles a connection's messages in order, so a stream never
/// sees an ack before the deliveries it covers; a crash before they are
/// written loses the acks too (the stream redelivers), and a lost ack only
/// means a redelivery. A flush would cost a round trip per batch.
async fn ack(_ingest: &Ingest, held: &[Message]) {
    for message in held {
        if let Err(error) = message.ack().await {
            // The stream redelivers it after ack_wait; routing again is harmless.
            tracing::warn!(%error, subject = %message.subject, "ack ingest message");
        }
    }
}

/// Naks every stream message of a failed batch so the stream redelivers it
/// after the retry delay.
async fn hand_back(ingest: &Ingest, held: &[Message]) {
    ingest.metrics.failed_batches.inc();
    for message in held {
        if let Err(error) = message.ack_with(AckKind::Nak(Some(ingest.settings.retry_delay))).await {
            tracing::warn!(%error, "nak ingest message (it is redelivered after ack_wait)");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sb_events::{MessageBody, MessageTarget, Sender, UserId};

    fn private_to(to: &str) -> MessageAccepted {
        MessageAccepted {
            id: MessageId::parse("id", "m1").unwrap(),
            target: MessageTarget::User(UserId::parse(to).unwrap()),
            from: Sender { id: UserId::parse("alice").unwrap(), email: "a@example.com".into() },
            message: MessageBody::parse("message", "hi", 4096).unwrap(),
            timestamp_ms: 5,
            origin: None,
        }
    }

    #[test]
    fn private_row_is_pending_unless_recipient_online() {
        let mut online = Locations::default();
        online.users.insert(
            "bob".to_owned(),
            vec![sb_events::presence::EdgeSockets { edge: "e".into(), sockets: 1, edge_delivery: true }],
        );
        assert!(needs_no_pending_delivery(&private_to("bob"), &online));
        assert!(!needs_no_pending_delivery(&private_to("carol"), &online));
        let mut broadcast = private_to("carol");
        broadcast.target = MessageTarget::Everyone;
        assert!(needs_no_pending_delivery(&broadcast, &online));
    }
}
