//! The project's load generator (`sb-loadgen`) against the in-process stack:
//! a tiny fanout and a tiny private run through its library API, with the
//! bench's users `u1..uN` seeded the way `make bench` seeds them, so the
//! tokens the loadgen mints itself verify. Counts only, no timing asserts.

use std::time::Duration;

use sb_loadgen::scenario::{FanoutSettings, PrivateSettings};
use sb_loadgen::{ClientSettings, Report, RunSettings, Scenario, WatchedProcess};
use sb_proto::auth::v1 as pb;
use sb_tests::DbKind;
use sb_tests::stack::{StackOptions, TestStack};

/// The stack's `JWT_SECRET`, which the loadgen signs its tokens with.
const SECRET: &str = "loadgen-test-secret";
/// Seeded users `u1..u100`.
const USERS: u32 = 100;

/// A stack whose auth knows `u1..u100` (`u<n>@example.com`), as `make bench` seeds them.
async fn stack_with_load_users() -> TestStack {
    let mut options = StackOptions::new(DbKind::Sqlite);
    options.jwt_secret = Some(SECRET.to_owned());
    let stack = TestStack::start_with(options).await.expect("start stack");
    let created = stack
        .auth
        .grpc()
        .await
        .expect("auth client")
        .seed_users(stack.auth.as_admin(pb::SeedUsersRequest {
            count: USERS,
            id_prefix: "u".to_owned(),
            email_domain: "example.com".to_owned(),
            admin_every: 1000,
            password: String::new(),
        }))
        .await
        .expect("seed the load-test users")
        .into_inner()
        .created;
    assert_eq!(created, USERS);
    stack
}

/// Short windows; this process is the watched "server" (the stack runs in it).
fn run_settings(label: &str) -> RunSettings {
    RunSettings {
        label: Some(label.to_owned()),
        warmup: Duration::from_millis(500),
        duration: Duration::from_secs(2),
        pids: vec![WatchedProcess { name: Some("test-stack".to_owned()), pid: std::process::id() }],
        command: vec!["cargo".to_owned(), "test".to_owned()],
        ..RunSettings::default()
    }
}

/// Checks what every messaging report must say, and that it encodes as one JSON line.
fn assert_complete(report: &Report) {
    let results = report.results.messaging().expect("messaging results");
    assert_eq!(results.ready, results.connections, "every socket connected: {:?}", results.setup_failures);
    assert!(results.expected > 0, "something was sent: {results:?}");
    assert_eq!(results.lost, 0, "nothing lost: {results:?}");
    assert_eq!(results.received, results.expected);
    assert_eq!(results.dropped_connections, 0);
    assert_eq!(results.exceptions, 0, "no exception from the edge");
    assert_eq!(results.latency_ms.count, results.received, "one latency sample per delivery");
    assert!(report.ok);
    let line: serde_json::Value = serde_json::from_str(&report.to_json_line().expect("encode")).expect("json");
    assert_eq!(line["tool"], "sb-loadgen");
    assert_eq!(line["command"], "cargo test");
    assert_eq!(line["processes"][0]["name"], "test-stack");
    assert!(line["processes"][0]["cpu_seconds"].is_number(), "{}", line["processes"]);
    assert!(line["machine"]["nproc"].as_u64().is_some_and(|n| n >= 1));
    assert!(line["settings"]["client"].get("secret").is_none(), "the secret is never recorded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loadgen_fanout_and_private_deliver_everything() {
    let stack = stack_with_load_users().await;
    let client = ClientSettings { users: u64::from(USERS), ..ClientSettings::new(stack.url(), SECRET) };

    // 2 rooms x 10 members, one sender per room at 5 msg/s: 9 deliveries per message.
    let fanout = FanoutSettings { rooms: 2, members: 10, senders: 1, rate: 5.0, ..FanoutSettings::default() };
    let report = sb_loadgen::run(client.clone(), &run_settings("it fanout"), &Scenario::Fanout(fanout))
        .await
        .expect("run fanout");
    assert_complete(&report);
    assert_eq!(report.group, "fanout 2x10 s1");
    assert_eq!(report.deliveries, report.results.messaging().map(|results| results.received));

    // 10 pairs, both sides sending to each other; users after the fanout's.
    let private_client = ClientSettings { user_offset: 50, ..client };
    let private = PrivateSettings { pairs: 10, rate: 5.0, ..PrivateSettings::default() };
    let report = sb_loadgen::run(private_client, &run_settings("it private"), &Scenario::Private(private))
        .await
        .expect("run private");
    assert_complete(&report);
    assert!(report.cpu_ms_per_1000_messages.is_some(), "private runs report CPU per message");
    stack.stop().await.expect("stop stack");
}
