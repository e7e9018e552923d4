//! The emitter: while this replica holds the [`Lease`], every coalescing
//! window it takes the transitions applied since the last window, cancels
//! the ones that undid each other ([`coalesce`]), publishes the rest as
//! deliveries, flushes, and records in the lease how far it got.
//!
//! What one window publishes:
//! - `user_online` / `user_offline`: with `PRESENCE_SCOPE=all` one
//!   [`DeliveryBatch`] on `<p>.deliver.presence` per 1000 changes; with
//!   `rooms` one [`Delivery`] per co-member on `<p>.deliver.user.<id>`;
//!   with `none` nothing.
//! - `user_joined` / `user_left`: one [`Delivery`] per change on
//!   `<p>.deliver.room.<room>`, skipping the user's own sockets.

use std::time::Duration;

use bytes::Bytes;
use sb_events::bus::Bus;
use sb_events::client::{RoomPresence, UserPresence, event};
use sb_events::deliver::{Delivery, DeliveryBatch};
use sb_events::timestamp::rfc3339_ms;
use sb_events::{RoomName, Subjects, UserId};
use tokio_util::sync::CancellationToken;

use crate::lease::{Lease, LeaseError};
use crate::replica::Replica;
use crate::state::{Change, Scope, Transition, coalesce, coalesce_presence};

/// The most deliveries in one [`DeliveryBatch`] message.
const BATCH_MAX: usize = 1000;

