//! Unit and property tests of the state machine.

use proptest::prelude::*;

use super::*;

fn user(id: &str) -> PublicUser {
    PublicUser { id: id.to_owned(), email: format!("{id}@example.com") }
}

/// Builds the events of one edge incarnation with consecutive seqs.
struct EdgeScript {
    edge: String,
    incarnation: String,
    seq: u64,
}

impl EdgeScript {
    fn new(edge: &str, incarnation: &str) -> Self {
        Self { edge: edge.to_owned(), incarnation: incarnation.to_owned(), seq: 0 }
    }

    fn next(&mut self, kind: PresenceEventKind) -> PresenceEvent {
        self.seq += 1;
        PresenceEvent {
            edge: self.edge.clone(),
            incarnation: self.incarnation.clone(),
            seq: self.seq,
            at_ms: self.seq as i64,
            kind,
        }
    }

    fn up(&mut self) -> PresenceEvent {
        self.next(PresenceEventKind::EdgeUp)
    }
    fn open(&mut self, socket: &str, id: &str) -> PresenceEvent {
        self.next(PresenceEventKind::SessionOpened {
            socket: socket.into(),
            user: user(id),
            connected_at_ms: 1,
            transport: None,
        })
    }
    fn close(&mut self, socket: &str) -> PresenceEvent {
        self.next(PresenceEventKind::SessionClosed { socket: socket.into() })
    }
    fn join(&mut self, socket: &str, room: &str) -> PresenceEvent {
        self.next(PresenceEventKind::RoomJoined { socket: socket.into(), room: room.into() })
    }
    fn leave(&mut self, socket: &str, room: &str) -> PresenceEvent {
        self.next(PresenceEventKind::RoomLeft { socket: socket.into(), room: room.into() })
    }
}

/// Applies `events` at stream sequences 1, 2, ... and returns the transitions as text.
fn run(state: &mut State, events: Vec<PresenceEvent>) -> Vec<String> {
    let mut out = Vec::new();
    for event in events {
        let seq = state.applied_seq() + 1;
        state.apply(seq, event, &mut out);
    }
    out.iter().map(describe).collect()
}

fn describe(t: &Transition) -> String {
    match &t.change {
        Change::Online => format!("online {}", t.user.id),
        Change::Offline => format!("offline {}", t.user.id),
        Change::Joined(room) => format!("joined {room} {}", t.user.id),
        Change::Left(room) => format!("left {room} {}", t.user.id),
    }
}

#[test]
fn first_socket_online_last_socket_offline_across_edges() {
    let mut state = State::new(Scope::All);
    let (mut a, mut b) = (EdgeScript::new("a", "01"), EdgeScript::new("b", "01"));
    let events = vec![a.up(), b.up(), a.open("s1", "alice"), b.open("s2", "alice"), a.close("s1")];
    assert_eq!(run(&mut state, events), ["online alice"]);
    assert!(state.is_online("alice"));
    assert_eq!(run(&mut state, vec![b.close("s2")]), ["offline alice"]);
    assert_eq!(state.totals(), Totals::default());
}

#[test]
fn rooms_join_leave_and_disconnect() {
    let mut state = State::new(Scope::All);
    let mut a = EdgeScript::new("a", "01");
    let events = vec![
        a.up(),
        a.open("s1", "alice"),
        a.open("s2", "alice"),
        a.join("s1", "lobby"),
        a.join("s2", "lobby"),
        a.join("s1", "lobby"),
        a.leave("s1", "lobby"),
    ];
    assert_eq!(run(&mut state, events), ["online alice", "joined lobby alice"]);
    assert_eq!(state.room_page("lobby", None, 10).2, 1);
    assert_eq!(run(&mut state, vec![a.close("s2")]), ["left lobby alice"]);
    assert_eq!(run(&mut state, vec![a.close("s1")]), ["offline alice"]);
    assert_eq!(state.room_page("lobby", None, 10).2, 0);
}

