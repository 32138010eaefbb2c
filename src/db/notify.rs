//! The LISTEN/NOTIFY bus: one dedicated connection per process.
//!
//! Changes that cached state depends on (tenants, memberships, API keys) are published in the
//! same transaction as the change; every replica then drops its cached copies.

use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_postgres::{AsyncMessage, NoTls};
use uuid::Uuid;

use crate::db::Statements;
use crate::error::AppError;

pub const TENANT_CHANGED: &str = "tenant_changed";
/// Payload `<tenant id>:<user id>`: a membership was added, changed or removed.
pub const MEMBER_CHANGED: &str = "member_changed";
/// Payload: the key's prefix. An API key was revoked.
pub const API_KEY_CHANGED: &str = "api_key_changed";
/// Payload: cluster usage totals after a flush (see `usage::live::encode`).
pub const USAGE: &str = "usage";
/// Payload: the tenant id. `migrate` committed new migrations in the tenant's schema, so
/// statements prepared against its old tables must go.
pub const TENANT_MIGRATED: &str = "tenant_migrated";
/// Payload `<tenant id>:<bytes>`: a job measured a tenant's storage.
pub const STORAGE: &str = "storage";
/// A job was enqueued (or requeued): idle workers claim at once instead of polling.
pub const JOBS: &str = "jobs";
const CHANNELS: [&str; 7] =
    [TENANT_CHANGED, MEMBER_CHANGED, API_KEY_CHANGED, TENANT_MIGRATED, USAGE, STORAGE, JOBS];

/// What the listener reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusEvent {
    /// A notification on one of the channels above.
    Notice { channel: String, payload: String },
    /// The connection was (re)established: notifications may have been missed meanwhile.
    Connected,
}

const NOTIFY: &str = "select pg_notify($1, $2)";

/// Publishes on `channel`; delivered to every listener when the surrounding transaction commits.
pub async fn publish(mut db: impl Statements, channel: &str, payload: &str) -> Result<(), AppError> {
    db.execute(NOTIFY, &[&channel, &payload]).await?;
    Ok(())
}

/// Announces a tenant change (status, plan, expiry, domain, deletion).
pub async fn tenant_changed(db: impl Statements, tenant_id: Uuid) -> Result<(), AppError> {
    publish(db, TENANT_CHANGED, &tenant_id.to_string()).await
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
            while let Some((channel, payload)) = notifications.recv().await {
                on_event(BusEvent::Notice { channel, payload }).await;
            }
            drop(client);
            tracing::warn!("notification listener: connection lost; reconnecting");
        }
    })
}

/// `(channel, payload)` pairs as they arrive.
type Notices = mpsc::UnboundedReceiver<(String, String)>;

/// Connects and subscribes; notifications arrive on the returned channel until the connection ends.
async fn listen(
    config: &tokio_postgres::Config,
) -> Result<(tokio_postgres::Client, Notices), tokio_postgres::Error> {
    let (client, mut connection) = config.connect(NoTls).await?;
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message {
                Ok(AsyncMessage::Notification(n)) => {
                    if tx.send((n.channel().to_owned(), n.payload().to_owned())).is_err() {
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
    for channel in CHANNELS {
        client.batch_execute(&format!("listen {channel}")).await?;
    }
    Ok((client, rx))
}
