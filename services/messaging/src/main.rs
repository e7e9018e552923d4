//! `sb-messaging`: parse the config, start telemetry, run until SIGTERM or
//! ctrl-c; `sb-messaging healthcheck` asks a running instance's `/readyz`.

use sb_config::Invocation;

#[tokio::main]
async fn main() -> anyhow::Result<std::process::ExitCode> {
    let config = match sb_config::parse_invocation::<sb_messaging::Config>() {
        Invocation::Run(config) => config,
        Invocation::Healthcheck(config) => return Ok(sb_service::ops::healthcheck(config.metrics_addr).await),
    };
    let telemetry = sb_telemetry::init("messaging", &config.telemetry)?;
    let app = sb_messaging::App::build(config).await?;
    app.run(sb_config::shutdown_signal()).await?;
    telemetry.shutdown();
    Ok(std::process::ExitCode::SUCCESS)
}
