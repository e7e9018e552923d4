//! Access tokens: HS256 JWTs with the claims of DESIGN.md §2.
//!
//! [`TokenKeys::verify`] is the first half of `VerifyToken` and runs before
//! anything touches the database: the header must say HS256 (so `alg: none`
//! and RS256/HS256 confusion fail), the signature must match `JWT_SECRET`,
//! every claim must be present with the right type (`tokenVersion` an
//! integer), `exp` must lie in the future with no leeway, and `iat` / `nbf`
//! may lie at most the configured clock skew in the future. The second half
//! (user exists, enabled, same `tokenVersion`) is in [`crate::service`].

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use sb_authn::AuthFailure;
use serde::{Deserialize, Serialize};

use crate::store::Role;

/// The claims of a Switchboard access token, as the NestJS gateway wrote
/// them (camelCase `tokenVersion`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user id.
    pub sub: String,
    /// The user's email when the token was issued.
    pub email: String,
    /// The user's role when the token was issued (`user` | `admin`).
    pub role: Role,
    /// The user's token version when the token was issued; the token is
    /// revoked once the stored version moves past it.
    #[serde(rename = "tokenVersion")]
    pub token_version: i64,
    /// Issued at, seconds since the Unix epoch.
    pub iat: i64,
    /// Expires at, seconds since the Unix epoch.
    pub exp: i64,
    /// Not before, seconds since the Unix epoch (optional; we never set it,
    /// but honour it when present).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
}

/// Signs tokens with the current HS256 secret and verifies them with it or,
/// during a rotation, with the previous one.
#[derive(Clone)]
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    /// The secret before the current one (`JWT_SECRET_PREVIOUS`): tokens it
    /// signed still verify until they expire.
    previous: Option<DecodingKey>,
    validation: Validation,
    clock_skew_s: i64,
}

impl std::fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenKeys").field("clock_skew_s", &self.clock_skew_s).finish_non_exhaustive()
    }
}

/// Seconds since the Unix epoch, now.
pub fn now_s() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_secs() as i64)
}

