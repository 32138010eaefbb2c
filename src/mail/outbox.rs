//! Mail goes out through the job queue: `enqueue` seals the message (it holds a link with a
//! token) into a `send_mail` job in the caller's transaction, so a mail exists exactly when its
//! token does, survives a restart, and no request waits for SMTP. `deliver` is the job.

use deadpool_postgres::GenericClient;

use super::{MailError, Mailer, Message};
use crate::crypto::Keyring;
use crate::db::TenantTx;
use crate::error::AppError;
use crate::jobs::{self, JobCtx, JobError, NewJob};

/// The job kind.
pub const SEND_MAIL: &str = "send_mail";

/// Retries with the default backoff span about an hour of SMTP trouble before the mail is dead
/// (and `tenantry jobs retry` can send it again).
const MAX_ATTEMPTS: i32 = 12;

fn job(keys: &Keyring, message: &Message) -> Result<NewJob, AppError> {
    let plaintext = serde_json::to_vec(message).map_err(AppError::internal)?;
    Ok(NewJob::new(SEND_MAIL).max_attempts(MAX_ATTEMPTS).sealed(keys, &plaintext))
}

/// Enqueues `message` in the caller's transaction.
pub async fn enqueue(db: &impl GenericClient, keys: &Keyring, message: &Message) -> Result<(), AppError> {
    jobs::enqueue(db, &job(keys, message)?).await.map(drop)
}

/// Enqueues `message` for a tenant in its transaction: if the tenant is deleted before the mail
/// goes out, it is not sent.
pub async fn enqueue_in(
    tx: &mut TenantTx,
    keys: &Keyring,
    tenant_id: uuid::Uuid,
    message: &Message,
) -> Result<(), AppError> {
    jobs::enqueue_in(tx, &job(keys, message)?.for_tenant(tenant_id)).await.map(drop)
}

/// The `send_mail` job: opens the sealed message and sends it.
pub async fn deliver(ctx: JobCtx, mailer: &Mailer, keys: &Keyring) -> Result<(), JobError> {
    let plaintext = ctx.open_sealed(keys)?;
    let message: Message = serde_json::from_slice(&plaintext)
        .map_err(|_| JobError::permanent("the sealed mail is not a message this version can read"))?;
    mailer.send(message).await.map_err(|err| match err {
        MailError::BadAddress | MailError::Refused(_) => JobError::permanent(err.to_string()),
        MailError::Transient(_) | MailError::File(_) => JobError::retry(err.to_string()),
    })
}
