//! Traces across real processes. Each service runs as its own process (the
//! `sb-*` binaries `make test` builds before the tests) with
//! `OTEL_EXPORTER_OTLP_ENDPOINT` pointing at an OTLP collector inside this
//! test (a tonic server of the OTLP trace service), so every span is seen
//! as Jaeger would see it: with its service's `service.name`, its parent and
//! its attributes. Three edges tell themselves apart by
//! `OTEL_RESOURCE_ATTRIBUTES=service.instance.id=edge-<n>`.
//!
//! A room message sent on one edge and delivered on three, a join (presence
//! applying and announcing it), a private message, a broadcast, an admin
//! announcement, a connect (VerifyToken with auth's user lookup, presence
//! applying the report), an offline message claimed on connect, a
//! revocation and a refused connect each make one trace with the parent
//! chain across services; no span belongs to a health check; no span holds
//! the message text, a token or a password anywhere.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::Duration;

use sb_proto::auth::v1 as pb;
use sb_tests::auth::AuthHandle;
use sb_tests::cluster::{ServiceProcess, built_bin as bin, free_port, wait_ready};
use sb_tests::edge::{TestClient, TokenVia, Transport};
use sb_tests::otlp::{Collector, Seen};
use sb_tests::{DbKind, NatsServer, TestDatabase};
use serde_json::json;

const SECRET_TEXT: &str = "tracing-must-never-carry-this-text";
const READY: Duration = Duration::from_secs(60);

/// Waiting for what the processes export.
trait Waits {
    fn in_trace(&self, trace: &[u8]) -> Vec<Seen>;
    async fn span(&self, what: &str, find: impl Fn(&Seen) -> bool) -> Seen;
    async fn trace_until(&self, what: &str, trace: &[u8], done: impl Fn(&[Seen]) -> bool) -> Vec<Seen>;
}

impl Waits for Collector {
    fn in_trace(&self, trace: &[u8]) -> Vec<Seen> {
        self.all().into_iter().filter(|seen| seen.trace() == trace).collect()
    }

