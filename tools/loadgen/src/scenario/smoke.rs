//! `smoke`: functional checks of the gateway protocol, usable against any
//! implementation (the NestJS baseline or Switchboard's edge): the three
//! token placements and six rejections, `ping`, presence, rooms, private
//! messages, broadcast, online users, error shapes and admin broadcast.
//!
//! The same checks as the shared loadgen's smoke. A check marked
//! informational reports a difference without failing the run. Presence
//! checks need presence broadcast to everyone (Switchboard:
//! `PRESENCE_SCOPE=all`).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::accounting::Snapshot;
use crate::client::{ConnectError, Connection, Ctx, TokenPlacement};
use crate::protocol::{self, AckIds, Packet};
use crate::record::Outcome;
use crate::scenario::Results;
use crate::token::{TokenMinter, TokenSpec};
use crate::{Error, RunSettings, progress};

/// `smoke` settings.
#[derive(Debug, Clone, clap::Args, Serialize)]
pub struct SmokeSettings {
    /// First user number the checks use (u<base+1>..u<base+4>; the admin is the next multiple of 1000).
    #[arg(long, default_value_t = 11)]
    pub base: u64,
    /// Longest wait for something that should arrive, ms.
    #[arg(long, default_value_t = 2000)]
    pub wait_ms: u64,
    /// How long to watch for something that should not arrive, ms.
    #[arg(long, default_value_t = 300)]
    pub quiet_ms: u64,
}

impl Default for SmokeSettings {
    fn default() -> Self {
        Self { base: 11, wait_ms: 2000, quiet_ms: 300 }
    }
}

/// One check.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// Its name.
    pub name: String,
    /// Whether it passed.
    pub ok: bool,
    /// A failure here does not fail the run.
    pub informational: bool,
    /// What was seen.
    pub detail: String,
}

/// What `smoke` found.
#[derive(Debug, Clone, Serialize)]
pub struct SmokeResults {
    /// Checks that passed.
    pub passed: usize,
    /// Checks that failed (informational ones not counted).
    pub failed: usize,
    /// Every check in order.
    pub checks: Vec<Check>,
}

/// A decoded packet kept for later expectations.
#[derive(Debug, Clone)]
enum Received {
    Event { name: String, data: Value },
    Ack { id: u64, data: Value },
}

/// A test client that buffers what it has not been asked for yet.
struct Client {
    connection: Connection,
    buffered: VecDeque<Received>,
    ack_ids: AckIds,
}

impl Client {
    async fn open(ctx: &Ctx, token: Option<&str>, placement: TokenPlacement) -> Result<Self, ConnectError> {
        let connection = Connection::open(ctx, ctx.source_ip(0), token, placement).await?;
        Ok(Self { connection, buffered: VecDeque::new(), ack_ids: AckIds::default() })
    }

    async fn emit(&mut self, event: &str, data: Value) {
        let _ = self.connection.send(protocol::event_frame(event, &data, None)).await;
    }

    async fn emit_with_ack(&mut self, event: &str, data: Value) -> u64 {
        let id = self.ack_ids.next_id();
        let _ = self.connection.send(protocol::event_frame(event, &data, Some(id))).await;
        id
    }

    /// Reads (answering pings) for at most `wait` until `wanted` matches.
    async fn take(&mut self, wait: Duration, wanted: &dyn Fn(&Received) -> bool) -> Option<Received> {
        if let Some(position) = self.buffered.iter().position(wanted) {
            return self.buffered.remove(position);
        }
        let until = Instant::now() + wait;
        loop {
            let frame = tokio::time::timeout_at(until, self.connection.recv()).await.ok()?.ok()?;
            if self.connection.answer_ping(&frame).await.ok()? {
                continue;
            }
            let received = match Packet::parse(&frame) {
                Packet::Event { name, array, .. } => {
                    Received::Event { name: name.into_owned(), data: protocol::first_arg(array, true) }
                }
                Packet::Ack { id, array } => Received::Ack { id, data: protocol::first_arg(array, false) },
                _ => continue,
            };
            if wanted(&received) {
                return Some(received);
            }
            self.buffered.push_back(received);
        }
    }

    async fn event(&mut self, name: &str, wait: Duration, matches: &dyn Fn(&Value) -> bool) -> Option<Value> {
        let wanted = |r: &Received| matches!(r, Received::Event { name: n, data } if n == name && matches(data));
        match self.take(wait, &wanted).await {
            Some(Received::Event { data, .. }) => Some(data),
            _ => None,
        }
    }

