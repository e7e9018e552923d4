//! `sb-messaging`: parse the config, start telemetry, run until SIGTERM or ctrl-c.

use clap::Parser as _;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = sb_messaging::Config::parse();
    let telemetry = sb_telemetry::init("messaging", &config.telemetry)?;
    let app = sb_messaging::App::build(config).await?;
    app.run(sb_config::shutdown_signal()).await?;
    telemetry.shutdown();
    Ok(())
}