    /// Waits until a span matching `find` arrived; returns it.
    async fn span(&self, what: &str, find: impl Fn(&Seen) -> bool) -> Seen {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(seen) = self.all().into_iter().find(|seen| find(seen)) {
                return seen;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no span for {what} within 20 s; got {:?}",
                names(&self.all())
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the trace of `root` holds spans for which `done` holds,
    /// and the parent of every span but its roots (each process exports on
    /// its own schedule, so a child may arrive before its parent).
    async fn trace_until(&self, what: &str, trace: &[u8], done: impl Fn(&[Seen]) -> bool) -> Vec<Seen> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let spans = self.in_trace(trace);
            let ids: HashSet<&[u8]> = spans.iter().map(|seen| seen.span.span_id.as_slice()).collect();
            let parents_arrived = spans
                .iter()
                .all(|seen| seen.span.parent_span_id.is_empty() || ids.contains(seen.span.parent_span_id.as_slice()));
            if done(&spans) && parents_arrived {
                return spans;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{what}: not within 20 s; the trace holds {:?}",
                names(&spans)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Every service a process, exporting spans to `collector`.
struct Processes {
    _nats: NatsServer,
    _auth_db: TestDatabase,
    _messaging_db: TestDatabase,
    logs: tempfile::TempDir,
    services: Vec<ServiceProcess>,
    auth_addr: String,
    auth_metrics: SocketAddr,
    presence_addr: String,
    messaging_addr: String,
    edges: Vec<String>,
}

impl Processes {
    async fn start(collector: SocketAddr) -> Self {
        let nats = NatsServer::start().await.expect("nats-server");
        let auth_db = TestDatabase::create(DbKind::Postgres).await.expect("auth database");
        let messaging_db = TestDatabase::create(DbKind::Postgres).await.expect("messaging database");
        let logs = tempfile::Builder::new().prefix("sb-traces-").tempdir().expect("log dir");
        let otel = |instance: &str| {
            vec![
                ("OTEL_SDK_DISABLED".to_owned(), "false".to_owned()),
                ("OTEL_EXPORTER_OTLP_ENDPOINT".to_owned(), format!("http://{collector}")),
                ("OTEL_BSP_SCHEDULE_DELAY".to_owned(), "100".to_owned()),
                ("OTEL_RESOURCE_ATTRIBUTES".to_owned(), format!("service.instance.id={instance}")),
            ]
        };
        let with = |mut env: Vec<(String, String)>, more: &[(&str, String)]| {
            env.extend(more.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
            env
        };
        let nats_url = nats.url().to_owned();
        let mut services = Vec::new();

        let (auth_grpc, auth_metrics) = (free_port().unwrap(), free_port().unwrap());
        let auth_addr = format!("http://127.0.0.1:{auth_grpc}");
        let auth_env = [
            ("GRPC_ADDR", addr(auth_grpc).to_string()),
            ("METRICS_ADDR", addr(auth_metrics).to_string()),
            ("JWT_SECRET", "traces-test-secret-0123456789abcdef".to_owned()),
            ("DATABASE_URL", auth_db.url.clone()),
            ("NATS_URL", nats_url.clone()),
            ("BOOTSTRAP_ADMIN_EMAIL", sb_tests::auth::ADMIN_EMAIL.to_owned()),
            ("BOOTSTRAP_ADMIN_PASSWORD", sb_tests::auth::ADMIN_PASSWORD.to_owned()),
            ("LOG_FORMAT", "json".to_owned()),
            ("RUST_LOG", "info".to_owned()),
        ];
        services.push(
            ServiceProcess::start("auth", &bin("sb-auth"), with(otel("auth"), &auth_env), logs.path()).expect("auth"),
        );
        wait_ready(addr(auth_metrics), READY).await.expect("auth ready");

        let (presence_grpc, presence_metrics) = (free_port().unwrap(), free_port().unwrap());
        let presence_env = [
            ("GRPC_ADDR", addr(presence_grpc).to_string()),
            ("METRICS_ADDR", addr(presence_metrics).to_string()),
            ("AUTH_ADDR", auth_addr.clone()),
            ("NATS_URL", nats_url.clone()),
        ];
        services.push(
            ServiceProcess::start("presence", &bin("sb-presence"), with(otel("presence"), &presence_env), logs.path())
                .expect("presence"),
        );
        let (messaging_grpc, messaging_metrics) = (free_port().unwrap(), free_port().unwrap());
        let messaging_env = [
            ("GRPC_ADDR", addr(messaging_grpc).to_string()),
            ("METRICS_ADDR", addr(messaging_metrics).to_string()),
            ("AUTH_ADDR", auth_addr.clone()),
            ("NATS_URL", nats_url.clone()),
            ("DATABASE_URL", messaging_db.url.clone()),
        ];
        services.push(
            ServiceProcess::start(
                "messaging",
                &bin("sb-messaging"),
                with(otel("messaging"), &messaging_env),
                logs.path(),
            )
            .expect("messaging"),
        );
        wait_ready(addr(presence_metrics), READY).await.expect("presence ready");
        wait_ready(addr(messaging_metrics), READY).await.expect("messaging ready");

        let mut edges = Vec::new();
        let mut edge_addrs = Vec::new();
        for index in 0..3 {
            let port = free_port().unwrap();
            let name = format!("edge-{index}");
            let edge_env = [
                ("LISTEN_ADDR", addr(port).to_string()),
                ("EDGE_ID", name.clone()),
                ("AUTH_ADDR", auth_addr.clone()),
                ("NATS_URL", nats_url.clone()),
            ];
            services.push(
                ServiceProcess::start(&name, &bin("sb-edge"), with(otel(&name), &edge_env), logs.path()).expect("edge"),
            );
            edges.push(format!("http://127.0.0.1:{port}"));
            edge_addrs.push(addr(port));
        }
        for edge in edge_addrs {
            wait_ready(edge, READY).await.expect("edge ready");
        }
        Self {
            _nats: nats,
            _auth_db: auth_db,
            _messaging_db: messaging_db,
            logs,
            services,
            auth_addr,
            auth_metrics: addr(auth_metrics),
            presence_addr: format!("http://127.0.0.1:{presence_grpc}"),
            messaging_addr: format!("http://127.0.0.1:{messaging_grpc}"),
            edges,
        }
    }

    async fn auth(&self) -> pb::auth_service_client::AuthServiceClient<tonic::transport::Channel> {
        pb::auth_service_client::AuthServiceClient::connect(self.auth_addr.clone()).await.expect("auth gRPC")
    }

    /// Seeds `u1..u<count>` and returns the admin's token and a token per user.
    async fn users(&self, count: u32) -> (String, Vec<String>) {
        let admin = sb_tests::auth::seed_users(&self.auth_addr, count).await.expect("seed users");
        let mut auth = self.auth().await;
        let mut tokens = Vec::new();
        for n in 1..=count {
            let issued = auth
                .issue_token(AuthHandle::with_token(
                    pb::IssueTokenRequest { user_id: format!("u{n}"), ttl_seconds: 3600 },
                    &admin,
                ))
                .await
                .expect("issue token")
                .into_inner();
            tokens.push(issued.token);
        }
        (admin, tokens)
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        for service in &mut self.services {
            service.kill();
        }
    }
}

/// Every span of `spans` but the root has its parent among them, and there
/// is one root: the trace is one connected tree.
fn assert_one_tree(what: &str, spans: &[Seen]) {
    let ids: HashSet<&[u8]> = spans.iter().map(|seen| seen.span.span_id.as_slice()).collect();
    let roots: Vec<&Seen> = spans.iter().filter(|seen| seen.span.parent_span_id.is_empty()).collect();
    assert_eq!(
        roots.len(),
        1,
        "{what}: one root span, got {:?}",
        names(&roots.iter().copied().cloned().collect::<Vec<_>>())
    );
    for seen in spans {
        if !seen.span.parent_span_id.is_empty() {
            assert!(
                ids.contains(seen.span.parent_span_id.as_slice()),
                "{what}: the parent of {} ({}) is not in the trace: {:?}",
                seen.name(),
                seen.service,
                names(spans)
            );
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn names(spans: &[Seen]) -> Vec<String> {
    spans.iter().map(|seen| format!("{} [{} {}]", seen.name(), seen.service, seen.instance)).collect()
}

fn parent_of<'a>(spans: &'a [Seen], child: &Seen) -> Option<&'a Seen> {
    spans.iter().find(|seen| seen.span.span_id == child.span.parent_span_id)
}

fn find<'a>(spans: &'a [Seen], service: &str, name: &str) -> &'a Seen {
    spans
        .iter()
        .find(|seen| seen.service == service && seen.name() == name)
        .unwrap_or_else(|| panic!("no span {name:?} of {service} in {:?}", names(spans)))
}

/// Waits until the trace of message `id` (found by its edge producer span
/// `send`) holds a delivery on each of `edges` that wrote to a socket, and
/// checks the chain: the client's event → `send` → messaging's `process` →
/// messaging's `send sb.deliver.*` → each edge's `process sb.deliver.*`.
async fn message_trace(collector: &Collector, what: &str, send: &str, id: &str, edges: &[&str]) {
    let producer = collector
        .span(what, |seen| {
            seen.service == "switchboard-edge"
                && seen.name() == send
                && seen.attribute("messaging.message.id").as_deref() == Some(id)
        })
        .await;
    let delivered = |spans: &[Seen]| -> HashSet<String> {
        spans
            .iter()
            .filter(|s| s.service == "switchboard-edge" && s.name().starts_with("process sb.deliver."))
            .filter(|s| s.attribute("switchboard.sockets").is_some_and(|n| n != "0"))
            .map(|s| s.instance.clone())
            .collect()
    };
    let spans = collector
        .trace_until(what, producer.trace(), |spans| edges.iter().all(|edge| delivered(spans).contains(*edge)))
        .await;
    assert_one_tree(what, &spans);
    let event = if send.ends_with("announce") { "socketio admin_broadcast" } else { "socketio send_message" };
    assert_eq!(
        parent_of(&spans, &producer).map(Seen::name),
        Some(event),
        "{what}: the edge's send is the event's child"
    );
    let process = spans
        .iter()
        .find(|s| s.service == "switchboard-messaging" && s.name().starts_with("process sb.msg."))
        .unwrap_or_else(|| panic!("{what}: messaging's process span in {:?}", names(&spans)));
    assert_eq!(process.span.parent_span_id, producer.span.span_id, "{what}: messaging continues the edge's send");
    for edge_process in
        spans.iter().filter(|s| s.service == "switchboard-edge" && s.name().starts_with("process sb.deliver."))
    {
        let route = parent_of(&spans, edge_process).unwrap_or_else(|| panic!("{what}: a delivery without its send"));
        assert_eq!(route.service, "switchboard-messaging", "{what}: {} is sent by messaging", route.name());
        assert!(route.name().starts_with("send sb.deliver."), "{what}: {}", route.name());
    }
}

#[tokio::test]
async fn one_trace_per_message_connect_and_revocation_across_processes() {
    let (collector, collector_addr) = Collector::start().await;
    let stack = Processes::start(collector_addr).await;
    let (admin, tokens) = stack.users(5).await;

    // A connect: handshake → VerifyToken (edge client, auth server) → session report.
    let u1 = TestClient::connect(&stack.edges[0], Some(&tokens[0]), TokenVia::AuthObject, Transport::Websocket)
        .await
        .expect("u1 connects to edge-0");
    let connect = collector
        .span("u1's connect span", |seen| {
            seen.name() == "socketio connect" && seen.attribute("switchboard.user.id").as_deref() == Some("u1")
        })
        .await;
    assert_eq!(connect.service, "switchboard-edge");
    assert_eq!(connect.instance, "edge-0");
    assert_eq!(connect.attribute("switchboard.connect.result").as_deref(), Some("accepted"));
    let spans = collector
        .trace_until("the connect's trace", connect.trace(), |spans| {
            spans.iter().any(|s| s.service == "switchboard-auth" && s.name() == "SELECT users")
                && spans
                    .iter()
                    .any(|s| s.service == "switchboard-presence" && s.name() == "process sb.presence.ev.{edge}")
        })
        .await;
    assert_one_tree("connect", &spans);
    let client = find(&spans, "switchboard-edge", "switchboard.auth.v1.AuthService/VerifyToken");
    assert_eq!(client.attribute("rpc.system").as_deref(), Some("grpc"));
    assert_eq!(client.attribute("rpc.grpc.status_code").as_deref(), Some("0"));
    let server = find(&spans, "switchboard-auth", "switchboard.auth.v1.AuthService/VerifyToken");
    assert_eq!(server.span.parent_span_id, client.span.span_id, "auth's server span is the edge's call's child");
    assert_eq!(server.attribute("rpc.service").as_deref(), Some("switchboard.auth.v1.AuthService"));
    assert_eq!(server.attribute("rpc.method").as_deref(), Some("VerifyToken"));
    assert_eq!(server.attribute("rpc.grpc.status_code").as_deref(), Some("0"));
    assert_eq!(server.attribute("switchboard.auth.result").as_deref(), Some("ok"));
    assert_eq!(server.attribute("switchboard.user.id").as_deref(), Some("u1"));
    let lookup = find(&spans, "switchboard-auth", "SELECT users");
    assert_eq!(lookup.span.parent_span_id, server.span.span_id, "the user lookup is part of VerifyToken");
    assert_eq!(lookup.attribute("db.system.name").as_deref(), Some("postgresql"));
    assert_eq!(lookup.attribute("db.collection.name").as_deref(), Some("users"));
    let report = find(&spans, "switchboard-edge", "send sb.presence.ev.{edge}");
    assert_eq!(parent_of(&spans, report).map(Seen::name), Some("socketio connect"));
    let applied = find(&spans, "switchboard-presence", "process sb.presence.ev.{edge}");
    assert_eq!(applied.span.parent_span_id, report.span.span_id, "presence applies the edge's report in its trace");

    // A room message sent on edge-0 and delivered on all three edges.
    let u2 = TestClient::connect(&stack.edges[1], Some(&tokens[1]), TokenVia::AuthObject, Transport::Websocket)
        .await
        .expect("u2 connects to edge-1");
    let u3 = TestClient::connect(&stack.edges[2], Some(&tokens[2]), TokenVia::Query, Transport::Polling)
        .await
        .expect("u3 connects to edge-2");
    // The sender's own socket is not written to; u4 is the member on the sender's edge.
    let u4 = TestClient::connect(&stack.edges[0], Some(&tokens[3]), TokenVia::AuthObject, Transport::Polling)
        .await
        .expect("u4 connects to edge-0");
    for client in [&u1, &u2, &u3, &u4] {
        client.ack("join_room", json!({"room": "lobby"})).await.expect("join lobby");
    }
    let sent = u1.ack("send_message", json!({"room": "lobby", "message": SECRET_TEXT})).await.expect("send");
    let id = sent["id"].as_str().expect("message id").to_owned();
    for client in [&u2, &u3, &u4] {
        client.event_where("new_message", |v| v["id"] == id.as_str()).await.expect("delivered");
    }
    let event = collector
        .span("the send_message span", |seen| {
            seen.name() == "socketio send_message" && seen.attribute("switchboard.room").as_deref() == Some("lobby")
        })
        .await;
    assert_eq!(event.attribute("switchboard.user.id").as_deref(), Some("u1"));
    assert_eq!(event.attribute("switchboard.event").as_deref(), Some("send_message"));
    let deliveries_on = |spans: &[Seen]| -> HashSet<String> {
        spans
            .iter()
            .filter(|s| s.name() == "process sb.deliver.room.{room}")
            .filter(|s| s.attribute("switchboard.sockets").is_some_and(|n| n != "0"))
            .map(|s| s.instance.clone())
            .collect()
    };
    let spans = collector
        .trace_until("the message's trace on every edge", event.trace(), |spans| deliveries_on(spans).len() == 3)
        .await;
    assert_one_tree("room message", &spans);
    assert_eq!(deliveries_on(&spans), HashSet::from(["edge-0".into(), "edge-1".into(), "edge-2".into()]));
    let producer = find(&spans, "switchboard-edge", "send sb.msg.room.{room}");
    assert_eq!(parent_of(&spans, producer).map(Seen::name), Some("socketio send_message"));
    assert_eq!(producer.attribute("messaging.message.id").as_deref(), Some(id.as_str()));
    let process = spans
        .iter()
        .find(|s| s.service == "switchboard-messaging" && s.name().starts_with("process sb.msg."))
        .unwrap_or_else(|| panic!("messaging's process span in {:?}", names(&spans)));
    assert_eq!(process.span.parent_span_id, producer.span.span_id, "messaging continues the edge's send span");
    assert_eq!(process.attribute("messaging.message.id").as_deref(), Some(id.as_str()));
    let store = find(&spans, "switchboard-messaging", "INSERT messages");
    assert_eq!(store.attribute("db.system.name").as_deref(), Some("postgresql"));
    let route = find(&spans, "switchboard-messaging", "send sb.deliver.room.{room}");
    for delivered in spans.iter().filter(|s| s.name() == "process sb.deliver.room.{room}") {
        assert_eq!(delivered.span.parent_span_id, route.span.span_id, "each edge continues messaging's send");
    }
    for messaging_span in spans.iter().filter(|s| s.attribute("messaging.system").is_some()) {
        assert_eq!(messaging_span.attribute("messaging.system").as_deref(), Some("nats"));
        let destination = messaging_span.attribute("messaging.destination.name").unwrap_or_default();
        assert!(!destination.contains("lobby"), "a destination names the subject template: {destination}");
        assert!(messaging_span.attribute("messaging.operation.type").is_some());
    }

    // A join: the edge's report → presence applies it → user_joined on every edge with a member.
    let join = collector
        .span("u4's join span", |seen| {
            seen.name() == "socketio join_room" && seen.attribute("switchboard.user.id").as_deref() == Some("u4")
        })
        .await;
    let spans = collector
        .trace_until("user_joined on every edge, in the join's trace", join.trace(), |spans| {
            deliveries_on(spans).len() == 3
        })
        .await;
    assert_one_tree("join", &spans);
    let report = find(&spans, "switchboard-edge", "send sb.presence.ev.{edge}");
    assert_eq!(parent_of(&spans, report).map(Seen::name), Some("socketio join_room"));
    let applied = find(&spans, "switchboard-presence", "process sb.presence.ev.{edge}");
    assert_eq!(applied.span.parent_span_id, report.span.span_id, "presence applies the join in its trace");
    let announced = find(&spans, "switchboard-presence", "send sb.deliver.room.{room}");
    assert_eq!(announced.span.parent_span_id, applied.span.span_id, "presence announces the join in its trace");
    for delivered in spans.iter().filter(|s| s.name() == "process sb.deliver.room.{room}") {
        assert_eq!(delivered.span.parent_span_id, announced.span.span_id, "each edge continues presence's send");
    }

    // A private message to u3 (online on edge-2), a broadcast and an admin announcement:
    // each one trace from the client's event to every edge that delivers it.
    let private = u1.ack("send_message", json!({"to": "u3", "message": SECRET_TEXT})).await.expect("private to u3");
    let private_id = private["id"].as_str().expect("message id").to_owned();
    u3.event_where("new_message", |v| v["id"] == private_id.as_str()).await.expect("u3 gets the private message");
    message_trace(&collector, "private message", "send sb.msg.user.{user}", &private_id, &["edge-2"]).await;
    let everyone = u3.ack("send_message", json!({"message": SECRET_TEXT})).await.expect("broadcast");
    let everyone_id = everyone["id"].as_str().expect("message id").to_owned();
    message_trace(&collector, "broadcast", "send sb.msg.all", &everyone_id, &["edge-0", "edge-1"]).await;
    let operator = TestClient::connect(&stack.edges[2], Some(&admin), TokenVia::AuthObject, Transport::Websocket)
        .await
        .expect("the admin connects to edge-2");
    let announced = operator.ack("admin_broadcast", json!({"message": SECRET_TEXT})).await.expect("announcement");
    let announced_id = announced["id"].as_str().expect("message id").to_owned();
    message_trace(&collector, "announcement", "send sb.msg.announce", &announced_id, &["edge-0", "edge-1", "edge-2"])
        .await;

    // A private message to u5 while offline is claimed by u5's connect, in the connect's trace.
    let offline = u1.ack("send_message", json!({"to": "u5", "message": SECRET_TEXT})).await.expect("private to u5");
    let offline_id = offline["id"].as_str().expect("message id").to_owned();
    // Messaging's process span ends once the message is stored (as pending: u5 is offline).
    collector
        .span("u5's message stored", |seen| {
            seen.service == "switchboard-messaging"
                && seen.attribute("messaging.message.id").as_deref() == Some(offline_id.as_str())
        })
        .await;
    let u5 = TestClient::connect(&stack.edges[2], Some(&tokens[4]), TokenVia::AuthObject, Transport::Websocket)
        .await
        .expect("u5 connects to edge-2");
    u5.event_where("new_message", |v| v["id"] == offline_id.as_str()).await.expect("the offline message on connect");
    let connect = collector
        .span("u5's connect span", |seen| {
            seen.name() == "socketio connect" && seen.attribute("switchboard.user.id").as_deref() == Some("u5")
        })
        .await;
    let spans = collector
        .trace_until("the claim in u5's connect trace", connect.trace(), |spans| {
            spans.iter().any(|s| s.service == "switchboard-messaging" && s.name() == "process sb.messaging.pending")
        })
        .await;
    assert_one_tree("connect with a pending claim", &spans);
    let claim = find(&spans, "switchboard-edge", "send sb.messaging.pending");
    assert_eq!(parent_of(&spans, claim).map(Seen::name), Some("socketio connected"));

    // A revocation: RevokeTokens → the access event → every edge; u2's socket goes.
    let mut auth = stack.auth().await;
    auth.revoke_tokens(AuthHandle::with_token(pb::RevokeTokensRequest { user_id: "u2".to_owned() }, &admin))
        .await
        .expect("revoke u2");
    u2.closed().await.expect("u2's socket is closed after the revocation");
    let revoke = collector
        .span("the RevokeTokens span", |seen| {
            seen.service == "switchboard-auth" && seen.name() == "switchboard.auth.v1.AuthService/RevokeTokens"
        })
        .await;
    let spans = collector
        .trace_until("the revocation on every edge", revoke.trace(), |spans| {
            spans
                .iter()
                .filter(|s| s.name() == "process sb.control.access")
                .map(|s| &s.instance)
                .collect::<HashSet<_>>()
                .len()
                == 3
        })
        .await;
    assert_one_tree("revocation", &spans);
    assert!(spans.iter().any(|s| s.name() == "send sb.control.access"), "{:?}", names(&spans));

    // A refused connect says why, without the token.
    let refused =
        TestClient::connect(&stack.edges[1], Some(&tokens[1]), TokenVia::AuthObject, Transport::Websocket).await;
    assert!(refused.is_err(), "a revoked token is refused");
    let refusal = collector
        .span("the refused connect", |seen| {
            seen.name() == "socketio connect"
                && seen.attribute("switchboard.connect.result").is_some_and(|result| result != "accepted")
        })
        .await;
    let reason = refusal.attribute("switchboard.connect.result").unwrap_or_default();
    assert!(reason.contains("revoked"), "the refusal says why: {reason}");

    // switchboardctl continues a caller's trace (TRACEPARENT): presence's Kick is the caller's
    // child and every edge handles the command in that trace; `--trace` starts one and says its id.
    let ctl = crate::cli::Ctl::new();
    let (auth, presence, messaging) = (&stack.auth_addr, &stack.presence_addr, &stack.messaging_addr);
    let context = ["context", "add", "traced", "--auth", auth, "--presence", presence, "--messaging", messaging];
    ctl.run(&context).await.ok();
    let (caller_trace, caller_span) = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
    let traceparent = format!("00-{caller_trace}-{caller_span}-01");
    let env = [("SWITCHBOARD_TOKEN", admin.as_str()), ("TRACEPARENT", traceparent.as_str())];
    ctl.run_with(&["--context", "traced", "kick", "u3", "--reason", "traced kick"], None, &env).await.ok();
    u3.closed().await.expect("u3's socket is closed by the kick");
    let kick = collector
        .span("presence's Kick span", |seen| seen.service == "switchboard-presence" && seen.name().ends_with("/Kick"))
        .await;
    assert_eq!(hex(kick.trace()), caller_trace, "the Kick continues the caller's trace");
    assert_eq!(hex(&kick.span.parent_span_id), caller_span, "the Kick is the caller's child");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let handled: HashSet<String> = collector
            .in_trace(kick.trace())
            .into_iter()
            .filter(|s| s.name() == "process sb.control.edges" && s.service == "switchboard-edge")
            .map(|s| s.instance.clone())
            .collect();
        if handled.len() == 3 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the kick handled in the caller's trace only on {handled:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let started = ctl.run_with(&["--context", "traced", "--trace", "online"], None, &env[..1]).await;
    started.ok();
    let started_trace = started
        .stderr
        .lines()
        .find_map(|line| line.strip_prefix("trace "))
        .unwrap_or_else(|| panic!("--trace prints the trace id on stderr: {started:?}"))
        .to_owned();
    collector
        .span("the traced online call", |seen| {
            seen.service == "switchboard-presence" && hex(seen.trace()) == started_trace
        })
        .await;
    let malformed = [("SWITCHBOARD_TOKEN", admin.as_str()), ("TRACEPARENT", "00-not-a-trace-01")];
    let refused = ctl.run_with(&["--context", "traced", "online"], None, &malformed).await;
    assert!(refused.fails().contains("TRACEPARENT"), "a malformed TRACEPARENT is refused by name: {refused:?}");

    // Health checks (HTTP and gRPC) make no spans.
    let _ = sb_tests::http::http_get(stack.auth_metrics, "/readyz").await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(
        tonic::transport::Channel::from_shared(stack.auth_addr.clone()).unwrap().connect().await.expect("channel"),
    );
    health.check(tonic_health::pb::HealthCheckRequest { service: String::new() }).await.expect("health check");
    let marker = u1.ack("send_message", json!({"room": "lobby", "message": "after the health check"})).await.unwrap();
    let marker_id = marker["id"].as_str().unwrap().to_owned();
    collector
        .span("a span after the health check", |seen| {
            seen.service == "switchboard-edge"
                && seen.attribute("messaging.message.id").as_deref() == Some(marker_id.as_str())
        })
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    // LOG_FORMAT=json lines lead to their trace.
    let log = std::fs::read_to_string(stack.logs.path().join("auth.log")).expect("auth's log");
    let seeded = log
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find(|line| line["message"] == "users seeded")
        .unwrap_or_else(|| panic!("auth logged `users seeded` as JSON: {log}"));
    let seed =
        collector.span("the SeedUsers span", |seen| seen.name() == "switchboard.auth.v1.AuthService/SeedUsers").await;
    assert_eq!(seeded["trace_id"], hex(seed.trace()), "{seeded}");
    assert_eq!(seeded["span_id"], hex(&seed.span.span_id), "{seeded}");

    let all = collector.all();
    let by_service: HashMap<&str, usize> = all.iter().fold(HashMap::new(), |mut counts, seen| {
        *counts.entry(seen.service.as_str()).or_default() += 1;
        counts
    });
    for service in ["switchboard-edge", "switchboard-auth", "switchboard-messaging"] {
        assert!(by_service.contains_key(service), "{service} exported spans: {by_service:?}");
    }
    let mut secrets = vec![SECRET_TEXT.to_owned(), admin.clone(), sb_tests::auth::ADMIN_PASSWORD.to_owned()];
    secrets.extend(tokens.iter().cloned());
    for seen in &all {
        assert!(!seen.name().contains("grpc.health") && !seen.name().contains("Health/Check"), "{}", seen.name());
        assert!(!seen.name().contains("reflection"), "{}", seen.name());
        for kv in &seen.span.attributes {
            assert!(
                !kv.key.starts_with("code.") && !kv.key.starts_with("thread."),
                "{} carries {} (a dependency's source location)",
                seen.name(),
                kv.key
            );
        }
        let everything = format!("{:?}", seen.span);
        for secret in &secrets {
            assert!(!everything.contains(secret.as_str()), "span {} carries a secret or the message text", seen.name());
        }
    }
    drop((u1, u4, u5, operator));
}
