//! The NATS settings of every service: where the servers are, how to
//! authenticate, and TLS. [`NatsArgs`] is what clap reads; [`NatsArgs::servers`]
//! checks it once at start-up and returns [`NatsServers`], which
//! `sb_events::bus::Bus::connect` turns into the client's options, so every
//! service connects the same way.

use std::fmt;
use std::path::PathBuf;

use crate::Secret;

/// Where NATS is, how to authenticate to it, and TLS.
///
/// Authentication is one of: a user and password (`NATS_USER` +
/// `NATS_PASSWORD`, or `user:password@` in `NATS_URL`), a token (`NATS_TOKEN`,
/// or `token@` in `NATS_URL`), an NKey seed file (`NATS_NKEY_SEED_FILE`) or a
/// `.creds` file with a user JWT and its seed (`NATS_CREDS_FILE`). `Debug`
/// prints the URL with its password or token replaced by `***`.
#[derive(Clone, clap::Args)]
pub struct NatsArgs {
    /// NATS server URL(s), comma-separated (e.g. `nats://nats-0:4222,nats://nats-1:4222`);
    /// `tls://` requires TLS. May carry `user:password@` or `token@` (percent-encoded).
    #[arg(
        id = "nats_url",
        long = "nats-url",
        env = "NATS_URL",
        default_value = "nats://127.0.0.1:4222",
        hide_env_values = true
    )]
    pub url: String,
    /// First token of every subject and part of every stream name, so several
    /// teams or environments can share one NATS cluster. Letters, digits, `_` and `-`.
    #[arg(long = "subject-prefix", env = "SUBJECT_PREFIX", default_value = "sb")]
    pub subject_prefix: String,
    /// User name for user/password authentication (with `NATS_PASSWORD`).
    #[arg(long = "nats-user", env = "NATS_USER")]
    pub user: Option<String>,
    /// Password for `NATS_USER`.
    #[arg(long = "nats-password", env = "NATS_PASSWORD", hide_env_values = true)]
    pub password: Option<Secret>,
    /// Token for token authentication.
    #[arg(long = "nats-token", env = "NATS_TOKEN", hide_env_values = true)]
    pub token: Option<Secret>,
    /// File holding an NKey user seed (`SU…`), for NKey authentication.
    #[arg(long = "nats-nkey-seed-file", env = "NATS_NKEY_SEED_FILE")]
    pub nkey_seed_file: Option<PathBuf>,
    /// `.creds` file (user JWT and NKey seed, as `nsc` writes it), for operator/JWT mode.
    #[arg(long = "nats-creds-file", env = "NATS_CREDS_FILE")]
    pub creds_file: Option<PathBuf>,
    /// PEM file with the CA certificate(s) that signed the servers' certificates
    /// (instead of the system's roots). Implies TLS.
    #[arg(long = "nats-tls-ca-file", env = "NATS_TLS_CA_FILE")]
    pub tls_ca_file: Option<PathBuf>,
    /// PEM client certificate, for servers that verify clients (`verify: true`). Needs `NATS_TLS_KEY_FILE`; implies TLS.
    #[arg(long = "nats-tls-cert-file", env = "NATS_TLS_CERT_FILE")]
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key of `NATS_TLS_CERT_FILE`.
    #[arg(long = "nats-tls-key-file", env = "NATS_TLS_KEY_FILE")]
    pub tls_key_file: Option<PathBuf>,
    /// Refuse to talk to NATS without TLS, even if a server does not ask for it.
    #[arg(long = "nats-tls-required", env = "NATS_TLS_REQUIRED", default_value_t = false)]
    pub tls_required: bool,
}

impl fmt::Debug for NatsArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsArgs")
            .field("url", &redact_url(&self.url))
            .field("subject_prefix", &self.subject_prefix)
            .field("user", &self.user)
            .field("password", &self.password)
            .field("token", &self.token)
            .field("nkey_seed_file", &self.nkey_seed_file)
            .field("creds_file", &self.creds_file)
            .field("tls_ca_file", &self.tls_ca_file)
            .field("tls_cert_file", &self.tls_cert_file)
            .field("tls_key_file", &self.tls_key_file)
            .field("tls_required", &self.tls_required)
            .finish()
    }
}

