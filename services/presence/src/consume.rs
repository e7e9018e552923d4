//! The applier: reads the whole presence stream in order (an ordered
//! consumer, no acks, nothing stored on the server) and applies every
//! message to this replica's state. After a NATS failure it resumes from the
//! sequence after the last one applied.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use sb_events::bus::Bus;
use tokio_util::sync::CancellationToken;

use crate::replica::Replica;

/// Applies the presence stream until `cancel`.
pub async fn run_applier(bus: Bus, replica: Arc<Replica>, cancel: CancellationToken) {
    loop {
        match consume(&bus, &replica, &cancel).await {
            Ok(()) => return,
            Err(error) => {
                tracing::warn!(%error, applied = replica.applied_seq(), "reading the presence stream failed; resuming");
            }
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}

async fn consume(bus: &Bus, replica: &Replica, cancel: &CancellationToken) -> Result<(), async_nats::Error> {
    let mut messages = bus.presence_events_from(replica.applied_seq() + 1).await?;
    loop {
        let message = tokio::select! {
            () = cancel.cancelled() => return Ok(()),
            message = messages.next() => match message {
                Some(message) => message?,
                None => return Err("presence stream consumer ended".into()),
            },
        };
        let seq = message.info()?.stream_sequence;
        if seq <= replica.applied_seq() {
            continue;
        }
        // An event reported inside a trace (a connect, a join) is applied
        // in it; the rest (heartbeat-driven, snapshots) start no trace, nor
        // does the start-up replay of old events.
        let trace = if replica.is_ready() { sb_telemetry::nats::traced(message.headers.as_ref()) } else { None };
        match trace {
            Some(trace) => {
                let span = sb_telemetry::nats::consumer_span_in(&trace, "presence.apply", message.subject.as_str());
                let applied = sb_telemetry::TraceLink::of(&span);
                span.in_scope(|| replica.apply_message(seq, &message.payload, Some(applied)));
            }
            None => replica.apply_message(seq, &message.payload, None),
        }
    }
}
