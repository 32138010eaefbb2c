//! Reloading the trusted documents' manifest while serving: on SIGHUP, and when its file
//! changes (its modification time or length, looked at every few seconds). A manifest that
//! does not load is logged and the one in use stays.

use std::sync::Arc;
use std::time::Duration;

use crate::graphql::documents::Documents;
use crate::graphql::trusted::{Mode, TrustedDocuments};

/// How often the manifest file is looked at.
const POLL: Duration = Duration::from_secs(2);

/// Runs until aborted; does nothing with `TRUSTED_DOCUMENTS=off`.
pub async fn watch_trusted(trusted: Arc<TrustedDocuments>, documents: Arc<Documents>) {
    if trusted.mode() == Mode::Off {
        return;
    }
    let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(signal) => Some(signal),
        Err(err) => {
            tracing::warn!(error = %err, "no SIGHUP handler; the trusted documents reload when their file changes");
            None
        }
    };
    loop {
        let forced = tokio::select! {
            Some(()) = async { hangup.as_mut()?.recv().await } => true,
            () = tokio::time::sleep(POLL) => false,
        };
        match trusted.reload(&documents, forced) {
            Ok(Some(count)) => tracing::info!(trusted_documents.count = count, "trusted documents reloaded"),
            Ok(None) => {}
            Err(err) => tracing::error!(
                error = format!("{err:#}"),
                "trusted documents not reloaded; the previous manifest stays"
            ),
        }
    }
}
