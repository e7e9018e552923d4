//! NATS decentralized auth (operator → account → user JWTs) made in a test,
//! as `nsc` would: an operator, accounts with JetStream, users, and their
//! `.creds` files, for a nats-server in operator mode with a memory resolver.
//!
//! A NATS JWT is `base64url(header).base64url(claims).base64url(signature)`
//! with header `{"typ":"JWT","alg":"ed25519-nkey"}`, signed by the issuer's
//! NKey (the operator signs accounts, an account signs its users).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use nkeys::KeyPair;
use serde_json::{Value, json};

/// An operator and the accounts it signed.
pub struct Operator {
    key: KeyPair,
    jwt: String,
    /// The system account (JetStream needs one in operator mode).
    system: String,
    accounts: Vec<(String, String)>,
}

/// An account: its key signs its users.
pub struct Account {
    key: KeyPair,
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// Encodes and signs `nats` claims about `subject`, issued by `issuer`.
fn sign(issuer: &KeyPair, subject: &str, name: &str, nats: Value) -> anyhow::Result<String> {
    let header = URL_SAFE_NO_PAD.encode(br#"{"typ":"JWT","alg":"ed25519-nkey"}"#);
    let claims = json!({
        "jti": uuid::Uuid::now_v7().simple().to_string().to_uppercase(),
        "iat": now(),
        "iss": issuer.public_key(),
        "name": name,
        "sub": subject,
        "nats": nats,
    });
    let claims = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims)?);
    let signed = format!("{header}.{claims}");
    let signature = issuer.sign(signed.as_bytes()).map_err(|error| anyhow::anyhow!("sign a JWT: {error}"))?;
    Ok(format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature)))
}

impl Operator {
    /// A new operator.
    pub fn new(name: &str) -> anyhow::Result<Self> {
        let key = KeyPair::new_operator();
        let system = KeyPair::new_account();
        let jwt = sign(
            &key,
            &key.public_key(),
            name,
            json!({"type": "operator", "version": 2, "system_account": system.public_key()}),
        )?;
        let system_jwt = sign(
            &key,
            &system.public_key(),
            "SYS",
            json!({"type": "account", "version": 2, "limits": {"subs": -1, "data": -1, "payload": -1, "imports": -1,
                "exports": -1, "wildcards": true, "conn": -1, "leaf": -1}}),
        )?;
        Ok(Self { key, jwt, system: system.public_key(), accounts: vec![(system.public_key(), system_jwt)] })
    }

    /// A new account with JetStream and no limits, exporting nothing.
    pub fn account(&mut self, name: &str) -> anyhow::Result<Account> {
        let key = KeyPair::new_account();
        let limits = json!({
            "subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1, "wildcards": true,
            "conn": -1, "leaf": -1, "mem_storage": -1, "disk_storage": -1, "streams": -1, "consumer": -1,
        });
        let nats =
            json!({"type": "account", "version": 2, "limits": limits, "default_permissions": {"pub": {}, "sub": {}}});
        let jwt = sign(&self.key, &key.public_key(), name, nats)?;
        self.accounts.push((key.public_key(), jwt));
        Ok(Account { key })
    }

    /// The server configuration: this operator, a memory resolver with
    /// every account preloaded.
    pub fn server_config(&self) -> String {
        let preload: Vec<String> = self.accounts.iter().map(|(public, jwt)| format!("  {public}: \"{jwt}\"")).collect();
        format!(
            "operator: \"{}\"\nsystem_account: {}\nresolver: MEMORY\nresolver_preload: {{\n{}\n}}\n",
            self.jwt,
            self.system,
            preload.join("\n")
        )
    }
}

impl Account {
    /// A `.creds` file's text for a new user of this account.
    pub fn user_creds(&self, name: &str) -> anyhow::Result<String> {
        let user = KeyPair::new_user();
        let nats = json!({"type": "user", "version": 2, "pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1});
        let jwt = sign(&self.key, &user.public_key(), name, nats)?;
        let seed = user.seed().map_err(|error| anyhow::anyhow!("user seed: {error}"))?;
        Ok(format!(
            "-----BEGIN NATS USER JWT-----\n{jwt}\n------END NATS USER JWT------\n\n\
             ************************* IMPORTANT *************************\n\
             NKEY Seed printed below can be used to sign and prove identity.\n\
             NKEYs are sensitive and should be treated as secrets.\n\n\
             -----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n"
        ))
    }
}
