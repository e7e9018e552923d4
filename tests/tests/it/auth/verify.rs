//! VerifyToken: the accepted token and every rejection of issue 2.

use sb_proto::auth::v1 as pb;
use sb_tests::DbKind;
use serde_json::json;

use super::{Env, assert_rejected, both, claims_of, now_s, sign_hs256, unsigned};

/// A throw-away RSA key (PKCS#1 DER, base64), only for minting RS256 tokens that auth must refuse.
const TEST_ONLY_RSA_KEY_DER_B64: &str = concat!(
    "MIIEpAIBAAKCAQEAvkPjqfzPyy3Zu4SdFSDD6HavpeIsvquSyNslBl/kFIbjVjm5+c1fTbK0xkd6",
    "2Jry2RO2V3s74jbJo6J73qQ/oAPUntuADxs5CpO0VivjLFN1GC0Y4JCbUllLPwRC/NKJc/VmjOgF",
    "iUSMLuCxM7bctLxxcLOtoFI2BFabpyVLCHGa2QG3NcqOlOqoyaztbA2asXDo8m+BS2acPeAL1Nc+",
    "ZDydkti2U0ZbwBYMga/hvk4mLbFndnfhdN/I+DprjrZovsWsvmA5NQgRisjaJ9a0u8RPylYE9tlc",
    "87vjF5REMpN8l0kA2ZSyMgX9IN0uvGXnGOM1IfokFXCRuv6ytDc+TwIDAQABAoIBAAP0oF6P2XgV",
    "Z3HtE2D1ke0azpMJzTlXktEnMTFdO/4rQb2wrIujd+hDH1wB721iZ0sZDFDsSHXvAqkqvx2FV6dJ",
    "fRmiYZquy7RLFtQ1zF7HC2epxFsi1n/TSGuyeHwOGnp1LyEdz8OnT6zH0hdLpXICeu9HZQQwwVu8",
    "uzax4Un3HX2Jh9bT5fng9Gxlfdb2PABgWdZANogHKwAg3AEshjpM2mSwX5dTa6ooKy1UFhoqxdv6",
    "qxSVqJaC46p9ReXwxV1l14iwkeT2mQ0yZ7/H/fTB2FyUG/qpPJPiEqFNdnRfycagHP9BktwrfkeC",
    "569+GM+buLl9/xdviXi6CwlQ4zkCgYEA4l0M4gj3RXAxHbyNqpK/LFblcA23xS0wI3CtDX53E4qh",
    "6tLmkvKw7ChpEAojUy9v1cprltJjKT0qQ885chzPY3Di2pD07W47MMuWWr0Crj/Uj0GWieu5cWXX",
    "/CRZumDIeojTySpgR/iATf5N5l6jYCO5Z74NwRVtTjCcXWAp1xcCgYEA1yzx2YXvOWcQGoh84T+x",
    "RJ8O9IGAoUxlcGKBCWqpjo7/LtfaCSETItMsmDpvcmvBp+WpwuChaq5dpfhCAWPfcp/cchDXIQZ/",
    "FrW3iK7MjyCQwFxRRbnSXuVrLi8N3b408yKtR5XrlfUQWz3E42UI1b0qfcdem6lfEMK/kjsr1YkC",
    "gYEAs6+3hUomtwkrA/bj4c4hURodgQhyo2OOfeN4i2ijL3DxvQzzGRzrUlt1otTZW7QhK21GYG/b",
    "ZSX3geJiMHIsMjyu517//eVtuPsy/A5jrVxf5+PhktP63chBXhag33DqU1KAA4TO7vKVLtQ6lC71",
    "s2BIUdCs7GOM4+90gC7Qp7sCgYEAhg8jcvGmFK5ocw98Nl4XVHiAuccBW/0b6gQE/tfsYbwnsoia",
    "+DsaEAVfcExf6PrHwZItzRNknfGauO/ON82AhoqgrpRdY98HSR/YBBlbqwSQCri5jeZy8dqfhzub",
    "uP5rQNvm94WpLFltYls+kqn88iWUFp8jC3pflzKuZi3lZnkCgYBTVWxRkfBpUVgyqpZt/DGJ8Boh",
    "8m+QbHEOGnZY+Qmav+3M//9DU7GsZ4pevItPI+U8/TX/oz/FJsB7No9KGRk0n4nvZOlgl01+r5ge",
    "++cNCdEgj5RnEJwxdUP0Fn+q+ZsiQ8YfzKn7QXr03Xez6tB7l/Vhh7HQa2DeLU/M+G+qgw==",
);

