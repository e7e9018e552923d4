//! Secured connections against real servers: a nats-server that requires TLS
//! and accounts (certificates and NKeys made by the test), every service
//! starting against it, wrong credentials failing start-up with the setting
//! named, two teams isolated on one server, and PostgreSQL over TLS.

mod nats;
mod postgres;
mod teams;

use std::path::Path;

use sb_config::{NatsArgs, Secret};
use sb_tests::NatsServer;
use sb_tests::tls::{CertFiles, TestCa};

/// The two teams' passwords and NKeys, and the server they share.
pub struct AccountsServer {
    pub server: NatsServer,
    pub ca: TestCa,
    /// `team-a` authenticates with this user/password (account `TEAM_A`).
    pub team_a_password: String,
    /// `team-b` authenticates with this NKey seed file (account `TEAM_B`).
    pub team_b_seed_file: std::path::PathBuf,
}

/// The permissions a Switchboard instance with prefix `prefix` needs: its own
/// subjects, the JetStream API and acks, and reply inboxes (the snippet in
/// docs/deploy.md).
fn permissions(prefix: &str) -> String {
    format!(
        r#"permissions: {{
          publish: {{ allow: ["{prefix}.>", "$JS.API.>", "$JS.ACK.>", "$JS.FC.>", "_INBOX.>"] }}
          subscribe: {{ allow: ["{prefix}.>", "_INBOX.>"] }}
        }}"#
    )
}

/// A TLS server certificate for `dir`'s CA, in nats-server's `tls {}` block
/// (`verify: true` asks every client for a certificate).
fn tls_block(server: &CertFiles, ca: &TestCa, verify: bool) -> String {
    format!(
        "tls {{\n  cert_file: \"{}\"\n  key_file: \"{}\"\n  ca_file: \"{}\"\n  verify: {verify}\n  timeout: 5\n}}\n",
        server.cert.display(),
        server.key.display(),
        ca.ca_file.display()
    )
}

impl AccountsServer {
    /// A nats-server that requires TLS and has two accounts with JetStream,
    /// exporting and importing nothing: `TEAM_A` (user `team-a` with a
    /// password) and `TEAM_B` (an NKey user), each allowed only its own prefix.
    pub async fn start() -> anyhow::Result<Self> {
        let dir = NatsServer::scratch_dir()?;
        let ca = TestCa::new(dir.path(), "nats")?;
        let cert = ca.server_cert("nats-server")?;
        let team_a_password = format!("pw-{}", uuid::Uuid::now_v7().simple());
        let team_b = nkeys::KeyPair::new_user();
        let team_b_seed_file = dir.path().join("team-b.nk");
        std::fs::write(&team_b_seed_file, format!("{}\n", team_b.seed()?))?;
        let config = format!(
            r#"{tls}
accounts {{
  TEAM_A {{
    jetstream: enabled
    users: [ {{ user: "team-a", password: "{team_a_password}", {perm_a} }} ]
  }}
  TEAM_B {{
    jetstream: enabled
    users: [ {{ nkey: "{team_b_public}", {perm_b} }} ]
  }}
}}
"#,
            tls = tls_block(&cert, &ca, false),
            perm_a = permissions("team-a"),
            perm_b = permissions("team-b"),
            team_b_public = team_b.public_key(),
        );
        let server = NatsServer::start_with_config(dir, &config).await?;
        Ok(Self { server, ca, team_a_password, team_b_seed_file })
    }

    /// `NATS_URL`.
    pub fn url(&self) -> String {
        self.server.url().replacen("nats://", "tls://", 1)
    }

    /// team-a's settings: user/password, the test CA, prefix `team-a`.
    pub fn team_a(&self) -> NatsArgs {
        let mut args = NatsArgs::for_url(self.url());
        args.subject_prefix = "team-a".to_owned();
        args.user = Some("team-a".to_owned());
        args.password = Some(Secret::new(self.team_a_password.clone()));
        args.tls_ca_file = Some(self.ca.ca_file.clone());
        args
    }

    /// team-b's settings: the NKey seed file, the test CA, prefix `team-b`.
    pub fn team_b(&self) -> NatsArgs {
        let mut args = NatsArgs::for_url(self.url());
        args.subject_prefix = "team-b".to_owned();
        args.nkey_seed_file = Some(self.team_b_seed_file.clone());
        args.tls_ca_file = Some(self.ca.ca_file.clone());
        args
    }
}

/// An error and its sources, as one line (`{:#}` of anyhow).
pub fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(next) = source {
        text.push_str(": ");
        text.push_str(&next.to_string());
        source = next.source();
    }
    text
}

/// Writes `text` to `name` in `dir`.
pub fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write a test file");
    path
}
