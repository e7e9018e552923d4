//! A short positive cache of verified tokens.
//!
//! Keys are SHA-256 digests of the token, so the raw token is never kept.
//! Only successful verifications are cached, each for at most the configured
//! time-to-live and never past the token's own `exp`. The map is bounded:
//! when it is full, expired entries are swept, and if that frees nothing the
//! whole map is cleared (the cache is an optimisation; a miss costs one RPC).
//!
//! Revocation stays exact: [`VerifyCache::invalidate_user`] removes a user's
//! entries and bumps a generation counter, and an insert whose verification
//! started before the latest invalidation is dropped, so an answer that was
//! in flight while the revocation arrived cannot re-populate the cache.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use sha2::{Digest as _, Sha256};

use crate::VerifiedUser;

/// How the verify cache behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifyCacheSettings {
    /// How long a verified token is trusted without asking auth again.
    /// Keep it short (a few seconds): a disabled user or a deleted row is
    /// only noticed after it, unless [`crate::AuthClient::invalidate_user`]
    /// is called.
    pub ttl: Duration,
    /// Most entries kept at once.
    pub capacity: usize,
}

impl Default for VerifyCacheSettings {
    /// Three seconds, 10 000 entries.
    fn default() -> Self {
        Self { ttl: Duration::from_secs(3), capacity: 10_000 }
    }
}

/// The digest a token is cached under.
pub(crate) type TokenKey = [u8; 32];

/// Hashes a token into its cache key.
pub(crate) fn token_key(token: &str) -> TokenKey {
    Sha256::digest(token.as_bytes()).into()
}

struct Entry {
    user: VerifiedUser,
    valid_until: Instant,
}

struct Inner {
    entries: HashMap<TokenKey, Entry>,
    generation: u64,
    /// When expired entries are dropped next (every `ttl`), so the cache
    /// holds what the last `ttl` verified, not `capacity` entries of which
    /// most are stale (a churn of new users filled it within minutes).
    next_sweep: Option<Instant>,
}

/// The cache itself; shared by clones of one [`crate::AuthClient`].
pub(crate) struct VerifyCache {
    settings: VerifyCacheSettings,
    inner: Mutex<Inner>,
}

impl VerifyCache {
    pub(crate) fn new(settings: VerifyCacheSettings) -> Self {
        Self { settings, inner: Mutex::new(Inner { entries: HashMap::new(), generation: 0, next_sweep: None }) }
    }

    /// The generation to pass to [`Self::insert`]; read it before asking auth.
    pub(crate) fn generation(&self) -> u64 {
        self.inner.lock().generation
    }

    /// The cached user for `key`, if the entry is still fresh.
    pub(crate) fn get(&self, key: &TokenKey) -> Option<VerifiedUser> {
        let now = Instant::now();
        let mut inner = self.inner.lock();
        match inner.entries.get(key) {
            Some(entry) if entry.valid_until > now => Some(entry.user.clone()),
            Some(_) => {
                inner.entries.remove(key);
                None
            }
            None => None,
        }
    }

    /// Remembers a successful verification that started at `generation`.
    pub(crate) fn insert(&self, key: TokenKey, user: &VerifiedUser, generation: u64) {
        let Some(lifetime) = self.lifetime_for(user.expires_at_s) else {
            return;
        };
        let now = Instant::now();
        let mut inner = self.inner.lock();
        if inner.generation != generation {
            return;
        }
        if inner.next_sweep.is_none_or(|at| now >= at) {
            inner.entries.retain(|_, entry| entry.valid_until > now);
            if inner.entries.capacity() > 64 && inner.entries.len() < inner.entries.capacity() / 4 {
                let keep = inner.entries.len() * 2;
                inner.entries.shrink_to(keep);
            }
            inner.next_sweep = Some(now + self.settings.ttl);
        }
        if inner.entries.len() >= self.settings.capacity && !inner.entries.contains_key(&key) {
            inner.entries.retain(|_, entry| entry.valid_until > now);
            if inner.entries.len() >= self.settings.capacity {
                inner.entries.clear();
            }
        }
        inner.entries.insert(key, Entry { user: user.clone(), valid_until: now + lifetime });
    }

    /// Drops every entry of `user_id` and refuses inserts of answers that
    /// were in flight.
    pub(crate) fn invalidate_user(&self, user_id: &str) {
        let mut inner = self.inner.lock();
        inner.generation = inner.generation.wrapping_add(1);
        inner.entries.retain(|_, entry| entry.user.id != user_id);
    }

