//! Wire types: one NATS payload, decoded as every `sb_events` type a
//! service reads off NATS, the way the consumer reads it
//! (`MessageAccepted::decode`, `IngestBatch::decode`, `bus::decode`, plain
//! `serde_json::from_slice` for the rest).
//!
//! Properties:
//! - nothing panics;
//! - a payload that decodes re-encodes to JSON that decodes to an equal
//!   value, and encoding that again gives the same bytes (for the delivery
//!   types, which hold raw JSON and have no `PartialEq`: the same bytes, and
//!   the raw payload unchanged);
//! - a decoded `MessageAccepted` makes the client payloads and the ingest
//!   subject without panicking, its timestamp survives RFC 3339, and a
//!   decode error says "newer" only for a newer `v`;
//! - a borrowed `IngestBatchRef` writes the same bytes as the owned batch.

#![no_main]

use std::fmt::Debug;

use libfuzzer_sys::fuzz_target;
use serde::Serialize;
use serde::de::DeserializeOwned;

use sb_events::client::OnlineUsers;
use sb_events::control::{AccessChanged, EdgeCommand, EdgeCommandDone};
use sb_events::deliver::{Delivery, DeliveryBatch, EdgeDeliveries};
use sb_events::ingest::{BatchedMessageRef, DecodeError, IngestBatch, IngestBatchRef};
use sb_events::presence::{EdgeHeartbeat, Locations, OnlineAmong, PresenceEvent, PresenceQuery, RoomMembers};
use sb_events::rpc::{HistoryPage, HistoryQuery, PendingClaim, PendingMessages, Reply};
use sb_events::timestamp::parse_rfc3339_ms;
use sb_events::{MessageAccepted, MessageTarget, Subjects};

/// 9999-12-31T23:59:59.999Z: the last instant RFC 3339 can write.
const LAST_RFC3339_MS: i64 = 253_402_300_799_999;

fuzz_target!(|data: &[u8]| {
    message_accepted(data);
    ingest_batch(data);

    if let Some(event) = round_trip::<PresenceEvent>(data) {
        let _ = event.msg_id();
    }
    round_trip::<EdgeHeartbeat>(data);
    round_trip::<PresenceQuery>(data);
    round_trip::<Locations>(data);
    round_trip::<RoomMembers>(data);
    round_trip::<OnlineAmong>(data);

    // The edge reads access changes through the bus helper.
    if let Ok(change) = sb_events::bus::decode::<AccessChanged>("sb.control.access", data) {
        assert_eq!(round_trip::<AccessChanged>(data).as_ref(), Some(&change), "bus::decode and serde disagree");
    }
    round_trip::<EdgeCommand>(data);
    round_trip::<EdgeCommandDone>(data);

    round_trip::<HistoryQuery>(data);
    round_trip::<PendingClaim>(data);
    round_trip::<Reply<EdgeCommandDone>>(data);
    round_trip::<Reply<HistoryPage>>(data);
    round_trip::<Reply<PendingMessages>>(data);
    round_trip::<Reply<OnlineUsers>>(data);
    round_trip::<Reply<RoomMembers>>(data);
    round_trip::<Reply<OnlineAmong>>(data);
    round_trip::<Reply<Locations>>(data);

    if let Ok(delivery) = serde_json::from_slice::<Delivery>(data) {
        let back = raw_round_trip(&delivery);
        assert_eq!(back.data.get(), delivery.data.get(), "the payload passes through unchanged");
        assert_eq!(
            (&back.event, &back.except_socket, &back.except_user),
            (&delivery.event, &delivery.except_socket, &delivery.except_user)
        );
        // Well-formed JSON, not necessarily a `Value`: a number out of f64's
        // range (`1619E99161`) is valid JSON that `Value` cannot hold, and
        // passes through to clients verbatim (JavaScript reads Infinity).
        let _: serde::de::IgnoredAny = serde_json::from_str(delivery.data.get()).expect("raw data is JSON");
    }
    if let Ok(batch) = serde_json::from_slice::<DeliveryBatch>(data) {
        let back = raw_round_trip(&batch);
        assert_eq!(back.deliveries.len(), batch.deliveries.len());
        for (back, sent) in back.deliveries.iter().zip(&batch.deliveries) {
            assert_eq!(back.data.get(), sent.data.get());
            assert_eq!(back.event, sent.event);
        }
    }
    if let Ok(batch) = serde_json::from_slice::<EdgeDeliveries>(data) {
        let back = raw_round_trip(&batch);
        assert_eq!(back.deliveries.len(), batch.deliveries.len());
        for (back, sent) in back.deliveries.iter().zip(&batch.deliveries) {
            assert_eq!((back.data.get(), &back.user, &back.event), (sent.data.get(), &sent.user, &sent.event));
            assert_eq!(back.except_socket, sent.except_socket);
        }
    }
});

