//! JWT: auth's token verification (`sb_auth::token::TokenKeys::verify_at`
//! after `sb_authn::strip_bearer`, as `AuthCore::verify_token` calls it),
//! with a current and a previous secret (a rotation) at a fixed time.
//!
//! Each input is used twice:
//! 1. As a token (the whole input, `Bearer ` and all). Whatever it is, it is
//!    accepted only if an HMAC-SHA256 computed here (not by jsonwebtoken)
//!    over `header.payload` with one of the two secrets is its signature,
//!    its header says `HS256`, and the claims returned are exactly its
//!    payload's, within the time rules.
//! 2. As a recipe (`arbitrary`): claims, the secret that signs them, and one
//!    mutation of the signed token. Unmutated, the verdict is exactly the
//!    one the claims call for (expired, not yet valid, no subject, or
//!    accepted with those claims). Mutated, it is rejected unless the
//!    signed bytes are unchanged; re-signed tokens (another key, another
//!    header, `alg: none`, HS384/HS512 with our secret) are accepted only
//!    when check 1 says they carry our signature.

#![no_main]

use std::sync::LazyLock;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use libfuzzer_sys::arbitrary::{self, Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use sha2::{Sha256, Sha384, Sha512};

use sb_auth::token::{Claims, TokenKeys};
use sb_authn::{AuthFailure, Role, strip_bearer};

/// The secret the fuzzed verifier signs with (the seed tokens in
/// `fuzz/corpus/jwt/` are signed with it).
const SECRET: &[u8] = b"fuzz-secret-with-enough-bytes-32!";
/// The secret being rotated out (`JWT_SECRET_PREVIOUS`).
const PREVIOUS: &[u8] = b"fuzz-previous-secret-being-rotated";
/// "Now" for every verification, so seeds and crashes replay the same way.
const NOW: i64 = 1_764_104_561;
/// How far `iat` / `nbf` may lie in the future.
const SKEW_S: i64 = 5;

static VERIFIER: LazyLock<TokenKeys> = LazyLock::new(|| keys(SECRET).with_previous(PREVIOUS));
static CURRENT: LazyLock<TokenKeys> = LazyLock::new(|| keys(SECRET));
static OLD: LazyLock<TokenKeys> = LazyLock::new(|| keys(PREVIOUS));

fn keys(secret: &[u8]) -> TokenKeys {
    TokenKeys::new(secret, Duration::from_secs(SKEW_S as u64))
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = check_verdict(strip_bearer(&text));

    if let Ok(case) = Case::arbitrary(&mut Unstructured::new(data)) {
        check_case(&case);
    }
});

/// Claims to sign, who signs them, and what happens to the token after.
#[derive(Debug, Arbitrary)]
struct Case {
    sub: String,
    email: String,
    admin: bool,
    token_version: i64,
    /// `iat` relative to [`NOW`], seconds.
    iat_offset: i16,
    /// `exp` relative to [`NOW`], seconds.
    exp_offset: i16,
    /// `nbf` relative to [`NOW`], seconds.
    nbf_offset: Option<i16>,
    /// Signed with the previous secret instead of the current one.
    previous: bool,
    mutation: Mutation,
}

#[derive(Debug, Arbitrary)]
enum Mutation {
    None,
    /// `Bearer <token>` / `bearer <token>`, as clients may send it.
    Bearer {
        lowercase: bool,
    },
    SetByte {
        at: u16,
        byte: u8,
    },
    Insert {
        at: u16,
        byte: u8,
    },
    Remove {
        at: u16,
    },
    Truncate {
        at: u16,
    },
    /// This token's header and payload with the signature of a token for another subject.
    SwapSignature {
        other_sub: String,
    },
    /// Another subject's payload between this token's header and signature.
    SwapPayload {
        other_sub: String,
    },
    /// Header and payload signed with `key`.
    ReSign {
        key: Vec<u8>,
    },
    /// A header `{"alg": alg, "typ": typ}`, the payload, signed with our secret under `signing`.
    Header {
        alg: String,
        typ: Option<String>,
        signing: Signing,
    },
    /// Any header text, the payload, signed with our secret under `signing`.
    RawHeader {
        header: String,
        signing: Signing,
    },
    /// `{"alg":"none"}` and an empty signature.
    AlgNone,
}

