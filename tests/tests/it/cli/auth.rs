//! `login`, `users …` and `tokens …` against a real auth, on both databases.

use sb_tests::DbKind;
use sb_tests::auth::{ADMIN_EMAIL, ADMIN_PASSWORD};
use sb_tests::stack::TestStack;
use serde_json::json;

use super::{Ctl, both, table};

async fn login_stores_a_private_token_per_context(kind: DbKind) {
    let stack = TestStack::start(kind).await.expect("start stack");
    let ctl = Ctl::for_stack(&stack).await;

    let token_file = ctl.config_home().join("switchboardctl/tokens/test");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&token_file).expect("token file").permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the token file is the user's alone");
    }
    let stored = std::fs::read_to_string(&token_file).expect("read token");
    let verified = ctl.json(&["tokens", "verify"]).await;
    assert_eq!(verified["user"]["email"], ADMIN_EMAIL);
    assert_eq!(verified["user"]["role"], "admin");
    assert!(verified["expires_at"].as_str().expect("RFC 3339 expiry").ends_with('Z'), "{verified}");

    // Table output of login, and --print-token, which prints instead of storing.
    let relogin = ctl.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    assert!(relogin.ok().starts_with(&format!("logged in to test as {ADMIN_EMAIL} (admin)")), "{relogin:?}");
    let printed = ctl
        .run_with(
            &["login", "--email", ADMIN_EMAIL, "--password-stdin", "--print-token"],
            Some(&format!("{ADMIN_PASSWORD}\n")),
            &[],
        )
        .await;
    let printed = printed.ok().trim().to_owned();
    assert_eq!(printed.split('.').count(), 3, "a JWT: {printed}");
    let verified = ctl.json(&["tokens", "verify", &printed]).await;
    assert_eq!(verified["user"]["email"], ADMIN_EMAIL);
    let json_login = ctl
        .run_with(&["login", "--email", ADMIN_EMAIL, "--password-stdin", "-o", "json"], Some(ADMIN_PASSWORD), &[])
        .await
        .json();
    assert_eq!(json_login["context"], "test");
    assert_eq!(json_login["user"]["email"], ADMIN_EMAIL);
    assert_eq!(json_login["token"], serde_json::Value::Null, "the token is stored, not printed");
    assert_eq!(json_login["token_file"], token_file.display().to_string());
    assert_ne!(std::fs::read_to_string(&token_file).unwrap(), "", "{stored}");

    // Failures of login itself.
    assert_eq!(ctl.login(ADMIN_EMAIL, "wrong-password").await.fails(), "login failed: invalid email or password");
    assert_eq!(
        ctl.run(&["login", "--email", ADMIN_EMAIL]).await.fails(),
        "no password: pipe it in with --password-stdin"
    );

    // logout forgets the token; then every admin command says how to log in.
    assert_eq!(ctl.run(&["logout"]).await.ok(), "logged out of test\n");
    assert!(!token_file.exists());
    assert_eq!(ctl.run(&["users", "list"]).await.fails(), "not logged in: run switchboardctl --context test login");
    // SWITCHBOARD_TOKEN stands in for a stored token.
    let listed = ctl.run_as(&stack.auth.admin_token, &["users", "list", "-o", "json"]).await.json();
    assert_eq!(listed["users"][0]["email"], ADMIN_EMAIL);
    stack.stop().await.expect("stop stack");
}
both!(login_stores_a_private_token_per_context);