impl NatsArgs {
    /// Settings for a NATS server at `url` with the default prefix, no
    /// credentials and no TLS settings.
    pub fn for_url(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            subject_prefix: "sb".to_owned(),
            user: None,
            password: None,
            token: None,
            nkey_seed_file: None,
            creds_file: None,
            tls_ca_file: None,
            tls_cert_file: None,
            tls_key_file: None,
            tls_required: false,
        }
    }

    /// The URLs without credentials, the one way to authenticate, and TLS,
    /// or what is wrong with the settings (naming them).
    pub fn servers(&self) -> Result<NatsServers, NatsSettingError> {
        let mut urls = Vec::new();
        let mut url_auth: Option<(Option<String>, Secret)> = None;
        let mut tls_scheme = false;
        for part in self.url.split(',').map(str::trim).filter(|part| !part.is_empty()) {
            let (url, userinfo) = split_userinfo(part);
            tls_scheme |= url.starts_with("tls://");
            if let Some(userinfo) = userinfo {
                let parsed = match userinfo.split_once(':') {
                    Some((user, password)) => (Some(percent_decode(user)), Secret::new(percent_decode(password))),
                    None => (None, Secret::new(percent_decode(userinfo))),
                };
                if url_auth.as_ref().is_some_and(|seen| seen != &parsed) {
                    return Err(NatsSettingError::UrlCredentialsDiffer);
                }
                url_auth = Some(parsed);
            }
            urls.push(url);
        }
        if urls.is_empty() {
            return Err(NatsSettingError::NoUrl);
        }

        let mut ways: Vec<NatsAuth> = Vec::new();
        match (&self.user, &self.password) {
            (Some(user), Some(password)) => ways.push(NatsAuth::UserPassword {
                user: user.clone(),
                password: password.clone(),
                from: AuthSource::Settings,
            }),
            (Some(_), None) => return Err(NatsSettingError::Missing { set: "NATS_USER", missing: "NATS_PASSWORD" }),
            (None, Some(_)) => return Err(NatsSettingError::Missing { set: "NATS_PASSWORD", missing: "NATS_USER" }),
            (None, None) => {}
        }
        if let Some(token) = &self.token {
            ways.push(NatsAuth::Token { token: token.clone(), from: AuthSource::Settings });
        }
        if let Some(path) = &self.nkey_seed_file {
            ways.push(NatsAuth::NKeySeedFile(path.clone()));
        }
        if let Some(path) = &self.creds_file {
            ways.push(NatsAuth::CredsFile(path.clone()));
        }
        match url_auth {
            Some((Some(user), password)) => ways.push(NatsAuth::UserPassword { user, password, from: AuthSource::Url }),
            Some((None, token)) => ways.push(NatsAuth::Token { token, from: AuthSource::Url }),
            None => {}
        }
        if ways.len() > 1 {
            return Err(NatsSettingError::SeveralWays(ways.iter().map(NatsAuth::setting_name).collect()));
        }
        let auth = ways.pop().unwrap_or(NatsAuth::None);

        let client_cert = match (&self.tls_cert_file, &self.tls_key_file) {
            (Some(cert), Some(key)) => Some((cert.clone(), key.clone())),
            (Some(_), None) => {
                return Err(NatsSettingError::Missing { set: "NATS_TLS_CERT_FILE", missing: "NATS_TLS_KEY_FILE" });
            }
            (None, Some(_)) => {
                return Err(NatsSettingError::Missing { set: "NATS_TLS_KEY_FILE", missing: "NATS_TLS_CERT_FILE" });
            }
            (None, None) => None,
        };
        let tls = NatsTls {
            required: self.tls_required || tls_scheme || self.tls_ca_file.is_some() || client_cert.is_some(),
            ca_file: self.tls_ca_file.clone(),
            client_cert,
        };
        Ok(NatsServers { urls, auth, tls })
    }
}