#[test]
fn edge_down_and_new_incarnation_remove_sessions() {
    let mut state = State::new(Scope::All);
    let mut old = EdgeScript::new("a", "0001");
    run(&mut state, vec![old.up(), old.open("s1", "alice"), old.join("s1", "r")]);
    let down = PresenceEvent {
        edge: "a".into(),
        incarnation: "0001".into(),
        seq: 0,
        at_ms: 9,
        kind: PresenceEventKind::EdgeDown { incarnation: "0001".into() },
    };
    assert_eq!(run(&mut state, vec![down.clone()]), ["left r alice", "offline alice"]);
    assert!(run(&mut state, vec![down, old.open("s9", "zed")]).is_empty(), "a dead incarnation stays dead");

    let mut new = EdgeScript::new("a", "0002");
    run(&mut state, vec![new.up(), new.open("s1", "bob")]);
    let mut newer = EdgeScript::new("a", "0003");
    assert_eq!(run(&mut state, vec![newer.up()]), ["offline bob"], "a restart drops the old sessions");
    assert!(
        run(&mut state, vec![new.open("s2", "carol")]).is_empty(),
        "late events of the old incarnation are ignored"
    );
}

#[test]
fn out_of_order_events_wait_for_the_gap_and_duplicates_are_ignored() {
    let mut state = State::new(Scope::All);
    let mut a = EdgeScript::new("a", "01");
    let up = a.up();
    let open = a.open("s1", "alice");
    let join = a.join("s1", "r");
    let close = a.close("s1");
    assert_eq!(run(&mut state, vec![up, join.clone(), close.clone()]), Vec::<String>::new());
    assert_eq!(state.edge("a").map(|e| e.held), Some(2));
    assert_eq!(
        run(&mut state, vec![open.clone(), join, close, open]),
        ["online alice", "joined r alice", "left r alice", "offline alice"]
    );
    assert_eq!(state.totals(), Totals::default());
}

#[test]
fn snapshot_replaces_the_edge_with_only_real_differences() {
    let mut state = State::new(Scope::All);
    let mut a = EdgeScript::new("a", "01");
    run(&mut state, vec![a.up(), a.open("s1", "alice"), a.open("s2", "bob"), a.join("s2", "r")]);
    let snapshot = |part: u32, last: bool, sessions: Vec<SessionState>| PresenceEventKind::Snapshot {
        snapshot: "x".into(),
        part,
        last,
        sessions,
    };
    let session = |socket: &str, id: &str, rooms: &[&str]| SessionState {
        socket: socket.into(),
        user: user(id),
        connected_at_ms: 1,
        rooms: rooms.iter().map(|r| r.to_string()).collect(),
        transport: None,
    };
    let part0 = a.next(snapshot(0, false, vec![session("s1", "alice", &["q"])]));
    let part1 = a.next(snapshot(1, true, vec![session("s3", "carol", &[])]));
    assert!(run(&mut state, vec![part0]).is_empty(), "nothing changes before the last part");
    assert_eq!(run(&mut state, vec![part1]), ["joined q alice", "online carol", "left r bob", "offline bob"]);
    let view = state.edge("a").expect("edge");
    assert_eq!((view.sockets, view.synced, view.last_seq), (2, true, 6));
}

#[test]
fn snapshot_revives_an_edge_declared_dead_and_syncs_one_seen_mid_history() {
    let mut state = State::new(Scope::All);
    let mut a = EdgeScript::new("a", "01");
    a.seq = 40; // the stream no longer holds the start
    run(&mut state, vec![a.open("s1", "alice")]);
    assert!(!state.edge("a").expect("edge").synced);
    let down = PresenceEvent {
        edge: "a".into(),
        incarnation: "01".into(),
        seq: 0,
        at_ms: 9,
        kind: PresenceEventKind::EdgeDown { incarnation: "01".into() },
    };
    assert_eq!(run(&mut state, vec![down]), ["offline alice"]);
    let revive = a.next(PresenceEventKind::Snapshot {
        snapshot: "y".into(),
        part: 0,
        last: true,
        sessions: vec![SessionState {
            socket: "s1".into(),
            user: user("alice"),
            connected_at_ms: 1,
            rooms: vec![],
            transport: None,
        }],
    });
    assert_eq!(run(&mut state, vec![revive]), ["online alice"]);
    let view = state.edge("a").expect("edge");
    assert!(view.synced && !view.down);
}

