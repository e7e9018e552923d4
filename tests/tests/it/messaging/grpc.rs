//! The admin gRPC API, `MessagingService`, with the real auth service checking
//! callers: History, Notify (live only, not stored) and Announce (through the
//! ingest stream), plus health and reflection.

use sb_proto::auth::v1 as auth_pb;
use sb_proto::messaging::v1 as pb;
use sb_proto::messaging::v1::messaging_service_client::MessagingServiceClient;
use sb_tests::auth::{AuthHandle, spawn_auth};
use serde_json::json;
use tonic::Code;
use tonic::transport::Channel;

use super::*;

on_both_backends!(
    every_rpc_needs_an_admin,
    history_rpc_pages_rooms_and_conversations,
    notify_reaches_one_user_or_everyone_and_is_not_stored,
    announce_is_stored_and_routed_like_admin_broadcast,
);

/// Messaging with auth: each service owns its own database.
struct GrpcEnv {
    env: Env,
    auth: AuthHandle,
    _auth_db: TestDatabase,
    messaging: RunningMessaging,
}

impl GrpcEnv {
    async fn start(kind: DbKind) -> Self {
        let env = Env::start(kind).await;
        let auth_db = TestDatabase::create(kind).await.expect("create auth database");
        let auth = spawn_auth(&auth_db, env.nats.url()).await.expect("start auth");
        let mut config = env.config();
        config.auth_addr = auth.uri();
        let messaging = spawn_messaging(config).await.expect("start messaging");
        Self { env, auth, _auth_db: auth_db, messaging }
    }

    async fn client(&self) -> MessagingServiceClient<Channel> {
        MessagingServiceClient::connect(self.messaging.grpc_url()).await.expect("connect to messaging")
    }

    async fn user(&self, email: &str) -> (auth_pb::User, String) {
        self.auth.create_user(email, auth_pb::Role::User).await.expect("create user")
    }
}

fn history_request(scope: pb::history_request::Scope, before: &str, limit: u32) -> pb::HistoryRequest {
    pb::HistoryRequest { scope: Some(scope), before: before.to_owned(), limit }
}

/// `message` with `authorization: Bearer <token>`, or without any.
fn wrap<T>(message: T, token: Option<&str>) -> tonic::Request<T> {
    match token {
        Some(token) => AuthHandle::with_token(message, token),
        None => tonic::Request::new(message),
    }
}

async fn every_rpc_needs_an_admin(kind: DbKind) {
    let env = GrpcEnv::start(kind).await;
    let mut client = env.client().await;
    let (_, user_token) = env.user("plain@example.com").await;
    let history = || history_request(pb::history_request::Scope::Room("lobby".into()), "", 10);
    let notify = || pb::NotifyRequest {
        user_id: String::new(),
        title: String::new(),
        message: "hi".into(),
        room: String::new(),
    };
    let announce = || pb::AnnounceRequest { message: "hi".into() };

    for (token, code) in [
        (None, Code::Unauthenticated),
        (Some("not-a-jwt"), Code::Unauthenticated),
        (Some(user_token.as_str()), Code::PermissionDenied),
    ] {
        let status = client.history(wrap(history(), token)).await.expect_err("history refused");
        assert_eq!(status.code(), code, "history with {token:?}: {status:?}");
        let status = client.notify(wrap(notify(), token)).await.expect_err("notify refused");
        assert_eq!(status.code(), code, "notify with {token:?}: {status:?}");
        let status = client.announce(wrap(announce(), token)).await.expect_err("announce refused");
        assert_eq!(status.code(), code, "announce with {token:?}: {status:?}");
    }
    let status = client.history(tonic::Request::new(history())).await.expect_err("no token");
    assert_eq!(status.message(), "token missing");
    // Nothing was announced or stored by the refused calls.
    wait_for_consumer_idle(&env.env.edge).await;
    assert!(stored_rows(&env.env.database().await).await.is_empty());
}

