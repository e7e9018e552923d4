//! `deliver.presence`: the `user_online` / `user_offline` changes of one
//! presence window in one message, for every local socket. Its own loop,
//! because the work is bounded differently: during a connect storm every
//! socket would get every change (O(N²) frames), so past the edge's frame
//! budget ([`crate::throttle::PresenceThrottle`]) a change is dropped for
//! everyone here and counted, and clients can ask `get_online_users`.

use std::sync::Arc;
use std::time::Instant;

use futures_util::StreamExt as _;
use sb_events::deliver::DeliveryBatch;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use super::{Inner, Target, emit};
use crate::metrics::ScopeLabel;

/// Emits every batch that arrives on `subscriber` until `shutdown`.
pub(super) async fn run(inner: Arc<Inner>, mut subscriber: async_nats::Subscriber, shutdown: CancellationToken) {
    loop {
        let message = tokio::select! {
            () = shutdown.cancelled() => return,
            message = subscriber.next() => match message {
                Some(message) => message,
                None => return,
            },
        };
        let span = sb_telemetry::nats::consumer_span("edge.deliver", &message.subject, message.headers.as_ref());
        emit_batch(&inner, &message).instrument(span).await;
    }
}

async fn emit_batch(inner: &Inner, message: &async_nats::Message) {
    let batch: DeliveryBatch = match serde_json::from_slice(&message.payload) {
        Ok(batch) => batch,
        Err(error) => {
            tracing::warn!(subject = %message.subject, %error, "dropping a delivery batch that does not decode");
            inner.metrics.dropped("undecodable");
            return;
        }
    };
    let sockets = usize::try_from(inner.metrics.sockets.get()).unwrap_or(0);
    let mut written = 0;
    for delivery in &batch.deliveries {
        if !inner.presence_throttle.lock().admit(Instant::now(), sockets) {
            inner.metrics.dropped("presence_rate");
            continue;
        }
        inner.metrics.deliveries.get_or_create(&ScopeLabel { scope: "presence" }).inc();
        written += emit::emit(inner, &Target::All, delivery);
    }
    tracing::Span::current().record("switchboard.sockets", written);
}