/// Checked NATS settings: what `Bus::connect` builds the client from.
#[derive(Debug, Clone)]
pub struct NatsServers {
    /// The seed URLs, without credentials (safe to print).
    pub urls: Vec<String>,
    /// How to authenticate.
    pub auth: NatsAuth,
    /// TLS settings.
    pub tls: NatsTls,
}

impl NatsServers {
    /// The URLs as one comma-separated string, for messages.
    pub fn display_urls(&self) -> String {
        self.urls.join(",")
    }
}

/// Where user/password or token credentials came from, for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthSource {
    /// `NATS_USER`/`NATS_PASSWORD` or `NATS_TOKEN`.
    Settings,
    /// The userinfo part of `NATS_URL`.
    Url,
}

/// The one way a service authenticates to NATS.
#[derive(Debug, Clone)]
pub enum NatsAuth {
    /// No credentials (a server without authorization).
    None,
    /// User and password.
    UserPassword {
        /// The user.
        user: String,
        /// Its password.
        password: Secret,
        /// Which setting they came from.
        from: AuthSource,
    },
    /// A token.
    Token {
        /// The token.
        token: Secret,
        /// Which setting it came from.
        from: AuthSource,
    },
    /// A file holding an NKey user seed.
    NKeySeedFile(PathBuf),
    /// A `.creds` file (user JWT + seed).
    CredsFile(PathBuf),
}

impl NatsAuth {
    /// The setting(s) an operator fixes when NATS refuses these credentials,
    /// with file paths and user names but never a secret:
    /// `NATS_CREDS_FILE=/etc/nats/app.creds`.
    pub fn setting(&self) -> String {
        match self {
            Self::None => {
                "no credentials (set NATS_CREDS_FILE, NATS_NKEY_SEED_FILE, NATS_USER and NATS_PASSWORD, or NATS_TOKEN)"
                    .to_owned()
            }
            Self::UserPassword { user, from: AuthSource::Settings, .. } => {
                format!("NATS_USER={user} and NATS_PASSWORD")
            }
            Self::UserPassword { user, from: AuthSource::Url, .. } => {
                format!("the user {user} and password in NATS_URL")
            }
            Self::Token { from: AuthSource::Settings, .. } => "NATS_TOKEN".to_owned(),
            Self::Token { from: AuthSource::Url, .. } => "the token in NATS_URL".to_owned(),
            Self::NKeySeedFile(path) => format!("NATS_NKEY_SEED_FILE={}", path.display()),
            Self::CredsFile(path) => format!("NATS_CREDS_FILE={}", path.display()),
        }
    }

    fn setting_name(&self) -> &'static str {
        match self {
            Self::None => "none",
            Self::UserPassword { from: AuthSource::Settings, .. } => "NATS_USER/NATS_PASSWORD",
            Self::UserPassword { from: AuthSource::Url, .. } => "user:password in NATS_URL",
            Self::Token { from: AuthSource::Settings, .. } => "NATS_TOKEN",
            Self::Token { from: AuthSource::Url, .. } => "a token in NATS_URL",
            Self::NKeySeedFile(_) => "NATS_NKEY_SEED_FILE",
            Self::CredsFile(_) => "NATS_CREDS_FILE",
        }
    }
}

/// TLS towards NATS.
#[derive(Debug, Clone, Default)]
pub struct NatsTls {
    /// Refuse a connection without TLS (`NATS_TLS_REQUIRED`, a `tls://` URL,
    /// or a CA or client certificate given).
    pub required: bool,
    /// `NATS_TLS_CA_FILE`: trust these CAs instead of the system's.
    pub ca_file: Option<PathBuf>,
    /// `NATS_TLS_CERT_FILE` and `NATS_TLS_KEY_FILE`.
    pub client_cert: Option<(PathBuf, PathBuf)>,
}

