//! Client payloads: parsing each event's argument into a typed request, with
//! an error naming what was wrong (DESIGN.md §2 "Bad input").
//!
//! The edge reads the event frame (`["name", arg, ...]`) itself instead of
//! using socketioxide's `Data` extractor (which silently skips the handler on
//! a bad payload). Only the first argument counts; a missing or `null`
//! argument is "no payload". Room names and user ids become [`RoomName`] /
//! [`UserId`], so they are valid before they get near a subject.

use std::borrow::Cow;

use serde_json::{Map, Value};

use sb_events::{MessageBody, MessageId, MessageTarget, RoomName, UserId};

use crate::error::ClientError;

/// Longest event name repeated back to a client in an error.
pub const EVENT_NAME_ECHO_MAX: usize = 64;

/// The client events the edge knows, also the `event` metric label.
pub const KNOWN_EVENTS: [&str; 7] =
    ["join_room", "leave_room", "send_message", "ping", "admin_broadcast", "get_history", "get_online_users"];

/// The metric label for an event name: itself if known, else `unknown`.
pub fn metric_name(name: &str) -> &'static str {
    KNOWN_EVENTS.iter().find(|known| **known == name).copied().unwrap_or("unknown")
}

/// The event name as it may appear in an error message or a log field:
/// at most [`EVENT_NAME_ECHO_MAX`] characters and an ellipsis (borrowed
/// unless it must be shortened: this runs for every event).
pub fn echo_name(name: &str) -> Cow<'_, str> {
    if name.chars().count() <= EVENT_NAME_ECHO_MAX {
        return Cow::Borrowed(name);
    }
    let mut short: String = name.chars().take(EVENT_NAME_ECHO_MAX).collect();
    short.push('…');
    Cow::Owned(short)
}

/// One event frame as the client sent it.
#[derive(Debug, Clone, PartialEq)]
pub struct EventFrame {
    /// The event name.
    pub name: String,
    /// The first argument, if there was one and it was not `null`.
    pub arg: Option<Value>,
}

/// Reads `["name", arg?, ...]`; `None` if the text is not such an array.
pub fn parse_frame(text: &str) -> Option<EventFrame> {
    let mut items: Vec<Value> = serde_json::from_str(text).ok()?;
    if items.is_empty() {
        return None;
    }
    let arg = if items.len() > 1 { Some(items.swap_remove(1)) } else { None };
    let Value::String(name) = items.swap_remove(0) else {
        return None;
    };
    Some(EventFrame { name, arg: arg.filter(|value| !value.is_null()) })
}

/// Limits that payload parsing enforces.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Longest message, UTF-8 bytes.
    pub message_max_bytes: usize,
}

/// `send_message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendMessage {
    /// Where: a room, a user or everyone (never an announcement).
    pub target: MessageTarget,
    /// The text.
    pub body: MessageBody,
}

/// Which messages `get_history` reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HistoryTarget {
    /// `{room}`.
    Room(RoomName),
    /// `{with}`: the conversation with this user.
    With(UserId),
}

/// `get_history`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetHistory {
    /// Which messages.
    pub target: HistoryTarget,
    /// Only messages older than this message id.
    pub before: Option<MessageId>,
    /// 1..=100, default 50.
    pub limit: u32,
}

/// `get_online_users`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetOnlineUsers {
    /// 1..=1000, default 100.
    pub limit: u32,
    /// From the previous page.
    pub cursor: Option<String>,
}

/// Default and maximum `get_history` page.
pub const HISTORY_LIMIT_DEFAULT: u32 = 50;
/// See [`HISTORY_LIMIT_DEFAULT`].
pub const HISTORY_LIMIT_MAX: u32 = 100;
/// Default and maximum `get_online_users` page.
pub const ONLINE_LIMIT_DEFAULT: u32 = 100;
/// See [`ONLINE_LIMIT_DEFAULT`].
pub const ONLINE_LIMIT_MAX: u32 = 1000;

fn object<'a>(arg: Option<&'a Value>, event: &str, shape: &str) -> Result<&'a Map<String, Value>, ClientError> {
    match arg {
        Some(Value::Object(map)) => Ok(map),
        Some(_) => Err(ClientError::payload(format!("{event} payload must be an object like {shape}"))),
        None => Err(ClientError::payload(format!("{event} needs a payload like {shape}"))),
    }
}

fn optional_object<'a>(
    arg: Option<&'a Value>,
    event: &str,
    shape: &str,
) -> Result<Option<&'a Map<String, Value>>, ClientError> {
    match arg {
        None => Ok(None),
        Some(Value::Object(map)) => Ok(Some(map)),
        Some(_) => Err(ClientError::payload(format!("{event} payload must be an object like {shape} or nothing"))),
    }
}

