//! Offline private messages: stored as pending when presence does not say the
//! recipient is online (here presence is not running, so the `OnlineAmong`
//! request fails), then handed out once, oldest first, by `PendingClaim`.

use std::collections::HashSet;

use sb_events::rpc::{PendingClaim, PendingMessages, RpcErrorCode};

use super::*;

on_both_backends!(
    offline_private_messages_are_pending_then_claimed_once_in_order,
    concurrent_claims_split_the_pending_messages,
    pending_claim_arguments_are_checked,
    with_presence_running_only_offline_recipients_get_pending_messages,
    kept_places_follow_connects_and_disconnects,
);

async fn claim(env: &Env, user: &str, limit: u32) -> Result<PendingMessages, sb_events::bus::BusError> {
    env.edge.request(env.edge.subjects.messaging_pending(), &PendingClaim { user: user.to_owned(), limit }).await
}

async fn offline_private_messages_are_pending_then_claimed_once_in_order(kind: DbKind) {
    let env = Env::start(kind).await;
    let _messaging = env.messaging().await;
    let bob_live = env.watch(&[env.edge.subjects.deliver_user(&user("bob"))]).await;
    let base_ms = sb_events::timestamp::now_ms();
    let mut sent = Vec::new();
    // Published newest first, with one timestamp tie, so order comes from the
    // store and not from arrival.
    for (offset, text) in [(2, "third"), (1, "second b"), (1, "second a"), (0, "first")] {
        let mut message = private_message("alice", "bob", text);
        message.timestamp_ms = base_ms + offset;
        env.publish(&message).await;
        sent.push(message);
    }
    // Still published live (harmless: bob has no socket to receive it).
    bob_live.wait_for(sent.len()).await;
    wait_for_consumer_idle(&env.edge).await;
    let db = env.database().await;
    let rows = stored_rows(&db).await;
    assert_eq!(rows.len(), 4);
    assert!(rows.values().all(|delivered| !delivered), "presence did not answer, so every message is pending");

    let claimed = claim(&env, "bob", 100).await.expect("claim pending messages");
    let mut expected = sent.clone();
    expected.sort_by(|a, b| (a.timestamp_ms, &a.id).cmp(&(b.timestamp_ms, &b.id)));
    let claimed_ids: Vec<&str> = claimed.messages.iter().map(|m| m.id.as_str()).collect();
    let expected_ids: Vec<&str> = expected.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(claimed_ids, expected_ids, "oldest first, ties by id");
    let first = &claimed.messages[0];
    assert_eq!(first.to.as_deref(), Some("bob"));
    assert_eq!(first.from, public_user("alice"));
    assert_eq!(first.message, "first");
    assert_eq!(first.timestamp, sb_events::timestamp::rfc3339_ms(base_ms));

    let again = claim(&env, "bob", 100).await.expect("claim again");
    assert!(again.messages.is_empty(), "a claimed message is handed out once");
    assert!(stored_rows(&db).await.values().all(|delivered| *delivered));
    assert!(claim(&env, "alice", 100).await.expect("claim for the sender").messages.is_empty());
}

async fn concurrent_claims_split_the_pending_messages(kind: DbKind) {
    let env = Env::start(kind).await;
    let _messaging = env.messaging().await;
    let total = 60;
    for n in 0..total {
        env.publish(&private_message("alice", "bob", &format!("m{n}"))).await;
    }
    wait_until("every message stored", WAIT, || async {
        (stored_rows(&env.database().await).await.len() == total).then_some(())
    })
    .await;
    wait_for_consumer_idle(&env.edge).await;

    let env = Arc::new(env);
    let mut claimers = Vec::new();
    for _ in 0..4 {
        let env = env.clone();
        claimers.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let page = claim(&env, "bob", 7).await.expect("claim");
                if page.messages.is_empty() {
                    return mine;
                }
                mine.push(page.messages);
            }
        }));
    }
    let mut seen = HashSet::new();
    for claimer in claimers {
        for page in claimer.await.expect("claimer task") {
            let order: Vec<_> = page.iter().map(|m| (m.timestamp.clone(), m.id.clone())).collect();
            let mut sorted = order.clone();
            sorted.sort();
            assert_eq!(order, sorted, "each page is oldest first");
            for message in page {
                assert!(seen.insert(message.id.clone()), "message {} handed out twice", message.id);
            }
        }
    }
    assert_eq!(seen.len(), total, "every pending message handed out");
}

