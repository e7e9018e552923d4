//! Where private recipients are connected: presence's `Locate` answers, kept
//! by this replica (`LOCATE_CACHE_TTL`) and forgotten as soon as the presence
//! stream says the user's sessions changed.
//!
//! Without it every ingest batch with a private message costs one presence
//! request and reply: two NATS round trips and a wake-up of three processes,
//! a quarter of the stack's CPU per private message (docs/performance.md).
//!
//! Why a kept answer is never older than presence's own view:
//! - [`run_watcher`] reads the presence stream (an ordered consumer from the
//!   stream's end, like a presence replica but without its state) and
//!   forgets a user at every event that can change where it is: a session
//!   opened (by user), a session closed (by the socket's user when the open
//!   was seen here, else every user placed on that edge), and an edge's
//!   start, stop or snapshot (everything). It records the stream sequence of
//!   the last event it applied.
//! - presence's answer carries the sequence its replica had applied
//!   ([`Locations::applied_seq`]); an answer is kept only when that is at
//!   least the last sequence applied here, i.e. it already reflects every
//!   event this cache has acted on. Events after it are applied here later
//!   and forget what they change.
//! - Nothing is kept while the watcher is not reading (presence stream not
//!   there yet, NATS failures): the batch then asks presence, as without the
//!   cache. A kept entry also expires after the TTL, which bounds the one
//!   case the rules above do not cover (an edge's event that presence holds
//!   back until a gap in that edge's sequence fills).
//!
//! Both "online at these edges" and "offline" answers are kept: an offline
//! user's next connect is a `session_opened` event, which forgets it.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use parking_lot::Mutex;
use sb_events::bus::Bus;
use sb_events::presence::{EdgeSockets, Locations, PresenceEvent, PresenceEventKind, PresenceQuery};
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// Most users kept; past it the cache starts over (a bound, not an LRU).
const MAX_USERS: usize = 200_000;
/// Most socket → user pairs remembered for `session_closed` events; past it a
/// close of an unknown socket forgets every user of its edge.
const MAX_SOCKETS: usize = 1_000_000;
/// Wait before reading the presence stream again after a failure.
const RETRY: Duration = Duration::from_secs(1);

/// One user's last known place: empty = offline.
#[derive(Debug)]
struct Entry {
    edges: Vec<EdgeSockets>,
    until: Instant,
}

#[derive(Debug, Default)]
struct State {
    /// Whether the watcher is reading the presence stream; nothing is kept otherwise.
    watching: bool,
    /// Stream sequence of the last presence event applied here.
    seen_seq: u64,
    users: HashMap<String, Entry>,
    /// Edge → socket → user, from the `session_opened` events seen here.
    sockets: HashMap<String, HashMap<String, String>>,
    socket_count: usize,
}

impl State {
    fn clear(&mut self) {
        self.users.clear();
        self.sockets.clear();
        self.socket_count = 0;
    }

    fn forget_edge_users(&mut self, edge: &str) -> usize {
        let before = self.users.len();
        self.users.retain(|_, entry| !entry.edges.iter().any(|place| place.edge == edge));
        before - self.users.len()
    }
}

/// Presence's answers about where users are, kept while still true.
#[derive(Debug)]
pub struct LocateCache {
    ttl: Duration,
    metrics: Metrics,
    state: Mutex<State>,
}

impl LocateCache {
    /// A cache keeping answers for `ttl` at most; zero keeps nothing.
    pub fn new(ttl: Duration, metrics: Metrics) -> Self {
        Self { ttl, metrics, state: Mutex::new(State::default()) }
    }

    /// Whether answers are kept at all (`LOCATE_CACHE_TTL` is not zero).
    pub fn enabled(&self) -> bool {
        !self.ttl.is_zero()
    }

    /// The kept places of `users`: the online ones into the returned map,
    /// and the users nothing is known of (to ask presence about).
    pub fn lookup(&self, users: Vec<String>, now: Instant) -> (BTreeMap<String, Vec<EdgeSockets>>, Vec<String>) {
        let mut known = BTreeMap::new();
        if !self.enabled() {
            self.metrics.locate_cache_misses.inc_by(users.len() as u64);
            return (known, users);
        }
        let asked = users.len();
        let mut unknown = Vec::new();
        {
            let state = self.state.lock();
            for user in users {
                match state.users.get(&user) {
                    Some(entry) if state.watching && entry.until > now => {
                        if !entry.edges.is_empty() {
                            known.insert(user, entry.edges.clone());
                        }
                    }
                    _ => unknown.push(user),
                }
            }
        }
        self.metrics.locate_cache_hits.inc_by((asked - unknown.len()) as u64);
        self.metrics.locate_cache_misses.inc_by(unknown.len() as u64);
        (known, unknown)
    }