async fn user_with_token(env: &Env) -> (pb::User, String) {
    env.auth.create_user("ada@example.test", pb::Role::User).await.expect("create user")
}

async fn valid_token_verifies(kind: DbKind) {
    let env = Env::start(kind).await;
    let (user, token) = user_with_token(&env).await;
    let response = env.verify(&token).await.expect("valid token");
    let verified = response.user.expect("user");
    assert_eq!((verified.id.as_str(), verified.email.as_str()), (user.id.as_str(), "ada@example.test"));
    assert_eq!(verified.role, pb::Role::User as i32);
    assert!(response.expires_at_s > now_s());
    assert!(response.issued_at_s <= now_s());
    // A leading "Bearer " is accepted.
    env.verify(&format!("Bearer {token}")).await.expect("bearer prefix accepted");
    // A token signed by the test itself with auth's secret and the right claims is accepted too
    // (tokens minted by the NestJS gateway keep working).
    let foreign = sign_hs256(&json!({"alg": "HS256", "typ": "JWT"}), &claims_of(&user), &env.auth.secret);
    env.verify(&foreign).await.expect("externally minted token with the same claims");
}
both!(valid_token_verifies);

async fn alg_none_is_invalid(kind: DbKind) {
    let env = Env::start(kind).await;
    let (user, _) = user_with_token(&env).await;
    for header in [json!({"alg": "none", "typ": "JWT"}), json!({"alg": "None"}), json!({"alg": "NONE"})] {
        assert_rejected(env.verify(&unsigned(&header, &claims_of(&user), "")).await, "token invalid");
    }
}
both!(alg_none_is_invalid);

async fn wrong_secret_is_invalid(kind: DbKind) {
    let env = Env::start(kind).await;
    let (user, _) = user_with_token(&env).await;
    let token = sign_hs256(&json!({"alg": "HS256"}), &claims_of(&user), "not-the-secret");
    assert_rejected(env.verify(&token).await, "token invalid");
}
both!(wrong_secret_is_invalid);

async fn rs256_and_alg_confusion_are_invalid(kind: DbKind) {
    let env = Env::start(kind).await;
    let (user, _) = user_with_token(&env).await;
    // A genuine RS256 token from someone else's key.
    use base64::Engine as _;
    let der = base64::engine::general_purpose::STANDARD.decode(TEST_ONLY_RSA_KEY_DER_B64).expect("test key is base64");
    let rsa = jsonwebtoken::EncodingKey::from_rsa_der(&der);
    let claims = claims_of(&user);
    let rs256 = jsonwebtoken::encode(&jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256), &claims, &rsa)
        .expect("sign rs256");
    assert_rejected(env.verify(&rs256).await, "token invalid");
    // The header says RS256 but the signature is an HMAC with our secret: alg confusion.
    let confused = sign_hs256(&json!({"alg": "RS256", "typ": "JWT"}), &claims, &env.auth.secret);
    assert_rejected(env.verify(&confused).await, "token invalid");
    // Other HMAC sizes are not HS256 either.
    let hs512 = sign_hs256(&json!({"alg": "HS512"}), &claims, &env.auth.secret);
    assert_rejected(env.verify(&hs512).await, "token invalid");
}
both!(rs256_and_alg_confusion_are_invalid);

async fn tampered_payload_is_invalid(kind: DbKind) {
    let env = Env::start(kind).await;
    let (user, token) = user_with_token(&env).await;
    let signature = token.rsplit('.').next().expect("three parts");
    let mut claims = claims_of(&user);
    claims["role"] = json!("admin");
    assert_rejected(
        env.verify(&unsigned(&json!({"alg": "HS256", "typ": "JWT"}), &claims, signature)).await,
        "token invalid",
    );
    // Flipping one character of the real payload breaks it too.
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let flipped: String =
        parts[1].chars().enumerate().map(|(i, c)| if i == 5 { if c == 'A' { 'B' } else { 'A' } } else { c }).collect();
    parts[1] = flipped;
    assert_rejected(env.verify(&parts.join(".")).await, "token invalid");
}
both!(tampered_payload_is_invalid);

