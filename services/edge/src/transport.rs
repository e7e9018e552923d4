//! Closing one socket's *transport* (its Engine.IO connection), not the
//! Socket.IO session: the official client treats a lost transport as a
//! reason to reconnect (`transport close` / `transport error`), while a
//! Socket.IO DISCONNECT packet (`socket.disconnect()`) means "the server
//! disconnected you" and the client stays disconnected. socketioxide 0.18
//! closes transports only all at once (`io.close()`), so the edge closes
//! them itself, one by one, without patching socketioxide:
//!
//! - **WebSocket**: every accepted TCP connection is a [`ClosableStream`]
//!   with a [`CloseSwitch`]. Closing the switch makes the stream read EOF
//!   and refuse writes; engineioxide's WebSocket task ends the session
//!   (`TransportClose`, so the edge's disconnect step runs) and drops the
//!   connection, and the client sees the TCP connection end. The switch of a
//!   socket's WebSocket is found from the handshake request (a WebSocket
//!   opened directly) or from the upgrade request that carried the socket's
//!   `sid` ([`Transports::note_request`]).
//! - **Long-polling**: the edge hands its own Engine.IO service a `POST` with
//!   the close packet (`1`) for the socket's `sid`, exactly what a client
//!   sends when it closes; engineioxide ends the session and answers the
//!   pending poll, and the client's next poll finds the session gone and
//!   reconnects.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::connect_info::{ConnectInfo, Connected};
use axum::serve::IncomingStream;
use futures_util::task::AtomicWaker;
use parking_lot::{Mutex, RwLock, RwLockReadGuard};
use socketioxide::extract::SocketRef;
use socketioxide::socket::Sid;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tower::ServiceExt as _;

use crate::metrics::{Metrics, TransportLabel};
use crate::outbox::Outbox;

/// Ends one TCP connection from outside the tasks that read and write it.
#[derive(Debug, Default)]
pub struct CloseSwitch {
    closed: AtomicBool,
    /// A whole HTTP request arrived on the connection.
    requested: AtomicBool,
    /// Bytes the kernel took from the connection's writes (what left the
    /// edge's buffers for this peer; [`crate::outbox`]).
    written: AtomicU64,
    reader: AtomicWaker,
    writer: AtomicWaker,
}

impl CloseSwitch {
    /// Notes that a whole HTTP request arrived on this connection (so the
    /// handshake timeout no longer applies to it).
    pub fn note_request(&self) {
        self.requested.store(true, Ordering::Relaxed);
    }

    /// Whether a whole HTTP request arrived on this connection.
    pub fn has_request(&self) -> bool {
        self.requested.load(Ordering::Relaxed)
    }

    /// Makes the connection read EOF and fail writes from now on, waking
    /// whoever waits on it.
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.reader.wake();
        self.writer.wake();
    }

    /// Whether [`Self::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Bytes written to the connection so far.
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    /// Counts `bytes` as written, as a connection's write would.
    #[cfg(test)]
    pub(crate) fn add_written_for_test(&self, bytes: u64) {
        self.written.fetch_add(bytes, Ordering::Relaxed);
    }

    fn count_written(&self, result: &Poll<io::Result<usize>>) {
        if let Poll::Ready(Ok(bytes)) = result {
            self.written.fetch_add(*bytes as u64, Ordering::Relaxed);
        }
    }
}

/// An accepted TCP connection that a [`CloseSwitch`] can end.
#[derive(Debug)]
pub struct ClosableStream {
    inner: TcpStream,
    switch: Arc<CloseSwitch>,
}

