//! Readiness of every service, as a balancer or a Kubernetes probe sees it:
//! the gRPC overall health (`""`) and `/readyz` say "not serving" until the
//! service can really do its work, and again as soon as a stop begins,
//! while the stop is still under way.
//!
//! The stop is held open by freezing nats-server (SIGSTOP): every service
//! flushes or drains NATS at the end of its stop, which then waits (bounded)
//! for a server that does not answer.

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::StreamExt as _;
use sb_tests::{DbKind, NatsServer, TestDatabase, wait_until};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};

const WAIT: Duration = Duration::from_secs(20);

async fn grpc_status(addr: SocketAddr) -> Option<ServingStatus> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}")).ok()?.connect().await.ok()?;
    let response = HealthClient::new(channel).check(HealthCheckRequest { service: String::new() }).await.ok()?;
    Some(response.into_inner().status())
}

/// `/readyz`: the status code and the JSON body.
async fn readyz(addr: SocketAddr) -> Option<(u16, serde_json::Value)> {
    let (status, body) = sb_tests::http::http_get(addr, "/readyz").await.ok()?;
    let code = status.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, serde_json::from_str(&body).ok()?))
}

/// Runs `<binary> healthcheck` (the built service binary next to this test
/// binary) with only `env` set: whether it exited 0, and what it printed.
fn healthcheck(binary: &str, env: &[(&str, String)]) -> (bool, String) {
    let dir = std::env::current_exe().expect("test binary path");
    let dir = dir.parent().and_then(|deps| deps.parent()).expect("target/<profile>");
    let path = dir.join(binary);
    assert!(
        path.exists(),
        "{} is not built: run `cargo build --workspace --bins` first (`make test` does)",
        path.display()
    );
    let output = std::process::Command::new(&path)
        .arg("healthcheck")
        .env_clear()
        .envs(env.iter().map(|(name, value)| (*name, value.as_str())))
        .output()
        .expect("run the healthcheck");
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

/// `<binary> healthcheck` agrees with `/readyz` now: exit 0 when ready, 1
/// naming the failing check when not.
fn assert_healthcheck(binary: &str, env: &[(&str, String)], ready: bool, says: &str) {
    let (success, text) = healthcheck(binary, env);
    assert_eq!(success, ready, "{binary} healthcheck: {text}");
    assert!(text.contains(says), "{binary} healthcheck should say {says:?}: {text}");
}

/// A watch on the overall gRPC health; its first answer is the status now.
async fn watch(addr: SocketAddr) -> tonic::Streaming<HealthCheckResponse> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect()
        .await
        .expect("connect for a health watch");
    HealthClient::new(channel).watch(HealthCheckRequest { service: String::new() }).await.expect("watch").into_inner()
}

async fn next_status(watch: &mut tonic::Streaming<HealthCheckResponse>) -> ServingStatus {
    tokio::time::timeout(WAIT, watch.next())
        .await
        .expect("a health update in time")
        .expect("the watch is open")
        .expect("a health update")
        .status()
}

