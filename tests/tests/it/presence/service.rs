//! The presence service: two replicas on one nats-server, edges simulated
//! by the real edge-side reporter.

use std::collections::BTreeSet;
use std::time::Duration;

use sb_events::RoomName;
use sb_events::bus::Bus;
use sb_events::presence::{PresenceEvent, PresenceEventKind};
use sb_presence_client::PresenceQueries;
use sb_tests::NatsServer;
use sb_tests::presence::{PresenceReplica, SimEdge, Watcher, replica_config, settle, user};

const HEARTBEAT: Duration = Duration::from_millis(500);
const WAIT: Duration = Duration::from_secs(20);
/// No auth service in these tests (gRPC admin checks have their own).
const NO_AUTH: &str = "127.0.0.1:9";

async fn replica(nats: &NatsServer) -> PresenceReplica {
    PresenceReplica::start(replica_config(nats.url(), NO_AUTH)).await.expect("start presence replica")
}

async fn observer(nats: &NatsServer) -> Bus {
    Bus::connect(&sb_config::NatsArgs::for_url(nats.url()), "test-observer").await.expect("observer bus")
}

/// What a replica believes: online users and the members of `rooms`.
fn belief(replica: &PresenceReplica, rooms: &[&str]) -> (Vec<String>, Vec<Vec<String>>) {
    replica.replica.read(|state| {
        let online = state.online_page(None, 1000).0.into_iter().map(|u| u.id).collect();
        let members =
            rooms.iter().map(|room| state.room_page(room, None, 1000).0.into_iter().map(|u| u.id).collect()).collect();
        (online, members)
    })
}

#[tokio::test]
async fn online_and_offline_are_published_once_with_two_replicas() {
    let nats = NatsServer::start().await.expect("nats");
    let (first, second) = (replica(&nats).await, replica(&nats).await);
    let watcher = Watcher::start(nats.url(), &[]).await.expect("watcher");
    let edge = SimEdge::start(nats.url(), "edge-a", HEARTBEAT).await.expect("edge");

    edge.connect("s1", &user("alice"));
    watcher.wait_for("user_online", "alice", WAIT).await;
    edge.connect("s2", &user("alice"));
    edge.disconnect("s1");
    watcher.barrier(&edge, "b1").await;
    assert_eq!(watcher.count("user_online", "alice"), 1);
    assert_eq!(watcher.count("user_offline", "alice"), 0, "alice still has a socket");

    edge.disconnect("s2");
    watcher.wait_for("user_offline", "alice", WAIT).await;
    watcher.barrier(&edge, "b2").await;
    assert_eq!(watcher.count("user_online", "alice"), 1);
    assert_eq!(watcher.count("user_offline", "alice"), 1);

    let bus = observer(&nats).await;
    settle(&bus, &[&first, &second]).await;
    assert_eq!(belief(&first, &[]), belief(&second, &[]), "replicas agree");
    assert_eq!(belief(&first, &[]).0, ["b1", "b2"]);
    let leaders = [&first, &second].iter().filter(|r| r.replica.is_leader()).count();
    assert_eq!(leaders, 1, "one replica publishes");
}

#[tokio::test]
async fn user_on_two_edges_goes_offline_only_when_both_sockets_are_gone() {
    let nats = NatsServer::start().await.expect("nats");
    let (_first, _second) = (replica(&nats).await, replica(&nats).await);
    let watcher = Watcher::start(nats.url(), &[]).await.expect("watcher");
    let edge_a = SimEdge::start(nats.url(), "edge-a", HEARTBEAT).await.expect("edge a");
    let edge_b = SimEdge::start(nats.url(), "edge-b", HEARTBEAT).await.expect("edge b");

    edge_a.connect("a1", &user("alice"));
    watcher.wait_for("user_online", "alice", WAIT).await;
    edge_b.connect("b1", &user("alice"));
    edge_a.disconnect("a1");
    watcher.barrier(&edge_a, "barrier-a").await;
    watcher.barrier(&edge_b, "barrier-b").await;
    assert_eq!(watcher.count("user_offline", "alice"), 0, "alice is still on edge b");
    assert_eq!(watcher.count("user_online", "alice"), 1);

    edge_b.disconnect("b1");
    watcher.wait_for("user_offline", "alice", WAIT).await;
    watcher.barrier(&edge_a, "barrier-c").await;
    assert_eq!(watcher.count("user_offline", "alice"), 1);
}

