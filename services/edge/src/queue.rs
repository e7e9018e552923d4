//! Per-socket ordering: each socket's events are handled one at a time, in
//! the order they arrived.
//!
//! socketioxide spawns one task per event, so two events of one socket can
//! run in either order (SOCKETIO-NOTES.md, hazard 1). The edge therefore
//! registers no per-event handlers: one [`Dispatcher`] (a hand-written
//! [`MessageHandler`], registered as the fallback handler) receives every
//! event *synchronously*, in the order socketioxide read them off the
//! connection. It checks the socket's rate limit there (a refused event
//! costs one check and never waits behind others) and appends the event to
//! the session's queue. One drain task per socket, alive only while the
//! queue is non-empty, handles the queue front to back. An idle socket has
//! no task.
//!
//! The queue also carries the connection's own work: the connect step
//! (presence, pending messages) runs before the first event, and the
//! disconnect step after the last, so presence sees a socket's joins and
//! leaves between its open and its close.
//!
//! The session keeps only a weak reference to the socket and queued events
//! keep only their ack id, so nothing in the queue keeps a dead socket alive.

use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Weak};
use std::time::Instant;

use futures_util::FutureExt as _;
use socketioxide::adapter::LocalAdapter;
use socketioxide::extract::SocketRef;
use socketioxide::handler::{MessageHandler, Value};
use socketioxide::socket::Socket;
use tracing::Instrument as _;

use crate::ctx::EdgeCtx;
use crate::error::ClientError;
use crate::payload::{echo_name, parse_frame};
use crate::session::{Job, Session};
use crate::socket::{ack_sender, reply_error};

/// Receives every event of one socket, in arrival order, and queues it.
pub(crate) struct Dispatcher {
    pub(crate) ctx: Arc<EdgeCtx>,
    pub(crate) session: Arc<Session>,
}

/// Marker type for [`Dispatcher`]'s [`MessageHandler`] impl.
pub(crate) struct Queued;

impl MessageHandler<LocalAdapter, Queued> for Dispatcher {
    fn call(&self, socket: Arc<Socket>, value: Value, ack_id: Option<i64>) {
        let Some(frame) = value.as_str().and_then(|text| parse_frame(text)) else {
            tracing::debug!(sid = %socket.id, "ignoring an event frame that is not [name, ...]");
            return;
        };
        let refusal = {
            let mut state = self.session.state.lock();
            if state.closed {
                return;
            }
            if !state.bucket.try_take(Instant::now()) {
                Some((ClientError::RateLimited, frame))
            } else if state.queue.len() >= self.ctx.queue_limit {
                Some((ClientError::QueueFull, frame))
            } else {
                state.queue.push_back(Job::Event { frame, ack_id, received: Instant::now() });
                if state.started && !state.running {
                    state.running = true;
                    spawn_drain(&self.ctx, &self.session, socket.clone());
                }
                None
            }
        };
        if let Some((error, frame)) = refusal {
            self.ctx.metrics.event(crate::payload::metric_name(&frame.name), error.outcome());
            let ack = ack_sender(&socket, ack_id);
            reply_error(&SocketRef::from(socket), ack, &self.ctx.metrics, &echo_name(&frame.name), &error);
        }
    }
}

/// Queues the close step (from the disconnect handler).
pub(crate) fn enqueue_close(ctx: &Arc<EdgeCtx>, session: &Arc<Session>, socket: Arc<Socket>) {
    let mut state = session.state.lock();
    if state.closed || state.queue.iter().any(|job| matches!(job, Job::Close)) {
        return;
    }
    state.queue.push_back(Job::Close);
    if state.started && !state.running {
        state.running = true;
        spawn_drain(ctx, session, socket);
    }
}

/// Queues the close step of every session (at shutdown: `io.close()`
/// closes the transports without running the disconnect handlers).
pub(crate) fn close_all(ctx: &Arc<EdgeCtx>) {
    for session in ctx.registry.all() {
        let Some(socket) = session.socket.upgrade() else {
            continue;
        };
        // Start the queue even if the connect handler never ran: its open
        // step then runs first and the close step last.
        session.state.lock().started = true;
        enqueue_close(ctx, &session, socket);
    }
}

/// Starts handling the socket's queue (from the connect handler, once the
/// client has its CONNECT): first the connect step, then whatever queued up.
pub(crate) fn start(ctx: &Arc<EdgeCtx>, session: &Arc<Session>, socket: Arc<Socket>) {
    let mut state = session.state.lock();
    if state.started {
        return;
    }
    state.started = true;
    if !state.running {
        state.running = true;
        spawn_drain(ctx, session, socket);
    }
}

fn spawn_drain(ctx: &Arc<EdgeCtx>, session: &Arc<Session>, socket: Arc<Socket>) {
    let ctx_for_task = ctx.clone();
    let session = Arc::downgrade(session);
    ctx.tracker.spawn(drain(ctx_for_task, session, socket));
}

async fn drain(ctx: Arc<EdgeCtx>, session: Weak<Session>, socket: Arc<Socket>) {
    let Some(session) = session.upgrade() else {
        return;
    };
    let needs_open = !session.state.lock().connect_step_done;
    if needs_open {
        let span = tracing::info_span!(
            parent: None,
            "socketio.connected",
            otel.name = "socketio connected",
            switchboard.user.id = %session.user.id,
            switchboard.socket.id = %socket.id,
        );
        if let Some(link) = socket.extensions.get::<sb_telemetry::TraceLink>() {
            link.parent(&span);
        }
        let step = crate::events::open(&ctx, &session).instrument(span);
        if AssertUnwindSafe(step).catch_unwind().await.is_err() {
            tracing::error!(sid = %socket.id, "the connect step panicked");
        }
    }
    loop {
        let job = {
            let mut state = session.state.lock();
            match state.queue.pop_front() {
                Some(job) => job,
                None => {
                    state.running = false;
                    return;
                }
            }
        };
        match job {
            Job::Event { frame, ack_id, received } => {
                let span = tracing::info_span!(
                    parent: None,
                    "socketio.event",
                    otel.name = %format_args!("socketio {}", crate::payload::metric_name(&frame.name)),
                    otel.kind = "server",
                    otel.status_code = tracing::field::Empty,
                    switchboard.event = %echo_name(&frame.name),
                    switchboard.socket.id = %socket.id,
                    switchboard.user.id = %session.user.id,
                    switchboard.room = tracing::field::Empty,
                    switchboard.event.result = tracing::field::Empty,
                    queued_us = received.elapsed().as_micros() as u64,
                );
                let event = crate::payload::metric_name(&frame.name);
                let step = crate::events::handle(&ctx, &session, &socket, frame, ack_id).instrument(span);
                if AssertUnwindSafe(step).catch_unwind().await.is_err() {
                    tracing::error!(sid = %socket.id, "an event handler panicked");
                }
                ctx.metrics
                    .event_duration
                    .get_or_create(&crate::metrics::EventLabel { event })
                    .observe(received.elapsed().as_secs_f64());
            }
            Job::Close => {
                crate::events::close(&ctx, &session).await;
                let mut state = session.state.lock();
                state.queue.clear();
                state.running = false;
                return;
            }
        }
    }
}
