//! Connecting: the three token sources, both transports, every refusal
//! reason, and revocation of live sockets.

use sb_tests::DbKind;
use sb_tests::edge::{MintedClaims, TestClient, TokenVia, Transport, mint_token};
use sb_tests::stack::TestStack;
use serde_json::json;

async fn pong_user(client: &TestClient) -> String {
    let pong = client.ack("ping", json!({})).await.expect("ping ack");
    pong["user"]["id"].as_str().expect("pong names the user").to_owned()
}

#[tokio::test]
async fn every_token_source_on_both_transports() {
    let stack = TestStack::start(DbKind::Sqlite).await.expect("start stack");
    let alice = stack.user("alice").await.expect("alice");
    for transport in [Transport::Websocket, Transport::Polling] {
        for via in [TokenVia::AuthObject, TokenVia::Query, TokenVia::Header] {
            let client = TestClient::connect(stack.url(), Some(&alice.token), via, transport)
                .await
                .unwrap_or_else(|failure| panic!("{via:?} over {transport:?}: {failure:?}"));
            assert_eq!(pong_user(&client).await, alice.id, "{via:?} over {transport:?}");
            client.disconnect().await;
        }
    }
    // A leading "Bearer " is accepted in the auth object and the query too.
    let bearer = format!("Bearer {}", alice.token);
    for via in [TokenVia::AuthObject, TokenVia::Query] {
        let client =
            TestClient::connect(stack.url(), Some(&bearer), via, Transport::Websocket).await.expect("bearer token");
        assert_eq!(pong_user(&client).await, alice.id);
        client.disconnect().await;
    }
    stack.stop().await.expect("stop stack");
}

#[tokio::test]
async fn every_refusal_reason_is_a_connect_error() {
    let stack = TestStack::start(DbKind::Sqlite).await.expect("start stack");
    let bob = stack.user("bob").await.expect("bob");
    let secret = stack.auth.secret.clone();
    let claims = |user_id: &'static str, version: i64, expires_in_s: i64| MintedClaims {
        user_id,
        email: "x@example.com",
        role: "user",
        token_version: version,
        expires_in_s,
    };
    let bob_id: &'static str = Box::leak(bob.id.clone().into_boxed_str());
    let cases = [
        (None, "token missing"),
        (Some("not.a.jwt".to_owned()), "token invalid"),
        (Some(mint_token("some-other-secret", &claims(bob_id, 0, 3600))), "token invalid"),
        (Some(mint_token(&secret, &claims(bob_id, 0, -3600))), "token expired"),
        (Some(mint_token(&secret, &claims("no-such-user", 0, 3600))), "user unknown"),
    ];
    for (token, reason) in cases {
        for via in [TokenVia::AuthObject, TokenVia::Query, TokenVia::Header] {
            if token.is_none() && via != TokenVia::AuthObject {
                continue;
            }
            let refused = TestClient::refusal(stack.url(), token.as_deref(), via, Transport::Websocket).await;
            assert_eq!(refused.expect("refused"), reason, "{via:?}");
        }
    }
    // Revoked: the version moves past the token's.
    stack.revoke(&bob.id).await.expect("revoke");
    let refused = TestClient::refusal(stack.url(), Some(&bob.token), TokenVia::AuthObject, Transport::Polling).await;
    assert_eq!(refused.expect("refused"), "token revoked");
    // Disabled.
    let carol = stack.user("carol").await.expect("carol");
    stack.disable(&carol.id).await.expect("disable");
    let refused =
        TestClient::refusal(stack.url(), Some(&carol.token), TokenVia::AuthObject, Transport::Websocket).await;
    assert_eq!(refused.expect("refused"), "user disabled");

    // Nothing was left behind by the refusals: no socket counted.
    let (_, metrics) =
        sb_tests::http::http_request(stack.edges[0].addr, "GET", "/metrics", None).await.expect("metrics");
    assert!(metrics.lines().any(|line| line == "switchboard_edge_sockets 0"), "{metrics}");
    stack.stop().await.expect("stop stack");
}

#[tokio::test]
async fn revocation_and_disabling_disconnect_live_sockets() {
    let stack = TestStack::start(DbKind::Sqlite).await.expect("start stack");
    let dave = stack.user("dave").await.expect("dave");
    let erin = stack.user("erin").await.expect("erin");
    let dave_ws = TestClient::connect_ws(stack.url(), &dave.token).await.expect("dave ws");
    let dave_polling = TestClient::connect(stack.url(), Some(&dave.token), TokenVia::Query, Transport::Polling)
        .await
        .expect("dave polling");
    let erin_ws = TestClient::connect_ws(stack.url(), &erin.token).await.expect("erin ws");

    stack.revoke(&dave.id).await.expect("revoke dave");
    for client in [&dave_ws, &dave_polling] {
        let exception = client.event("exception").await.expect("exception before the disconnect");
        assert_eq!(exception["message"], "token revoked");
        client.closed().await.expect("disconnected");
    }
    // Erin is untouched.
    assert_eq!(pong_user(&erin_ws).await, erin.id);

    stack.disable(&erin.id).await.expect("disable erin");
    let exception = erin_ws.event("exception").await.expect("exception");
    assert_eq!(exception["message"], "user disabled");
    erin_ws.closed().await.expect("disconnected");
    stack.stop().await.expect("stop stack");
}

#[tokio::test]
async fn events_after_the_token_expired_are_refused() {
    let stack = TestStack::start(DbKind::Sqlite).await.expect("start stack");
    let frank = stack.user("frank").await.expect("frank");
    let token = mint_token(
        &stack.auth.secret,
        &MintedClaims { user_id: &frank.id, email: &frank.email, role: "user", token_version: 0, expires_in_s: 2 },
    );
    let client = TestClient::connect_ws(stack.url(), &token).await.expect("connect before expiry");
    sb_tests::wait_until("the token's exp passed", std::time::Duration::from_secs(10), || async {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).ok()?.as_secs();
        let expired_at = client_exp(&token)?;
        (now > expired_at).then_some(())
    })
    .await;
    let ack = client.ack("ping", json!({})).await.expect("error ack");
    assert_eq!(ack, json!({"status": "error", "message": "token expired"}));
    let exception = client.event("exception").await.expect("exception");
    assert_eq!(exception, json!({"status": "error", "message": "token expired", "event": "ping"}));
    assert!(client.receives_within("pong", std::time::Duration::from_millis(200), |_| true).await.is_none());
    stack.stop().await.expect("stop stack");
}

/// The `exp` claim of a token (no verification).
fn client_exp(token: &str) -> Option<u64> {
    use base64::Engine as _;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).ok()?;
    serde_json::from_slice::<serde_json::Value>(&bytes).ok()?["exp"].as_u64()
}