async fn history_rpc_pages_rooms_and_conversations(kind: DbKind) {
    let env = GrpcEnv::start(kind).await;
    let mut client = env.client().await;
    let base_ms = sb_events::timestamp::now_ms();
    let mut lobby = Vec::new();
    for n in 0..5 {
        let mut message = room_message("lobby", "alice", &format!("m{n}"));
        message.timestamp_ms = base_ms + n;
        lobby.push(message);
    }
    let private = private_message("alice", "bob", "secret");
    let elsewhere = room_message("elsewhere", "bob", "not here");
    for message in lobby.iter().chain([&private, &elsewhere]) {
        env.env.publish(message).await;
    }
    let db = env.env.database().await;
    wait_until("messages stored", WAIT, || async { (stored_rows(&db).await.len() == 7).then_some(()) }).await;

    let room = || pb::history_request::Scope::Room("lobby".into());
    let first =
        client.history(env.auth.as_admin(history_request(room(), "", 2))).await.expect("first page").into_inner();
    assert_eq!(first.messages.iter().map(|m| m.message.as_str()).collect::<Vec<_>>(), ["m4", "m3"]);
    assert_eq!(first.next_before, first.messages[1].id);
    let newest = &first.messages[0];
    assert_eq!(newest.kind, "room");
    assert_eq!(newest.from_id, "alice");
    assert_eq!(newest.from_email, "alice@example.com");
    assert_eq!(newest.room, "lobby");
    assert_eq!(newest.to, "");
    assert_eq!(newest.timestamp, sb_events::timestamp::rfc3339_ms(base_ms + 4));
    let second = client
        .history(env.auth.as_admin(history_request(room(), &first.next_before, 2)))
        .await
        .expect("second page")
        .into_inner();
    assert_eq!(second.messages.iter().map(|m| m.message.as_str()).collect::<Vec<_>>(), ["m2", "m1"]);
    let last = client
        .history(env.auth.as_admin(history_request(room(), &second.next_before, 2)))
        .await
        .expect("last page")
        .into_inner();
    assert_eq!(last.messages.iter().map(|m| m.message.as_str()).collect::<Vec<_>>(), ["m0"]);
    assert_eq!(last.next_before, "", "no next page after the last");
    let default_limit =
        client.history(env.auth.as_admin(history_request(room(), "", 0))).await.expect("limit 0").into_inner();
    assert_eq!(default_limit.messages.len(), 5);
    assert_eq!(default_limit.next_before, "");

    let conversation =
        pb::history_request::Scope::Conversation(pb::Conversation { user_a: "bob".into(), user_b: "alice".into() });
    let private_page = client
        .history(env.auth.as_admin(history_request(conversation, "", 10)))
        .await
        .expect("conversation")
        .into_inner();
    assert_eq!(private_page.messages.len(), 1);
    assert_eq!(private_page.messages[0].id, private.id);
    assert_eq!(private_page.messages[0].kind, "private");
    assert_eq!(private_page.messages[0].to, "bob");

    let bad = [
        (history_request(room(), "", 101), "limit"),
        (history_request(room(), "no-such-id", 10), "before"),
        (history_request(pb::history_request::Scope::Room(String::new()), "", 10), "room"),
        (
            history_request(
                pb::history_request::Scope::Conversation(pb::Conversation {
                    user_a: "a".into(),
                    user_b: String::new(),
                }),
                "",
                10,
            ),
            "conversation.user_b",
        ),
        (pb::HistoryRequest { scope: None, before: String::new(), limit: 10 }, "scope"),
    ];
    for (request, field) in bad {
        let status = client.history(env.auth.as_admin(request.clone())).await.expect_err("bad request refused");
        assert_eq!(status.code(), Code::InvalidArgument, "{request:?}");
        assert!(status.message().contains(field), "{:?} should name {field}", status.message());
    }
}

