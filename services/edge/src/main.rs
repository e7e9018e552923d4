//! `sb-edge`: parse the settings, start telemetry, run the edge until
//! SIGTERM or ctrl-c; `sb-edge healthcheck` asks a running edge's `/readyz`.

use sb_config::Invocation;

#[tokio::main]
async fn main() -> anyhow::Result<std::process::ExitCode> {
    sb_config::check_renamed_env(sb_edge::config::RENAMED)?;
    let config = match sb_config::parse_invocation::<sb_edge::Config>() {
        Invocation::Run(config) => config,
        Invocation::Healthcheck(config) => return Ok(sb_service::ops::healthcheck(config.bind_addr()).await),
    };
    let telemetry = sb_telemetry::init("edge", &config.telemetry)?;
    let app = sb_edge::App::build(config).await?;
    app.run(sb_config::shutdown_signal()).await?;
    telemetry.shutdown();
    Ok(std::process::ExitCode::SUCCESS)
}
