//! Contexts: named sets of service addresses, kubectl- and nats-CLI-style, so
//! one operator can manage many Switchboard instances.
//!
//! Files live in `$XDG_CONFIG_HOME/switchboardctl/` (default
//! `~/.config/switchboardctl/`):
//! - `config.json`: `{"current": NAME, "contexts": {NAME: {auth, presence, messaging}}}`;
//! - `tokens/NAME`: the token `login` stored for context NAME, mode 0600 in a
//!   0700 directory, so other users on the machine cannot read it.
//!
//! The context `local` always exists: the addresses `make run` (scripts/run.sh)
//! serves on, so `switchboardctl online` works right after `make run`. It can be
//! redefined with `context add local …`. Which context a call uses:
//! `--context` / `SWITCHBOARD_CONTEXT`, else the `current` one, else `local`.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::CliError;
use crate::output::out;

/// Name of the built-in context.
pub const LOCAL: &str = "local";

/// Where one Switchboard instance's gRPC APIs are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Context {
    /// Auth's gRPC address, `http://host:port`.
    pub auth: String,
    /// Presence's gRPC address (presence also serves edge control).
    pub presence: String,
    /// Messaging's gRPC address.
    pub messaging: String,
}

impl Context {
    /// The local stack of `make run`.
    pub fn local() -> Self {
        Self {
            auth: "http://127.0.0.1:50051".to_owned(),
            presence: "http://127.0.0.1:50052".to_owned(),
            messaging: "http://127.0.0.1:50053".to_owned(),
        }
    }
}

/// The contents of `config.json`.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct ConfigFile {
    /// The context calls use when neither `--context` nor `SWITCHBOARD_CONTEXT` names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<String>,
    /// Contexts the user added (`local` only if redefined).
    #[serde(default)]
    pub contexts: BTreeMap<String, Context>,
}

/// The configuration directory and what is in it.
pub struct Store {
    dir: PathBuf,
}

/// Parses a context name: letters, digits, `-`, `_` and `.`, not starting with
/// a dot (it becomes a file name under `tokens/`).
pub fn parse_context_name(text: &str) -> Result<String, String> {
    let valid = !text.is_empty()
        && text.len() <= 64
        && !text.starts_with('.')
        && text.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if valid {
        Ok(text.to_owned())
    } else {
        Err(format!("{text:?} is not a context name: use letters, digits, '-', '_' and '.' (at most 64)"))
    }
}

/// Parses a gRPC address: `http://host:port`, or `host:port` (http assumed).
pub fn parse_address(text: &str) -> Result<String, String> {
    let address = sb_authn::normalize_addr(text.trim());
    if address.starts_with("https://") {
        return Err(format!("{text:?}: TLS to the gRPC APIs is not supported yet; use an http:// address"));
    }
    match address.parse::<tonic::transport::Uri>() {
        Ok(uri) if uri.host().is_some() && uri.scheme_str() == Some("http") => {
            Ok(address.trim_end_matches('/').to_owned())
        }
        _ => Err(format!("{text:?} is not an address like http://127.0.0.1:50051")),
    }
}

impl Store {
    /// The store at `$XDG_CONFIG_HOME/switchboardctl`, else `$HOME/.config/switchboardctl`.
    pub fn open() -> Result<Self, CliError> {
        let base = match std::env::var_os("XDG_CONFIG_HOME").filter(|value| !value.is_empty()) {
            Some(dir) => PathBuf::from(dir),
            None => match std::env::var_os("HOME").filter(|value| !value.is_empty()) {
                Some(home) => PathBuf::from(home).join(".config"),
                None => return Err(CliError::Config("neither XDG_CONFIG_HOME nor HOME is set".to_owned())),
            },
        };
        Ok(Self { dir: base.join("switchboardctl") })
    }

    fn config_path(&self) -> PathBuf {
        self.dir.join("config.json")
    }

    fn token_path(&self, context: &str) -> PathBuf {
        self.dir.join("tokens").join(context)
    }

    /// Reads `config.json`; a missing file is an empty configuration.
    pub fn load(&self) -> Result<ConfigFile, CliError> {
        let path = self.config_path();
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|error| CliError::Config(format!("{} is not valid: {error}", path.display()))),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(ConfigFile::default()),
            Err(error) => Err(CliError::Config(format!("read {}: {error}", path.display()))),
        }
    }

    /// Writes `config.json` (atomically: a temp file renamed over it).
    pub fn save(&self, config: &ConfigFile) -> Result<(), CliError> {
        let json = serde_json::to_vec_pretty(config).expect("the config serializes");
        write_private(&self.config_path(), &json)
    }

    /// The context called `name`: one the user added, or the built-in `local`.
    pub fn context(&self, config: &ConfigFile, name: &str) -> Result<Context, CliError> {
        match config.contexts.get(name) {
            Some(context) => Ok(context.clone()),
            None if name == LOCAL => Ok(Context::local()),
            None => Err(CliError::UnknownContext(name.to_owned())),
        }
    }

    /// The token `login` stored for `context`, if any.
    pub fn token(&self, context: &str) -> Result<Option<String>, CliError> {
        let path = self.token_path(context);
        match std::fs::read_to_string(&path) {
            Ok(token) => Ok(Some(token.trim().to_owned()).filter(|token| !token.is_empty())),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(CliError::Config(format!("read {}: {error}", path.display()))),
        }
    }

    /// Stores `token` for `context`, readable by this user only.
    pub fn save_token(&self, context: &str, token: &str) -> Result<PathBuf, CliError> {
        let path = self.token_path(context);
        write_private(&path, format!("{token}\n").as_bytes())?;
        Ok(path)
    }

    /// Forgets the token of `context`; true if there was one.
    pub fn remove_token(&self, context: &str) -> Result<bool, CliError> {
        let path = self.token_path(context);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(error) => Err(CliError::Config(format!("remove {}: {error}", path.display()))),
        }
    }
}