#[test]
fn rooms_scope_tells_offline_to_co_members() {
    let mut state = State::new(Scope::Rooms);
    let mut a = EdgeScript::new("a", "01");
    let mut out = Vec::new();
    for (seq, event) in [
        a.up(),
        a.open("s1", "alice"),
        a.open("s2", "bob"),
        a.open("s3", "carol"),
        a.join("s1", "r"),
        a.join("s2", "r"),
        a.close("s1"),
    ]
    .into_iter()
    .enumerate()
    {
        state.apply(seq as u64 + 1, event, &mut out);
    }
    let offline = out.iter().find(|t| t.change == Change::Offline).expect("offline");
    assert_eq!(offline.recipients, ["bob"]);
}

#[test]
fn pages_are_ordered_and_complete() {
    let mut state = State::new(Scope::All);
    let mut a = EdgeScript::new("a", "01");
    let mut events = vec![a.up()];
    for i in 0..25 {
        events.push(a.open(&format!("s{i}"), &format!("u{i:02}")));
    }
    run(&mut state, events);
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let (page, more) = state.online_page(cursor.as_deref(), 10);
        seen.extend(page.iter().map(|u| u.id.clone()));
        if !more {
            break;
        }
        cursor = page.last().map(|u| u.id.clone());
    }
    let expected: Vec<String> = (0..25).map(|i| format!("u{i:02}")).collect();
    assert_eq!(seen, expected);
}

#[test]
fn coalesce_cancels_pairs_and_keeps_order() {
    let t = |id: &str, change: Change| Transition { seq: 1, at_ms: 1, user: user(id), change, recipients: vec![] };
    let window = vec![
        t("a", Change::Online),
        t("b", Change::Online),
        t("a", Change::Offline),
        t("c", Change::Offline),
        t("b", Change::Joined("r".into())),
        t("c", Change::Online),
        t("c", Change::Offline),
    ];
    let kept: Vec<String> = coalesce(window).iter().map(describe).collect();
    assert_eq!(kept, ["online b", "joined r b", "offline c"]);
}

#[derive(Debug, Clone)]
enum Op {
    Open { edge: usize, socket: usize, user: usize },
    Close { edge: usize, socket: usize },
    Join { edge: usize, socket: usize, room: usize },
    Leave { edge: usize, socket: usize, room: usize },
    Restart { edge: usize },
    Snapshot { edge: usize },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..2usize, 0..4usize, 0..3usize).prop_map(|(edge, socket, user)| Op::Open { edge, socket, user }),
        3 => (0..2usize, 0..4usize).prop_map(|(edge, socket)| Op::Close { edge, socket }),
        3 => (0..2usize, 0..4usize, 0..2usize).prop_map(|(edge, socket, room)| Op::Join { edge, socket, room }),
        2 => (0..2usize, 0..4usize, 0..2usize).prop_map(|(edge, socket, room)| Op::Leave { edge, socket, room }),
        1 => (0..2usize).prop_map(|edge| Op::Restart { edge }),
        1 => (0..2usize).prop_map(|edge| Op::Snapshot { edge }),
    ]
}

/// What the simulated edges really have: edge → socket → (user, rooms).
type Truth = Vec<BTreeMap<String, (String, BTreeSet<String>)>>;

