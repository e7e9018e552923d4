//! `sb-presence`: parse the config, start telemetry, run until SIGTERM or
//! ctrl-c; `sb-presence healthcheck` asks a running instance's `/readyz`.

use sb_config::Invocation;

#[tokio::main]
async fn main() -> anyhow::Result<std::process::ExitCode> {
    let config = match sb_config::parse_invocation::<sb_presence::Config>() {
        Invocation::Run(config) => config,
        Invocation::Healthcheck(config) => return Ok(sb_service::ops::healthcheck(config.metrics_addr).await),
    };
    let telemetry = sb_telemetry::init("presence", &config.telemetry)?;
    let app = sb_presence::App::build(config).await?;
    tracing::info!(grpc = %app.grpc_addr(), metrics = %app.metrics_addr(), "presence listening");
    app.run(sb_config::shutdown_signal()).await?;
    telemetry.shutdown();
    Ok(std::process::ExitCode::SUCCESS)
}
