//! Deliveries (`<p>.deliver.{room.<r>,user.<u>,all}`, core NATS): one client
//! event, already serialized, that every edge with a matching local socket
//! emits once to all of them.
//!
//! `<p>.deliver.presence` carries a [`DeliveryBatch`] instead: the
//! `user_online` / `user_offline` changes presence coalesced over one short
//! window, for every connected socket (`PRESENCE_SCOPE=all`).

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// One event for the sockets behind a delivery subject.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Delivery {
    /// Client event name (see [`crate::client::event`]).
    pub event: String,
    /// The event's payload exactly as clients receive it.
    pub data: Box<RawValue>,
    /// Skip this socket (e.g. the sender of a private message).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub except_socket: Option<String>,
    /// Skip every socket of this user (e.g. the user a `user_joined` is about).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub except_user: Option<String>,
    /// When the message was accepted by its edge (epoch ms): the delivering
    /// edge measures `switchboard_edge_delivery_latency_seconds` from it.
    /// Absent for presence changes; older producers leave it out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_at_ms: Option<i64>,
}

impl Delivery {
    /// A delivery of `event` with `payload` serialized once.
    pub fn new(event: &str, payload: &impl Serialize) -> Result<Self, serde_json::Error> {
        Ok(Self {
            event: event.to_owned(),
            data: serde_json::value::to_raw_value(payload)?,
            except_socket: None,
            except_user: None,
            sent_at_ms: None,
        })
    }

    /// The same delivery, stamped with the message's acceptance time.
    pub fn sent_at(self, sent_at_ms: i64) -> Self {
        Self { sent_at_ms: Some(sent_at_ms), ..self }
    }
}

/// Deliveries to users with sockets on one edge, in one NATS message
/// (`<p>.deliver.edge.<edge>`): what messaging routed to that edge from one
/// batch, in order. Edge contract: emit each to the local sockets of its
/// `user` (skipping `except_socket`), in order.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EdgeDeliveries {
    /// The deliveries, oldest first.
    pub deliveries: Vec<UserDelivery>,
}

/// One event for every local socket of one user.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserDelivery {
    /// The user id.
    pub user: String,
    /// Client event name.
    pub event: String,
    /// The payload exactly as clients receive it.
    pub data: Box<RawValue>,
    /// Skip this socket (the sender's own, for its copy of a private message).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub except_socket: Option<String>,
    /// As [`Delivery::sent_at_ms`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_at_ms: Option<i64>,
}

/// Several deliveries in one NATS message (`<p>.deliver.presence`).
///
/// Edge contract: every edge subscribes to `<p>.deliver.presence` and emits
/// each delivery, in order, as its own Socket.IO event to every local socket
/// (honouring `except_user` / `except_socket`). Presence already cancelled
/// changes that undid each other within the window (a user who came and
/// went is never announced), so one message carries a whole window. What an
/// edge queues per socket is bounded (its per-socket buffer): a socket that
/// cannot keep up during a connect storm loses presence events, counted,
/// instead of slowing the edge or the other sockets.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeliveryBatch {
    /// The deliveries, oldest first.
    pub deliveries: Vec<Delivery>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::{PublicUser, UserPresence};

    #[test]
    fn payload_bytes_pass_through() {
        let payload = UserPresence {
            user: PublicUser { id: "u1".into(), email: "u1@example.com".into() },
            timestamp: "2026-01-01T00:00:00.000Z".into(),
        };
        let delivery = Delivery::new("user_online", &payload).unwrap();
        let wire = serde_json::to_vec(&delivery).unwrap();
        let back: Delivery = serde_json::from_slice(&wire).unwrap();
        let decoded: UserPresence = serde_json::from_str(back.data.get()).unwrap();
        assert_eq!(decoded, payload);
    }

    #[test]
    fn a_number_beyond_f64_passes_through_verbatim() {
        // Found by `wire_types`: valid JSON that `serde_json::Value` cannot
        // hold. A delivery carries it unchanged; a JavaScript client reads it
        // as Infinity.
        let delivery: Delivery = serde_json::from_str(r#"["q",1619E99161]"#).unwrap();
        assert_eq!(delivery.data.get(), "1619E99161");
        let wire = serde_json::to_string(&delivery).unwrap();
        let back: Delivery = serde_json::from_str(&wire).unwrap();
        assert_eq!(back.data.get(), "1619E99161");
        assert!(serde_json::from_str::<serde_json::Value>(back.data.get()).is_err());
    }
}