/// Runs the lease and, while holding it, publishes transitions every
/// `window`. When `cancel` fires, a holder publishes what it still owes and
/// releases the lease, so another replica takes over at once.
pub async fn run_emitter(
    bus: Bus,
    replica: std::sync::Arc<Replica>,
    mut lease: Lease,
    window: Duration,
    coalesce_above: usize,
    cancel: CancellationToken,
) {
    let mut ticker = tokio::time::interval(window.max(Duration::from_millis(1)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Every lease record also arrives on the core subject: a released
    // lease is taken over at the next tick instead of after its ttl.
    let mut lease_records = match bus.client.subscribe(bus.subjects.presence_lease()).await {
        Ok(subscriber) => Some(subscriber),
        Err(error) => {
            tracing::warn!(%error, "watch the presence lease subject; a released lease is noticed within its ttl");
            None
        }
    };
    loop {
        tokio::select! {
            () = cancel.cancelled() => break,
            _ = ticker.tick() => {}
            Some(_) = next_record(&mut lease_records) => {
                if !lease.is_held() {
                    lease.check_soon();
                }
                continue;
            }
        }
        let acquired = lease.maintain(replica.emitted_through()).await;
        if acquired {
            // Everything after the record's `emitted_through` may not have
            // gone out: publish it (the log still holds it).
            let through = lease.emitted_through();
            replica.set_emitted_through(through);
        }
        if !lease.is_held() {
            if replica.is_leader() {
                replica.set_leader(false);
            }
            replica.set_emitted_through(lease.emitted_through());
            continue;
        }
        if !replica.is_leader() {
            replica.set_leader(true);
        }
        if let Err(error) = emit_window(&bus, &replica, &mut lease, coalesce_above).await {
            tracing::warn!(%error, "publish presence transitions");
        }
    }
    if lease.is_held() {
        // Announce what this replica owes, then hand the lease on.
        if let Err(error) = emit_window(&bus, &replica, &mut lease, coalesce_above).await {
            tracing::warn!(%error, "publish the last presence transitions at shutdown; the next holder publishes them");
        }
        if let Err(error) = lease.release(replica.emitted_through()).await {
            tracing::warn!(%error, "release the presence emission lease; another replica takes it over after its ttl");
        }
    }
    replica.set_leader(false);
}

async fn next_record(subscriber: &mut Option<async_nats::Subscriber>) -> Option<async_nats::Message> {
    use futures_util::StreamExt as _;
    match subscriber {
        Some(subscriber) => subscriber.next().await,
        None => std::future::pending().await,
    }
}

#[derive(Debug, thiserror::Error)]
enum EmitError {
    #[error("publish to {subject}: {source}")]
    Publish { subject: String, source: sb_events::bus::BusError },
    #[error("flush NATS: {0}")]
    Flush(async_nats::client::FlushError),
    #[error(transparent)]
    Lease(#[from] LeaseError),
}

async fn emit_window(bus: &Bus, replica: &Replica, lease: &mut Lease, coalesce_above: usize) -> Result<(), EmitError> {
    let Some((through, transitions, traces)) = replica.take_for_emission() else { return Ok(()) };
    if !transitions.is_empty() {
        let computed = transitions.len();
        // A user who went offline and came back within the window is not
        // announced at all. Below the storm threshold every other transition
        // is announced, in order; in a storm, room changes that undo each
        // other are dropped too and the rest grouped into few messages.
        let storm = computed > coalesce_above;
        let (kept, messages) = if storm {
            let kept = coalesce(transitions.clone());
            let messages = deliveries(&bus.subjects, replica.scope, &kept);
            (kept, messages)
        } else {
            let kept = coalesce_presence(transitions.clone());
            let messages = deliveries_in_order(&bus.subjects, replica.scope, &kept);
            (kept, messages)
        };
        replica.metrics.transitions_coalesced.inc_by((computed - kept.len()) as u64);
        for (subject, payload, seq) in messages.iter().cloned() {
            // A transition caused by an event reported inside a trace (a
            // join, a connect) is announced in that trace.
            let span = match traces.get(&seq) {
                Some(trace) => sb_telemetry::nats::producer_span_in(trace, &subject, None),
                None => tracing::Span::none(),
            };
            if let Err(source) = bus.publish_bytes_in(span, subject.clone(), payload).await {
                replica.put_back(transitions, traces);
                return Err(EmitError::Publish { subject, source });
            }
        }
        if let Err(error) = bus.client.flush().await {
            replica.put_back(transitions, traces);
            return Err(EmitError::Flush(error));
        }
        replica.metrics.delivery_messages.inc_by(messages.len() as u64);
        for transition in &kept {
            let change = match transition.change {
                Change::Online => "online",
                Change::Offline => "offline",
                Change::Joined(_) => "joined",
                Change::Left(_) => "left",
            };
            replica.metrics.transitions_emitted.get_or_create(&vec![("change".to_owned(), change.to_owned())]).inc();
        }
        // Published: record it, so a replica taking over does not repeat it.
        if let Err(error) = lease.write(through).await {
            if matches!(error, LeaseError::Lost) {
                replica.set_leader(false);
            }
            replica.set_emitted_through(through);
            return Err(error.into());
        }
    }
    replica.set_emitted_through(through);
    Ok(())
}

/// One transition as NATS traffic: online/offline changes (scope `all`) go
/// into the shared presence batch, everything else is its own message.
enum Encoded {
    Batched(Delivery),
    Message { subject: String, payload: Bytes, joined: bool },
}

/// One NATS message to publish: subject, payload, and the stream sequence
/// of the (first) transition it announces, whose trace it continues.
pub type Outgoing = (String, Bytes, u64);

fn encode_transition(subjects: &Subjects, scope: Scope, transition: &Transition) -> Vec<Encoded> {
    let timestamp = rfc3339_ms(transition.at_ms);
    match &transition.change {
        Change::Online | Change::Offline => {
            let name = if transition.change == Change::Online { event::USER_ONLINE } else { event::USER_OFFLINE };
            let payload = UserPresence { user: transition.user.clone(), timestamp };
            let Ok(mut delivery) = Delivery::new(name, &payload) else { return Vec::new() };
            match scope {
                Scope::All => {
                    delivery.except_user = Some(transition.user.id.clone());
                    vec![Encoded::Batched(delivery)]
                }
                Scope::Rooms => {
                    let Ok(bytes) = serde_json::to_vec(&delivery) else { return Vec::new() };
                    let bytes = Bytes::from(bytes);
                    transition
                        .recipients
                        .iter()
                        .filter_map(|recipient| UserId::parse(recipient.as_str()).ok())
                        .map(|user| Encoded::Message {
                            subject: subjects.deliver_user(&user),
                            payload: bytes.clone(),
                            joined: false,
                        })
                        .collect()
                }
                Scope::None => Vec::new(),
            }
        }
        Change::Joined(room) | Change::Left(room) => {
            let Ok(room_name) = RoomName::parse(room.as_str()) else {
                tracing::warn!(room = %room, "presence transition for an invalid room name skipped");
                return Vec::new();
            };
            let joined = matches!(transition.change, Change::Joined(_));
            let name = if joined { event::USER_JOINED } else { event::USER_LEFT };
            let payload = RoomPresence { room: room.clone(), user: transition.user.clone(), timestamp };
            let Ok(mut delivery) = Delivery::new(name, &payload) else { return Vec::new() };
            delivery.except_user = Some(transition.user.id.clone());
            let Ok(bytes) = serde_json::to_vec(&delivery) else { return Vec::new() };
            vec![Encoded::Message { subject: subjects.deliver_room(&room_name), payload: Bytes::from(bytes), joined }]
        }
    }
}

/// Collects batched deliveries into `deliver.presence` messages of at most
/// `BATCH_MAX` each.
struct Batcher<'a> {
    subjects: &'a Subjects,
    batch: Vec<Delivery>,
    /// The stream sequence of the batch's first transition.
    first_seq: u64,
}

impl<'a> Batcher<'a> {
    fn new(subjects: &'a Subjects) -> Self {
        Self { subjects, batch: Vec::new(), first_seq: 0 }
    }

    fn push(&mut self, delivery: Delivery, seq: u64, messages: &mut Vec<Outgoing>) {
        if self.batch.is_empty() {
            self.first_seq = seq;
        }
        self.batch.push(delivery);
        if self.batch.len() >= BATCH_MAX {
            self.flush(messages);
        }
    }

    fn flush(&mut self, messages: &mut Vec<Outgoing>) {
        if self.batch.is_empty() {
            return;
        }
        let deliveries = std::mem::take(&mut self.batch);
        match serde_json::to_vec(&DeliveryBatch { deliveries }) {
            Ok(bytes) => messages.push((self.subjects.deliver_presence(), Bytes::from(bytes), self.first_seq)),
            Err(error) => tracing::error!(%error, "encode presence batch"),
        }
    }
}

/// The NATS messages (subject, payload) that announce a storm window's
/// `transitions` (already coalesced: at most one change per user and per
/// user and room).
///
/// Order: every `user_left`, then the `user_online` / `user_offline`
/// changes, then every `user_joined`. A user that came online is announced
/// before its joins, and one that went offline after its leaves, while the
/// online/offline changes of a whole window still share few messages.
pub fn deliveries(subjects: &Subjects, scope: Scope, transitions: &[Transition]) -> Vec<Outgoing> {
    let mut left = Vec::new();
    let mut joined = Vec::new();
    let mut messages = Vec::new();
    let mut batcher = Batcher::new(subjects);
    for transition in transitions {
        let seq = transition.seq;
        for encoded in encode_transition(subjects, scope, transition) {
            match encoded {
                Encoded::Batched(delivery) => batcher.push(delivery, seq, &mut messages),
                Encoded::Message { subject, payload, joined: true } => joined.push((subject, payload, seq)),
                Encoded::Message { subject, payload, joined: false } => match scope {
                    Scope::Rooms if matches!(transition.change, Change::Online | Change::Offline) => {
                        messages.push((subject, payload, seq))
                    }
                    _ => left.push((subject, payload, seq)),
                },
            }
        }
    }
    batcher.flush(&mut messages);
    left.into_iter().chain(messages).chain(joined).collect()
}

/// The NATS messages that announce a quiet window's `transitions`, every
/// one of them, in the order they happened: consecutive online/offline
/// changes still share a batch, which is flushed before any room message
/// so nothing overtakes what came before it.
pub fn deliveries_in_order(subjects: &Subjects, scope: Scope, transitions: &[Transition]) -> Vec<Outgoing> {
    let mut messages = Vec::new();
    let mut batcher = Batcher::new(subjects);
    for transition in transitions {
        let seq = transition.seq;
        for encoded in encode_transition(subjects, scope, transition) {
            match encoded {
                Encoded::Batched(delivery) => batcher.push(delivery, seq, &mut messages),
                Encoded::Message { subject, payload, .. } => {
                    batcher.flush(&mut messages);
                    messages.push((subject, payload, seq));
                }
            }
        }
    }
    batcher.flush(&mut messages);
    messages
}

#[cfg(test)]
mod tests {
    use super::*;
    use sb_events::client::PublicUser;

    fn transition(id: &str, change: Change, recipients: &[&str]) -> Transition {
        Transition {
            seq: 1,
            at_ms: 0,
            user: PublicUser { id: id.into(), email: format!("{id}@example.com") },
            change,
            recipients: recipients.iter().map(|r| r.to_string()).collect(),
        }
    }

    #[test]
    fn a_quiet_window_announces_every_transition_in_order() {
        let subjects = Subjects::default();
        let transitions = vec![
            transition("u1", Change::Online, &[]),
            transition("u1", Change::Joined("lobby".into()), &[]),
            transition("u1", Change::Left("lobby".into()), &[]),
            transition("u1", Change::Offline, &[]),
        ];
        let messages = deliveries_in_order(&subjects, Scope::All, &transitions);
        let events: Vec<String> = messages
            .iter()
            .flat_map(|(subject, payload, _)| {
                if subject == &subjects.deliver_presence() {
                    let batch: DeliveryBatch = serde_json::from_slice(payload).unwrap();
                    batch.deliveries.into_iter().map(|d| d.event).collect::<Vec<_>>()
                } else {
                    vec![serde_json::from_slice::<Delivery>(payload).unwrap().event]
                }
            })
            .collect();
        assert_eq!(events, ["user_online", "user_joined", "user_left", "user_offline"]);
    }

    #[test]
    fn scope_all_batches_presence_and_rooms_get_their_own_subject() {
        let subjects = Subjects::default();
        let mut transitions: Vec<Transition> =
            (0..1500).map(|i| transition(&format!("u{i}"), Change::Online, &[])).collect();
        transitions.insert(0, transition("u1", Change::Joined("a.*".into()), &[]));
        transitions.push(transition("u9", Change::Left("a.*".into()), &[]));
        let messages = deliveries(&subjects, Scope::All, &transitions);
        assert_eq!(messages.len(), 4);
        let left: Delivery = serde_json::from_slice(&messages[0].1).unwrap();
        assert_eq!(left.event, "user_left", "leaves first");
        let messages = &messages[1..];
        assert_eq!(messages[0].0, "sb.deliver.presence");
        let first: DeliveryBatch = serde_json::from_slice(&messages[0].1).unwrap();
        assert_eq!(first.deliveries.len(), 1000);
        assert_eq!(first.deliveries[0].event, "user_online");
        assert_eq!(first.deliveries[0].except_user.as_deref(), Some("u0"));
        let payload: UserPresence = serde_json::from_str(first.deliveries[0].data.get()).unwrap();
        assert_eq!(payload.timestamp, "1970-01-01T00:00:00.000Z");
        assert_eq!(messages[2].0, subjects.deliver_room(&RoomName::parse("a.*").unwrap()));
        let joined: Delivery = serde_json::from_slice(&messages[2].1).unwrap();
        assert_eq!(joined.event, "user_joined", "joins after the online changes");
    }

    #[test]
    fn scope_rooms_tells_co_members_and_none_tells_nobody() {
        let subjects = Subjects::default();
        let transitions = [transition("u1", Change::Offline, &["u2", "u3"])];
        let messages = deliveries(&subjects, Scope::Rooms, &transitions);
        let targets: Vec<&str> = messages.iter().map(|(s, _, _)| s.as_str()).collect();
        assert_eq!(
            targets,
            [
                subjects.deliver_user(&UserId::parse("u2").unwrap()),
                subjects.deliver_user(&UserId::parse("u3").unwrap())
            ]
        );
        assert!(deliveries(&subjects, Scope::None, &transitions).is_empty());
    }
}
