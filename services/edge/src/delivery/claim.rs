//! Pending private messages and the live deliveries that race them.
//!
//! A socket that just connected is *claiming* (local room [`CLAIMING_ROOM`])
//! until its user's stored offline messages were fetched. Live user
//! deliveries skip claiming sockets and are buffered for them instead
//! ([`buffer_for_claimers`]); [`super::UserLease::finish_claim`] then emits,
//! in the user deliveries' task (so nothing interleaves), the claimed
//! messages in order, then the buffered live ones whose id was not among
//! them, and ends the claim ([`handle_command`]).

use std::collections::HashSet;
use std::sync::Arc;

use sb_events::UserId;
use sb_events::client::NewMessage;
use sb_events::deliver::Delivery;
use socketioxide::socket::Sid;
use tokio::sync::oneshot;

use super::emit::local_socket;
use super::{CLAIMING_ROOM, Inner};
use crate::metrics::ScopeLabel;

/// Most live deliveries buffered for one claiming socket; beyond it the
/// oldest are dropped (and counted).
const CLAIM_BUFFER_MAX: usize = 1024;

/// Deliveries buffered for one claiming socket of `user`.
pub(super) struct ClaimBuffer {
    pub(super) user: UserId,
    deliveries: Vec<Arc<Delivery>>,
}

impl ClaimBuffer {
    pub(super) fn new(user: UserId) -> Self {
        Self { user, deliveries: Vec::new() }
    }
}

/// Work for the user deliveries' task, done in order with its deliveries.
pub(super) enum Command {
    /// Emit a socket's claimed messages and what was buffered, end its claim.
    FinishClaim { sid: Sid, pending: Vec<NewMessage>, done: oneshot::Sender<()> },
}

/// Buffers `delivery` for every socket of `user` still claiming.
pub(super) fn buffer_for_claimers(inner: &Inner, user: &UserId, delivery: &Delivery) {
    let mut claiming = inner.claiming.lock();
    if claiming.is_empty() {
        return;
    }
    let mut shared: Option<Arc<Delivery>> = None;
    for buffer in claiming.values_mut().filter(|buffer| &buffer.user == user) {
        if buffer.deliveries.len() >= CLAIM_BUFFER_MAX {
            buffer.deliveries.remove(0);
            inner.metrics.dropped("claim_buffer_full");
        }
        let delivery = shared.get_or_insert_with(|| Arc::new(delivery.clone())).clone();
        buffer.deliveries.push(delivery);
    }
}

/// Runs one command in the user deliveries' task.
pub(super) fn handle_command(inner: &Inner, command: Command) {
    match command {
        Command::FinishClaim { sid, pending, done } => {
            let Some(buffer) = inner.claiming.lock().remove(&sid) else {
                let _ = done.send(());
                return;
            };
            if let Some(socket) = local_socket(&inner.io, sid) {
                let mut sent: HashSet<&str> = HashSet::with_capacity(pending.len());
                for message in &pending {
                    sent.insert(message.id.as_str());
                    crate::socket::emit_to(&socket, &inner.metrics, sb_events::client::event::NEW_MESSAGE, message);
                    inner.metrics.deliveries.get_or_create(&ScopeLabel { scope: "pending" }).inc();
                }
                let socket_id = sid.to_string();
                for delivery in &buffer.deliveries {
                    if delivery.except_socket.as_deref() == Some(socket_id.as_str())
                        || delivery.except_user.as_deref() == Some(buffer.user.as_str())
                    {
                        continue;
                    }
                    if !sent.is_empty()
                        && delivery.event == sb_events::client::event::NEW_MESSAGE
                        && message_id(delivery).is_some_and(|id| sent.contains(id.as_str()))
                    {
                        continue;
                    }
                    crate::socket::emit_to(&socket, &inner.metrics, &delivery.event, &delivery.data);
                }
                socket.leave(CLAIMING_ROOM);
            }
            let _ = done.send(());
        }
    }
}

fn message_id(delivery: &Delivery) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct IdOnly {
        id: Option<String>,
    }
    serde_json::from_str::<IdOnly>(delivery.data.get()).ok().and_then(|only| only.id)
}