#[tokio::test]
async fn joins_leaves_and_disconnects_announce_room_changes_once() {
    let nats = NatsServer::start().await.expect("nats");
    let (first, second) = (replica(&nats).await, replica(&nats).await);
    let watcher = Watcher::start(nats.url(), &["lobby", "a.*"]).await.expect("watcher");
    let edge_a = SimEdge::start(nats.url(), "edge-a", HEARTBEAT).await.expect("edge a");
    let edge_b = SimEdge::start(nats.url(), "edge-b", HEARTBEAT).await.expect("edge b");
    let queries = PresenceQueries::new(observer(&nats).await);
    let lobby = RoomName::parse("lobby").expect("room");

    edge_a.connect("a1", &user("alice"));
    edge_b.connect("b1", &user("alice"));
    edge_b.connect("b2", &user("bob"));
    let seq = edge_a.join("a1", "lobby").await.expect("join");
    let members = queries.room_members(&lobby, Some(seq)).await.expect("members");
    assert_eq!(members.members.iter().map(|u| u.id.as_str()).collect::<Vec<_>>(), ["alice"]);
    let seq = edge_b.join("b1", "lobby").await.expect("second socket joins");
    edge_b.join("b2", "lobby").await.expect("bob joins");
    edge_b.join("b2", "a.*").await.expect("bob joins a wildcard-looking room");
    let members = queries.room_members(&lobby, Some(seq + 1)).await.expect("members");
    assert_eq!(members.count, 2);

    edge_a.leave("a1", "lobby").expect("leave");
    watcher.barrier(&edge_a, "x1").await;
    assert_eq!(watcher.count("user_joined", "alice"), 1, "one join per user, whatever the sockets");
    assert_eq!(watcher.count("user_left", "alice"), 0, "alice is still in the lobby on edge b");

    edge_b.disconnect("b1");
    watcher.wait_for("user_left", "alice", WAIT).await;
    edge_b.leave("b2", "lobby").expect("bob leaves");
    watcher.wait_for("user_left", "bob", WAIT).await;
    watcher.barrier(&edge_a, "x2").await;
    // (Deliveries of different rooms come on different subjects, so only
    // each room's own order is defined.)
    let mut of_bob: Vec<(String, Option<String>)> =
        watcher.seen().into_iter().filter(|s| s.user == "bob").map(|s| (s.event, s.room)).collect();
    of_bob.sort();
    assert_eq!(
        of_bob,
        [
            ("user_joined".to_owned(), Some("a.*".to_owned())),
            ("user_joined".to_owned(), Some("lobby".to_owned())),
            ("user_left".to_owned(), Some("lobby".to_owned())),
            ("user_online".to_owned(), None),
        ]
    );
    assert_eq!(watcher.count("user_left", "alice"), 1);

    let bus = observer(&nats).await;
    settle(&bus, &[&first, &second]).await;
    assert_eq!(belief(&first, &["lobby", "a.*"]), belief(&second, &["lobby", "a.*"]));
    assert_eq!(belief(&first, &["lobby", "a.*"]).1, [Vec::<String>::new(), vec!["bob".to_owned()]]);
}

#[tokio::test]
async fn crashed_edge_has_its_sessions_removed_with_offline_and_left() {
    let nats = NatsServer::start().await.expect("nats");
    let (first, second) = (replica(&nats).await, replica(&nats).await);
    let watcher = Watcher::start(nats.url(), &["r"]).await.expect("watcher");
    let doomed = SimEdge::start_crashable(nats.url(), "edge-doomed", HEARTBEAT).await.expect("edge");
    let survivor = SimEdge::start(nats.url(), "edge-ok", HEARTBEAT).await.expect("edge");
    doomed.connect("d1", &user("alice"));
    doomed.join("d1", "r").await.expect("join");
    doomed.connect("d2", &user("bob"));
    survivor.connect("o1", &user("bob"));
    watcher.wait_for("user_joined", "alice", WAIT).await;

    let crashed_at = std::time::Instant::now();
    doomed.crash();
    // Within 15 s of the crash: 3 missed heartbeats, EdgeDown, publication.
    watcher.wait_for("user_offline", "alice", Duration::from_secs(15)).await;
    eprintln!("edge kill to user_offline: {:?}", crashed_at.elapsed());
    watcher.wait_for("user_left", "alice", Duration::from_secs(1)).await;
    watcher.barrier(&survivor, "b").await;
    assert_eq!(watcher.count("user_offline", "bob"), 0, "bob still has a socket on the other edge");
    assert_eq!(watcher.count("user_offline", "alice"), 1);

    let bus = observer(&nats).await;
    settle(&bus, &[&first, &second]).await;
    for replica in [&first, &second] {
        let view = replica.replica.read(|state| state.edge("edge-doomed")).expect("edge known");
        assert!(view.down && view.sockets == 0);
        assert_eq!(belief(replica, &["r"]), (vec!["b".to_owned(), "bob".to_owned()], vec![vec![]]));
    }
}

