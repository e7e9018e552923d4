//! NATS credentials and TLS: what each way of authenticating looks like to a
//! real nats-server, and the start-up error when it is wrong.

use sb_config::{NatsArgs, Secret};
use sb_events::bus::Bus;
use sb_tests::stack::{StackOptions, TestStack};
use sb_tests::tls::TestCa;
use sb_tests::{DbKind, NatsServer, TestDatabase};

use super::{AccountsServer, chain, tls_block, write};

/// Every service's `App::build` with `nats`; returns each one's error text.
async fn start_errors(nats: &NatsArgs) -> Vec<(&'static str, String)> {
    let db = TestDatabase::create(DbKind::Sqlite).await.expect("sqlite");
    let mut auth = sb_tests::auth::auth_config(&db.url, &nats.url, Some("a-secret-of-at-least-32-bytes-long!!"));
    auth.nats = nats.clone();
    let mut presence = sb_tests::presence::replica_config(&nats.url, "http://127.0.0.1:1");
    presence.nats = nats.clone();
    let mut messaging = sb_tests::messaging::messaging_config(&nats.url, &db.url);
    messaging.nats = nats.clone();
    let mut edge = sb_tests::edge::edge_config(&nats.url, "http://127.0.0.1:1");
    edge.nats = nats.clone();
    vec![
        ("auth", chain(&sb_auth::App::build(auth).await.err().expect("auth must not start"))),
        ("presence", chain(&sb_presence::App::build(presence).await.err().expect("presence must not start"))),
        ("messaging", chain(&sb_messaging::App::build(messaging).await.err().expect("messaging must not start"))),
        ("edge", chain(&sb_edge::App::build(edge).await.err().expect("the edge must not start"))),
    ]
}

#[tokio::test]
async fn wrong_credentials_stop_every_service_naming_the_setting() {
    let server = AccountsServer::start().await.expect("start the TLS + accounts nats-server");
    let password = server.team_a_password.clone();

    let mut wrong_password = server.team_a();
    wrong_password.password = Some(Secret::new("not-the-password"));
    let debug = format!("{wrong_password:?}");
    assert!(!debug.contains("not-the-password") && debug.contains("***"), "Debug hides the password: {debug}");
    for (service, error) in start_errors(&wrong_password).await {
        assert!(
            error.contains("refused the credentials from NATS_USER=team-a and NATS_PASSWORD: authorization violation"),
            "{service}: {error}"
        );
        assert!(!error.contains("not-the-password") && !error.contains(&password), "{service} leaks a secret: {error}");
    }

    // The same wrong password in the URL: printed redacted, named as the URL's.
    let mut in_url = NatsArgs::for_url(server.url().replacen("tls://", "tls://team-a:hunter2@", 1));
    in_url.tls_ca_file = Some(server.ca.ca_file.clone());
    assert!(format!("{in_url:?}").contains("tls://team-a:***@127.0.0.1:"), "{in_url:?}");
    let error = chain(&Bus::connect(&in_url, "test").await.expect_err("refused"));
    assert!(error.contains("refused the credentials from the user team-a and password in NATS_URL"), "{error}");
    assert!(!error.contains("hunter2"), "{error}");

    // An NKey the server does not know.
    let dir = tempfile::tempdir().expect("temp dir");
    let stranger = write(dir.path(), "stranger.nk", &nkeys::KeyPair::new_user().seed().expect("seed"));
    let mut unknown_nkey = server.team_b();
    unknown_nkey.nkey_seed_file = Some(stranger.clone());
    let expected = format!("refused the credentials from NATS_NKEY_SEED_FILE={}", stranger.display());
    for (service, error) in start_errors(&unknown_nkey).await {
        assert!(error.contains(&expected), "{service}: {error}");
    }

    // A seed file that is not there, and none at all.
    let mut missing = server.team_b();
    missing.nkey_seed_file = Some(dir.path().join("missing.nk"));
    let error = chain(&Bus::connect(&missing, "test").await.expect_err("no seed file"));
    assert!(
        error.starts_with(&format!("read NATS_NKEY_SEED_FILE={}", dir.path().join("missing.nk").display())),
        "{error}"
    );
    let mut anonymous = NatsArgs::for_url(server.url());
    anonymous.tls_ca_file = Some(server.ca.ca_file.clone());
    let error = chain(&Bus::connect(&anonymous, "test").await.expect_err("anonymous"));
    assert!(error.contains("refused the credentials from no credentials (set NATS_CREDS_FILE"), "{error}");

    // A CA that did not sign the server's certificate.
    let other_ca = TestCa::new(dir.path(), "other").expect("another CA");
    let mut wrong_ca = server.team_a();
    wrong_ca.tls_ca_file = Some(other_ca.ca_file.clone());
    for (service, error) in start_errors(&wrong_ca).await {
        assert!(
            error.contains(&format!("with TLS (NATS_TLS_CA_FILE={}", other_ca.ca_file.display())),
            "{service}: {error}"
        );
        assert!(error.to_lowercase().contains("certificate"), "{service} says why: {error}");
    }

    // A .creds file that is not there names its setting too.
    let mut creds = NatsArgs::for_url(server.url());
    creds.creds_file = Some(dir.path().join("app.creds"));
    let error = chain(&Bus::connect(&creds, "test").await.expect_err("no creds file"));
    assert!(error.starts_with(&format!("read NATS_CREDS_FILE={}", dir.path().join("app.creds").display())), "{error}");
}

