//! Who receives a message: the deliveries an ingested [`MessageAccepted`]
//! turns into. (Whether a message names what its kind needs was settled
//! when it was decoded: a [`MessageAccepted`] is valid by construction.)
//!
//! | kind | subject(s) | event | skipped socket |
//! |---|---|---|---|
//! | room | `deliver.room.<room>` | `new_message` | none |
//! | private | `deliver.user.<to>` and `deliver.user.<from>` | `new_message` | the sending socket, on the sender's subject |
//! | broadcast | `deliver.all` | `new_message` | none |
//! | announcement | `deliver.all` | `admin_announcement` | none |

use std::collections::BTreeMap;

use sb_events::client::event;
use sb_events::deliver::{Delivery, EdgeDeliveries, UserDelivery};
use sb_events::ingest::Origin;
use sb_events::presence::{EdgeSockets, Locations};
use sb_events::{EdgeId, MessageAccepted, MessageTarget, Subjects, UserId};

/// Private deliveries gathered per edge while a batch is routed, published
/// as one [`EdgeDeliveries`] per edge on `deliver.edge.<edge>`.
///
/// Each batch remembers the first message (by the caller's index, see
/// [`EdgeBatches::routing`]) that put a delivery into it: the batch is
/// published in that message's trace.
#[derive(Debug, Default)]
pub struct EdgeBatches {
    edges: BTreeMap<String, (usize, Vec<UserDelivery>)>,
    routing: usize,
}

impl EdgeBatches {
    /// Says that the deliveries gathered from now on are message `index`'s.
    pub fn routing(&mut self, index: usize) {
        self.routing = index;
    }

    fn push(&mut self, edge: &str, delivery: UserDelivery) {
        let routing = self.routing;
        self.edges.entry(edge.to_owned()).or_insert_with(|| (routing, Vec::new())).1.push(delivery);
    }

    /// Whether nothing was gathered.
    pub fn is_empty(&self) -> bool {
        self.edges.is_empty()
    }

    /// The gathered deliveries with their subjects and the index of the
    /// first message in each (an edge id that is not a valid id cannot come
    /// from presence and is skipped).
    pub fn into_subjects(self, subjects: &Subjects) -> Vec<(String, EdgeDeliveries, usize)> {
        self.edges
            .into_iter()
            .filter_map(|(edge, (first, deliveries))| {
                let edge = EdgeId::parse(edge).ok()?;
                Some((subjects.deliver_edge(&edge), EdgeDeliveries { deliveries }, first))
            })
            .collect()
    }
}

/// The deliveries of `message` to publish on their own subjects, each with
/// its subject; a private message's copies for users presence placed on
/// edges that take edge deliveries go into `per_edge` instead. A payload is
/// serialized once, however many subjects it goes to.
pub fn deliveries(
    message: &MessageAccepted,
    subjects: &Subjects,
    locations: &Locations,
    per_edge: &mut EdgeBatches,
) -> Result<Vec<(String, Delivery)>, serde_json::Error> {
    let sent_at = message.timestamp_ms;
    let deliveries = match &message.target {
        MessageTarget::Room(room) => {
            vec![(
                subjects.deliver_room(room),
                Delivery::new(event::NEW_MESSAGE, &message.new_message())?.sent_at(sent_at),
            )]
        }
        MessageTarget::User(to) => {
            let payload = Delivery::new(event::NEW_MESSAGE, &message.new_message())?.sent_at(sent_at);
            let mut routing = PrivateRouting { payload, subjects, locations, per_edge, own_subjects: Vec::new() };
            if *to != message.from.id {
                routing.copy_to(to, None);
            }
            // The sender's copy skips the socket it came from; a note to
            // oneself is that one copy.
            routing.copy_to(&message.from.id, message.origin.as_ref());
            routing.own_subjects
        }
        MessageTarget::Everyone => {
            vec![(subjects.deliver_all(), Delivery::new(event::NEW_MESSAGE, &message.new_message())?.sent_at(sent_at))]
        }
        MessageTarget::Announcement => {
            let announcement = Delivery::new(event::ADMIN_ANNOUNCEMENT, &message.admin_announcement())?;
            vec![(subjects.deliver_all(), announcement.sent_at(sent_at))]
        }
    };
    Ok(deliveries)
}