    /// Keeps presence's `answer` about `asked` (asked at `asked_at`) if it
    /// reflects every event this cache has acted on.
    pub fn keep(&self, asked: &[String], answer: &Locations, asked_at: Instant) {
        let Some(applied_seq) = answer.applied_seq else { return };
        if !self.enabled() {
            return;
        }
        let mut state = self.state.lock();
        if !state.watching || applied_seq < state.seen_seq {
            tracing::trace!(
                applied_seq,
                seen_seq = state.seen_seq,
                watching = state.watching,
                "presence's answer is not kept"
            );
            return;
        }
        if state.users.len() + asked.len() > MAX_USERS {
            state.users.retain(|_, entry| entry.until > asked_at);
            if state.users.len() + asked.len() > MAX_USERS {
                state.users.clear();
            }
        }
        let until = asked_at + self.ttl;
        for user in asked {
            let edges = answer.users.get(user).cloned().unwrap_or_default();
            state.users.insert(user.clone(), Entry { edges, until });
        }
    }

    /// The watcher reads the presence stream from after `seq`: everything
    /// kept so far is dropped (events before it were not seen).
    fn start_watching(&self, seq: u64) {
        let mut state = self.state.lock();
        state.clear();
        state.watching = true;
        state.seen_seq = seq;
    }

    /// The watcher stopped reading: keep nothing until it reads again.
    fn stop_watching(&self) {
        let mut state = self.state.lock();
        state.clear();
        state.watching = false;
    }

    /// Applies the presence event at stream sequence `seq` (`None`: a
    /// message that is not a presence event), forgetting what it changes.
    fn apply(&self, seq: u64, event: Option<&PresenceEvent>) {
        let mut state = self.state.lock();
        state.seen_seq = state.seen_seq.max(seq);
        let Some(event) = event else { return };
        let forgotten = match &event.kind {
            PresenceEventKind::SessionOpened { socket, user, .. } => {
                if state.socket_count < MAX_SOCKETS {
                    let previous =
                        state.sockets.entry(event.edge.clone()).or_default().insert(socket.clone(), user.id.clone());
                    if previous.is_none() {
                        state.socket_count += 1;
                    }
                }
                usize::from(state.users.remove(&user.id).is_some())
            }
            PresenceEventKind::SessionClosed { socket } => {
                let user = state.sockets.get_mut(&event.edge).and_then(|sockets| sockets.remove(socket));
                match user {
                    Some(user) => {
                        state.socket_count -= 1;
                        usize::from(state.users.remove(&user).is_some())
                    }
                    None => state.forget_edge_users(&event.edge),
                }
            }
            PresenceEventKind::RoomJoined { .. } | PresenceEventKind::RoomLeft { .. } => 0,
            PresenceEventKind::EdgeUp | PresenceEventKind::EdgeDown { .. } | PresenceEventKind::Snapshot { .. } => {
                let forgotten = state.users.len();
                if let Some(sockets) = state.sockets.remove(&event.edge) {
                    state.socket_count -= sockets.len();
                }
                state.users.clear();
                forgotten
            }
        };
        drop(state);
        self.metrics.locate_cache_forgotten.inc_by(forgotten as u64);
    }
}

/// Where `users` are: the kept places, and presence's answer for the rest
/// (one question), which is kept in turn. When presence does not answer,
/// the error comes with the kept places (the rest count as nowhere).
pub async fn locate(
    bus: &Bus,
    cache: &LocateCache,
    timeout: Duration,
    users: Vec<String>,
) -> Result<Locations, (sb_events::bus::BusError, Locations)> {
    let (mut known, unknown) = cache.lookup(users, Instant::now());
    if unknown.is_empty() {
        return Ok(Locations { users: known, applied_seq: None });
    }
    let mut presence = bus.clone();
    presence.request_timeout = timeout;
    let asked_at = Instant::now();
    let query = PresenceQuery::Locate { users: unknown.clone() };
    match presence.request::<_, Locations>(presence.subjects.presence_query(), &query).await {
        Ok(answer) => {
            cache.keep(&unknown, &answer, asked_at);
            known.extend(answer.users);
            Ok(Locations { users: known, applied_seq: answer.applied_seq })
        }
        Err(error) => Err((error, Locations { users: known, applied_seq: None })),
    }
}

