//! `switchboardctl` tests: the built binary run as a separate process
//! (`tokio::process`, so the in-process stack keeps serving while it runs)
//! against a real stack, each with its own config dir (`XDG_CONFIG_HOME`).
//!
//! sb-tests cannot depend on another package's binary, so it builds the same
//! program (`switchboardctl::main`) as its own `switchboardctl-test` binary,
//! which cargo keeps current with the tests.

use std::path::{Path, PathBuf};

use sb_tests::auth::{ADMIN_EMAIL, ADMIN_PASSWORD};
use sb_tests::stack::TestStack;
use serde_json::Value;

mod auth;
mod edges;
mod local;
mod messaging;
mod presence;
mod sockets;

/// Runs an `async fn(DbKind)` as one test per database engine.
macro_rules! both {
    ($name:ident) => {
        mod $name {
            #[tokio::test]
            async fn postgres() {
                super::$name(sb_tests::DbKind::Postgres).await
            }
            #[tokio::test]
            async fn sqlite() {
                super::$name(sb_tests::DbKind::Sqlite).await
            }
        }
    };
}
use both;

/// The CLI under test: the `switchboardctl` library's `main` as this
/// package's binary (`tests/src/bin/switchboardctl-test.rs`), built by cargo
/// with the tests; `SWITCHBOARDCTL_BIN` runs another build instead.
fn binary() -> PathBuf {
    std::env::var_os("SWITCHBOARDCTL_BIN")
        .map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_switchboardctl-test")), PathBuf::from)
}

/// What one run printed and how it ended.
#[derive(Debug)]
pub struct Run {
    /// The exit code (-1: killed by a signal).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Run {
    /// Asserts success and returns stdout.
    #[track_caller]
    pub fn ok(&self) -> &str {
        assert_eq!(self.code, 0, "expected success: {self:#?}");
        &self.stdout
    }

    /// Asserts success and parses stdout as JSON.
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_str(self.ok()).unwrap_or_else(|error| panic!("stdout is not JSON ({error}): {self:#?}"))
    }

    /// Asserts a failure (exit 1, nothing on stdout, exactly one line on
    /// stderr, no debug dump) and returns that line without the program name.
    #[track_caller]
    pub fn fails(&self) -> &str {
        assert_eq!(self.code, 1, "expected exit status 1: {self:#?}");
        assert_eq!(self.stdout, "", "a failure prints nothing on stdout: {self:#?}");
        let line = self.stderr.strip_suffix('\n').unwrap_or(&self.stderr);
        assert!(!line.contains('\n'), "one line on stderr: {self:#?}");
        for dump in ["Status {", "code:", "metadata", "source:"] {
            assert!(!line.contains(dump), "no gRPC status dump: {line}");
        }
        line.strip_prefix("switchboardctl: ").unwrap_or_else(|| panic!("prefixed by the program name: {line}"))
    }
}

/// One operator's CLI: its own config dir, so tests do not share contexts or tokens.
pub struct Ctl {
    config: tempfile::TempDir,
}

impl Ctl {
    /// A CLI with an empty config dir (the built-in `local` context only).
    pub fn new() -> Self {
        Self { config: tempfile::tempdir().expect("config temp dir") }
    }

    /// A CLI whose current context `test` is `stack`, logged in as its bootstrap admin.
    pub async fn for_stack(stack: &TestStack) -> Self {
        let ctl = Self::new();
        let presence = format!("http://{}", stack.presence.grpc_addr);
        ctl.run(&[
            "context",
            "add",
            "test",
            "--auth",
            &stack.auth.uri(),
            "--presence",
            &presence,
            "--messaging",
            &stack.messaging.grpc_url(),
        ])
        .await
        .ok();
        ctl.run(&["context", "use", "test"]).await.ok();
        ctl.login(ADMIN_EMAIL, ADMIN_PASSWORD).await.ok();
        ctl
    }

    /// `$XDG_CONFIG_HOME` of this CLI.
    pub fn config_home(&self) -> &Path {
        self.config.path()
    }

    /// Runs `switchboardctl args…`.
    pub async fn run(&self, args: &[&str]) -> Run {
        self.run_with(args, None, &[]).await
    }

    /// Runs it with `stdin` piped in and extra environment variables.
    pub async fn run_with(&self, args: &[&str], stdin: Option<&str>, env: &[(&str, &str)]) -> Run {
        use tokio::io::AsyncWriteExt as _;
        let mut command = tokio::process::Command::new(binary());
        command
            .args(args)
            .env("XDG_CONFIG_HOME", self.config.path())
            .env_remove("SWITCHBOARD_TOKEN")
            .env_remove("SWITCHBOARD_CONTEXT")
            .env_remove("RUST_BACKTRACE")
            .envs(env.iter().copied())
            .stdin(if stdin.is_some() { std::process::Stdio::piped() } else { std::process::Stdio::null() })
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().expect("start switchboardctl");
        if let Some(input) = stdin {
            let mut pipe = child.stdin.take().expect("piped stdin");
            pipe.write_all(input.as_bytes()).await.expect("write stdin");
        }
        let output = tokio::time::timeout(std::time::Duration::from_secs(60), child.wait_with_output())
            .await
            .expect("switchboardctl finished within 60 s")
            .expect("wait for switchboardctl");
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// `login --email … --password-stdin` (stores the token for the context).
    pub async fn login(&self, email: &str, password: &str) -> Run {
        self.run_with(&["login", "--email", email, "--password-stdin"], Some(&format!("{password}\n")), &[]).await
    }

    /// Runs `args` with `-o json` and parses the output.
    pub async fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        self.run(&all).await.json()
    }

    /// Runs `args` as the holder of `token` (`SWITCHBOARD_TOKEN`).
    pub async fn run_as(&self, token: &str, args: &[&str]) -> Run {
        self.run_with(args, None, &[("SWITCHBOARD_TOKEN", token)]).await
    }
}

/// The header line and the rows of a table, split into cells at runs of two spaces.
pub fn table(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .map(|line| line.split("  ").map(str::trim).filter(|cell| !cell.is_empty()).map(str::to_owned).collect())
        .collect()
}