/// Decodes `data` as `T`; if it does, checks decode(encode(x)) == x and
/// that encoding is stable.
fn round_trip<T: Serialize + DeserializeOwned + PartialEq + Debug>(data: &[u8]) -> Option<T> {
    let value: T = serde_json::from_slice(data).ok()?;
    let wire = serde_json::to_vec(&value).expect("a decoded value encodes");
    let back: T = serde_json::from_slice(&wire).unwrap_or_else(|error| {
        panic!(
            "{} does not decode what it encoded: {error}\n{}",
            std::any::type_name::<T>(),
            String::from_utf8_lossy(&wire)
        )
    });
    assert_eq!(back, value, "{} changed through encode/decode", std::any::type_name::<T>());
    assert_eq!(serde_json::to_vec(&back).expect("encodes"), wire, "encoding is stable");
    Some(value)
}

/// For the types without `PartialEq`: encode, decode, encode again gives
/// the same bytes; returns the decoded copy.
fn raw_round_trip<T: Serialize + DeserializeOwned>(value: &T) -> T {
    let wire = serde_json::to_vec(value).expect("a decoded value encodes");
    let back: T = serde_json::from_slice(&wire).unwrap_or_else(|error| {
        panic!(
            "{} does not decode what it encoded: {error}\n{}",
            std::any::type_name::<T>(),
            String::from_utf8_lossy(&wire)
        )
    });
    assert_eq!(serde_json::to_vec(&back).expect("encodes"), wire, "encoding is stable");
    back
}

fn message_accepted(data: &[u8]) {
    let message = match MessageAccepted::decode(data) {
        Ok(message) => message,
        Err(error) => return check_decode_error(&error),
    };
    let wire = serde_json::to_vec(&message).expect("a decoded message encodes");
    assert_eq!(MessageAccepted::decode(&wire).as_ref(), Ok(&message), "{}", String::from_utf8_lossy(&wire));

    let new_message = message.new_message();
    assert_eq!(new_message.id, message.id.as_str());
    assert_eq!(new_message.room.as_deref(), message.target.room().map(|room| room.as_str()));
    assert_eq!(new_message.to.as_deref(), message.target.recipient().map(|to| to.as_str()));
    assert!(new_message.from == message.from);
    let announcement = message.admin_announcement();
    assert_eq!(announcement.timestamp, new_message.timestamp);
    if (0..=LAST_RFC3339_MS).contains(&message.timestamp_ms) {
        assert_eq!(parse_rfc3339_ms(&new_message.timestamp), Some(message.timestamp_ms), "{}", new_message.timestamp);
    }

    // The subject comes from the target: one token for its room or user, none else.
    let subject = Subjects::default().ingest(&message.target);
    let tokens = subject.split('.').count();
    match message.target {
        MessageTarget::Room(_) | MessageTarget::User(_) => assert_eq!(tokens, 4, "{subject}"),
        MessageTarget::Everyone | MessageTarget::Announcement => assert_eq!(tokens, 3, "{subject}"),
    }
    assert!(!subject.contains(['*', '>']) && !subject.chars().any(char::is_whitespace), "{subject}");
}

fn ingest_batch(data: &[u8]) {
    let batch = match IngestBatch::decode(data) {
        Ok(batch) => batch,
        Err(error) => return check_decode_error(&error),
    };
    let wire = serde_json::to_vec(&batch).expect("a decoded batch encodes");
    assert_eq!(IngestBatch::decode(&wire).as_ref(), Ok(&batch), "{}", String::from_utf8_lossy(&wire));
    let borrowed = IngestBatchRef {
        v: batch.v,
        id: &batch.id,
        messages: batch
            .messages
            .iter()
            .map(|batched| BatchedMessageRef {
                message: &batched.message,
                traceparent: batched.traceparent.as_deref(),
                tracestate: batched.tracestate.as_deref(),
            })
            .collect(),
    };
    assert_eq!(serde_json::to_vec(&borrowed).expect("encodes"), wire, "borrowed and owned batches differ");
}

fn check_decode_error(error: &DecodeError) {
    if let DecodeError::Newer { version, .. } = error {
        assert!(*version > MessageAccepted::WIRE_VERSION, "version {version} reported as newer");
    }
    assert!(!error.to_string().is_empty());
}
