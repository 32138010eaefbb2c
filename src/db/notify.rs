//! The LISTEN/NOTIFY bus: one dedicated connection per process.
//!
//! `tenant_changed` (payload: tenant id) is sent in the same transaction as any change to a
//! tenant's status, plan, expiry or domain; every replica then drops its cached copies.

use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use deadpool_postgres::GenericClient;
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_postgres::{AsyncMessage, NoTls};
use uuid::Uuid;

use crate::error::AppError;

pub const TENANT_CHANGED: &str = "tenant_changed";

/// What the listener reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusEvent {
    /// A tenant changed; the payload is its id.
    TenantChanged(String),
    /// The connection was (re)established: notifications may have been missed meanwhile.
    Connected,
}

/// Announces a tenant change; delivered to listeners when the surrounding transaction commits.
pub async fn tenant_changed(db: &impl GenericClient, tenant_id: Uuid) -> Result<(), AppError> {
    db.execute("select pg_notify($1, $2)", &[&TENANT_CHANGED, &tenant_id.to_string()]).await?;
    Ok(())
}

/// Listens until aborted, reconnecting with backoff after a dropped connection.
pub fn spawn_listener<F, Fut>(config: tokio_postgres::Config, on_event: F) -> JoinHandle<()>
where
    F: Fn(BusEvent) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send,
{
    tokio::spawn(async move {
        let backoff = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(100))
            .with_max_delay(Duration::from_secs(5))
            .without_max_times();
        loop {
            let connect = || listen(&config);
            let (client, mut notifications) = connect
                .retry(backoff)
                .notify(|err, delay| {
                    tracing::warn!(error = %err, retry_in_ms = delay.as_millis() as u64, "notification listener: connect failed");
                })
                .await
                .expect("retries without limit");
            on_event(BusEvent::Connected).await;
            while let Some(payload) = notifications.recv().await {
                on_event(BusEvent::TenantChanged(payload)).await;
            }
            drop(client);
            tracing::warn!("notification listener: connection lost; reconnecting");
        }
    })
}

/// Connects and subscribes; notifications arrive on the returned channel until the connection ends.
async fn listen(
    config: &tokio_postgres::Config,
) -> Result<(tokio_postgres::Client, mpsc::UnboundedReceiver<String>), tokio_postgres::Error> {
    let (client, mut connection) = config.connect(NoTls).await?;
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message {
                Ok(AsyncMessage::Notification(n)) => {
                    if tx.send(n.payload().to_owned()).is_err() {
                        break;
                    }
                }
                Ok(_) => {}
                Err(err) => {
                    tracing::warn!(error = %err, "notification listener: connection error");
                    break;
                }
            }
        }
    });
    client.batch_execute(&format!("listen {TENANT_CHANGED}")).await?;
    Ok((client, rx))
}
