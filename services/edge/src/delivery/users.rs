//! Deliveries to users: one task for every user of this edge.
//!
//! Two subscriptions feed it, each made once for the edge's whole life:
//! - `deliver.edge.<edge>`: [`EdgeDeliveries`] batches messaging routed to
//!   this edge because presence says the users have sockets here (private
//!   messages and the sender's copies);
//! - `deliver.user.*`: one [`Delivery`] per user for everything else (a
//!   private message to a user presence did not place, admin notifications,
//!   `PRESENCE_SCOPE=rooms`). Deliveries to users without a local socket are
//!   skipped from the subject alone, before decoding.
//!
//! One task handles both, and the claim commands of connecting sockets,
//! so a socket's claimed messages, the live deliveries buffered meanwhile
//! and what comes after never interleave.

use std::sync::Arc;

use futures_util::StreamExt as _;
use sb_events::UserId;
use sb_events::deliver::{Delivery, EdgeDeliveries};
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use super::{Inner, Target, claim, emit};
use crate::metrics::ScopeLabel;

/// Handles user deliveries and claim commands until `shutdown`.
pub(super) async fn run(
    inner: Arc<Inner>,
    mut edge: async_nats::Subscriber,
    mut users: async_nats::Subscriber,
    shutdown: CancellationToken,
) {
    loop {
        while let Some(command) = next_command(&inner) {
            claim::handle_command(&inner, command);
        }
        tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            () = inner.command_ready.notified() => {}
            message = edge.next() => match message {
                Some(message) => {
                    let span = sb_telemetry::nats::consumer_span("edge.deliver", &message.subject, message.headers.as_ref());
                    emit_edge_batch(&inner, &message).instrument(span).await;
                }
                None => break,
            },
            message = users.next() => match message {
                Some(message) => emit_user_delivery(&inner, &message).await,
                None => break,
            },
        }
    }
    // Unanswered commands are dropped here, which wakes their callers.
    inner.commands.lock().take();
}

fn next_command(inner: &Inner) -> Option<claim::Command> {
    inner.commands.lock().as_mut().and_then(std::collections::VecDeque::pop_front)
}

async fn emit_edge_batch(inner: &Inner, message: &async_nats::Message) {
    let batch: EdgeDeliveries = match serde_json::from_slice(&message.payload) {
        Ok(batch) => batch,
        Err(error) => {
            tracing::warn!(subject = %message.subject, %error, "dropping an edge delivery batch that does not decode");
            inner.metrics.dropped("undecodable");
            return;
        }
    };
    let mut written = 0;
    for delivery in batch.deliveries {
        let Ok(user) = UserId::parse(delivery.user) else {
            inner.metrics.dropped("undecodable");
            continue;
        };
        let delivery = Delivery {
            event: delivery.event,
            data: delivery.data,
            except_socket: delivery.except_socket,
            except_user: None,
            sent_at_ms: delivery.sent_at_ms,
        };
        written += deliver(inner, user, &delivery).await;
    }
    tracing::Span::current().record("switchboard.sockets", written);
}

async fn emit_user_delivery(inner: &Inner, message: &async_nats::Message) {
    let Some(user) = inner.bus.subjects.user_of_deliver_subject(message.subject.as_str()) else {
        return;
    };
    // Most of what arrives on the wildcard is for users of other edges.
    if !inner.local_users.lock().contains_key(&user) {
        return;
    }
    let span = sb_telemetry::nats::consumer_span("edge.deliver", &message.subject, message.headers.as_ref());
    async {
        match serde_json::from_slice::<Delivery>(&message.payload) {
            Ok(delivery) => {
                let written = deliver(inner, user, &delivery).await;
                tracing::Span::current().record("switchboard.sockets", written);
            }
            Err(error) => {
                tracing::warn!(subject = %message.subject, %error, "dropping a delivery that is not a Delivery");
                inner.metrics.dropped("undecodable");
            }
        }
    }
    .instrument(span)
    .await;
}

/// Emits `delivery` to `user`'s local sockets, buffering it for the ones
/// still claiming; returns to how many sockets it was written.
async fn deliver(inner: &Inner, user: UserId, delivery: &Delivery) -> usize {
    inner.metrics.deliveries.get_or_create(&ScopeLabel { scope: "user" }).inc();
    claim::buffer_for_claimers(inner, &user, delivery);
    emit::emit(inner, &Target::User(user), delivery)
}
