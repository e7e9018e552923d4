//! `switchboardctl bench …`: load generators for the services' hot paths.
//!
//! `bench verify` runs `--concurrency` loops, each calling VerifyToken with
//! the same token back to back over `--connections` HTTP/2 connections,
//! for `--duration` seconds after a `--warmup`. It reports successful calls
//! per second and latency percentiles from every sample (a sorted list;
//! exact, no histogram buckets). Run it on another machine than the service
//! when you can: on one host the generator competes for the same CPUs.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::{Args, Subcommand};
use sb_proto::auth::v1 as pb;
use sb_proto::auth::v1::auth_service_client::AuthServiceClient;
use tonic::transport::{Channel, Endpoint};

use crate::client::Client;
use crate::error::Service;
use crate::output::Format;
use crate::output::out;

/// `bench …`
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Measure VerifyToken: calls per second and latency (p50/p90/p99/max).
    ///
    /// Uses the --token / SWITCHBOARD_TOKEN token (else the stored one), which
    /// must verify.
    #[command(after_help = "Example:\n  \
        SWITCHBOARD_TOKEN=$(switchboardctl tokens issue --user u42 --ttl 1h) \
        switchboardctl bench verify --concurrency 16 --duration 10")]
    Verify(VerifyBenchArgs),
}

/// `bench verify` arguments.
#[derive(Debug, Args)]
pub struct VerifyBenchArgs {
    /// Calls in flight at once.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    concurrency: u32,
    /// Seconds to measure.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    duration: u64,
    /// Seconds to run before measuring (connections, caches, JIT-free warm-up).
    #[arg(long, default_value_t = 1)]
    warmup: u64,
    /// HTTP/2 connections the calls are spread over.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1000))]
    connections: u32,
}

/// Runs a bench command.
pub async fn run(client: &Client, command: BenchCommand) -> Result<(), crate::error::CliError> {
    match command {
        BenchCommand::Verify(args) => {
            bench_verify(client, args).await.map_err(|error| crate::error::CliError::Usage(format!("{error:#}")))
        }
    }
}

struct LoopResult {
    latencies_us: Vec<u32>,
    errors: u64,
    last_error: Option<tonic::Status>,
}

async fn bench_verify(client: &Client, args: VerifyBenchArgs) -> anyhow::Result<()> {
    let token = client.token()?;
    let uri = client.context.auth.clone();
    let mut channels = Vec::new();
    for _ in 0..args.connections {
        let channel = Endpoint::from_shared(uri.clone())
            .with_context(|| format!("invalid auth address {uri:?}"))?
            .tcp_nodelay(true)
            .connect()
            .await
            .map_err(|_| crate::error::CliError::Unreachable { service: Service::Auth, address: uri.clone() })?;
        channels.push(channel);
    }
    // One call first: a token that does not verify would only measure rejections.
    AuthServiceClient::new(channels[0].clone())
        .verify_token(pb::VerifyTokenRequest { token: token.clone() })
        .await
        .map_err(|status| anyhow::anyhow!("the token does not verify: {}", status.message()))?;

    let started = Instant::now();
    let measure_from = started + Duration::from_secs(args.warmup);
    let until = measure_from + Duration::from_secs(args.duration);
    let mut loops = Vec::new();
    for index in 0..args.concurrency as usize {
        let channel = channels[index % channels.len()].clone();
        let token = token.clone();
        loops.push(tokio::spawn(verify_loop(channel, token, measure_from, until)));
    }
    let mut latencies_us = Vec::new();
    let mut errors = 0;
    let mut last_error = None;
    for handle in loops {
        let result = handle.await.context("a bench loop panicked")?;
        latencies_us.extend(result.latencies_us);
        errors += result.errors;
        last_error = result.last_error.or(last_error);
    }
    let measured = until.saturating_duration_since(measure_from).as_secs_f64();
    let report = Report::new(latencies_us, errors, measured);
    if client.format == Format::Json {
        out!("{}", report.json(&args));
    } else {
        out!("{}", report.text(&args));
    }
    if let Some(status) = last_error {
        eprintln!("last error: {:?}: {}", status.code(), status.message());
    }
    Ok(())
}

async fn verify_loop(channel: Channel, token: String, measure_from: Instant, until: Instant) -> LoopResult {
    let mut client = AuthServiceClient::new(channel);
    let mut result = LoopResult { latencies_us: Vec::with_capacity(1 << 16), errors: 0, last_error: None };
    loop {
        let sent = Instant::now();
        if sent >= until {
            return result;
        }
        let outcome = client.verify_token(pb::VerifyTokenRequest { token: token.clone() }).await;
        if sent < measure_from {
            continue;
        }
        match outcome {
            Ok(_) => result.latencies_us.push(u32::try_from(sent.elapsed().as_micros()).unwrap_or(u32::MAX)),
            Err(status) => {
                result.errors += 1;
                result.last_error = Some(status);
            }
        }
    }
}

/// Throughput and latency of one run.
struct Report {
    calls: usize,
    errors: u64,
    calls_per_second: f64,
    p50_us: u32,
    p90_us: u32,
    p99_us: u32,
    max_us: u32,
}

/// The sample at quantile `q` of sorted `samples` (nearest rank).
fn percentile(sorted: &[u32], q: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

impl Report {
    fn new(mut latencies_us: Vec<u32>, errors: u64, seconds: f64) -> Self {
        latencies_us.sort_unstable();
        Self {
            calls: latencies_us.len(),
            errors,
            calls_per_second: latencies_us.len() as f64 / seconds.max(f64::EPSILON),
            p50_us: percentile(&latencies_us, 0.50),
            p90_us: percentile(&latencies_us, 0.90),
            p99_us: percentile(&latencies_us, 0.99),
            max_us: latencies_us.last().copied().unwrap_or(0),
        }
    }

    fn text(&self, args: &VerifyBenchArgs) -> String {
        let ms = |us: u32| f64::from(us) / 1000.0;
        format!(
            "VerifyToken: {:.0} calls/s ({} ok, {} errors in {} s; concurrency {}, connections {})\n\
             latency ms: p50 {:.3}  p90 {:.3}  p99 {:.3}  max {:.3}",
            self.calls_per_second,
            self.calls,
            self.errors,
            args.duration,
            args.concurrency,
            args.connections,
            ms(self.p50_us),
            ms(self.p90_us),
            ms(self.p99_us),
            ms(self.max_us),
        )
    }

    fn json(&self, args: &VerifyBenchArgs) -> serde_json::Value {
        serde_json::json!({
            "rpc": "VerifyToken",
            "concurrency": args.concurrency,
            "connections": args.connections,
            "duration_s": args.duration,
            "calls": self.calls,
            "errors": self.errors,
            "calls_per_second": self.calls_per_second,
            "p50_us": self.p50_us,
            "p90_us": self.p90_us,
            "p99_us": self.p99_us,
            "max_us": self.max_us,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let samples: Vec<u32> = (1..=100).collect();
        assert_eq!(percentile(&samples, 0.50), 50);
        assert_eq!(percentile(&samples, 0.99), 99);
        assert_eq!(percentile(&samples, 1.0), 100);
        assert_eq!(percentile(&[7], 0.99), 7);
        assert_eq!(percentile(&[], 0.5), 0);
        let report = Report::new(vec![300, 100, 200], 1, 2.0);
        assert_eq!((report.calls, report.p50_us, report.max_us), (3, 200, 300));
        assert!((report.calls_per_second - 1.5).abs() < 1e-9);
    }
}
