//! `docs/metrics.md` is the list of every metric: after a short scenario
//! each service's `/metrics` shows every metric the page names for it, and
//! nothing the page does not name; every name follows the scheme
//! (`switchboard_<service>_…`, `_total` counters, `_seconds` durations).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use sb_tests::DbKind;
use sb_tests::edge::TestClient;
use sb_tests::http::{metric_value, scrape_metrics};
use sb_tests::stack::TestStack;
use serde_json::json;

/// The metric names `docs/metrics.md` lists, by service: every
/// backticked `switchboard_<service>_…` name in the first column of a table.
fn documented() -> BTreeMap<String, BTreeSet<String>> {
    let page = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/metrics.md"))
        .expect("docs/metrics.md is readable");
    let mut names: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in page.lines() {
        let Some(first_cell) = line.strip_prefix("| `").and_then(|rest| rest.split('`').next()) else { continue };
        let Some(service) = first_cell.strip_prefix("switchboard_").and_then(|rest| rest.split('_').next()) else {
            continue;
        };
        names.entry(service.to_owned()).or_default().insert(first_cell.to_owned());
    }
    names
}

/// The metric names a `/metrics` text exposes, as PromQL sees them:
/// counters with `_total`, the rest by family name.
fn exposed(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.split_once(' '))
        .map(|(family, kind)| {
            let name = if kind == "counter" { format!("{family}_total") } else { family.to_owned() };
            (name, kind.to_owned())
        })
        .collect()
}

#[tokio::test]
async fn every_metric_is_documented_exposed_and_named_by_the_scheme() {
    let stack = TestStack::start(DbKind::Sqlite).await.expect("start stack");
    let alice = stack.user("alice").await.expect("alice");
    let bob = stack.user("bob").await.expect("bob");
    let carol = stack.user("carol").await.expect("carol");
    let a = TestClient::connect_ws(stack.url(), &alice.token).await.expect("alice connects");
    let b = TestClient::connect_ws(stack.url(), &bob.token).await.expect("bob connects");
    assert!(TestClient::connect_ws(stack.url(), "not-a-token").await.is_err(), "a bad token is refused");
    a.ack("join_room", json!({"room": "lobby"})).await.expect("alice joins");
    b.ack("join_room", json!({"room": "lobby"})).await.expect("bob joins");
    let sent = a.ack("send_message", json!({"room": "lobby", "message": "hi"})).await.expect("room message");
    b.event_where("new_message", |v| v["id"] == sent["id"]).await.expect("room delivery");
    let sent = a.ack("send_message", json!({"to": bob.id, "message": "psst"})).await.expect("private");
    b.event_where("new_message", |v| v["id"] == sent["id"]).await.expect("private delivery");
    a.ack("send_message", json!({"to": carol.id, "message": "later"})).await.expect("offline private");
    a.ack("get_history", json!({"room": "lobby"})).await.expect("history");
    a.ack("get_online_users", json!({})).await.expect("online users");
    let refused = a.ack("join_room", json!({"room": ""})).await.expect("a refused join is acked");
    assert_eq!(refused["status"], "error", "{refused}");
    b.ack("leave_room", json!({"room": "lobby"})).await.expect("bob leaves");

    let services: [(&str, SocketAddr); 4] = [
        ("edge", stack.edges[0].addr),
        ("auth", stack.auth.metrics_addr),
        ("messaging", stack.messaging.metrics_addr),
        ("presence", stack.presence.metrics_addr),
    ];
    let documented = documented();
    let mut problems = Vec::new();
    for (service, addr) in services {
        let text = scrape_metrics(addr).await.unwrap_or_else(|error| panic!("{service} /metrics: {error}"));
        let exposed = exposed(&text);
        let listed = documented.get(service).cloned().unwrap_or_default();
        if listed.is_empty() {
            problems.push(format!("{service}: docs/metrics.md lists no metric of it"));
        }
        for name in &listed {
            if !exposed.contains_key(name) {
                problems.push(format!("{service}: documented {name} is not on /metrics"));
            }
        }
        let prefix = format!("switchboard_{service}_");
        for (name, kind) in &exposed {
            if !listed.contains(name) {
                problems.push(format!("{service}: {name} ({kind}) is on /metrics but not in docs/metrics.md"));
            }
            if !name.starts_with(&prefix) {
                problems.push(format!("{service}: {name} does not start with {prefix}"));
            }
            let durationish = ["duration", "latency", "_ms", "millis"].iter().any(|word| name.contains(word));
            if kind == "histogram" && durationish && !name.ends_with("_seconds") {
                problems.push(format!("{service}: histogram {name} measures time but is not in _seconds"));
            }
        }
    }
    assert!(problems.is_empty(), "metrics and docs/metrics.md disagree:\n{}", problems.join("\n"));
    stack.stop().await.expect("stop stack");
}

#[tokio::test]
async fn delivery_latency_is_observed_and_nats_state_follows_the_connection() {
    let mut stack = TestStack::start(DbKind::Sqlite).await.expect("start stack");
    let alice = stack.user("alice").await.expect("alice");
    let bob = stack.user("bob").await.expect("bob");
    let a = TestClient::connect_ws(stack.url(), &alice.token).await.expect("alice connects");
    let b = TestClient::connect_ws(stack.url(), &bob.token).await.expect("bob connects");
    let edge = stack.edges[0].addr;
    let before = scrape_metrics(edge).await.expect("edge metrics");
    let observed = |text: &str| metric_value(text, "switchboard_edge_delivery_latency_seconds_count").unwrap_or(0.0);
    assert_eq!(observed(&before), 0.0, "nothing delivered yet");
    let sent = a.ack("send_message", json!({"to": bob.id, "message": "one"})).await.expect("private");
    b.event_where("new_message", |v| v["id"] == sent["id"]).await.expect("delivered");
    // One private delivery to bob; alice's copy has no other socket to go to.
    let after = scrape_metrics(edge).await.expect("edge metrics");
    assert_eq!(observed(&after), 1.0, "{after}");

    let services = [
        ("edge", edge),
        ("auth", stack.auth.metrics_addr),
        ("messaging", stack.messaging.metrics_addr),
        ("presence", stack.presence.metrics_addr),
    ];
    for (service, addr) in services {
        let name = format!("switchboard_{service}_nats_connected");
        let text = scrape_metrics(addr).await.expect("metrics");
        assert_eq!(metric_value(&text, &name), Some(1.0), "{service} with NATS up: {text}");
    }
    stack.kill_nats();
    for (service, addr) in services {
        let name = format!("switchboard_{service}_nats_connected");
        sb_tests::wait_until(&format!("{name} is 0"), Duration::from_secs(10), || async {
            let text = scrape_metrics(addr).await.ok()?;
            (metric_value(&text, &name) == Some(0.0)).then_some(())
        })
        .await;
    }
    stack.restart_nats().await.expect("restart NATS");
    for (service, addr) in services {
        let name = format!("switchboard_{service}_nats_connected");
        sb_tests::wait_until(&format!("{name} is 1 again"), Duration::from_secs(20), || async {
            let text = scrape_metrics(addr).await.ok()?;
            (metric_value(&text, &name) == Some(1.0)).then_some(())
        })
        .await;
    }
    stack.stop().await.expect("stop stack");
}
