//! [`Lease`]: which replica publishes transitions, and how far it got.
//!
//! Publishing must be done by one replica at a time: transitions of one
//! user published by two replicas could reach an edge in the wrong order
//! (offline before online), and coalescing needs to see a whole window. The
//! lease is one record `{holder, emitted_through}` on the subject
//! `<p>.presence.lease` of the small stream `<PREFIX>_PRESENCE_LEASE`,
//! written only with `Nats-Expected-Last-Subject-Sequence` (compare and
//! set), so exactly one write wins any race.
//!
//! - The holder rewrites the record at least every `ttl / 3` (and after each
//!   published window, with the new `emitted_through`). It stops publishing
//!   on its own once `ttl` has passed since its last successful write.
//! - The others read the record every `ttl / 3`. When it has not changed for
//!   `ttl` (by their own clock, so clocks need not agree) they try to take it
//!   over, keeping `emitted_through`; the new holder publishes every
//!   transition after it. A holder that died between publishing and writing
//!   the record causes those transitions to be published twice; never lost.
//! - A holder that stops cleanly first publishes what it owes, then writes
//!   the record `released` ([`Lease::release`]). Everyone watches the lease
//!   subject, so another replica takes a released lease over at once rather
//!   than after `ttl`; so does a replica that finds its own id in the record
//!   (its previous incarnation, restarted with the same `PRESENCE_REPLICA_ID`).

use std::time::Duration;

use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::{self, LastRawMessageErrorKind};
use bytes::Bytes;
use sb_events::bus::Bus;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

/// The lease record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRecord {
    /// The replica that holds the lease.
    pub holder: String,
    /// Every transition of a presence stream sequence up to this one was published.
    pub emitted_through: u64,
    /// When it was written (informational), epoch milliseconds.
    pub at_ms: i64,
    /// The holder gave the lease up (it stopped cleanly, everything up to
    /// `emitted_through` published): anyone may take it at once.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub released: bool,
}

/// Why the lease could not be used.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// Another replica wrote the record first.
    #[error("another replica holds the presence emission lease")]
    Lost,
    /// NATS did not answer.
    #[error("read or write the presence emission lease: {0}")]
    Nats(String),
}

/// How long start-up waits for a new lease stream to elect a leader.
const STREAM_LEADER_WAIT: Duration = Duration::from_secs(30);

/// Creates the lease stream unless it exists (one record kept, file storage).
pub async fn ensure_lease_stream(bus: &Bus, replicas: usize) -> Result<(), async_nats::Error> {
    bus.jetstream
        .get_or_create_stream(stream::Config {
            name: bus.subjects.presence_lease_stream(),
            subjects: vec![bus.subjects.presence_lease()],
            max_messages_per_subject: 1,
            storage: stream::StorageType::File,
            num_replicas: replicas.max(1),
            description: Some("Switchboard presence: which replica publishes transitions, and how far".to_owned()),
            ..Default::default()
        })
        .await?;
    Ok(())
}

