#![deny(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use tenantry::cli::{Cli, run};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    tenantry::telemetry::init(cli.config.log_format.unwrap_or_else(tenantry::telemetry::default_format));
    match run(cli).await {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
