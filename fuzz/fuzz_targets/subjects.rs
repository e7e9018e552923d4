//! Subjects: any string as a room name, a user id and an edge id, through
//! `SubjectToken` and every `Subjects` builder that takes one
//! (`libs/events/src/subject.rs`).
//!
//! The input is the string (invalid UTF-8 becomes U+FFFD). Properties:
//! - a token is never empty and is only base64url letters (or the `=` of
//!   the empty string): no `.`, `*`, `>` or whitespace, and it decodes back
//!   to the string;
//! - every subject built from an accepted room, user or edge id has exactly
//!   the tokens of its shape (prefix, kind, scope, one id token), no
//!   wildcard and no whitespace, and its last token decodes back to the id;
//!   a user's delivery subject gives back the user;
//! - reading untrusted text (`SubjectToken::decode`,
//!   `user_of_deliver_subject`, `is_ingest_batch`) never panics, and what it
//!   accepts is exactly what the encoder writes;
//! - the string as a `SUBJECT_PREFIX` is accepted only if it is one safe
//!   token, and then every subject starts with it.

#![no_main]

use libfuzzer_sys::fuzz_target;

use sb_events::{EdgeId, MessageTarget, RoomName, SubjectToken, Subjects, UserId};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let text = text.as_ref();
    let subjects = Subjects::default();

    check_token(text);
    check_reading(&subjects, text);

    let prefix_subjects = Subjects::new(text);
    if let Ok(custom) = &prefix_subjects {
        assert!(!text.is_empty() && text.len() <= 32, "prefix {text:?}");
        assert!(text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'), "prefix {text:?}");
        for stream in [custom.ingest_stream(), custom.presence_stream(), custom.presence_lease_stream()] {
            assert!(stream.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'), "stream name {stream:?}");
        }
    }

    for subjects in std::iter::once(&subjects).chain(prefix_subjects.as_ref().ok()) {
        if let Ok(room) = RoomName::parse(text) {
            check_room(subjects, &room);
        }
        if let Ok(user) = UserId::parse(text) {
            check_user(subjects, &user);
        }
        if let Ok(edge) = EdgeId::parse(text) {
            check_edge(subjects, &edge);
        }
        check_fixed(subjects);
    }
});

fn check_token(text: &str) {
    let token = SubjectToken::encode(text);
    let token = token.as_str();
    assert!(!token.is_empty(), "empty token for {text:?}");
    if text.is_empty() {
        assert_eq!(token, "=");
    } else {
        assert!(token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'), "token {token:?}");
    }
    assert!(!token.contains(['.', '*', '>']) && !token.chars().any(char::is_whitespace), "token {token:?}");
    assert_eq!(SubjectToken::decode(token).as_deref(), Some(text), "token {token:?}");
}

/// Untrusted subjects and tokens: whatever reads as valid is what the encoder writes.
fn check_reading(subjects: &Subjects, text: &str) {
    if let Some(decoded) = SubjectToken::decode(text) {
        // The empty token is not one the encoder writes (it writes `=`), but
        // it decodes to the empty string, which no id accepts.
        if !text.is_empty() {
            assert_eq!(SubjectToken::encode(&decoded).as_str(), text, "{text:?} decoded to {decoded:?}");
        }
    }
    if let Some(user) = subjects.user_of_deliver_subject(text) {
        assert_eq!(subjects.deliver_user(&user), text, "{text:?} read as user {user:?}");
    }
    let _ = subjects.is_ingest_batch(text);
}

/// `subject` is `<prefix>.<kind>.<scope>.<token>`, safe, and `<token>` decodes to `id`.
fn check_id_subject(subjects: &Subjects, subject: &str, kind_scope: &str, id: &str) {
    assert!(!subject.contains(['*', '>']) && !subject.chars().any(char::is_whitespace), "{subject:?}");
    let tokens: Vec<&str> = subject.split('.').collect();
    assert_eq!(tokens.len(), 4, "{subject:?} for {id:?}");
    assert_eq!(tokens[0], subjects.prefix(), "{subject:?}");
    assert_eq!(format!("{}.{}", tokens[1], tokens[2]), kind_scope, "{subject:?}");
    assert!(tokens.iter().all(|token| !token.is_empty()), "{subject:?}");
    assert_eq!(SubjectToken::decode(tokens[3]).as_deref(), Some(id), "{subject:?}");
}

fn check_room(subjects: &Subjects, room: &RoomName) {
    let target = MessageTarget::Room(room.clone());
    check_id_subject(subjects, &subjects.ingest(&target), "msg.room", room.as_str());
    check_id_subject(subjects, &subjects.deliver_room(room), "deliver.room", room.as_str());
    assert!(!subjects.is_ingest_batch(&subjects.ingest(&target)));
}

fn check_user(subjects: &Subjects, user: &UserId) {
    check_id_subject(subjects, &subjects.ingest(&MessageTarget::User(user.clone())), "msg.user", user.as_str());
    let delivery = subjects.deliver_user(user);
    check_id_subject(subjects, &delivery, "deliver.user", user.as_str());
    assert_eq!(subjects.user_of_deliver_subject(&delivery).as_ref(), Some(user), "{delivery:?}");
}

fn check_edge(subjects: &Subjects, edge: &EdgeId) {
    let id = edge.as_str();
    let batch = subjects.ingest_batch(edge);
    check_id_subject(subjects, &batch, "msg.batch", id);
    assert!(subjects.is_ingest_batch(&batch), "{batch:?}");
    check_id_subject(subjects, &subjects.deliver_edge(edge), "deliver.edge", id);
    check_id_subject(subjects, &subjects.presence_events(edge), "presence.ev", id);
    check_id_subject(subjects, &subjects.presence_heartbeat(edge), "presence.hb", id);
    check_id_subject(subjects, &subjects.control_edge(edge), "control.edge", id);
    assert_eq!(subjects.user_of_deliver_subject(&subjects.deliver_edge(edge)), None);
}

/// The subjects without an id start with the prefix and have no stray tokens.
fn check_fixed(subjects: &Subjects) {
    for subject in [
        subjects.ingest(&MessageTarget::Everyone),
        subjects.ingest(&MessageTarget::Announcement),
        subjects.deliver_all(),
        subjects.deliver_presence(),
        subjects.presence_lease(),
        subjects.presence_query(),
        subjects.control_access(),
        subjects.control_edges(),
        subjects.messaging_history(),
        subjects.messaging_pending(),
    ] {
        let tokens: Vec<&str> = subject.split('.').collect();
        assert_eq!(tokens.len(), 3, "{subject:?}");
        assert_eq!(tokens[0], subjects.prefix());
        assert!(!subject.contains(['*', '>']) && !subject.chars().any(char::is_whitespace), "{subject:?}");
    }
}