    /// Drops everything.
    pub(crate) fn clear(&self) {
        let mut inner = self.inner.lock();
        inner.generation = inner.generation.wrapping_add(1);
        inner.entries.clear();
    }

    pub(crate) fn len(&self) -> usize {
        self.inner.lock().entries.len()
    }

    /// How long an answer for a token expiring at `expires_at_s` may be
    /// cached: the TTL, cut short by the token's own expiry.
    fn lifetime_for(&self, expires_at_s: i64) -> Option<Duration> {
        if self.settings.ttl.is_zero() || self.settings.capacity == 0 {
            return None;
        }
        let now_s = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_secs_f64();
        let remaining = expires_at_s as f64 - now_s;
        if remaining <= 0.0 {
            return None;
        }
        Some(self.settings.ttl.min(Duration::from_secs_f64(remaining)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Role;

    fn user(id: &str, expires_in_s: i64) -> VerifiedUser {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
        VerifiedUser {
            id: id.to_owned(),
            email: format!("{id}@example.test"),
            role: Role::User,
            token_version: 0,
            expires_at_s: now + expires_in_s,
        }
    }

    fn cache(ttl: Duration, capacity: usize) -> VerifyCache {
        VerifyCache::new(VerifyCacheSettings { ttl, capacity })
    }

    #[test]
    fn keys_are_digests_not_tokens() {
        let key = token_key("abc");
        assert_ne!(&key[..3], b"abc");
        assert_eq!(key, token_key("abc"));
        assert_ne!(key, token_key("abd"));
    }

    #[test]
    fn hit_after_insert_then_invalidate_user_drops_it() {
        let cache = cache(Duration::from_secs(60), 10);
        let generation = cache.generation();
        cache.insert(token_key("t1"), &user("u1", 3600), generation);
        cache.insert(token_key("t2"), &user("u2", 3600), generation);
        assert_eq!(cache.get(&token_key("t1")).map(|u| u.id), Some("u1".to_owned()));
        cache.invalidate_user("u1");
        assert!(cache.get(&token_key("t1")).is_none());
        assert!(cache.get(&token_key("t2")).is_some());
    }

    #[test]
    fn expired_entries_are_swept_every_ttl_not_only_when_full() {
        let cache = cache(Duration::from_millis(30), 10_000);
        for n in 0..100 {
            cache.insert(token_key(&format!("t{n}")), &user(&format!("u{n}"), 3600), cache.generation());
        }
        assert_eq!(cache.len(), 100);
        std::thread::sleep(Duration::from_millis(40));
        cache.insert(token_key("fresh"), &user("fresh", 3600), cache.generation());
        assert_eq!(cache.len(), 1, "the hundred expired entries went at the next insert after a ttl");
    }

    #[test]
    fn answer_in_flight_during_invalidation_is_not_cached() {
        let cache = cache(Duration::from_secs(60), 10);
        let generation = cache.generation();
        cache.invalidate_user("u1");
        cache.insert(token_key("t1"), &user("u1", 3600), generation);
        assert!(cache.get(&token_key("t1")).is_none());
    }

    #[test]
    fn expired_token_is_never_cached_and_ttl_zero_disables() {
        let cache_on = cache(Duration::from_secs(60), 10);
        cache_on.insert(token_key("old"), &user("u1", -1), cache_on.generation());
        assert!(cache_on.get(&token_key("old")).is_none());

        let cache_off = cache(Duration::ZERO, 10);
        cache_off.insert(token_key("t"), &user("u1", 3600), cache_off.generation());
        assert!(cache_off.get(&token_key("t")).is_none());
    }

    #[test]
    fn entry_lifetime_is_cut_by_token_expiry() {
        let cache = cache(Duration::from_secs(60), 10);
        let lifetime = cache.lifetime_for(user("u1", 2).expires_at_s).unwrap();
        assert!(lifetime <= Duration::from_secs(2));
    }

    #[test]
    fn size_stays_bounded() {
        let cache = cache(Duration::from_secs(60), 4);
        for i in 0..100 {
            cache.insert(token_key(&format!("t{i}")), &user("u", 3600), cache.generation());
            assert!(cache.len() <= 4);
        }
        cache.clear();
        assert_eq!(cache.len(), 0);
    }
}
