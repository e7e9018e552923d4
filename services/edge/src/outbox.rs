//! One socket's outgoing bytes: what the edge handed socketioxide for it,
//! against what its transport wrote, so that its buffer is bounded in
//! bytes (`SOCKET_BUFFER_BYTES`) as well as in packets
//! (`SOCKET_BUFFER_PACKETS`, socketioxide's own bound).
//!
//! socketioxide 0.18 does not say how many bytes wait in a socket's
//! buffer, so the edge measures both ends itself:
//!
//! - **Handed**: every frame the edge emits or acks is counted before it is
//!   handed over, by the length of its text less the few bytes of its
//!   Engine.IO and Socket.IO headers, so that it never counts more than goes
//!   on the wire ([`frame_bytes`]).
//! - **Written**: a WebSocket's TCP connection counts what the kernel took
//!   ([`crate::transport::CloseSwitch::written`]); a long-polling socket's
//!   poll responses count their bodies ([`crate::transport::Transports::polled`]).
//!   A socket that upgraded counts both.
//!
//! The difference is what waits in socketioxide's channel and the
//! WebSocket's write buffer. Because the written side also counts headers,
//! pings and the CONNECT reply, it runs slightly ahead: whenever it passes
//! the handed side the buffer is empty, and the count starts again from
//! there, so the error never accumulates past the frames in the buffer.
//! It can only make the backlog read low, by a few bytes per buffered
//! frame, never high: a client that reads is never taken for a slow one.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use crate::transport::CloseSwitch;

/// Bytes an emitted frame adds besides its event name and data: `42["`,
/// `",` and `]` are 7; one is left out, so the count stays below the frame.
const EMIT_FRAME_BYTES: usize = 6;
/// Bytes an ack frame adds besides its data and ack id: `43`, `[` and `]`.
const ACK_FRAME_BYTES: usize = 4;

/// How many bytes a frame counts for ([`EMIT_FRAME_BYTES`], [`ACK_FRAME_BYTES`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Frame<'a> {
    /// An event named `.0` (`42["name",data]`).
    Emit(&'a str),
    /// An ack (`43<id>[data]`).
    Ack,
}

/// The bytes `frame` with `data` (its serialized JSON) counts for: never
/// more than the frame's Engine.IO text.
pub(crate) fn frame_bytes(frame: Frame<'_>, data: &str) -> u64 {
    let extra = match frame {
        Frame::Emit(name) => name.len() + EMIT_FRAME_BYTES,
        Frame::Ack => ACK_FRAME_BYTES,
    };
    (data.len() + extra) as u64
}

/// The byte count of one socket's outgoing buffer (see the module docs).
#[derive(Debug)]
pub(crate) struct Outbox {
    /// `SOCKET_BUFFER_BYTES`.
    limit: u64,
    /// Bytes of the frames handed to socketioxide, moved up to `drained`
    /// whenever that passes it.
    handed: AtomicU64,
    /// Bytes of the socket's poll responses.
    polled: AtomicU64,
    /// What was written (`drained`) when [`Self::admit`] last read it.
    seen: AtomicU64,
    /// The socket's WebSocket connection and what it had written when the
    /// socket took it.
    websocket: OnceLock<(Arc<CloseSwitch>, u64)>,
    /// The socket overflowed once (its transport is being closed).
    overflowed: AtomicBool,
}

impl Outbox {
    /// An empty buffer that holds at most `limit` bytes (one frame more
    /// than fits is still taken into an empty buffer, so any one reply can
    /// be sent).
    pub(crate) fn new(limit: u64) -> Self {
        Self {
            limit,
            handed: AtomicU64::new(0),
            polled: AtomicU64::new(0),
            seen: AtomicU64::new(0),
            websocket: OnceLock::new(),
            overflowed: AtomicBool::new(false),
        }
    }

    /// The socket's transport is (now) the WebSocket on `switch`'s
    /// connection; its writes count from now on. Only the first call counts.
    pub(crate) fn attach_websocket(&self, switch: Arc<CloseSwitch>) {
        let from = switch.written();
        let _ = self.websocket.set((switch, from));
    }

    /// A poll response of `bytes` answered the socket's poll.
    pub(crate) fn polled(&self, bytes: u64) {
        self.polled.fetch_add(bytes, Ordering::Relaxed);
    }

    fn drained(&self) -> u64 {
        let websocket = self.websocket.get().map_or(0, |(switch, from)| switch.written().saturating_sub(*from));
        self.polled.load(Ordering::Relaxed) + websocket
    }

    /// Bytes handed over and not yet written (see the module docs for why
    /// this never reads high).
    #[cfg(test)]
    pub(crate) fn backlog(&self) -> u64 {
        let drained = self.drained();
        let handed = self.handed.load(Ordering::Relaxed);
        if drained >= handed {
            // Empty: start counting again from what was written.
            self.handed.fetch_max(drained, Ordering::Relaxed);
            0
        } else {
            handed - drained
        }
    }

