//! Room subscriptions and a user's local presence, reference counted.
//!
//! - A room is subscribed (`deliver.room.<room>`) while this edge has a
//!   member: the first [`Lease`] of a room subscribes, the last one dropped
//!   unsubscribes. Concurrent first acquirers wait for the one subscription.
//! - A user needs no subscription of its own (private deliveries reach the
//!   edge on its `deliver.edge.<edge>` subject, or on `deliver.user.*`);
//!   a [`UserLease`] counts the user's local sockets, so deliveries to users
//!   without a socket here are skipped before they are decoded, and holds
//!   the socket's claim of its pending messages (see [`super::claim`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use sb_events::UserId;
use sb_events::client::NewMessage;
use socketioxide::socket::Sid;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::claim::Command;
use super::{Inner, Target};

/// One subscribed room (or `deliver.all`): its lease count and its task's cancel.
pub(super) struct Entry {
    pub(super) target: Target,
    /// Leases alive; changed only under the map lock.
    pub(super) leases: AtomicUsize,
    pub(super) ready: tokio::sync::OnceCell<()>,
    pub(super) cancel: CancellationToken,
}

impl Entry {
    pub(super) fn new(target: Target) -> Self {
        Self {
            target,
            leases: AtomicUsize::new(0),
            ready: tokio::sync::OnceCell::new(),
            cancel: CancellationToken::new(),
        }
    }
}

/// Keeps a room subscription alive; dropping the last lease of a room
/// unsubscribes.
pub struct Lease {
    pub(super) inner: Arc<Inner>,
    pub(super) entry: Arc<Entry>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut entries = self.inner.entries.lock();
        if self.entry.leases.fetch_sub(1, Ordering::AcqRel) == 1 {
            if entries.get(&self.entry.target).is_some_and(|current| Arc::ptr_eq(current, &self.entry)) {
                entries.remove(&self.entry.target);
            }
            self.entry.cancel.cancel();
        }
    }
}

/// One socket of a user on this edge, with its claim of pending messages.
pub struct UserLease {
    pub(super) inner: Arc<Inner>,
    pub(super) user: UserId,
    pub(super) sid: Sid,
}

impl UserLease {
    /// Emits the claimed `pending` messages to the socket in order, then the
    /// live deliveries that arrived meanwhile (skipping ids already sent),
    /// and ends the claim. Runs in the user deliveries' task, so no live
    /// delivery interleaves. Returns once done (or the task is gone).
    pub async fn finish_claim(&self, pending: Vec<NewMessage>) {
        let (done, wait) = oneshot::channel();
        match self.inner.commands.lock().as_mut() {
            Some(commands) => commands.push_back(Command::FinishClaim { sid: self.sid, pending, done }),
            None => return,
        }
        self.inner.command_ready.notify_one();
        // The task answers, or drops the command when it stops.
        let _ = wait.await;
    }
}

impl Drop for UserLease {
    fn drop(&mut self) {
        self.inner.claiming.lock().remove(&self.sid);
        let mut users = self.inner.local_users.lock();
        if let Some(count) = users.get_mut(&self.user) {
            *count -= 1;
            if *count == 0 {
                users.remove(&self.user);
            }
        }
    }
}
