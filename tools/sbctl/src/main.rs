//! `sbctl`: Switchboard's admin command line.
//!
//! One subcommand group per area, each in its own module, so presence and
//! messaging commands can be added next to `users` and `token` without
//! touching the others:
//!
//! - `login`: trade an email and password for a token (printed to stdout).
//! - `users …`, `token …` ([`auth`]): the admin RPCs of the auth service.
//! - `bench verify` ([`bench`]): VerifyToken throughput and latency.
//!
//! Global settings: `--auth-addr` / `AUTH_ADDR` (where auth listens) and
//! `--token` / `SB_TOKEN` (the caller's token, or the token to benchmark).

mod auth;
mod bench;
mod output;

use clap::{Parser, Subcommand};

/// Switchboard's admin CLI.
///
/// Talks to the services' gRPC APIs. Admin commands need an admin token:
/// get one with `sbctl login`, then `export SB_TOKEN=...`.
#[derive(Debug, Parser)]
#[command(name = "sbctl", version, propagate_version = true)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

/// Settings every command shares.
#[derive(Debug, Clone, clap::Args)]
pub struct GlobalArgs {
    /// Address of the auth service's gRPC API (`host:port` or `http://host:port`).
    #[arg(long, env = "AUTH_ADDR", default_value = "127.0.0.1:50051", global = true)]
    pub auth_addr: String,
    /// Access token sent as `authorization: Bearer <token>` (admin commands
    /// need an admin's); for `bench verify`, the token to verify.
    #[arg(long, env = "SB_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// Print results as JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
}

impl GlobalArgs {
    /// The token, or an error saying how to get one.
    pub fn require_token(&self) -> anyhow::Result<&str> {
        self.token.as_deref().filter(|token| !token.trim().is_empty()).ok_or_else(|| {
            anyhow::anyhow!(
                "no token: pass --token or set SB_TOKEN (get one with `sbctl login --email .. --password ..`)"
            )
        })
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Log in with an email and password; prints the token on stdout.
    ///
    /// Example: export SB_TOKEN=$(sbctl login --email admin@example.com --password secret)
    Login(auth::LoginArgs),
    /// Manage users (admin).
    #[command(subcommand)]
    Users(auth::UsersCommand),
    /// Issue, revoke and inspect tokens.
    #[command(subcommand)]
    Token(auth::TokenCommand),
    /// Measure a service's hot paths.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Login(args) => auth::login(&cli.global, args).await,
        Command::Users(command) => auth::run_users(&cli.global, command).await,
        Command::Token(command) => auth::run_token(&cli.global, command).await,
        Command::Bench(command) => bench::run(&cli.global, command).await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::*;

    #[test]
    fn command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn bench_verify_takes_the_token_after_the_subcommand() {
        let cli =
            Cli::try_parse_from(["sbctl", "bench", "verify", "--token", "t", "--concurrency", "8", "--duration", "3"])
                .unwrap();
        assert_eq!(cli.global.token.as_deref(), Some("t"));
        assert!(matches!(cli.command, Command::Bench(_)));
    }
}