/// Reads the presence stream for [`LocateCache`] until `cancel`, starting
/// over (and keeping nothing meanwhile) after a failure.
pub async fn run_watcher(bus: Bus, cache: std::sync::Arc<LocateCache>, cancel: CancellationToken) {
    if !cache.enabled() {
        return;
    }
    let mut failures = 0u32;
    loop {
        let outcome = watch(&bus, &cache, &cancel, &mut failures).await;
        cache.stop_watching();
        match outcome {
            Ok(()) => return,
            Err(error) => {
                failures += 1;
                if failures == 1 {
                    tracing::info!(
                        %error,
                        "not reading the presence stream; every batch with a private message asks presence (the locate cache is off until it reads again)"
                    );
                } else {
                    tracing::debug!(%error, failures, "still not reading the presence stream");
                }
            }
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(RETRY) => {}
        }
    }
}

async fn watch(
    bus: &Bus,
    cache: &LocateCache,
    cancel: &CancellationToken,
    failures: &mut u32,
) -> Result<(), async_nats::Error> {
    let last = bus.presence_stream_last_seq().await?;
    let mut messages = bus.presence_events_from(last + 1).await?;
    cache.start_watching(last);
    tracing::debug!(from_seq = last + 1, "reading the presence stream for the locate cache");
    if *failures > 0 {
        tracing::info!("reading the presence stream again; the locate cache is on");
        *failures = 0;
    }
    loop {
        let message = tokio::select! {
            () = cancel.cancelled() => return Ok(()),
            message = messages.next() => match message {
                Some(message) => message?,
                None => return Err("presence stream consumer ended".into()),
            },
        };
        let seq = message.info()?.stream_sequence;
        let event = serde_json::from_slice::<PresenceEvent>(&message.payload).ok();
        cache.apply(seq, event.as_ref());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sb_events::client::PublicUser;

    fn cache() -> LocateCache {
        let mut registry = prometheus_client::registry::Registry::default();
        let cache = LocateCache::new(Duration::from_secs(60), Metrics::register(&mut registry));
        cache.start_watching(10);
        cache
    }

    fn place(edge: &str) -> EdgeSockets {
        EdgeSockets { edge: edge.to_owned(), sockets: 1, edge_delivery: true }
    }

    fn answer(applied_seq: u64, online: &[(&str, &str)]) -> Locations {
        Locations {
            users: online.iter().map(|(user, edge)| ((*user).to_owned(), vec![place(edge)])).collect(),
            applied_seq: Some(applied_seq),
        }
    }

    fn event(edge: &str, kind: PresenceEventKind) -> PresenceEvent {
        PresenceEvent { edge: edge.to_owned(), incarnation: "i".to_owned(), seq: 1, at_ms: 0, kind }
    }

    fn opened(edge: &str, socket: &str, user: &str) -> PresenceEvent {
        event(
            edge,
            PresenceEventKind::SessionOpened {
                socket: socket.to_owned(),
                user: PublicUser { id: user.to_owned(), email: format!("{user}@example.com") },
                connected_at_ms: 0,
                transport: None,
            },
        )
    }

    fn closed(edge: &str, socket: &str) -> PresenceEvent {
        event(edge, PresenceEventKind::SessionClosed { socket: socket.to_owned() })
    }

    fn names(users: &[&str]) -> Vec<String> {
        users.iter().map(|user| (*user).to_owned()).collect()
    }

    fn unknown_of(cache: &LocateCache, users: &[&str]) -> Vec<String> {
        cache.lookup(names(users), Instant::now()).1
    }

    #[test]
    fn keeps_online_and_offline_answers() {
        let cache = cache();
        cache.keep(&names(&["bob", "carol"]), &answer(10, &[("bob", "e1")]), Instant::now());
        let (known, unknown) = cache.lookup(names(&["bob", "carol", "dave"]), Instant::now());
        assert_eq!(known.get("bob"), Some(&vec![place("e1")]));
        assert!(!known.contains_key("carol"), "carol is known to be offline");
        assert_eq!(unknown, ["dave"]);
    }

    #[test]
    fn an_answer_older_than_an_event_seen_here_is_not_kept() {
        let cache = cache();
        cache.apply(12, Some(&closed("e1", "s-bob")));
        cache.keep(&names(&["bob"]), &answer(11, &[("bob", "e1")]), Instant::now());
        assert_eq!(unknown_of(&cache, &["bob"]), ["bob"]);
        cache.keep(&names(&["bob"]), &answer(12, &[]), Instant::now());
        assert!(unknown_of(&cache, &["bob"]).is_empty());
        let without_seq = Locations { applied_seq: None, ..answer(99, &[("carol", "e1")]) };
        cache.keep(&names(&["carol"]), &without_seq, Instant::now());
        assert_eq!(unknown_of(&cache, &["carol"]), ["carol"], "an older presence's answer is not kept");
    }

    #[test]
    fn session_events_forget_the_user() {
        let cache = cache();
        cache.apply(11, Some(&opened("e1", "s1", "bob")));
        cache.keep(&names(&["bob", "carol", "dave"]), &answer(11, &[("bob", "e1"), ("dave", "e2")]), Instant::now());
        // bob's socket closes: only bob is forgotten.
        cache.apply(12, Some(&closed("e1", "s1")));
        assert_eq!(unknown_of(&cache, &["bob", "carol", "dave"]), ["bob"]);
        // carol (kept as offline) connects.
        cache.apply(13, Some(&opened("e2", "s2", "carol")));
        assert_eq!(unknown_of(&cache, &["carol", "dave"]), ["carol"]);
        // A socket opened before this cache watched closes: every user of that edge goes.
        cache.keep(&names(&["bob", "carol"]), &answer(13, &[("carol", "e2")]), Instant::now());
        cache.apply(14, Some(&closed("e2", "unknown-socket")));
        assert_eq!(unknown_of(&cache, &["bob", "carol", "dave"]), ["carol", "dave"]);
        // A joined room changes nothing.
        let joined = event("e1", PresenceEventKind::RoomJoined { socket: "s1".into(), room: "r".into() });
        cache.apply(15, Some(&joined));
        assert!(unknown_of(&cache, &["bob"]).is_empty());
    }

    #[test]
    fn edge_lifecycle_and_watcher_restarts_forget_everything() {
        let cache = cache();
        for kind in [
            PresenceEventKind::EdgeUp,
            PresenceEventKind::EdgeDown { incarnation: "i".into() },
            PresenceEventKind::Snapshot { snapshot: "x".into(), part: 0, last: true, sessions: Vec::new() },
        ] {
            cache.keep(&names(&["bob"]), &answer(20, &[("bob", "e1")]), Instant::now());
            assert!(unknown_of(&cache, &["bob"]).is_empty());
            cache.apply(20, Some(&event("e9", kind)));
            assert_eq!(unknown_of(&cache, &["bob"]), ["bob"]);
        }
        cache.keep(&names(&["bob"]), &answer(20, &[("bob", "e1")]), Instant::now());
        cache.stop_watching();
        assert_eq!(unknown_of(&cache, &["bob"]), ["bob"]);
        cache.keep(&names(&["bob"]), &answer(20, &[("bob", "e1")]), Instant::now());
        assert_eq!(unknown_of(&cache, &["bob"]), ["bob"], "nothing is kept while not watching");
    }

    #[test]
    fn entries_expire_and_a_zero_ttl_keeps_nothing() {
        let cache = cache();
        let long_ago = Instant::now() - Duration::from_secs(61);
        cache.keep(&names(&["bob"]), &answer(10, &[("bob", "e1")]), long_ago);
        assert_eq!(unknown_of(&cache, &["bob"]), ["bob"]);

        let mut registry = prometheus_client::registry::Registry::default();
        let off = LocateCache::new(Duration::ZERO, Metrics::register(&mut registry));
        off.start_watching(0);
        off.keep(&names(&["bob"]), &answer(10, &[("bob", "e1")]), Instant::now());
        assert_eq!(unknown_of(&off, &["bob"]), ["bob"]);
    }
}
