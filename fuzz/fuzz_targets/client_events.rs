//! Client events: one Socket.IO event frame as the edge receives it
//! (`["name", arg, ...]`), through `sb_edge::payload` exactly as
//! `queue.rs` and `events.rs` use it.
//!
//! The input is the frame text. Every argument goes through every event's
//! parser (not only the one its name picks), so each validator sees every
//! shape. Properties:
//! - nothing panics;
//! - `parse_frame` agrees with a plain JSON reading of the array;
//! - an accepted request is valid: room names and user ids within their
//!   limits, bodies not blank and within the edge's byte limit, page sizes in
//!   range, the target the fields asked for, values equal to what was sent;
//! - a refusal is a payload error with a client-facing text;
//! - the result depends only on the JSON value (re-encoding changes nothing),
//!   and a body accepted under a small limit is accepted under the default.

#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};

use sb_edge::ClientError;
use sb_edge::payload::{
    self, EVENT_NAME_ECHO_MAX, HISTORY_LIMIT_DEFAULT, HISTORY_LIMIT_MAX, HistoryTarget, KNOWN_EVENTS, Limits,
    ONLINE_LIMIT_DEFAULT, ONLINE_LIMIT_MAX,
};
use sb_events::{MessageBody, MessageId, MessageTarget, RoomName, Subjects, UserId};

/// The edge's default `MESSAGE_MAX_BYTES`.
const DEFAULT_LIMITS: Limits = Limits { message_max_bytes: 4096 };
/// A limit small inputs reach, so the boundary is exercised.
const SMALL_LIMITS: Limits = Limits { message_max_bytes: 8 };

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let frame = payload::parse_frame(&text);
    check_frame_reading(&text, frame.as_ref());
    let Some(frame) = frame else { return };

    check_event_name(&frame.name);
    let arg = frame.arg.as_ref();
    check_all_parsers(arg);

    // What a client sends is JSON; the same value written again must be read the same way.
    if let Some(value) = arg {
        let again: Value = serde_json::from_str(&value.to_string()).expect("a JSON value re-encodes to valid JSON");
        assert_eq!(outcomes(Some(&again)), outcomes(arg), "re-encoding {value} changed a result");
    }
});

/// `parse_frame` is `Some` exactly for a JSON array whose first item is a
/// string; the argument is the second item unless it is missing or `null`.
fn check_frame_reading(text: &str, frame: Option<&payload::EventFrame>) {
    let items = match serde_json::from_str::<Value>(text) {
        Ok(Value::Array(items)) => items,
        _ => {
            assert!(frame.is_none(), "a frame from something that is not a JSON array: {text:?}");
            return;
        }
    };
    match (items.first(), frame) {
        (Some(Value::String(name)), Some(frame)) => {
            assert_eq!(&frame.name, name);
            let expected_arg = items.get(1).filter(|arg| !arg.is_null());
            assert_eq!(frame.arg.as_ref(), expected_arg);
        }
        (Some(Value::String(_)), None) => panic!("a [name, ...] array was not read as a frame: {text:?}"),
        (_, Some(frame)) => panic!("a frame {frame:?} from an array without a leading name: {text:?}"),
        (_, None) => {}
    }
}

/// The name as it is echoed in errors and logs, and its metric label.
fn check_event_name(name: &str) {
    let echo = payload::echo_name(name);
    if name.chars().count() <= EVENT_NAME_ECHO_MAX {
        assert_eq!(echo, name);
    } else {
        let kept = echo.strip_suffix('…').expect("a shortened name ends with an ellipsis");
        assert_eq!(kept.chars().count(), EVENT_NAME_ECHO_MAX, "shortened to the limit");
        assert!(name.starts_with(kept), "{kept:?} is not the start of the name");
    }
    let label = payload::metric_name(name);
    if KNOWN_EVENTS.contains(&name) {
        assert_eq!(label, name);
    } else {
        assert_eq!(label, "unknown");
    }
}