async fn pending_claim_arguments_are_checked(kind: DbKind) {
    let env = Env::start(kind).await;
    let _messaging = env.messaging().await;
    for (user, limit, field) in [("bob", 0, "limit"), ("bob", 1001, "limit"), ("", 10, "user")] {
        match claim(&env, user, limit).await {
            Err(sb_events::bus::BusError::Remote { source, .. }) => {
                assert_eq!(source.code, RpcErrorCode::InvalidArgument);
                assert!(source.message.contains(field), "{} should name {field}", source.message);
            }
            other => panic!("claim({user:?}, {limit}) should be refused, got {other:?}"),
        }
    }
    let reply: sb_events::rpc::Reply<PendingMessages> = {
        let message = env
            .edge
            .client
            .request(env.edge.subjects.messaging_pending(), "{\"user\": 5}".into())
            .await
            .expect("messaging answers malformed claims");
        serde_json::from_slice(&message.payload).expect("reply envelope")
    };
    match reply {
        sb_events::rpc::Reply::Error(error) => assert_eq!(error.code, RpcErrorCode::InvalidArgument),
        other => panic!("malformed claim accepted: {other:?}"),
    }
}

async fn with_presence_running_only_offline_recipients_get_pending_messages(kind: DbKind) {
    use sb_events::presence::{OnlineAmong, PresenceQuery};
    use sb_tests::presence::{PresenceReplica, SimEdge, replica_config};

    let env = Env::start(kind).await;
    let messaging = env.messaging().await;
    // Before presence runs, a message to bob can only be stored as pending.
    let early = private_message("alice", "bob", "before presence");
    env.publish(&early).await;
    wait_for_consumer_idle(&env.edge).await;
    assert_eq!(stored_rows(&env.database().await).await.get(&early.id), Some(&false));

    let presence =
        PresenceReplica::start(replica_config(env.nats.url(), "http://127.0.0.1:9")).await.expect("start presence");
    let edge = SimEdge::start(env.nats.url(), "edge-1", Duration::from_millis(500)).await.expect("start sim edge");
    edge.connect("socket-of-bob", &sb_tests::presence::user("bob"));
    wait_until("presence to see bob online", WAIT, || async {
        let answer: OnlineAmong = env
            .edge
            .request(env.edge.subjects.presence_query(), &PresenceQuery::OnlineAmong { users: vec!["bob".to_owned()] })
            .await
            .ok()?;
        (answer.online == ["bob"]).then_some(())
    })
    .await;

    let to_bob = private_message("alice", "bob", "you are online");
    let to_carol = private_message("alice", "carol", "you are not");
    env.publish(&to_bob).await;
    env.publish(&to_carol).await;
    wait_for_consumer_idle(&env.edge).await;
    let rows = stored_rows(&env.database().await).await;
    assert_eq!(rows.get(&to_bob.id), Some(&true), "bob is online: delivered live, not pending");
    assert_eq!(rows.get(&to_carol.id), Some(&false), "carol is offline: pending");

    // The early message comes round again (a redelivery after a crash, or a
    // re-publish): bob gets it live now, so it must not stay pending.
    env.edge
        .publish_durable(ingest_subject(&env.edge, &early), &format!("{}-again", early.id), &early)
        .await
        .expect("stream accepts the re-publish");
    wait_for_consumer_idle(&env.edge).await;
    assert_eq!(stored_rows(&env.database().await).await.get(&early.id), Some(&true));

    assert!(claim(&env, "bob", 100).await.expect("claim for bob").messages.is_empty());
    let for_carol = claim(&env, "carol", 100).await.expect("claim for carol");
    assert_eq!(for_carol.messages.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(), [to_carol.id.as_str()]);
    let metrics = sb_tests::http::scrape_metrics(messaging.metrics_addr).await.expect("metrics");
    assert_eq!(
        sb_tests::http::metric_value(&metrics, "switchboard_messaging_presence_query_failures_total"),
        Some(1.0),
        "only the question asked before presence ran went unanswered"
    );
    presence.stop().await;
}