async fn users_commands_in_table_and_json(kind: DbKind) {
    let stack = TestStack::start(kind).await.expect("start stack");
    let ctl = Ctl::for_stack(&stack).await;
    let created = ctl
        .run_with(
            &["users", "create", "--email", "Ada@Example.com", "--password-stdin", "-o", "json"],
            Some("ada-password\n"),
            &[],
        )
        .await
        .json();
    let ada = created["id"].as_str().expect("an id").to_owned();
    assert_eq!(created["email"], "ada@example.com");
    assert_eq!(created["role"], "user");
    assert_eq!(created["disabled"], false);
    assert_eq!(created["token_version"], 0);
    assert!(created["created_at"].as_str().expect("RFC 3339").contains('T'), "{created}");
    // The created user can log in with the password from stdin.
    let other = Ctl::for_stack(&stack).await;
    assert!(other.login("ada@example.com", "ada-password").await.ok().contains("(user)"));

    let imported = ctl
        .run_with(
            &[
                "users",
                "create",
                "--email",
                "grace@example.com",
                "--role",
                "admin",
                "--id",
                "legacy-7",
                "--password-stdin",
            ],
            Some("grace-password\n"),
            &[],
        )
        .await;
    let rows = table(imported.ok());
    assert_eq!(rows[0], ["ID", "EMAIL", "ROLE", "STATE", "TOKEN VERSION", "CREATED (UTC)"]);
    assert_eq!(rows[1][..5], ["legacy-7", "grace@example.com", "admin", "enabled", "0"]);
    assert_eq!(rows[1][5].len(), "2025-01-01 00:00:00".len(), "readable timestamp: {rows:?}");
    let duplicate =
        ctl.run_with(&["users", "create", "--email", "grace@example.com", "--password-stdin"], Some("x\n"), &[]).await;
    assert_eq!(duplicate.fails(), "a user with this email already exists");

    let got = ctl.json(&["users", "get", &ada]).await;
    assert_eq!(got, created);
    let got = ctl.run(&["users", "get", "legacy-7"]).await;
    assert_eq!(table(got.ok())[1][0], "legacy-7");

    // list: every user in JSON; a page at a time with a token to go on.
    let all = ctl.json(&["users", "list"]).await;
    let emails: Vec<&str> = all["users"].as_array().unwrap().iter().map(|u| u["email"].as_str().unwrap()).collect();
    assert_eq!(emails.len(), 3, "{all}");
    assert!(emails.contains(&"ada@example.com") && emails.contains(&ADMIN_EMAIL), "{emails:?}");
    assert_eq!(all["next_page_token"], serde_json::Value::Null);
    let page = ctl.json(&["users", "list", "--limit", "2"]).await;
    assert_eq!(page["users"].as_array().unwrap().len(), 2);
    let next = page["next_page_token"].as_str().expect("a next page").to_owned();
    let rest = ctl.json(&["users", "list", "--limit", "2", "--page-token", &next]).await;
    assert_eq!(rest["users"].as_array().unwrap().len(), 1);
    let table_page = ctl.run(&["users", "list", "--limit", "2"]).await;
    assert_eq!(table(table_page.ok()).len(), 3, "header and two rows");
    assert!(table_page.stderr.contains("--page-token"), "{table_page:?}");
    let followed = ctl.json(&["users", "list", "--limit", "1", "--all"]).await;
    assert_eq!(followed["users"].as_array().unwrap().len(), 3);

    // set-role, disable, enable: each prints the user as it is now.
    assert_eq!(ctl.json(&["users", "set-role", &ada, "admin"]).await["role"], "admin");
    let disabled = ctl.run(&["users", "disable", &ada]).await;
    assert_eq!(table(disabled.ok())[1][3], "disabled");
    let enabled = ctl.json(&["users", "enable", &ada]).await;
    assert_eq!((enabled["disabled"].clone(), enabled["role"].clone()), (json!(false), json!("admin")));

    // seed: bulk users, existing ids skipped.
    let seeded = ctl.json(&["users", "seed", "--count", "5", "--prefix", "load"]).await;
    assert_eq!((seeded["requested"].clone(), seeded["created"].clone()), (json!(5), json!(5)));
    assert_eq!(seeded["last_id"], "load5");
    let again = ctl.run(&["users", "seed", "--count", "6", "--prefix", "load"]).await;
    assert!(again.ok().starts_with("created 1 of 6 users load1..load6"), "{again:?}");
    assert_eq!(ctl.json(&["users", "get", "load3"]).await["email"], "load3@load.test");

    // Unknown users, a non-admin's token, bad flags.
    for args in [
        vec!["users", "get", "nobody"],
        vec!["users", "disable", "nobody"],
        vec!["users", "enable", "nobody"],
        vec!["users", "set-role", "nobody", "user"],
    ] {
        assert_eq!(ctl.run(&args).await.fails(), "no user with id nobody", "{args:?}");
    }
    let user = stack.user("plain").await.expect("plain user");
    assert_eq!(
        ctl.run_as(&user.token, &["users", "list"]).await.fails(),
        "permission denied: the token is not an admin's"
    );
    assert_eq!(
        ctl.run_as("not-a-jwt", &["users", "list"]).await.fails(),
        "the token was refused (token invalid): run switchboardctl --context test login"
    );
    let bad_role = ctl.run(&["users", "set-role", &ada, "superuser"]).await;
    assert_eq!(bad_role.code, 2, "a bad flag is a usage error: {bad_role:?}");
    assert!(bad_role.stderr.contains("superuser"), "{bad_role:?}");
    let bad_count = ctl.run(&["users", "seed", "--count", "0"]).await;
    assert_eq!(bad_count.code, 2, "{bad_count:?}");
    stack.stop().await.expect("stop stack");
}
both!(users_commands_in_table_and_json);

