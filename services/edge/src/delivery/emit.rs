//! Emitting a delivery to this edge's sockets, one socket at a time, so that
//! a socket whose outgoing buffer is full is known by name: its transport is
//! closed ([`crate::socket::overflowed`]) instead of it silently missing the
//! event while it stays connected. The payload is a `RawValue`, so each
//! socket's frame is a copy of the producer's bytes, not a new serialization.

use sb_events::deliver::Delivery;
use socketioxide::SocketIo;
use socketioxide::operators::BroadcastOperators;
use socketioxide::socket::Sid;

use super::{CLAIMING_ROOM, Inner, Target, room_key, user_key};

/// Every socket of the default namespace, or `None` once the server closed
/// (after `io.close()` the namespace is gone and `io.to(..)` would panic).
pub(crate) fn root(io: &SocketIo) -> Option<BroadcastOperators> {
    io.of("/")
}

/// The local socket `sid`, if it is still connected.
pub(crate) fn local_socket(io: &SocketIo, sid: Sid) -> Option<socketioxide::extract::SocketRef> {
    root(io)?.get_socket(sid)
}

/// Emits `delivery` once to the local sockets of `target`; returns to how
/// many sockets it was written.
pub(super) fn emit(inner: &Inner, target: &Target, delivery: &Delivery) -> usize {
    let Some(all) = root(&inner.io) else {
        return 0;
    };
    let except_socket =
        delivery.except_socket.as_deref().and_then(|sid| sid.parse::<Sid>().ok()).and_then(|sid| all.get_socket(sid));
    let mut operators: BroadcastOperators = match (target, except_socket) {
        (Target::Room(room), Some(socket)) => socket.to(room_key(room)),
        (Target::Room(room), None) => all.to(room_key(room)),
        (Target::User(user), Some(socket)) => socket.to(user_key(user)).except(CLAIMING_ROOM),
        (Target::User(user), None) => all.to(user_key(user)).except(CLAIMING_ROOM),
        (Target::All | Target::PresenceBatch, Some(socket)) => socket.broadcast(),
        (Target::All | Target::PresenceBatch, None) => all,
    };
    if let Some(user) = delivery.except_user.as_deref() {
        operators = operators.except(user_key_text(user));
    }
    let mut written = 0;
    let sockets = operators.sockets();
    let outboxes = inner.transports.outboxes();
    for socket in sockets {
        let outbox = outboxes.get(&socket.id).map(|outbox| &**outbox);
        if crate::socket::emit_raw_to(&socket, outbox, &inner.metrics, &delivery.event, &delivery.data) {
            written += 1;
        }
    }
    drop(outboxes);
    if written > 0
        && let Some(sent_at_ms) = delivery.sent_at_ms
    {
        inner.metrics.observe_delivery_latency(sent_at_ms);
    }
    written
}

fn user_key_text(user: &str) -> String {
    format!("user:{user}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_excepted_user_room_is_the_user_key() {
        let user = sb_events::UserId::parse("u1").unwrap();
        assert_eq!(super::user_key_text(user.as_str()), super::user_key(&user));
    }
}
