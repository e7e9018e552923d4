//! Traces across real processes. Each service runs as its own process (the
//! `sb-*` binaries `make test` builds before the tests) with
//! `OTEL_EXPORTER_OTLP_ENDPOINT` pointing at an OTLP collector inside this
//! test (a tonic server of the OTLP trace service), so every span is seen
//! as Jaeger would see it: with its service's `service.name`, its parent and
//! its attributes. Three edges tell themselves apart by
//! `OTEL_RESOURCE_ATTRIBUTES=service.instance.id=edge-<n>`.
//!
//! A room message sent on one edge and delivered on three, a connect, a
//! revocation and a refused connect each make one trace with the parent
//! chain across services; no span belongs to a health check; no span holds
//! the message text, a token or a password anywhere.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use sb_proto::auth::v1 as pb;
use sb_tests::auth::AuthHandle;
use sb_tests::cluster::{ServiceProcess, free_port, wait_ready};
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

    /// Waits until the trace of `root` holds spans for which `done` holds.
    async fn trace_until(&self, what: &str, trace: &[u8], done: impl Fn(&[Seen]) -> bool) -> Vec<Seen> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let spans = self.in_trace(trace);
            if done(&spans) {
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

/// Where `make test` put the service binaries.
fn bin(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"), PathBuf::from);
    let path = target.join("debug").join(name);
    assert!(path.is_file(), "{} is missing: run `cargo build --workspace --bins` (make test does)", path.display());
    path
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
            spans.iter().any(|s| s.service == "switchboard-auth")
                && spans.iter().any(|s| s.name() == "send sb.presence.ev.{edge}")
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
    drop((u1, u3, u4, u5));
}
