//! Who receives a message: validation of an ingested [`MessageAccepted`] and
//! the deliveries it turns into.
//!
//! | kind | subject(s) | event | skipped socket |
//! |---|---|---|---|
//! | room | `deliver.room.<room>` | `new_message` | none |
//! | private | `deliver.user.<to>` and `deliver.user.<from>` | `new_message` | the sending socket, on the sender's subject |
//! | broadcast | `deliver.all` | `new_message` | none |
//! | announcement | `deliver.all` | `admin_announcement` | none |

use sb_events::client::{AdminAnnouncement, NewMessage, event};
use sb_events::deliver::Delivery;
use sb_events::ingest::{MessageAccepted, MessageKind};
use sb_events::{IdError, RoomName, Subjects, UserId};

/// Why an ingested message cannot be stored or routed. Such a message is a
/// producer bug; it is logged and terminated, never retried.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidMessage {
    /// The id is empty or too long.
    #[error("message id must be 1 to 64 characters")]
    BadId,
    /// A room message without a room, or with an invalid one.
    #[error("room message needs a valid room: {0}")]
    BadRoom(String),
    /// A private message without a recipient, or with an invalid one.
    #[error("private message needs a valid recipient: {0}")]
    BadRecipient(String),
    /// The sender id is not a valid user id.
    #[error("invalid sender: {0}")]
    BadSender(IdError),
}

/// Who a validated message goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A room's members.
    Room(RoomName),
    /// One user (and the sender's other sockets).
    Private(UserId),
    /// Everyone, as `new_message`.
    Broadcast,
    /// Everyone, as `admin_announcement`.
    Announcement,
}

/// A message that passed [`validate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidMessage {
    /// The message as the edge published it.
    pub accepted: MessageAccepted,
    /// The sender's id, parsed.
    pub sender: UserId,
    /// Where it goes.
    pub target: Target,
}

/// Checks that `accepted` names what its kind needs.
pub fn validate(accepted: MessageAccepted) -> Result<ValidMessage, InvalidMessage> {
    if accepted.id.is_empty() || accepted.id.len() > 64 {
        return Err(InvalidMessage::BadId);
    }
    let sender = UserId::parse(accepted.from.id.clone()).map_err(InvalidMessage::BadSender)?;
    let target = match accepted.kind {
        MessageKind::Room => {
            let room = accepted.room.clone().ok_or_else(|| InvalidMessage::BadRoom("room missing".to_owned()))?;
            Target::Room(RoomName::parse(room).map_err(|error| InvalidMessage::BadRoom(error.to_string()))?)
        }
        MessageKind::Private => {
            let to = accepted.to.clone().ok_or_else(|| InvalidMessage::BadRecipient("to missing".to_owned()))?;
            Target::Private(UserId::parse(to).map_err(|error| InvalidMessage::BadRecipient(error.to_string()))?)
        }
        MessageKind::Broadcast => Target::Broadcast,
        MessageKind::Announcement => Target::Announcement,
    };
    Ok(ValidMessage { accepted, sender, target })
}

impl ValidMessage {
    /// The `new_message` payload clients see for this message.
    pub fn new_message(&self) -> NewMessage {
        let accepted = &self.accepted;
        NewMessage {
            id: accepted.id.clone(),
            from: accepted.from.clone(),
            room: self.room().map(|room| room.as_str().to_owned()),
            to: self.recipient().map(|to| to.as_str().to_owned()),
            message: accepted.message.clone(),
            timestamp: sb_events::timestamp::rfc3339_ms(accepted.timestamp_ms),
        }
    }

    /// The room, if this is a room message.
    pub fn room(&self) -> Option<&RoomName> {
        match &self.target {
            Target::Room(room) => Some(room),
            _ => None,
        }
    }

    /// The private recipient, if this is a private message.
    pub fn recipient(&self) -> Option<&UserId> {
        match &self.target {
            Target::Private(to) => Some(to),
            _ => None,
        }
    }

