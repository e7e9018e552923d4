//! The presence state machine: a pure, deterministic fold of the presence
//! stream.
//!
//! Every replica applies the same stream in the same order through
//! [`State::apply`], so every replica holds the same state and computes the
//! same [`Transition`]s at each stream sequence. Nothing here looks at a
//! clock, the network or the replica's role.
//!
//! Per edge the state keeps the current incarnation and its last applied
//! `seq`. Events are applied per incarnation in `seq` order: a duplicate is
//! ignored, an event that overtook a missing one waits in `held` until the
//! gap fills (or until a snapshot makes the gap moot), an event of an older
//! incarnation is ignored, and an event of a newer incarnation first ends
//! the old one (no ghosts after a restart with the same edge id). A complete
//! snapshot replaces what is known of the edge, producing transitions only
//! for real differences.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use sb_events::client::PublicUser;
use sb_events::presence::{PresenceEvent, PresenceEventKind, SessionState, Transport};

/// Events held back waiting for a missing `seq`, per edge, before the state
/// gives up on the gap (applies them anyway and asks for a snapshot).
const HELD_MAX: usize = 10_000;

/// Who is told about users coming and going (`PRESENCE_SCOPE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Scope {
    /// `user_online` / `user_offline` to every connected socket (the seed's rule).
    #[default]
    All,
    /// Only to users that share a room with the user.
    Rooms,
    /// Not at all (rooms still get `user_joined` / `user_left`).
    None,
}

/// What changed for a user.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Change {
    /// First socket anywhere.
    Online,
    /// Last socket anywhere gone.
    Offline,
    /// First socket of the user in `room`.
    Joined(String),
    /// Last socket of the user in `room` gone.
    Left(String),
}

/// One transition, computed while applying stream sequence `seq`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    /// The presence stream sequence whose event caused it.
    pub seq: u64,
    /// When it happened (the event's `at_ms`), epoch milliseconds.
    pub at_ms: i64,
    /// Who.
    pub user: PublicUser,
    /// What.
    pub change: Change,
    /// With [`Scope::Rooms`], the users to tell about `Offline` (those that
    /// shared a room with the user); empty otherwise.
    pub recipients: Vec<String>,
}

/// One live socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The user.
    pub user: PublicUser,
    /// Epoch milliseconds.
    pub connected_at_ms: i64,
    /// Rooms the socket is in.
    pub rooms: BTreeSet<String>,
    /// The transport the edge reported (none from older edges).
    pub transport: Option<Transport>,
}

#[derive(Debug, Default)]
struct SnapshotAssembly {
    id: String,
    parts: BTreeMap<u32, Vec<SessionState>>,
    last_part: Option<u32>,
    max_seq: u64,
}

/// What the state knows of one edge.
#[derive(Debug, Default)]
struct EdgeEntry {
    incarnation: String,
    /// Last `seq` applied in order for `incarnation`.
    last_seq: u64,
    sockets: BTreeMap<String, Session>,
    held: BTreeMap<u64, PresenceEvent>,
    /// Known from its `EdgeUp` (seq 1) or a complete snapshot.
    synced: bool,
    /// Declared gone (`EdgeDown`); only a snapshot of the same incarnation revives it.
    down: bool,
    assembly: Option<SnapshotAssembly>,
    /// `at_ms` of the event from which the stream holds this edge's whole
    /// history (its `EdgeUp` or its last complete snapshot).
    history_from_ms: Option<i64>,
}

#[derive(Debug)]
struct UserEntry {
    user: PublicUser,
    sockets: BTreeSet<(String, String)>,
}

/// A read-only view of one edge, for liveness and anti-entropy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeView {
    /// Edge id.
    pub edge: String,
    /// Current incarnation.
    pub incarnation: String,
    /// Last seq applied in order.
    pub last_seq: u64,
    /// Live sockets.
    pub sockets: u64,
    /// Distinct users.
    pub users: u64,
    /// Known from the start or from a snapshot.
    pub synced: bool,
    /// Declared gone.
    pub down: bool,
    /// Events waiting for a gap to fill.
    pub held: usize,
    /// See `EdgeEntry::history_from_ms`.
    pub history_from_ms: Option<i64>,
}

