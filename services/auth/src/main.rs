//! `sb-auth`: parse the config, start telemetry, build, serve until SIGTERM / ctrl-c.

use clap::Parser as _;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = sb_auth::Config::parse();
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
    Ok(result?)
}