/// Where the copies of one private message go.
struct PrivateRouting<'a> {
    payload: Delivery,
    subjects: &'a Subjects,
    locations: &'a Locations,
    per_edge: &'a mut EdgeBatches,
    /// Copies for users' own subjects.
    own_subjects: Vec<(String, Delivery)>,
}

impl PrivateRouting<'_> {
    /// `user`'s copy: into the per-edge batches for every edge presence
    /// places the user on when they all take edge deliveries, else on the
    /// user's own subject. With `origin` (the sender's copy) the sending
    /// socket is skipped, and so is its edge when that socket is the user's
    /// only one there.
    fn copy_to(&mut self, user: &UserId, origin: Option<&Origin>) {
        let except_socket = origin.map(|origin| origin.socket.clone());
        match self.locations.users.get(user.as_str()) {
            Some(edges) if edges.iter().all(|edge| edge.edge_delivery) => {
                for EdgeSockets { edge, sockets, .. } in edges {
                    if origin.is_some_and(|origin| origin.edge == *edge) && *sockets <= 1 {
                        continue;
                    }
                    self.per_edge.push(
                        edge,
                        UserDelivery {
                            user: user.as_str().to_owned(),
                            event: self.payload.event.clone(),
                            data: self.payload.data.clone(),
                            except_socket: except_socket.clone(),
                            sent_at_ms: self.payload.sent_at_ms,
                        },
                    );
                }
            }
            _ => self
                .own_subjects
                .push((self.subjects.deliver_user(user), Delivery { except_socket, ..self.payload.clone() })),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sb_events::client::{AdminAnnouncement, NewMessage};
    use sb_events::ingest::Origin;
    use sb_events::{MessageBody, MessageId, RoomName, Sender};

    fn accepted(target: MessageTarget) -> MessageAccepted {
        MessageAccepted {
            id: MessageId::parse("id", "0190a000-0000-7000-8000-000000000001").unwrap(),
            target,
            from: Sender { id: UserId::parse("alice").unwrap(), email: "alice@example.com".into() },
            message: MessageBody::parse("message", "hi", 4096).unwrap(),
            timestamp_ms: 1_764_104_561_123,
            origin: Some(Origin { edge: "edge-0".into(), socket: "sock-1".into() }),
        }
    }

    fn user(id: &str) -> UserId {
        UserId::parse(id).unwrap()
    }

    fn none() -> Locations {
        Locations::default()
    }

    fn deliveries(message: &MessageAccepted, subjects: &Subjects) -> Vec<(String, Delivery)> {
        let mut per_edge = EdgeBatches::default();
        let deliveries = super::deliveries(message, subjects, &none(), &mut per_edge).unwrap();
        assert!(per_edge.is_empty(), "nobody was located");
        deliveries
    }

    fn at(edges: &[(&str, u32, bool)]) -> Vec<EdgeSockets> {
        edges
            .iter()
            .map(|(edge, sockets, direct)| EdgeSockets {
                edge: (*edge).into(),
                sockets: *sockets,
                edge_delivery: *direct,
            })
            .collect()
    }

    #[test]
    fn located_private_copies_go_to_their_edges_in_one_batch_each() {
        let subjects = Subjects::default();
        let mut locations = Locations::default();
        locations.users.insert("bob".into(), at(&[("edge-0", 1, true), ("edge-1", 2, true)]));
        // alice's only socket is the sending one: no copy for her.
        locations.users.insert("alice".into(), at(&[("edge-0", 1, true)]));
        let mut per_edge = EdgeBatches::default();
        let own = super::deliveries(&accepted(MessageTarget::User(user("bob"))), &subjects, &locations, &mut per_edge)
            .unwrap();
        assert!(own.is_empty());
        let batches = per_edge.into_subjects(&subjects);
        assert_eq!(batches.len(), 2);
        assert_eq!(batches[0].0, subjects.deliver_edge(&EdgeId::parse("edge-0").unwrap()));
        assert_eq!(batches[0].1.deliveries.len(), 1);
        assert_eq!(batches[0].1.deliveries[0].user, "bob");

        // With a second socket of alice on edge-0, her copy skips only the sending socket.
        locations.users.insert("alice".into(), at(&[("edge-0", 2, true)]));
        let mut per_edge = EdgeBatches::default();
        super::deliveries(&accepted(MessageTarget::User(user("bob"))), &subjects, &locations, &mut per_edge).unwrap();
        let batches = per_edge.into_subjects(&subjects);
        let to_alice = batches[0].1.deliveries.iter().find(|d| d.user == "alice").expect("alice's copy");
        assert_eq!(to_alice.except_socket.as_deref(), Some("sock-1"));
    }

    #[test]
    fn a_user_on_an_edge_without_edge_delivery_gets_its_own_subject() {
        let subjects = Subjects::default();
        let mut locations = Locations::default();
        locations.users.insert("bob".into(), at(&[("edge-0", 1, true), ("old-edge", 1, false)]));
        let mut per_edge = EdgeBatches::default();
        let own = super::deliveries(&accepted(MessageTarget::User(user("bob"))), &subjects, &locations, &mut per_edge)
            .unwrap();
        assert!(per_edge.is_empty());
        assert_eq!(
            own.iter().map(|(subject, _)| subject.clone()).collect::<Vec<_>>(),
            [subjects.deliver_user(&user("bob")), subjects.deliver_user(&user("alice"))]
        );
    }

    #[test]
    fn room_message_goes_to_the_room_subject() {
        let subjects = Subjects::default();
        let room = RoomName::parse("a.*").unwrap();
        let deliveries = deliveries(&accepted(MessageTarget::Room(room.clone())), &subjects);
        assert_eq!(deliveries.len(), 1);
        assert_eq!(deliveries[0].0, subjects.deliver_room(&room));
        assert_eq!(deliveries[0].1.event, "new_message");
        assert_eq!(deliveries[0].1.except_socket, None);
        let payload: NewMessage = serde_json::from_str(deliveries[0].1.data.get()).unwrap();
        assert_eq!(payload.room.as_deref(), Some("a.*"));
        assert_eq!(payload.timestamp, "2025-11-25T21:02:41.123Z");
    }

    #[test]
    fn private_message_skips_only_the_sending_socket() {
        let subjects = Subjects::default();
        let deliveries = deliveries(&accepted(MessageTarget::User(user("bob"))), &subjects);
        assert_eq!(deliveries.len(), 2);
        assert_eq!(deliveries[0].0, subjects.deliver_user(&user("bob")));
        assert_eq!(deliveries[0].1.except_socket, None);
        assert_eq!(deliveries[1].0, subjects.deliver_user(&user("alice")));
        assert_eq!(deliveries[1].1.except_socket.as_deref(), Some("sock-1"));
    }

    #[test]
    fn note_to_self_is_one_delivery() {
        let deliveries = deliveries(&accepted(MessageTarget::User(user("alice"))), &Subjects::default());
        assert_eq!(deliveries.len(), 1);
        assert_eq!(deliveries[0].1.except_socket.as_deref(), Some("sock-1"));
    }

    #[test]
    fn announcement_has_its_own_event() {
        let deliveries = deliveries(&accepted(MessageTarget::Announcement), &Subjects::default());
        assert_eq!(deliveries[0].0, "sb.deliver.all");
        assert_eq!(deliveries[0].1.event, "admin_announcement");
        let payload: AdminAnnouncement = serde_json::from_str(deliveries[0].1.data.get()).unwrap();
        assert_eq!(payload.from.email, "alice@example.com");
    }
}