#[derive(Debug, Clone, Copy, Arbitrary)]
enum Signing {
    Hs256,
    Hs384,
    Hs512,
}

impl Case {
    fn claims(&self, sub: &str) -> Claims {
        Claims {
            sub: sub.to_owned(),
            email: self.email.clone(),
            role: if self.admin { Role::Admin } else { Role::User },
            token_version: self.token_version,
            iat: NOW + i64::from(self.iat_offset),
            exp: NOW + i64::from(self.exp_offset),
            nbf: self.nbf_offset.map(|offset| NOW + i64::from(offset)),
        }
    }

    fn sign(&self, claims: &Claims) -> String {
        let signer = if self.previous { &*OLD } else { &*CURRENT };
        signer.sign(claims).expect("claims sign")
    }
}

/// What `verify_at(NOW)` must answer for a token carrying our signature and `claims`.
fn expected_verdict(claims: &Claims) -> Result<Claims, AuthFailure> {
    let latest_start = NOW + SKEW_S;
    if NOW >= claims.exp {
        Err(AuthFailure::TokenExpired)
    } else if claims.iat > latest_start || claims.nbf.is_some_and(|nbf| nbf > latest_start) || claims.sub.is_empty() {
        Err(AuthFailure::TokenInvalid)
    } else {
        Ok(claims.clone())
    }
}

