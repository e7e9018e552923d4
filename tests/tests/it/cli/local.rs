//! What needs no stack: contexts and their overrides, the errors when the
//! stack is down or nobody logged in, bad flags, help and completions.

use serde_json::json;

use super::{Ctl, table};

/// A free loopback port nothing listens on.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

#[tokio::test]
async fn contexts_add_use_list_and_override() {
    let ctl = Ctl::new();
    let listed = ctl.json(&["context", "list"]).await;
    assert_eq!(
        listed,
        json!({"current": "local", "contexts": [{
            "name": "local",
            "auth": "http://127.0.0.1:50051",
            "presence": "http://127.0.0.1:50052",
            "messaging": "http://127.0.0.1:50053",
            "logged_in": false,
        }]})
    );
    let added = ctl
        .run(&[
            "context",
            "add",
            "prod",
            "--auth",
            "10.0.0.1:50051",
            "--presence",
            "http://10.0.0.2:50052/",
            "--messaging",
            "10.0.0.3:50053",
        ])
        .await;
    assert_eq!(added.ok(), "context prod added\n");
    assert_eq!(ctl.run(&["context", "use", "prod"]).await.ok(), "now using context prod\n");
    let rows = table(ctl.run(&["context", "list"]).await.ok());
    assert_eq!(rows[0], ["CURRENT", "NAME", "AUTH", "PRESENCE", "MESSAGING", "LOGGED IN"]);
    assert_eq!(rows[1], ["local", "http://127.0.0.1:50051", "http://127.0.0.1:50052", "http://127.0.0.1:50053", "no"]);
    assert_eq!(rows[2], ["*", "prod", "http://10.0.0.1:50051", "http://10.0.0.2:50052", "http://10.0.0.3:50053", "no"]);
    // --context and SWITCHBOARD_CONTEXT pick another for one call; the flag wins over the variable.
    assert_eq!(ctl.json(&["context", "list", "--context", "local"]).await["current"], "local");
    let via_env = ctl.run_with(&["context", "list", "-o", "json"], None, &[("SWITCHBOARD_CONTEXT", "local")]).await;
    assert_eq!(via_env.json()["current"], "local");
    let both = ctl
        .run_with(&["--context", "prod", "context", "list", "-o", "json"], None, &[("SWITCHBOARD_CONTEXT", "local")])
        .await;
    assert_eq!(both.json()["current"], "prod");
    assert_eq!(
        ctl.run(&["--context", "staging", "online"]).await.fails(),
        "no context named staging (see switchboardctl context list)"
    );
    assert_eq!(
        ctl.run(&["context", "use", "staging"]).await.fails(),
        "no context named staging (see switchboardctl context list)"
    );
    // Adding one may name it with --context already (scripts pass one flag to every call).
    let staging = ["--context", "staging", "context", "add", "staging", "--auth", "s:1", "--presence", "s:2"];
    assert_eq!(ctl.run(&[&staging[..], &["--messaging", "s:3"]].concat()).await.ok(), "context staging added\n");
    assert_eq!(ctl.json(&["--context", "staging", "context", "list"]).await["current"], "staging");
    assert_eq!(ctl.run(&["context", "use", "prod"]).await.ok(), "now using context prod\n");
    // Not logged in to prod: the hint names the context.
    assert_eq!(ctl.run(&["online"]).await.fails(), "not logged in: run switchboardctl --context prod login");
    // Replacing a context, and bad names and addresses.
    let replaced =
        ctl.json(&["context", "add", "prod", "--auth", "a:1", "--presence", "b:2", "--messaging", "c:3"]).await;
    assert_eq!(replaced, json!({"context": "prod", "replaced": true}));
    for args in [
        vec!["context", "add", "../evil", "--auth", "a:1", "--presence", "b:2", "--messaging", "c:3"],
        vec!["context", "add", "x", "--auth", "https://a:1", "--presence", "b:2", "--messaging", "c:3"],
        vec!["context", "add", "x", "--auth", "a:1", "--presence", "b:2"],
    ] {
        let run = ctl.run(&args).await;
        assert_eq!(run.code, 2, "{args:?}: {run:?}");
    }
    let config = std::fs::read_to_string(ctl.config_home().join("switchboardctl/config.json")).expect("config");
    let config: serde_json::Value = serde_json::from_str(&config).expect("json config");
    assert_eq!(config["current"], "prod");
    assert_eq!(config["contexts"]["prod"]["auth"], "http://a:1");
}

