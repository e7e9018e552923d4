//! Argon2id password hashing, off the async threads.
//!
//! Hashing costs tens of milliseconds of CPU by design, so it runs on the
//! blocking pool. A login for an unknown email (or a user without a
//! password) still checks the password against a fixed dummy hash, so the
//! answer takes as long as for a real user and does not reveal which emails exist.

use std::sync::OnceLock;

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};

use crate::error::AuthError;

fn hash_blocking(password: &str) -> Result<String, AuthError> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|hash| hash.to_string())
        .map_err(|error| AuthError::PasswordHash(error.to_string()))
}

fn dummy_hash() -> Option<&'static str> {
    static DUMMY: OnceLock<Option<String>> = OnceLock::new();
    DUMMY.get_or_init(|| hash_blocking("switchboard dummy password").ok()).as_deref()
}

/// Hashes `password` into an argon2id PHC string with a random salt.
pub async fn hash_password(password: String) -> Result<String, AuthError> {
    tokio::task::spawn_blocking(move || hash_blocking(&password))
        .await
        .map_err(|error| AuthError::PasswordHash(format!("hashing task failed: {error}")))?
}

/// Whether `password` matches `stored` (an argon2 PHC string). `None` (no
/// such user, or no password) is checked against a dummy hash and is false.
pub async fn verify_password(password: String, stored: Option<String>) -> Result<bool, AuthError> {
    tokio::task::spawn_blocking(move || {
        let (hash, real) = match stored.as_deref() {
            Some(hash) => (hash, true),
            None => match dummy_hash() {
                Some(hash) => (hash, false),
                None => return Ok(false),
            },
        };
        let parsed = PasswordHash::new(hash)
            .map_err(|error| AuthError::PasswordHash(format!("stored hash does not parse: {error}")))?;
        let matches = Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok();
        Ok(real && matches)
    })
    .await
    .map_err(|error| AuthError::PasswordHash(format!("verify task failed: {error}")))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hash_then_verify() {
        let hash = hash_password("correct horse".to_owned()).await.unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password("correct horse".to_owned(), Some(hash.clone())).await.unwrap());
        assert!(!verify_password("wrong".to_owned(), Some(hash)).await.unwrap());
        assert!(!verify_password("anything".to_owned(), None).await.unwrap());
    }
}
