//! Engine.IO v4 / Socket.IO v4 text frames, as the official client sends and
//! reads them over a WebSocket (namespace `/` only).
//!
//! Engine.IO: `0{..}` open, `1` close, `2` ping (the server's), `3` pong,
//! `4…` message. Socket.IO inside `4`: `40{auth}` CONNECT and `40{sid}` its
//! answer, `44{err}` CONNECT_ERROR, `41` DISCONNECT, `42["ev",data]` EVENT,
//! `42N[..]` EVENT asking for ack N, `43N[..]` ACK.
//!
//! Parsing borrows from the frame and does not decode the JSON: a receiver
//! handling 100k frames per second looks at the event name only, and
//! decodes arguments ([`first_arg`]) when it needs them.

use std::borrow::Cow;

use serde_json::Value;

/// The Engine.IO pong the client answers a server ping with.
pub const PONG: &str = "3";
/// Socket.IO DISCONNECT of namespace `/`.
pub const DISCONNECT: &str = "41";

/// One decoded text frame.
#[derive(Debug, Clone, PartialEq)]
pub enum Packet<'a> {
    /// Engine.IO open, with its JSON handshake (`sid`, `pingInterval`, …).
    Open(&'a str),
    /// Engine.IO close.
    Close,
    /// Engine.IO ping from the server (answer with [`PONG`]).
    Ping,
    /// Engine.IO pong.
    Pong,
    /// Socket.IO CONNECT accepted, with its JSON payload (`{"sid":..}`).
    Connect(&'a str),
    /// Socket.IO CONNECT_ERROR, with its JSON payload (`{"message":..}`).
    ConnectError(&'a str),
    /// Socket.IO DISCONNECT from the server.
    Disconnect,
    /// Socket.IO EVENT.
    Event {
        /// The ack id the sender asked for.
        ack: Option<u64>,
        /// The event name.
        name: Cow<'a, str>,
        /// The whole JSON array `["name", args…]`.
        array: &'a str,
    },
    /// Socket.IO ACK.
    Ack {
        /// The id of the event it answers.
        id: u64,
        /// The JSON array of ack arguments.
        array: &'a str,
    },
    /// Anything else (other namespaces, binary placeholders, noop).
    Other(&'a str),
}

impl<'a> Packet<'a> {
    /// Decodes one text frame.
    pub fn parse(frame: &'a str) -> Self {
        match frame.as_bytes().first() {
            Some(b'0') => return Packet::Open(&frame[1..]),
            Some(b'1') => return Packet::Close,
            Some(b'2') if frame.len() == 1 => return Packet::Ping,
            Some(b'3') if frame.len() == 1 => return Packet::Pong,
            Some(b'4') => {}
            _ => return Packet::Other(frame),
        }
        let body = &frame[1..];
        // Only an ASCII kind byte may be sliced past (found by the proptest below).
        let Some(kind) = body.as_bytes().first().filter(|kind| kind.is_ascii()) else { return Packet::Other(frame) };
        let rest = &body[1..];
        match kind {
            b'0' => Packet::Connect(rest),
            b'1' => Packet::Disconnect,
            b'4' => Packet::ConnectError(rest),
            b'2' => {
                let (ack, array) = split_ack_id(rest);
                match event_name(array) {
                    Some(name) => Packet::Event { ack, name, array },
                    None => Packet::Other(frame),
                }
            }
            b'3' => match split_ack_id(rest) {
                (Some(id), array) if array.starts_with('[') => Packet::Ack { id, array },
                _ => Packet::Other(frame),
            },
            _ => Packet::Other(frame),
        }
    }
}

/// Splits `12[...]` into the ack id and the array.
fn split_ack_id(text: &str) -> (Option<u64>, &str) {
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    (text[..digits].parse().ok(), &text[digits..])
}

/// The event name of `["name", …]`: borrowed when it has no escapes,
/// decoded from the JSON otherwise.
fn event_name(array: &str) -> Option<Cow<'_, str>> {
    let quoted = array.strip_prefix("[\"")?;
    let end = quoted.find(['"', '\\'])?;
    if quoted.as_bytes()[end] == b'"' {
        return Some(Cow::Borrowed(&quoted[..end]));
    }
    match serde_json::from_str::<Value>(array).ok()? {
        Value::Array(items) => items.into_iter().next()?.as_str().map(|name| Cow::Owned(name.to_owned())),
        _ => None,
    }
}

/// The first argument after the name of an EVENT array, or the first
/// element of an ACK array; `Null` when there is none or it is not JSON.
pub fn first_arg(array: &str, is_event: bool) -> Value {
    match serde_json::from_str::<Value>(array) {
        Ok(Value::Array(items)) => items.into_iter().nth(usize::from(is_event)).unwrap_or(Value::Null),
        _ => Value::Null,
    }
}

/// The Socket.IO CONNECT frame for namespace `/`, with `{"token": …}` as
/// its auth object when there is a token.
pub fn connect_frame(token: Option<&str>) -> String {
    match token {
        Some(token) => format!("40{}", serde_json::json!({ "token": token })),
        None => "40".to_owned(),
    }
}

/// An EVENT frame `42[ack]["name",data]`; `data` `Null` sends `["name"]`,
/// as `socket.emit("name")` does.
pub fn event_frame(name: &str, data: &Value, ack: Option<u64>) -> String {
    let array = if data.is_null() { serde_json::to_string(&[name]) } else { serde_json::to_string(&(name, data)) }
        .expect("strings and JSON values always serialize");
    match ack {
        Some(id) => format!("42{id}{array}"),
        None => format!("42{array}"),
    }
}

/// Ack ids of one connection: 0, 1, 2, … like the official client.
#[derive(Debug, Default)]
pub struct AckIds {
    next: u64,
}

impl AckIds {
    /// The id for the next event that wants an ack.
    pub fn next_id(&mut self) -> u64 {
        let id = self.next;
        self.next += 1;
        id
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Whatever we encode, we parse back: name, ack id and argument.
        #[test]
        fn encoded_events_parse_back(name in "\\PC{1,20}", text in "\\PC{0,40}", number in any::<i64>(), ack in proptest::option::of(0u64..1_000_000)) {
            let data = serde_json::json!({ "message": text, "n": number });
            let frame = event_frame(&name, &data, ack);
            let Packet::Event { ack: parsed_ack, name: parsed_name, array } = Packet::parse(&frame) else {
                panic!("not an event: {frame}");
            };
            prop_assert_eq!(parsed_ack, ack);
            prop_assert_eq!(parsed_name.as_ref(), name.as_str());
            prop_assert_eq!(first_arg(array, true), data);
        }

        /// Arbitrary frames never panic the parser.
        #[test]
        fn any_frame_parses_without_panicking(frame in "\\PC{0,60}") {
            let _ = Packet::parse(&frame);
        }
    }

    #[test]
    fn engine_io_frames() {
        assert_eq!(
            Packet::parse(r#"0{"sid":"x","pingInterval":25000}"#),
            Packet::Open(r#"{"sid":"x","pingInterval":25000}"#)
        );
        assert_eq!(Packet::parse("2"), Packet::Ping);
        assert_eq!(Packet::parse("3"), Packet::Pong);
        assert_eq!(Packet::parse("1"), Packet::Close);
        assert_eq!(Packet::parse("6"), Packet::Other("6"));
        assert_eq!(Packet::parse(""), Packet::Other(""));
    }

    #[test]
    fn socket_io_connect_answers() {
        assert_eq!(Packet::parse(r#"40{"sid":"abc"}"#), Packet::Connect(r#"{"sid":"abc"}"#));
        assert_eq!(
            Packet::parse(r#"44{"message":"token expired"}"#),
            Packet::ConnectError(r#"{"message":"token expired"}"#)
        );
        assert_eq!(Packet::parse("41"), Packet::Disconnect);
        assert_eq!(Packet::parse("4"), Packet::Other("4"));
    }

    #[test]
    fn events_and_acks() {
        let frame = r#"42["pong",{"user":{"id":"u1"}}]"#;
        let Packet::Event { ack, name, array } = Packet::parse(frame) else { panic!("an event: {frame}") };
        assert_eq!((ack, name.as_ref()), (None, "pong"));
        assert_eq!(first_arg(array, true)["user"]["id"], "u1");

        let Packet::Event { ack, name, .. } = Packet::parse(r#"427["join_room",{"room":"a"}]"#) else { panic!() };
        assert_eq!((ack, name.as_ref()), (Some(7), "join_room"));

        let Packet::Event { name, .. } = Packet::parse(r#"42["we\"ird",1]"#) else { panic!("escaped name") };
        assert_eq!(name, "we\"ird");

        let Packet::Ack { id, array } = Packet::parse(r#"4312[{"status":"ok"}]"#) else { panic!("an ack") };
        assert_eq!(id, 12);
        assert_eq!(first_arg(array, false)["status"], "ok");
        assert_eq!(first_arg("[]", false), Value::Null);

        assert!(matches!(Packet::parse("43[1]"), Packet::Other(_)), "an ack needs an id");
        assert!(matches!(Packet::parse(r#"42/chat,["x"]"#), Packet::Other(_)), "other namespaces are not ours");
    }

    #[test]
    fn frames_encode_as_the_official_client_sends_them() {
        assert_eq!(connect_frame(Some("a.b.c")), r#"40{"token":"a.b.c"}"#);
        assert_eq!(connect_frame(None), "40");
        let data = serde_json::json!({"room": "a"});
        assert_eq!(event_frame("join_room", &data, Some(3)), r#"423["join_room",{"room":"a"}]"#);
        assert_eq!(event_frame("ping", &Value::Null, None), r#"42["ping"]"#);
        let frame = event_frame("send_message", &serde_json::json!({"message": "quote \" here"}), None);
        let Packet::Event { name, array, .. } = Packet::parse(&frame) else { panic!("{frame}") };
        assert_eq!(name, "send_message");
        assert_eq!(first_arg(array, true)["message"], "quote \" here");
    }

    #[test]
    fn ack_ids_count_from_zero() {
        let mut ids = AckIds::default();
        assert_eq!([ids.next_id(), ids.next_id(), ids.next_id()], [0, 1, 2]);
    }
}
