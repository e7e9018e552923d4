//! Draining the edge (SIGTERM, or the admin `Drain` command): readiness
//! fails at once (the `draining` check of `/readyz`), new Engine.IO
//! handshakes are refused with `503`, and every socket's *transport* is
//! closed ([`crate::transport`]), one at a time, paced evenly over the
//! drain's duration, so the official client reconnects by itself — to
//! another edge, since this one is no longer ready.
//!
//! The schedule: the first tenth of the duration (at most 1 s) closes
//! nothing, so load balancers that probe readiness stop sending new
//! connections here first; the rest is cut into one slot per socket, and
//! each socket (in random order) closes at a random point of its own slot (jittered, but never
//! faster than the even pace). Sockets that connected after the drain began
//! (a handshake that was already past the gate) are closed at the end.
//! A refused handshake, and an Engine.IO request refused while draining (the
//! next poll of a session the drain closed), ask the client to close the
//! HTTP connection, so no keep-alive connection brings a reconnect back here.

use std::sync::{Arc, Weak};
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use parking_lot::Mutex;
use sb_presence_client::DrainStarted;
use sb_service::{Check, Health};
use socketioxide::SocketIo;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admission::{ADDRESS_RATE_MESSAGE, AddressLimiter};
use crate::metrics::Metrics;
use crate::session::Registry;
use crate::transport::{Closed, EngineQuery, Transports};

/// The health check a drain fails.
pub const DRAINING_CHECK: &str = "draining";
/// What a refused handshake says.
pub const DRAINING_MESSAGE: &str = "this edge is draining: connect to another edge";
/// The body's `message` of a handshake refused because the edge is full.
pub const FULL_MESSAGE: &str = "this edge is full (MAX_SOCKETS): connect to another edge";
/// The longest quiet start of a drain (see the module docs).
const READINESS_GRACE_MAX: Duration = Duration::from_secs(1);
/// How long the end of a drain waits for the last sockets' close steps.
const SETTLE_MAX: Duration = Duration::from_secs(5);

/// The edge's drain: started at most once, by whichever comes first.
pub(crate) struct Drain {
    default_over: Duration,
    health: Health,
    registry: Arc<Registry>,
    io: SocketIo,
    metrics: Arc<Metrics>,
    tracker: TaskTracker,
    stop: CancellationToken,
    started: Mutex<Option<DrainStarted>>,
    finished: CancellationToken,
    /// Finds and closes the sockets' transports.
    pub(crate) transports: Arc<Transports>,
}

/// What a drain needs from the edge.
pub(crate) struct DrainParts {
    pub(crate) default_over: Duration,
    pub(crate) health: Health,
    pub(crate) registry: Arc<Registry>,
    pub(crate) io: SocketIo,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) tracker: TaskTracker,
    /// Ends a drain early (the service stops).
    pub(crate) stop: CancellationToken,
    pub(crate) transports: Arc<Transports>,
}

impl Drain {
    pub(crate) fn new(parts: DrainParts) -> Arc<Self> {
        let DrainParts { default_over, health, registry, io, metrics, tracker, stop, transports } = parts;
        Arc::new(Self {
            default_over,
            health,
            registry,
            io,
            metrics,
            tracker,
            stop,
            started: Mutex::new(None),
            finished: CancellationToken::new(),
            transports,
        })
    }

    /// Whether a drain began.
    pub(crate) fn is_draining(&self) -> bool {
        self.started.lock().is_some()
    }

    /// Begins draining over `over` (`None`: `DRAIN_DURATION`) and returns
    /// at once; a drain already under way is returned unchanged.
    pub(crate) fn begin(self: &Arc<Self>, over: Option<Duration>) -> DrainStarted {
        let mut started = self.started.lock();
        if let Some(started) = *started {
            return started;
        }
        let over = over.unwrap_or(self.default_over);
        self.health.set(DRAINING_CHECK, Check::failing("the edge is draining"));
        let sessions = self.registry.all();
        let drain = DrainStarted { sockets: sessions.len() as u64, over };
        *started = Some(drain);
        drop(started);
        tracing::info!(sockets = drain.sockets, ?over, "draining: closing every socket's transport gradually");
        self.metrics.draining.set(1);
        let this = self.clone();
        // The registry lists sockets by user; a random order spreads each
        // user's sockets (and each transport) over the whole drain.
        let mut sids: Vec<_> = sessions.into_iter().map(|s| s.sid).collect();
        shuffle(&mut sids);
        self.tracker.spawn(async move {
            tokio::select! {
                () = this.close_gradually(sids, over) => {}
                () = this.stop.cancelled() => {}
            }
            this.finished.cancel();
        });
        drain
    }

