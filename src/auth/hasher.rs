//! The password-hashing pool: a fixed number of dedicated threads behind a bounded queue.
//!
//! argon2 costs tens of milliseconds of CPU and 19 MiB of memory per hash. On tokio's blocking
//! pool a flood of sign-ins grows up to 512 threads, each keeping its own malloc arena after
//! the flood, and starves every other request of CPU. Here at most `threads` hashes run at
//! once, at most `queue` wait, and a wait longer than `timeout` gives up: the flood is refused
//! with `RATE_LIMITED` while memory stays at `threads` arenas.

use std::time::Duration;

use crossbeam_channel::{Sender, TrySendError};
use tokio::sync::oneshot;

use crate::error::AppError;

type Job = Box<dyn FnOnce() + Send>;

/// Counter of hashes refused, by `reason` (`queue_full`, `timeout`).
const REFUSED: &str = "password_hash_refused_total";

/// Seconds a refused caller is asked to wait.
const RETRY_AFTER_SECS: u64 = 1;

/// Runs password hashes on dedicated threads. Dropping the last handle stops the threads.
#[derive(Clone)]
pub struct Hasher {
    jobs: Sender<Job>,
    timeout: Duration,
}

impl Hasher {
    /// Starts `threads` hashing threads (at least one) with room for `queue` waiting hashes.
    pub fn start(threads: usize, queue: usize, timeout: Duration) -> anyhow::Result<Self> {
        let (jobs, incoming) = crossbeam_channel::bounded::<Job>(queue);
        for n in 0..threads.max(1) {
            let incoming = incoming.clone();
            std::thread::Builder::new().name(format!("password-hash-{n}")).spawn(move || {
                // Ends when every sender is gone.
                for job in incoming {
                    job();
                }
            })?;
        }
        Ok(Self { jobs, timeout })
    }

    /// Runs `work` on a hashing thread. A full queue or a wait past the timeout is
    /// `RATE_LIMITED` (with `Retry-After`), never an unbounded wait.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, AppError> {
        let (done, result) = oneshot::channel();
        let job: Job = Box::new(move || {
            // The caller gave up waiting: do not spend the CPU.
            if !done.is_closed() {
                let _ = done.send(work());
            }
        });
        match self.jobs.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                metrics::counter!(REFUSED, "reason" => "queue_full").increment(1);
                return Err(busy());
            }
            Err(TrySendError::Disconnected(_)) => {
                return Err(AppError::internal(anyhow::anyhow!("the password-hashing threads are gone")));
            }
        }
        match tokio::time::timeout(self.timeout, result).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(_)) => Err(AppError::internal(anyhow::anyhow!("a password-hashing thread panicked"))),
            Err(_) => {
                metrics::counter!(REFUSED, "reason" => "timeout").increment(1);
                Err(busy())
            }
        }
    }
}

fn busy() -> AppError {
    AppError::RateLimited { retry_after_secs: RETRY_AFTER_SECS }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_queue_and_a_long_wait_are_refused_and_the_pool_recovers() {
        let hasher = Hasher::start(1, 1, Duration::from_millis(300)).unwrap();
        let (release, blocked) = std::sync::mpsc::channel::<()>();
        // One job holds the only thread, one waits in the only queue slot.
        let running = tokio::spawn({
            let hasher = hasher.clone();
            async move { hasher.run(move || blocked.recv().is_ok()).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let waiting = tokio::spawn({
            let hasher = hasher.clone();
            async move { hasher.run(|| 2).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let refused = hasher.run(|| 3).await.unwrap_err();
        assert_eq!(refused.code(), "RATE_LIMITED", "a full queue refuses at once");
        assert_eq!(waiting.await.unwrap().unwrap_err().code(), "RATE_LIMITED", "the wait timed out");
        assert_eq!(running.await.unwrap().unwrap_err().code(), "RATE_LIMITED");
        release.send(()).unwrap();
        // The thread drains the abandoned job first (without running it); then it serves again.
        let mut served = None;
        for _ in 0..500 {
            if let Ok(value) = hasher.run(|| 4).await {
                served = Some(value);
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(served, Some(4), "the pool serves again once the flood is over");
    }
}
