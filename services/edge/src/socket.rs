//! Writing to one socket: emits that count what did not arrive, and the
//! error replies (`exception` event plus error ack).

use std::sync::Arc;

use sb_events::client::{Exception, event};
use serde::Serialize;
use serde_json::value::RawValue;
use socketioxide::extract::{AckSender, SocketRef};
use socketioxide::handler::{FromConnectParts, FromDisconnectParts, FromMessageParts, Value};
use socketioxide::socket::{DisconnectReason, Socket};
use socketioxide::{SendError, SocketError};

use crate::error::ClientError;
use crate::metrics::Metrics;
use crate::outbox::{Frame, Outbox, frame_bytes};
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

/// The ack of one client event: socketioxide's handle and whether the
/// client asked for an ack at all.
pub(crate) struct Ack {
    sender: AckSender,
    wanted: bool,
}

/// The ack handle for the event with `ack_id` (a no-op handle without one).
pub(crate) fn ack_sender(socket: &Arc<Socket>, ack_id: Option<i64>) -> Ack {
    let mut nothing = Value::Str("".into(), None);
    match AckSender::from_message_parts(socket, &mut nothing, &ack_id) {
        Ok(sender) => Ack { sender, wanted: ack_id.is_some() },
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
    // Frames keep coming while the transport closes (a queue of replies,
    // a busy room): the first overflow closes it, the rest only count.
    if !session.outbox.first_overflow() {
        return;
    }
    if let Some(transports) = session.transports.upgrade() {
        transports.close_overflowed(socket, &session.user.id, metrics);
    }
}

/// Takes a frame of `bytes` into the socket's outgoing buffer
/// (`SOCKET_BUFFER_BYTES`, [`crate::outbox`]); past the bound the socket
/// overflows ([`overflowed`]) and `false` says not to send it. A socket
/// without a session (refused at connect) is not counted.
fn admit(socket: &SocketRef, metrics: &Metrics, bytes: u64) -> bool {
    let Some(session) = socket.extensions.get::<Arc<Session>>() else { return true };
    admit_to(socket, metrics, Some(&session.outbox), bytes)
}

/// [`admit`] with the socket's outbox at hand.
fn admit_to(socket: &SocketRef, metrics: &Metrics, outbox: Option<&Outbox>, bytes: u64) -> bool {
    if outbox.is_none_or(|outbox| outbox.admit(bytes)) {
        return true;
    }
    overflowed(socket, metrics);
    false
}

/// Emits `name` with `data` (serialized JSON, sent as it is) to one socket;
/// a closed socket drops it and counts it, a full buffer (in packets or in
/// bytes) closes the socket (see [`send_failed`]).
/// Returns whether it was handed to the socket.
pub(crate) fn emit_raw(socket: &SocketRef, metrics: &Metrics, name: &str, data: &RawValue) -> bool {
    if !admit(socket, metrics, frame_bytes(Frame::Emit(name), data.get())) {
        return false;
    }
    hand_over(socket, metrics, name, data)
}

/// [`emit_raw`] with the socket's outbox at hand (`None`: not a session,
/// not counted), for loops over many sockets
/// ([`crate::transport::Transports::outboxes`]).
pub(crate) fn emit_raw_to(
    socket: &SocketRef,
    outbox: Option<&Outbox>,
    metrics: &Metrics,
    name: &str,
    data: &RawValue,
) -> bool {
    if !admit_to(socket, metrics, outbox, frame_bytes(Frame::Emit(name), data.get())) {
        return false;
    }
    hand_over(socket, metrics, name, data)
}

fn hand_over(socket: &SocketRef, metrics: &Metrics, name: &str, data: &RawValue) -> bool {
    match socket.emit(name, data) {
        Ok(()) => true,
        Err(error) => {
            send_failed(socket, metrics, &error);
            false
        }
    }
}

/// Counts an emit or ack whose data did not serialize (a bug: logged).
fn encode_failed(metrics: &Metrics, error: &serde_json::Error) {
    tracing::error!(%error, "encode an event");
    metrics.dropped("encode");
}

/// Emits `name` with `data` to one socket (see [`emit_raw`]).
pub(crate) fn emit_to<T: Serialize + ?Sized>(socket: &SocketRef, metrics: &Metrics, name: &str, data: &T) {
    match serde_json::value::to_raw_value(data) {
        Ok(raw) => {
            emit_raw(socket, metrics, name, &raw);
        }
        Err(error) => encode_failed(metrics, &error),
    }
}

/// Acks `socket`'s event with `data` (nothing happens if the client asked
/// for no ack); a full buffer closes the socket, as for [`emit_raw`].
pub(crate) fn ack<T: Serialize + ?Sized>(socket: &SocketRef, ack: Ack, metrics: &Metrics, data: &T) {
    if !ack.wanted {
        return;
    }
    let raw = match serde_json::value::to_raw_value(data) {
        Ok(raw) => raw,
        Err(error) => return encode_failed(metrics, &error),
    };
    if !admit(socket, metrics, frame_bytes(Frame::Ack, raw.get())) {
        return;
    }
    if let Err(error) = ack.sender.send(&raw) {
        send_failed(socket, metrics, &error);
    }
}

/// Tells the client that `event` failed: an `exception`
/// `{status:"error", message, event}` and, if it asked for one, the ack
/// `{status:"error", message}`.
pub(crate) fn reply_error(socket: &SocketRef, ack_sender: Ack, metrics: &Metrics, event: &str, error: &ClientError) {
    let message = error.to_string();
    let exception = Exception::new(message.clone(), Some(event));
    emit_to(socket, metrics, event::EXCEPTION, &exception);
    ack(socket, ack_sender, metrics, &Exception::new(message, None));
}
