//! Two Switchboard instances on one nats-server, each in its own account with
//! its own prefix and databases: nothing of one reaches the other.

use std::time::Duration;

use futures_util::StreamExt as _;
use sb_proto::auth::v1 as pb;
use sb_tests::DbKind;
use sb_tests::edge::{MintedClaims, TestClient, mint_token};
use sb_tests::stack::{StackOptions, TestStack};
use serde_json::json;

use super::AccountsServer;

const QUIET: Duration = Duration::from_millis(1500);

/// A user with a chosen id in `stack` and a token for it.
async fn user_with_id(stack: &TestStack, id: &str, name: &str) -> String {
    let email = format!("{name}@example.com");
    stack
        .auth
        .grpc()
        .await
        .expect("auth client")
        .create_user(stack.auth.as_admin(pb::CreateUserRequest {
            email: email.clone(),
            password: "user-password".to_owned(),
            role: pb::Role::User as i32,
            id: id.to_owned(),
        }))
        .await
        .expect("create user");
    mint_token(
        &stack.auth.secret,
        &MintedClaims { user_id: id, email: &email, role: "user", token_version: 0, expires_in_s: 3600 },
    )
}

#[tokio::test]
async fn teams_on_one_server_see_nothing_of_each_other() {
    let server = AccountsServer::start().await.expect("start the TLS + accounts nats-server");
    // Every service of both teams starts over TLS: team-a with a password, team-b with an NKey.
    let mut options = StackOptions::new(DbKind::Sqlite);
    options.nats = Some(server.team_a());
    let team_a = TestStack::start_with(options).await.expect("team-a starts");
    let mut options = StackOptions::new(DbKind::Sqlite);
    options.nats = Some(server.team_b());
    let team_b = TestStack::start_with(options).await.expect("team-b starts");

    // team-a's own credentials, watching its own subjects and (trying) team-b's.
    let spy = sb_events::bus::Bus::connect(&server.team_a(), "team-a-spy").await.expect("team-a connects");
    let mut own_subjects = spy.client.subscribe("team-a.>").await.expect("subscribe to team-a's subjects");
    let (errors_sender, mut server_errors) = tokio::sync::mpsc::unbounded_channel();
    let raw = async_nats::ConnectOptions::new()
        .user_and_password("team-a".to_owned(), server.team_a_password.clone())
        .add_root_certificates(server.ca.ca_file.clone())
        .require_tls(true)
        .event_callback(move |event| {
            let errors_sender = errors_sender.clone();
            async move {
                if let async_nats::Event::ServerError(error) = event {
                    let _ = errors_sender.send(error.to_string());
                }
            }
        })
        .connect(server.url())
        .await
        .expect("team-a's credentials connect");
    let mut other_team = raw.subscribe("team-b.>").await.expect("the client sends the SUB");
    sb_tests::round_trip(&spy.client).await.expect("the server has the subscription");
    let refusal = tokio::time::timeout(Duration::from_secs(5), server_errors.recv())
        .await
        .expect("the server answers the SUB")
        .expect("an error");
    assert!(
        refusal.to_lowercase().contains("permissions violation"),
        "team-a may not subscribe to team-b.>: {refusal}"
    );

    // The same user id and the same room in both teams.
    let carol_a = user_with_id(&team_a, "carol", "carol").await;
    let carol_b = user_with_id(&team_b, "carol", "carol").await;
    let alice = team_a.user("alice").await.expect("alice in team-a");
    let dave = team_b.user("dave").await.expect("dave in team-b");
    let b_carol = TestClient::connect_ws(team_b.url(), &carol_b).await.expect("carol on team-b");
    let b_dave = TestClient::connect_ws(team_b.url(), &dave.token).await.expect("dave on team-b");
    b_carol.ack("join_room", json!({"room": "lobby"})).await.expect("join on team-b");
    let a_alice = TestClient::connect_ws(team_a.url(), &alice.token).await.expect("alice on team-a");
    let a_carol = TestClient::connect_ws(team_a.url(), &carol_a).await.expect("carol on team-a");
    a_alice.ack("join_room", json!({"room": "lobby"})).await.expect("join on team-a");
    a_carol.ack("join_room", json!({"room": "lobby"})).await.expect("carol joins on team-a");

    // Room, private and broadcast messages of team-a reach team-a only.
    let room = a_alice.ack("send_message", json!({"room": "lobby", "message": "a-room"})).await.expect("room");
    a_carol.event_where("new_message", |m| m["id"] == room["id"]).await.expect("team-a's room member gets it");
    let private = a_alice.ack("send_message", json!({"to": "carol", "message": "a-private"})).await.expect("private");
    a_carol.event_where("new_message", |m| m["id"] == private["id"]).await.expect("team-a's carol gets it");
    let all = a_alice.ack("send_message", json!({"message": "a-all"})).await.expect("broadcast");
    a_carol.event_where("new_message", |m| m["id"] == all["id"]).await.expect("team-a's broadcast arrives");

    // team-b's presence knows only team-b's users.
    let online = b_dave.ack("get_online_users", json!({})).await.expect("online on team-b");
    let mut expected = vec!["carol".to_owned(), dave.id.clone()];
    expected.sort();
    assert_eq!(sb_tests::edge::sorted_ids(&online["users"]), expected, "team-b's online users: {online}");

    // Revoking carol in team-a disconnects team-a's carol only.
    team_a.revoke("carol").await.expect("revoke carol in team-a");
    let exception = a_carol.event("exception").await.expect("team-a's carol is told");
    assert_eq!(exception["message"], "token revoked");
    let pong = b_carol.ack("ping", json!({})).await.expect("team-b's carol is still connected");
    assert_eq!(pong["user"]["id"], "carol");

    // And team-b's sockets saw nothing of any of it.
    tokio::time::sleep(QUIET).await;
    for (who, client) in [("carol", &b_carol), ("dave", &b_dave)] {
        for (event, payload) in client.drain_events().await {
            let text = payload.to_string();
            assert!(
                !text.contains("a-room") && !text.contains("a-private") && !text.contains("a-all"),
                "team-b's {who} got team-a's {event}: {payload}"
            );
            assert!(!text.contains(&alice.id), "team-b's {who} heard of team-a's alice ({event}): {payload}");
            assert!(event != "exception", "team-b's {who} got an exception: {payload}");
        }
    }

    // team-b's traffic is invisible to team-a's credentials: they see team-a's
    // subjects only, subscribing to team-b's is a permissions violation that
    // delivers nothing, and team-a's JetStream has only team-a's streams.
    let sent = b_carol.ack("send_message", json!({"room": "lobby", "message": "b-room"})).await.expect("b room");
    b_carol.event_where("new_message", |m| m["id"] == sent["id"]).await.expect("team-b's own delivery");
    let mut seen = 0;
    while let Ok(Some(message)) = tokio::time::timeout(Duration::from_millis(300), own_subjects.next()).await {
        seen += 1;
        assert!(
            !message.subject.starts_with("team-b.") && !String::from_utf8_lossy(&message.payload).contains("b-room"),
            "team-a's credentials saw team-b's traffic on {}",
            message.subject
        );
    }
    assert!(seen > 0, "team-a's subscription saw team-a's own traffic");
    assert!(
        tokio::time::timeout(QUIET, other_team.next()).await.map_or(true, |message| message.is_none()),
        "team-a's subscription to team-b.> received something"
    );
    let streams: Vec<String> = spy.jetstream.stream_names().collect::<Vec<_>>().await.into_iter().flatten().collect();
    assert!(
        !streams.is_empty() && streams.iter().all(|name| name.starts_with("TEAM_A_")),
        "team-a's JetStream sees only its own streams: {streams:?}"
    );

    for client in [&a_alice, &b_carol, &b_dave] {
        client.disconnect().await;
    }
    team_a.stop().await.expect("stop team-a");
    team_b.stop().await.expect("stop team-b");
}