#[tokio::test]
async fn token_and_client_certificate_on_a_verifying_server() {
    let dir = NatsServer::scratch_dir().expect("dir");
    let ca = TestCa::new(dir.path(), "nats").expect("CA");
    let server_cert = ca.server_cert("nats-server").expect("server cert");
    let client = ca.client_cert("switchboard").expect("client cert");
    let token = format!("tok-{}", uuid::Uuid::now_v7().simple());
    let config = format!("{}\nauthorization {{ token: \"{token}\" }}\n", tls_block(&server_cert, &ca, true));
    let server = NatsServer::start_with_config(dir, &config).await.expect("start the verifying nats-server");

    let mut nats = NatsArgs::for_url(server.url().replacen("nats://", "tls://", 1));
    nats.token = Some(Secret::new(token.clone()));
    nats.tls_ca_file = Some(ca.ca_file.clone());
    nats.tls_cert_file = Some(client.cert.clone());
    nats.tls_key_file = Some(client.key.clone());

    // Every service starts and works with the token and the client certificate.
    let mut options = StackOptions::new(DbKind::Sqlite);
    options.nats = Some(nats.clone());
    let stack = TestStack::start_with(options).await.expect("the stack starts with a token and a client certificate");
    let alice = stack.user("alice").await.expect("alice");
    let client_a = sb_tests::edge::TestClient::connect_ws(stack.url(), &alice.token).await.expect("alice connects");
    client_a.ack("join_room", serde_json::json!({"room": "lobby"})).await.expect("join");
    let sent = client_a.ack("send_message", serde_json::json!({"room": "lobby", "message": "hi"})).await.expect("send");
    client_a.event_where("new_message", |m| m["id"] == sent["id"]).await.expect("the message comes back");

    // Without the client certificate the handshake fails, and the error names the TLS settings.
    let mut no_cert = nats.clone();
    (no_cert.tls_cert_file, no_cert.tls_key_file) = (None, None);
    let error = chain(&Bus::connect(&no_cert, "test").await.expect_err("no client certificate"));
    assert!(error.contains("no client certificate (NATS_TLS_CERT_FILE, NATS_TLS_KEY_FILE)"), "{error}");

    // A wrong token names NATS_TOKEN and does not print it.
    let mut wrong = nats.clone();
    wrong.token = Some(Secret::new("wrong-token"));
    let error = chain(&Bus::connect(&wrong, "test").await.expect_err("wrong token"));
    assert!(error.contains("refused the credentials from NATS_TOKEN: authorization violation"), "{error}");
    assert!(!error.contains("wrong-token") && !error.contains(&token), "{error}");
    client_a.disconnect().await;
    stack.stop().await.expect("stop");
}

#[tokio::test]
async fn creds_file_in_operator_mode() {
    let dir = NatsServer::scratch_dir().expect("dir");
    let ca = TestCa::new(dir.path(), "nats").expect("CA");
    let server_cert = ca.server_cert("nats-server").expect("server cert");
    let mut operator = sb_tests::jwt::Operator::new("switchboard-test").expect("operator");
    let account = operator.account("TEAM_A").expect("account");
    let creds = write(dir.path(), "team-a.creds", &account.user_creds("team-a-svc").expect("creds"));
    let config = format!("{}\n{}", tls_block(&server_cert, &ca, false), operator.server_config());
    let server = NatsServer::start_with_config(dir, &config).await.expect("start nats-server in operator mode");

    let mut nats = NatsArgs::for_url(server.url().replacen("nats://", "tls://", 1));
    nats.creds_file = Some(creds);
    nats.tls_ca_file = Some(ca.ca_file.clone());
    let mut options = StackOptions::new(DbKind::Sqlite);
    options.nats = Some(nats.clone());
    let stack = TestStack::start_with(options).await.expect("the stack starts with a .creds file");
    let alice = stack.user("alice").await.expect("alice");
    let client = sb_tests::edge::TestClient::connect_ws(stack.url(), &alice.token).await.expect("alice connects");
    client.ack("join_room", serde_json::json!({"room": "jwt"})).await.expect("join");
    let sent = client.ack("send_message", serde_json::json!({"room": "jwt", "message": "jwt"})).await.expect("send");
    client.event_where("new_message", |m| m["id"] == sent["id"]).await.expect("the message comes back");
    client.disconnect().await;
    stack.stop().await.expect("stop");

    // A user of an account the server does not know: refused, naming the file.
    let stranger = sb_tests::jwt::Operator::new("stranger").expect("operator").account("X").expect("account");
    let other_dir = tempfile::tempdir().expect("dir");
    let unknown = write(other_dir.path(), "unknown.creds", &stranger.user_creds("nobody").expect("creds"));
    let mut wrong = nats.clone();
    wrong.creds_file = Some(unknown.clone());
    let error = chain(&Bus::connect(&wrong, "test").await.expect_err("unknown account"));
    assert!(error.contains(&format!("refused the credentials from NATS_CREDS_FILE={}", unknown.display())), "{error}");
}