#[tokio::test]
async fn a_stack_that_is_down_is_named_with_its_address() {
    let ctl = Ctl::new();
    let (auth, presence, messaging) = (closed_port(), closed_port(), closed_port());
    ctl.run(&[
        "context",
        "add",
        "down",
        "--auth",
        &format!("127.0.0.1:{auth}"),
        "--presence",
        &format!("127.0.0.1:{presence}"),
        "--messaging",
        &format!("127.0.0.1:{messaging}"),
    ])
    .await
    .ok();
    let down = |service: &str, port: u16| {
        format!("cannot reach {service} at http://127.0.0.1:{port} — is the stack running? (make run)")
    };
    let token = [("SWITCHBOARD_TOKEN", "some-token"), ("SWITCHBOARD_CONTEXT", "down")];
    for (args, service, port) in [
        (vec!["users", "list"], "auth", auth),
        (vec!["tokens", "verify"], "auth", auth),
        (vec!["online"], "presence", presence),
        (vec!["sessions", "u1"], "presence", presence),
        (vec!["rooms", "members", "r"], "presence", presence),
        (vec!["kick", "u1"], "presence", presence),
        (vec!["edges", "list"], "presence", presence),
        (vec!["notify", "--all", "hi"], "messaging", messaging),
        (vec!["announce", "hi"], "messaging", messaging),
        (vec!["history", "--room", "r"], "messaging", messaging),
    ] {
        let run = ctl.run_with(&args, None, &token).await;
        assert_eq!(run.fails(), down(service, port), "{args:?}");
    }
    let login = ctl
        .run_with(&["--context", "down", "login", "--email", "a@example.com", "--password-stdin"], Some("pw\n"), &[])
        .await;
    assert_eq!(login.fails(), down("auth", auth));
    // Without a token nothing is sent at all.
    assert_eq!(
        ctl.run(&["--context", "down", "online"]).await.fails(),
        "not logged in: run switchboardctl --context down login"
    );
}

#[tokio::test]
async fn help_bad_flags_and_completions() {
    let ctl = Ctl::new();
    let help = ctl.run(&["--help"]).await;
    assert!(help.ok().contains("Examples:"), "{help:?}");
    for args in [
        vec!["login"],
        vec!["users", "create"],
        vec!["users", "seed"],
        vec!["tokens", "issue"],
        vec!["online"],
        vec!["sessions"],
        vec!["rooms", "members"],
        vec!["kick"],
        vec!["notify"],
        vec!["announce"],
        vec!["history"],
        vec!["edges", "drain"],
        vec!["context", "add"],
        vec!["completion"],
        vec!["bench", "verify"],
    ] {
        let mut with_help = args.clone();
        with_help.push("--help");
        let run = ctl.run(&with_help).await;
        let text = run.ok();
        assert!(text.contains("Example") && text.contains("switchboardctl "), "{args:?} help: {text}");
    }
    for args in [
        vec!["frobnicate"],
        vec!["online", "--limit", "many"],
        vec!["-o", "yaml", "online"],
        vec!["completion", "powershell-9"],
    ] {
        let run = ctl.run(&args).await;
        assert_eq!(run.code, 2, "{args:?}: {run:?}");
        assert_eq!(run.stdout, "");
        assert!(run.stderr.starts_with("error: "), "{run:?}");
    }
    for shell in ["bash", "zsh", "fish"] {
        let script = ctl.run(&["completion", shell]).await;
        let script = script.ok();
        assert!(script.contains("switchboardctl") && script.contains("notify"), "{shell}: {script}");
    }
    let version = ctl.run(&["--version"]).await;
    assert!(version.ok().starts_with("switchboardctl "), "{version:?}");
}
