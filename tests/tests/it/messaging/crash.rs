//! Kill -9 messaging while messages flow, start a new one: every message the
//! stream acknowledged (so the edge acked its client) is stored exactly once
//! and delivered at least once.

use std::collections::HashSet;

use sb_tests::CrashableRuntime;
use sb_tests::messaging::spawn_messaging_on;

use super::*;

on_both_backends!(crash_mid_flow_loses_nothing);

async fn crash_mid_flow_loses_nothing(kind: DbKind) {
    let env = Arc::new(Env::start(kind).await);
    let mut config = env.config();
    // Messages the crashed process held come back this soon.
    config.ingest_ack_wait = Duration::from_secs(2);
    config.ingest_batch_size = 16;
    let doomed = CrashableRuntime::new("messaging-doomed").expect("crashable runtime");
    spawn_messaging_on(&doomed, config.clone()).await.expect("start messaging to crash");
    let watched = env
        .watch(&[env.edge.subjects.deliver_room(&room("lobby")), env.edge.subjects.deliver_user(&user("bob"))])
        .await;

    let total = 400;
    // The second half waits for the crash, so the crash always comes before
    // everything was stored, however fast the doomed process stores.
    let (crashed, after_crash) = tokio::sync::oneshot::channel::<()>();
    let publisher = {
        let env = env.clone();
        tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut after_crash = Some(after_crash);
            for n in 0..total {
                if n == total / 2
                    && let Some(after_crash) = after_crash.take()
                {
                    after_crash.await.expect("the test crashes messaging");
                }
                let message = if n % 4 == 0 {
                    private_message("alice", "bob", &format!("p{n}"))
                } else {
                    room_message("lobby", "alice", &format!("m{n}"))
                };
                env.publish(&message).await;
                acked.push(message.id.to_string());
            }
            acked
        })
    };

    let db = env.database().await;
    wait_until("messaging to be mid-flow", WAIT, || async { (stored_rows(&db).await.len() >= 60).then_some(()) }).await;
    doomed.crash();
    let stored_at_crash = stored_rows(&db).await.len();
    crashed.send(()).expect("publisher waits for the crash");

    let _successor = spawn_messaging(config).await.expect("start the successor");
    let acked: Vec<String> = publisher.await.expect("publisher task");
    assert_eq!(acked.len(), total);
    assert!(stored_at_crash < total, "the crash came after everything was stored; the test proves nothing");

    wait_until("every acked message stored", Duration::from_secs(60), || async {
        let rows = stored_rows(&db).await;
        acked.iter().all(|id| rows.contains_key(id)).then_some(())
    })
    .await;
    let rows = stored_rows(&db).await;
    assert_eq!(rows.len(), total, "nothing stored that was not published, nothing twice");
    for id in &acked {
        assert_eq!(stored_count(&db, id).await, 1);
    }
    let delivered: HashSet<String> = wait_until("every acked message delivered", Duration::from_secs(60), || async {
        let delivered: HashSet<String> = watched.all().await.iter().map(Received::id).collect();
        acked.iter().all(|id| delivered.contains(id)).then_some(delivered)
    })
    .await;
    assert_eq!(delivered.len(), total);
    wait_for_consumer_idle(&env.edge).await;
}