    /// The deliveries to publish, each with its subject.
    pub fn deliveries(&self, subjects: &Subjects) -> Result<Vec<(String, Delivery)>, serde_json::Error> {
        let deliveries = match &self.target {
            Target::Room(room) => {
                vec![(subjects.deliver_room(room), Delivery::new(event::NEW_MESSAGE, &self.new_message())?)]
            }
            Target::Private(to) => {
                // The payload is serialized once; the sender's copy skips the socket it came from.
                let to_recipient = Delivery::new(event::NEW_MESSAGE, &self.new_message())?;
                let except_socket = self.accepted.origin.as_ref().map(|origin| origin.socket.clone());
                if *to == self.sender {
                    // A note to oneself: one delivery reaches every other socket.
                    vec![(subjects.deliver_user(to), Delivery { except_socket, ..to_recipient })]
                } else {
                    let to_sender = Delivery { except_socket, ..to_recipient.clone() };
                    vec![(subjects.deliver_user(to), to_recipient), (subjects.deliver_user(&self.sender), to_sender)]
                }
            }
            Target::Broadcast => {
                vec![(subjects.deliver_all(), Delivery::new(event::NEW_MESSAGE, &self.new_message())?)]
            }
            Target::Announcement => {
                let payload = AdminAnnouncement {
                    id: self.accepted.id.clone(),
                    from: self.accepted.from.clone(),
                    message: self.accepted.message.clone(),
                    timestamp: sb_events::timestamp::rfc3339_ms(self.accepted.timestamp_ms),
                };
                vec![(subjects.deliver_all(), Delivery::new(event::ADMIN_ANNOUNCEMENT, &payload)?)]
            }
        };
        Ok(deliveries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sb_events::client::PublicUser;
    use sb_events::ingest::Origin;

    fn accepted(kind: MessageKind) -> MessageAccepted {
        MessageAccepted {
            id: "0190a000-0000-7000-8000-000000000001".into(),
            kind,
            from: PublicUser { id: "alice".into(), email: "alice@example.com".into() },
            room: None,
            to: None,
            message: "hi".into(),
            timestamp_ms: 1_764_104_561_123,
            origin: Some(Origin { edge: "edge-0".into(), socket: "sock-1".into() }),
        }
    }

    #[test]
    fn room_message_goes_to_the_room_subject() {
        let subjects = Subjects::default();
        let mut message = accepted(MessageKind::Room);
        message.room = Some("a.*".into());
        let valid = validate(message).unwrap();
        let deliveries = valid.deliveries(&subjects).unwrap();
        assert_eq!(deliveries.len(), 1);
        assert_eq!(deliveries[0].0, subjects.deliver_room(&RoomName::parse("a.*").unwrap()));
        assert_eq!(deliveries[0].1.event, "new_message");
        assert_eq!(deliveries[0].1.except_socket, None);
        let payload: NewMessage = serde_json::from_str(deliveries[0].1.data.get()).unwrap();
        assert_eq!(payload.room.as_deref(), Some("a.*"));
        assert_eq!(payload.timestamp, "2025-11-25T21:02:41.123Z");
    }

    #[test]
    fn private_message_skips_only_the_sending_socket() {
        let subjects = Subjects::default();
        let mut message = accepted(MessageKind::Private);
        message.to = Some("bob".into());
        let deliveries = validate(message).unwrap().deliveries(&subjects).unwrap();
        assert_eq!(deliveries.len(), 2);
        assert_eq!(deliveries[0].0, subjects.deliver_user(&UserId::parse("bob").unwrap()));
        assert_eq!(deliveries[0].1.except_socket, None);
        assert_eq!(deliveries[1].0, subjects.deliver_user(&UserId::parse("alice").unwrap()));
        assert_eq!(deliveries[1].1.except_socket.as_deref(), Some("sock-1"));
    }

    #[test]
    fn note_to_self_is_one_delivery() {
        let mut message = accepted(MessageKind::Private);
        message.to = Some("alice".into());
        let deliveries = validate(message).unwrap().deliveries(&Subjects::default()).unwrap();
        assert_eq!(deliveries.len(), 1);
        assert_eq!(deliveries[0].1.except_socket.as_deref(), Some("sock-1"));
    }

    #[test]
    fn announcement_has_its_own_event() {
        let deliveries =
            validate(accepted(MessageKind::Announcement)).unwrap().deliveries(&Subjects::default()).unwrap();
        assert_eq!(deliveries[0].0, "sb.deliver.all");
        assert_eq!(deliveries[0].1.event, "admin_announcement");
        let payload: AdminAnnouncement = serde_json::from_str(deliveries[0].1.data.get()).unwrap();
        assert_eq!(payload.from.email, "alice@example.com");
    }

    #[test]
    fn missing_or_bad_targets_are_refused() {
        assert!(matches!(validate(accepted(MessageKind::Room)), Err(InvalidMessage::BadRoom(_))));
        assert!(matches!(validate(accepted(MessageKind::Private)), Err(InvalidMessage::BadRecipient(_))));
        let mut message = accepted(MessageKind::Room);
        message.room = Some(String::new());
        assert!(matches!(validate(message), Err(InvalidMessage::BadRoom(_))));
        let mut message = accepted(MessageKind::Broadcast);
        message.id = String::new();
        assert_eq!(validate(message), Err(InvalidMessage::BadId));
        let mut message = accepted(MessageKind::Broadcast);
        message.from.id = String::new();
        assert!(matches!(validate(message), Err(InvalidMessage::BadSender(_))));
    }
}
