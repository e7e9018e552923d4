//! `kick`, `edges list` and `edges drain` against real edges (EdgeControl,
//! served by presence): kicked sockets get the reason in an `exception` and
//! are disconnected within 1 s; a drained edge shows as draining.

use std::time::Duration;

use sb_tests::DbKind;
use sb_tests::edge::{TestClient, TokenVia, Transport};
use sb_tests::stack::{StackOptions, TestStack};
use serde_json::json;

use super::{Ctl, table};

#[tokio::test]
async fn kick_list_and_drain_edges() {
    let stack = TestStack::start_with(StackOptions { edges: 2, ..StackOptions::new(DbKind::Sqlite) })
        .await
        .expect("start stack");
    let ctl = Ctl::for_stack(&stack).await;
    let (alice, bob) = (stack.user("alice").await.expect("alice"), stack.user("bob").await.expect("bob"));
    let alice_ws = TestClient::connect_ws(&stack.edges[0].url, &alice.token).await.expect("alice on A");
    let alice_polling =
        TestClient::connect(&stack.edges[1].url, Some(&alice.token), TokenVia::AuthObject, Transport::Polling)
            .await
            .expect("alice on B");
    let bob_ws = TestClient::connect_ws(&stack.edges[1].url, &bob.token).await.expect("bob on B");
    let (edge_a, edge_b) = (stack.edges[0].edge_id.clone(), stack.edges[1].edge_id.clone());

    let listed = sb_tests::wait_until("both edges with their sockets", Duration::from_secs(20), || async {
        let listed = ctl.json(&["edges", "list"]).await;
        let sockets: Vec<u64> = listed["edges"].as_array()?.iter().filter_map(|e| e["sockets"].as_u64()).collect();
        (sockets.iter().sum::<u64>() == 3 && sockets.len() == 2).then_some(listed)
    })
    .await;
    let mut ids = [edge_a.clone(), edge_b.clone()];
    ids.sort();
    assert_eq!(listed["edges"][0]["id"], ids[0].as_str());
    for edge in listed["edges"].as_array().unwrap() {
        assert_eq!(edge["draining"], false);
        assert!(edge["version"].as_str().is_some_and(|v| !v.is_empty()), "{edge}");
        assert!(edge["last_heartbeat"].as_str().is_some_and(|at| at.ends_with('Z')), "{edge}");
    }
    let rows = table(ctl.run(&["edges", "list"]).await.ok());
    assert_eq!(rows[0], ["ID", "ADDRESS", "VERSION", "SOCKETS", "USERS", "STATE", "LAST HEARTBEAT (UTC)"]);
    assert_eq!(rows.len(), 3);
    assert!(rows[1..].iter().all(|row| row[5] == "serving"), "{rows:?}");

    // kick: every socket of alice, on both edges, within a second; bob carries on.
    let kicked = ctl.json(&["kick", &alice.id, "--reason", "spamming"]).await;
    assert_eq!(kicked, json!({"user_id": alice.id, "sockets": 2, "edges": 2}));
    for client in [&alice_ws, &alice_polling] {
        tokio::time::timeout(Duration::from_secs(1), async {
            let exception = client.event("exception").await.expect("exception");
            assert_eq!(exception["message"], "spamming");
            client.closed().await.expect("disconnected");
        })
        .await
        .expect("kicked within 1 s");
    }
    assert_eq!(bob_ws.ack("ping", json!({})).await.expect("bob pings")["user"]["id"], bob.id);
    let again = ctl.run(&["kick", &alice.id]).await;
    assert!(again.ok().starts_with(&format!("kicked {}: 0 socket(s)", alice.id)), "{again:?}");
    assert_eq!(
        ctl.run_as(&bob.token, &["kick", &alice.id]).await.fails(),
        "permission denied: the token is not an admin's"
    );
    assert!(ctl.run(&["kick", &alice.id, "--reason", &"x".repeat(501)]).await.fails().contains("reason"));

    // drain: B closes bob's socket over the period and shows as draining.
    let drained = ctl.json(&["edges", "drain", &edge_b, "--over", "1s"]).await;
    assert_eq!(drained, json!({"edge_id": edge_b, "sockets": 1, "over_ms": 1000}));
    bob_ws.closed().await.expect("bob's transport closed by the drain");
    let listed = sb_tests::wait_until("B draining", Duration::from_secs(20), || async {
        let listed = ctl.json(&["edges", "list"]).await;
        let draining = listed["edges"].as_array()?.iter().any(|e| e["id"] == edge_b.as_str() && e["draining"] == true);
        draining.then_some(listed)
    })
    .await;
    assert!(listed["edges"].as_array().unwrap().iter().any(|e| e["id"] == edge_a.as_str() && e["draining"] == false));
    let table_drain = ctl.run(&["edges", "drain", &edge_b, "--over", "1s"]).await;
    assert!(table_drain.ok().starts_with(&format!("draining {edge_b}: ")), "{table_drain:?}");
    assert_eq!(ctl.run(&["edges", "drain", "no-such-edge"]).await.fails(), "no edge with id no-such-edge");
    let bad_over = ctl.run(&["edges", "drain", &edge_a, "--over", "soon"]).await;
    assert_eq!(bad_over.code, 2, "{bad_over:?}");
    stack.stop().await.expect("stop stack");
}