/// One session as reported by [`State::user_sessions`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionView {
    /// Edge id.
    pub edge: String,
    /// Socket id.
    pub socket: String,
    /// Epoch milliseconds.
    pub connected_at_ms: i64,
    /// Rooms.
    pub rooms: Vec<String>,
    /// The transport the edge reported, if it did.
    pub transport: Option<Transport>,
}

/// Totals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Totals {
    /// Online users.
    pub users: u64,
    /// Live sockets.
    pub sockets: u64,
    /// Rooms with at least one member.
    pub rooms: u64,
}

/// The whole presence state.
#[derive(Debug, Default)]
pub struct State {
    scope: Scope,
    edges: HashMap<String, EdgeEntry>,
    users: BTreeMap<String, UserEntry>,
    /// room → user id → (user, sockets of that user in the room)
    rooms: HashMap<String, BTreeMap<String, (PublicUser, usize)>>,
    sockets: u64,
    applied_seq: u64,
}

impl State {
    /// An empty state; `scope` decides which transitions carry recipients.
    pub fn new(scope: Scope) -> Self {
        Self { scope, ..Self::default() }
    }

    /// The last stream sequence applied.
    pub fn applied_seq(&self) -> u64 {
        self.applied_seq
    }

    /// Records that stream sequence `seq` held nothing applicable (an
    /// undecodable message), so waits on it end.
    pub fn skip(&mut self, seq: u64) {
        self.applied_seq = self.applied_seq.max(seq);
    }

    /// Applies the event stored at stream sequence `seq`, appending the
    /// transitions it causes to `out`.
    pub fn apply(&mut self, seq: u64, event: PresenceEvent, out: &mut Vec<Transition>) {
        self.applied_seq = self.applied_seq.max(seq);
        let mut ctx = Ctx { seq, at_ms: event.at_ms, out };

        if let PresenceEventKind::EdgeDown { incarnation } = &event.kind {
            self.edge_down(&event.edge, incarnation, &mut ctx);
            return;
        }

        let current = self.edges.get(&event.edge).map(|entry| entry.incarnation.clone());
        match current {
            None => {
                self.edges.insert(
                    event.edge.clone(),
                    EdgeEntry { incarnation: event.incarnation.clone(), ..EdgeEntry::default() },
                );
            }
            Some(current) if current == event.incarnation => {}
            // UUIDv7 incarnations sort by start time: an event of a newer
            // incarnation means the edge restarted, so the old sessions are gone.
            Some(current) if event.incarnation > current => {
                self.drop_edge_sessions(&event.edge, &mut ctx);
                self.edges.insert(
                    event.edge.clone(),
                    EdgeEntry { incarnation: event.incarnation.clone(), ..EdgeEntry::default() },
                );
            }
            Some(_) => return, // a late event of an incarnation that was replaced
        }

        if let PresenceEventKind::Snapshot { .. } = &event.kind {
            self.snapshot_part(event, &mut ctx);
            return;
        }

        let Some(entry) = self.edges.get_mut(&event.edge) else { return };
        if entry.down || event.seq <= entry.last_seq {
            return;
        }
        let in_order = event.seq == entry.last_seq + 1;
        // The first event seen of an incarnation whose start the stream no
        // longer holds: take it as the start (and ask for a snapshot).
        let first_seen_mid_history = entry.last_seq == 0 && !entry.synced && entry.held.is_empty();
        if in_order || first_seen_mid_history {
            let edge = event.edge.clone();
            self.apply_in_order(event, &mut ctx);
            self.drain_held(&edge, &mut ctx);
            return;
        }
        entry.held.insert(event.seq, event);
        if entry.held.len() > HELD_MAX {
            // The gap is not going to fill: apply what is held and mark the
            // edge unsynced, so replicas ask it for a snapshot.
            entry.synced = false;
            let held = std::mem::take(&mut entry.held);
            for (_, event) in held {
                self.apply_in_order(event, &mut ctx);
            }
        }
    }