impl TokenKeys {
    /// Keys for `secret`; `iat`/`nbf` may be up to `clock_skew` ahead of now.
    pub fn new(secret: &[u8], clock_skew: Duration) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        // Time checks are ours (exact exp, skew only for iat/nbf); the library
        // checks the algorithm and the signature.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.leeway = 0;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            previous: None,
            validation,
            clock_skew_s: i64::try_from(clock_skew.as_secs()).unwrap_or(i64::MAX),
        }
    }

    /// Also accepts tokens signed with `previous` (a secret being rotated out).
    #[must_use]
    pub fn with_previous(mut self, previous: &[u8]) -> Self {
        self.previous = Some(DecodingKey::from_secret(previous));
        self
    }

    /// Signs `claims` as an HS256 JWT.
    pub fn sign(&self, claims: &Claims) -> Result<String, jsonwebtoken::errors::Error> {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
    }

    /// Checks everything about `token` that needs no database, at time `now_s`.
    pub fn verify_at(&self, token: &str, now_s: i64) -> Result<Claims, AuthFailure> {
        if token.is_empty() {
            return Err(AuthFailure::TokenMissing);
        }
        let decoded = match jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation) {
            Err(error) if *error.kind() == ErrorKind::InvalidSignature => match &self.previous {
                Some(previous) => jsonwebtoken::decode::<Claims>(token, previous, &self.validation),
                None => Err(error),
            },
            other => other,
        };
        let claims = decoded
            .map_err(|error| match error.kind() {
                ErrorKind::ExpiredSignature => AuthFailure::TokenExpired,
                _ => AuthFailure::TokenInvalid,
            })?
            .claims;
        // RFC 7519: the token must not be accepted on or after exp.
        if now_s >= claims.exp {
            return Err(AuthFailure::TokenExpired);
        }
        let latest_start = now_s.saturating_add(self.clock_skew_s);
        if claims.iat > latest_start || claims.nbf.is_some_and(|nbf| nbf > latest_start) {
            return Err(AuthFailure::TokenInvalid);
        }
        if claims.sub.is_empty() {
            return Err(AuthFailure::TokenInvalid);
        }
        Ok(claims)
    }

    /// [`Self::verify_at`] the current time.
    pub fn verify(&self, token: &str) -> Result<Claims, AuthFailure> {
        self.verify_at(token, now_s())
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use proptest::prelude::*;

    use super::*;

    const SECRET: &[u8] = b"test-secret-with-enough-bytes-32!";

    fn keys() -> TokenKeys {
        TokenKeys::new(SECRET, Duration::from_secs(5))
    }

    fn claims(now: i64) -> Claims {
        Claims {
            sub: "u1".to_owned(),
            email: "a@b.test".to_owned(),
            role: Role::User,
            token_version: 0,
            iat: now,
            exp: now + 60,
            nbf: None,
        }
    }

    /// Signs an arbitrary header and payload with HMAC-SHA256 over `secret`.
    fn raw_token(header: &serde_json::Value, payload: &serde_json::Value, secret: &[u8]) -> String {
        let signing_input =
            format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(payload.to_string()));
        let key = EncodingKey::from_secret(secret);
        let signature = jsonwebtoken::crypto::sign(signing_input.as_bytes(), &key, Algorithm::HS256).unwrap();
        format!("{signing_input}.{signature}")
    }

    #[test]
    fn round_trip() {
        let now = now_s();
        let token = keys().sign(&claims(now)).unwrap();
        assert_eq!(keys().verify_at(&token, now), Ok(claims(now)));
    }

    #[test]
    fn exp_has_no_leeway() {
        let now = now_s();
        let token = keys().sign(&claims(now)).unwrap();
        assert!(keys().verify_at(&token, now + 59).is_ok());
        assert_eq!(keys().verify_at(&token, now + 60), Err(AuthFailure::TokenExpired));
    }

    #[test]
    fn future_iat_beyond_skew_is_invalid() {
        let now = now_s();
        let token = keys().sign(&claims(now + 5)).unwrap();
        assert!(keys().verify_at(&token, now).is_ok());
        let token = keys().sign(&claims(now + 6)).unwrap();
        assert_eq!(keys().verify_at(&token, now), Err(AuthFailure::TokenInvalid));
        let token = keys().sign(&Claims { nbf: Some(now + 30), ..claims(now) }).unwrap();
        assert_eq!(keys().verify_at(&token, now), Err(AuthFailure::TokenInvalid));
    }

    #[test]
    fn wrong_alg_and_wrong_secret_are_invalid() {
        let now = now_s();
        let payload = serde_json::to_value(claims(now)).unwrap();
        let hs384 = raw_token(&serde_json::json!({"alg": "HS384", "typ": "JWT"}), &payload, SECRET);
        assert_eq!(keys().verify_at(&hs384, now), Err(AuthFailure::TokenInvalid));
        let wrong = raw_token(&serde_json::json!({"alg": "HS256"}), &payload, b"another-secret");
        assert_eq!(keys().verify_at(&wrong, now), Err(AuthFailure::TokenInvalid));
        let right = raw_token(&serde_json::json!({"alg": "HS256"}), &payload, SECRET);
        assert!(keys().verify_at(&right, now).is_ok());
    }

    #[test]
    fn rotation_accepts_the_previous_secret_and_signs_with_the_new_one() {
        let now = now_s();
        let old_token = keys().sign(&claims(now)).unwrap();
        let rotated =
            TokenKeys::new(b"the-new-secret-with-enough-bytes!", Duration::from_secs(5)).with_previous(SECRET);
        assert_eq!(rotated.verify_at(&old_token, now), Ok(claims(now)), "tokens of the previous secret still verify");
        let new_token = rotated.sign(&claims(now)).unwrap();
        assert_eq!(keys().verify_at(&new_token, now), Err(AuthFailure::TokenInvalid), "signed with the new secret");
        assert_eq!(rotated.verify_at(&new_token, now), Ok(claims(now)));
        assert_eq!(
            rotated.verify_at(&old_token, now + 60),
            Err(AuthFailure::TokenExpired),
            "and only until they expire"
        );
        let payload = serde_json::to_value(claims(now)).unwrap();
        let third = raw_token(&serde_json::json!({"alg": "HS256"}), &payload, b"a-third-secret");
        assert_eq!(rotated.verify_at(&third, now), Err(AuthFailure::TokenInvalid));
        let other = keys().sign(&Claims { sub: "u2".to_owned(), ..claims(now) }).unwrap();
        let (other_body, _) = other.rsplit_once('.').unwrap();
        let (_, old_signature) = old_token.rsplit_once('.').unwrap();
        let tampered = format!("{other_body}.{old_signature}");
        assert_eq!(rotated.verify_at(&tampered, now), Err(AuthFailure::TokenInvalid));
    }

    #[test]
    fn token_version_must_be_an_integer() {
        let now = now_s();
        let header = serde_json::json!({"alg": "HS256"});
        for version in [serde_json::json!("1"), serde_json::json!(1.5), serde_json::Value::Null] {
            let mut payload = serde_json::to_value(claims(now)).unwrap();
            payload["tokenVersion"] = version;
            let token = raw_token(&header, &payload, SECRET);
            assert_eq!(keys().verify_at(&token, now), Err(AuthFailure::TokenInvalid));
        }
    }

    proptest! {
        /// Any claim set with integer fields round-trips; any payload with a
        /// required claim removed is refused as invalid, never accepted.
        #[test]
        fn claims_parse_exactly(
            sub in "[a-zA-Z0-9-]{1,40}",
            version in any::<i64>(),
            admin in any::<bool>(),
            lifetime in 1i64..100_000,
            drop_claim in prop::option::of(prop::sample::select(vec!["sub", "email", "role", "tokenVersion", "iat", "exp"])),
        ) {
            let now = now_s();
            let claims = Claims {
                sub,
                email: "p@q.test".to_owned(),
                role: if admin { Role::Admin } else { Role::User },
                token_version: version,
                iat: now,
                exp: now + lifetime,
                nbf: None,
            };
            let mut payload = serde_json::to_value(&claims).unwrap();
            if let Some(name) = drop_claim {
                payload.as_object_mut().unwrap().remove(name);
            }
            let token = raw_token(&serde_json::json!({"alg": "HS256", "typ": "JWT"}), &payload, SECRET);
            let verified = keys().verify_at(&token, now);
            match drop_claim {
                None => prop_assert_eq!(verified, Ok(claims)),
                Some(_) => prop_assert_eq!(verified, Err(AuthFailure::TokenInvalid)),
            }
        }

        /// Arbitrary strings never panic and never verify.
        #[test]
        fn garbage_never_verifies(token in "\\PC{0,200}") {
            prop_assert!(keys().verify_at(&token, now_s()).is_err());
        }
    }
}