    /// Takes a frame of `bytes` into the buffer, unless the buffer holds
    /// something and the frame would take it past its limit; `false` means
    /// the socket reads too slowly for what it is sent.
    ///
    /// Reading what the transport wrote costs a cache miss (another thread
    /// writes it), so it is read only when the frame could be past the
    /// limit by what was written when last read: about once per limit's
    /// worth of frames for a socket that reads, not once per frame.
    pub(crate) fn admit(&self, bytes: u64) -> bool {
        let before = self.handed.fetch_add(bytes, Ordering::Relaxed);
        let seen = self.seen.load(Ordering::Relaxed);
        if (before + bytes).saturating_sub(seen) <= self.limit {
            // What was written only grows: the backlog is at most this.
            return true;
        }
        let drained = self.drained();
        self.seen.fetch_max(drained, Ordering::Relaxed);
        if drained >= before {
            // Empty before this frame: start counting again from what was
            // written, so writes never handed (headers, pings) lend no credit.
            self.handed.fetch_max(drained + bytes, Ordering::Relaxed);
            return true;
        }
        if before - drained + bytes > self.limit {
            self.handed.fetch_sub(bytes, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// Notes that the socket overflowed; `true` the first time only, so its
    /// transport is closed (and counted) once, however many frames follow.
    pub(crate) fn first_overflow(&self) -> bool {
        !self.overflowed.swap(true, Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn websocket(outbox: &Outbox) -> Arc<CloseSwitch> {
        let switch = Arc::new(CloseSwitch::default());
        outbox.attach_websocket(switch.clone());
        switch
    }

    #[test]
    fn a_frame_counts_no_more_than_its_engine_io_text() {
        let data = r#"{"message":"hi"}"#;
        let emit = format!(r#"42["new_message",{data}]"#);
        assert!(frame_bytes(Frame::Emit("new_message"), data) <= emit.len() as u64);
        assert!(frame_bytes(Frame::Emit("new_message"), data) + 1 >= emit.len() as u64);
        let ack = format!("430[{data}]");
        assert!(frame_bytes(Frame::Ack, data) <= ack.len() as u64);
    }

    #[test]
    fn frames_past_the_limit_are_refused_until_the_transport_writes() {
        let outbox = Outbox::new(1000);
        let switch = websocket(&outbox);
        assert!(outbox.admit(600));
        assert!(outbox.admit(400), "exactly the limit fits");
        assert!(!outbox.admit(1), "past the limit");
        assert_eq!(outbox.backlog(), 1000);
        switch.add_written_for_test(700);
        assert_eq!(outbox.backlog(), 300);
        assert!(outbox.admit(700));
        assert!(!outbox.admit(1));
    }

    #[test]
    fn a_reader_that_keeps_up_is_never_refused() {
        let outbox = Outbox::new(1000);
        let switch = websocket(&outbox);
        for _ in 0..10_000 {
            assert!(outbox.admit(100));
            // The transport writes all but the last few frames, plus headers.
            if outbox.backlog() > 500 {
                switch.add_written_for_test(104 * 2);
            }
        }
        assert!(outbox.backlog() <= 600, "{}", outbox.backlog());
    }

    #[test]
    fn one_frame_larger_than_the_limit_still_goes_into_an_empty_buffer() {
        let outbox = Outbox::new(1000);
        let switch = websocket(&outbox);
        assert!(outbox.admit(5000), "a large reply can always be sent");
        assert!(!outbox.admit(10), "but nothing after it until it is written");
        switch.add_written_for_test(5000);
        assert!(outbox.admit(10));
    }

    #[test]
    fn writes_past_what_was_handed_reset_the_count_instead_of_lending_credit() {
        let outbox = Outbox::new(1000);
        let switch = websocket(&outbox);
        // Headers, pings and the CONNECT reply: written, never handed.
        switch.add_written_for_test(5000);
        assert_eq!(outbox.backlog(), 0);
        // The 5000 bytes are not credit for later frames.
        assert!(outbox.admit(800));
        assert!(outbox.admit(200));
        assert!(!outbox.admit(1));
    }

    #[test]
    fn writes_before_the_socket_took_the_connection_do_not_count() {
        let switch = Arc::new(CloseSwitch::default());
        switch.add_written_for_test(10_000);
        let outbox = Outbox::new(1000);
        outbox.attach_websocket(switch.clone());
        assert!(outbox.admit(1000));
        assert_eq!(outbox.backlog(), 1000);
    }

    #[test]
    fn an_upgraded_socket_counts_its_polls_and_its_websocket() {
        let outbox = Outbox::new(1000);
        assert!(outbox.admit(900));
        outbox.polled(400);
        assert_eq!(outbox.backlog(), 500);
        let switch = websocket(&outbox);
        switch.add_written_for_test(500);
        assert_eq!(outbox.backlog(), 0);
        assert!(outbox.admit(1000));
    }
}
