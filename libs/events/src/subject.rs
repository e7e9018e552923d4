//! Subject names. [`Subjects`] is the only place a subject string is built.
//!
//! Shape: `<prefix>.<kind>.<scope>[.<token>]`, fixed tokens lowercase and
//! general to specific, so `sb.deliver.room.*` and `sb.msg.>` select what one
//! expects. Client strings (rooms, user ids) enter a subject only as one
//! [`SubjectToken`].

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::ids::{EdgeId, RoomName, UserId};
use crate::message::MessageTarget;

/// One subject token made from any string: base64url without padding of its
/// UTF-8 bytes (the empty string becomes `=`). A token never contains `.`,
/// `*`, `>` or whitespace, so no client string can be a wildcard or add a token.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SubjectToken(String);

impl SubjectToken {
    /// Encodes `text` as one token.
    pub fn encode(text: &str) -> Self {
        if text.is_empty() {
            return Self("=".to_owned());
        }
        Self(URL_SAFE_NO_PAD.encode(text.as_bytes()))
    }

    /// Decodes a token made by [`SubjectToken::encode`].
    pub fn decode(token: &str) -> Option<String> {
        if token == "=" {
            return Some(String::new());
        }
        let bytes = URL_SAFE_NO_PAD.decode(token).ok()?;
        String::from_utf8(bytes).ok()
    }

    /// The token text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Why a subject prefix was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid SUBJECT_PREFIX {0:?}: use 1 to 32 letters, digits, '_' or '-' (one NATS token, also part of stream names)"
)]
pub struct InvalidPrefix(pub String);

/// Every subject and stream name of one deployment, built from its prefix
/// (`SUBJECT_PREFIX`, default `sb`). See `docs/subjects.md`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subjects {
    prefix: String,
    stream_prefix: String,
}

impl Default for Subjects {
    fn default() -> Self {
        Self::new("sb").expect("the default prefix is valid")
    }
}

impl Subjects {
    /// Subjects under `prefix`: one token of `[A-Za-z0-9_-]`, 1..=32 long.
    pub fn new(prefix: &str) -> Result<Self, InvalidPrefix> {
        let valid = !prefix.is_empty()
            && prefix.len() <= 32
            && prefix.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !valid {
            return Err(InvalidPrefix(prefix.to_owned()));
        }
        Ok(Self { prefix: prefix.to_owned(), stream_prefix: prefix.to_ascii_uppercase().replace('-', "_") })
    }

    /// The prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    // --- ingest: client messages, on the JetStream stream `<PREFIX>_MSG` ---

    /// Name of the JetStream stream holding accepted messages until messaging has stored them.
    pub fn ingest_stream(&self) -> String {
        format!("{}_MSG", self.stream_prefix)
    }
    /// Accepted messages batched by one edge ([`crate::ingest::IngestBatch`]).
    pub fn ingest_batch(&self, edge: &EdgeId) -> String {
        format!("{}.msg.batch.{}", self.prefix, SubjectToken::encode(edge.as_str()).as_str())
    }
    /// Whether `subject` carries an [`crate::ingest::IngestBatch`].
    pub fn is_ingest_batch(&self, subject: &str) -> bool {
        subject.strip_prefix(&self.prefix).is_some_and(|rest| rest.starts_with(".msg.batch."))
    }
    /// Every ingest subject (`<p>.msg.>`), the ingest stream's filter.
    pub fn ingest_all_subjects(&self) -> String {
        format!("{}.msg.>", self.prefix)
    }
    /// The ingest subject of a message to `target`: `<p>.msg.room.<room>`,
    /// `<p>.msg.user.<user>`, `<p>.msg.all` or `<p>.msg.announce`. Derived
    /// from the target, so a message's subject and kind never disagree.
    pub fn ingest(&self, target: &MessageTarget) -> String {
        match target {
            MessageTarget::Room(room) => {
                format!("{}.msg.room.{}", self.prefix, SubjectToken::encode(room.as_str()).as_str())
            }
            MessageTarget::User(user) => {
                format!("{}.msg.user.{}", self.prefix, SubjectToken::encode(user.as_str()).as_str())
            }
            MessageTarget::Everyone => format!("{}.msg.all", self.prefix),
            MessageTarget::Announcement => format!("{}.msg.announce", self.prefix),
        }
    }

