//! Mail goes out through the job queue: `enqueue` seals the message (it holds a link with a
//! token) into a `send_mail` job in the caller's transaction, so a mail exists exactly when its
//! token does, survives a restart, and no request waits for SMTP. `deliver` is the job.

use super::{MailError, Mailer, Message};
use crate::crypto::Keyring;
use crate::db::Statements;
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

/// Enqueues `message` in the caller's transaction. A mail `for_tenant` (sent in that tenant's
/// `TenantTx`) is not sent if the tenant is deleted before it goes out.
pub async fn enqueue(
    db: impl Statements,
    keys: &Keyring,
    for_tenant: Option<uuid::Uuid>,
    message: &Message,
) -> Result<(), AppError> {
    let mut job = job(keys, message)?;
    if let Some(tenant_id) = for_tenant {
        job = job.for_tenant(tenant_id);
    }
    jobs::enqueue(db, &job).await.map(drop)
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
