//! Logging (JSON lines or pretty, filtered by RUST_LOG) and the Prometheus recorder.

mod json;
pub mod metrics;
mod timestamp;

use std::io::IsTerminal;

use tracing::{Level, Metadata};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::{Directive, FilterFn};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

use crate::config::LogFormat;

/// Crates whose debug output carries statement parameters (emails, names, password hashes) or
/// message bodies: capped at `info` whatever RUST_LOG says, so raising the log level never
/// writes a password hash or a token.
const QUIET_CRATES: [&str; 5] = ["tokio_postgres", "postgres", "deadpool_postgres", "lettre", "hyper"];

/// Whether an event may be logged at all: nothing below `info` from a [`QUIET_CRATES`] crate or
/// any of its modules. This is a separate filter after RUST_LOG's, so no directive, however
/// specific (`tokio_postgres::query=trace`), can turn those on.
fn allowed(meta: &Metadata<'_>) -> bool {
    *meta.level() <= Level::INFO || !is_quiet(meta.target())
}

fn is_quiet(target: &str) -> bool {
    QUIET_CRATES
        .iter()
        .any(|quiet| target.strip_prefix(quiet).is_some_and(|rest| rest.is_empty() || rest.starts_with("::")))
}

/// The format when LOG_FORMAT is not set: JSON unless a person is watching stderr.
pub fn default_format() -> LogFormat {
    if std::io::stderr().is_terminal() { LogFormat::Pretty } else { LogFormat::Json }
}

pub fn init(format: LogFormat) {
    let mut filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,refinery_core=warn"));
    for quiet in QUIET_CRATES {
        // Also here, so the env filter does not even build the events the cap drops.
        let directive = format!("{quiet}=info").parse::<Directive>().expect("valid directive");
        filter = filter.add_directive(directive);
    }
    let cap = FilterFn::new(allowed);
    let registry = tracing_subscriber::registry().with(filter).with(cap);
    let layer = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let _ = match format {
        // The shape of tracing_subscriber's flattened JSON with span and span list, written
        // without re-parsing span fields (json.rs).
        LogFormat::Json => {
            registry.with(layer.fmt_fields(json::SpanFields).event_format(json::JsonLine)).try_init()
        }
        LogFormat::Pretty => registry.with(layer).try_init(),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statement_logs_are_capped_at_info_in_every_module() {
        assert!(is_quiet("tokio_postgres"));
        assert!(is_quiet("tokio_postgres::query"));
        assert!(is_quiet("postgres"));
        assert!(!is_quiet("postgresql_tools"));
        assert!(!is_quiet("tenantry::db"));
    }
}
