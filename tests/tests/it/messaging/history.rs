//! `get_history` over NATS: pages newest first with `before`/`limit`, rooms
//! and conversations kept apart, bad arguments refused.

use sb_events::bus::BusError;
use sb_events::client::NewMessage;
use sb_events::rpc::{HistoryPage, HistoryQuery, HistoryScope, RpcErrorCode};

use super::*;

on_both_backends!(
    history_pages_newest_first_with_before_and_limit,
    history_keeps_rooms_and_conversations_apart,
    history_refuses_bad_arguments
);

async fn history(env: &Env, query: HistoryQuery) -> Result<Vec<NewMessage>, BusError> {
    let page: HistoryPage = env.edge.request(env.edge.subjects.messaging_history(), &query).await?;
    Ok(page.messages)
}

fn room_query(caller: &str, room_name: &str, before: Option<&str>, limit: u32) -> HistoryQuery {
    HistoryQuery {
        caller: caller.to_owned(),
        scope: HistoryScope::Room(room_name.to_owned()),
        before: before.map(str::to_owned),
        limit,
    }
}

fn with_query(caller: &str, other: &str, before: Option<&str>, limit: u32) -> HistoryQuery {
    HistoryQuery {
        caller: caller.to_owned(),
        scope: HistoryScope::With(other.to_owned()),
        before: before.map(str::to_owned),
        limit,
    }
}

/// Publishes `messages` and waits until messaging stored them all.
async fn store_all(env: &Env, messages: &[MessageAccepted]) {
    for message in messages {
        env.publish(message).await;
    }
    let db = env.database().await;
    wait_until("messages stored", WAIT, || async {
        let rows = stored_rows(&db).await;
        messages.iter().all(|message| rows.contains_key(&message.id)).then_some(())
    })
    .await;
}

async fn history_pages_newest_first_with_before_and_limit(kind: DbKind) {
    let env = Env::start(kind).await;
    let _messaging = env.messaging().await;
    let base_ms = sb_events::timestamp::now_ms();
    // 25 messages over 10 distinct milliseconds: pages must split ties stably.
    let messages: Vec<MessageAccepted> = (0..25)
        .map(|n| {
            let mut message = room_message("lobby", if n % 2 == 0 { "alice" } else { "bob" }, &format!("m{n}"));
            message.timestamp_ms = base_ms + n / 3;
            message
        })
        .collect();
    store_all(&env, &messages).await;
    let mut expected = messages.clone();
    expected.sort_by(|a, b| (b.timestamp_ms, &b.id).cmp(&(a.timestamp_ms, &a.id)));
    let expected_ids: Vec<String> = expected.iter().map(|m| m.id.to_string()).collect();

    let mut pages = Vec::new();
    let mut before: Option<String> = None;
    loop {
        let page = history(&env, room_query("alice", "lobby", before.as_deref(), 10)).await.expect("history page");
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 10);
        before = page.last().map(|message| message.id.clone());
        pages.push(page);
    }
    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), vec![10, 10, 5]);
    let got_ids: Vec<String> = pages.iter().flatten().map(|message| message.id.clone()).collect();
    assert_eq!(got_ids, expected_ids, "newest first, no gaps, no repeats across pages");

    let newest = &pages[0][0];
    let source = &expected[0];
    assert_eq!(newest.room.as_deref(), Some("lobby"));
    assert_eq!(newest.to, None);
    assert_eq!(newest.from, source.from);
    assert_eq!(newest.message, source.message);
    assert_eq!(newest.timestamp, sb_events::timestamp::rfc3339_ms(source.timestamp_ms));

    let one = history(&env, room_query("alice", "lobby", None, 1)).await.expect("limit 1");
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].id, expected_ids[0]);
    let hundred = history(&env, room_query("alice", "lobby", None, 100)).await.expect("limit 100");
    assert_eq!(hundred.len(), 25);
    let oldest = expected_ids.last().expect("messages");
    assert!(history(&env, room_query("alice", "lobby", Some(oldest), 10)).await.expect("before the oldest").is_empty());
}

