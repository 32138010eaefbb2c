//! Successful attempts are recorded in batches: one `update` for every job that finished while
//! the previous batch was being written, instead of a round trip (and a commit) per job.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use deadpool_postgres::Pool;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::repo;

/// Jobs a worker holds (id → attempt).
pub(crate) type Held = Arc<Mutex<HashMap<Uuid, i32>>>;

/// Most completions written by one statement.
const MAX_BATCH: usize = 1000;

enum Msg {
    Done(Uuid, i32),
    Flush(oneshot::Sender<()>),
}

/// The sending side; the writer task ends when it is dropped.
pub(crate) struct Completions {
    tx: mpsc::UnboundedSender<Msg>,
}

impl Completions {
    pub(crate) fn spawn(pool: Pool, held: Held) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(write_batches(pool, held, rx));
        Self { tx }
    }

    /// Records that attempt `attempt` of job `id` succeeded (soon, with others).
    pub(crate) fn done(&self, id: Uuid, attempt: i32) {
        let _ = self.tx.send(Msg::Done(id, attempt));
    }

    /// Waits until everything reported so far is written (or given up on).
    pub(crate) async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Msg::Flush(tx)).is_ok() {
            let _ = rx.await;
        }
    }
}

async fn write_batches(pool: Pool, held: Held, mut rx: mpsc::UnboundedReceiver<Msg>) {
    while let Some(first) = rx.recv().await {
        let (mut ids, mut attempts, mut flushes) = (Vec::new(), Vec::new(), Vec::new());
        let mut next = Some(first);
        while let Some(msg) = next.take() {
            match msg {
                Msg::Done(id, attempt) => {
                    ids.push(id);
                    attempts.push(attempt);
                }
                Msg::Flush(reply) => flushes.push(reply),
            }
            if ids.len() < MAX_BATCH {
                next = rx.try_recv().ok();
            }
        }
        if !ids.is_empty() {
            let write = || async { repo::complete_many(&pool.get().await?, &ids, &attempts).await };
            let backoff =
                ExponentialBuilder::default().with_min_delay(Duration::from_millis(50)).with_max_times(3);
            if let Err(err) = write.retry(backoff).await {
                // Their leases expire and they run again: jobs run at least once.
                tracing::error!(jobs = ids.len(), error = ?err, "recording finished jobs failed");
            }
            let mut held = held.lock().unwrap_or_else(|p| p.into_inner());
            for id in &ids {
                held.remove(id);
            }
        }
        for reply in flushes {
            let _ = reply.send(());
        }
    }
}