    fn drain_held(&mut self, edge: &str, ctx: &mut Ctx<'_>) {
        loop {
            let Some(entry) = self.edges.get_mut(edge) else { return };
            let next = entry.last_seq + 1;
            while entry.held.first_key_value().is_some_and(|(seq, _)| *seq < next) {
                entry.held.pop_first();
            }
            let Some(event) = entry.held.remove(&next) else { return };
            self.apply_in_order(event, ctx);
        }
    }

    /// Applies one event of the edge's current incarnation, in seq order.
    fn apply_in_order(&mut self, event: PresenceEvent, ctx: &mut Ctx<'_>) {
        ctx.at_ms = event.at_ms;
        let edge = event.edge;
        if let Some(entry) = self.edges.get_mut(&edge) {
            entry.last_seq = event.seq;
            if event.seq == 1 && matches!(event.kind, PresenceEventKind::EdgeUp) {
                entry.synced = true;
                entry.history_from_ms = Some(event.at_ms);
            }
        }
        match event.kind {
            PresenceEventKind::EdgeUp | PresenceEventKind::EdgeDown { .. } | PresenceEventKind::Snapshot { .. } => {}
            PresenceEventKind::SessionOpened { socket, user, connected_at_ms, transport } => {
                self.open(&edge, &socket, user, connected_at_ms, transport, ctx);
            }
            PresenceEventKind::SessionClosed { socket } => self.close(&edge, &socket, ctx),
            PresenceEventKind::RoomJoined { socket, room } => self.join(&edge, &socket, &room, ctx),
            PresenceEventKind::RoomLeft { socket, room } => self.leave(&edge, &socket, &room, ctx),
        }
    }

    fn edge_down(&mut self, edge: &str, incarnation: &str, ctx: &mut Ctx<'_>) {
        match self.edges.get(edge) {
            Some(entry) if entry.incarnation == incarnation && entry.down => return,
            Some(entry) if entry.incarnation.as_str() > incarnation => return,
            _ => {}
        }
        self.drop_edge_sessions(edge, ctx);
        self.edges.insert(
            edge.to_owned(),
            EdgeEntry { incarnation: incarnation.to_owned(), down: true, synced: true, ..EdgeEntry::default() },
        );
    }

    fn snapshot_part(&mut self, event: PresenceEvent, ctx: &mut Ctx<'_>) {
        let PresenceEventKind::Snapshot { snapshot, part, last, sessions } = event.kind else { return };
        let Some(entry) = self.edges.get_mut(&event.edge) else { return };
        if event.seq <= entry.last_seq {
            return; // a duplicate, or a snapshot older than what is applied
        }
        let assembly = entry.assembly.get_or_insert_with(SnapshotAssembly::default);
        if assembly.id != snapshot {
            *assembly = SnapshotAssembly { id: snapshot, ..SnapshotAssembly::default() };
        }
        assembly.parts.insert(part, sessions);
        assembly.max_seq = assembly.max_seq.max(event.seq);
        if last {
            assembly.last_part = Some(part);
        }
        let complete =
            assembly.last_part.is_some_and(|last_part| (0..=last_part).all(|part| assembly.parts.contains_key(&part)));
        if !complete {
            return;
        }
        let Some(assembly) = entry.assembly.take() else { return };
        entry.down = false;
        entry.synced = true;
        entry.history_from_ms = Some(event.at_ms);
        entry.last_seq = entry.last_seq.max(assembly.max_seq);
        let sessions: Vec<SessionState> = assembly.parts.into_values().flatten().collect();
        self.replace_edge_sessions(&event.edge, sessions, ctx);
        self.drain_held(&event.edge, ctx);
    }