fn check_all_parsers(arg: Option<&Value>) {
    let map = arg.and_then(Value::as_object);

    for event in ["join_room", "leave_room"] {
        match payload::room_request(event, arg) {
            Ok(room) => check_room(&room, field_str(map, "room")),
            Err(error) => check_refusal(&error),
        }
    }

    let small = payload::send_message(arg, SMALL_LIMITS);
    let default = payload::send_message(arg, DEFAULT_LIMITS);
    if let Ok(small) = &small {
        assert_eq!(default.as_ref().ok(), Some(small), "accepted under 8 bytes but not under 4096");
    }
    match default {
        Ok(request) => {
            let map = map.expect("an accepted send_message has an object payload");
            check_body(&request.body, map, DEFAULT_LIMITS);
            match (&request.target, field_str(Some(map), "room"), field_str(Some(map), "to")) {
                (MessageTarget::Room(room), Some(sent), None) => check_room(room, Some(sent)),
                (MessageTarget::User(user), None, Some(sent)) => check_user(user, Some(sent)),
                (MessageTarget::Everyone, None, None) => {}
                (target, room, to) => panic!("send_message room={room:?} to={to:?} became {target:?}"),
            }
        }
        Err(error) => check_refusal(&error),
    }
    if let Ok(request) = small {
        assert!(request.body.as_str().len() <= SMALL_LIMITS.message_max_bytes);
    }

    match payload::admin_broadcast(arg, SMALL_LIMITS) {
        Ok(body) => check_body(&body, map.expect("object payload"), SMALL_LIMITS),
        Err(error) => check_refusal(&error),
    }
    match payload::admin_broadcast(arg, DEFAULT_LIMITS) {
        Ok(body) => check_body(&body, map.expect("object payload"), DEFAULT_LIMITS),
        Err(error) => check_refusal(&error),
    }

    match payload::get_history(arg) {
        Ok(request) => {
            let map = map.expect("an accepted get_history has an object payload");
            match (&request.target, field_str(Some(map), "room"), field_str(Some(map), "with")) {
                (HistoryTarget::Room(room), Some(sent), None) => check_room(room, Some(sent)),
                (HistoryTarget::With(user), None, Some(sent)) => check_user(user, Some(sent)),
                (target, room, with) => panic!("get_history room={room:?} with={with:?} became {target:?}"),
            }
            assert!((1..=HISTORY_LIMIT_MAX).contains(&request.limit), "history limit {}", request.limit);
            check_limit(map, request.limit, HISTORY_LIMIT_DEFAULT);
            match (&request.before, field_str(Some(map), "before")) {
                (Some(before), Some(sent)) => check_message_id(before, sent),
                (None, None) => {}
                (before, sent) => panic!("get_history before={sent:?} became {before:?}"),
            }
        }
        Err(error) => check_refusal(&error),
    }

    match payload::get_online_users(arg) {
        Ok(request) => {
            assert!((1..=ONLINE_LIMIT_MAX).contains(&request.limit), "online limit {}", request.limit);
            match map {
                Some(map) => check_limit(map, request.limit, ONLINE_LIMIT_DEFAULT),
                None => assert!(arg.is_none(), "get_online_users accepted a non-object payload"),
            }
            if let Some(cursor) = &request.cursor {
                assert!(!cursor.is_empty() && cursor.len() <= 512, "cursor of {} bytes", cursor.len());
                assert!(!cursor.chars().any(char::is_control));
                assert_eq!(field_str(map, "cursor"), Some(cursor.as_str()));
            }
        }
        Err(error) => check_refusal(&error),
    }

    assert!(payload::ping(arg).is_ok(), "ping accepts any payload");
}

/// Every parser's verdict, comparable (the error by its client text).
fn outcomes(arg: Option<&Value>) -> Vec<String> {
    fn show<T: std::fmt::Debug>(result: Result<T, ClientError>) -> String {
        match result {
            Ok(value) => format!("ok {value:?}"),
            Err(error) => format!("err {error}"),
        }
    }
    vec![
        show(payload::room_request("join_room", arg)),
        show(payload::send_message(arg, DEFAULT_LIMITS)),
        show(payload::send_message(arg, SMALL_LIMITS)),
        show(payload::admin_broadcast(arg, DEFAULT_LIMITS)),
        show(payload::get_history(arg)),
        show(payload::get_online_users(arg)),
    ]
}

/// The string value of `field`, if the payload has one (not `null`).
fn field_str<'a>(map: Option<&'a Map<String, Value>>, field: &str) -> Option<&'a str> {
    map?.get(field)?.as_str()
}

fn check_room(room: &RoomName, sent: Option<&str>) {
    assert_eq!(Some(room.as_str()), sent, "the room is the one sent");
    let text = room.as_str();
    assert!(!text.trim().is_empty(), "blank room {text:?}");
    assert!(text.chars().count() <= RoomName::MAX_CHARS, "room of {} chars", text.chars().count());
    assert!(!text.chars().any(char::is_control), "control character in room {text:?}");
    // An accepted room is safe in a subject: one token, whatever it contains.
    let subject = Subjects::default().deliver_room(room);
    assert_eq!(subject.split('.').count(), 4, "{subject}");
    assert!(!subject.contains(['*', '>']) && !subject.chars().any(char::is_whitespace), "{subject}");
}

fn check_user(user: &UserId, sent: Option<&str>) {
    assert_eq!(Some(user.as_str()), sent, "the user is the one sent");
    let text = user.as_str();
    assert!(!text.trim().is_empty(), "blank user id {text:?}");
    assert!(text.chars().count() <= UserId::MAX_CHARS);
    assert!(!text.chars().any(char::is_control), "control character in user id {text:?}");
    let subjects = Subjects::default();
    assert_eq!(subjects.user_of_deliver_subject(&subjects.deliver_user(user)).as_ref(), Some(user));
}

fn check_body(body: &MessageBody, map: &Map<String, Value>, limits: Limits) {
    let text = body.as_str();
    assert_eq!(Some(text), field_str(Some(map), "message"), "the body is the message sent");
    assert!(!text.trim().is_empty(), "blank message accepted");
    assert!(
        text.len() <= limits.message_max_bytes,
        "{} bytes over a limit of {}",
        text.len(),
        limits.message_max_bytes
    );
}

fn check_message_id(id: &MessageId, sent: &str) {
    assert_eq!(id.as_str(), sent);
    assert!(!sent.is_empty() && sent.len() <= MessageId::MAX_LEN, "message id of {} bytes", sent.len());
    assert!(!sent.chars().any(char::is_control));
}

/// `limit` is the one sent, or the default when none (or `null`) was.
fn check_limit(map: &Map<String, Value>, limit: u32, default: u32) {
    match map.get("limit") {
        None | Some(Value::Null) => assert_eq!(limit, default),
        Some(sent) => assert_eq!(sent.as_u64(), Some(u64::from(limit)), "limit {sent} became {limit}"),
    }
}

/// Payload parsers refuse only with payload errors, which clients see as
/// their `Display` text and count as `error`.
fn check_refusal(error: &ClientError) {
    assert!(
        matches!(
            error,
            ClientError::InvalidPayload(_)
                | ClientError::InvalidId(_)
                | ClientError::InvalidBody(_)
                | ClientError::InvalidMessageId(_)
        ),
        "a payload parser refused with {error:?}"
    );
    assert!(!error.to_string().is_empty(), "an empty error text for {error:?}");
    assert_eq!(error.outcome(), "error");
}
