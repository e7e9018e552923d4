//! Brute-force protection for `Login`: after `max_failures` failed logins
//! for one email within `window`, further logins for that email are refused
//! (before any password is checked, so a guessing run also costs no argon2
//! work) until the window that began with the first failure has passed. A
//! successful login clears the email's count.
//!
//! The count is per auth replica and in memory: with N replicas behind a
//! load balancer a guesser gets at most N × `max_failures` tries per window.
//! At most [`MAX_TRACKED`] emails are tracked; past that, expired entries are
//! dropped, and if none has expired new emails are not tracked until one does
//! (so an attacker cycling through emails cannot grow memory without bound).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Most emails with failures remembered at once.
pub const MAX_TRACKED: usize = 100_000;

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    window_start: Instant,
}

/// Counts failed logins per email.
#[derive(Debug)]
pub struct LoginGuard {
    max_failures: u32,
    window: Duration,
    entries: Mutex<HashMap<String, Failures>>,
}

impl LoginGuard {
    /// A guard refusing an email after `max_failures` failures within
    /// `window`; `max_failures` 0 turns it off.
    pub fn new(max_failures: u32, window: Duration) -> Self {
        Self { max_failures, window, entries: Mutex::new(HashMap::new()) }
    }

    /// `Err(wait)` if `email` is locked out now, with how long is left.
    pub fn check(&self, email: &str, now: Instant) -> Result<(), Duration> {
        if self.max_failures == 0 {
            return Ok(());
        }
        let entries = self.entries.lock();
        match entries.get(email) {
            Some(failures) if failures.count >= self.max_failures => {
                let ends = failures.window_start + self.window;
                if now < ends { Err(ends - now) } else { Ok(()) }
            }
            _ => Ok(()),
        }
    }

    /// Records a failed login for `email`.
    pub fn failed(&self, email: &str, now: Instant) {
        if self.max_failures == 0 {
            return;
        }
        let mut entries = self.entries.lock();
        if let Some(failures) = entries.get_mut(email) {
            if now.duration_since(failures.window_start) >= self.window {
                *failures = Failures { count: 1, window_start: now };
            } else {
                failures.count = failures.count.saturating_add(1);
            }
            return;
        }
        if entries.len() >= MAX_TRACKED {
            let window = self.window;
            entries.retain(|_, failures| now.duration_since(failures.window_start) < window);
            if entries.len() >= MAX_TRACKED {
                return;
            }
        }
        entries.insert(email.to_owned(), Failures { count: 1, window_start: now });
    }

    /// Forgets the failures of `email` after a successful login.
    pub fn succeeded(&self, email: &str) {
        if self.max_failures == 0 {
            return;
        }
        self.entries.lock().remove(email);
    }

    /// Emails with failures remembered now.
    pub fn tracked(&self) -> usize {
        self.entries.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: Duration = Duration::from_secs(300);

    #[test]
    fn locks_an_email_after_the_limit_until_the_window_ends() {
        let guard = LoginGuard::new(3, WINDOW);
        let start = Instant::now();
        for n in 0..3 {
            assert_eq!(guard.check("a@x.test", start), Ok(()), "attempt {n}");
            guard.failed("a@x.test", start + Duration::from_secs(n));
        }
        let later = start + Duration::from_secs(100);
        assert_eq!(guard.check("a@x.test", later), Err(Duration::from_secs(200)));
        assert_eq!(guard.check("b@x.test", later), Ok(()), "other emails are not affected");
        assert_eq!(guard.check("a@x.test", start + WINDOW), Ok(()), "the lock ends with the window");
        guard.failed("a@x.test", start + WINDOW);
        assert_eq!(guard.check("a@x.test", start + WINDOW), Ok(()), "a new window starts counting at one");
    }

    #[test]
    fn success_clears_the_count() {
        let guard = LoginGuard::new(2, WINDOW);
        let now = Instant::now();
        guard.failed("a@x.test", now);
        guard.succeeded("a@x.test");
        guard.failed("a@x.test", now);
        assert_eq!(guard.check("a@x.test", now), Ok(()));
        assert_eq!(guard.tracked(), 1);
    }

    #[test]
    fn zero_turns_it_off() {
        let guard = LoginGuard::new(0, WINDOW);
        let now = Instant::now();
        for _ in 0..100 {
            guard.failed("a@x.test", now);
        }
        assert_eq!(guard.check("a@x.test", now), Ok(()));
        assert_eq!(guard.tracked(), 0);
    }

    #[test]
    fn memory_is_bounded_and_expired_entries_make_room() {
        let guard = LoginGuard::new(5, WINDOW);
        let start = Instant::now();
        for n in 0..MAX_TRACKED {
            guard.failed(&format!("u{n}@x.test"), start);
        }
        guard.failed("new@x.test", start + Duration::from_secs(1));
        assert_eq!(guard.tracked(), MAX_TRACKED, "full: a new email is not tracked");
        guard.failed("new@x.test", start + WINDOW);
        assert_eq!(guard.tracked(), 1, "expired entries were dropped to make room");
    }
}