    /// Makes the edge's sessions exactly `sessions`, with transitions only
    /// for what differs.
    fn replace_edge_sessions(&mut self, edge: &str, sessions: Vec<SessionState>, ctx: &mut Ctx<'_>) {
        let wanted: BTreeMap<String, SessionState> =
            sessions.into_iter().map(|session| (session.socket.clone(), session)).collect();
        let existing: Vec<(String, String)> = self
            .edges
            .get(edge)
            .map(|entry| entry.sockets.iter().map(|(socket, s)| (socket.clone(), s.user.id.clone())).collect())
            .unwrap_or_default();
        // Opens first, closes last: a user moving between sockets of this
        // edge never looks offline in between.
        for session in wanted.values() {
            let keep_user = existing.iter().any(|(socket, user)| socket == &session.socket && user == &session.user.id);
            if !keep_user {
                self.close(edge, &session.socket, ctx);
                self.open(edge, &session.socket, session.user.clone(), session.connected_at_ms, session.transport, ctx);
            } else if let Some(transport) = session.transport
                && let Some(kept) = self.edges.get_mut(edge).and_then(|entry| entry.sockets.get_mut(&session.socket))
            {
                // A snapshot says what the socket uses now (it may have upgraded).
                kept.transport = Some(transport);
            }
            for room in &session.rooms {
                self.join(edge, &session.socket, room, ctx);
            }
            let current_rooms: Vec<String> = self
                .edges
                .get(edge)
                .and_then(|entry| entry.sockets.get(&session.socket))
                .map(|s| s.rooms.iter().cloned().collect())
                .unwrap_or_default();
            for room in current_rooms {
                if !session.rooms.contains(&room) {
                    self.leave(edge, &session.socket, &room, ctx);
                }
            }
        }
        for (socket, _) in existing {
            if !wanted.contains_key(&socket) {
                self.close(edge, &socket, ctx);
            }
        }
    }

    fn drop_edge_sessions(&mut self, edge: &str, ctx: &mut Ctx<'_>) {
        let sockets: Vec<String> =
            self.edges.get(edge).map(|entry| entry.sockets.keys().cloned().collect()).unwrap_or_default();
        for socket in sockets {
            self.close(edge, &socket, ctx);
        }
    }

    fn open(
        &mut self,
        edge: &str,
        socket: &str,
        user: PublicUser,
        connected_at_ms: i64,
        transport: Option<Transport>,
        ctx: &mut Ctx<'_>,
    ) {
        let Some(entry) = self.edges.get_mut(edge) else { return };
        if let Some(existing) = entry.sockets.get(socket) {
            if existing.user.id == user.id {
                return;
            }
            self.close(edge, socket, ctx);
        }
        let Some(entry) = self.edges.get_mut(edge) else { return };
        entry.sockets.insert(
            socket.to_owned(),
            Session { user: user.clone(), connected_at_ms, rooms: BTreeSet::new(), transport },
        );
        self.sockets += 1;
        let key = (edge.to_owned(), socket.to_owned());
        match self.users.get_mut(&user.id) {
            Some(known) => {
                known.sockets.insert(key);
            }
            None => {
                self.users.insert(user.id.clone(), UserEntry { user: user.clone(), sockets: BTreeSet::from([key]) });
                ctx.push(user, Change::Online, Vec::new());
            }
        }
    }

    fn close(&mut self, edge: &str, socket: &str, ctx: &mut Ctx<'_>) {
        let Some(session) = self.edges.get(edge).and_then(|entry| entry.sockets.get(socket)).cloned() else {
            return;
        };
        let user_id = session.user.id.clone();
        let last_socket = self.users.get(&user_id).is_none_or(|entry| entry.sockets.len() <= 1);
        let recipients = if last_socket && self.scope == Scope::Rooms {
            self.co_members(&user_id, &session.rooms)
        } else {
            Vec::new()
        };
        for room in &session.rooms {
            self.leave(edge, socket, room, ctx);
        }
        if let Some(entry) = self.edges.get_mut(edge) {
            entry.sockets.remove(socket);
        }
        self.sockets = self.sockets.saturating_sub(1);
        if let Some(entry) = self.users.get_mut(&user_id) {
            entry.sockets.remove(&(edge.to_owned(), socket.to_owned()));
            if entry.sockets.is_empty()
                && let Some(entry) = self.users.remove(&user_id)
            {
                ctx.push(entry.user, Change::Offline, recipients);
            }
        }
    }

    fn co_members(&self, user_id: &str, rooms: &BTreeSet<String>) -> Vec<String> {
        let mut recipients = BTreeSet::new();
        for room in rooms {
            if let Some(members) = self.rooms.get(room) {
                recipients.extend(members.keys().filter(|id| id.as_str() != user_id).cloned());
            }
        }
        recipients.into_iter().collect()
    }

