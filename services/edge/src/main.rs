//! `sb-edge`: parse the settings, start telemetry, run the edge until
//! SIGTERM or ctrl-c.

use clap::Parser as _;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = sb_edge::Config::parse();
    let telemetry = sb_telemetry::init("edge", &config.telemetry)?;
    let app = sb_edge::App::build(config).await?;
    app.run(sb_config::shutdown_signal()).await?;
    telemetry.shutdown();
    Ok(())
}