async fn missing_or_non_integer_token_version_is_invalid(kind: DbKind) {
    let env = Env::start(kind).await;
    let (user, _) = user_with_token(&env).await;
    let header = json!({"alg": "HS256"});
    let mut missing = claims_of(&user);
    missing.as_object_mut().expect("object").remove("tokenVersion");
    assert_rejected(env.verify(&sign_hs256(&header, &missing, &env.auth.secret)).await, "token invalid");
    for bad in [json!("0"), json!(0.5), json!(null), json!([0]), json!(true)] {
        let mut claims = claims_of(&user);
        claims["tokenVersion"] = bad;
        assert_rejected(env.verify(&sign_hs256(&header, &claims, &env.auth.secret)).await, "token invalid");
    }
}
both!(missing_or_non_integer_token_version_is_invalid);

async fn stale_token_version_is_revoked(kind: DbKind) {
    let env = Env::start(kind).await;
    let (user, token) = user_with_token(&env).await;
    env.verify(&token).await.expect("valid before revocation");
    env.grpc()
        .await
        .revoke_tokens(env.auth.as_admin(pb::RevokeTokensRequest { user_id: user.id.clone() }))
        .await
        .expect("revoke");
    assert_rejected(env.verify(&token).await, "token revoked");
    // A token claiming a version the user never had is refused as well.
    let mut claims = claims_of(&user);
    claims["tokenVersion"] = json!(7);
    assert_rejected(
        env.verify(&sign_hs256(&json!({"alg": "HS256"}), &claims, &env.auth.secret)).await,
        "token revoked",
    );
}
both!(stale_token_version_is_revoked);

async fn expired_token_is_expired(kind: DbKind) {
    let env = Env::start(kind).await;
    let (user, _) = user_with_token(&env).await;
    let now = now_s();
    for (iat, exp) in [(now - 3600, now - 1), (now - 120, now - 30)] {
        let mut claims = claims_of(&user);
        claims["iat"] = json!(iat);
        claims["exp"] = json!(exp);
        assert_rejected(
            env.verify(&sign_hs256(&json!({"alg": "HS256"}), &claims, &env.auth.secret)).await,
            "token expired",
        );
    }
}
both!(expired_token_is_expired);

async fn not_yet_valid_token_is_invalid(kind: DbKind) {
    let env = Env::start(kind).await;
    let (user, _) = user_with_token(&env).await;
    let header = json!({"alg": "HS256"});
    let mut future_iat = claims_of(&user);
    future_iat["iat"] = json!(now_s() + 600);
    future_iat["exp"] = json!(now_s() + 4200);
    assert_rejected(env.verify(&sign_hs256(&header, &future_iat, &env.auth.secret)).await, "token invalid");
    let mut future_nbf = claims_of(&user);
    future_nbf["nbf"] = json!(now_s() + 600);
    assert_rejected(env.verify(&sign_hs256(&header, &future_nbf, &env.auth.secret)).await, "token invalid");
}
both!(not_yet_valid_token_is_invalid);

async fn disabled_user_is_refused(kind: DbKind) {
    let env = Env::start(kind).await;
    let (user, token) = user_with_token(&env).await;
    env.grpc()
        .await
        .disable_user(env.auth.as_admin(pb::DisableUserRequest { id: user.id.clone(), disabled: true }))
        .await
        .expect("disable");
    assert_rejected(env.verify(&token).await, "user disabled");
    // Even a token carrying the new version is refused while disabled.
    let current = env
        .grpc()
        .await
        .get_user(env.auth.as_admin(pb::GetUserRequest { id: user.id.clone() }))
        .await
        .expect("get")
        .into_inner();
    let fresh = sign_hs256(&json!({"alg": "HS256"}), &claims_of(&current), &env.auth.secret);
    assert_rejected(env.verify(&fresh).await, "user disabled");
}
both!(disabled_user_is_refused);

async fn deleted_user_is_unknown(kind: DbKind) {
    let env = Env::start(kind).await;
    let (user, token) = user_with_token(&env).await;
    env.verify(&token).await.expect("valid before deletion");
    env.execute_sql("DELETE FROM users WHERE id = $1", &user.id).await;
    assert_rejected(env.verify(&token).await, "user unknown");
}
both!(deleted_user_is_unknown);