impl NatsTls {
    /// The TLS settings in force, for error messages: `NATS_TLS_CA_FILE=/ca.pem, NATS_TLS_CERT_FILE=/c.pem`.
    pub fn settings(&self) -> String {
        let mut parts = Vec::new();
        if let Some(ca) = &self.ca_file {
            parts.push(format!("NATS_TLS_CA_FILE={}", ca.display()));
        } else {
            parts.push("the system's CA roots (set NATS_TLS_CA_FILE for a private CA)".to_owned());
        }
        match &self.client_cert {
            Some((cert, key)) => {
                parts.push(format!("NATS_TLS_CERT_FILE={}", cert.display()));
                parts.push(format!("NATS_TLS_KEY_FILE={}", key.display()));
            }
            None => parts.push("no client certificate (NATS_TLS_CERT_FILE, NATS_TLS_KEY_FILE)".to_owned()),
        }
        parts.join(", ")
    }
}

/// NATS settings that cannot work together; the text names the settings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NatsSettingError {
    /// `NATS_URL` has no URL.
    #[error("NATS_URL is empty: give one or more comma-separated URLs like nats://nats-0:4222")]
    NoUrl,
    /// Two URLs carry different credentials.
    #[error(
        "the URLs in NATS_URL carry different credentials: put them on one URL, or use NATS_USER/NATS_PASSWORD or NATS_TOKEN"
    )]
    UrlCredentialsDiffer,
    /// A setting that needs another is set alone.
    #[error("{set} is set but {missing} is not: set both")]
    Missing {
        /// The one set.
        set: &'static str,
        /// The one it needs.
        missing: &'static str,
    },
    /// More than one way to authenticate.
    #[error("NATS credentials are set in more than one way ({}): keep one", .0.join(", "))]
    SeveralWays(Vec<&'static str>),
}

