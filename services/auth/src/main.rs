//! `sb-auth`: parse the config, start telemetry, build, serve until SIGTERM / ctrl-c;
//! `sb-auth healthcheck` asks a running instance's `/readyz`.

use sb_config::Invocation;

#[tokio::main]
async fn main() -> anyhow::Result<std::process::ExitCode> {
    sb_config::check_renamed_env(sb_auth::config::RENAMED)?;
    let config = match sb_config::parse_invocation::<sb_auth::Config>() {
        Invocation::Run(config) => config,
        Invocation::Healthcheck(config) => return Ok(sb_service::ops::healthcheck(config.metrics_addr).await),
    };
    let telemetry = sb_telemetry::init("auth", &config.telemetry)?;
    let result = async {
        let app = sb_auth::App::build(config).await?;
        app.run(sb_config::shutdown_signal()).await
    }
    .await;
    if let Err(error) = &result {
        tracing::error!(%error, "auth failed");
    }
    telemetry.shutdown();
    result?;
    Ok(std::process::ExitCode::SUCCESS)
}
