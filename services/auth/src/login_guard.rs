//! Brute-force protection for `Login`, shared by every auth replica.
//!
//! **The policy: exponential delay per email.** The first
//! `LOGIN_MAX_FAILURES` failed logins for an email cost nothing; from then
//! on each further failure locks the email for twice as long as the one
//! before (1 s, 2 s, 4 s, … at most `LOGIN_FAILURE_WINDOW`). A locked email
//! is refused before any password is checked, so a guessing run costs no
//! argon2 work either. The count is forgotten `LOGIN_FAILURE_WINDOW` after
//! the last failure, and a successful login clears it. So an attacker who
//! keeps guessing is slowed to one try per window, while the owner of an
//! email that was guessed at briefly waits seconds, not the whole window.
//! (Per email *and* source address was the other option; it needs the
//! client's address, which auth does not see behind the edge's `/login`,
//! and an attacker controls addresses more easily than time.)
//!
//! **Shared.** Every replica reads and writes one record per email in the
//! `<PREFIX>_LOGIN` stream (subject `<prefix>.auth.login.<key>`, one
//! message per subject, kept for the window): `key` is a hash of the
//! email, so NATS never holds an address. Writes are compare-and-set on
//! the subject's last sequence, so two replicas counting the same email at
//! once both count. When NATS does not answer, the replica counts alone in
//! memory ([`MAX_TRACKED`] emails at most) until it answers again, and
//! says so in its log.

use std::collections::HashMap;
use std::time::Duration;

use base64::Engine as _;
use parking_lot::Mutex;
use sb_events::bus::Bus;
use serde::{Deserialize, Serialize};
use sha2::Digest as _;

/// Most emails with failures remembered in memory (when NATS is away).
pub const MAX_TRACKED: usize = 100_000;
/// The first lock, doubled by each further failure.
const FIRST_LOCK_MS: i64 = 1_000;
/// Compare-and-set attempts before a failure is counted in memory instead.
const CAS_ATTEMPTS: usize = 5;
/// How long one read or write of the shared record may take.
const NATS_WAIT: Duration = Duration::from_secs(2);

/// One email's failures (the shared record, JSON).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failures {
    /// Failed logins since the count was last forgotten or cleared.
    pub count: u32,
    /// When the last one happened, epoch ms.
    pub last_ms: i64,
    /// Logins are refused until then, epoch ms (0: not locked).
    pub locked_until_ms: i64,
}

/// The policy: what a record says at `now_ms`, and what a failure makes of it.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// Failures that cost nothing; 0 turns the guard off.
    pub max_failures: u32,
    /// Longest lock, and how long after the last failure the count is forgotten.
    pub window: Duration,
}

impl Policy {
    fn window_ms(&self) -> i64 {
        i64::try_from(self.window.as_millis()).unwrap_or(i64::MAX)
    }

    /// `Err(wait)` while `record` locks its email at `now_ms`.
    pub fn check(&self, record: Option<&Failures>, now_ms: i64) -> Result<(), Duration> {
        match record {
            Some(failures) if self.max_failures > 0 && failures.locked_until_ms > now_ms => {
                Err(Duration::from_millis((failures.locked_until_ms - now_ms) as u64))
            }
            _ => Ok(()),
        }
    }

    /// The record after one more failure at `now_ms`.
    pub fn after_failure(&self, record: Option<&Failures>, now_ms: i64) -> Failures {
        let live = record.filter(|failures| now_ms - failures.last_ms < self.window_ms());
        let count = live.map_or(0, |failures| failures.count).saturating_add(1);
        let locked_until_ms = if count < self.max_failures {
            0
        } else {
            let doublings = (count - self.max_failures).min(40);
            let lock = FIRST_LOCK_MS.saturating_mul(1_i64 << doublings).min(self.window_ms());
            now_ms.saturating_add(lock)
        };
        Failures { count, last_ms: now_ms, locked_until_ms }
    }

    /// Whether `record` still matters at `now_ms` (memory fallback housekeeping).
    fn live(&self, record: &Failures, now_ms: i64) -> bool {
        now_ms - record.last_ms < self.window_ms() || record.locked_until_ms > now_ms
    }
}

/// Counts failed logins per email, in NATS when it can.
#[derive(Debug)]
pub struct LoginGuard {
    policy: Policy,
    shared: Option<Shared>,
    local: Mutex<HashMap<String, Failures>>,
}

/// The shared records.
#[derive(Debug)]
struct Shared {
    bus: Bus,
    stream: async_nats::jetstream::stream::Stream,
}

/// Why the shared record could not be used.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct SharedError(String);

impl LoginGuard {
    /// A guard with `policy`, counting in memory only (tests, or no NATS).
    pub fn local(policy: Policy) -> Self {
        Self { policy, shared: None, local: Mutex::new(HashMap::new()) }
    }