/// Messaging keeps presence's answers (`LOCATE_CACHE_TTL`, here longer than
/// the test, so only presence events can make a kept place go): a kept
/// "online" must not outlive the user's disconnect, a kept "offline" must
/// not outlive its connect, and a second socket elsewhere is seen at once.
async fn kept_places_follow_connects_and_disconnects(kind: DbKind) {
    use sb_events::presence::{OnlineAmong, PresenceQuery};
    use sb_tests::presence::{PresenceReplica, SimEdge, replica_config};

    let env = Env::start(kind).await;
    let presence =
        PresenceReplica::start(replica_config(env.nats.url(), "http://127.0.0.1:9")).await.expect("start presence");
    let mut config = env.config();
    config.locate_cache_ttl = Duration::from_secs(3600);
    let messaging = spawn_messaging(config).await.expect("start messaging");
    let edge_1 = SimEdge::start(env.nats.url(), "edge-1", Duration::from_millis(500)).await.expect("start sim edge");
    let edge_2 = SimEdge::start(env.nats.url(), "edge-2", Duration::from_millis(500)).await.expect("start sim edge");
    let online = |id: &'static str, wanted: bool| {
        let env = &env;
        async move {
            wait_until(&format!("presence to see {id} online={wanted}"), WAIT, || async {
                let answer: OnlineAmong = env
                    .edge
                    .request(
                        env.edge.subjects.presence_query(),
                        &PresenceQuery::OnlineAmong { users: vec![id.to_owned()] },
                    )
                    .await
                    .ok()?;
                (answer.online.contains(&id.to_owned()) == wanted).then_some(())
            })
            .await;
        }
    };
    let metric = |name: &'static str| {
        let addr = messaging.metrics_addr;
        async move {
            let metrics = sb_tests::http::scrape_metrics(addr).await.expect("metrics");
            sb_tests::http::metric_value(&metrics, name).unwrap_or(0.0)
        }
    };
    // Sends one private message and says whether it was stored as delivered (not pending).
    let delivered = |to: &'static str, text: &'static str| {
        let env = &env;
        async move {
            let message = private_message("alice", to, text);
            env.publish(&message).await;
            wait_for_consumer_idle(&env.edge).await;
            *stored_rows(&env.database().await).await.get(&message.id).expect("message stored")
        }
    };

    edge_1.connect("bob-1", &sb_tests::presence::user("bob"));
    online("bob", true).await;
    // Messaging's watcher reads the presence stream shortly after start; until
    // then nothing is kept. Once both alice and bob come from the cache, it keeps.
    wait_until("messaging to keep where alice and bob are", WAIT, || async {
        let before = metric("switchboard_messaging_locate_cache_hits_total").await;
        assert!(delivered("bob", "to online bob").await, "bob is online");
        (metric("switchboard_messaging_locate_cache_hits_total").await >= before + 2.0).then_some(())
    })
    .await;

    // bob leaves: his kept place goes with the session_closed event.
    let forgotten = metric("switchboard_messaging_locate_cache_forgotten_total").await;
    edge_1.disconnect("bob-1");
    online("bob", false).await;
    wait_until("messaging to forget where bob was", WAIT, || async {
        (metric("switchboard_messaging_locate_cache_forgotten_total").await > forgotten).then_some(())
    })
    .await;
    assert!(!delivered("bob", "to bob, gone").await, "bob left: the message must be pending, not sent to edge-1");

    // carol is kept as offline, then connects.
    assert!(!delivered("carol", "to offline carol").await);
    assert!(!delivered("carol", "to offline carol, from the cache").await);
    let forgotten = metric("switchboard_messaging_locate_cache_forgotten_total").await;
    edge_2.connect("carol-1", &sb_tests::presence::user("carol"));
    online("carol", true).await;
    wait_until("messaging to forget that carol was offline", WAIT, || async {
        (metric("switchboard_messaging_locate_cache_forgotten_total").await > forgotten).then_some(())
    })
    .await;
    assert!(delivered("carol", "to carol, online now").await, "carol connected: delivered live");

    // bob comes back on edge-2 and then opens a second socket on edge-1: the
    // kept place (edge-2 only) is forgotten, so the next batch asks presence
    // and reaches the new socket too.
    edge_2.connect("bob-2", &sb_tests::presence::user("bob"));
    online("bob", true).await;
    assert!(delivered("bob", "to bob on edge-2").await);
    let forgotten = metric("switchboard_messaging_locate_cache_forgotten_total").await;
    edge_1.connect("bob-3", &sb_tests::presence::user("bob"));
    wait_until("messaging to forget where bob was", WAIT, || async {
        (metric("switchboard_messaging_locate_cache_forgotten_total").await > forgotten).then_some(())
    })
    .await;
    assert!(delivered("bob", "to bob on both edges").await);

    let hits = metric("switchboard_messaging_locate_cache_hits_total").await;
    let misses = metric("switchboard_messaging_locate_cache_misses_total").await;
    assert!(hits >= 4.0 && misses >= 4.0, "hits {hits}, misses {misses}");
    presence.stop().await;
}
