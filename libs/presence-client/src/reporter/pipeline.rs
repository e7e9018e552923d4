//! The single task that numbers events `1, 2, 3, …` in the order they were
//! reported, publishes them, keeps up to `max_in_flight` waiting for their
//! PubAck, takes the acks in order, and republishes every unacknowledged
//! event (same seq, same id) after a failure.

use std::collections::{HashSet, VecDeque};
use std::future::{Future, IntoFuture as _};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::context::PublishError;
use async_nats::jetstream::publish::PublishAck;
use bytes::Bytes;
use parking_lot::Mutex;
use sb_events::EdgeId;
use sb_events::bus::Bus;
use sb_events::presence::{PresenceEvent, PresenceEventKind, SNAPSHOT_PART_MAX_SESSIONS, SessionState};
use sb_events::timestamp::now_ms;
use sb_service::Backoff;
use sb_telemetry::TraceLink;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Command, Progress, SessionSource, Stored};

/// First and longest pause before republishing after a failure.
const RETRY: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(2));

type AckFuture = Pin<Box<dyn Future<Output = Result<PublishAck, PublishError>> + Send>>;

/// One event between its publish and its PubAck.
pub(super) struct InFlight {
    seq: u64,
    msg_id: String,
    payload: Bytes,
    /// The number of sockets once this event is applied.
    sockets_after: u64,
    stored: Option<Stored>,
    /// The trace of the span that reported it, if any.
    trace: Option<TraceLink>,
    /// The producer span (`send <p>.presence.ev.{edge}`), open from the
    /// first publish until the PubAck; `Span::none()` without a trace.
    span: Option<tracing::Span>,
    /// `None` until (re)published.
    ack: Option<AckFuture>,
}

/// The single task that numbers, publishes and acknowledges events in order.
pub(super) struct Pipeline {
    pub(super) bus: Bus,
    pub(super) edge: EdgeId,
    pub(super) incarnation: String,
    pub(super) subject: String,
    pub(super) source: Arc<dyn SessionSource>,
    pub(super) next_seq: u64,
    /// The sockets as presence will see them after the last numbered event
    /// (same idempotent rules), for the heartbeat's socket count.
    pub(super) sockets: HashSet<String>,
    pub(super) in_flight: VecDeque<InFlight>,
    pub(super) progress: Arc<Mutex<Progress>>,
    pub(super) max_in_flight: usize,
}

