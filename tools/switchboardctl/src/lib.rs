//! `switchboardctl`: Switchboard's admin command line, over the services' gRPC APIs.
//!
//! - [`context`]: named instances (contexts) and the tokens `login` stored for them;
//! - [`client`]: what one invocation runs with (context, token, output format);
//! - [`auth`]: `login`, `logout`, `users …`, `tokens …`;
//! - [`presence`]: `online`, `sessions`, `rooms members`;
//! - [`messaging`]: `notify`, `announce`, `history`;
//! - [`edges`]: `kick`, `edges list`, `edges drain` (EdgeControl, served by presence);
//! - [`bench`]: `bench verify`, VerifyToken throughput and latency;
//! - [`output`]: tables and JSON; [`error`]: one clear line per failure;
//! - [`trace`]: `--trace` and `TRACEPARENT`, so a call is found in Jaeger.
//!
//! Exit status: 0 on success, 1 when a command fails (one line on stderr),
//! 2 for a bad command line.
//!
//! Everything is in this library and `src/main.rs` only calls [`main`], so the
//! integration tests (sb-tests) can build the same program as a binary of their
//! own package and run it as a process.

mod auth;
mod bench;
mod client;
mod context;
mod edges;
mod error;
mod messaging;
mod output;
mod presence;
mod trace;

use clap::{CommandFactory as _, Parser, Subcommand};

use crate::client::Client;

use crate::context::{LOCAL, Store};
use crate::error::CliError;
use crate::output::Format;
use crate::trace::TraceContext;

const ABOUT_EXAMPLES: &str = "Examples:
  switchboardctl login --email admin@example.com      # stores a token for the context
  switchboardctl online
  switchboardctl users list -o json
  switchboardctl notify --room developers 'deploy at 17:00'
  switchboardctl --context prod kick u42 --reason 'abuse'

The default context, local, is the stack `make run` starts. Settings live in
$XDG_CONFIG_HOME/switchboardctl (default ~/.config/switchboardctl).";

/// Switchboard's admin CLI: users, tokens, who is online, notifications,
/// history and edge control, for one or many Switchboard instances.
#[derive(Debug, Parser)]
#[command(name = "switchboardctl", version, propagate_version = true, after_help = ABOUT_EXAMPLES)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

/// Settings every command shares.
#[derive(Debug, Clone, clap::Args)]
struct GlobalArgs {
    /// The context (instance) to talk to, instead of the current one.
    #[arg(long, env = "SWITCHBOARD_CONTEXT", global = true, value_parser = context::parse_context_name)]
    context: Option<String>,
    /// Output format.
    #[arg(short, long, value_enum, default_value = "table", global = true)]
    output: Format,
    /// Token to send instead of the one `login` stored (prefer the env var:
    /// flags show up in `ps`).
    #[arg(long, env = "SWITCHBOARD_TOKEN", hide_env_values = true, global = true)]
    token: Option<String>,
    /// Start a trace for this call and print its id on stderr, to find it
    /// in Jaeger. Without it, a `TRACEPARENT` (and `TRACESTATE`) in the
    /// environment makes the call part of that trace.
    #[arg(long, global = true)]
    trace: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Log in with an email and password and store the token for the context.
    Login(auth::LoginArgs),
    /// Forget the context's stored token.
    #[command(after_help = "Example:\n  switchboardctl --context prod logout")]
    Logout,
    /// Manage users (admin).
    #[command(subcommand)]
    Users(auth::UsersCommand),
    /// Issue, revoke and verify tokens.
    #[command(subcommand)]
    Tokens(auth::TokensCommand),
    /// Who is online, cluster-wide, ordered by id.
    #[command(after_help = "Example:\n  switchboardctl online --limit 20 -o json")]
    Online {
        /// Users per page (1..=1000).
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1000))]
        limit: u32,
        /// Continue after a previous page (the cursor it printed).
        #[arg(long)]
        cursor: Option<String>,
    },
    /// A user's live sessions: edge, socket, transport, when it connected, rooms.
    #[command(after_help = "Example:\n  switchboardctl sessions u42")]
    Sessions {
        /// The user id.
        user: String,
    },
    /// Rooms, cluster-wide.
    #[command(subcommand)]
    Rooms(presence::RoomsCommand),
    /// Disconnect every socket of a user, on every edge, after an `exception` with the reason.
    #[command(after_help = "Example:\n  switchboardctl kick u42 --reason 'spamming #general'")]
    Kick {
        /// The user id.
        user: String,
        /// Shown to the client in the `exception` (default: \"kicked by an admin\").
        #[arg(long)]
        reason: Option<String>,
    },
    /// Send a `notification` to a user, a room's members or everyone.
    Notify(messaging::NotifyArgs),
    /// Send an `admin_announcement` to everyone, from you.
    #[command(after_help = "Example:\n  switchboardctl announce 'Welcome to the new Switchboard'")]
    Announce {
        /// The announcement's text.
        message: String,
    },
    /// Stored messages of a room or a private conversation, newest first.
    History(messaging::HistoryArgs),
    /// List and drain edges (the Socket.IO servers).
    #[command(subcommand)]
    Edges(edges::EdgesCommand),
    /// Manage contexts: which instance a call talks to.
    #[command(subcommand)]
    Context(context::ContextCommand),
    /// Print a shell completion script.
    #[command(after_help = "Examples:\n  \
        source <(switchboardctl completion bash)\n  \
        switchboardctl completion zsh > \"${fpath[1]}/_switchboardctl\"\n  \
        switchboardctl completion fish > ~/.config/fish/completions/switchboardctl.fish")]
    Completion {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Measure a service's hot paths.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
}