/// Forgets a lease record that claims more than the presence stream holds
/// (the stream was deleted and created again, so its sequences restarted):
/// keeping it would silence every transition up to its `emitted_through`.
pub async fn drop_stale_lease(bus: &Bus, stream_last_seq: u64) -> Result<(), async_nats::Error> {
    let stream = bus.jetstream.get_stream_no_info(bus.subjects.presence_lease_stream()).await?;
    // On a NATS cluster a stream that was just created has no leader for a
    // moment, and reads of it time out until one is elected: retry for a while.
    let deadline = Instant::now() + STREAM_LEADER_WAIT;
    let message = loop {
        match stream.get_last_raw_message_by_subject(&bus.subjects.presence_lease()).await {
            Ok(message) => break message,
            Err(error) if error.kind() == LastRawMessageErrorKind::NoMessageFound => return Ok(()),
            Err(error) if Instant::now() < deadline => {
                tracing::warn!(%error, "read the presence lease (the stream may have no leader yet); retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(error) => return Err(error.into()),
        }
    };
    let Ok(record) = serde_json::from_slice::<LeaseRecord>(&message.payload) else { return Ok(()) };
    if record.emitted_through > stream_last_seq {
        tracing::warn!(
            emitted_through = record.emitted_through,
            stream_last_seq,
            "the presence stream was recreated; starting the emission lease afresh"
        );
        stream.purge().await?;
    }
    Ok(())
}

/// One replica's view of the lease.
#[derive(Debug)]
pub struct Lease {
    bus: Bus,
    replica: String,
    ttl: Duration,
    /// Subject sequence of the record last read or written.
    record_seq: u64,
    /// When `record_seq` last changed, by this replica's clock.
    record_changed: Instant,
    /// The `emitted_through` of the record last read or written.
    record_emitted_through: u64,
    /// While holding: the lease is ours until then (last successful write + ttl).
    held_until: Option<Instant>,
    last_check: Option<Instant>,
}

impl Lease {
    /// The lease as seen by `replica`.
    pub fn new(bus: Bus, replica: String, ttl: Duration) -> Self {
        Self {
            bus,
            replica,
            ttl,
            record_seq: 0,
            record_changed: Instant::now(),
            record_emitted_through: 0,
            held_until: None,
            last_check: None,
        }
    }

    /// Whether this replica holds the lease now.
    pub fn is_held(&self) -> bool {
        self.held_until.is_some_and(|until| Instant::now() < until)
    }

    /// `emitted_through` of the latest record seen.
    pub fn emitted_through(&self) -> u64 {
        self.record_emitted_through
    }

    /// Makes the next [`Self::maintain`] look at the record at once (the
    /// lease subject carried a new record).
    pub fn check_soon(&mut self) {
        self.last_check = None;
    }

    /// Gives the lease up after everything up to `emitted_through` was
    /// published, so another replica takes over without waiting for `ttl`.
    /// Does nothing unless this replica holds it.
    pub async fn release(&mut self, emitted_through: u64) -> Result<(), LeaseError> {
        if !self.is_held() {
            return Ok(());
        }
        self.write_record(emitted_through, true).await?;
        self.held_until = None;
        tracing::info!(replica = %self.replica, emitted_through, "released the presence emission lease");
        Ok(())
    }

    /// Renews the lease (holder) or checks whether to take it over (others);
    /// does nothing if it did so less than `ttl / 3` ago. `emitted_through`
    /// is the holder's progress. Returns true when this call acquired it.
    pub async fn maintain(&mut self, emitted_through: u64) -> bool {
        let now = Instant::now();
        if self.last_check.is_some_and(|last| now.duration_since(last) < self.ttl / 3) {
            return false;
        }
        self.last_check = Some(now);
        if self.held_until.is_some() {
            match self.write(emitted_through).await {
                Ok(()) => {}
                Err(LeaseError::Lost) => {
                    tracing::warn!(replica = %self.replica, "presence emission lease lost to another replica");
                    self.held_until = None;
                }
                Err(error) => {
                    tracing::warn!(%error, "renew the presence emission lease");
                    if !self.is_held() {
                        self.held_until = None;
                    }
                }
            }
            return false;
        }
        self.try_acquire().await
    }

    async fn try_acquire(&mut self) -> bool {
        let stream = match self.bus.jetstream.get_stream_no_info(self.bus.subjects.presence_lease_stream()).await {
            Ok(stream) => stream,
            Err(error) => {
                tracing::warn!(%error, "look up the presence lease stream");
                return false;
            }
        };
        match stream.get_last_raw_message_by_subject(&self.bus.subjects.presence_lease()).await {
            Ok(message) => {
                let mut free = false;
                if message.sequence != self.record_seq {
                    match serde_json::from_slice::<LeaseRecord>(&message.payload) {
                        Ok(record) => {
                            self.record_emitted_through = record.emitted_through;
                            // Released, or held by this replica's previous incarnation.
                            free = record.released || record.holder == self.replica;
                        }
                        Err(error) => tracing::warn!(%error, "undecodable presence lease record; taking it over"),
                    }
                    self.record_seq = message.sequence;
                    self.record_changed = Instant::now();
                    if !free {
                        return false;
                    }
                }
                if !free && self.record_changed.elapsed() < self.ttl {
                    return false;
                }
            }
            Err(error) if error.kind() == LastRawMessageErrorKind::NoMessageFound => {
                self.record_seq = 0;
            }
            Err(error) => {
                tracing::warn!(%error, "read the presence emission lease");
                return false;
            }
        }
        let emitted_through = self.record_emitted_through;
        match self.write(emitted_through).await {
            Ok(()) => {
                tracing::info!(replica = %self.replica, emitted_through, "took the presence emission lease");
                true
            }
            Err(LeaseError::Lost) => false,
            Err(error) => {
                tracing::warn!(%error, "take the presence emission lease");
                false
            }
        }
    }

    /// Writes the record with `emitted_through` if nobody wrote it since we
    /// last saw it; on success the lease is ours for another `ttl`.
    pub async fn write(&mut self, emitted_through: u64) -> Result<(), LeaseError> {
        self.write_record(emitted_through, false).await
    }

    async fn write_record(&mut self, emitted_through: u64, released: bool) -> Result<(), LeaseError> {
        let record = LeaseRecord {
            holder: self.replica.clone(),
            emitted_through,
            at_ms: sb_events::timestamp::now_ms(),
            released,
        };
        let payload = serde_json::to_vec(&record).map_err(|error| LeaseError::Nats(error.to_string()))?;
        let started = Instant::now();
        let message =
            PublishMessage::build().payload(Bytes::from(payload)).expected_last_subject_sequence(self.record_seq);
        let ack = match self.bus.jetstream.send_publish(self.bus.subjects.presence_lease(), message).await {
            Ok(pending) => pending.await,
            Err(error) => Err(error),
        };
        match ack {
            Ok(ack) => {
                self.record_seq = ack.sequence;
                self.record_changed = Instant::now();
                self.record_emitted_through = emitted_through;
                self.held_until = Some(started + self.ttl);
                Ok(())
            }
            Err(error) if error.kind() == PublishErrorKind::WrongLastSequence => {
                self.held_until = None;
                Err(LeaseError::Lost)
            }
            Err(error) => Err(LeaseError::Nats(error.to_string())),
        }
    }
}
