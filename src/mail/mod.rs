//! Outgoing mail through one `Mailer`; `MAILER` picks the transport:
//! `log` (development: prints the message), `file:<dir>` (one JSON file per message),
//! `smtp://…` / `smtps://…` (lettre). Features do not send directly: they enqueue through
//! `outbox`, and the `send_mail` job calls `Mailer::send`.

pub mod outbox;

use std::path::PathBuf;

use anyhow::{Context, bail};
use lettre::message::Mailbox;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use serde::{Deserialize, Serialize};

use crate::config::AppEnv;

/// A message with its call to action: the link to click and the token inside it.
#[derive(Clone, Serialize, Deserialize)]
pub struct Message {
    pub to: String,
    pub subject: String,
    pub text: String,
    pub link: String,
    pub token: String,
}

/// Only the subject: the address, the text and the link (which carries the token) stay out of
/// any log line that prints a message.
impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Message").field("subject", &self.subject).finish_non_exhaustive()
    }
}

/// Why a message was not sent. Never includes the address, the text or the server's reply
/// (which may echo the address): only what an operator needs to act.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("the recipient is not a valid mailbox")]
    BadAddress,
    #[error("the SMTP server refused the message permanently ({0})")]
    Refused(String),
    #[error("the SMTP server failed or could not be reached ({0}); retried later")]
    Transient(String),
    #[error("writing the mail file failed ({0})")]
    File(String),
}

impl MailError {
    fn from_smtp(err: &lettre::transport::smtp::Error) -> Self {
        let code = err.status().map(|c| format!("SMTP {c}"));
        if err.is_permanent() {
            return Self::Refused(code.unwrap_or_else(|| "permanent error".into()));
        }
        let what = if err.is_timeout() {
            "timed out".to_owned()
        } else if let Some(code) = code {
            code
        } else if err.is_transient() {
            "temporary error".to_owned()
        } else {
            "connection or protocol error".to_owned()
        };
        Self::Transient(what)
    }
}

#[derive(Clone)]
pub enum Mailer {
    Log,
    File(PathBuf),
    Smtp(Box<Smtp>),
}

#[derive(Clone)]
pub struct Smtp {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl Mailer {
    pub fn from_spec(spec: &str, from: &str, env: AppEnv) -> anyhow::Result<Self> {
        if spec == "log" {
            if env == AppEnv::Production {
                bail!("MAILER=log prints sign-in links; use smtp://… or file:<dir> when APP_ENV=production");
            }
            return Ok(Self::Log);
        }
        if let Some(dir) = spec.strip_prefix("file:") {
            let dir = PathBuf::from(dir);
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("creating mail directory {}", dir.display()))?;
            return Ok(Self::File(dir));
        }
        if spec.starts_with("smtp://") || spec.starts_with("smtps://") {
            let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(spec)
                .context("MAILER is not a valid smtp:// URL")?
                .build();
            let from = from.parse().with_context(|| format!("MAIL_FROM {from:?} is not a valid mailbox"))?;
            return Ok(Self::Smtp(Box::new(Smtp { transport, from })));
        }
        bail!("MAILER must be `log`, `file:<dir>` or `smtp://…`")
    }

    /// Sends now. Called by the `send_mail` job; features enqueue through `outbox`.
    pub async fn send(&self, message: Message) -> Result<(), MailError> {
        match self {
            Self::Log => {
                // The development mailbox: deliberately outside the structured log.
                eprintln!(
                    "----- mail (MAILER=log) -----\nTo: {}\nSubject: {}\n\n{}\n-----------------------------",
                    message.to, message.subject, message.text
                );
                Ok(())
            }
            Self::File(dir) => {
                write_file(dir, &message).await.map_err(|err| MailError::File(format!("{err:#}")))
            }
            Self::Smtp(smtp) => {
                let to: Mailbox = message.to.parse().map_err(|_| MailError::BadAddress)?;
                let email = lettre::Message::builder()
                    .from(smtp.from.clone())
                    .to(to)
                    .subject(message.subject)
                    .body(message.text)
                    .map_err(|_| MailError::BadAddress)?;
                smtp.transport.send(email).await.map_err(|err| MailError::from_smtp(&err))?;
                Ok(())
            }
        }
    }
}

/// Writes `<dir>/<time>-<uuid>.json` atomically (a reader never sees half a message).
async fn write_file(dir: &std::path::Path, message: &Message) -> anyhow::Result<()> {
    let name =
        format!("{}-{}", chrono::Utc::now().format("%Y%m%dT%H%M%S%.6f"), uuid::Uuid::new_v4().simple());
    let tmp = dir.join(format!(".{name}.tmp"));
    tokio::fs::write(&tmp, serde_json::to_vec_pretty(message)?).await?;
    tokio::fs::rename(&tmp, dir.join(format!("{name}.json"))).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_debug_print_shows_neither_address_nor_token() {
        let message = Message {
            to: "someone@example.com".into(),
            subject: "Verify your email".into(),
            text: "click https://app.test/verify?token=tok_secret".into(),
            link: "https://app.test/verify?token=tok_secret".into(),
            token: "tok_secret".into(),
        };
        let printed = format!("{message:?}");
        assert!(printed.contains("Verify your email"), "{printed}");
        assert!(!printed.contains("someone@example.com") && !printed.contains("tok_secret"), "{printed}");
    }
}