    async fn ack(&mut self, id: u64, wait: Duration) -> Option<Value> {
        let wanted = |r: &Received| matches!(r, Received::Ack { id: i, .. } if *i == id);
        match self.take(wait, &wanted).await {
            Some(Received::Ack { data, .. }) => Some(data),
            _ => None,
        }
    }
}

#[derive(Default)]
struct Checks {
    list: Vec<Check>,
}

impl Checks {
    fn add(&mut self, name: &str, ok: bool, detail: impl Into<String>) {
        self.push(name, ok, false, detail.into());
    }

    fn info(&mut self, name: &str, ok: bool, detail: impl Into<String>) {
        self.push(name, ok, true, detail.into());
    }

    fn push(&mut self, name: &str, ok: bool, informational: bool, detail: String) {
        let verdict = if ok {
            "PASS"
        } else if informational {
            "INFO"
        } else {
            "FAIL"
        };
        eprintln!("{verdict} {name}: {detail}");
        self.list.push(Check { name: name.to_owned(), ok, informational, detail });
    }

    fn results(self) -> SmokeResults {
        let passed = self.list.iter().filter(|check| check.ok).count();
        let failed = self.list.iter().filter(|check| !check.ok && !check.informational).count();
        SmokeResults { passed, failed, checks: self.list }
    }
}

fn text<'a>(value: &'a Value, path: &[&str]) -> &'a str {
    path.iter().fold(value, |value, key| &value[*key]).as_str().unwrap_or("")
}

/// `{user:{id}}`, `{userId}`, `{id}` or `{from:{id}}` names `id`.
fn names_user(value: &Value, id: &str) -> bool {
    [&["user", "id"][..], &["userId"], &["id"], &["from", "id"]].iter().any(|path| text(value, path) == id)
}

fn short(value: &Option<Value>) -> String {
    value.as_ref().map_or_else(|| "nothing received".to_owned(), |value| value.to_string().chars().take(160).collect())
}

/// Runs `smoke`.
pub(crate) async fn run(ctx: &Arc<Ctx>, run: &RunSettings, settings: &SmokeSettings) -> Result<Outcome, Error> {
    let window_start = Snapshot::take(&run.pids);
    let checks = check_everything(ctx, settings).await?;
    let results = checks.results();
    progress(&ctx.clock, format_args!("smoke: {} passed, {} failed", results.passed, results.failed));
    Ok(Outcome {
        ok: results.failed == 0,
        results: Results::Smoke(results),
        window: (window_start, Snapshot::take(&run.pids)),
        deliveries: None,
        messages: None,
        connects: None,
        connections: None,
        group: "smoke".to_owned(),
    })
}

