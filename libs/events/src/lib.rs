//! The NATS contract between Switchboard's services.
//!
//! Every subject name, stream name, header and payload that crosses NATS is
//! defined here and nowhere else; `docs/subjects.md` is the readable map.
//!
//! - [`subject`]: [`Subjects`] builds every subject from the deployment's
//!   prefix; [`SubjectToken`] turns any client string into one safe token.
//! - [`ids`]: validated identifiers ([`RoomName`], [`UserId`], [`EdgeId`]).
//! - [`message`]: a message's id, body and target ([`MessageId`],
//!   [`MessageBody`], [`MessageTarget`]), parsed once and carried typed.
//! - [`client`]: the payloads Socket.IO clients see (DESIGN.md §2), shared by
//!   the services that produce them.
//! - [`ingest`], [`deliver`], [`presence`], [`control`], [`rpc`]: what travels
//!   on each family of subjects.
//! - [`bus`]: the only way to publish (it injects the trace context) and the
//!   stream definitions every service creates idempotently.

pub mod bus;
pub mod client;
pub mod control;
pub mod deliver;
pub mod ids;
pub mod ingest;
pub mod message;
pub mod presence;
pub mod rpc;
pub mod subject;
pub mod timestamp;

pub use ids::{EdgeId, IdError, RoomName, UserId};
pub use ingest::{MessageAccepted, Sender};
pub use message::{MessageBody, MessageId, MessageKind, MessageTarget};
pub use subject::{SubjectToken, Subjects};

/// NATS header carrying the JetStream de-duplication id (the message id on
/// ingest), so a retried publish is stored once.
pub const HEADER_MSG_ID: &str = "Nats-Msg-Id";
/// W3C trace-context headers, set by [`bus`] on every publish.
pub const HEADER_TRACEPARENT: &str = "traceparent";
/// See [`HEADER_TRACEPARENT`].
pub const HEADER_TRACESTATE: &str = "tracestate";

/// Durable consumer and queue group of the messaging service.
pub const MESSAGING_CONSUMER: &str = "messaging";
/// Durable consumer and queue group of the presence service.
pub const PRESENCE_CONSUMER: &str = "presence";