/// The stop begins: the watch says NOT_SERVING at once, and `/readyz`
/// answers 503 with `shutdown: in progress` while the stop waits for the
/// frozen nats-server.
async fn assert_not_serving_while_stopping(
    nats: &NatsServer,
    grpc: SocketAddr,
    http: SocketAddr,
    (binary, env): (&str, &[(&str, String)]),
    begin_stop: impl FnOnce(),
) {
    let mut health = watch(grpc).await;
    assert_eq!(next_status(&mut health).await, ServingStatus::Serving);
    assert_healthcheck(binary, env, true, "ready");
    nats.pause();
    begin_stop();
    assert_eq!(next_status(&mut health).await, ServingStatus::NotServing, "not serving as soon as the stop begins");
    let (code, body) = readyz(http).await.expect("/readyz answers during the stop");
    assert_eq!(code, 503, "{body}");
    assert_eq!(body["checks"]["shutdown"], "in progress", "{body}");
    assert_healthcheck(binary, env, false, "\"shutdown\":\"in progress\"");
    nats.resume();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_is_not_serving_once_its_stop_begins() {
    let nats = NatsServer::start().await.expect("nats-server");
    let db = TestDatabase::create(DbKind::Sqlite).await.expect("database");
    let auth = sb_tests::auth::spawn_auth(&db, nats.url()).await.expect("auth");
    assert_eq!(grpc_status(auth.grpc_addr).await, Some(ServingStatus::Serving));
    let (code, body) = readyz(auth.metrics_addr).await.expect("readyz");
    assert_eq!((code, &body["checks"]["nats"]), (200, &serde_json::json!("ok")), "{body}");
    let env = [("METRICS_ADDR", auth.metrics_addr.to_string()), ("JWT_SECRET", "unused-by-a-healthcheck".to_owned())];
    let binary = ("sb-auth", &env[..]);
    assert_not_serving_while_stopping(&nats, auth.grpc_addr, auth.metrics_addr, binary, || auth.begin_stop()).await;
    auth.stop().await.expect("auth stops");
    assert_healthcheck("sb-auth", &env, false, "not running");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messaging_is_not_serving_once_its_stop_begins() {
    let nats = NatsServer::start().await.expect("nats-server");
    let db = TestDatabase::create(DbKind::Sqlite).await.expect("database");
    let messaging = sb_tests::messaging::spawn_messaging(sb_tests::messaging::messaging_config(nats.url(), &db.url))
        .await
        .expect("messaging");
    wait_until("messaging ready", WAIT, || async {
        (grpc_status(messaging.grpc_addr).await == Some(ServingStatus::Serving)).then_some(())
    })
    .await;
    let env = [("METRICS_ADDR", messaging.metrics_addr.to_string())];
    let binary = ("sb-messaging", &env[..]);
    assert_not_serving_while_stopping(&nats, messaging.grpc_addr, messaging.metrics_addr, binary, || {
        messaging.begin_stop()
    })
    .await;
    messaging.stop().await.expect("messaging stops");
    assert_healthcheck("sb-messaging", &env, false, "not running");
}

/// Presence answers nothing until it replayed its stream: a replica whose
/// replay cannot progress (nats-server frozen right after start-up) is not
/// serving, says why, and becomes ready once the replay is done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_is_not_serving_until_its_replay_is_done_and_once_its_stop_begins() {
    let nats = NatsServer::start().await.expect("nats-server");
    let edge =
        sb_tests::presence::SimEdge::start(nats.url(), "edge-1", Duration::from_millis(500)).await.expect("sim edge");
    for n in 0..20 {
        edge.connect(&format!("socket-{n}"), &sb_tests::presence::user(&format!("u{n}")));
    }
    let last = edge.connect("socket-last", &sb_tests::presence::user("last"));
    tokio::time::timeout(WAIT, last.wait()).await.expect("stored in time").expect("stored");
    edge.reporter.shutdown().await.expect("sim edge stops");

    let config = sb_tests::presence::replica_config(nats.url(), "http://127.0.0.1:9");
    let app = sb_presence::App::build(config).await.expect("build presence");
    let (grpc, http) = (app.grpc_addr(), app.metrics_addr());
    nats.pause();
    let presence = sb_tests::RunningService::spawn("presence", |shutdown| app.run(shutdown));
    let (code, body) = wait_until("/readyz to answer", WAIT, || async { readyz(http).await }).await;
    assert_eq!(code, 503, "{body}");
    assert_eq!(body["checks"]["replay"], "in progress", "{body}");
    let env = [("METRICS_ADDR", http.to_string())];
    assert_healthcheck("sb-presence", &env, false, "\"replay\":\"in progress\"");
    assert_eq!(grpc_status(grpc).await, Some(ServingStatus::NotServing));
    nats.resume();
    wait_until("presence ready after its replay", WAIT, || async {
        (grpc_status(grpc).await == Some(ServingStatus::Serving)).then_some(())
    })
    .await;
    let (code, body) = readyz(http).await.expect("readyz");
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["checks"]["replay"], "ok", "{body}");
    assert_not_serving_while_stopping(&nats, grpc, http, ("sb-presence", &env), || presence.begin_stop()).await;
    presence.stop().await.expect("presence stops");
}

/// The edge is ready only while NATS and auth answer; its stop makes
/// `/readyz` fail at once while it still closes its sockets and reports
/// its stop to presence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_is_ready_only_with_auth_and_not_once_its_stop_begins() {
    let nats = NatsServer::start().await.expect("nats-server");
    let db = TestDatabase::create(DbKind::Sqlite).await.expect("database");
    // Auth's port, reserved so the edge can point at it before auth runs.
    let reserved = std::net::TcpListener::bind("127.0.0.1:0").expect("reserve a port");
    let auth_addr = reserved.local_addr().expect("address");
    drop(reserved);
    let edge = sb_tests::edge::spawn_edge(sb_tests::edge::edge_config(nats.url(), &format!("http://{auth_addr}")))
        .await
        .expect("edge");
    let (code, body) = wait_until("the edge to probe auth", WAIT, || async {
        readyz(edge.addr).await.filter(|(_, body)| body["checks"]["auth"] == "unavailable")
    })
    .await;
    assert_eq!(code, 503, "{body}");
    let env = [("LISTEN_ADDR", edge.addr.to_string())];
    assert_healthcheck("sb-edge", &env, false, "\"auth\":\"unavailable\"");

    let mut config = sb_tests::auth::auth_config(&db.url, nats.url(), Some("readiness-test-secret"));
    config.grpc_addr = auth_addr;
    let _auth = sb_tests::auth::spawn_auth_with(config).await.expect("auth on the reserved port");
    let (code, body) = wait_until("the edge ready once auth answers", WAIT, || async {
        readyz(edge.addr).await.filter(|(code, _)| *code == 200)
    })
    .await;
    assert_eq!((code, &body["checks"]["nats"]), (200, &serde_json::json!("ok")), "{body}");
    assert_healthcheck("sb-edge", &env, true, "ready");

    nats.pause();
    edge.begin_stop();
    let (code, body) = wait_until("the edge not ready while it stops", WAIT, || async {
        readyz(edge.addr).await.filter(|(code, _)| *code == 503)
    })
    .await;
    assert_eq!((code, &body["checks"]["shutdown"]), (503, &serde_json::json!("in progress")), "{body}");
    nats.resume();
    edge.stop().await.expect("edge stops");
    assert_healthcheck("sb-edge", &env, false, "not running");
}