    // --- deliver: what edges emit to their sockets, core NATS ---

    /// Deliveries to a room's members.
    pub fn deliver_room(&self, room: &RoomName) -> String {
        format!("{}.deliver.room.{}", self.prefix, SubjectToken::encode(room.as_str()).as_str())
    }
    /// Deliveries to every socket of a user.
    pub fn deliver_user(&self, user: &UserId) -> String {
        format!("{}.deliver.user.{}", self.prefix, SubjectToken::encode(user.as_str()).as_str())
    }
    /// Every user delivery subject (`<p>.deliver.user.*`): an edge
    /// subscribes to it once, instead of once per user.
    pub fn deliver_user_all(&self) -> String {
        format!("{}.deliver.user.*", self.prefix)
    }
    /// The user a `deliver.user.<token>` subject is for.
    pub fn user_of_deliver_subject(&self, subject: &str) -> Option<UserId> {
        let token = subject.strip_prefix(&self.prefix)?.strip_prefix(".deliver.user.")?;
        UserId::parse(SubjectToken::decode(token)?).ok()
    }
    /// Private deliveries routed to one edge ([`crate::deliver::EdgeDeliveries`]).
    pub fn deliver_edge(&self, edge: &EdgeId) -> String {
        format!("{}.deliver.edge.{}", self.prefix, SubjectToken::encode(edge.as_str()).as_str())
    }
    /// Deliveries to every connected socket.
    pub fn deliver_all(&self) -> String {
        format!("{}.deliver.all", self.prefix)
    }
    /// Coalesced `user_online` / `user_offline` for every connected socket,
    /// published by presence as a [`crate::deliver::DeliveryBatch`] (one
    /// message per coalescing window instead of one per transition).
    pub fn deliver_presence(&self) -> String {
        format!("{}.deliver.presence", self.prefix)
    }

    // --- auth ---

    /// Name of the stream of shared login-failure records (one per email hash).
    pub fn login_failures_stream(&self) -> String {
        format!("{}_LOGIN", self.stream_prefix)
    }
    /// The login-failure record of one email; `key` is a hash of the email
    /// (base64url, a valid token).
    pub fn login_failures(&self, key: &str) -> String {
        format!("{}.auth.login.{key}", self.prefix)
    }
    /// Every login-failure record, the stream's filter.
    pub fn login_failures_all(&self) -> String {
        format!("{}.auth.login.*", self.prefix)
    }

    // --- presence ---

    /// Name of the JetStream stream of presence events (connects, joins, ...).
    pub fn presence_stream(&self) -> String {
        format!("{}_PRESENCE", self.stream_prefix)
    }
    /// Presence events published by one edge.
    pub fn presence_events(&self, edge: &EdgeId) -> String {
        format!("{}.presence.ev.{}", self.prefix, SubjectToken::encode(edge.as_str()).as_str())
    }
    /// Every presence event subject, the presence stream's filter.
    pub fn presence_events_all(&self) -> String {
        format!("{}.presence.ev.>", self.prefix)
    }
    /// Heartbeats of one edge (core NATS).
    pub fn presence_heartbeat(&self, edge: &EdgeId) -> String {
        format!("{}.presence.hb.{}", self.prefix, SubjectToken::encode(edge.as_str()).as_str())
    }
    /// Heartbeats of every edge.
    pub fn presence_heartbeat_all(&self) -> String {
        format!("{}.presence.hb.*", self.prefix)
    }
    /// Name of the small JetStream stream holding presence's emission lease:
    /// which replica publishes transitions, and up to which presence stream
    /// sequence they were published.
    pub fn presence_lease_stream(&self) -> String {
        format!("{}_PRESENCE_LEASE", self.stream_prefix)
    }
    /// The subject of the emission lease record (in [`Self::presence_lease_stream`]).
    pub fn presence_lease(&self) -> String {
        format!("{}.presence.lease", self.prefix)
    }
    /// Queries answered by presence (request/reply, queue group `presence`).
    pub fn presence_query(&self) -> String {
        format!("{}.presence.query", self.prefix)
    }