/// `NATS_URL` as it may be printed: each URL's password or token is `***`
/// (`nats://alice:***@nats-0:4222,nats://***@nats-1:4222`).
pub fn redact_url(urls: &str) -> String {
    urls.split(',')
        .map(|part| {
            let trimmed = part.trim();
            match split_userinfo(trimmed) {
                (url, Some(userinfo)) => {
                    let (scheme, rest) = url.split_once("://").map_or(("", url.as_str()), |(s, r)| (s, r));
                    let scheme = if scheme.is_empty() { String::new() } else { format!("{scheme}://") };
                    match userinfo.split_once(':') {
                        Some((user, _)) => format!("{scheme}{user}:***@{rest}"),
                        None => format!("{scheme}***@{rest}"),
                    }
                }
                (url, None) => url,
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Splits `scheme://userinfo@host:port` into the URL without userinfo and the userinfo.
fn split_userinfo(url: &str) -> (String, Option<&str>) {
    let (scheme, rest) = match url.find("://") {
        Some(at) => (&url[..at + 3], &url[at + 3..]),
        None => ("", url),
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => (format!("{scheme}{}", &rest[at + 1..]), Some(&rest[..at])),
        None => (url.to_owned(), None),
    }
}

/// Decodes `%XX` escapes (a password with `@` or `:` is written percent-encoded in a URL).
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%'
            && let Some(hex) = text.get(index + 1..index + 3)
            && let Ok(byte) = u8::from_str_radix(hex, 16)
        {
            out.push(byte);
            index += 3;
            continue;
        }
        out.push(bytes[index]);
        index += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn args(url: &str) -> NatsArgs {
        NatsArgs::for_url(url)
    }

    #[test]
    fn several_urls_and_url_credentials() {
        let servers = args("nats://alice:s%40cret@n0:4222, nats://n1:4222").servers().unwrap();
        assert_eq!(servers.urls, ["nats://n0:4222", "nats://n1:4222"]);
        match servers.auth {
            NatsAuth::UserPassword { user, password, from } => {
                assert_eq!((user.as_str(), password.expose(), from), ("alice", "s@cret", AuthSource::Url));
            }
            other => panic!("expected user/password, got {other:?}"),
        }
        assert!(!servers.tls.required);

        let servers = args("tls://t0ken@n0:4222").servers().unwrap();
        assert_eq!(servers.urls, ["tls://n0:4222"]);
        assert!(matches!(&servers.auth, NatsAuth::Token { token, from: AuthSource::Url } if token.expose() == "t0ken"));
        assert!(servers.tls.required, "tls:// requires TLS");
        assert_eq!(servers.auth.setting(), "the token in NATS_URL");
    }

    #[test]
    fn secrets_never_print() {
        let mut nats = args("nats://alice:hunter2@n0:4222,nats://tok3n@n1:4222");
        nats.password = Some(Secret::new("pa55"));
        nats.token = Some(Secret::new("t0k"));
        let debug = format!("{nats:?}");
        for secret in ["hunter2", "tok3n", "pa55", "t0k"] {
            assert!(!debug.contains(secret), "{debug}");
        }
        assert!(debug.contains("nats://alice:***@n0:4222,nats://***@n1:4222"), "{debug}");
        assert_eq!(redact_url("nats://n0:4222"), "nats://n0:4222");
        assert_eq!(redact_url("u:p@n0:4222"), "u:***@n0:4222");
    }

    #[test]
    fn one_way_to_authenticate() {
        let mut nats = args("nats://n0:4222");
        nats.token = Some(Secret::new("t"));
        nats.creds_file = Some("/x.creds".into());
        let error = nats.servers().unwrap_err();
        assert_eq!(
            error.to_string(),
            "NATS credentials are set in more than one way (NATS_TOKEN, NATS_CREDS_FILE): keep one"
        );

        let mut nats = args("nats://n0:4222");
        nats.user = Some("alice".into());
        assert_eq!(nats.servers().unwrap_err().to_string(), "NATS_USER is set but NATS_PASSWORD is not: set both");

        let mut nats = args("nats://n0:4222");
        nats.tls_cert_file = Some("/c.pem".into());
        assert_eq!(
            nats.servers().unwrap_err(),
            NatsSettingError::Missing { set: "NATS_TLS_CERT_FILE", missing: "NATS_TLS_KEY_FILE" }
        );

        assert_eq!(args("nats://a:b@n0,nats://a:c@n1").servers().unwrap_err(), NatsSettingError::UrlCredentialsDiffer);
        assert_eq!(args(" , ").servers().unwrap_err(), NatsSettingError::NoUrl);
    }

    #[test]
    fn settings_named_for_the_operator() {
        let mut nats = args("nats://n0:4222");
        nats.creds_file = Some("/etc/nats/app.creds".into());
        nats.tls_ca_file = Some("/etc/nats/ca.pem".into());
        let servers = nats.servers().unwrap();
        assert_eq!(servers.auth.setting(), "NATS_CREDS_FILE=/etc/nats/app.creds");
        assert!(servers.tls.required, "a CA file implies TLS");
        assert!(servers.tls.settings().starts_with("NATS_TLS_CA_FILE=/etc/nats/ca.pem"));

        let mut nats = args("nats://n0:4222");
        (nats.user, nats.password) = (Some("svc".into()), Some(Secret::new("p")));
        assert_eq!(nats.servers().unwrap().auth.setting(), "NATS_USER=svc and NATS_PASSWORD");
    }

    #[test]
    fn parsed_from_the_environment_names() {
        use clap::Parser as _;
        #[derive(Debug, clap::Parser)]
        struct Only {
            #[command(flatten)]
            nats: NatsArgs,
        }
        let only = Only::try_parse_from([
            "x",
            "--nats-url",
            "tls://n0:4222,tls://n1:4222",
            "--nats-nkey-seed-file",
            "/seed",
            "--nats-tls-ca-file",
            "/ca.pem",
            "--nats-tls-required",
        ])
        .unwrap();
        let servers = only.nats.servers().unwrap();
        assert_eq!(servers.urls.len(), 2);
        assert!(matches!(servers.auth, NatsAuth::NKeySeedFile(ref p) if p == Path::new("/seed")));
        assert!(servers.tls.required);
    }
}