/// Resolves the context and token source for this call.
fn client(global: &GlobalArgs) -> Result<Client, CliError> {
    let store = Store::open()?;
    let config = store.load()?;
    let context_name = global.context.clone().or_else(|| config.current.clone()).unwrap_or_else(|| LOCAL.to_owned());
    let context = store.context(&config, &context_name)?;
    let trace = TraceContext::resolve(global.trace)?;
    if global.trace
        && let Some(trace) = &trace
    {
        eprintln!("trace {}", trace.trace_id());
    }
    Ok(Client { format: global.output, context_name, context, store, token_override: global.token.clone(), trace })
}

async fn run(cli: Cli) -> Result<(), CliError> {
    if let Command::Completion { shell } = cli.command {
        let mut script = Vec::new();
        clap_complete::generate(shell, &mut Cli::command(), "switchboardctl", &mut script);
        output::emit(String::from_utf8_lossy(&script).trim_end());
        return Ok(());
    }
    // Adding a context needs no context: `--context new context add new …`
    // (as scripts write it, one flag for every call) must not fail because
    // `new` does not exist yet.
    if let Command::Context(command @ context::ContextCommand::Add { .. }) = cli.command {
        let store = Store::open()?;
        let in_use = cli.global.context.clone().unwrap_or_else(|| LOCAL.to_owned());
        return context::run(&store, &in_use, cli.global.output, command);
    }
    let client = client(&cli.global)?;
    match cli.command {
        Command::Login(args) => auth::login(&client, args).await,
        Command::Logout => auth::logout(&client),
        Command::Users(command) => auth::run_users(&client, command).await,
        Command::Tokens(command) => auth::run_tokens(&client, command).await,
        Command::Online { limit, cursor } => presence::online(&client, limit, cursor).await,
        Command::Sessions { user } => presence::sessions(&client, user).await,
        Command::Rooms(command) => presence::run_rooms(&client, command).await,
        Command::Kick { user, reason } => edges::kick(&client, user, reason).await,
        Command::Notify(args) => messaging::notify(&client, args).await,
        Command::Announce { message } => messaging::announce(&client, message).await,
        Command::History(args) => messaging::history(&client, args).await,
        Command::Edges(command) => edges::run_edges(&client, command).await,
        Command::Context(command) => context::run(&client.store, &client.context_name, client.format, command),
        Command::Bench(command) => bench::run(&client, command).await,
        Command::Completion { .. } => unreachable!("handled above"),
    }
}

/// Runs the command line of this process and returns its exit status.
pub fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("switchboardctl: start the async runtime: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("switchboardctl: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_subcommand_has_help_with_an_example() {
        fn check(command: &clap::Command, path: &str) {
            let path = format!("{path} {}", command.get_name());
            if command.get_name() == "help" {
                return;
            }
            assert!(command.get_about().is_some(), "{path} has no about");
            if command.has_subcommands() {
                for sub in command.get_subcommands() {
                    check(sub, &path);
                }
            } else {
                let help = command.get_after_help().map(|h| h.to_string()).unwrap_or_default();
                assert!(help.contains("switchboardctl"), "{path} has no example");
            }
        }
        check(&Cli::command(), "");
    }

    #[test]
    fn bench_verify_takes_the_token_after_the_subcommand() {
        let cli = Cli::try_parse_from([
            "switchboardctl",
            "bench",
            "verify",
            "--token",
            "t",
            "--concurrency",
            "8",
            "--duration",
            "3",
        ])
        .unwrap();
        assert_eq!(cli.global.token.as_deref(), Some("t"));
        assert!(matches!(cli.command, Command::Bench(_)));
    }

    #[test]
    fn notify_needs_exactly_one_audience() {
        assert!(Cli::try_parse_from(["switchboardctl", "notify", "hi"]).is_err());
        assert!(Cli::try_parse_from(["switchboardctl", "notify", "--all", "--room", "r", "hi"]).is_err());
        assert!(Cli::try_parse_from(["switchboardctl", "notify", "--room", "r", "hi", "--title", "t"]).is_ok());
    }

    #[test]
    fn history_between_takes_two_users() {
        assert!(Cli::try_parse_from(["switchboardctl", "history", "--between", "a"]).is_err());
        assert!(Cli::try_parse_from(["switchboardctl", "history", "--between", "a", "b", "--limit", "5"]).is_ok());
        assert!(Cli::try_parse_from(["switchboardctl", "history", "--room", "r", "--between", "a", "b"]).is_err());
    }
}