fn check_case(case: &Case) {
    let claims = case.claims(&case.sub);
    let token = case.sign(&claims);
    let expected = expected_verdict(&claims);
    assert_eq!(VERIFIER.verify_at(&token, NOW), expected, "the verdict on an untouched token");

    let (message, signature) = token.rsplit_once('.').expect("a signed token has three parts");
    let (header, payload) = message.split_once('.').expect("a signed token has three parts");

    let mutated = match &case.mutation {
        Mutation::None => token.clone(),
        Mutation::Bearer { lowercase } => {
            let presented = format!("{} {token}", if *lowercase { "bearer" } else { "Bearer" });
            assert_eq!(VERIFIER.verify_at(strip_bearer(&presented), NOW), expected, "{presented}");
            return;
        }
        Mutation::SetByte { at, byte } => edit_bytes(&token, |bytes| {
            let at = usize::from(*at) % bytes.len();
            bytes[at] = *byte;
        }),
        Mutation::Insert { at, byte } => edit_bytes(&token, |bytes| {
            let at = usize::from(*at) % (bytes.len() + 1);
            bytes.insert(at, *byte);
        }),
        Mutation::Remove { at } => edit_bytes(&token, |bytes| {
            let at = usize::from(*at) % bytes.len();
            bytes.remove(at);
        }),
        Mutation::Truncate { at } => edit_bytes(&token, |bytes| bytes.truncate(usize::from(*at) % bytes.len())),
        Mutation::SwapSignature { other_sub } => {
            let other = case.sign(&case.claims(other_sub));
            let (_, other_signature) = other.rsplit_once('.').expect("three parts");
            format!("{message}.{other_signature}")
        }
        Mutation::SwapPayload { other_sub } => {
            let other = case.sign(&case.claims(other_sub));
            let other_payload = other.split('.').nth(1).expect("three parts");
            format!("{header}.{other_payload}.{signature}")
        }
        Mutation::ReSign { key } => {
            format!("{message}.{}", URL_SAFE_NO_PAD.encode(hmac(Signing::Hs256, key, message.as_bytes())))
        }
        Mutation::Header { alg, typ, signing } => {
            let mut header = serde_json::json!({ "alg": alg });
            if let Some(typ) = typ {
                header["typ"] = Value::String(typ.clone());
            }
            signed_with_header(&header.to_string(), payload, *signing)
        }
        Mutation::RawHeader { header, signing } => signed_with_header(header, payload, *signing),
        Mutation::AlgNone => format!("{}.{payload}.", URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#)),
    };

    let verdict = check_verdict(&mutated);
    if mutated == token {
        assert_eq!(verdict, expected, "an unchanged token got another verdict");
    }
    let Ok(accepted) = verdict else { return };
    match &case.mutation {
        // Re-signed: `check_verdict` already proved it carries our signature over what it says.
        Mutation::ReSign { .. } | Mutation::Header { .. } | Mutation::RawHeader { .. } => {
            assert_eq!(accepted, claims, "a re-signed token kept its payload but changed its claims");
        }
        _ => {
            let (mutated_message, _) = mutated.rsplit_once('.').expect("an accepted token has three parts");
            assert_eq!(mutated_message, message, "accepted {mutated:?}: its signed bytes differ from {token:?}");
            assert_eq!(accepted, claims);
        }
    }
}

/// `token` with its bytes edited; an edit that breaks UTF-8 leaves replacement characters.
fn edit_bytes(token: &str, edit: impl FnOnce(&mut Vec<u8>)) -> String {
    let mut bytes = token.as_bytes().to_vec();
    edit(&mut bytes);
    String::from_utf8_lossy(&bytes).into_owned()
}

fn signed_with_header(header: &str, payload: &str, signing: Signing) -> String {
    let message = format!("{}.{payload}", URL_SAFE_NO_PAD.encode(header));
    let signature = URL_SAFE_NO_PAD.encode(hmac(signing, SECRET, message.as_bytes()));
    format!("{message}.{signature}")
}

fn hmac(signing: Signing, key: &[u8], message: &[u8]) -> Vec<u8> {
    fn run<M: Mac + hmac::digest::KeyInit>(key: &[u8], message: &[u8]) -> Vec<u8> {
        let mut mac = <M as Mac>::new_from_slice(key).expect("HMAC takes a key of any length");
        mac.update(message);
        mac.finalize().into_bytes().to_vec()
    }
    match signing {
        Signing::Hs256 => run::<Hmac<Sha256>>(key, message),
        Signing::Hs384 => run::<Hmac<Sha384>>(key, message),
        Signing::Hs512 => run::<Hmac<Sha512>>(key, message),
    }
}

/// Verifies `token` and checks the verdict against the token's own bytes:
/// a refusal is one of the token reasons; an acceptance is a token whose
/// signature we can reproduce with one of the secrets, whose header says
/// HS256, and whose payload holds exactly the claims returned, within the
/// time rules.
fn check_verdict(token: &str) -> Result<Claims, AuthFailure> {
    let verdict = VERIFIER.verify_at(token, NOW);
    let claims = match &verdict {
        Ok(claims) => claims,
        Err(AuthFailure::TokenMissing) => {
            assert!(token.is_empty(), "token missing for {token:?}");
            return verdict;
        }
        Err(AuthFailure::TokenInvalid | AuthFailure::TokenExpired) => {
            assert!(!token.is_empty(), "an empty token is missing, not invalid");
            return verdict;
        }
        Err(other) => panic!("verification without a database answered {other:?}"),
    };

    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "accepted a token without exactly three parts: {token:?}");
    let message = &token[..parts[0].len() + 1 + parts[1].len()];
    let signature = URL_SAFE_NO_PAD.decode(parts[2]).expect("an accepted signature is base64url");
    let ours = [SECRET, PREVIOUS].iter().any(|secret| hmac(Signing::Hs256, secret, message.as_bytes()) == signature);
    assert!(ours, "accepted a token not signed with our secrets: {token:?}");

    let header: Value = decode_part(parts[0]).expect("an accepted header is base64url JSON");
    assert_eq!(header.get("alg").and_then(Value::as_str), Some("HS256"), "accepted header {header}");

    let payload: Value = decode_part(parts[1]).expect("an accepted payload is base64url JSON");
    assert_eq!(payload.get("sub").and_then(Value::as_str), Some(claims.sub.as_str()), "{payload}");
    assert_eq!(payload.get("email").and_then(Value::as_str), Some(claims.email.as_str()), "{payload}");
    assert_eq!(payload.get("role").and_then(Value::as_str), Some(claims.role.as_str()), "{payload}");
    assert_eq!(payload.get("tokenVersion").and_then(Value::as_i64), Some(claims.token_version), "{payload}");
    assert_eq!(payload.get("iat").and_then(Value::as_i64), Some(claims.iat), "{payload}");
    assert_eq!(payload.get("exp").and_then(Value::as_i64), Some(claims.exp), "{payload}");
    assert_eq!(payload.get("nbf").filter(|nbf| !nbf.is_null()).and_then(Value::as_i64), claims.nbf, "{payload}");

    assert_eq!(expected_verdict(claims).as_ref(), Ok(claims), "accepted claims outside the time rules");
    verdict
}

fn decode_part(part: &str) -> Option<Value> {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).ok()?).ok()
}
