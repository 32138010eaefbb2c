//! Logging (JSON lines or pretty, filtered by RUST_LOG) and the Prometheus recorder.

pub mod metrics;

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::Directive;

use crate::config::LogFormat;

/// Crates whose debug output carries statement parameters or message bodies: capped at `info`
/// whatever RUST_LOG says, so raising the log level never writes a password hash or a token.
const QUIET_CRATES: [&str; 3] = ["tokio_postgres=info", "lettre=info", "hyper=info"];

/// The format when LOG_FORMAT is not set: JSON unless a person is watching stderr.
pub fn default_format() -> LogFormat {
    if std::io::stderr().is_terminal() { LogFormat::Pretty } else { LogFormat::Json }
}

pub fn init(format: LogFormat) {
    let mut filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,refinery_core=warn"));
    for quiet in QUIET_CRATES {
        filter = filter.add_directive(quiet.parse::<Directive>().expect("valid directive"));
    }
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => {
            builder.json().flatten_event(true).with_current_span(true).with_span_list(true).try_init()
        }
        LogFormat::Pretty => builder.try_init(),
    };
}
