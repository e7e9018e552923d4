//! `sb-loadgen`: parses the command line, raises the fd limit, builds the
//! runtime (`--threads`), runs one scenario and prints its report line;
//! or, with `report`, turns results files into a table and plots.
//!
//! Exit code: 0 everything connected and nothing was lost, 1 the run
//! completed with failures or loss, 2 it could not run.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use sb_loadgen::scenario::{
    BroadcastSettings, ChurnSettings, ConnectSettings, FanoutSettings, IdleSettings, PresenceStormSettings,
    PrivateSettings, SmokeSettings,
};
use sb_loadgen::summary::ReportSettings;
use sb_loadgen::{ClientSettings, RunSettings, Scenario};

/// Switchboard's load generator: raw Socket.IO v4 over WebSocket.
#[derive(Debug, Parser)]
#[command(name = "sb-loadgen", version, about)]
struct Cli {
    #[command(flatten)]
    client: ClientSettings,
    #[command(flatten)]
    run: RunSettings,
    /// Tokio worker threads for the connections (1: a current-thread runtime, as the baseline was measured).
    #[arg(long, global = true, default_value_t = 1)]
    threads: usize,
    /// Also append the JSON line to this file.
    #[arg(long, global = true)]
    json_out: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Open N connections at a rate, hold them idle; RSS per process before/after and bytes per connection.
    Idle(IdleSettings),
    /// Connect storm: offered vs achieved connects/s, connect latency, failures by kind.
    Connect(ConnectSettings),
    /// Rooms x members; senders per room at a rate; end-to-end latency and loss.
    Fanout(FanoutSettings),
    /// Pairs sending each other {to, message} at a rate; latency and loss.
    Private(PrivateSettings),
    /// {message} to everyone from some senders at a rate; latency and loss.
    Broadcast(BroadcastSettings),
    /// Connect -> hold -> disconnect cycles while observers count user_online/user_offline.
    Churn(ChurnSettings),
    /// A burst of connects while observers count presence events; time until they saw everyone.
    PresenceStorm(PresenceStormSettings),
    /// Functional checks of the protocol (auth, presence, rooms, private, broadcast, admin, errors).
    Smoke(SmokeSettings),
    /// Results files -> Markdown table + SVG plots (latency and CPU per delivery against offered rate).
    Report(ReportSettings),
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("sb-loadgen: {error:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let scenario = match cli.command {
        Command::Report(settings) => {
            let written = sb_loadgen::summary::write_report(&settings, cli.run.noisy_threshold_pct)
                .context("write the report")?;
            eprintln!("sb-loadgen: {} runs ({} other lines skipped)", written.rows, written.skipped);
            for file in &written.files {
                println!("{}", file.display());
            }
            return Ok(ExitCode::SUCCESS);
        }
        Command::Idle(settings) => Scenario::Idle(settings),
        Command::Connect(settings) => Scenario::Connect(settings),
        Command::Fanout(settings) => Scenario::Fanout(settings),
        Command::Private(settings) => Scenario::Private(settings),
        Command::Broadcast(settings) => Scenario::Broadcast(settings),
        Command::Churn(settings) => Scenario::Churn(settings),
        Command::PresenceStorm(settings) => Scenario::PresenceStorm(settings),
        Command::Smoke(settings) => Scenario::Smoke(settings),
    };
    let nofile = sb_loadgen::accounting::raise_nofile_limit();
    eprintln!(
        "sb-loadgen: fd limit {}, target {}, {} source address(es), {} thread(s)",
        nofile.map_or_else(|| "unknown".to_owned(), |n| n.to_string()),
        cli.client.url,
        cli.client.source_ips.0.len(),
        cli.threads
    );
    let runtime = if cli.threads <= 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    } else {
        tokio::runtime::Builder::new_multi_thread().worker_threads(cli.threads).enable_all().build()
    }
    .context("build the runtime")?;
    let run_settings = RunSettings { command: std::env::args().collect(), ..cli.run };
    let report = runtime.block_on(sb_loadgen::run(cli.client, &run_settings, &scenario));
    // Lingering connection tasks are bounded, but exiting closes their sockets at once.
    runtime.shutdown_timeout(Duration::from_secs(2));
    let report = report.context("run the scenario")?;
    println!("{}", report.to_json_line()?);
    if let Some(path) = &cli.json_out {
        report.append_to(path)?;
    }
    if report.noisy {
        eprintln!(
            "sb-loadgen: noisy run: other processes used {:?} % of a core; re-run it",
            report.usage.host.other_cpu_pct
        );
    }
    Ok(if report.ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
