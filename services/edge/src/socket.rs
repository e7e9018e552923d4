//! Writing to one socket: emits that count what did not arrive, and the
//! error replies (`exception` event plus error ack).

use std::sync::Arc;

use sb_events::client::{Exception, event};
use serde::Serialize;
use socketioxide::extract::{AckSender, SocketRef};
use socketioxide::handler::{FromConnectParts, FromDisconnectParts, FromMessageParts, Value};
use socketioxide::socket::{DisconnectReason, Socket};
use socketioxide::{SendError, SocketError};

use crate::error::ClientError;
use crate::metrics::Metrics;
use crate::session::Session;

/// The socket itself (not a [`SocketRef`]), for code that must keep a weak
/// reference or build an [`AckSender`] later.
pub(crate) struct SocketArc(pub(crate) Arc<Socket>);

impl FromConnectParts<socketioxide::adapter::LocalAdapter> for SocketArc {
    type Error = std::convert::Infallible;
    fn from_connect_parts(socket: &Arc<Socket>, _: &Option<Value>) -> Result<Self, Self::Error> {
        Ok(Self(socket.clone()))
    }
}

impl FromDisconnectParts<socketioxide::adapter::LocalAdapter> for SocketArc {
    type Error = std::convert::Infallible;
    fn from_disconnect_parts(socket: &Arc<Socket>, _: DisconnectReason) -> Result<Self, Self::Error> {
        Ok(Self(socket.clone()))
    }
}

/// The ack handle for the event with `ack_id` (a no-op handle without one).
pub(crate) fn ack_sender(socket: &Arc<Socket>, ack_id: Option<i64>) -> AckSender {
    let mut nothing = Value::Str("".into(), None);
    match AckSender::from_message_parts(socket, &mut nothing, &ack_id) {
        Ok(sender) => sender,
        Err(never) => match never {},
    }
}

/// Counts a failed emit or ack; a full buffer closes the socket's transport
/// (see [`crate::transport::Transports::close_overflowed`]): a socket that
/// stays connected never silently misses an event.
pub(crate) fn send_failed(socket: &SocketRef, metrics: &Metrics, error: &SendError) {
    match error {
        SendError::Socket(SocketError::InternalChannelFull) => overflowed(socket, metrics),
        SendError::Socket(SocketError::Closed) => metrics.dropped("closed"),
        SendError::Serialize(error) => {
            tracing::error!(%error, "encode an event");
            metrics.dropped("encode");
        }
    }
}

/// The socket's outgoing buffer is full: counts the lost emit and closes the
/// socket's transport (once).
pub(crate) fn overflowed(socket: &SocketRef, metrics: &Metrics) {
    metrics.dropped("buffer_full");
    let Some(session) = socket.extensions.get::<Arc<Session>>() else {
        // Not yet (or no longer) a session: the connect step failed or the
        // socket is closing anyway.
        return;
    };
    if let Some(transports) = session.transports.upgrade() {
        transports.close_overflowed(socket, &session.user.id, metrics);
    }
}

/// Emits `name` with `data` to one socket; a closed socket drops it and
/// counts it, a full buffer closes the socket (see [`send_failed`]).
pub(crate) fn emit_to<T: Serialize + ?Sized>(socket: &SocketRef, metrics: &Metrics, name: &str, data: &T) {
    if let Err(error) = socket.emit(name, data) {
        send_failed(socket, metrics, &error);
    }
}

/// Acks `socket`'s event with `data` (nothing happens if the client asked
/// for no ack).
pub(crate) fn ack<T: Serialize + ?Sized>(socket: &SocketRef, ack: AckSender, metrics: &Metrics, data: &T) {
    if let Err(error) = ack.send(data) {
        send_failed(socket, metrics, &error);
    }
}

/// Tells the client that `event` failed: an `exception`
/// `{status:"error", message, event}` and, if it asked for one, the ack
/// `{status:"error", message}`.
pub(crate) fn reply_error(
    socket: &SocketRef,
    ack_sender: AckSender,
    metrics: &Metrics,
    event: &str,
    error: &ClientError,
) {
    let message = error.to_string();
    let exception = Exception::new(message.clone(), Some(event));
    emit_to(socket, metrics, event::EXCEPTION, &exception);
    ack(socket, ack_sender, metrics, &Exception::new(message, None));
}