fn script(ops: &[Op]) -> (Vec<PresenceEvent>, Truth) {
    let mut truth: Truth = vec![BTreeMap::new(), BTreeMap::new()];
    let mut scripts: Vec<EdgeScript> = (0..2).map(|e| EdgeScript::new(&format!("e{e}"), "0001")).collect();
    let mut incarnations = [1u32, 1];
    let mut events: Vec<PresenceEvent> = scripts.iter_mut().map(EdgeScript::up).collect();
    for op in ops {
        match op {
            Op::Open { edge, socket, user: u } => {
                let socket = format!("s{socket}");
                if truth[*edge].contains_key(&socket) {
                    continue;
                }
                truth[*edge].insert(socket.clone(), (format!("u{u}"), BTreeSet::new()));
                events.push(scripts[*edge].open(&socket, &format!("u{u}")));
            }
            Op::Close { edge, socket } => {
                let socket = format!("s{socket}");
                truth[*edge].remove(&socket);
                events.push(scripts[*edge].close(&socket));
            }
            Op::Join { edge, socket, room } => {
                let socket = format!("s{socket}");
                if let Some((_, rooms)) = truth[*edge].get_mut(&socket) {
                    rooms.insert(format!("r{room}"));
                }
                events.push(scripts[*edge].join(&socket, &format!("r{room}")));
            }
            Op::Leave { edge, socket, room } => {
                let socket = format!("s{socket}");
                if let Some((_, rooms)) = truth[*edge].get_mut(&socket) {
                    rooms.remove(&format!("r{room}"));
                }
                events.push(scripts[*edge].leave(&socket, &format!("r{room}")));
            }
            Op::Restart { edge } => {
                incarnations[*edge] += 1;
                truth[*edge].clear();
                scripts[*edge] = EdgeScript::new(&format!("e{edge}"), &format!("{:04}", incarnations[*edge]));
                events.push(scripts[*edge].up());
            }
            Op::Snapshot { edge } => {
                let sessions = truth[*edge]
                    .iter()
                    .map(|(socket, (u, rooms))| SessionState {
                        socket: socket.clone(),
                        user: user(u),
                        connected_at_ms: 1,
                        rooms: rooms.iter().cloned().collect(),
                        transport: None,
                    })
                    .collect();
                events.push(scripts[*edge].next(PresenceEventKind::Snapshot {
                    snapshot: format!("snap{}", events.len()),
                    part: 0,
                    last: true,
                    sessions,
                }));
            }
        }
    }
    (events, truth)
}

fn online_truth(truth: &Truth) -> BTreeSet<String> {
    truth.iter().flat_map(|edge| edge.values().map(|(u, _)| u.clone())).collect()
}

proptest! {
    /// The state equals the edges' truth after any sequence of events; the
    /// transitions of each key alternate; two replicas (one of them seeing
    /// the events again, e.g. after a redelivery) compute the same transitions.
    #[test]
    fn state_follows_the_edges_and_replicas_agree(ops in prop::collection::vec(op(), 0..60)) {
        let (events, truth) = script(&ops);
        let mut first = State::new(Scope::All);
        let mut second = State::new(Scope::All);
        let (mut out_first, mut out_second) = (Vec::new(), Vec::new());
        for (index, event) in events.iter().enumerate() {
            first.apply(index as u64 + 1, event.clone(), &mut out_first);
            second.apply(index as u64 + 1, event.clone(), &mut out_second);
            second.apply(index as u64 + 1, event.clone(), &mut out_second);
        }
        prop_assert_eq!(&out_first, &out_second);
        let online: BTreeSet<String> = first.online_page(None, 100).0.into_iter().map(|u| u.id).collect();
        prop_assert_eq!(online, online_truth(&truth));
        let mut is_online: HashMap<String, bool> = HashMap::new();
        for t in &out_first {
            match t.change {
                Change::Online => prop_assert!(!is_online.insert(t.user.id.clone(), true).unwrap_or(false)),
                Change::Offline => prop_assert!(is_online.insert(t.user.id.clone(), false).unwrap_or(false)),
                _ => {}
            }
        }
        for room in ["r0", "r1"] {
            let members: BTreeSet<String> = first.room_page(room, None, 100).0.into_iter().map(|u| u.id).collect();
            let expected: BTreeSet<String> = truth
                .iter()
                .flat_map(|edge| edge.values().filter(|(_, rooms)| rooms.contains(room)).map(|(u, _)| u.clone()))
                .collect();
            prop_assert_eq!(members, expected);
        }
    }

    /// Coalescing a run of transitions yields the same net effect as applying them all.
    #[test]
    fn coalescing_keeps_the_net_effect(ops in prop::collection::vec(op(), 0..60), split in 0usize..60) {
        let (events, _) = script(&ops);
        let mut state = State::new(Scope::All);
        let mut out = Vec::new();
        for (index, event) in events.into_iter().enumerate() {
            state.apply(index as u64 + 1, event, &mut out);
        }
        let split = split.min(out.len());
        let net = |ts: &[Transition]| {
            let mut online: BTreeMap<String, bool> = BTreeMap::new();
            for t in ts {
                match t.change {
                    Change::Online => { online.insert(t.user.id.clone(), true); }
                    Change::Offline => { online.insert(t.user.id.clone(), false); }
                    _ => {}
                }
            }
            online
        };
        let mut coalesced = coalesce(out[..split].to_vec());
        coalesced.extend(coalesce(out[split..].to_vec()));
        let (all, windowed) = (net(&out), net(&coalesced));
        for (user, online) in &all {
            prop_assert_eq!(windowed.get(user).copied().unwrap_or(false), *online, "everyone starts offline");
        }
    }
}