#[tokio::test]
async fn killed_replicas_restart_with_the_same_state_and_publish_what_they_missed_once() {
    let nats = NatsServer::start().await.expect("nats");
    let bus = observer(&nats).await;
    let (first, second) = (replica(&nats).await, replica(&nats).await);
    let watcher = Watcher::start(nats.url(), &["r"]).await.expect("watcher");
    let edge = SimEdge::start(nats.url(), "edge-a", HEARTBEAT).await.expect("edge");
    for name in ["alice", "bob", "carol"] {
        edge.connect(name, &user(name));
        edge.join(name, "r").await.expect("join");
    }
    watcher.wait_for("user_joined", "carol", WAIT).await;
    settle(&bus, &[&first, &second]).await;

    // Kill the leader; the other takes over and publishes what happens meanwhile.
    let (leader, follower) = if first.replica.is_leader() { (first, second) } else { (second, first) };
    leader.crash();
    edge.disconnect("alice");
    edge.connect("dave", &user("dave"));
    watcher.wait_for("user_offline", "alice", WAIT).await;
    watcher.wait_for("user_online", "dave", WAIT).await;

    // A new replica rebuilds the same state from the stream and announces nothing it replays.
    let restarted = replica(&nats).await;
    settle(&bus, &[&follower, &restarted]).await;
    assert_eq!(belief(&restarted, &["r"]), belief(&follower, &["r"]));

    // Kill every replica, change things while presence is down, then start one.
    follower.crash();
    restarted.crash();
    edge.disconnect("bob");
    edge.connect("erin", &user("erin"));
    edge.connect("frank", &user("frank"));
    edge.disconnect("frank");
    let last = replica(&nats).await;
    watcher.wait_for("user_offline", "bob", WAIT).await;
    watcher.wait_for("user_online", "erin", WAIT).await;
    watcher.barrier(&edge, "z").await;
    settle(&bus, &[&last]).await;

    for name in ["alice", "bob", "carol", "dave", "erin"] {
        let online = watcher.count("user_online", name);
        let offline = watcher.count("user_offline", name);
        let expected = match name {
            "alice" | "bob" => (1, 1),
            _ => (1, 0),
        };
        // Every crash here happens after the leader recorded its progress,
        // so nothing is repeated (a crash between publishing and recording
        // could repeat a window; never invent or lose one).
        assert_eq!((online, offline), expected, "{name}: user_online / user_offline seen");
    }
    assert_eq!(watcher.count("user_online", "frank") + watcher.count("user_offline", "frank"), 0, "came and went");
    assert_eq!(belief(&last, &["r"]).0, ["carol", "dave", "erin", "z"]);
    assert_eq!(belief(&last, &["r"]).1, [vec!["carol".to_owned()]]);
}