async fn check_everything(ctx: &Ctx, settings: &SmokeSettings) -> Result<Checks, Error> {
    let wait = Duration::from_millis(settings.wait_ms);
    let quiet = Duration::from_millis(settings.quiet_ms);
    let mut c = Checks::default();
    let base = settings.base;
    let (na, nb, nc, nd) = (base + 1, base + 2, base + 3, base + 4);
    let n_admin = (base / 1000 + 1) * 1000;
    let (ua, ub, ud) = (format!("u{na}"), format!("u{nb}"), format!("u{nd}"));
    let mint = |n: u64| ctx.minter.seeded_user(n, TokenSpec::default());

    // Authentication: three placements.
    let mut ca = match Client::open(ctx, Some(&mint(na)?), TokenPlacement::AuthObject).await {
        Ok(client) => {
            c.add("auth_object", true, "connected with auth {token}");
            client
        }
        Err(error) => {
            c.add("auth_object", false, error.to_string());
            return Ok(c);
        }
    };
    let mut cb = open_check(&mut c, ctx, "auth_query", &mint(nb)?, TokenPlacement::Query).await;
    let mut cc = open_check(&mut c, ctx, "auth_header", &mint(nc)?, TokenPlacement::Header).await;

    let wrong_key = TokenMinter::new(b"definitely-not-the-secret");
    let rejections: [(&str, Option<String>); 6] = [
        ("reject_missing_token", None),
        ("reject_bad_signature", Some(wrong_key.seeded_user(na, TokenSpec::default())?)),
        ("reject_expired", Some(ctx.minter.seeded_user(na, TokenSpec { token_version: 0, expires_in_s: -120 })?)),
        (
            "reject_revoked_token_version",
            Some(ctx.minter.seeded_user(na, TokenSpec { token_version: 1, expires_in_s: 3600 })?),
        ),
        ("reject_unknown_user", Some(ctx.minter.mint("u999999999", "user", TokenSpec::default())?)),
        ("reject_garbage_token", Some("not.a.jwt".to_owned())),
    ];
    for (name, token) in rejections {
        match Client::open(ctx, token.as_deref(), TokenPlacement::AuthObject).await {
            Ok(client) => {
                c.add(name, false, "connection was accepted");
                client.connection.close().await;
            }
            Err(ConnectError::Rejected(payload)) => {
                let has_message = serde_json::from_str::<Value>(&payload).is_ok_and(|v| v["message"].is_string());
                let note = if has_message { "" } else { " (no message field)" };
                c.add(name, true, format!("connect_error {payload}{note}"));
            }
            Err(error) => c.add(name, false, format!("expected connect_error (44), got {error}")),
        }
    }

    ca.emit("ping", json!({})).await;
    let pong = ca.event("pong", wait, &|_| true).await;
    c.add("ping_pong", pong.as_ref().is_some_and(|v| v.to_string().contains(&ua)), short(&pong));

    // Presence: first socket online, second silent, offline only after the last.
    let is_d = |v: &Value| names_user(v, &ud);
    let d1 = Client::open(ctx, Some(&mint(nd)?), TokenPlacement::AuthObject).await.ok();
    let online = ca.event("user_online", wait, &is_d).await;
    c.add("presence_user_online", online.is_some(), short(&online));
    let d2 = Client::open(ctx, Some(&mint(nd)?), TokenPlacement::AuthObject).await.ok();
    let again = ca.event("user_online", quiet, &is_d).await;
    c.add(
        "presence_second_socket_silent",
        again.is_none() && d2.is_some(),
        format!("second socket of {ud}: {}", short(&again)),
    );
    if let Some(d1) = d1 {
        d1.connection.close().await;
    }
    let early = ca.event("user_offline", quiet, &is_d).await;
    c.add("presence_not_offline_while_socket_left", early.is_none(), short(&early));
    if let Some(d2) = d2 {
        d2.connection.close().await;
    }
    let offline = ca.event("user_offline", wait, &is_d).await;
    c.add("presence_user_offline", offline.is_some(), short(&offline));

    // Rooms.
    let room = "smoke-room";
    let id = ca.emit_with_ack("join_room", json!({ "room": room })).await;
    let ack = ca.ack(id, wait).await;
    let exception = ca.event("exception", Duration::from_millis(1), &|_| true).await;
    c.add("join_room", exception.is_none() && ack.is_some(), format!("ack: {}", short(&ack)));
    if let Some(b) = cb.as_mut() {
        b.emit("join_room", json!({ "room": room })).await;
        let joined = ca.event("user_joined", wait, &|v| names_user(v, &ub)).await;
        c.add("user_joined_to_room_members", joined.is_some(), short(&joined));
        b.emit("send_message", json!({ "room": room, "message": "hello room" })).await;
        let message = ca.event("new_message", wait, &|v| v["message"] == "hello room").await;
        let ok = message.as_ref().is_some_and(|v| {
            text(v, &["from", "id"]) == ub
                && text(v, &["from", "email"]) == format!("{ub}@example.com")
                && text(v, &["room"]) == room
                && v["id"].is_string()
                && !v["timestamp"].is_null()
        });
        c.add("room_message_payload", ok, short(&message));
        if let Some(cc) = cc.as_mut() {
            let leak = cc.event("new_message", quiet, &|v| v["message"] == "hello room").await;
            c.add("room_message_not_leaked", leak.is_none(), short(&leak));
            cc.emit("send_message", json!({ "room": room, "message": "outsider" })).await;
            let refused = cc.event("exception", wait, &|_| true).await;
            c.info("room_message_requires_membership", refused.is_some(), short(&refused));
        }
    }

    // Private messages.
    let mut b2 = Client::open(ctx, Some(&mint(nb)?), TokenPlacement::AuthObject).await.ok();
    ca.emit("send_message", json!({ "to": ub, "message": "psst" })).await;
    if let Some(b) = cb.as_mut() {
        let message = b.event("new_message", wait, &|v| v["message"] == "psst").await;
        let ok = message.as_ref().is_some_and(|v| {
            text(v, &["from", "id"]) == ua
                && text(v, &["to"]) == ub
                && text(v, &["from", "email"]) == format!("{ua}@example.com")
        });
        c.add("private_message_payload", ok, short(&message));
    }
    if let Some(b2) = b2.as_mut() {
        let message = b2.event("new_message", wait, &|v| v["message"] == "psst").await;
        c.add("private_message_all_target_sockets", message.is_some(), short(&message));
    }
    if let Some(cc) = cc.as_mut() {
        let leak = cc.event("new_message", quiet, &|v| v["message"] == "psst").await;
        c.add("private_message_not_leaked", leak.is_none(), short(&leak));
    }
    ca.emit("send_message", json!({ "to": "u999999999", "message": "nobody" })).await;
    let refused = ca.event("exception", wait, &|_| true).await;
    c.info("private_message_unknown_user_exception", refused.is_some(), short(&refused));

    // Broadcast to everyone.
    ca.emit("send_message", json!({ "message": "hello all" })).await;
    if let Some(cc) = cc.as_mut() {
        let message = cc.event("new_message", wait, &|v| v["message"] == "hello all").await;
        let ok = message
            .as_ref()
            .is_some_and(|v| text(v, &["from", "id"]) == ua && v.get("room").is_none() && v.get("to").is_none());
        c.add("broadcast_message", ok, short(&message));
    }

    // Online users: a and b listed, d (gone) not.
    let id = ca.emit_with_ack("get_online_users", json!({})).await;
    let ack = ca.ack(id, wait).await;
    let listed = ack.as_ref().is_some_and(|v| {
        let t = v.to_string();
        t.contains(&format!("\"{ua}\"")) && t.contains(&format!("\"{ub}\"")) && !t.contains(&format!("\"{ud}\""))
    });
    c.add("get_online_users", listed, short(&ack));

    // Error shapes and admin broadcast.
    let error_shape = |v: &Value| text(v, &["status"]) == "error" && v["message"].is_string();
    ca.emit("send_message", json!({})).await;
    let refused = ca.event("exception", wait, &|_| true).await;
    c.add("invalid_payload_exception_shape", refused.as_ref().is_some_and(error_shape), short(&refused));
    ca.emit("admin_broadcast", json!({ "message": "not allowed" })).await;
    let refused = ca.event("exception", wait, &|_| true).await;
    c.add("admin_broadcast_forbidden_for_user", refused.as_ref().is_some_and(error_shape), short(&refused));
    if let Some(b) = cb.as_mut() {
        let leak = b.event("admin_announcement", quiet, &|v| v["message"] == "not allowed").await;
        c.add("admin_broadcast_forbidden_not_sent", leak.is_none(), short(&leak));
    }
    match Client::open(ctx, Some(&mint(n_admin)?), TokenPlacement::AuthObject).await {
        Ok(mut admin) => {
            admin.emit("admin_broadcast", json!({ "message": "maintenance at 5" })).await;
            let seen = ca.event("admin_announcement", wait, &|v| v["message"] == "maintenance at 5").await;
            c.add("admin_broadcast", seen.is_some(), short(&seen));
            admin.connection.close().await;
        }
        Err(error) => c.add("admin_broadcast", false, format!("admin u{n_admin} could not connect: {error}")),
    }

    // Leaving.
    if let Some(b) = cb.as_mut() {
        b.emit("leave_room", json!({ "room": room })).await;
        let left = ca.event("user_left", wait, &|v| names_user(v, &ub)).await;
        c.add("user_left", left.is_some(), short(&left));
        ca.emit("send_message", json!({ "room": room, "message": "after leave" })).await;
        let leak = b.event("new_message", quiet, &|v| v["message"] == "after leave").await;
        c.add("left_room_not_delivered", leak.is_none(), short(&leak));
    }

    for client in [Some(ca), cb, cc, b2].into_iter().flatten() {
        client.connection.close().await;
    }
    Ok(c)
}

/// Opens a client with `token` placed as given, recording the check `name`.
async fn open_check(c: &mut Checks, ctx: &Ctx, name: &str, token: &str, placement: TokenPlacement) -> Option<Client> {
    match Client::open(ctx, Some(token), placement).await {
        Ok(client) => {
            c.add(name, true, format!("connected with the token in {placement:?}"));
            Some(client)
        }
        Err(error) => {
            c.add(name, false, error.to_string());
            None
        }
    }
}