async fn notify_reaches_one_user_or_everyone_and_is_not_stored(kind: DbKind) {
    let env = GrpcEnv::start(kind).await;
    let mut client = env.client().await;
    let (bob, _) = env.user("bob@example.com").await;
    let to_bob = env.env.watch(&[env.env.edge.subjects.deliver_user(&user(&bob.id))]).await;
    let to_all = env.env.watch(&[env.env.edge.subjects.deliver_all()]).await;

    let reply = client
        .notify(env.auth.as_admin(pb::NotifyRequest {
            user_id: bob.id.clone(),
            title: "Heads up".into(),
            message: "disk full".into(),
            room: String::new(),
        }))
        .await
        .expect("notify bob")
        .into_inner();
    let received = to_bob.wait_for(1).await;
    assert_eq!(received[0].delivery.event, "notification");
    assert_eq!(
        received[0].json(),
        json!({"id": reply.id, "title": "Heads up", "message": "disk full", "timestamp": reply.timestamp})
    );
    assert!(sb_events::timestamp::parse_rfc3339_ms(&reply.timestamp).is_some());

    let everyone = client
        .notify(env.auth.as_admin(pb::NotifyRequest {
            user_id: String::new(),
            title: String::new(),
            message: "hello all".into(),
            room: String::new(),
        }))
        .await
        .expect("notify everyone")
        .into_inner();
    let received = to_all.wait_for(1).await;
    assert_eq!(received[0].json(), json!({"id": everyone.id, "message": "hello all", "timestamp": everyone.timestamp}));

    let room = sb_events::RoomName::parse("ops").expect("room name");
    let to_room = env.env.watch(&[env.env.edge.subjects.deliver_room(&room)]).await;
    let in_room = client
        .notify(env.auth.as_admin(pb::NotifyRequest {
            user_id: String::new(),
            title: "Ops".into(),
            message: "deploy at 5".into(),
            room: "ops".into(),
        }))
        .await
        .expect("notify a room")
        .into_inner();
    let received = to_room.wait_for(1).await;
    assert_eq!(received[0].delivery.event, "notification");
    assert_eq!(
        received[0].json(),
        json!({"id": in_room.id, "title": "Ops", "message": "deploy at 5", "timestamp": in_room.timestamp})
    );
    assert_eq!(to_all.all().await.len(), 1, "a room notification is not sent to everyone");

    let unknown = client
        .notify(env.auth.as_admin(pb::NotifyRequest {
            user_id: "nobody".into(),
            title: String::new(),
            message: "x".into(),
            room: String::new(),
        }))
        .await
        .expect_err("unknown user");
    assert_eq!(unknown.code(), Code::NotFound);
    for (request, field) in [
        (
            pb::NotifyRequest {
                user_id: String::new(),
                title: String::new(),
                message: "  ".into(),
                room: String::new(),
            },
            "message",
        ),
        (
            pb::NotifyRequest {
                user_id: String::new(),
                title: String::new(),
                message: "x".repeat(4097),
                room: String::new(),
            },
            "message",
        ),
        (
            pb::NotifyRequest {
                user_id: String::new(),
                title: "t".repeat(201),
                message: "x".into(),
                room: String::new(),
            },
            "title",
        ),
        (
            pb::NotifyRequest {
                user_id: "a\nb".into(),
                title: String::new(),
                message: "x".into(),
                room: String::new(),
            },
            "user_id",
        ),
        (
            pb::NotifyRequest { user_id: "bob".into(), title: String::new(), message: "x".into(), room: "ops".into() },
            "room",
        ),
        (
            pb::NotifyRequest {
                user_id: String::new(),
                title: String::new(),
                message: "x".into(),
                room: "a\nb".into(),
            },
            "room",
        ),
    ] {
        let status = client.notify(env.auth.as_admin(request)).await.expect_err("bad notify refused");
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.message().contains(field), "{:?} should name {field}", status.message());
    }
    assert_eq!(to_bob.all().await.len(), 1);
    assert_eq!(to_all.all().await.len(), 1);
    assert!(stored_rows(&env.env.database().await).await.is_empty(), "notifications are not stored");
}

async fn announce_is_stored_and_routed_like_admin_broadcast(kind: DbKind) {
    let env = GrpcEnv::start(kind).await;
    let mut client = env.client().await;
    let everyone = env.env.watch(&[env.env.edge.subjects.deliver_all()]).await;
    let reply = client
        .announce(env.auth.as_admin(pb::AnnounceRequest { message: "maintenance at noon".into() }))
        .await
        .expect("announce")
        .into_inner();
    let received = everyone.wait_for(1).await;
    assert_eq!(received[0].delivery.event, "admin_announcement");
    assert_eq!(
        received[0].json(),
        json!({
            "id": reply.id,
            "from": {"id": env.auth.admin_id, "email": sb_tests::auth::ADMIN_EMAIL},
            "message": "maintenance at noon",
            "timestamp": reply.timestamp,
        })
    );
    let db = env.env.database().await;
    assert_eq!(stored_count(&db, &reply.id).await, 1);
    let status = client
        .announce(env.auth.as_admin(pb::AnnounceRequest { message: String::new() }))
        .await
        .expect_err("empty announcement");
    assert_eq!(status.code(), Code::InvalidArgument);
}
