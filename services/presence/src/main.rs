use clap::Parser as _;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = sb_presence::Config::parse();
    let telemetry = sb_telemetry::init("presence", &config.telemetry)?;
    let app = sb_presence::App::build(config).await?;
    tracing::info!(grpc = %app.grpc_addr(), metrics = %app.metrics_addr(), "presence listening");
    app.run(sb_config::shutdown_signal()).await?;
    telemetry.shutdown();
    Ok(())
}
