//! Outgoing mail through one `Mailer`; `MAILER` picks the transport:
//! `log` (development: prints the message), `file:<dir>` (one JSON file per message),
//! `smtp://…` / `smtps://…` (lettre).

use std::path::PathBuf;

use anyhow::{Context, bail};
use lettre::message::Mailbox;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use serde::Serialize;

use crate::config::AppEnv;
use crate::error::AppError;

/// A message with its call to action: the link to click and the token inside it.
#[derive(Debug, Clone, Serialize)]
pub struct Message {
    pub to: String,
    pub subject: String,
    pub text: String,
    pub link: String,
    pub token: String,
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

    pub async fn send(&self, message: Message) -> Result<(), AppError> {
        match self {
            Self::Log => {
                // The development mailbox: deliberately outside the structured log.
                eprintln!(
                    "----- mail (MAILER=log) -----\nTo: {}\nSubject: {}\n\n{}\n-----------------------------",
                    message.to, message.subject, message.text
                );
                Ok(())
            }
            Self::File(dir) => write_file(dir, &message).await.map_err(AppError::Internal),
            Self::Smtp(smtp) => {
                let to: Mailbox = message.to.parse().map_err(AppError::internal)?;
                let email = lettre::Message::builder()
                    .from(smtp.from.clone())
                    .to(to)
                    .subject(message.subject)
                    .body(message.text)
                    .map_err(AppError::internal)?;
                smtp.transport.send(email).await.map_err(AppError::internal)?;
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