/// A string field; `null` counts as absent.
fn optional_str<'a>(map: &'a Map<String, Value>, field: &str) -> Result<Option<&'a str>, ClientError> {
    match map.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(_) => Err(ClientError::payload(format!("{field} must be a string"))),
    }
}

fn required_str<'a>(map: &'a Map<String, Value>, field: &str) -> Result<&'a str, ClientError> {
    optional_str(map, field)?.ok_or_else(|| ClientError::payload(format!("{field} is required")))
}

fn optional_limit(map: &Map<String, Value>, field: &str, max: u32) -> Result<Option<u32>, ClientError> {
    match map.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => match value.as_u64() {
            Some(n) if (1..=u64::from(max)).contains(&n) => Ok(Some(n as u32)),
            _ => Err(ClientError::payload(format!("{field} must be an integer from 1 to {max}"))),
        },
    }
}

fn checked_message(text: &str, limits: Limits) -> Result<MessageBody, ClientError> {
    Ok(MessageBody::parse("message", text, limits.message_max_bytes)?)
}

/// `join_room {room}` and `leave_room {room}`.
pub fn room_request(event: &str, arg: Option<&Value>) -> Result<RoomName, ClientError> {
    let map = object(arg, event, "{room}")?;
    Ok(RoomName::parse(required_str(map, "room")?)?)
}

/// `send_message {room, message} | {to, message} | {message}`.
pub fn send_message(arg: Option<&Value>, limits: Limits) -> Result<SendMessage, ClientError> {
    let map = object(arg, "send_message", "{room, message}, {to, message} or {message}")?;
    let room = optional_str(map, "room")?;
    let to = optional_str(map, "to")?;
    let body = checked_message(required_str(map, "message")?, limits)?;
    let target = match (room, to) {
        (Some(_), Some(_)) => return Err(ClientError::payload("send_message takes either room or to, not both")),
        (Some(room), None) => MessageTarget::Room(RoomName::parse(room)?),
        (None, Some(to)) => MessageTarget::User(UserId::parse(to)?),
        (None, None) => MessageTarget::Everyone,
    };
    Ok(SendMessage { target, body })
}

/// `admin_broadcast {message}`.
pub fn admin_broadcast(arg: Option<&Value>, limits: Limits) -> Result<MessageBody, ClientError> {
    let map = object(arg, "admin_broadcast", "{message}")?;
    checked_message(required_str(map, "message")?, limits)
}

/// `get_history {room} | {with}, before?, limit?`.
pub fn get_history(arg: Option<&Value>) -> Result<GetHistory, ClientError> {
    let map = object(arg, "get_history", "{room} or {with}")?;
    let target = match (optional_str(map, "room")?, optional_str(map, "with")?) {
        (Some(_), Some(_)) => return Err(ClientError::payload("get_history takes either room or with, not both")),
        (Some(room), None) => HistoryTarget::Room(RoomName::parse(room)?),
        (None, Some(with)) => HistoryTarget::With(UserId::parse(with)?),
        (None, None) => return Err(ClientError::payload("get_history needs room or with")),
    };
    let before = optional_str(map, "before")?.map(|id| MessageId::parse("before", id)).transpose()?;
    let limit = optional_limit(map, "limit", HISTORY_LIMIT_MAX)?.unwrap_or(HISTORY_LIMIT_DEFAULT);
    Ok(GetHistory { target, before, limit })
}

/// `get_online_users` with nothing or `{limit, cursor}`.
pub fn get_online_users(arg: Option<&Value>) -> Result<GetOnlineUsers, ClientError> {
    let Some(map) = optional_object(arg, "get_online_users", "{limit, cursor}")? else {
        return Ok(GetOnlineUsers { limit: ONLINE_LIMIT_DEFAULT, cursor: None });
    };
    let limit = optional_limit(map, "limit", ONLINE_LIMIT_MAX)?.unwrap_or(ONLINE_LIMIT_DEFAULT);
    let cursor = match optional_str(map, "cursor")? {
        Some(cursor) if cursor.len() > 512 || cursor.chars().any(char::is_control) => {
            return Err(ClientError::payload("cursor must be the cursor of a previous page"));
        }
        cursor => cursor.filter(|c| !c.is_empty()).map(str::to_owned),
    };
    Ok(GetOnlineUsers { limit, cursor })
}