proptest! {
    /// Events that overtook each other (a NATS reconnect) or were stored
    /// twice (a republish past the de-duplication window) end in the same
    /// state as the stream in order.
    #[test]
    fn reordered_and_duplicated_events_end_in_the_same_state(
        ops in prop::collection::vec(op(), 0..60),
        swaps in prop::collection::vec(any::<bool>(), 80),
        dups in prop::collection::vec(any::<bool>(), 80),
    ) {
        let (events, truth) = script(&ops);
        let mut perturbed = events.clone();
        let mut i = 0;
        while i + 1 < perturbed.len() {
            let (a, b) = (&perturbed[i], &perturbed[i + 1]);
            if swaps[i % swaps.len()] && a.edge == b.edge && a.incarnation == b.incarnation {
                perturbed.swap(i, i + 1);
                i += 2;
            } else {
                i += 1;
            }
        }
        let mut with_dups = Vec::new();
        for (index, event) in perturbed.into_iter().enumerate() {
            with_dups.push(event.clone());
            if dups[index % dups.len()] {
                with_dups.push(event);
            }
        }
        let mut state = State::new(Scope::All);
        let mut out = Vec::new();
        for (index, event) in with_dups.into_iter().enumerate() {
            state.apply(index as u64 + 1, event, &mut out);
        }
        let online: BTreeSet<String> = state.online_page(None, 100).0.into_iter().map(|u| u.id).collect();
        prop_assert_eq!(online, online_truth(&truth));
        for room in ["r0", "r1"] {
            let members: BTreeSet<String> = state.room_page(room, None, 100).0.into_iter().map(|u| u.id).collect();
            let expected: BTreeSet<String> = truth
                .iter()
                .flat_map(|edge| edge.values().filter(|(_, rooms)| rooms.contains(room)).map(|(u, _)| u.clone()))
                .collect();
            prop_assert_eq!(members, expected);
        }
    }
}

#[test]
fn sessions_keep_the_reported_transport_and_snapshots_update_it() {
    let mut state = State::new(Scope::All);
    let mut a = EdgeScript::new("a", "1");
    let up = a.up();
    let opened = a.next(PresenceEventKind::SessionOpened {
        socket: "s1".into(),
        user: user("alice"),
        connected_at_ms: 1,
        transport: Some(Transport::Polling),
    });
    run(&mut state, vec![up, opened, a.open("s2", "alice")]);
    let transports = |state: &State| {
        let (_, sessions) = state.user_sessions("alice").expect("online");
        sessions.into_iter().map(|s| (s.socket, s.transport)).collect::<Vec<_>>()
    };
    assert_eq!(transports(&state), [("s1".to_owned(), Some(Transport::Polling)), ("s2".to_owned(), None)]);
    let snapshot = a.next(PresenceEventKind::Snapshot {
        snapshot: "x".into(),
        part: 0,
        last: true,
        sessions: ["s1", "s2"]
            .into_iter()
            .map(|socket| SessionState {
                socket: socket.into(),
                user: user("alice"),
                connected_at_ms: 1,
                rooms: vec![],
                transport: Some(Transport::Websocket),
            })
            .collect(),
    });
    assert!(run(&mut state, vec![snapshot]).is_empty(), "no transition for a transport change");
    assert_eq!(
        transports(&state),
        [("s1".to_owned(), Some(Transport::Websocket)), ("s2".to_owned(), Some(Transport::Websocket))]
    );
}