/// `context …`
#[derive(Debug, clap::Subcommand)]
pub enum ContextCommand {
    /// Add (or replace) a context: where one instance's auth, presence and messaging listen.
    #[command(after_help = "Example:\n  \
        switchboardctl context add prod --auth http://auth.prod:50051 --presence http://presence.prod:50052 \\\n    \
        --messaging http://messaging.prod:50053\n  \
        switchboardctl --context prod login --email ops@example.com")]
    Add {
        /// The context's name.
        #[arg(value_parser = parse_context_name)]
        name: String,
        /// Auth's gRPC address.
        #[arg(long, value_parser = parse_address)]
        auth: String,
        /// Presence's gRPC address (it serves edge control too).
        #[arg(long, value_parser = parse_address)]
        presence: String,
        /// Messaging's gRPC address.
        #[arg(long, value_parser = parse_address)]
        messaging: String,
    },
    /// Make a context the one calls use by default.
    #[command(after_help = "Example:\n  switchboardctl context use prod")]
    Use {
        /// The context's name.
        #[arg(value_parser = parse_context_name)]
        name: String,
    },
    /// List the contexts; `*` marks the one in use.
    #[command(after_help = "Example:\n  switchboardctl context list -o json")]
    List,
}

/// Runs a `context` command; `in_use` is the context this call resolved.
pub fn run(
    store: &Store,
    in_use: &str,
    format: crate::output::Format,
    command: ContextCommand,
) -> Result<(), CliError> {
    use crate::output::{Format, Table, print_json};
    let mut config = store.load()?;
    match command {
        ContextCommand::Add { name, auth, presence, messaging } => {
            let replaced = config.contexts.insert(name.clone(), Context { auth, presence, messaging }).is_some();
            store.save(&config)?;
            match format {
                Format::Json => print_json(&serde_json::json!({"context": name, "replaced": replaced})),
                Format::Table => out!("context {name} {}", if replaced { "replaced" } else { "added" }),
            }
        }
        ContextCommand::Use { name } => {
            store.context(&config, &name)?;
            config.current = Some(name.clone());
            store.save(&config)?;
            match format {
                Format::Json => print_json(&serde_json::json!({"current": name})),
                Format::Table => out!("now using context {name}"),
            }
        }
        ContextCommand::List => {
            let mut contexts = config.contexts.clone();
            contexts.entry(LOCAL.to_owned()).or_insert_with(Context::local);
            let mut rows = Vec::new();
            for (name, context) in &contexts {
                rows.push((name, context, store.token(name)?.is_some()));
            }
            match format {
                Format::Json => print_json(&serde_json::json!({
                    "current": in_use,
                    "contexts": rows.iter().map(|(name, context, logged_in)| serde_json::json!({
                        "name": name,
                        "auth": context.auth,
                        "presence": context.presence,
                        "messaging": context.messaging,
                        "logged_in": logged_in,
                    })).collect::<Vec<_>>(),
                })),
                Format::Table => {
                    let mut table = Table::new(&["CURRENT", "NAME", "AUTH", "PRESENCE", "MESSAGING", "LOGGED IN"]);
                    for (name, context, logged_in) in rows {
                        table.row(vec![
                            if name == in_use { "*" } else { "" }.to_owned(),
                            name.clone(),
                            context.auth.clone(),
                            context.presence.clone(),
                            context.messaging.clone(),
                            if logged_in { "yes" } else { "no" }.to_owned(),
                        ]);
                    }
                    table.print();
                }
            }
        }
    }
    Ok(())
}

/// Writes `bytes` to `path` with mode 0600 (directories 0700), through a
/// temporary file so a reader never sees half a file.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), CliError> {
    let fail = |what: &str, error: std::io::Error| CliError::Config(format!("{what} {}: {error}", path.display()));
    let dir = path.parent().expect("store paths have a parent");
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(|error| fail("create the directory of", error))?;
    let temp = path.with_extension("tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&temp).map_err(|error| fail("write", error))?;
    // A file left from before with wider permissions keeps its mode on open.
    #[cfg(unix)]
    std::fs::set_permissions(&temp, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .map_err(|error| fail("restrict", error))?;
    file.write_all(bytes).and_then(|()| file.sync_all()).map_err(|error| fail("write", error))?;
    std::fs::rename(&temp, path).map_err(|error| fail("write", error))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_get_a_scheme_and_lose_a_trailing_slash() {
        assert_eq!(parse_address("127.0.0.1:50051").unwrap(), "http://127.0.0.1:50051");
        assert_eq!(parse_address("http://auth.internal:50051/").unwrap(), "http://auth.internal:50051");
        assert!(parse_address("https://auth:50051").unwrap_err().contains("TLS"));
        assert!(parse_address("not an address").is_err());
    }

    #[test]
    fn context_names_are_file_names() {
        assert!(parse_context_name("prod-eu.1").is_ok());
        for bad in ["", ".hidden", "a/b", "a b", ".."] {
            assert!(parse_context_name(bad).is_err(), "{bad:?}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn tokens_are_private_and_round_trip() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let store = Store { dir: dir.path().join("switchboardctl") };
        assert_eq!(store.token("local").unwrap(), None);
        let path = store.save_token("local", "abc").unwrap();
        assert_eq!(store.token("local").unwrap().as_deref(), Some("abc"));
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert!(store.remove_token("local").unwrap());
        assert_eq!(store.token("local").unwrap(), None);
    }
}