/// `ping`: any payload (or none) is accepted and ignored.
pub fn ping(_arg: Option<&Value>) -> Result<(), ClientError> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const LIMITS: Limits = Limits { message_max_bytes: 16 };

    fn err(result: Result<impl std::fmt::Debug, ClientError>) -> String {
        result.expect_err("should be refused").to_string()
    }

    #[test]
    fn frames() {
        assert_eq!(
            parse_frame(r#"["join_room",{"room":"a"},1]"#),
            Some(EventFrame { name: "join_room".into(), arg: Some(json!({"room":"a"})) })
        );
        assert_eq!(parse_frame(r#"["ping"]"#), Some(EventFrame { name: "ping".into(), arg: None }));
        assert_eq!(parse_frame(r#"["ping",null]"#), Some(EventFrame { name: "ping".into(), arg: None }));
        assert_eq!(parse_frame(r#"[1]"#), None);
        assert_eq!(parse_frame(r#"[]"#), None);
        assert_eq!(parse_frame(r#"{"a":1}"#), None);
    }

    #[test]
    fn rooms() {
        assert_eq!(room_request("join_room", Some(&json!({"room": "a.*"}))).unwrap().as_str(), "a.*");
        assert_eq!(err(room_request("join_room", None)), "join_room needs a payload like {room}");
        assert_eq!(
            err(room_request("join_room", Some(&json!("lobby")))),
            "join_room payload must be an object like {room}"
        );
        assert_eq!(err(room_request("join_room", Some(&json!({})))), "room is required");
        assert_eq!(err(room_request("join_room", Some(&json!({"room": 5})))), "room must be a string");
        assert_eq!(err(room_request("join_room", Some(&json!({"room": ""})))), "room must not be empty");
        assert_eq!(
            err(room_request("join_room", Some(&json!({"room": "x".repeat(101)})))),
            "room must be at most 100 characters"
        );
        assert_eq!(
            err(room_request("join_room", Some(&json!({"room": "a\u{7}"})))),
            "room must not contain control characters"
        );
    }

    #[test]
    fn messages() {
        let room = send_message(Some(&json!({"room": "r", "message": "hi"})), LIMITS).unwrap();
        assert_eq!(room.target, MessageTarget::Room(RoomName::parse("r").unwrap()));
        let private = send_message(Some(&json!({"to": "u1", "message": "hi"})), LIMITS).unwrap();
        assert_eq!(private.target, MessageTarget::User(UserId::parse("u1").unwrap()));
        let all = send_message(Some(&json!({"message": "hi", "room": null})), LIMITS).unwrap();
        assert_eq!(all.target, MessageTarget::Everyone);
        assert_eq!(err(send_message(Some(&json!({})), LIMITS)), "message is required");
        assert_eq!(err(send_message(Some(&json!({"message": 1})), LIMITS)), "message must be a string");
        assert_eq!(err(send_message(Some(&json!({"message": "  "})), LIMITS)), "message must not be empty");
        assert_eq!(
            err(send_message(Some(&json!({"message": "x".repeat(17)})), LIMITS)),
            "message must be at most 16 bytes"
        );
        assert!(send_message(Some(&json!({"message": "x".repeat(16)})), LIMITS).is_ok());
        assert_eq!(
            err(send_message(Some(&json!({"room": "r", "to": "u", "message": "m"})), LIMITS)),
            "send_message takes either room or to, not both"
        );
        assert_eq!(err(send_message(Some(&json!({"to": "", "message": "m"})), LIMITS)), "user id must not be empty");
    }

    #[test]
    fn history_and_online() {
        let history = get_history(Some(&json!({"room": "r"}))).unwrap();
        assert_eq!(history.limit, HISTORY_LIMIT_DEFAULT);
        assert_eq!(get_history(Some(&json!({"with": "u", "limit": 100, "before": "x"}))).unwrap().limit, 100);
        assert_eq!(
            err(get_history(Some(&json!({"room": "r", "limit": 101})))),
            "limit must be an integer from 1 to 100"
        );
        assert_eq!(
            err(get_history(Some(&json!({"room": "r", "limit": "5"})))),
            "limit must be an integer from 1 to 100"
        );
        assert_eq!(err(get_history(Some(&json!({})))), "get_history needs room or with");
        assert_eq!(get_online_users(None).unwrap(), GetOnlineUsers { limit: 100, cursor: None });
        assert_eq!(get_online_users(Some(&json!({"limit": 5, "cursor": "c"}))).unwrap().cursor.as_deref(), Some("c"));
        assert_eq!(err(get_online_users(Some(&json!({"limit": 0})))), "limit must be an integer from 1 to 1000");
        assert_eq!(
            err(get_online_users(Some(&json!([1])))),
            "get_online_users payload must be an object like {limit, cursor} or nothing"
        );
    }

    proptest::proptest! {
        #[test]
        fn frames_never_panic_and_keep_the_name(name in "\\PC{0,20}", text in "\\PC{0,40}") {
            let frame = serde_json::to_string(&json!([name, {"room": text, "message": text}])).unwrap();
            let parsed = parse_frame(&frame).unwrap();
            proptest::prop_assert_eq!(&parsed.name, &name);
            let room = room_request("join_room", parsed.arg.as_ref());
            proptest::prop_assert_eq!(room.is_ok(), RoomName::parse(text.clone()).is_ok());
            let _ = send_message(parsed.arg.as_ref(), LIMITS);
            let _ = parse_frame(&text);
        }
    }
}
