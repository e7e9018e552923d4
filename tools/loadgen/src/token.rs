//! Access tokens minted locally, exactly as auth (and the NestJS gateway)
//! sign them: HS256 over `{sub, email, role, tokenVersion, iat, exp}`.
//!
//! The bench stacks seed users `u1..uN` with email `u<n>@example.com`,
//! every 1000th an admin, token version 0 (`switchboardctl users seed --prefix u
//! --domain example.com --admin-every 1000`), so a token for `u<n>` made
//! here verifies there without a login per connection.

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;

use crate::Error;

/// Every n-th seeded user is an admin.
pub const ADMIN_EVERY: u64 = 1000;

/// The claims auth signs (`services/auth/src/token.rs`).
#[derive(Debug, Serialize)]
struct Claims<'a> {
    sub: &'a str,
    email: &'a str,
    role: &'a str,
    #[serde(rename = "tokenVersion")]
    token_version: i64,
    iat: i64,
    exp: i64,
}

/// What a token says beyond whose it is; [`TokenSpec::default`] is a
/// current token valid for an hour.
#[derive(Debug, Clone, Copy)]
pub struct TokenSpec {
    /// The `tokenVersion` claim (seeded users are at 0; 1 is a revoked token for them).
    pub token_version: i64,
    /// Seconds from now until `exp`; negative for an expired token.
    pub expires_in_s: i64,
}

impl Default for TokenSpec {
    fn default() -> Self {
        Self { token_version: 0, expires_in_s: 3600 }
    }
}

/// Signs tokens for the seeded users with one secret.
#[derive(Clone)]
pub struct TokenMinter {
    key: EncodingKey,
}

impl std::fmt::Debug for TokenMinter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenMinter(***)")
    }
}

impl TokenMinter {
    /// A minter signing with `secret`.
    pub fn new(secret: &[u8]) -> Self {
        Self { key: EncodingKey::from_secret(secret) }
    }

    /// A token for seeded user `u<n>` (`u<n>@example.com`, admin when `n` is a multiple of 1000).
    pub fn seeded_user(&self, n: u64, spec: TokenSpec) -> Result<String, Error> {
        let role = if n.is_multiple_of(ADMIN_EVERY) { "admin" } else { "user" };
        self.mint(&format!("u{n}"), role, spec)
    }

    /// A token for any user id, with email `<id>@example.com`.
    pub fn mint(&self, user_id: &str, role: &str, spec: TokenSpec) -> Result<String, Error> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| since.as_secs() as i64);
        let email = format!("{user_id}@example.com");
        let claims = Claims {
            sub: user_id,
            email: &email,
            role,
            token_version: spec.token_version,
            // An expired token is also issued in the past, as a real one would have been.
            iat: now.min(now + spec.expires_in_s - 10),
            exp: now + spec.expires_in_s,
        };
        Ok(jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.key)?)
    }
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{DecodingKey, Validation};
    use serde_json::Value;

    use super::*;

    fn decode(token: &str, secret: &[u8]) -> Value {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.validate_exp = false;
        validation.required_spec_claims.clear();
        jsonwebtoken::decode::<Value>(token, &DecodingKey::from_secret(secret), &validation).expect("verifies").claims
    }

    #[test]
    fn seeded_user_tokens_carry_auths_claims() {
        let minter = TokenMinter::new(b"dev-secret");
        let claims = decode(&minter.seeded_user(42, TokenSpec::default()).expect("mint"), b"dev-secret");
        assert_eq!(claims["sub"], "u42");
        assert_eq!(claims["email"], "u42@example.com");
        assert_eq!(claims["role"], "user");
        assert_eq!(claims["tokenVersion"], 0);
        let (iat, exp) = (claims["iat"].as_i64().expect("iat"), claims["exp"].as_i64().expect("exp"));
        assert_eq!(exp - iat, 3600);
    }

    #[test]
    fn every_thousandth_user_is_an_admin_and_specs_apply() {
        let minter = TokenMinter::new(b"s");
        let admin = decode(&minter.seeded_user(2000, TokenSpec::default()).expect("mint"), b"s");
        assert_eq!(admin["role"], "admin");
        let expired =
            decode(&minter.seeded_user(1, TokenSpec { token_version: 1, expires_in_s: -120 }).expect("mint"), b"s");
        assert_eq!(expired["tokenVersion"], 1);
        let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_secs() as i64;
        assert!(expired["exp"].as_i64().expect("exp") < now, "already expired: {expired}");
    }

    #[test]
    fn other_secrets_do_not_verify() {
        let token = TokenMinter::new(b"one").seeded_user(1, TokenSpec::default()).expect("mint");
        let validation = Validation::new(Algorithm::HS256);
        assert!(jsonwebtoken::decode::<Value>(&token, &DecodingKey::from_secret(b"two"), &validation).is_err());
    }
}
