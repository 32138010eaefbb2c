//! The product's application served from a bench binary (the same library code `tenantry serve`
//! runs), so a bench can switch off what `serve` has no setting for — usage metering and rate
//! limits — and measure what it costs. A bench binary that spawns it must call `serve_if_asked`
//! first thing in `main`.

use clap::Parser;
use tenantry::app::Application;
use tenantry::config::Config;

use super::server::ChildServer;

/// Set in the environment of a bench binary started as the application server: `on` or `off`
/// (metering and rate limits).
const APP_SERVER_ENV: &str = "TENANTRY_BENCH_APP_SERVER";

#[derive(Parser)]
struct Args {
    #[command(flatten)]
    config: Config,
}

/// Starts this bench binary again as the application server, with `envs` (the settings, as for
/// `tenantry serve`) and metering on or off; `wrapper` (valgrind) runs it if given.
pub async fn spawn(envs: &[(&str, &str)], metering: bool, wrapper: &[&str]) -> anyhow::Result<ChildServer> {
    let exe = std::env::current_exe()?;
    let mut all = envs.to_vec();
    all.push((APP_SERVER_ENV, if metering { "on" } else { "off" }));
    ChildServer::spawn(&exe, &[], &all, wrapper).await
}

/// When this process was started by `spawn`: serves until killed, then returns `true`.
pub fn serve_if_asked() -> anyhow::Result<bool> {
    let Ok(metering) = std::env::var(APP_SERVER_ENV) else {
        return Ok(false);
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let args = Args::parse_from(["tenantry"]);
        let format = args.config.log_format.unwrap_or_else(tenantry::telemetry::default_format);
        tenantry::telemetry::init(format);
        let app = Application::build(args.config).await?;
        app.state().usage.set_metering(metering == "on");
        app.run().await
    })?;
    Ok(true)
}
