#![deny(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use tenantry::cli::{Cli, run};

fn main() -> ExitCode {
    no_backtraces_for_errors();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let cli = Cli::parse();
        tenantry::telemetry::init(cli.config.log_format.unwrap_or_else(tenantry::telemetry::default_format));
        match run(cli).await {
            Ok(code) => code,
            Err(err) => {
                eprintln!("error: {err:#}");
                ExitCode::FAILURE
            }
        }
    })
}

/// Errors are values here — a refused request, a validation error, a database outage — and an
/// `anyhow::Error` captures a stack backtrace when `RUST_BACKTRACE` or `RUST_LIB_BACKTRACE` asks
/// for one: microseconds per error and, once printed, megabytes of symbol tables kept for good.
/// `RUST_LIB_BACKTRACE=0` turns captures off for errors whatever the environment says; panics
/// still follow `RUST_BACKTRACE` (std reads only that one for them).
fn no_backtraces_for_errors() {
    // SAFETY: the first statement of `main`, before the runtime or anything else starts a thread,
    // so no other thread can read the environment while it changes.
    #[allow(unsafe_code)]
    unsafe {
        std::env::set_var("RUST_LIB_BACKTRACE", "0");
    }
}