    fn join(&mut self, edge: &str, socket: &str, room: &str, ctx: &mut Ctx<'_>) {
        let Some(session) = self.edges.get_mut(edge).and_then(|entry| entry.sockets.get_mut(socket)) else {
            return;
        };
        if !session.rooms.insert(room.to_owned()) {
            return;
        }
        let user = session.user.clone();
        let members = self.rooms.entry(room.to_owned()).or_default();
        let member = members.entry(user.id.clone()).or_insert_with(|| (user.clone(), 0));
        member.1 += 1;
        if member.1 == 1 {
            ctx.push(user, Change::Joined(room.to_owned()), Vec::new());
        }
    }

    fn leave(&mut self, edge: &str, socket: &str, room: &str, ctx: &mut Ctx<'_>) {
        let Some(session) = self.edges.get_mut(edge).and_then(|entry| entry.sockets.get_mut(socket)) else {
            return;
        };
        if !session.rooms.remove(room) {
            return;
        }
        let user = session.user.clone();
        let Some(members) = self.rooms.get_mut(room) else { return };
        let mut gone = false;
        if let Some(member) = members.get_mut(&user.id) {
            member.1 = member.1.saturating_sub(1);
            gone = member.1 == 0;
        }
        if gone {
            members.remove(&user.id);
            if members.is_empty() {
                self.rooms.remove(room);
            }
            ctx.push(user, Change::Left(room.to_owned()), Vec::new());
        }
    }

    // --- reads ---

    /// Totals.
    pub fn totals(&self) -> Totals {
        Totals { users: self.users.len() as u64, sockets: self.sockets, rooms: self.rooms.len() as u64 }
    }

    /// Edges known and not declared dead.
    pub fn live_edges(&self) -> usize {
        self.edges.values().filter(|entry| !entry.down).count()
    }

    /// Online users ordered by id, after `after` (exclusive), at most `limit`;
    /// and whether more follow.
    pub fn online_page(&self, after: Option<&str>, limit: usize) -> (Vec<PublicUser>, bool) {
        let range = match after {
            Some(after) => self.users.range::<str, _>((std::ops::Bound::Excluded(after), std::ops::Bound::Unbounded)),
            None => self.users.range::<str, _>(..),
        };
        let mut page: Vec<PublicUser> = range.take(limit + 1).map(|(_, entry)| entry.user.clone()).collect();
        let more = page.len() > limit;
        page.truncate(limit);
        (page, more)
    }

    /// Members of `room` ordered by id, after `after`, at most `limit`; whether
    /// more follow; and the member count.
    pub fn room_page(&self, room: &str, after: Option<&str>, limit: usize) -> (Vec<PublicUser>, bool, u64) {
        let Some(members) = self.rooms.get(room) else { return (Vec::new(), false, 0) };
        let range = match after {
            Some(after) => members.range::<str, _>((std::ops::Bound::Excluded(after), std::ops::Bound::Unbounded)),
            None => members.range::<str, _>(..),
        };
        let mut page: Vec<PublicUser> = range.take(limit + 1).map(|(_, (user, _))| user.clone()).collect();
        let more = page.len() > limit;
        page.truncate(limit);
        (page, more, members.len() as u64)
    }

    /// Whether `user_id` has a socket anywhere.
    pub fn is_online(&self, user_id: &str) -> bool {
        self.users.contains_key(user_id)
    }

    /// The edges holding `user_id`'s sockets, with how many each holds
    /// (empty when the user is offline).
    pub fn locate(&self, user_id: &str) -> Vec<(&str, u32)> {
        let mut edges: Vec<(&str, u32)> = Vec::new();
        if let Some(entry) = self.users.get(user_id) {
            // Ordered by (edge, socket): one edge's sockets are adjacent.
            for (edge, _) in &entry.sockets {
                match edges.last_mut() {
                    Some((last, count)) if *last == edge.as_str() => *count += 1,
                    _ => edges.push((edge.as_str(), 1)),
                }
            }
        }
        edges
    }