async fn missing_token_is_missing(kind: DbKind) {
    let env = Env::start(kind).await;
    for token in ["", "   ", "Bearer", "Bearer "] {
        assert_rejected(env.verify(token).await, "token missing");
    }
}
both!(missing_token_is_missing);

async fn garbage_is_invalid(kind: DbKind) {
    let env = Env::start(kind).await;
    let long = "x".repeat(64 * 1024);
    for token in [
        "garbage",
        "a.b.c",
        "a.b",
        "...",
        "Bearer not-a-jwt",
        "eyJhbGciOiJIUzI1NiJ9.e30.",
        "\u{1F600}.\u{0}.x",
        long.as_str(),
    ] {
        assert_rejected(env.verify(token).await, "token invalid");
    }
    // A signed token whose claims are the wrong shape.
    let header = json!({"alg": "HS256"});
    for payload in [
        json!({}),
        json!([1, 2]),
        json!("text"),
        json!({"sub": 5, "email": "a@b.c", "role": "user", "tokenVersion": 0, "iat": 1, "exp": 9999999999i64}),
        json!({"sub": "u", "email": "a@b.c", "role": "root", "tokenVersion": 0, "iat": 1, "exp": 9999999999i64}),
    ] {
        assert_rejected(env.verify(&sign_hs256(&header, &payload, &env.auth.secret)).await, "token invalid");
    }
}
both!(garbage_is_invalid);

/// Key rotation: restarted with a new `JWT_SECRET` and the old one as
/// `JWT_SECRET_PREVIOUS`, auth keeps accepting tokens of the old secret and
/// signs new ones with the new secret; once the previous secret is removed,
/// the old tokens are `token invalid`.
async fn rotated_secret_keeps_old_tokens_until_it_is_removed(kind: DbKind) {
    use sb_tests::auth::{auth_config, spawn_auth_with};

    let nats = sb_tests::NatsServer::start().await.expect("start nats-server");
    let db = sb_tests::TestDatabase::create(kind).await.expect("create test database");
    let old_secret = "old-secret-0123456789abcdef0123456789";
    let new_secret = "new-secret-0123456789abcdef0123456789";
    let start = |secret: &'static str, previous: Option<&'static str>| {
        let mut config = auth_config(&db.url, nats.url(), Some(secret));
        config.jwt_secret_previous = previous.map(sb_config::Secret::from);
        spawn_auth_with(config)
    };

    let auth = start(old_secret, None).await.expect("auth with the old secret");
    let (user, old_token) = auth.create_user("rot@example.test", pb::Role::User).await.expect("create user");
    auth.stop().await.expect("stop auth");

    let auth = start(new_secret, Some(old_secret)).await.expect("auth during the rotation");
    let verified = verify(&auth, old_token.clone()).await.expect("old token still verifies");
    assert_eq!(verified.user.expect("user").id, user.id);
    let new_token = auth
        .grpc()
        .await
        .expect("connect")
        .login(pb::LoginRequest { email: "rot@example.test".into(), password: "user-password".into() })
        .await
        .expect("login")
        .into_inner()
        .token;
    let foreign = sign_hs256(&json!({"alg": "HS256"}), &claims_of(&user), new_secret);
    verify(&auth, foreign).await.expect("the new secret signs");
    assert_rejected(
        verify(&auth, sign_hs256(&json!({"alg": "HS256"}), &claims_of(&user), "a-third-secret")).await,
        "token invalid",
    );
    auth.stop().await.expect("stop auth");

    let auth = start(new_secret, None).await.expect("auth after the rotation");
    assert_rejected(verify(&auth, old_token).await, "token invalid");
    verify(&auth, new_token).await.expect("tokens of the new secret verify");
}
both!(rotated_secret_keeps_old_tokens_until_it_is_removed);

async fn verify(auth: &sb_tests::auth::AuthHandle, token: String) -> Result<pb::VerifyTokenResponse, tonic::Status> {
    let mut grpc = auth.grpc().await.expect("connect to auth");
    grpc.verify_token(pb::VerifyTokenRequest { token }).await.map(tonic::Response::into_inner)
}