    /// A guard sharing its counts through the `<PREFIX>_LOGIN` stream
    /// (created with `replicas` unless it exists).
    pub async fn shared(policy: Policy, bus: &Bus, replicas: usize) -> Result<Self, sb_events::bus::BusError> {
        if policy.max_failures == 0 {
            return Ok(Self::local(policy));
        }
        let stream = bus.ensure_login_stream(replicas, policy.window).await?;
        Ok(Self { policy, shared: Some(Shared { bus: bus.clone(), stream }), local: Mutex::new(HashMap::new()) })
    }

    /// `Err(wait)` if `email` is locked out now, with how long is left.
    pub async fn check(&self, email: &str) -> Result<(), Duration> {
        if self.policy.max_failures == 0 {
            return Ok(());
        }
        let now_ms = sb_events::timestamp::now_ms();
        if let Some(shared) = &self.shared {
            match shared.read(email).await {
                Ok(record) => {
                    // A count kept in memory while NATS was away still applies.
                    self.policy.check(record.map(|(failures, _)| failures).as_ref(), now_ms)?;
                }
                Err(error) => {
                    tracing::warn!(%error, "login lock: NATS did not answer; this replica checks its own count")
                }
            }
        }
        self.policy.check(self.local.lock().get(email), now_ms)
    }

    /// Records a failed login for `email`.
    pub async fn failed(&self, email: &str) {
        if self.policy.max_failures == 0 {
            return;
        }
        let now_ms = sb_events::timestamp::now_ms();
        if let Some(shared) = &self.shared {
            match shared.count_failure(email, &self.policy, now_ms).await {
                Ok(()) => return,
                Err(error) => {
                    tracing::warn!(%error, "login lock: the failure is counted by this replica only (NATS did not answer)");
                }
            }
        }
        self.count_locally(email, now_ms);
    }

    /// Forgets the failures of `email` after a successful login.
    pub async fn succeeded(&self, email: &str) {
        if self.policy.max_failures == 0 {
            return;
        }
        self.local.lock().remove(email);
        if let Some(shared) = &self.shared
            && let Err(error) = shared.clear(email).await
        {
            tracing::warn!(%error, "login lock: could not clear the shared count after a successful login");
        }
    }

    /// Emails with failures remembered in this replica's memory.
    pub fn tracked(&self) -> usize {
        self.local.lock().len()
    }

    fn count_locally(&self, email: &str, now_ms: i64) {
        let mut local = self.local.lock();
        if !local.contains_key(email) && local.len() >= MAX_TRACKED {
            let policy = self.policy;
            local.retain(|_, failures| policy.live(failures, now_ms));
            if local.len() >= MAX_TRACKED {
                return;
            }
        }
        let next = self.policy.after_failure(local.get(email), now_ms);
        local.insert(email.to_owned(), next);
    }
}

/// The record's subject token: a hash of the email (never the email itself).
fn email_key(email: &str) -> String {
    let digest = sha2::Sha256::digest(email.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest[..18])
}

impl Shared {
    fn subject(&self, email: &str) -> String {
        self.bus.subjects.login_failures(&email_key(email))
    }

    /// The email's record and the stream sequence holding it.
    async fn read(&self, email: &str) -> Result<Option<(Failures, u64)>, SharedError> {
        use async_nats::jetstream::stream::LastRawMessageErrorKind;
        let subject = self.subject(email);
        let found = tokio::time::timeout(NATS_WAIT, self.stream.get_last_raw_message_by_subject(&subject))
            .await
            .map_err(|_| SharedError(format!("reading {subject} took over {NATS_WAIT:?}")))?;
        match found {
            Ok(message) => match serde_json::from_slice::<Failures>(&message.payload) {
                Ok(failures) => Ok(Some((failures, message.sequence))),
                // An unreadable record counts as none; the next write replaces it.
                Err(_) => Ok(Some((Failures { count: 0, last_ms: 0, locked_until_ms: 0 }, message.sequence))),
            },
            Err(error) if error.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(None),
            Err(error) => Err(SharedError(format!("reading {subject}: {error}"))),
        }
    }

    /// Writes `record` if the subject's last sequence is still `expected` (0: none).
    async fn write(&self, email: &str, record: &Failures, expected: Option<u64>) -> Result<bool, SharedError> {
        let subject = self.subject(email);
        let payload = serde_json::to_vec(record).map_err(|error| SharedError(format!("encode: {error}")))?;
        let mut headers = async_nats::HeaderMap::new();
        if let Some(expected) = expected {
            headers.insert(async_nats::header::NATS_EXPECTED_LAST_SUBJECT_SEQUENCE, expected.to_string().as_str());
        }
        let publish = async {
            let ack = self
                .bus
                .jetstream
                .publish_with_headers(subject.clone(), headers, payload.into())
                .await
                .map_err(|error| SharedError(format!("publishing {subject}: {error}")))?;
            match ack.await {
                Ok(_) => Ok(true),
                // Another replica wrote first: read again.
                Err(error) if error.to_string().contains("wrong last sequence") => Ok(false),
                Err(error) => Err(SharedError(format!("storing {subject}: {error}"))),
            }
        };
        tokio::time::timeout(NATS_WAIT, publish)
            .await
            .map_err(|_| SharedError(format!("storing {subject} took over {NATS_WAIT:?}")))?
    }