#[tokio::test]
async fn edge_restarted_with_the_same_id_leaves_no_ghosts() {
    let nats = NatsServer::start().await.expect("nats");
    let bus = observer(&nats).await;
    let (first, second) = (replica(&nats).await, replica(&nats).await);
    let watcher = Watcher::start(nats.url(), &["r"]).await.expect("watcher");
    // A long heartbeat: the restart, not the timeout, must remove the old sessions.
    let old = SimEdge::start_crashable(nats.url(), "edge-a", Duration::from_secs(4)).await.expect("edge");
    old.connect("s1", &user("alice"));
    old.join("s1", "r").await.expect("join");
    old.connect("s2", &user("bob"));
    watcher.wait_for("user_online", "bob", WAIT).await;
    old.crash();

    let new = SimEdge::start(nats.url(), "edge-a", HEARTBEAT).await.expect("restarted edge");
    new.connect("s9", &user("bob"));
    watcher.wait_for("user_offline", "alice", WAIT).await;
    watcher.wait_for("user_left", "alice", WAIT).await;
    watcher.barrier(&new, "b").await;
    settle(&bus, &[&first, &second]).await;
    for replica in [&first, &second] {
        let view = replica.replica.read(|state| state.edge("edge-a")).expect("edge");
        assert_eq!(view.incarnation, new.reporter.incarnation());
        assert_eq!(view.sockets, 2, "only the new incarnation's sockets");
        assert_eq!(belief(replica, &["r"]), (vec!["b".to_owned(), "bob".to_owned()], vec![vec![]]));
    }
}