impl AsyncRead for ClosableStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        // Register before checking, so a close between the two still wakes us.
        self.switch.reader.register(cx.waker());
        if self.switch.is_closed() {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for ClosableStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        self.switch.writer.register(cx.waker());
        if self.switch.is_closed() {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        let result = Pin::new(&mut self.inner).poll_write(cx, data);
        self.switch.count_written(&result);
        result
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.switch.is_closed() {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.switch.writer.register(cx.waker());
        if self.switch.is_closed() {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.switch.count_written(&result);
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// The edge's listener: accepts like a `TcpListener` (no delay) and gives
/// every connection a [`CloseSwitch`]. A connection on which no whole HTTP
/// request arrived within the handshake timeout (a client that connects
/// and sends nothing, or half a request) is closed, so idle TCP
/// connections cannot hold the edge's file descriptors.
#[derive(Debug)]
pub struct ClosableListener {
    inner: TcpListener,
    handshake_timeout: Duration,
    timed_out: prometheus_client::metrics::counter::Counter,
}

impl ClosableListener {
    /// Wraps a bound listener; `handshake_timeout` zero closes nothing,
    /// `timed_out` counts the connections it closed.
    pub fn new(
        inner: TcpListener,
        handshake_timeout: Duration,
        timed_out: prometheus_client::metrics::counter::Counter,
    ) -> Self {
        Self { inner, handshake_timeout, timed_out }
    }
}

impl axum::serve::Listener for ClosableListener {
    type Io = ClosableStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (stream, addr) = axum::serve::Listener::accept(&mut self.inner).await;
        let _ = stream.set_nodelay(true);
        let switch = Arc::<CloseSwitch>::default();
        if !self.handshake_timeout.is_zero() {
            let (switch, timeout, timed_out) = (switch.clone(), self.handshake_timeout, self.timed_out.clone());
            tokio::spawn(async move {
                tokio::time::sleep(timeout).await;
                if !switch.has_request() && !switch.is_closed() {
                    tracing::debug!(peer = %addr, ?timeout, "closing a connection that sent no request within HANDSHAKE_TIMEOUT");
                    timed_out.inc();
                    switch.close();
                }
            });
        }
        (ClosableStream { inner: stream, switch }, addr)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// The connection a request came on, in its extensions (`ConnectInfo`).
#[derive(Debug, Clone)]
pub struct Connection {
    /// The peer.
    pub remote: SocketAddr,
    /// Ends the connection.
    pub switch: Arc<CloseSwitch>,
}

impl Connected<IncomingStream<'_, ClosableListener>> for Connection {
    fn connect_info(stream: IncomingStream<'_, ClosableListener>) -> Self {
        Self { remote: *stream.remote_addr(), switch: stream.io().switch.clone() }
    }
}

/// The Engine.IO parameters of a request's query.
#[derive(Debug, Default, serde::Deserialize)]
pub(crate) struct EngineQuery {
    pub(crate) transport: Option<String>,
    pub(crate) sid: Option<String>,
}

impl EngineQuery {
    pub(crate) fn of(uri: &http::Uri) -> Option<Self> {
        axum::extract::Query::<Self>::try_from_uri(uri).ok().map(|query| query.0)
    }
}

/// How a transport was closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    /// The WebSocket's TCP connection was ended.
    Websocket,
    /// The polling session was closed with an Engine.IO close packet.
    Polling,
    /// Nothing was found to close (the socket is gone, or its connection unknown).
    Nothing,
}

impl Closed {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Websocket => "websocket",
            Self::Polling => "polling",
            Self::Nothing => "nothing",
        }
    }
}

/// Finds and closes the transports of this edge's sockets.
#[derive(Debug, Default)]
pub struct Transports {
    /// WebSocket connections that upgraded a polling session, by the
    /// session's `sid` (a WebSocket opened directly is found from the
    /// socket's handshake request instead). Removed when the socket closes.
    upgraded: Mutex<HashMap<Sid, Arc<CloseSwitch>>>,
    /// The edge's whole HTTP service (set once built), for the polling close.
    service: OnceLock<axum::Router>,
    /// The byte counts of the sessions' outgoing buffers, by `sid`, which
    /// their transports' writes and poll responses drain ([`crate::outbox`]).
    outboxes: RwLock<HashMap<Sid, Arc<Outbox>>>,
}

impl Transports {
    /// Sets the service polling closes go through (the edge's router with
    /// Socket.IO layered on it); only the first call counts.
    pub fn set_service(&self, router: axum::Router) {
        let _ = self.service.set(router);
    }

    /// Notes the WebSocket connection of a request that upgrades session
    /// `sid` (`transport=websocket&sid=…`).
    pub fn note_request<B>(&self, request: &http::Request<B>) {
        let Some(EngineQuery { transport, sid }) = EngineQuery::of(request.uri()) else { return };
        let websocket = transport.as_deref() == Some("websocket");
        let sid = sid.and_then(|sid| sid.parse::<Sid>().ok());
        if let (true, Some(sid), Some(ConnectInfo(connection))) =
            (websocket, sid, request.extensions().get::<ConnectInfo<Connection>>())
        {
            self.upgraded.lock().insert(sid, connection.switch.clone());
            // After the insert: a session watched meanwhile finds it there.
            if let Some(outbox) = self.outboxes.read().get(&sid) {
                outbox.attach_websocket(connection.switch.clone());
            }
        }
    }

    /// Counts what `socket`'s transport writes into `outbox`, the byte
    /// count of its outgoing buffer: its WebSocket connection's writes (one
    /// opened directly, or one that upgraded it, now or later) and its
    /// poll responses ([`Self::polled`]).
    pub(crate) fn watch(&self, socket: &socketioxide::socket::Socket, outbox: Arc<Outbox>) {
        self.outboxes.write().insert(socket.id, outbox.clone());
        // After the insert: an upgrade noted meanwhile attaches it itself.
        let upgraded = self.upgraded.lock().get(&socket.id).cloned();
        let switch = upgraded.or_else(|| match socket.transport_type() {
            socketioxide::TransportType::Websocket => {
                socket.req_parts().extensions.get::<ConnectInfo<Connection>>().map(|info| info.0.switch.clone())
            }
            socketioxide::TransportType::Polling => None,
        });
        if let Some(switch) = switch {
            outbox.attach_websocket(switch);
        }
    }

    /// A poll response of `bytes` answered a poll of session `sid`: what
    /// left its outgoing buffer.
    pub(crate) fn polled(&self, sid: Sid, bytes: u64) {
        if let Some(outbox) = self.outboxes.read().get(&sid) {
            outbox.polled(bytes);
        }
    }

    /// The sessions' outgoing byte counts, by `sid`, for a loop that emits
    /// to many sockets (one lock for the loop instead of a lookup in each
    /// socket's extensions). Hold it only while emitting.
    pub(crate) fn outboxes(&self) -> RwLockReadGuard<'_, HashMap<Sid, Arc<Outbox>>> {
        self.outboxes.read()
    }

    /// Forgets what is known of `sid` (its socket closed).
    pub fn forget(&self, sid: Sid) {
        self.upgraded.lock().remove(&sid);
        self.outboxes.write().remove(&sid);
    }

    /// Closes the transport of `socket`, whose outgoing buffer is full: its
    /// client reads slower than it is written to, and an emit that does not
    /// fit would be lost while the socket stays connected. Closing the
    /// transport (not a DISCONNECT) makes the official client reconnect,
    /// after its own randomized delay, and catch up with `get_history`.
    /// Called once per socket: [`crate::socket::overflowed`] lets only the
    /// first overflow through ([`crate::outbox::Outbox::first_overflow`]).
    pub fn close_overflowed(self: &Arc<Self>, socket: &SocketRef, user: &str, metrics: &Metrics) {
        let transport = match socket.transport_type() {
            socketioxide::TransportType::Websocket => "websocket",
            socketioxide::TransportType::Polling => "polling",
        };
        metrics.slow_disconnects.get_or_create(&TransportLabel { transport }).inc();
        tracing::warn!(
            user,
            sid = %socket.id,
            transport,
            "a socket's outgoing buffer is full (its client reads too slowly): closing its transport; the client reconnects and catches up with get_history"
        );
        let transports = self.clone();
        let socket = socket.clone();
        tokio::spawn(async move {
            if transports.close(&socket).await == Closed::Nothing {
                let _ = socket.disconnect();
            }
        });
    }

    /// Closes the transport of `socket` (see the module docs); returns at
    /// once for a WebSocket, after engineioxide took the close packet for polling.
    pub async fn close(&self, socket: &socketioxide::socket::Socket) -> Closed {
        match socket.transport_type() {
            socketioxide::TransportType::Websocket => {
                let upgraded = self.upgraded.lock().get(&socket.id).cloned();
                let direct =
                    || socket.req_parts().extensions.get::<ConnectInfo<Connection>>().map(|info| info.0.switch.clone());
                match upgraded.or_else(direct) {
                    Some(switch) => {
                        switch.close();
                        Closed::Websocket
                    }
                    None => Closed::Nothing,
                }
            }
            socketioxide::TransportType::Polling => {
                let Some(service) = self.service.get().cloned() else { return Closed::Nothing };
                let request = http::Request::post(format!("/socket.io/?EIO=4&transport=polling&sid={}", socket.id))
                    .header(http::header::CONTENT_TYPE, "text/plain;charset=UTF-8")
                    .body(axum::body::Body::from("1"));
                let Ok(request) = request else { return Closed::Nothing };
                match service.oneshot(request).await {
                    Ok(response) if response.status().is_success() => Closed::Polling,
                    Ok(response) => {
                        tracing::debug!(sid = %socket.id, status = %response.status(), "polling close refused");
                        Closed::Nothing
                    }
                    Err(infallible) => match infallible {},
                }
            }
        }
    }
}