    async fn count_failure(&self, email: &str, policy: &Policy, now_ms: i64) -> Result<(), SharedError> {
        for _ in 0..CAS_ATTEMPTS {
            let current = self.read(email).await?;
            let next = policy.after_failure(current.as_ref().map(|(failures, _)| failures), now_ms);
            let expected = Some(current.map_or(0, |(_, seq)| seq));
            if self.write(email, &next, expected).await? {
                return Ok(());
            }
        }
        Err(SharedError(format!("{CAS_ATTEMPTS} replicas' writes of the same email raced")))
    }

    async fn clear(&self, email: &str) -> Result<(), SharedError> {
        if self.read(email).await?.is_none() {
            return Ok(());
        }
        self.write(email, &Failures { count: 0, last_ms: 0, locked_until_ms: 0 }, None).await.map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: Duration = Duration::from_secs(300);
    const POLICY: Policy = Policy { max_failures: 3, window: WINDOW };

    fn fail_times(policy: &Policy, times: &[i64]) -> Option<Failures> {
        times.iter().fold(None, |record, now| Some(policy.after_failure(record.as_ref(), *now)))
    }

    #[test]
    fn free_failures_then_locks_that_double_up_to_the_window() {
        let record = fail_times(&POLICY, &[0, 10, 20]);
        assert_eq!(POLICY.check(fail_times(&POLICY, &[0, 10]).as_ref(), 20), Ok(()), "two failures cost nothing");
        assert_eq!(POLICY.check(record.as_ref(), 20), Err(Duration::from_millis(1_000)), "the third locks for 1 s");
        assert_eq!(POLICY.check(record.as_ref(), 1_020), Ok(()), "and only for 1 s");
        let record = fail_times(&POLICY, &[0, 10, 20, 2_000]);
        assert_eq!(POLICY.check(record.as_ref(), 2_000), Err(Duration::from_secs(2)), "then 2 s");
        let many: Vec<i64> = (0..40).map(|n| n * 1_000_000).collect();
        let record = fail_times(&Policy { window: Duration::from_secs(10_000), ..POLICY }, &many);
        let last = *many.last().expect("times");
        assert_eq!(
            Policy { window: Duration::from_secs(10_000), ..POLICY }.check(record.as_ref(), last),
            Err(Duration::from_secs(10_000)),
            "never longer than the window"
        );
    }

    #[test]
    fn the_count_is_forgotten_a_window_after_the_last_failure() {
        let window_ms = WINDOW.as_millis() as i64;
        let record = fail_times(&POLICY, &[0, 1, window_ms]);
        assert_eq!(record.map(|failures| failures.count), Some(3), "failures keep the count alive");
        let record = fail_times(&POLICY, &[0, 1, 1 + window_ms]);
        assert_eq!(record.map(|failures| failures.count), Some(1), "a window of quiet starts over");
    }

    #[test]
    fn zero_turns_it_off() {
        let off = Policy { max_failures: 0, window: WINDOW };
        let record = fail_times(&off, &[0; 100]);
        assert_eq!(off.check(record.as_ref(), 0), Ok(()));
    }

    #[tokio::test]
    async fn memory_is_bounded_and_success_clears_the_count() {
        let guard = LoginGuard::local(POLICY);
        for _ in 0..3 {
            guard.failed("a@x.test").await;
        }
        assert!(guard.check("a@x.test").await.is_err(), "locked after three failures");
        assert_eq!(guard.check("b@x.test").await, Ok(()), "other emails are not affected");
        guard.succeeded("a@x.test").await;
        assert_eq!(guard.check("a@x.test").await, Ok(()), "a success clears the count");
        let now_ms = sb_events::timestamp::now_ms();
        for n in 0..MAX_TRACKED {
            guard.count_locally(&format!("u{n}@x.test"), now_ms);
        }
        guard.count_locally("new@x.test", now_ms + 1);
        assert_eq!(guard.tracked(), MAX_TRACKED, "full: a new email is not tracked");
        guard.count_locally("new@x.test", now_ms + WINDOW.as_millis() as i64 + 2);
        assert_eq!(guard.tracked(), 1, "records past their window were dropped to make room");
    }

    #[test]
    fn the_key_is_a_subject_token_that_hides_the_email() {
        let key = email_key("someone@example.test");
        assert_eq!(key.len(), 24);
        assert!(key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'), "{key}");
        assert!(!key.contains("someone"));
        assert_ne!(key, email_key("someone@example.tesu"));
    }
}