    // --- control ---

    /// Access changes (token revocation, disabled users) every edge acts on.
    pub fn control_access(&self) -> String {
        format!("{}.control.access", self.prefix)
    }
    /// Commands to one edge (request/reply).
    pub fn control_edge(&self, edge: &EdgeId) -> String {
        format!("{}.control.edge.{}", self.prefix, SubjectToken::encode(edge.as_str()).as_str())
    }
    /// Commands to every edge (request/reply, each edge answers).
    pub fn control_edges(&self) -> String {
        format!("{}.control.edges", self.prefix)
    }

    // --- messaging requests (request/reply, queue group `messaging`) ---

    /// History queries.
    pub fn messaging_history(&self) -> String {
        format!("{}.messaging.history", self.prefix)
    }
    /// Claims of private messages stored while their recipient was offline.
    pub fn messaging_pending(&self) -> String {
        format!("{}.messaging.pending", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn any_string_is_one_safe_token(text in any::<String>()) {
            let token = SubjectToken::encode(&text);
            let t = token.as_str();
            prop_assert!(!t.is_empty());
            prop_assert!(!t.contains(['.', '*', '>']));
            prop_assert!(!t.chars().any(char::is_whitespace));
            prop_assert_eq!(SubjectToken::decode(t), Some(text));
        }
    }

    #[test]
    fn wildcards_stay_inside_one_token() {
        let subjects = Subjects::default();
        for room in [">", "a.*", "*", "a.b.c", " x"] {
            let subject = subjects.deliver_room(&RoomName::parse(room).unwrap());
            assert_eq!(subject.split('.').count(), 4, "{subject}");
            assert!(!subject.contains(['*', '>']), "{subject}");
        }
    }

    #[test]
    fn user_delivery_subjects_decode_back() {
        let subjects = Subjects::default();
        let user = UserId::parse("a.b*>").unwrap();
        assert_eq!(subjects.user_of_deliver_subject(&subjects.deliver_user(&user)), Some(user));
        assert_eq!(subjects.user_of_deliver_subject("sb.deliver.room.YQ"), None);
        assert_eq!(subjects.user_of_deliver_subject("other.deliver.user.YQ"), None);
        let edge = EdgeId::parse("edge-0").unwrap();
        assert!(subjects.is_ingest_batch(&subjects.ingest_batch(&edge)));
        assert!(!subjects.is_ingest_batch(&subjects.ingest(&MessageTarget::Everyone)));
    }

    #[test]
    fn ingest_subjects_follow_the_target() {
        let subjects = Subjects::default();
        let room = MessageTarget::Room(RoomName::parse("a.*").unwrap());
        assert_eq!(subjects.ingest(&room), "sb.msg.room.YS4q");
        assert_eq!(subjects.ingest(&MessageTarget::User(UserId::parse("bob").unwrap())), "sb.msg.user.Ym9i");
        assert_eq!(subjects.ingest(&MessageTarget::Everyone), "sb.msg.all");
        assert_eq!(subjects.ingest(&MessageTarget::Announcement), "sb.msg.announce");
    }

    #[test]
    fn prefix_rules() {
        assert!(Subjects::new("team-a_1").is_ok());
        assert_eq!(Subjects::new("team-a").unwrap().ingest_stream(), "TEAM_A_MSG");
        for bad in ["", "a.b", "a*", "a b", &"x".repeat(33)] {
            assert!(Subjects::new(bad).is_err(), "{bad}");
        }
    }
}