impl Pipeline {
    pub(super) async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>, cancel: CancellationToken) {
        let mut open = true;
        let mut backoff = Backoff::new(RETRY.0, RETRY.1);
        loop {
            if !open && self.in_flight.is_empty() {
                return;
            }
            self.publish_unsent().await;
            let front_sent = self.in_flight.front().is_some_and(|entry| entry.ack.is_some());
            let has_unsent = self.in_flight.iter().any(|entry| entry.ack.is_none());
            let can_accept = open && self.in_flight.len() < self.max_in_flight;
            tokio::select! {
                biased;
                () = cancel.cancelled() => return,
                result = front_ack(&mut self.in_flight), if front_sent => match result {
                    Ok(ack) => {
                        backoff.reset();
                        self.complete_front(&ack);
                    }
                    Err(error) => {
                        tracing::warn!(%error, pending = self.in_flight.len(), "presence event not acknowledged; republishing");
                        for entry in &mut self.in_flight {
                            entry.ack = None;
                        }
                        if backoff.wait(&cancel).await {
                            return;
                        }
                    }
                },
                command = commands.recv(), if can_accept => match command {
                    Some(command) => self.accept(command),
                    None => open = false,
                },
                () = tokio::time::sleep(backoff.peek()), if has_unsent && !front_sent => {
                    backoff.next_delay();
                }
            }
        }
    }

    /// Publishes, in order, every event not yet sent; stops at the first failure.
    async fn publish_unsent(&mut self) {
        for entry in self.in_flight.iter_mut().filter(|entry| entry.ack.is_none()) {
            let span = entry.span.get_or_insert_with(|| match &entry.trace {
                Some(trace) => sb_telemetry::nats::producer_span_in(trace, &self.subject, Some(&entry.msg_id)),
                None => tracing::Span::none(),
            });
            match self
                .bus
                .publish_durable_pipelined(span, self.subject.clone(), &entry.msg_id, entry.payload.clone())
                .await
            {
                Ok(ack) => entry.ack = Some(ack.into_future()),
                Err(error) => {
                    tracing::warn!(%error, seq = entry.seq, "publish presence event; will retry");
                    return;
                }
            }
        }
    }

    fn complete_front(&mut self, ack: &PublishAck) {
        let Some(entry) = self.in_flight.pop_front() else { return };
        *self.progress.lock() = Progress { last_seq: entry.seq, sockets: entry.sockets_after };
        if let Some(stored) = entry.stored {
            stored.send(ack.sequence);
        }
    }

    fn accept(&mut self, command: Command) {
        match command {
            Command::Report { kind, at_ms, stored, trace } => self.number(kind, at_ms, stored, trace),
            Command::Snapshot { request_id, done } => {
                let sessions = self.source.sessions();
                let count = sessions.len() as u64;
                let at_ms = now_ms();
                let mut parts: Vec<Vec<SessionState>> =
                    sessions.chunks(SNAPSHOT_PART_MAX_SESSIONS).map(<[SessionState]>::to_vec).collect();
                if parts.is_empty() {
                    parts.push(Vec::new());
                }
                let last_part = parts.len() - 1;
                // Presence replaces the edge's sessions only at the last
                // part, so the heartbeat's count changes with it too.
                let snapshot_sockets: HashSet<String> = sessions.iter().map(|session| session.socket.clone()).collect();
                let mut snapshot_sockets = Some(snapshot_sockets);
                for (part, sessions) in parts.into_iter().enumerate() {
                    if part == last_part
                        && let Some(sockets) = snapshot_sockets.take()
                    {
                        self.sockets = sockets;
                    }
                    let kind = PresenceEventKind::Snapshot {
                        snapshot: request_id.clone(),
                        part: u32::try_from(part).unwrap_or(u32::MAX),
                        last: part == last_part,
                        sessions,
                    };
                    self.number(kind, at_ms, None, None);
                }
                tracing::debug!(%request_id, sockets = count, "snapshot queued");
                let _ = done.send(count);
            }
        }
    }

    /// Gives `kind` the next seq and queues it for publishing.
    fn number(&mut self, kind: PresenceEventKind, at_ms: i64, stored: Option<Stored>, trace: Option<TraceLink>) {
        match &kind {
            PresenceEventKind::SessionOpened { socket, .. } => {
                self.sockets.insert(socket.clone());
            }
            PresenceEventKind::SessionClosed { socket } => {
                self.sockets.remove(socket);
            }
            PresenceEventKind::EdgeDown { .. } => self.sockets.clear(),
            _ => {}
        }
        let event = PresenceEvent {
            edge: self.edge.as_str().to_owned(),
            incarnation: self.incarnation.clone(),
            seq: self.next_seq,
            at_ms,
            kind,
        };
        let payload = match serde_json::to_vec(&event) {
            Ok(bytes) => Bytes::from(bytes),
            Err(error) => {
                // Cannot happen for these plain types; never skip a seq silently.
                tracing::error!(%error, seq = event.seq, "encode presence event; event dropped");
                return;
            }
        };
        self.next_seq += 1;
        self.in_flight.push_back(InFlight {
            seq: event.seq,
            msg_id: event.msg_id(),
            payload,
            sockets_after: self.sockets.len() as u64,
            stored,
            trace,
            span: None,
            ack: None,
        });
    }
}

/// Resolves with the PubAck of the oldest in-flight event (pending while there is none).
async fn front_ack(in_flight: &mut VecDeque<InFlight>) -> Result<PublishAck, PublishError> {
    match in_flight.front_mut().and_then(|entry| entry.ack.as_mut()) {
        Some(ack) => ack.await,
        None => std::future::pending().await,
    }
}