async fn history_keeps_rooms_and_conversations_apart(kind: DbKind) {
    let env = Env::start(kind).await;
    let _messaging = env.messaging().await;
    let in_lobby = room_message("lobby", "alice", "lobby talk");
    let in_other = room_message("lobby2", "alice", "other room");
    let alice_to_bob = private_message("alice", "bob", "hi bob");
    let bob_to_alice = private_message("bob", "alice", "hi alice");
    let alice_to_carol = private_message("alice", "carol", "hi carol");
    let broadcast = accepted(MessageKind::Broadcast, "alice", "everyone");
    store_all(
        &env,
        &[
            in_lobby.clone(),
            in_other.clone(),
            alice_to_bob.clone(),
            bob_to_alice.clone(),
            alice_to_carol.clone(),
            broadcast,
        ],
    )
    .await;

    let ids = |messages: Vec<NewMessage>| messages.into_iter().map(|m| m.id).collect::<Vec<_>>();
    assert_eq!(ids(history(&env, room_query("alice", "lobby", None, 50)).await.unwrap()), vec![in_lobby.id.clone()]);
    assert_eq!(ids(history(&env, room_query("alice", "lobby2", None, 50)).await.unwrap()), vec![in_other.id.clone()]);

    let conversation = vec![bob_to_alice.id.clone(), alice_to_bob.id.clone()];
    let mut from_alice = ids(history(&env, with_query("alice", "bob", None, 50)).await.unwrap());
    let mut from_bob = ids(history(&env, with_query("bob", "alice", None, 50)).await.unwrap());
    let mut expected = conversation.clone();
    expected.sort();
    from_alice.sort();
    from_bob.sort();
    assert_eq!(from_alice, expected, "alice sees both directions of her conversation with bob");
    assert_eq!(from_bob, expected, "bob sees the same conversation");
    assert_eq!(
        ids(history(&env, with_query("carol", "alice", None, 50)).await.unwrap()),
        vec![alice_to_carol.id.clone()]
    );
    assert!(history(&env, with_query("bob", "carol", None, 50)).await.unwrap().is_empty());
    // A conversation message cannot anchor a room page, nor a room message a conversation page.
    assert!(history(&env, room_query("alice", "lobby", Some(&alice_to_bob.id), 50)).await.is_err());
    assert!(history(&env, with_query("alice", "bob", Some(&in_lobby.id), 50)).await.is_err());
}

async fn history_refuses_bad_arguments(kind: DbKind) {
    let env = Env::start(kind).await;
    let _messaging = env.messaging().await;
    let in_lobby = room_message("lobby", "alice", "lobby talk");
    let in_other = room_message("elsewhere", "alice", "elsewhere");
    store_all(&env, &[in_lobby, in_other.clone()]).await;

    let unknown = uuid::Uuid::now_v7().to_string();
    let cases = [
        (room_query("alice", "lobby", None, 0), "limit"),
        (room_query("alice", "lobby", None, 101), "limit"),
        (room_query("alice", "lobby", Some(&unknown), 10), "before"),
        (room_query("alice", "lobby", Some(&in_other.id), 10), "before"),
        (room_query("alice", "", None, 10), "room"),
        (room_query("alice", &"r".repeat(101), None, 10), "room"),
        (with_query("alice", "", None, 10), "with"),
        (with_query("", "bob", None, 10), "caller"),
    ];
    for (query, field) in cases {
        match history(&env, query.clone()).await {
            Err(BusError::Remote { source, .. }) => {
                assert_eq!(source.code, RpcErrorCode::InvalidArgument, "{query:?}");
                assert!(source.message.contains(field), "{:?} should name {field}", source.message);
            }
            other => panic!("{query:?} should be refused, got {other:?}"),
        }
    }
    let reply = env
        .edge
        .client
        .request(env.edge.subjects.messaging_history(), "[1,2,3]".into())
        .await
        .expect("messaging answers malformed queries");
    let reply: sb_events::rpc::Reply<HistoryPage> = serde_json::from_slice(&reply.payload).expect("reply envelope");
    assert!(matches!(reply, sb_events::rpc::Reply::Error(error) if error.code == RpcErrorCode::InvalidArgument));
    // Still serving.
    assert_eq!(history(&env, room_query("alice", "lobby", None, 10)).await.expect("good query").len(), 1);
}