async fn tokens_issue_verify_and_revoke(kind: DbKind) {
    let stack = TestStack::start(kind).await.expect("start stack");
    let ctl = Ctl::for_stack(&stack).await;
    let bob = stack.user("bob").await.expect("bob");

    // issue: the bare token on stdout (for $(…)), the expiry on stderr.
    let issued = ctl.run(&["tokens", "issue", "--user", &bob.id, "--ttl", "1h"]).await;
    let token = issued.ok().trim().to_owned();
    assert!(issued.stderr.starts_with("valid until "), "{issued:?}");
    let verified = ctl.json(&["tokens", "verify", &token]).await;
    assert_eq!(verified["user"]["id"], bob.id);
    let issued_at = time::OffsetDateTime::parse(
        verified["issued_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let expires_at = time::OffsetDateTime::parse(
        verified["expires_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert_eq!((expires_at - issued_at).whole_seconds(), 3600, "--ttl 1h");
    let verified_table = ctl.run(&["tokens", "verify", &token]).await;
    let rows = table(verified_table.ok());
    assert_eq!(rows[0], ["USER", "EMAIL", "ROLE", "ISSUED (UTC)", "EXPIRES (UTC)"]);
    assert_eq!(rows[1][..3], [bob.id.as_str(), "bob@example.com", "user"]);

    let issued_json = ctl.json(&["tokens", "issue", "--user", &bob.id]).await;
    assert_eq!(issued_json["user_id"], bob.id);
    assert!(issued_json["token"].as_str().is_some_and(|t| t.split('.').count() == 3), "{issued_json}");

    // revoke: the version goes up and the old tokens stop verifying.
    let revoked = ctl.json(&["tokens", "revoke", "--user", &bob.id]).await;
    assert_eq!(revoked, json!({"user_id": bob.id, "token_version": 1}));
    assert_eq!(ctl.run(&["tokens", "verify", &token]).await.fails(), "the token does not verify: token revoked");
    let revoked_table = ctl.run(&["tokens", "revoke", "--user", &bob.id]).await;
    assert!(revoked_table.ok().contains("token version now 2"), "{revoked_table:?}");

    // Failures.
    for args in [vec!["tokens", "issue", "--user", "nobody"], vec!["tokens", "revoke", "--user", "nobody"]] {
        assert_eq!(ctl.run(&args).await.fails(), "no user with id nobody", "{args:?}");
    }
    assert_eq!(
        ctl.run_as(&bob.token, &["tokens", "issue", "--user", &bob.id]).await.fails(),
        "the token was refused (token revoked): run switchboardctl --context test login"
    );
    let fresh = ctl.run(&["tokens", "issue", "--user", &bob.id]).await.ok().trim().to_owned();
    assert_eq!(
        ctl.run_as(&fresh, &["tokens", "revoke", "--user", &bob.id]).await.fails(),
        "permission denied: the token is not an admin's"
    );
    let bad_ttl = ctl.run(&["tokens", "issue", "--user", &bob.id, "--ttl", "soon"]).await;
    assert_eq!(bad_ttl.code, 2, "{bad_ttl:?}");
    assert!(bad_ttl.stderr.contains("not a duration"), "{bad_ttl:?}");
    let missing = ctl.run(&["tokens", "issue"]).await;
    assert_eq!(missing.code, 2, "{missing:?}");
    stack.stop().await.expect("stop stack");
}
both!(tokens_issue_verify_and_revoke);