    /// Resolves once a begun drain closed every socket (or the edge stops).
    pub(crate) async fn finished(&self) {
        self.finished.cancelled().await;
    }

    async fn close_gradually(&self, sids: Vec<socketioxide::socket::Sid>, over: Duration) {
        let start = Instant::now();
        for (index, sid) in sids.iter().enumerate() {
            tokio::time::sleep_until(start + close_offset(over, sids.len(), index, jitter())).await;
            self.close_one(*sid).await;
        }
        // A WebSocket closes asynchronously: skip what is already on its way out.
        let done: std::collections::HashSet<_> = sids.into_iter().collect();
        for session in self.registry.all() {
            if !done.contains(&session.sid) {
                self.close_one(session.sid).await;
            }
        }
        let settle = Instant::now() + SETTLE_MAX;
        while !self.registry.is_empty() && Instant::now() < settle {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tracing::info!(left = self.registry.len(), "drain finished");
    }

    async fn close_one(&self, sid: socketioxide::socket::Sid) {
        let Some(socket) = crate::delivery::local_socket(&self.io, sid) else { return };
        let closed = self.transports.close(&socket).await;
        if closed == Closed::Nothing {
            // No transport of ours to close (cannot happen for sockets this
            // edge accepted); fall back to a DISCONNECT rather than keep it.
            tracing::warn!(%sid, "no transport found to close; disconnecting the socket");
            let _ = socket.disconnect();
        }
        self.metrics.drain_closes.get_or_create(&crate::metrics::TransportLabel { transport: closed.label() }).inc();
    }
}

/// When the `index`-th of `count` sockets closes, `jitter` ∈ [0, 1) into its slot.
fn close_offset(over: Duration, count: usize, index: usize, jitter: f64) -> Duration {
    if count == 0 {
        return Duration::ZERO;
    }
    let grace = (over / 10).min(READINESS_GRACE_MAX);
    let slot = (over - grace).as_secs_f64() / count as f64;
    grace + Duration::from_secs_f64(slot * (index as f64 + jitter.clamp(0.0, 0.999)))
}

/// A random fraction in [0, 1) (the random bits of a UUIDv7: the crate's
/// thread-local generator, so no new dependency).
fn jitter() -> f64 {
    (uuid::Uuid::now_v7().as_u128() as u64 >> 11) as f64 / (1u64 << 53) as f64
}

/// Puts `items` in a random order (Fisher–Yates).
fn shuffle<T>(items: &mut [T]) {
    for i in (1..items.len()).rev() {
        let j = ((jitter() * (i + 1) as f64) as usize).min(i);
        items.swap(i, j);
    }
}

/// What the middleware in front of Socket.IO needs.
pub(crate) struct Gate {
    pub(crate) drain: Weak<Drain>,
    pub(crate) limiter: AddressLimiter,
}

/// The middleware in front of Socket.IO: notes WebSocket upgrades for
/// [`Transports`]; refuses a new handshake from an address past its
/// `CONNECT_RATE_PER_ADDRESS` (`429`, see [`crate::admission`]); while
/// draining, or while the edge holds `MAX_SOCKETS` sockets, refuses new
/// handshakes (`503`, `Retry-After: 1`, the connection
/// closed) and ends the HTTP connection of refused Engine.IO requests.
pub(crate) async fn gate(State(gate): State<Arc<Gate>>, request: Request, next: Next) -> Response {
    let peer = request.extensions().get::<ConnectInfo<crate::transport::Connection>>().map(|info| &info.0);
    if let Some(connection) = peer {
        connection.switch.note_request();
    }
    let peer = peer.map(|connection| connection.remote);
    let Some(drain) = gate.drain.upgrade() else { return next.run(request).await };
    let engine = request.uri().path().starts_with("/socket.io");
    if !engine {
        return next.run(request).await;
    }
    drain.transports.note_request(&request);
    let query = EngineQuery::of(request.uri());
    let handshake = query.as_ref().and_then(|query| query.sid.as_ref()).is_none();
    // A poll's response carries what left the session's outgoing buffer.
    let poll = (request.method() == http::Method::GET)
        .then_some(query)
        .flatten()
        .filter(|query| query.transport.as_deref() == Some("polling"))
        .and_then(|query| query.sid?.parse::<socketioxide::socket::Sid>().ok());
    if handshake
        && let Some(address) = gate.limiter.address(&request, peer)
        && !gate.limiter.allow(address, std::time::Instant::now())
    {
        drain.metrics.connect_rejects.get_or_create(&crate::metrics::ReasonLabel { reason: "address rate" }).inc();
        let body = axum::Json(serde_json::json!({ "status": "error", "message": ADDRESS_RATE_MESSAGE }));
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [
                (header::CONNECTION, HeaderValue::from_static("close")),
                (header::RETRY_AFTER, HeaderValue::from_static("1")),
            ],
            body,
        )
            .into_response();
    }
    let draining = drain.is_draining();
    // Only a handshake asks whether the edge is full: requests of live
    // sessions (every poll) never take the registry's lock for it.
    let full = handshake && drain.registry.is_full();
    if !draining && !full {
        let response = next.run(request).await;
        count_poll(&drain.transports, poll, &response);
        return response;
    }
    if handshake {
        let (reason, message) = if draining { ("draining", DRAINING_MESSAGE) } else { ("edge full", FULL_MESSAGE) };
        drain.metrics.connect_rejects.get_or_create(&crate::metrics::ReasonLabel { reason }).inc();
        let body = axum::Json(serde_json::json!({ "status": "error", "message": message }));
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [
                (header::CONNECTION, HeaderValue::from_static("close")),
                (header::RETRY_AFTER, HeaderValue::from_static("1")),
            ],
            body,
        )
            .into_response();
    }
    if !draining {
        return next.run(request).await;
    }
    let mut response = next.run(request).await;
    count_poll(&drain.transports, poll, &response);
    // A refused request (e.g. the poll of a session the drain closed) ends
    // its connection, so the client's reconnect opens a new one, which the
    // balancer sends elsewhere; live sessions keep theirs until their turn.
    if engine && response.status().is_client_error() {
        response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// Counts the body of `poll`'s response as written from its session's
/// outgoing buffer ([`crate::outbox`]).
fn count_poll(transports: &Transports, poll: Option<socketioxide::socket::Sid>, response: &Response) {
    if let Some(sid) = poll {
        let bytes = axum::body::HttpBody::size_hint(response.body());
        transports.polled(sid, bytes.exact().unwrap_or(bytes.lower()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closes_are_paced_evenly_after_a_quiet_start() {
        let over = Duration::from_secs(5);
        let offsets: Vec<Duration> = (0..500).map(|i| close_offset(over, 500, i, 0.5)).collect();
        assert_eq!(offsets[0], Duration::from_millis(500) + Duration::from_micros(4500));
        assert!(offsets.windows(2).all(|pair| pair[1] > pair[0]));
        assert!(*offsets.last().unwrap() < over);
        // Never more than one close per slot, whatever the jitter.
        for i in 0..499 {
            assert!(close_offset(over, 500, i, 0.999) <= close_offset(over, 500, i + 1, 0.0));
        }
        assert_eq!(close_offset(Duration::from_secs(60), 1, 0, 0.0), Duration::from_secs(1));
        assert_eq!(close_offset(Duration::ZERO, 3, 2, 0.9), Duration::ZERO);
    }

    #[test]
    fn shuffle_keeps_every_item() {
        let mut items: Vec<u32> = (0..100).collect();
        shuffle(&mut items);
        let mut sorted = items.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..100).collect::<Vec<_>>());
        assert_ne!(items, sorted, "a shuffle of 100 items keeps their order once in 100!");
    }

    #[test]
    fn jitter_stays_in_its_range() {
        for _ in 0..1000 {
            let value = jitter();
            assert!((0.0..1.0).contains(&value), "{value}");
        }
    }
}