    /// A user's public identity (when online) and sessions.
    pub fn user_sessions(&self, user_id: &str) -> Option<(PublicUser, Vec<SessionView>)> {
        let entry = self.users.get(user_id)?;
        let sessions = entry
            .sockets
            .iter()
            .filter_map(|(edge, socket)| {
                let session = self.edges.get(edge)?.sockets.get(socket)?;
                Some(SessionView {
                    edge: edge.clone(),
                    socket: socket.clone(),
                    connected_at_ms: session.connected_at_ms,
                    rooms: session.rooms.iter().cloned().collect(),
                    transport: session.transport,
                })
            })
            .collect();
        Some((entry.user.clone(), sessions))
    }

    /// Every edge the state knows, ordered by id.
    pub fn edges(&self) -> Vec<EdgeView> {
        let mut views: Vec<EdgeView> = self.edges.iter().map(|(edge, entry)| EdgeView::of(edge, entry)).collect();
        views.sort_by(|a, b| a.edge.cmp(&b.edge));
        views
    }

    /// One edge's view.
    pub fn edge(&self, edge: &str) -> Option<EdgeView> {
        self.edges.get(edge).map(|entry| EdgeView::of(edge, entry))
    }
}

impl EdgeView {
    fn of(edge: &str, entry: &EdgeEntry) -> Self {
        Self {
            edge: edge.to_owned(),
            incarnation: entry.incarnation.clone(),
            last_seq: entry.last_seq,
            sockets: entry.sockets.len() as u64,
            users: entry.sockets.values().map(|s| s.user.id.as_str()).collect::<BTreeSet<_>>().len() as u64,
            synced: entry.synced,
            down: entry.down,
            held: entry.held.len(),
            history_from_ms: entry.history_from_ms,
        }
    }
}

struct Ctx<'a> {
    seq: u64,
    at_ms: i64,
    out: &'a mut Vec<Transition>,
}

impl Ctx<'_> {
    fn push(&mut self, user: PublicUser, change: Change, recipients: Vec<String>) {
        self.out.push(Transition { seq: self.seq, at_ms: self.at_ms, user, change, recipients });
    }
}

/// Cancels transitions that undo each other within one window and keeps
/// the rest in order (of each key's last transition). Transitions of one
/// key (a user's online state, or a user's membership of one room) always
/// alternate, so an even number of them is no change at all and an odd
/// number is the last one.
pub fn coalesce(transitions: impl IntoIterator<Item = Transition>) -> Vec<Transition> {
    coalesce_keys(transitions, true)
}

/// Like [`coalesce`], but only for online/offline changes: room joins and
/// leaves are all kept, in order. A user whose last socket went and who came
/// back within one window (a reconnect, or a socket moving between edges
/// whose reports crossed) is not announced going offline and online again.
pub fn coalesce_presence(transitions: impl IntoIterator<Item = Transition>) -> Vec<Transition> {
    coalesce_keys(transitions, false)
}

fn coalesce_keys(transitions: impl IntoIterator<Item = Transition>, rooms_too: bool) -> Vec<Transition> {
    #[derive(Hash, PartialEq, Eq)]
    enum Key {
        Presence(String),
        Room(String, String),
    }
    let transitions: VecDeque<Transition> = transitions.into_iter().collect();
    let key_of = |t: &Transition| match &t.change {
        Change::Online | Change::Offline => Key::Presence(t.user.id.clone()),
        Change::Joined(room) | Change::Left(room) => Key::Room(room.clone(), t.user.id.clone()),
    };
    let mut counts: HashMap<Key, (usize, usize)> = HashMap::new();
    for (index, transition) in transitions.iter().enumerate() {
        let entry = counts.entry(key_of(transition)).or_insert((0, index));
        entry.0 += 1;
        entry.1 = index;
    }
    transitions
        .into_iter()
        .enumerate()
        .filter(|(index, transition)| {
            if !rooms_too && matches!(transition.change, Change::Joined(_) | Change::Left(_)) {
                return true;
            }
            let (count, last) = counts[&key_of(transition)];
            count % 2 == 1 && last == *index
        })
        .map(|(_, transition)| transition)
        .collect()
}

#[cfg(test)]
mod tests;