#[tokio::test]
async fn queries_page_online_users_and_answer_online_among() {
    let nats = NatsServer::start().await.expect("nats");
    let (first, second) = (replica(&nats).await, replica(&nats).await);
    let edge = SimEdge::start(nats.url(), "edge-a", HEARTBEAT).await.expect("edge");
    for i in 0..250 {
        edge.connect(&format!("s{i}"), &user(&format!("u{i:03}")));
    }
    let queries = PresenceQueries::new(observer(&nats).await);
    // Either replica may answer a query, and each applies the stream at its
    // own pace: wait until both have all 250.
    sb_tests::wait_until("250 online at both replicas", WAIT, || async {
        [&first, &second].iter().all(|replica| belief(replica, &[]).0.len() == 250).then_some(())
    })
    .await;

    let mut ids = Vec::new();
    let mut cursor = None;
    loop {
        let page = queries.online_users(100, cursor).await.expect("page");
        assert_eq!(page.count, 250);
        assert!(page.users.len() <= 100);
        ids.extend(page.users.into_iter().map(|u| u.id));
        cursor = page.cursor;
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!(ids, (0..250).map(|i| format!("u{i:03}")).collect::<Vec<_>>());
    assert_eq!(queries.online_users(0, None).await.expect("default page").users.len(), 100);
    assert_eq!(queries.online_users(5000, None).await.expect("clamped page").users.len(), 250);

    let bus = observer(&nats).await;
    let error = bus
        .request::<_, sb_events::client::OnlineUsers>(
            bus.subjects.presence_query(),
            &sb_events::presence::PresenceQuery::OnlineUsers { limit: 10, cursor: Some("!!".into()), after_seq: None },
        )
        .await
        .expect_err("bad cursor");
    assert!(error.to_string().contains("invalid cursor"), "{error}");

    // Read your own connect: asked right after connecting, with the stored
    // sequence of its SessionOpened, the list includes the caller.
    let stored = edge.connect("me", &user("zz-me"));
    let seq = stored.wait().await.expect("stored");
    let page = queries.online_users_after(1000, None, Some(seq)).await.expect("page after my connect");
    assert!(page.users.iter().any(|u| u.id == "zz-me"), "the caller sees itself");

    let among = queries.online_among(vec!["u001".into(), "nobody".into(), "u249".into()]).await.expect("among");
    assert_eq!(among.online, ["u001", "u249"]);
}

#[tokio::test]
async fn snapshot_repairs_state_after_events_were_lost() {
    let nats = NatsServer::start().await.expect("nats");
    let bus = observer(&nats).await;
    let (first, second) = (replica(&nats).await, replica(&nats).await);
    let watcher = Watcher::start(nats.url(), &[]).await.expect("watcher");
    let edge = SimEdge::start(nats.url(), "edge-a", Duration::from_millis(300)).await.expect("edge");
    edge.connect("s1", &user("alice"));
    edge.connect("s2", &user("bob"));
    watcher.wait_for("user_online", "bob", WAIT).await;
    sb_tests::wait_until("events stored", WAIT, || async { (edge.reporter.last_stored_seq() == 3).then_some(()) })
        .await;

    // Corrupt the stream: a foreign event takes seq 4 (so the edge's own
    // seq 4, carol's connect, is dropped as a duplicate) and says alice left.
    let forged = PresenceEvent {
        edge: "edge-a".into(),
        incarnation: edge.reporter.incarnation().to_owned(),
        seq: 4,
        at_ms: sb_events::timestamp::now_ms(),
        kind: PresenceEventKind::SessionClosed { socket: "s1".into() },
    };
    let subject = bus.subjects.presence_events(edge.reporter.edge());
    bus.publish_durable(subject, &forged.msg_id(), &forged).await.expect("forge");
    edge.connect("s3", &user("carol"));
    watcher.wait_for("user_offline", "alice", WAIT).await;

    // The heartbeat shows 2 sockets at seq 4 where presence has 1: a snapshot restores both.
    watcher.wait_for("user_online", "carol", WAIT).await;
    watcher.wait_for("user_online", "alice", WAIT).await;
    settle(&bus, &[&first, &second]).await;
    for replica in [&first, &second] {
        assert_eq!(belief(replica, &[]).0, ["alice", "bob", "carol"]);
    }
    assert_eq!(watcher.count("user_online", "alice"), 2);
    assert_eq!(watcher.count("user_online", "bob"), 1, "only real differences are announced");
}

#[tokio::test]
async fn replica_started_after_the_history_was_lost_rebuilds_from_snapshots() {
    let nats = NatsServer::start().await.expect("nats");
    let bus = observer(&nats).await;
    let edge = SimEdge::start(nats.url(), "edge-a", Duration::from_millis(300)).await.expect("edge");
    edge.connect("s1", &user("alice"));
    edge.join("s1", "r").await.expect("join");
    edge.connect("s2", &user("bob"));
    sb_tests::wait_until("events stored", WAIT, || async { (edge.reporter.last_stored_seq() == 4).then_some(()) })
        .await;
    let stream = bus.jetstream.get_stream(bus.subjects.presence_stream()).await.expect("stream");
    stream.purge().await.expect("purge: as if max_age had expired everything");

    let replica = replica(&nats).await;
    sb_tests::wait_until("state rebuilt from a snapshot", WAIT, || async {
        let (online, members) = belief(&replica, &["r"]);
        (online == ["alice", "bob"] && members == [vec!["alice".to_owned()]]).then_some(())
    })
    .await;
    let online: BTreeSet<String> = belief(&replica, &[]).0.into_iter().collect();
    assert_eq!(online.len(), 2);
}

async fn replicas_with_scope(
    nats: &NatsServer,
    scope: sb_presence::state::Scope,
) -> (PresenceReplica, PresenceReplica) {
    let mut config = replica_config(nats.url(), NO_AUTH);
    config.scope = scope;
    let first = PresenceReplica::start(config.clone()).await.expect("replica");
    let second = PresenceReplica::start(config).await.expect("replica");
    (first, second)
}

#[tokio::test]
async fn scope_rooms_tells_only_users_sharing_a_room() {
    let nats = NatsServer::start().await.expect("nats");
    let (_first, _second) = replicas_with_scope(&nats, sb_presence::state::Scope::Rooms).await;
    let watcher = Watcher::start_for(nats.url(), &["r"], &["bob", "carol"]).await.expect("watcher");
    let edge = SimEdge::start(nats.url(), "edge-a", HEARTBEAT).await.expect("edge");
    for name in ["alice", "bob", "carol"] {
        edge.connect(name, &user(name));
    }
    edge.join("alice", "r").await.expect("join");
    edge.join("bob", "r").await.expect("join");
    watcher.wait_for("user_joined", "bob", WAIT).await;
    edge.disconnect("alice");
    watcher.wait_for("user_offline", "alice", WAIT).await;
    edge.join("carol", "r").await.expect("barrier join");
    watcher.wait_for("user_joined", "carol", WAIT).await;

    let offline: Vec<Option<String>> =
        watcher.seen().into_iter().filter(|s| s.event == "user_offline").map(|s| s.room).collect();
    assert_eq!(offline, [Some("@bob".to_owned())], "only bob shared a room with alice");
    assert_eq!(watcher.count("user_online", "alice") + watcher.count("user_online", "bob"), 0, "no broadcast");
    assert_eq!(watcher.count("user_left", "alice"), 1);
}

#[tokio::test]
async fn scope_none_announces_no_online_or_offline_but_still_room_changes() {
    let nats = NatsServer::start().await.expect("nats");
    let (first, second) = replicas_with_scope(&nats, sb_presence::state::Scope::None).await;
    let watcher = Watcher::start_for(nats.url(), &["r"], &["bob"]).await.expect("watcher");
    let edge = SimEdge::start(nats.url(), "edge-a", HEARTBEAT).await.expect("edge");
    edge.connect("alice", &user("alice"));
    edge.connect("bob", &user("bob"));
    edge.join("alice", "r").await.expect("join");
    edge.join("bob", "r").await.expect("join");
    // (A join and a leave within one window cancel out: wait for the joins first.)
    watcher.wait_for("user_joined", "bob", WAIT).await;
    edge.disconnect("alice");
    watcher.wait_for("user_left", "alice", WAIT).await;
    edge.leave("bob", "r").expect("barrier leave");
    watcher.wait_for("user_left", "bob", WAIT).await;
    let presence: Vec<_> =
        watcher.seen().into_iter().filter(|s| s.event == "user_online" || s.event == "user_offline").collect();
    assert!(presence.is_empty(), "{presence:?}");
    // Either replica may answer: wait until both applied alice's disconnect.
    sb_tests::wait_until("both replicas know only bob", WAIT, || async {
        [&first, &second].iter().all(|replica| belief(replica, &[]).0 == ["bob"]).then_some(())
    })
    .await;
    let queries = PresenceQueries::new(observer(&nats).await);
    assert_eq!(queries.online_users(100, None).await.expect("online").count, 1, "presence itself still knows");
}

#[tokio::test]
async fn a_recreated_presence_stream_does_not_silence_new_transitions() {
    let nats = NatsServer::start().await.expect("nats");
    let bus = observer(&nats).await;
    let replica_one = replica(&nats).await;
    let watcher = Watcher::start(nats.url(), &[]).await.expect("watcher");
    let edge = SimEdge::start(nats.url(), "edge-a", HEARTBEAT).await.expect("edge");
    for i in 0..20 {
        edge.connect(&format!("s{i}"), &user(&format!("old{i}")));
    }
    watcher.wait_for("user_online", "old19", WAIT).await;
    settle(&bus, &[&replica_one]).await;
    replica_one.stop().await;
    edge.reporter.shutdown().await.expect("edge stops");
    bus.jetstream.delete_stream(bus.subjects.presence_stream()).await.expect("delete the presence stream");

    // The lease record says 21+ sequences were published; the new stream starts at 1 again.
    let _replica_two = replica(&nats).await;
    let edge = SimEdge::start(nats.url(), "edge-b", HEARTBEAT).await.expect("edge");
    edge.connect("n1", &user("newcomer"));
    watcher.wait_for("user_online", "newcomer", WAIT).await;
}

#[tokio::test]
async fn nats_restart_loses_nothing() {
    let nats = NatsServer::start().await.expect("nats");
    let bus = observer(&nats).await;
    let (first, second) = (replica(&nats).await, replica(&nats).await);
    let watcher = Watcher::start(nats.url(), &[]).await.expect("watcher");
    let edge = SimEdge::start(nats.url(), "edge-a", HEARTBEAT).await.expect("edge");
    edge.connect("s1", &user("alice"));
    edge.connect("s2", &user("bob"));
    watcher.wait_for("user_online", "bob", WAIT).await;

    let mut nats = nats;
    nats.kill();
    // While NATS is down: bob leaves, carol arrives (queued by the reporter).
    edge.disconnect("s2");
    edge.connect("s3", &user("carol"));
    let nats = nats.restart().await.expect("restart nats");

    watcher.wait_for("user_offline", "bob", Duration::from_secs(30)).await;
    watcher.wait_for("user_online", "carol", Duration::from_secs(30)).await;
    watcher.barrier(&edge, "z").await;
    settle(&bus, &[&first, &second]).await;
    for replica in [&first, &second] {
        assert_eq!(belief(replica, &[]).0, ["alice", "carol", "z"]);
    }
    assert_eq!(watcher.count("user_online", "alice"), 1, "no false online after the outage");
    assert_eq!(watcher.count("user_offline", "alice"), 0, "no false offline after the outage");
    drop(nats);
}
